//! Storage: one trait, a PostgreSQL backend for production and an embedded SQLite backend
//! for one machine. All SQL of the service lives under this module.

mod postgres;
mod sqlite;
mod types;
mod unavailable;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use postgres::PgStore;
pub use types::*;
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

/// The change log that keeps every replica's caches true, and the shared push budget.
#[async_trait]
pub trait ChangeStore: Send + Sync {
    /// Up to `limit` changes logged after `after` in (time, sequence) order (with `None`:
    /// none), and the store's clock at the read. A full page continues from its last change;
    /// the last page's clock, minus an overlap, starts the next refresh (a change committed
    /// late is read again, and the reader skips the sequence numbers it has applied).
    async fn user_changes_since(&self, after: Option<ChangeCursor>, limit: i64) -> StoreResult<(Vec<UserChange>, DateTime<Utc>)>;

    /// Drops changes logged before `before`; returns how many.
    async fn prune_user_changes(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    /// Takes up to `want` pushes from minute `minute`'s budget of `limit` (one budget for every
    /// worker of every replica); returns how many were granted.
    async fn take_push_budget(&self, minute: i64, want: i64, limit: i64) -> StoreResult<i64>;

    /// Returns `n` unused pushes to minute `minute`'s budget.
    async fn give_back_push_budget(&self, minute: i64, n: i64) -> StoreResult<()>;

    /// The pushes of these users that the gateway never fetched (user, push id).
    async fn unfetched_pushes(&self, user_ids: &[String]) -> StoreResult<Vec<(String, Uuid)>>;
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

    /// The pushes sent in `[from, to)` that the gateway fetched and whose features were
    /// recorded, with their feedback (the push-response model's training data).
    async fn push_outcomes(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Vec<PushOutcomeRow>>;

    /// How many events have `from <= ts < to`.
    async fn count_events_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<i64>;
}

#[async_trait]
pub trait Store: ModelStore + ChangeStore + Send + Sync + 'static {
    /// `postgres` or `sqlite`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Writes events in one transaction with one statement; returns the ids that were new
    /// (the others were already stored). Events must have distinct ids.
    async fn insert_events(&self, events: &[Event]) -> StoreResult<Vec<Uuid>>;

    /// Number of stored events (tests, admin).
    async fn count_events(&self) -> StoreResult<i64>;

    /// A user's newest `limit` events with `ts >= since`, oldest first.
    async fn user_events(&self, user_id: &str, since: DateTime<Utc>, limit: i64) -> StoreResult<Vec<Event>>;

    /// What serving a user needs from the store: their newest `limit` events with
    /// `ts >= since` (oldest first), their time zone and their push state (`None` when they
    /// have no settings or no state). PostgreSQL reads it in one query (a cold user costs one
    /// round trip, not three); this default reads the three parts at once.
    async fn user_view_rows(&self, user_id: &str, since: DateTime<Utc>, limit: i64) -> StoreResult<UserViewRows> {
        let (events, user, push) = tokio::try_join!(self.user_events(user_id, since, limit), self.get_user(user_id), self.get_push_state(user_id))?;
        Ok(UserViewRows { events, timezone: user.map(|u| u.timezone), push_state: push.and_then(|p| p.state) })
    }

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

    /// Writes a user's settings and logs the change. Consent off withdraws their planned and
    /// leased pushes in the same transaction; consent on after an unsubscribe records a
    /// resubscribe (`User::resubscribed_at`, from `user.updated_at`).
    async fn upsert_user(&self, user: &User) -> StoreResult<UserWrite>;

    async fn get_user(&self, user_id: &str) -> StoreResult<Option<User>>;

    /// The users among `user_ids` that exist (one query; the scheduler's batch read).
    async fn get_users(&self, user_ids: &[String]) -> StoreResult<Vec<User>>;

    /// Each user's newest `limit` events with `ts >= since`, oldest first (one query).
    async fn users_events(&self, user_ids: &[String], since: DateTime<Utc>, limit: i64) -> StoreResult<Vec<Event>>;

    /// Erases every row about the user in one transaction, and logs the erase.
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
