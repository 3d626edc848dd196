//! The layout of `src/` is part of the architecture (docs/ARCHITECTURE.md): these tests keep
//! the pure layers pure, keep the offline tools out of the service, and keep files readable.

use std::path::{Path, PathBuf};

/// The `.rs` files under `dir` (or `dir` itself when it is a file).
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Lines of `file` that mention one of `needles`, as `path:line: text`.
fn offending(file: &Path, needles: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("readable source");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| needles.iter().any(|n| l.contains(n)))
        .map(|(n, l)| format!("{}:{}: {}", file.display(), n + 1, l.trim()))
        .collect()
}

#[test]
fn the_pure_layers_import_no_io_no_runtime_and_nothing_of_the_service() {
    let needles = [
        "tokio", "sqlx", "reqwest", "hyper", "std::fs", "std::net", "crate::api", "crate::store", "crate::engine",
        "crate::ingest", "crate::tools", "crate::startup", "crate::push::scheduler",
    ];
    let mut bad = Vec::new();
    for dir in ["rank", "push/frequency", "push/ope.rs", "push/ope"] {
        for file in rust_files(&src().join(dir)) {
            bad.extend(offending(&file, &needles));
        }
    }
    assert!(bad.is_empty(), "pure modules must not do I/O or reach into the service:\n{}", bad.join("\n"));
}

#[test]
fn the_service_never_imports_the_offline_tools() {
    let mut bad = Vec::new();
    for file in rust_files(&src()) {
        let rel = file.strip_prefix(src()).expect("under src");
        if rel.starts_with("tools") || rel == Path::new("main.rs") || rel == Path::new("lib.rs") {
            continue;
        }
        bad.extend(offending(&file, &["crate::tools", "kairos::tools"]));
    }
    assert!(bad.is_empty(), "only main.rs and tools/ may use tools/:\n{}", bad.join("\n"));
}

#[test]
fn no_source_file_is_over_600_lines_nor_over_400_without_a_reason_at_its_top() {
    let mut bad = Vec::new();
    for file in rust_files(&src()) {
        let text = std::fs::read_to_string(&file).expect("readable source");
        let lines = text.lines().count();
        let reasoned = text.lines().next().is_some_and(|l| l.contains("Over 400 lines:"));
        if lines > 600 || (lines > 400 && !reasoned) {
            bad.push(format!("{} ({lines} lines)", file.display()));
        }
    }
    assert!(bad.is_empty(), "split these, or (400..=600 lines) say why in a first line `// Over 400 lines: …`:\n{}", bad.join("\n"));
}
