//! Test harness: the real app on port 0 against a fresh PostgreSQL database (dropped
//! afterwards) or a fresh SQLite file, spoken to over HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use kairos::config::{ApiKey, ConfigSource, Scope, Secret, Settings};
use kairos::store::Store;
use reqwest::{Response, StatusCode};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Runs a test body once per backend: `on_both_stores!(my_test);` makes
/// `my_test::postgres` and `my_test::sqlite` from `async fn my_test(backend: Backend)`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name($crate::helpers::Backend::Postgres).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name($crate::helpers::Backend::Sqlite).await }
        }
    )*};
}

pub const INGEST_KEY: &str = "test-ingest-key-000001";
pub const READ_KEY: &str = "test-read-key-00000001";
pub const GATEWAY_KEY: &str = "test-gateway-key-00001";
pub const ADMIN_KEY: &str = "test-admin-key-0000001";

pub fn admin_url() -> String {
    std::env::var("KAIROS_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The shipped configuration with test keys, port 0 and no environment overrides.
pub fn test_settings() -> Settings {
    let source = ConfigSource { dir: config_dir(), env_name: None, use_env: false };
    let mut s = Settings::load(&source).expect("shipped config is valid");
    s.server.port = 0;
    s.auth.allow_dev_key = false;
    s.auth.keys = vec![
        ApiKey { name: "ingest".into(), key: Secret::new(INGEST_KEY), scopes: vec![Scope::Ingest] },
        ApiKey { name: "read".into(), key: Secret::new(READ_KEY), scopes: vec![Scope::Read] },
        ApiKey { name: "gateway".into(), key: Secret::new(GATEWAY_KEY), scopes: vec![Scope::Gateway] },
        ApiKey { name: "admin".into(), key: Secret::new(ADMIN_KEY), scopes: vec![Scope::Admin] },
    ];
    s.tuning.scheduler.enabled = false;
    // Holdout membership is covered by the frequency unit tests; here every user may get pushes.
    s.tuning.frequency.holdout_share = 0.0;
    s
}

/// A fresh PostgreSQL database, dropped when this value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("kairos_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        let pool = sqlx::PgPool::connect(&admin).await.expect("PostgreSQL reachable (see scripts/test)");
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}"))).execute(&pool).await.unwrap();
        pool.close().await;
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
        TestDb { url: format!("{base}/{name}"), name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context: use a short-lived runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok(pool) = sqlx::PgPool::connect(&admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("drop database if exists {name} with (force)")))
                        .execute(&pool)
                        .await;
                }
            });
        })
        .join();
    }
}

/// The pool under a test's store, for tests that take the store away.
#[derive(Clone)]
pub enum StorePool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl StorePool {
    pub async fn close(&self) {
        match self {
            StorePool::Postgres(p) => p.close().await,
            StorePool::Sqlite(p) => p.close().await,
        }
    }

    /// Runs one statement (the same SQL on both stores).
    pub async fn execute(&self, sql: &'static str) {
        match self {
            StorePool::Postgres(p) => sqlx::query(sql).execute(p).await.map(drop),
            StorePool::Sqlite(p) => sqlx::query(sql).execute(p).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A migrated store opened by the test, before the app starts on it.
pub struct OpenedStore {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub pool: StorePool,
    db: Option<TestDb>,
    dir: tempfile::TempDir,
}

impl OpenedStore {
    pub async fn open(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> OpenedStore {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings();
        let db = match backend {
            Backend::Postgres => Some(TestDb::create().await),
            Backend::Sqlite => None,
        };
        if let Some(db) = &db {
            settings.database.url = Some(Secret::new(db.url.clone()));
        }
        settings.database.sqlite_path = dir.path().join("kairos.db");
        adjust(&mut settings);
        let (store, pool): (Arc<dyn Store>, StorePool) = match &settings.database.url {
            Some(url) => {
                let store = kairos::store::PgStore::connect(url.expose(), &settings.database).await.expect("PostgreSQL store");
                store.migrate().await.unwrap();
                let pool = StorePool::Postgres(store.pool().clone());
                (Arc::new(store), pool)
            }
            None => {
                let store = kairos::store::SqliteStore::open(&settings.database.sqlite_path, &settings.database).await.expect("SQLite store");
                store.migrate().await.unwrap();
                let pool = StorePool::Sqlite(store.pool().clone());
                (Arc::new(store), pool)
            }
        };
        OpenedStore { settings, store, pool, db, dir }
    }

    /// Starts the app on this store.
    pub async fn start(self) -> TestApp {
        let source = ConfigSource { dir: config_dir(), env_name: None, use_env: false };
        let app = kairos::startup::App::build_with_store(self.settings, source, self.store).await.expect("app builds");
        TestApp::serve(app, self.db, self.dir).await
    }
}

pub struct Stopped {
    _db: Option<TestDb>,
    _dir: tempfile::TempDir,
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub state: kairos::api::AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    db: Option<TestDb>,
    dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings();
        let db = match backend {
            Backend::Postgres => {
                let db = TestDb::create().await;
                settings.database.url = Some(Secret::new(db.url.clone()));
                settings.database.max_connections = 8;
                Some(db)
            }
            Backend::Sqlite => {
                settings.database.sqlite_path = dir.path().join("kairos.db");
                None
            }
        };
        adjust(&mut settings);
        let source = ConfigSource { dir: config_dir(), env_name: None, use_env: false };
        Self::start(settings, source, db, dir).await
    }

    pub async fn start(settings: Settings, source: ConfigSource, db: Option<TestDb>, dir: tempfile::TempDir) -> TestApp {
        let app = kairos::startup::App::build(settings, source).await.expect("app builds");
        let app = Self::serve(app, db, dir).await;
        app.wait_ready().await;
        app
    }

    /// Like `spawn`, on a store the test opened itself (to close its pool, say).
    pub async fn spawn_on(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> (TestApp, StorePool) {
        let opened = OpenedStore::open(backend, adjust).await;
        let pool = opened.pool.clone();
        (opened.start().await, pool)
    }

    async fn serve(app: kairos::startup::App, db: Option<TestDb>, dir: tempfile::TempDir) -> TestApp {
        let base = format!("http://{}", app.addr);
        let store = app.state.store.clone();
        let state = app.state.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        TestApp { base, client: reqwest::Client::new(), store, state, shutdown: Some(tx), server: Some(server), db, dir }
    }

    /// Stops the server gracefully and waits for it. The returned value keeps the database
    /// and directory alive for checks after the stop.
    pub async fn stop(mut self) -> Stopped {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.await.unwrap().unwrap();
        }
        Stopped { _db: self.db.take(), _dir: self.dir }
    }

    /// A second replica: another app (own pool, caches, scheduler) on the same store.
    pub async fn replica(&self) -> TestApp {
        let settings = self.state.settings.clone();
        let source = ConfigSource { dir: config_dir(), env_name: None, use_env: false };
        let app = kairos::startup::App::build(settings, source).await.expect("replica builds");
        let base = format!("http://{}", app.addr);
        let (store, state) = (app.state.store.clone(), app.state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        let dir = tempfile::tempdir().unwrap();
        TestApp { base, client: reqwest::Client::new(), store, state, shutdown: Some(tx), server: Some(server), db: None, dir }
    }

    /// Waits until `/readyz` answers 200 (the first refresh from the store has completed);
    /// panics if that takes longer than a minute (a hang guard, not a speed check).
    pub async fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let r = self.client.get(self.url("/readyz")).send().await.unwrap();
            if r.status() == StatusCode::OK {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "not ready after a minute: {}", r.text().await.unwrap_or_default());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).bearer_auth(key).json(body).send().await.unwrap()
    }

    pub async fn put(&self, path: &str, key: &str, body: &Value) -> Response {
        self.client.put(self.url(path)).bearer_auth(key).json(body).send().await.unwrap()
    }

    pub async fn get(&self, path: &str, key: &str) -> Response {
        self.client.get(self.url(path)).bearer_auth(key).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str, key: &str) -> Response {
        self.client.delete(self.url(path)).bearer_auth(key).send().await.unwrap()
    }

    pub async fn post_events(&self, body: &Value) -> Response {
        self.post("/v1/events", INGEST_KEY, body).await
    }

    /// The URL of the test's PostgreSQL database (`None` on SQLite).
    pub fn postgres_url(&self) -> Option<&str> {
        self.db.as_ref().map(|db| db.url.as_str())
    }

    pub async fn event_count(&self) -> i64 {
        self.store.count_events().await.unwrap()
    }
}

/// Asserts a problem+json refusal with `status`, and returns its body.
pub async fn expect_problem(response: Response, status: StatusCode) -> Value {
    let got = response.status();
    let ct = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "body: {body}");
    assert_eq!(ct, "application/problem+json", "body: {body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"].as_str().unwrap().starts_with("urn:kairos:problem:"));
    body
}

/// The `field` of each entry in a problem's `errors`.
pub fn problem_fields(body: &Value) -> Vec<String> {
    body["errors"].as_array().map(|a| a.iter().map(|e| e["field"].as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

/// Stores `params` as a model of `kind`, deployed now, straight into the app's store (as a
/// corrupt or foreign trainer would). Returns its version.
pub async fn store_deployed_model(app: &TestApp, kind: &str, params: &str) -> i64 {
    let now = app.state.clock.now();
    let row = kairos::store::NewModel {
        kind: kind.into(),
        created_at: now,
        window_from: now,
        window_to: now,
        deploy: true,
        metrics: serde_json::json!({}),
        params: params.into(),
    };
    app.store.insert_model(&row).await.unwrap()
}
