// Over 400 lines: one backend of the `Store` trait; its SQL stays in one place.
//! Embedded SQLite backend for one machine: WAL, `synchronous = FULL` (a 2xx means the
//! commit reached the disk), batches as one statement over `json_each`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use super::{
    ChangeKind, Erased, FeedbackOutcome, FeedbackWrite, LoggedEvent, PlanCommit, Push, PushStateRow, Store,
    StoreError, StoreResult, UserPlan, UserWrite,
};
use crate::config::DatabaseSettings;

mod changes;
mod models;
mod rows;

use rows::*;
use crate::domain::{Device, Event, Item, User};

pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| StoreError::Corrupt(format!("timestamp {us} out of range")))
}

impl SqliteStore {
    pub async fn open(path: &Path, settings: &DatabaseSettings) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Corrupt(format!("creating {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_events(&self, events: &[Event]) -> StoreResult<Vec<Uuid>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = to_micros(Utc::now());
        // The batch travels as one JSON array of rows and is inserted by one statement.
        let rows: Vec<serde_json::Value> = events
            .iter()
            .map(|e| {
                serde_json::json!([
                    e.event_id.to_string(),
                    e.user_id,
                    e.item_id,
                    e.kind,
                    to_micros(e.ts),
                    e.context.device.map(Device::as_str),
                    e.context.platform,
                    e.context.country,
                    e.context.region,
                    e.context.timezone,
                    e.context.network,
                    e.context.session_id,
                    e.props.price,
                    e.props.quantity,
                    e.props.query,
                ])
            })
            .collect();
        let payload = serde_json::Value::Array(rows).to_string();
        let inserted = sqlx::query(
            "insert or ignore into events (event_id, user_id, item_id, kind, ts, received_at, device, platform, \
             country, region, timezone, network, session_id, price, quantity, query) \
             select value->>0, value->>1, value->>2, value->>3, value->>4, ?2, value->>5, value->>6, value->>7, \
             value->>8, value->>9, value->>10, value->>11, value->>12, value->>13, value->>14 \
             from json_each(?1) returning event_id",
        )
        .bind(payload)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        inserted
            .iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(format!("event_id {id:?}: {e}")))
            })
            .collect()
    }

    async fn count_events(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("select count(*) from events").fetch_one(&self.pool).await?)
    }

    async fn user_events(&self, user_id: &str, since: DateTime<Utc>, limit: i64) -> StoreResult<Vec<Event>> {
        let rows = sqlx::query(
            "select * from (select * from events where user_id = ?1 and ts >= ?2 order by ts desc, seq desc limit ?3) \
             order by ts, seq",
        )
        .bind(user_id)
        .bind(to_micros(since))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn events_after(&self, after_seq: i64, limit: i64, settle: chrono::Duration) -> StoreResult<Vec<LoggedEvent>> {
        // SQLite has one writer at a time, so seq order is commit order; `settle` still
        // applies for symmetry with PostgreSQL.
        let cutoff = to_micros(Utc::now() - settle);
        let rows = sqlx::query("select *, received_at > ?3 as unsettled from events where seq > ?1 order by seq limit ?2")
            .bind(after_seq)
            .bind(limit)
            .bind(cutoff)
            .fetch_all(&self.pool)
            .await?;
        super::settled_prefix(&rows, event_from_row)
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let r = sqlx::query("delete from events where ts < ?1").bind(to_micros(before)).execute(&self.pool).await?;
        Ok(r.rows_affected())
    }

    async fn upsert_items(&self, items: &[Item]) -> StoreResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        let now = to_micros(Utc::now());
        let rows: Vec<serde_json::Value> = items
            .iter()
            .map(|i| {
                serde_json::json!([
                    i.item_id,
                    i.category_path(),
                    i.brand,
                    i.price,
                    serde_json::to_string(&i.tags).unwrap_or_else(|_| "[]".into()),
                    i.available,
                    i.title,
                    i.created_at.map(to_micros),
                ])
            })
            .collect();
        sqlx::query(
            "insert into items (item_id, category, brand, price, tags, available, title, created_at, updated_at) \
             select value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7, ?2 \
             from json_each(?1) where true \
             on conflict (item_id) do update set category = excluded.category, brand = excluded.brand, \
             price = excluded.price, tags = excluded.tags, available = excluded.available, title = excluded.title, \
             created_at = excluded.created_at, updated_at = excluded.updated_at",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_item(&self, item_id: &str) -> StoreResult<Option<Item>> {
        let row = sqlx::query("select * from items where item_id = ?1").bind(item_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(item_from_row).transpose()
    }

    async fn items_changed_after(&self, after: (DateTime<Utc>, &str), limit: i64) -> StoreResult<Vec<(Item, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "select * from items where updated_at >= ?1 and (updated_at, item_id) > (?1, ?2) \
             order by updated_at, item_id limit ?3",
        )
            .bind(to_micros(after.0))
            .bind(after.1)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((item_from_row(r)?, from_micros(r.try_get("updated_at")?)?))).collect()
    }

    async fn count_items(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("select count(*) from items").fetch_one(&self.pool).await?)
    }

    async fn upsert_user(&self, user: &User) -> StoreResult<UserWrite> {
        let mut tx = self.pool.begin().await?;
        let old: Option<(bool, Option<i64>, Option<i64>)> =
            sqlx::query_as("select push_consent, unsubscribed_at, resubscribed_at from users where user_id = ?1")
                .bind(&user.user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let old = match old {
            Some((c, u, r)) => Some((c, u.map(from_micros).transpose()?, r.map(from_micros).transpose()?)),
            None => None,
        };
        let sub = super::Subscription::after_write(old, user);
        sqlx::query(
            "insert into users (user_id, timezone, push_consent, quiet_start, quiet_end, locale, updated_at, \
             unsubscribed_at, resubscribed_at) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             on conflict (user_id) do update set timezone = excluded.timezone, push_consent = excluded.push_consent, \
             quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, locale = excluded.locale, \
             updated_at = excluded.updated_at, unsubscribed_at = excluded.unsubscribed_at, \
             resubscribed_at = excluded.resubscribed_at",
        )
        .bind(&user.user_id)
        .bind(user.timezone.name())
        .bind(user.push_consent)
        .bind(user.quiet_hours.map(|q| i64::from(q.start)))
        .bind(user.quiet_hours.map(|q| i64::from(q.end)))
        .bind(&user.locale)
        .bind(to_micros(user.updated_at))
        .bind(sub.unsubscribed_at.map(to_micros))
        .bind(sub.resubscribed_at.map(to_micros))
        .execute(&mut *tx)
        .await?;
        let mut write = UserWrite { resubscribed: sub.resubscribed, ..UserWrite::default() };
        if !user.push_consent {
            write.cancelled_pushes = cancel_open_pushes(&mut tx, &user.user_id).await?;
        }
        log_change(&mut tx, &user.user_id, ChangeKind::Settings).await?;
        // New or changed settings make the user due now.
        sqlx::query(
            "insert into push_state (user_id, next_due_at, updated_at) values (?1, ?2, ?2) \
             on conflict (user_id) do update set next_due_at = excluded.next_due_at",
        )
            .bind(&user.user_id)
            .bind(to_micros(user.updated_at))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(write)
    }

    async fn get_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("select * from users where user_id = ?1").bind(user_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn get_users(&self, user_ids: &[String]) -> StoreResult<Vec<User>> {
        let ids = serde_json::to_string(user_ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = sqlx::query("select * from users where user_id in (select value from json_each(?1))")
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn users_events(&self, user_ids: &[String], since: DateTime<Utc>, limit: i64) -> StoreResult<Vec<Event>> {
        let ids = serde_json::to_string(user_ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = sqlx::query(
            "select * from (select *, row_number() over (partition by user_id order by ts desc, seq desc) as n \
             from events where user_id in (select value from json_each(?1)) and ts >= ?2) where n <= ?3 order by ts, seq",
        )
        .bind(ids)
        .bind(to_micros(since))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn delete_user(&self, user_id: &str) -> StoreResult<Erased> {
        let mut tx = self.pool.begin().await?;
        let events = sqlx::query("delete from events where user_id = ?1").bind(user_id).execute(&mut *tx).await?;
        let users = sqlx::query("delete from users where user_id = ?1").bind(user_id).execute(&mut *tx).await?;
        let states = sqlx::query("delete from push_state where user_id = ?1").bind(user_id).execute(&mut *tx).await?;
        sqlx::query("delete from feedback where push_id in (select push_id from pushes where user_id = ?1)")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let pushes = sqlx::query("delete from pushes where user_id = ?1").bind(user_id).execute(&mut *tx).await?;
        sqlx::query("delete from decisions where user_id = ?1").bind(user_id).execute(&mut *tx).await?;
        log_change(&mut tx, user_id, ChangeKind::Erased).await?;
        tx.commit().await?;
        Ok(Erased {
            users: users.rows_affected(),
            events: events.rows_affected(),
            push_states: states.rows_affected(),
            pushes: pushes.rows_affected(),
        })
    }

    async fn ensure_push_states(&self, user_ids: &[String], now: DateTime<Utc>) -> StoreResult<()> {
        let ids = serde_json::to_string(user_ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "insert into push_state (user_id, next_due_at, updated_at) select value, ?2, ?2 from json_each(?1) where true \
             on conflict (user_id) do nothing",
        )
        .bind(ids)
        .bind(to_micros(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_push_state(&self, user_id: &str) -> StoreResult<Option<PushStateRow>> {
        let row = sqlx::query("select user_id, version, next_due_at, state from push_state where user_id = ?1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(push_state_from_row).transpose()
    }

    async fn claim_due_users(&self, now: DateTime<Utc>, limit: i64, token: Uuid, lease_until: DateTime<Utc>) -> StoreResult<Vec<PushStateRow>> {
        // One statement: SQLite runs one writer at a time, so two claimers never overlap
        // (the equivalent of SKIP LOCKED here).
        let rows = sqlx::query(
            "update push_state set claimed_until = ?3, claim_token = ?4 where user_id in ( \
                select user_id from push_state where next_due_at <= ?1 \
                and (claimed_until is null or claimed_until < ?1) order by next_due_at limit ?2) \
             returning user_id, version, next_due_at, state",
        )
        .bind(to_micros(now))
        .bind(limit)
        .bind(to_micros(lease_until))
        .bind(token.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(push_state_from_row).collect()
    }

    async fn commit_plans(&self, token: Uuid, claimed: &[String], plans: &[UserPlan], now: DateTime<Utc>) -> StoreResult<PlanCommit> {
        let mut tx = self.pool.begin().await?;
        let mut report = PlanCommit::default();
        let token = token.to_string();
        for plan in plans {
            let updated = sqlx::query(
                "update push_state set state = ?3, next_due_at = ?4, version = version + 1, claimed_until = null, \
                 claim_token = null, updated_at = ?5 where user_id = ?1 and claim_token = ?2 and version = ?6",
            )
            .bind(&plan.user_id)
            .bind(&token)
            .bind(&plan.state)
            .bind(to_micros(plan.next_due_at))
            .bind(to_micros(now))
            .bind(plan.version)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                report.conflicts += 1;
                continue;
            }
            if let Some(p) = &plan.push {
                let written = sqlx::query(
                    "insert into pushes (push_id, user_id, item_id, send_at, expires_at, score, reasons, status, created_at, features) \
                     values (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'planned', ?8, ?9) on conflict (user_id, send_at) do nothing",
                )
                .bind(p.push_id.to_string())
                .bind(&p.user_id)
                .bind(&p.item_id)
                .bind(to_micros(p.send_at))
                .bind(to_micros(p.expires_at))
                .bind(p.score)
                .bind(p.reasons.to_string())
                .bind(to_micros(p.created_at))
                .bind(plan.push_features.as_deref())
                .execute(&mut *tx)
                .await?;
                if written.rows_affected() == 1 {
                    report.pushes += 1;
                    // Other replicas' cached views hold the items pushed recently.
                    log_change(&mut tx, &p.user_id, ChangeKind::Push).await?;
                } else {
                    report.slot_taken += 1;
                }
            }
            sqlx::query("insert into decisions (user_id, decided_at, decision) values (?1, ?2, ?3)")
                .bind(&plan.user_id)
                .bind(to_micros(now))
                .bind(&plan.decision)
                .execute(&mut *tx)
                .await?;
        }
        for user_id in claimed {
            sqlx::query("update push_state set claimed_until = null, claim_token = null where user_id = ?1 and claim_token = ?2")
                .bind(user_id)
                .bind(&token)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    async fn recent_decisions(&self, user_id: &str, limit: i64) -> StoreResult<Vec<serde_json::Value>> {
        let rows: Vec<String> =
            sqlx::query_scalar("select decision from decisions where user_id = ?1 order by decided_at desc, id desc limit ?2")
                .bind(user_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|s| serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("decision: {e}")))).collect()
    }

    async fn expire_pushes(&self, now: DateTime<Utc>) -> StoreResult<Vec<Push>> {
        let rows = sqlx::query(
            "update pushes set status = 'expired', leased_until = null \
             where status in ('planned', 'leased') and expires_at <= ?1 returning *",
        )
        .bind(to_micros(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(push_from_row).collect()
    }

    async fn claim_due_pushes(&self, now: DateTime<Utc>, limit: i64, lease_until: DateTime<Utc>) -> StoreResult<Vec<Push>> {
        let rows = sqlx::query(
            "update pushes set status = 'leased', leased_until = ?3, fetched_at = coalesce(fetched_at, ?1) where push_id in ( \
                select push_id from pushes where status in ('planned', 'leased') and send_at <= ?1 \
                and expires_at > ?1 and (leased_until is null or leased_until < ?1) order by send_at limit ?2) \
             returning *",
        )
        .bind(to_micros(now))
        .bind(limit)
        .bind(to_micros(lease_until))
        .fetch_all(&self.pool)
        .await?;
        let mut pushes: Vec<Push> = rows.iter().map(push_from_row).collect::<StoreResult<_>>()?;
        pushes.sort_by_key(|p| p.send_at);
        Ok(pushes)
    }

    async fn get_push(&self, push_id: Uuid) -> StoreResult<Option<Push>> {
        let row = sqlx::query("select * from pushes where push_id = ?1")
            .bind(push_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(push_from_row).transpose()
    }

    async fn user_pushes(&self, user_id: &str, limit: i64) -> StoreResult<Vec<Push>> {
        let rows = sqlx::query("select * from pushes where user_id = ?1 order by send_at desc limit ?2")
            .bind(user_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(push_from_row).collect()
    }

    async fn record_feedback(&self, w: &FeedbackWrite, now: DateTime<Utc>) -> StoreResult<FeedbackOutcome> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query("insert or ignore into feedback (push_id, kind, ts, received_at) values (?1, ?2, ?3, ?4)")
            .bind(w.push_id.to_string())
            .bind(&w.kind)
            .bind(to_micros(w.ts))
            .bind(to_micros(now))
            .execute(&mut *tx)
            .await?;
        if inserted.rows_affected() == 0 {
            return Ok(FeedbackOutcome::Duplicate);
        }
        let updated = sqlx::query(
            "update push_state set state = ?2, version = version + 1, updated_at = ?4 where user_id = ?1 and version = ?3",
        )
        .bind(&w.user_id)
        .bind(w.state.to_string())
        .bind(w.expected_version)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(FeedbackOutcome::Conflict);
        }
        if let Some(status) = w.push_status {
            sqlx::query("update pushes set status = ?2, leased_until = null where push_id = ?1")
                .bind(w.push_id.to_string())
                .bind(status.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if w.cancel_open_pushes {
            cancel_open_pushes(&mut tx, &w.user_id).await?;
            // An unsubscribe turns consent off where it is kept, so every reader agrees.
            sqlx::query("update users set push_consent = 0, unsubscribed_at = ?2 where user_id = ?1")
                .bind(&w.user_id)
                .bind(to_micros(w.ts))
                .execute(&mut *tx)
                .await?;
        }
        log_change(&mut tx, &w.user_id, ChangeKind::Push).await?;
        tx.commit().await?;
        Ok(FeedbackOutcome::Applied)
    }
}

/// Withdraws the user's planned and leased pushes; returns how many.
async fn cancel_open_pushes(tx: &mut sqlx::SqliteConnection, user_id: &str) -> StoreResult<u64> {
    let r = sqlx::query("update pushes set status = 'cancelled', leased_until = null where user_id = ?1 and status in ('planned', 'leased')")
        .bind(user_id)
        .execute(tx)
        .await?;
    Ok(r.rows_affected())
}

/// Logs a change of the user for the other replicas' caches (inside the caller's transaction).
async fn log_change(tx: &mut sqlx::SqliteConnection, user_id: &str, kind: ChangeKind) -> StoreResult<()> {
    sqlx::query("insert into user_changes (user_id, kind, changed_at) values (?1, ?2, ?3)")
        .bind(user_id)
        .bind(kind.as_str())
        .bind(to_micros(Utc::now()))
        .execute(tx)
        .await?;
    Ok(())
}
