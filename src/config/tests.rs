//! Tests of the loader, its layers and validation.

use super::*;

fn shipped() -> Settings {
    let source = ConfigSource { dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"), env_name: None, use_env: false };
    Settings::load(&source).expect("shipped config/default.toml is valid")
}

#[test]
fn every_shipped_config_file_parses_and_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    shipped();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".toml") && name != "default.toml" && name != "local.toml" && name != "simulate.toml" {
            let env_name = name.trim_end_matches(".toml").to_string();
            let source = ConfigSource { dir: dir.clone(), env_name: Some(env_name), use_env: false };
            Settings::load(&source).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn secrets_never_show_in_debug_or_serialised_output() {
    let mut s = shipped();
    s.auth.keys.push(ApiKey { name: "x".into(), key: Secret::new("super-secret-key-123"), scopes: vec![Scope::Read] });
    s.database.url = Some(Secret::new("postgres://u:pw@h/db"));
    let dbg = format!("{s:?}");
    let json = serde_json::to_string(&s).unwrap();
    for out in [dbg, json] {
        assert!(!out.contains("super-secret-key-123"));
        assert!(!out.contains(":pw@"));
    }
}

#[test]
fn an_invalid_value_names_its_key() {
    let mut s = shipped();
    s.ingest.writers = 0;
    let err = s.validate().unwrap_err().to_string();
    assert!(err.starts_with("ingest.writers"), "{err}");
    let mut s = shipped();
    s.tuning.kinds.get_mut("view").unwrap().weight = f64::NAN;
    assert!(s.validate().unwrap_err().to_string().starts_with("tuning.kinds.view.weight"));
}

#[test]
fn the_development_key_is_refused_on_an_address_other_machines_reach() {
    let mut s = shipped();
    assert!(s.auth.keys.is_empty() && s.auth.allow_dev_key, "the shipped config runs with the development key");
    for host in ["127.0.0.1", "::1", "127.0.0.53"] {
        s.server.host = host.into();
        assert!(s.validate().is_ok(), "{host}");
    }
    for host in ["0.0.0.0", "10.1.2.3", "::"] {
        s.server.host = host.into();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("auth.keys") && e.contains("auth.allow_dev_key") && e.contains(host), "{e}");
    }
    s.auth.allow_dev_key = false;
    assert!(s.validate().is_ok(), "without the development key any address is fine");
    s.auth.allow_dev_key = true;
    s.auth.keys.push(ApiKey { name: "k".into(), key: Secret::new("0123456789abcdef"), scopes: vec![Scope::Read] });
    assert!(s.validate().is_ok(), "a configured key turns the development key off");
}

#[test]
fn an_unknown_key_is_refused() {
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/default.toml")).unwrap();
    let text = text.replacen("[server]", "[server]\nbogus_key = 1", 1);
    let err = Settings::from_toml(&text).unwrap_err().to_string();
    assert!(err.contains("bogus_key"), "{err}");
}

#[test]
fn later_layers_win_and_static_changes_are_not_reloadable() {
    let dir = tempfile::tempdir().unwrap();
    let shipped_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    std::fs::copy(shipped_dir.join("default.toml"), dir.path().join("default.toml")).unwrap();
    std::fs::write(dir.path().join("local.toml"), "[ingest]\nwriters = 3\n").unwrap();
    let source = ConfigSource { dir: dir.path().to_path_buf(), env_name: None, use_env: false };
    let started = Settings::load(&source).unwrap();
    assert_eq!(started.ingest.writers, 3);

    let live = LiveTuning::new(started.tuning.clone());
    std::fs::write(dir.path().join("local.toml"), "[ingest]\nwriters = 4\n").unwrap();
    assert!(matches!(live.reload(&source, &started), Err(ConfigError::NotReloadable { .. })));
    assert_eq!(live.version(), 1);

    std::fs::write(dir.path().join("local.toml"), "[ingest]\nwriters = 3\n[tuning.scheduler]\nbatch_size = 7\n").unwrap();
    assert_eq!(live.reload(&source, &started).unwrap(), ReloadOutcome::Applied);
    assert_eq!(live.get().scheduler.batch_size, 7);
    assert_eq!(live.version(), 2);

    std::fs::write(dir.path().join("local.toml"), "[ingest]\nwriters = 3\n[tuning.scoring.stats]\nbucket_minutes = 30\n").unwrap();
    assert!(matches!(live.reload(&source, &started), Err(ConfigError::NotReloadable { .. })));

    std::fs::write(dir.path().join("local.toml"), "[tuning.scheduler]\nbatch_size = 0\n").unwrap();
    assert!(live.reload(&source, &started).is_err());
    assert_eq!(live.get().scheduler.batch_size, 7, "the old tuning stays after a refused reload");
}
