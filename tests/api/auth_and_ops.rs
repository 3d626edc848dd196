//! Access control, health, metrics, OpenAPI, admin config and hot reload.

use std::time::Duration;

use kairos::config::ConfigSource;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_KEY, Backend, GATEWAY_KEY, INGEST_KEY, OpenedStore, READ_KEY, TestApp, config_dir, expect_problem, test_settings,
};
use crate::on_both_stores;

async fn requests_without_a_valid_key_or_scope_are_refused_and_store_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"user_id": "u", "item_id": "i", "kind": "view"});
    let r = app.client.post(app.url("/v1/events")).json(&body).send().await.unwrap();
    expect_problem(r, StatusCode::UNAUTHORIZED).await;
    expect_problem(app.post("/v1/events", "wrong-key-wrong-key-123", &body).await, StatusCode::UNAUTHORIZED).await;
    expect_problem(app.post("/v1/events", READ_KEY, &body).await, StatusCode::FORBIDDEN).await;
    expect_problem(app.post("/v1/events", GATEWAY_KEY, &body).await, StatusCode::FORBIDDEN).await;
    expect_problem(app.delete("/v1/users/u", INGEST_KEY).await, StatusCode::FORBIDDEN).await;
    expect_problem(app.get("/v1/admin/config", READ_KEY).await, StatusCode::FORBIDDEN).await;
    assert_eq!(app.event_count().await, 0);
    // The X-Api-Key header works too.
    let r = app.client.post(app.url("/v1/events")).header("x-api-key", INGEST_KEY).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    app.stop().await;
}

async fn health_readiness_metrics_and_openapi_are_served(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-request-id"), "every response carries a request id");
    let ready: Value = app.client.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["store"], match backend { Backend::Postgres => "postgres", Backend::Sqlite => "sqlite" });

    app.post_events(&json!({"user_id": "m", "item_id": "i", "kind": "view"})).await;
    app.get("/v1/items/some-item", READ_KEY).await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kairos_http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/v1/items/{item_id}\""), "routes are labelled by template");
    assert!(!metrics.contains("some-item"), "raw paths never become labels");
    assert!(metrics.contains("kairos_events_total"));
    assert!(metrics.contains("kairos_ingest_commit_seconds"));

    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/v1/events"]["post"].is_object());
    assert!(doc["paths"]["/v1/users/{user_id}"]["delete"].is_object());
    app.stop().await;
}

async fn readiness_turns_503_while_draining(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.state.set_draining();
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    expect_problem(r, StatusCode::SERVICE_UNAVAILABLE).await;
    app.stop().await;
}

async fn readiness_waits_for_the_first_load_of_statistics_catalogue_and_model(backend: Backend) {
    let opened = OpenedStore::open(backend, |_| {}).await;
    let pool = opened.pool.clone();
    // The first refresh cannot complete while the models table is out of reach.
    pool.execute("alter table models rename to models_hidden").await;
    let app = opened.start().await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert!(r.headers().contains_key("retry-after"));
    let body = expect_problem(r, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["type"], "urn:kairos:problem:not-ready", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("statistics and catalogue not loaded yet"), "{body}");

    pool.execute("alter table models_hidden rename to models").await;
    app.wait_ready().await;
    app.stop().await;
}

async fn the_effective_config_masks_secrets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app.get("/v1/admin/config", ADMIN_KEY).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    for secret in [INGEST_KEY, READ_KEY, ADMIN_KEY, "kairos_test_"] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["settings"]["auth"]["keys"][0]["key"], "***");
    assert!(v["settings"]["tuning"]["kinds"]["view"].is_object());
    app.stop().await;
}

async fn a_config_file_change_reloads_tuning_and_an_invalid_one_is_refused(backend: Backend) {
    // A private copy of the config directory, so the test can edit local.toml.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(config_dir().join("default.toml"), dir.path().join("default.toml")).unwrap();
    let mut settings = test_settings();
    let db = match backend {
        Backend::Postgres => {
            let db = crate::helpers::TestDb::create().await;
            settings.database.url = Some(kairos::config::Secret::new(db.url.clone()));
            Some(db)
        }
        Backend::Sqlite => {
            settings.database.sqlite_path = dir.path().join("k.db");
            None
        }
    };
    // The loader re-reads files only, so the static test keys must be in a file too.
    let keys_toml = format!(
        "[auth]\nallow_dev_key = false\n[[auth.keys]]\nname = \"ingest\"\nkey = \"{INGEST_KEY}\"\nscopes = [\"ingest\"]\n\
         [[auth.keys]]\nname = \"read\"\nkey = \"{READ_KEY}\"\nscopes = [\"read\"]\n\
         [[auth.keys]]\nname = \"gateway\"\nkey = \"{GATEWAY_KEY}\"\nscopes = [\"gateway\"]\n\
         [[auth.keys]]\nname = \"admin\"\nkey = \"{ADMIN_KEY}\"\nscopes = [\"admin\"]\n"
    );
    let db_toml = match &db {
        Some(db) => format!("[database]\nurl = \"{}\"\nmax_connections = 16\n", db.url),
        None => format!("[database]\nsqlite_path = \"{}\"\n", dir.path().join("k.db").display()),
    };
    let base_local = format!("[server]\nport = 0\n{db_toml}{keys_toml}[tuning.scheduler]\nenabled = false\n");
    std::fs::write(dir.path().join("local.toml"), &base_local).unwrap();
    let source = ConfigSource { dir: dir.path().to_path_buf(), env_name: None, use_env: false };
    let loaded = kairos::config::Settings::load(&source).unwrap();
    settings.database = loaded.database.clone();
    settings.server = loaded.server.clone();
    let app = TestApp::start(loaded, source, db, tempfile::tempdir().unwrap()).await;
    assert_eq!(app.state.tuning.version(), 1);

    // A valid change to a tuning key, picked up from the file watcher.
    std::fs::write(dir.path().join("local.toml"), format!("{base_local}batch_size = 77\n")).unwrap();
    let mut waited = Duration::ZERO;
    while app.state.tuning.get().scheduler.batch_size != 77 && waited < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    if app.state.tuning.get().scheduler.batch_size != 77 {
        // No inotify in this sandbox: the admin reload re-runs the same loader.
        app.post("/v1/admin/config/reload", ADMIN_KEY, &json!({})).await;
    }
    assert_eq!(app.state.tuning.get().scheduler.batch_size, 77);
    let version = app.state.tuning.version();
    assert!(version >= 2);

    // An invalid value: refused, old value kept.
    std::fs::write(dir.path().join("local.toml"), format!("{base_local}batch_size = 0\n")).unwrap();
    let p = expect_problem(app.post("/v1/admin/config/reload", ADMIN_KEY, &json!({})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(p["detail"].as_str().unwrap().contains("tuning.scheduler.batch_size"), "{p}");
    assert_eq!(app.state.tuning.get().scheduler.batch_size, 77);

    // A change to a static section: refused.
    std::fs::write(dir.path().join("local.toml"), format!("{base_local}batch_size = 77\n[ingest]\nwriters = 7\n")).unwrap();
    let p = expect_problem(app.post("/v1/admin/config/reload", ADMIN_KEY, &json!({})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(p["detail"].as_str().unwrap().contains("ingest"), "{p}");
    assert_eq!(app.state.settings.ingest.writers, test_settings().ingest.writers);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kairos_config_reloads_total{outcome=\"refused\"}"), "{metrics}");
    app.stop().await;
}

on_both_stores!(
    requests_without_a_valid_key_or_scope_are_refused_and_store_nothing,
    health_readiness_metrics_and_openapi_are_served,
    readiness_turns_503_while_draining,
    readiness_waits_for_the_first_load_of_statistics_catalogue_and_model,
    the_effective_config_masks_secrets,
    a_config_file_change_reloads_tuning_and_an_invalid_one_is_refused,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_refuses_to_start_with_the_development_key_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let source = ConfigSource { dir: config_dir(), env_name: None, use_env: false };
    let mut settings = test_settings();
    settings.database.sqlite_path = dir.path().join("k.db");
    settings.auth.keys.clear();
    settings.auth.allow_dev_key = true;
    settings.server.host = "0.0.0.0".into();
    let Err(e) = kairos::startup::App::build(settings.clone(), source.clone()).await else {
        panic!("started with the development key on 0.0.0.0")
    };
    let message = format!("{e:#}");
    assert!(message.contains("auth.keys") && message.contains("auth.allow_dev_key") && message.contains("0.0.0.0"), "{message}");
    assert!(!dir.path().join("k.db").exists(), "refused before the store was opened");

    settings.server.host = "127.0.0.1".into();
    let app = kairos::startup::App::build(settings.clone(), source.clone()).await.expect("the development key on loopback");
    drop(app);
    settings.server.host = "0.0.0.0".into();
    settings.auth.allow_dev_key = false;
    kairos::startup::App::build(settings, source).await.expect("no development key: any address");
}
