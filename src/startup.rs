//! Application start-up and graceful shutdown.
//!
//! `App::build` opens the store, runs migrations, starts the background tasks and binds the
//! socket (port 0 picks a free one, so tests never guess), returning the bound port.
//! `App::run_until_stopped` serves until the shutdown future resolves, then: `/readyz`
//! answers 503, the listener stops accepting, in-flight requests finish, the ingest queue
//! is flushed, background tasks stop between jobs, and the pool closes — within a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState, Inner};
use crate::auth::KeyRing;
use crate::config::{ConfigSource, DEV_KEY, LiveTuning, Settings};
use crate::ingest::Ingestor;
use crate::engine::Engine;
use crate::engine::trainer::Trainer;
use crate::push::scheduler::Scheduler;
use crate::store::{self, Store};

pub struct App {
    listener: TcpListener,
    pub addr: SocketAddr,
    pub state: AppState,
    tracker: TaskTracker,
    background: CancellationToken,
}

impl App {
    pub async fn build(settings: Settings, config_source: ConfigSource) -> anyhow::Result<App> {
        settings.refuse_exposed_dev_key()?;
        let store = store::connect(&settings.database).await?;
        Self::build_with_store(settings, config_source, store).await
    }

    pub async fn build_with_store(settings: Settings, config_source: ConfigSource, store: Arc<dyn Store>) -> anyhow::Result<App> {
        settings.refuse_exposed_dev_key()?;
        let prometheus = crate::telemetry::prometheus();
        match &settings.database.url {
            Some(_) => tracing::info!(backend = store.backend(), "store: PostgreSQL"),
            None => tracing::info!(
                backend = store.backend(),
                path = %settings.database.sqlite_path.display(),
                "store: embedded SQLite (set DATABASE_URL for PostgreSQL)"
            ),
        }
        let keys = KeyRing::from_settings(&settings.auth);
        if keys.dev_key_active {
            tracing::warn!(
                "NO API KEYS CONFIGURED: a development key '{DEV_KEY}' with every scope is active (on a \
                 loopback address only). Configure [[auth.keys]] and set auth.allow_dev_key = false before \
                 exposing this service."
            );
        }
        let tuning = Arc::new(LiveTuning::new(settings.tuning.clone()));
        let tracker = TaskTracker::new();
        let background = CancellationToken::new();
        let clock = crate::clock::Clock::default();
        let engine = Arc::new(Engine::new(store.clone(), tuning.clone(), &settings.engine, clock.clone()));
        let ingestor = Ingestor::start(store.clone(), &settings.ingest, engine.clone(), &tracker, background.clone());
        let scheduler = Arc::new(Scheduler::new(store.clone(), engine.clone(), tuning.clone(), clock.clone()));
        tracker.spawn(scheduler.clone().run(background.clone()));
        tracker.spawn(engine.clone().run_refresher(background.clone()));
        let trainer = Arc::new(Trainer::new(engine.clone(), store.clone(), tuning.clone(), clock.clone()));
        tracker.spawn(trainer.clone().run(background.clone()));

        let addr: SocketAddr = format!("{}:{}", settings.server.host, settings.server.port)
            .parse()
            .with_context(|| format!("server.host {:?} is not an IP address", settings.server.host))?;
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;

        let state = AppState::new(Inner {
            store,
            settings,
            config_source,
            tuning,
            keys,
            ingestor,
            engine,
            scheduler,
            trainer,
            clock,
            draining: AtomicBool::new(false),
            prometheus,
        });
        spawn_config_watcher(&state, &tracker, background.clone());
        tracker.spawn(retention(state.clone(), background.clone()));
        Ok(App { listener, addr, state, tracker, background })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until `shutdown` resolves, then drains (see the module comment).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let App { listener, addr, state, tracker, background } = self;
        tracing::info!(%addr, "kairos listening");
        let router = api::router(state.clone());
        let drain_state = state.clone();
        let stop = async move {
            shutdown.await;
            tracing::info!("shutdown requested: draining");
            drain_state.set_draining();
        };
        let limits = crate::server::Limits::from_settings(&state.settings.server);
        crate::server::serve(listener, router, limits, stop).await;
        tracing::info!("HTTP server stopped; flushing the ingest queue and stopping background tasks");
        background.cancel();
        tracker.close();
        let grace = Duration::from_secs(state.settings.server.shutdown_grace_secs);
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::error!(still_running = tracker.len(), "background tasks did not stop within the grace period");
        }
        tracing::info!("kairos stopped");
        Ok(())
    }
}

/// How often the retention task prunes the store.
const RETENTION_EVERY: Duration = Duration::from_secs(600);
/// The user change log is kept this long (replicas read it every second).
const CHANGE_LOG_KEPT: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Every [`RETENTION_EVERY`]: events older than `ingest.retention_days` and old user
/// changes leave the store (every replica does it; deleting twice is harmless).
async fn retention(state: AppState, stop: CancellationToken) {
    loop {
        match prune_once(&state).await {
            Ok(n) if n > 0 => tracing::info!(events = n, "expired events pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "pruning the store failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(RETENTION_EVERY) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One pass of the retention task; returns the events pruned.
pub async fn prune_once(state: &AppState) -> crate::store::StoreResult<u64> {
    let now = state.clock.now();
    let events = state.store.prune_events(now - chrono::TimeDelta::days(i64::from(state.settings.ingest.retention_days))).await?;
    state.store.prune_user_changes(now - CHANGE_LOG_KEPT).await?;
    Ok(events)
}

/// Reloads the tuning when a config file changes or on SIGHUP.
fn spawn_config_watcher(state: &AppState, tracker: &TaskTracker, stop: CancellationToken) {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(4);
    let files = state.config_source.files();
    let watch_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && (ev.kind.is_modify() || ev.kind.is_create())
            && ev.paths.iter().any(|p| files.iter().any(|f| p.ends_with(f.file_name().unwrap_or_default())))
        {
            let _ = watch_tx.try_send(());
        }
    });
    let watcher = match watcher {
        Ok(mut w) => match w.watch(&state.config_source.dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config directory; reload with SIGHUP or the admin API");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "no file watcher; reload with SIGHUP or the admin API");
            None
        }
    };
    #[cfg(unix)]
    {
        let hup_tx = tx.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP");
                return;
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => { let _ = hup_tx.try_send(()); }
                    () = stop.cancelled() => return,
                }
            }
        });
    }
    drop(tx);
    let state = state.clone();
    tracker.spawn(async move {
        let _watcher = watcher; // dropped (and unwatched) when the task ends
        loop {
            tokio::select! {
                got = rx.recv() => {
                    if got.is_none() { return; }
                    // Editors write in several steps: let the file settle, coalesce events.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while rx.try_recv().is_ok() {}
                    let _ = state.tuning.reload(&state.config_source, &state.settings);
                }
                () = stop.cancelled() => return,
            }
        }
    });
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
