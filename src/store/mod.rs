//! Storage: one trait, a PostgreSQL backend for production and an embedded SQLite backend
//! for one machine. All SQL of the service lives under this module.

mod postgres;
mod sqlite;
mod unavailable;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::config::DatabaseSettings;
use crate::domain::{Event, Item, User};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What `DELETE /v1/users/{id}` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Erased {
    pub users: u64,
    pub events: u64,
    pub push_states: u64,
    pub pushes: u64,
}

impl Erased {
    pub fn anything(&self) -> bool {
        self.users + self.events + self.push_states + self.pushes > 0
    }
}

/// An event with its position in the log, for incremental consumers.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: i64,
    pub event: Event,
}

/// Where a push is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PushStatus {
    /// In the outbox, waiting for its send time.
    Planned,
    /// Handed to the gateway; offered again when the lease ends unacknowledged.
    Leased,
    Delivered,
    Failed,
    /// Not delivered before `expires_at`.
    Expired,
    /// Withdrawn (the user unsubscribed or lost consent).
    Cancelled,
}

impl PushStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PushStatus::Planned => "planned",
            PushStatus::Leased => "leased",
            PushStatus::Delivered => "delivered",
            PushStatus::Failed => "failed",
            PushStatus::Expired => "expired",
            PushStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "planned" => PushStatus::Planned,
            "leased" => PushStatus::Leased,
            "delivered" => PushStatus::Delivered,
            "failed" => PushStatus::Failed,
            "expired" => PushStatus::Expired,
            "cancelled" => PushStatus::Cancelled,
            other => return Err(StoreError::Corrupt(format!("push status {other:?}"))),
        })
    }
}

/// A push in the outbox.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Push {
    pub push_id: Uuid,
    pub user_id: String,
    pub item_id: String,
    pub send_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub score: f64,
    /// Why this item, from scoring.
    #[schema(value_type = Object)]
    pub reasons: serde_json::Value,
    pub status: PushStatus,
    pub leased_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A user's stored push state row.
#[derive(Debug, Clone)]
pub struct PushStateRow {
    pub user_id: String,
    /// Guards read-modify-write: a write names the version it read.
    pub version: i64,
    pub next_due_at: DateTime<Utc>,
    /// The frequency policy's `PushState` as JSON; `None` before the first plan.
    pub state: Option<serde_json::Value>,
}

/// What one scheduler decision writes for one claimed user.
#[derive(Debug, Clone)]
pub struct UserPlan {
    pub user_id: String,
    /// The version read at claim time.
    pub version: i64,
    /// The new `PushState`, serialised to JSON.
    pub state: String,
    pub next_due_at: DateTime<Utc>,
    pub push: Option<Push>,
    /// The `Decision`, serialised to JSON.
    pub decision: String,
}

/// What committing a batch of plans did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanCommit {
    pub pushes: u64,
    /// Plans dropped because the row changed since the claim (feedback) or the claim was lost.
    pub conflicts: u64,
    /// Pushes not written because the user already has one at that slot.
    pub slot_taken: u64,
}

/// Feedback to record together with the new state it produced.
#[derive(Debug, Clone)]
pub struct FeedbackWrite {
    pub push_id: Uuid,
    pub kind: String,
    pub ts: DateTime<Utc>,
    pub user_id: String,
    pub expected_version: i64,
    pub state: serde_json::Value,
    /// New status of the push, when the feedback changes it (delivered, failed).
    pub push_status: Option<PushStatus>,
    /// Withdraw the user's planned pushes (unsubscribe).
    pub cancel_open_pushes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackOutcome {
    Applied,
    /// The same (push, kind) was recorded before: nothing changed.
    Duplicate,
    /// The state changed since it was read: read again and retry.
    Conflict,
}

/// A model to store.
#[derive(Debug, Clone)]
pub struct NewModel {
    /// `ranker` (the learned ranker).
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    /// Make it the model in force now (it passed the deployment rule).
    pub deploy: bool,
    /// What the training measured, as JSON.
    pub metrics: serde_json::Value,
    /// The model's parameters (its JSON document).
    pub params: String,
}

/// A stored model, without its parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ModelRow {
    pub version: i64,
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    /// When it was last made the model in force (never: `null`).
    pub deployed_at: Option<DateTime<Utc>>,
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
    /// Size of the stored parameters, bytes.
    pub params_bytes: i64,
}

/// The learned models and the leases that let one replica train at a time.
#[async_trait]
pub trait ModelStore: Send + Sync {
    /// Stores a model (and deploys it when asked); returns its version.
    async fn insert_model(&self, model: &NewModel) -> StoreResult<i64>;

    /// The latest `limit` models of `kind`, newest first.
    async fn list_models(&self, kind: &str, limit: i64) -> StoreResult<Vec<ModelRow>>;

    /// A model's parameters.
    async fn model_params(&self, version: i64) -> StoreResult<Option<String>>;

    /// The version in force for `kind`: the pinned one, else the latest deployed; with
    /// whether it is pinned.
    async fn model_in_force(&self, kind: &str) -> StoreResult<Option<(i64, bool)>>;

    /// Makes `version` the latest deployment of its kind (a rollback or roll-forward);
    /// false when there is no such version.
    async fn deploy_model(&self, version: i64, at: DateTime<Utc>) -> StoreResult<bool>;

    /// Pins `version` for `kind` (`None`: unpins); false when the version is not of that kind.
    async fn pin_model(&self, kind: &str, version: Option<i64>) -> StoreResult<bool>;

    /// Takes (or renews) the lease `name` for `holder` until `until`, unless another holder
    /// has it beyond `now`; true when `holder` now has it.
    async fn try_lease(&self, name: &str, holder: Uuid, until: DateTime<Utc>, now: DateTime<Utc>) -> StoreResult<bool>;

    /// Gives the lease back (when `holder` has it).
    async fn release_lease(&self, name: &str, holder: Uuid) -> StoreResult<()>;

    /// Events with `from <= ts < to` logged after `after_seq`, in log order, at most `limit`
    /// (the trainer's window, paged).
    async fn events_between(&self, from: DateTime<Utc>, to: DateTime<Utc>, after_seq: i64, limit: i64) -> StoreResult<Vec<LoggedEvent>>;

    /// How many events have `from <= ts < to`.
    async fn count_events_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<i64>;
}

#[async_trait]
pub trait Store: ModelStore + Send + Sync + 'static {
    /// `postgres` or `sqlite`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Writes events in one transaction with one statement; returns the ids that were new
    /// (the others were already stored). Events must have distinct ids.
    async fn insert_events(&self, events: &[Event]) -> StoreResult<Vec<Uuid>>;

    /// Number of stored events (tests, admin).
    async fn count_events(&self) -> StoreResult<i64>;

    /// A user's events with `ts >= since`, oldest first.
    async fn user_events(&self, user_id: &str, since: DateTime<Utc>) -> StoreResult<Vec<Event>>;

    /// Events logged after `after_seq`, in log order, at most `limit`, received at least
    /// `settle` ago (so a transaction still in flight cannot commit a lower seq later).
    async fn events_after(&self, after_seq: i64, limit: i64, settle: chrono::Duration) -> StoreResult<Vec<LoggedEvent>>;

    /// Deletes events older than `before`; returns how many.
    async fn prune_events(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    /// Inserts or replaces items, in one transaction.
    async fn upsert_items(&self, items: &[Item]) -> StoreResult<()>;

    async fn get_item(&self, item_id: &str) -> StoreResult<Option<Item>>;

    /// Items whose `(change time, item id)` comes after `after`, in that order, at most
    /// `limit`, with each item's change time (keyset paging for the catalog refresh).
    async fn items_changed_after(&self, after: (DateTime<Utc>, &str), limit: i64) -> StoreResult<Vec<(Item, DateTime<Utc>)>>;

    async fn count_items(&self) -> StoreResult<i64>;

    async fn upsert_user(&self, user: &User) -> StoreResult<()>;

    async fn get_user(&self, user_id: &str) -> StoreResult<Option<User>>;

    /// The users among `user_ids` that exist (one query; the scheduler's batch read).
    async fn get_users(&self, user_ids: &[String]) -> StoreResult<Vec<User>>;

    /// Events with `ts >= since` of every user in `user_ids`, oldest first (one query).
    async fn users_events(&self, user_ids: &[String], since: DateTime<Utc>) -> StoreResult<Vec<Event>>;

    /// Erases every row about the user in one transaction.
    async fn delete_user(&self, user_id: &str) -> StoreResult<Erased>;

    // ---- push state and outbox ----

    /// Creates push-state rows (due at `now`) for users that have none.
    async fn ensure_push_states(&self, user_ids: &[String], now: DateTime<Utc>) -> StoreResult<()>;

    async fn get_push_state(&self, user_id: &str) -> StoreResult<Option<PushStateRow>>;

    /// Claims up to `limit` users due at `now` whose rows are not leased to another replica
    /// (`FOR UPDATE SKIP LOCKED` on PostgreSQL; one writer at a time on SQLite), leasing
    /// them under `token` until `lease_until`.
    async fn claim_due_users(&self, now: DateTime<Utc>, limit: i64, token: Uuid, lease_until: DateTime<Utc>) -> StoreResult<Vec<PushStateRow>>;

    /// Writes the plans of one tick in one transaction: pushes into the outbox, states,
    /// decisions; releases the claims (`claimed`: every user the tick claimed, with or
    /// without a plan). A plan whose row changed since the claim is dropped.
    async fn commit_plans(&self, token: Uuid, claimed: &[String], plans: &[UserPlan], now: DateTime<Utc>) -> StoreResult<PlanCommit>;

    /// The user's latest `limit` logged decisions (as written by `commit_plans`), newest first.
    async fn recent_decisions(&self, user_id: &str, limit: i64) -> StoreResult<Vec<serde_json::Value>>;

    /// Pushes planned at or after `since`, across all users, counted up to `cap` (the global
    /// rate limit needs no more, and counting stays cheap however many there are).
    async fn count_pushes_since(&self, since: DateTime<Utc>, cap: i64) -> StoreResult<i64>;

    /// Marks open pushes past their expiry as expired; returns them.
    async fn expire_pushes(&self, now: DateTime<Utc>) -> StoreResult<Vec<Push>>;

    /// Leases up to `limit` pushes due at `now` (planned, or leased with the lease run out).
    async fn claim_due_pushes(&self, now: DateTime<Utc>, limit: i64, lease_until: DateTime<Utc>) -> StoreResult<Vec<Push>>;

    async fn get_push(&self, push_id: Uuid) -> StoreResult<Option<Push>>;

    /// A user's most recent pushes, newest first.
    async fn user_pushes(&self, user_id: &str, limit: i64) -> StoreResult<Vec<Push>>;

    /// Records feedback idempotently with the state it produced, in one transaction.
    async fn record_feedback(&self, write: &FeedbackWrite, now: DateTime<Utc>) -> StoreResult<FeedbackOutcome>;
}

/// Opens the configured store and runs its migrations.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Arc<dyn Store>> {
    use anyhow::Context;
    match &settings.url {
        Some(url) => {
            let store = PgStore::connect(url.expose(), settings).await.context("connecting to PostgreSQL")?;
            store.migrate().await.context("running PostgreSQL migrations")?;
            Ok(Arc::new(store))
        }
        None => {
            let store = SqliteStore::open(&settings.sqlite_path, settings).await.with_context(|| {
                format!("opening the embedded SQLite store at {}", settings.sqlite_path.display())
            })?;
            store.migrate().await.context("running SQLite migrations")?;
            Ok(Arc::new(store))
        }
    }
}

/// Splits a stored category path back into its segments.
pub(crate) fn split_category(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

pub(crate) fn parse_tz(name: &str) -> StoreResult<chrono_tz::Tz> {
    name.parse().map_err(|_| StoreError::Corrupt(format!("unknown time zone {name:?}")))
}

/// The rows of a page of the log in `seq` order, up to the first whose `unsettled` column is
/// true (received too recently: an earlier-numbered batch may still be committing), read
/// with `event`.
pub(crate) fn settled_prefix<R: sqlx::Row>(rows: &[R], event: impl Fn(&R) -> StoreResult<Event>) -> StoreResult<Vec<LoggedEvent>>
where
    bool: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if r.try_get::<bool, _>("unsettled")? {
            break;
        }
        out.push(LoggedEvent { seq: r.try_get("seq")?, event: event(r)? });
    }
    Ok(out)
}
