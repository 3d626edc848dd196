//! Offline command-line tools over the same library code as the service. The service
//! (`api`, `engine`, `startup`, ...) never imports them.

/// The minimal HTTP server every HTTP figure is a ratio to (`kairos baseline`).
pub mod baseline;
/// Synthetic catalog/user/event generator for load tests.
pub mod datagen;
/// Demo: the service on the Taobao sample end to end, loaded over HTTP (`kairos demo`).
pub mod demo;
/// Offline evaluation: replays a real log through profile and scoring.
pub mod eval;
/// Off-policy evaluation of push policies on the Open Bandit logs (`kairos eval-push`).
pub mod eval_push;
/// HTTP load generator (`kairos loadgen`).
pub mod loadgen;
/// Soak of replicas on one PostgreSQL, with an audit of the store (`kairos soak`).
pub mod soak;
/// Push-policy simulation over real histories (`kairos simulate`).
pub mod simulate;
/// Behaviour logs with a planted behaviour (`kairos synth`).
pub mod synth;

use std::io::Read;
use std::path::Path;

use anyhow::Context;

/// Reads a text file, gunzipping it when its name ends in `.gz`.
pub fn read_text(path: &Path) -> anyhow::Result<String> {
    let raw = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut text = String::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(raw).read_to_string(&mut text)
    } else {
        std::io::BufReader::new(raw).read_to_string(&mut text)
    }
    .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text)
}

/// Creates the folder `path` will be written in, if it has one.
pub fn create_parent(path: &Path) -> anyhow::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display())),
        None => Ok(()),
    }
}

/// Writes a report to `path`, creating its folder.
pub fn write_report(path: &Path, text: &str) -> anyhow::Result<()> {
    create_parent(path)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// CPU model and core count, for the reports.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cores} cores of {model}, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}
