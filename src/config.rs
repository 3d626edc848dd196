// Over 400 lines: the loader, its layers and the validation of every section belong together.
//! Configuration: `Settings` (read once at start) holding a reloadable `Tuning`.
//!
//! Layers, later wins: compiled-in defaults, `config/default.toml`, `config/{KAIROS_ENV}.toml`,
//! `config/local.toml`, then environment variables `KAIROS__SECTION__KEY` (and `DATABASE_URL`).
//! Everything is validated at load; an invalid file refuses to start (or, on reload, is
//! refused and the old value kept). Only `[tuning.*]` may change while running.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::rank::decay::Decay;
use crate::push::frequency::FrequencyConfig;
use crate::rank::learn::ModelConfig;
use crate::rank::scoring::ScoringConfig;

/// A string that never shows in `Debug`, `Display` or serialised output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Everything read at start. `tuning` is the initial value of the reloadable part.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub ingest: IngestSettings,
    pub engine: EngineSettings,
    pub telemetry: TelemetrySettings,
    pub tuning: Tuning,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// Largest accepted request body, bytes.
    pub body_limit_bytes: usize,
    /// Seconds a request may take before 503.
    pub request_timeout_secs: u64,
    /// Seconds graceful shutdown waits for in-flight work before giving up.
    pub shutdown_grace_secs: u64,
    /// Largest `limit` for `GET /v1/pushes/due`, and similar list sizes.
    pub max_page: u32,
    /// Seconds from the first byte of a request to the end of its headers; beyond, the
    /// connection is closed.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection with no request in flight may stay silent before it is closed.
    pub idle_timeout_secs: u64,
    /// Connections served at once; the next ones wait in the listen backlog.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// PostgreSQL URL; when absent the embedded SQLite store at `sqlite_path` is used.
    pub url: Option<Secret>,
    pub sqlite_path: PathBuf,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Read,
    Gateway,
    Admin,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// A label for logs and metrics; the key itself is never logged.
    pub name: String,
    pub key: Secret,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub keys: Vec<ApiKey>,
    /// With no keys configured, start with a development key holding every scope.
    pub allow_dev_key: bool,
}

/// The development key used when no key is configured and `allow_dev_key` is on.
pub const DEV_KEY: &str = "kairos-dev-key";

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Most events in one request.
    pub max_events_per_request: usize,
    /// Requests waiting for the writer; beyond it, 503 with Retry-After.
    pub queue_capacity: usize,
    /// A flush writes at most this many events in one transaction.
    pub flush_max_events: usize,
    /// A flush waits at most this long (ms) for more requests to join it.
    pub flush_interval_ms: u64,
    /// Concurrent writer tasks (each holds one connection while it commits).
    pub writers: usize,
    /// Events older than this are refused, and pruned from the log.
    pub retention_days: u32,
    /// Events further than this in the future are refused, seconds.
    pub max_future_secs: i64,
    /// Most events one user may send per minute (per replica); beyond it, 429.
    pub max_events_per_user_per_minute: u32,
}

/// Bounds of one replica's caches.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Users whose views are cached; beyond it the least recently used are dropped.
    pub history_cache_users: usize,
    /// A user's newest events read and kept; older ones are ignored.
    pub max_events_per_user: usize,
    /// Item ids seen in events before the catalogue sent them, kept at most; beyond it, events
    /// on further unknown items are left out of the statistics until the catalogue has them.
    pub max_unknown_items: usize,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// `tracing` filter directive, overridden by `RUST_LOG`.
    pub log_level: String,
}

/// How one event kind counts.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KindConfig {
    /// Weight in the interest vector; negative kinds subtract.
    pub weight: f64,
    /// Whether an event of this kind must name an item.
    pub item: bool,
}

/// Scheduler timing; reloadable.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    pub enabled: bool,
    /// Seconds between two ticks.
    pub interval_secs: f64,
    /// Due users claimed per transaction.
    pub batch_size: u32,
    /// Ticks run at once by this replica, each claiming its own batch: one tick's database
    /// writes overlap another's ranking.
    pub workers: u32,
    /// Seconds a claimed push (gateway) or a claimed user (scheduler) stays leased.
    pub lease_secs: i64,
}

/// The reloadable part of the configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    pub decay: Decay,
    /// Event kinds by name. Unknown kinds are refused at ingest.
    pub kinds: BTreeMap<String, KindConfig>,
    pub scoring: ScoringConfig,
    pub frequency: FrequencyConfig,
    pub scheduler: SchedulerConfig,
    /// When and how the learned ranker is trained and used.
    #[serde(default)]
    pub model: ModelConfig,
    /// The sequence model (off unless switched on).
    #[serde(default)]
    pub sequence: crate::rank::sequence::SequenceConfig,
}

impl Tuning {
    /// What the trainer reads of this tuning.
    pub fn training_setup<'a>(&'a self, kinds: &'a crate::rank::profile::KindWeights) -> crate::rank::learn::Setup<'a> {
        crate::rank::learn::Setup { decay: &self.decay, kinds, scoring: &self.scoring, model: &self.model, sequence: None, sequence_pool: self.sequence.candidates }
    }

    pub fn kind_weights(&self) -> crate::rank::profile::KindWeights {
        crate::rank::profile::KindWeights::new(self.kinds.iter().map(|(k, v)| (k.as_str(), v.weight, v.item)))
    }
}

/// A refused configuration: which key and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Read(#[from] ::config::ConfigError),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("{key} cannot change while running (restart to change it)")]
    NotReloadable { key: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), reason: reason.into() }
}

/// Where to read configuration from.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub dir: PathBuf,
    /// `KAIROS_ENV` (e.g. `production`) selects `config/{env}.toml` when present.
    pub env_name: Option<String>,
    /// Read `KAIROS__*` and `DATABASE_URL` environment variables (off in tests).
    pub use_env: bool,
}

impl ConfigSource {
    pub fn from_env(dir: impl Into<PathBuf>) -> Self {
        ConfigSource { dir: dir.into(), env_name: std::env::var("KAIROS_ENV").ok(), use_env: true }
    }

    /// The files that feed the configuration and exist, in order, and the environment when
    /// read: what a report says its tuning came from.
    pub fn layers(&self) -> Vec<String> {
        let mut out: Vec<String> = self.files().into_iter().filter(|f| f.exists()).map(|f| f.display().to_string()).collect();
        if self.use_env && std::env::vars().any(|(k, _)| k.starts_with("KAIROS__TUNING__")) {
            out.push("KAIROS__TUNING__* environment variables".into());
        }
        out
    }

    /// The files that feed the configuration, in order; watched for reload.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.dir.join("default.toml")];
        if let Some(env) = &self.env_name {
            files.push(self.dir.join(format!("{env}.toml")));
        }
        files.push(self.dir.join("local.toml"));
        files
    }
}

impl Settings {
    /// Loads every layer and validates the result.
    pub fn load(source: &ConfigSource) -> Result<Settings, ConfigError> {
        let default_file = source.dir.join("default.toml");
        if !default_file.exists() {
            return Err(invalid(
                "config",
                format!("{} not found (run from the repository root or pass --config-dir)", default_file.display()),
            ));
        }
        let mut builder = ::config::Config::builder();
        for (i, file) in source.files().into_iter().enumerate() {
            builder = builder.add_source(::config::File::from(file).required(i == 0));
        }
        if source.use_env {
            builder = builder.add_source(
                ::config::Environment::with_prefix("KAIROS")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            );
            if let Ok(url) = std::env::var("DATABASE_URL")
                && !url.is_empty()
            {
                builder = builder.set_override("database.url", url)?;
            }
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads from a TOML string only (tests and `check-config` of a single file).
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let settings: Settings = ::config::Config::builder()
            .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.body_limit_bytes < 1024 {
            return Err(invalid("server.body_limit_bytes", "must be at least 1024"));
        }
        if s.request_timeout_secs == 0 {
            return Err(invalid("server.request_timeout_secs", "must be > 0"));
        }
        if s.max_page == 0 {
            return Err(invalid("server.max_page", "must be > 0"));
        }
        if s.header_read_timeout_secs == 0 {
            return Err(invalid("server.header_read_timeout_secs", "must be > 0"));
        }
        if s.idle_timeout_secs == 0 {
            return Err(invalid("server.idle_timeout_secs", "must be > 0"));
        }
        if s.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be > 0"));
        }
        let d = &self.database;
        if d.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be > 0"));
        }
        if let Some(url) = &d.url
            && !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://"))
        {
            return Err(invalid("database.url", "must be a postgres:// URL"));
        }
        for (i, k) in self.auth.keys.iter().enumerate() {
            if k.key.expose().len() < 16 {
                return Err(invalid(&format!("auth.keys[{i}].key"), "must be at least 16 characters"));
            }
            if k.scopes.is_empty() {
                return Err(invalid(&format!("auth.keys[{i}].scopes"), "must name at least one scope"));
            }
        }
        let e = &self.engine;
        for (key, v) in [
            ("engine.history_cache_users", e.history_cache_users),
            ("engine.max_events_per_user", e.max_events_per_user),
            ("engine.max_unknown_items", e.max_unknown_items),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be > 0"));
            }
        }
        if self.ingest.max_events_per_user_per_minute == 0 {
            return Err(invalid("ingest.max_events_per_user_per_minute", "must be > 0"));
        }
        let g = &self.ingest;
        if g.max_events_per_request == 0 || g.max_events_per_request > 10_000 {
            return Err(invalid("ingest.max_events_per_request", "must be in 1..=10000"));
        }
        if g.queue_capacity == 0 {
            return Err(invalid("ingest.queue_capacity", "must be > 0"));
        }
        if g.flush_max_events == 0 {
            return Err(invalid("ingest.flush_max_events", "must be > 0"));
        }
        if g.writers == 0 || g.writers > 64 {
            return Err(invalid("ingest.writers", "must be in 1..=64"));
        }
        if g.retention_days == 0 {
            return Err(invalid("ingest.retention_days", "must be > 0"));
        }
        if g.max_future_secs < 0 {
            return Err(invalid("ingest.max_future_secs", "must be >= 0"));
        }
        if self.telemetry.log_level.trim().is_empty() {
            return Err(invalid("telemetry.log_level", "must not be empty"));
        }
        self.refuse_exposed_dev_key()?;
        self.tuning.validate()
    }

    /// The development key (every scope, a published secret) is active only when no key is
    /// configured and `auth.allow_dev_key` is on; it may then serve only on a loopback
    /// address, where no other machine can reach it.
    pub fn refuse_exposed_dev_key(&self) -> Result<(), ConfigError> {
        if !(self.auth.keys.is_empty() && self.auth.allow_dev_key) {
            return Ok(());
        }
        let host = &self.server.host;
        if host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
            return Ok(());
        }
        Err(invalid(
            "auth.keys",
            format!(
                "no API key is configured and auth.allow_dev_key = true, so the development key would \
                 serve on server.host {host:?}, which is not a loopback address: configure auth.keys \
                 (see config/default.toml) and/or set auth.allow_dev_key = false, or bind 127.0.0.1"
            ),
        ))
    }
}

impl Tuning {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.decay.validate().map_err(|r| invalid("tuning.decay", r))?;
        if self.kinds.is_empty() {
            return Err(invalid("tuning.kinds", "must define at least one event kind"));
        }
        for (name, k) in &self.kinds {
            if crate::domain::check_id(name).is_err() || name.len() > 64 {
                return Err(invalid(&format!("tuning.kinds.{name}"), "kind names are 1..=64 bytes"));
            }
            if !k.weight.is_finite() {
                return Err(invalid(&format!("tuning.kinds.{name}.weight"), "must be a finite number"));
            }
        }
        self.scoring.validate().map_err(|r| invalid("tuning.scoring", r))?;
        self.frequency.validate().map_err(|r| invalid("tuning.frequency", r))?;
        self.model.validate().map_err(|r| invalid("tuning.model", r))?;
        self.sequence.validate().map_err(|r| invalid("tuning.sequence", r))?;
        for k in &self.model.target_kinds {
            if !self.kinds.get(k).is_some_and(|c| c.item) {
                return Err(invalid("tuning.model.target_kinds", format!("{k:?} is not a configured kind that names an item")));
            }
        }
        let s = &self.scheduler;
        if !(s.interval_secs > 0.0 && s.interval_secs.is_finite()) {
            return Err(invalid("tuning.scheduler.interval_secs", "must be > 0"));
        }
        if s.batch_size == 0 {
            return Err(invalid("tuning.scheduler.batch_size", "must be > 0"));
        }
        if !(1..=16).contains(&s.workers) {
            return Err(invalid("tuning.scheduler.workers", "must be in 1..=16"));
        }
        if s.lease_secs <= 0 {
            return Err(invalid("tuning.scheduler.lease_secs", "must be > 0"));
        }
        Ok(())
    }
}

/// Compares two loaded settings and names the first non-tuning section that differs.
pub fn non_reloadable_change(old: &Settings, new: &Settings) -> Option<&'static str> {
    if old.server != new.server {
        Some("server")
    } else if old.database != new.database {
        Some("database")
    } else if old.auth != new.auth {
        Some("auth")
    } else if old.ingest != new.ingest {
        Some("ingest")
    } else if old.engine != new.engine {
        Some("engine")
    } else if old.telemetry != new.telemetry {
        Some("telemetry")
    } else {
        None
    }
}

/// The live tuning: readers take a cheap snapshot; reloads swap it atomically.
pub struct LiveTuning {
    current: ArcSwap<Tuning>,
    version: AtomicU64,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReloadOutcome {
    Applied,
    Unchanged,
}

impl LiveTuning {
    pub fn new(tuning: Tuning) -> Self {
        LiveTuning { current: ArcSwap::from_pointee(tuning), version: AtomicU64::new(1) }
    }

    pub fn get(&self) -> Arc<Tuning> {
        self.current.load_full()
    }

    /// Monotonic version, bumped by each applied reload; reported with recommendations.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Swaps in a validated tuning and bumps the version.
    pub fn apply(&self, tuning: Tuning) {
        self.current.store(Arc::new(tuning));
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Re-runs the loader; applies the new tuning only when the whole file is valid and no
    /// static key changed. On error the old tuning stays.
    pub fn reload(&self, source: &ConfigSource, started_with: &Settings) -> Result<ReloadOutcome, ConfigError> {
        let outcome = Settings::load(source).and_then(|new| {
            if let Some(section) = non_reloadable_change(started_with, &new) {
                return Err(ConfigError::NotReloadable { key: section.to_string() });
            }
            // The statistics are bucketed with these settings: changing them needs a rebuild.
            if new.tuning.scoring.stats != self.get().scoring.stats {
                return Err(ConfigError::NotReloadable { key: "tuning.scoring.stats".to_string() });
            }
            if *self.get() == new.tuning {
                return Ok(ReloadOutcome::Unchanged);
            }
            self.apply(new.tuning);
            Ok(ReloadOutcome::Applied)
        });
        let label = match &outcome {
            Ok(ReloadOutcome::Applied) => "applied",
            Ok(ReloadOutcome::Unchanged) => "unchanged",
            Err(_) => "refused",
        };
        metrics::counter!("kairos_config_reloads_total", "outcome" => label).increment(1);
        match &outcome {
            Ok(o) => tracing::info!(outcome = ?o, version = self.version(), "configuration reloaded"),
            Err(e) => tracing::error!(error = %e, "configuration reload refused; keeping the old configuration"),
        }
        outcome
    }
}

/// The shipped default configuration directory (relative to the working directory).
pub fn default_dir() -> &'static Path {
    Path::new("config")
}

#[cfg(test)]
mod tests;
