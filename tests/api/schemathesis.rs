//! The OpenAPI document matches the service: schemathesis generates requests from the
//! document the running service serves (every phase, every check, a fixed seed, a bounded
//! number of cases per operation) and finds no failure, on each store.
//!
//! Ignored in a plain `cargo test` (it needs schemathesis): `scripts/schemathesis` installs
//! it into `.venv/` and runs these (`scripts/test` calls it).

use std::path::PathBuf;
use std::process::Command;

use kairos::config::{ConfigSource, Settings};

use crate::helpers::{Backend, TestApp, TestDb, config_dir};

/// A key holding every scope: schemathesis sends one `Authorization` header.
const FUZZ_KEY: &str = "test-schemathesis-key-0001";
/// Fixed, so a run is reproducible (`st replay` needs no database).
const SEED: &str = "20261201";
/// Cases per operation and phase: the whole run (both stores) stays within a few minutes.
const MAX_EXAMPLES: &str = "40";

/// The service on a private config directory whose files say what it runs with, so that
/// `POST /v1/admin/config/reload` re-reads the same settings (and succeeds) as in production.
async fn start(backend: Backend) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(config_dir().join("default.toml"), dir.path().join("default.toml")).unwrap();
    let db = match backend {
        Backend::Postgres => Some(TestDb::create().await),
        Backend::Sqlite => None,
    };
    let database = match &db {
        Some(db) => format!("url = \"{}\"\nmax_connections = 8", db.url),
        None => format!("sqlite_path = \"{}\"", dir.path().join("kairos.db").display()),
    };
    let local = format!(
        "[server]\nport = 0\n[database]\n{database}\n[auth]\nallow_dev_key = false\n\
         [[auth.keys]]\nname = \"schemathesis\"\nkey = \"{FUZZ_KEY}\"\nscopes = [\"ingest\", \"read\", \"gateway\", \"admin\"]\n\
         [tuning.scheduler]\nenabled = false\n"
    );
    std::fs::write(dir.path().join("local.toml"), local).unwrap();
    let source = ConfigSource { dir: dir.path().to_path_buf(), env_name: None, use_env: false };
    let settings = Settings::load(&source).expect("the schemathesis config is valid");
    TestApp::start(settings, source, db, dir).await
}

async fn schemathesis_finds_no_failure(backend: Backend) {
    let bin = std::env::var("KAIROS_SCHEMATHESIS").expect("KAIROS_SCHEMATHESIS names the schemathesis binary (run scripts/schemathesis)");
    let app = start(backend).await;
    let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let url = app.url("/openapi.json");
    let run = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["--config-file", &scripts.join("schemathesis.toml").display().to_string()])
            .args(["run", &url, "--checks", "all", "--seed", SEED, "--max-examples", MAX_EXAMPLES, "--workers", "1"])
            // No example database (a run depends on its seed only); generation may be slow on a
            // shared machine without that failing the run.
            .args(["--generation-database", "none", "--no-color", "--suppress-health-check", "too_slow"])
            .args(["-H", &format!("Authorization: Bearer {FUZZ_KEY}")])
            .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
            .env("PYTHONPATH", &scripts)
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    println!("schemathesis on {backend:?}:\n{report}");
    assert!(run.status.success(), "schemathesis found failures on {backend:?} (report above)");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs schemathesis: run scripts/schemathesis"]
async fn schemathesis_finds_no_failure_on_postgres() {
    schemathesis_finds_no_failure(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs schemathesis: run scripts/schemathesis"]
async fn schemathesis_finds_no_failure_on_sqlite() {
    schemathesis_finds_no_failure(Backend::Sqlite).await
}
