// Over 400 lines: one backend of the `Store` trait; its SQL stays in one place.
//! PostgreSQL backend: batches as one UNNEST statement, every multi-row write in one
//! transaction, work queues with `FOR UPDATE SKIP LOCKED`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{
    ChangeKind, Erased, FeedbackOutcome, FeedbackWrite, LoggedEvent, PlanCommit, Push, PushStateRow, Store,
    StoreError, StoreResult, UserPlan, UserViewRows, UserWrite,
};
use crate::config::DatabaseSettings;

mod audit;
mod changes;
mod events;
mod models;
mod partitions;
mod rows;

use rows::*;
use crate::domain::{Event, Item, User};

pub struct PgStore {
    pub(crate) pool: PgPool,
    partitions: partitions::Partitions,
}

impl PgStore {
    pub async fn connect(url: &str, settings: &DatabaseSettings) -> StoreResult<PgStore> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
            .connect_with(options)
            .await?;
        Ok(PgStore::with_pool(pool))
    }

    pub fn with_pool(pool: PgPool) -> PgStore {
        PgStore { pool, partitions: partitions::Partitions::default() }
    }

    /// Makes sure the log has a partition for the day of each of `times` (an insert does so
    /// itself; a tool that writes the log directly calls this first).
    pub async fn ensure_event_partitions(&self, times: &[DateTime<Utc>]) -> StoreResult<()> {
        self.partitions.ensure(&self.pool, times, false).await
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_events(&self, events: &[Event]) -> StoreResult<Vec<Uuid>> {
        self.write_events(events).await
    }

    async fn count_events(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("select count(*) from events").fetch_one(&self.pool).await?)
    }

    async fn user_events(&self, user_id: &str, since: DateTime<Utc>, limit: i64) -> StoreResult<Vec<Event>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "select * from (select {EVENT_COLUMNS} from events where user_id = $1 and ts >= $2 \
             order by ts desc, seq desc limit $3) as newest order by ts, seq"
        ));
        let rows = sqlx::query(sql).bind(user_id).bind(since).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn user_view_rows(&self, user_id: &str, since: DateTime<Utc>, limit: i64) -> StoreResult<UserViewRows> {
        // One row per event (or one with null event columns when there is none); the push
        // state travels on the first row only.
        let sql = sqlx::AssertSqlSafe(format!(
            "select u.timezone as user_timezone, case when e.n is null or e.n = 1 then p.state end as push_state_json, e.* \
             from (select 1) as one \
             left join users u on u.user_id = $1 \
             left join push_state p on p.user_id = $1 \
             left join lateral (select *, row_number() over (order by ts, seq) as n from ( \
                 select {EVENT_COLUMNS} from events where user_id = $1 and ts >= $2 order by ts desc, seq desc limit $3) as newest) e on true \
             order by e.n"
        ));
        let rows = sqlx::query(sql).bind(user_id).bind(since).bind(limit).fetch_all(&self.pool).await?;
        let Some(first) = rows.first() else { return Ok(UserViewRows { events: Vec::new(), timezone: None, push_state: None }) };
        let timezone = first.try_get::<Option<String>, _>("user_timezone")?.as_deref().map(super::parse_tz).transpose()?;
        let push_state = first.try_get("push_state_json")?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<i64>, _>("n")?.is_some() {
                events.push(event_from_row(row)?);
            }
        }
        Ok(UserViewRows { events, timezone, push_state })
    }

    async fn events_after(&self, after_seq: i64, limit: i64, settle: chrono::Duration) -> StoreResult<Vec<LoggedEvent>> {
        // The settled prefix of the log: rows in `seq` order up to the first one received
        // within `settle`, so that a batch received later but numbered earlier is never
        // skipped. The cut is made here rather than with a `min(seq)` subquery, which scanned
        // the whole log after `after_seq` for every page.
        let sql = sqlx::AssertSqlSafe(format!(
            "select {EVENT_COLUMNS}, received_at > now() - $3 as unsettled from events where seq > $1 order by seq limit $2"
        ));
        let settle = sqlx::postgres::types::PgInterval::try_from(settle.to_std().unwrap_or_default())
            .map_err(|e| StoreError::Corrupt(format!("settle interval: {e}")))?;
        let rows = sqlx::query(sql).bind(after_seq).bind(limit).bind(settle).fetch_all(&self.pool).await?;
        super::settled_prefix(&rows, event_from_row)
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        // Whole days go with their partition; only the day that straddles `before` loses rows.
        let dropped = self.partitions.drop_before(&self.pool, before).await?;
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("delete from events where ts < $1").bind(before).execute(&mut *tx).await?;
        sqlx::query("delete from event_ids where ts < $1").bind(before).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(dropped + r.rows_affected())
    }

    async fn upsert_items(&self, items: &[Item]) -> StoreResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = items.iter().map(|i| i.item_id.as_str()).collect();
        let cats: Vec<String> = items.iter().map(Item::category_path).collect();
        let brands: Vec<Option<&str>> = items.iter().map(|i| i.brand.as_deref()).collect();
        let prices: Vec<Option<f64>> = items.iter().map(|i| i.price).collect();
        // text[][] cannot be ragged, so tags travel as one JSON array per item.
        let tags: Vec<serde_json::Value> = items.iter().map(|i| serde_json::json!(i.tags)).collect();
        let avail: Vec<bool> = items.iter().map(|i| i.available).collect();
        let titles: Vec<Option<&str>> = items.iter().map(|i| i.title.as_deref()).collect();
        let created: Vec<Option<DateTime<Utc>>> = items.iter().map(|i| i.created_at).collect();
        sqlx::query(
            "insert into items (item_id, category, brand, price, tags, available, title, created_at, updated_at) \
             select u.id, u.cat, u.brand, u.price, \
                    coalesce(array(select jsonb_array_elements_text(u.tags)), '{}'), \
                    u.avail, u.title, u.created, clock_timestamp() \
             from unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::jsonb[], $6::bool[], $7::text[], $8::timestamptz[]) \
                  as u(id, cat, brand, price, tags, avail, title, created) \
             on conflict (item_id) do update set category = excluded.category, brand = excluded.brand, \
                price = excluded.price, tags = excluded.tags, available = excluded.available, \
                title = excluded.title, created_at = excluded.created_at, updated_at = excluded.updated_at",
        )
        .bind(&ids)
        .bind(&cats)
        .bind(&brands)
        .bind(&prices)
        .bind(&tags)
        .bind(&avail)
        .bind(&titles)
        .bind(&created)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_item(&self, item_id: &str) -> StoreResult<Option<Item>> {
        let row = sqlx::query("select * from items where item_id = $1").bind(item_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(item_from_row).transpose()
    }

    async fn items_changed_after(&self, after: (DateTime<Utc>, &str), limit: i64) -> StoreResult<Vec<(Item, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "select * from items where updated_at >= $1 and (updated_at, item_id) > ($1, $2) \
             order by updated_at, item_id limit $3",
        )
            .bind(after.0)
            .bind(after.1)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((item_from_row(r)?, r.try_get("updated_at")?))).collect()
    }

    async fn count_items(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("select count(*) from items").fetch_one(&self.pool).await?)
    }

    async fn upsert_user(&self, user: &User) -> StoreResult<UserWrite> {
        let mut tx = self.pool.begin().await?;
        let old: Option<super::StoredSubscription> =
            sqlx::query_as("select push_consent, unsubscribed_at, resubscribed_at from users where user_id = $1 for update")
                .bind(&user.user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let sub = super::Subscription::after_write(old, user);
        sqlx::query(
            "insert into users (user_id, timezone, push_consent, quiet_start, quiet_end, locale, updated_at, \
             unsubscribed_at, resubscribed_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             on conflict (user_id) do update set timezone = excluded.timezone, push_consent = excluded.push_consent, \
             quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, locale = excluded.locale, \
             updated_at = excluded.updated_at, unsubscribed_at = excluded.unsubscribed_at, \
             resubscribed_at = excluded.resubscribed_at",
        )
        .bind(&user.user_id)
        .bind(user.timezone.name())
        .bind(user.push_consent)
        .bind(user.quiet_hours.map(|q| i16::from(q.start)))
        .bind(user.quiet_hours.map(|q| i16::from(q.end)))
        .bind(&user.locale)
        .bind(user.updated_at)
        .bind(sub.unsubscribed_at)
        .bind(sub.resubscribed_at)
        .execute(&mut *tx)
        .await?;
        let mut write = UserWrite { resubscribed: sub.resubscribed, ..UserWrite::default() };
        if !user.push_consent {
            write.cancelled_pushes = cancel_open_pushes(&mut tx, &user.user_id).await?;
        }
        log_change(&mut tx, &user.user_id, ChangeKind::Settings).await?;
        // A user with settings is a push candidate; new or changed settings make them due now.
        sqlx::query(
            "insert into push_state (user_id, next_due_at, updated_at) values ($1, $2, $2) \
             on conflict (user_id) do update set next_due_at = excluded.next_due_at",
        )
        .bind(&user.user_id)
        .bind(user.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(write)
    }

    async fn get_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("select * from users where user_id = $1").bind(user_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn get_users(&self, user_ids: &[String]) -> StoreResult<Vec<User>> {
        let rows = sqlx::query("select * from users where user_id = any($1)").bind(user_ids).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn users_events(&self, user_ids: &[String], since: DateTime<Utc>, limit: i64) -> StoreResult<Vec<Event>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "select {EVENT_COLUMNS} from (select *, row_number() over (partition by user_id order by ts desc, seq desc) as n \
             from events where user_id = any($1) and ts >= $2) as e where n <= $3 order by ts, seq"
        ));
        let rows = sqlx::query(sql).bind(user_ids).bind(since).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn delete_user(&self, user_id: &str) -> StoreResult<Erased> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("delete from event_ids where event_id in (select event_id from events where user_id = $1)")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let events = sqlx::query("delete from events where user_id = $1").bind(user_id).execute(&mut *tx).await?;
        let users = sqlx::query("delete from users where user_id = $1").bind(user_id).execute(&mut *tx).await?;
        let states = sqlx::query("delete from push_state where user_id = $1").bind(user_id).execute(&mut *tx).await?;
        sqlx::query("delete from feedback where push_id in (select push_id from pushes where user_id = $1)")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let pushes = sqlx::query("delete from pushes where user_id = $1").bind(user_id).execute(&mut *tx).await?;
        sqlx::query("delete from decisions where user_id = $1").bind(user_id).execute(&mut *tx).await?;
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
        sqlx::query(
            "insert into push_state (user_id, next_due_at, updated_at) select u, $2, $2 from unnest($1::text[]) as u \
             on conflict (user_id) do nothing",
        )
        .bind(user_ids)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_push_state(&self, user_id: &str) -> StoreResult<Option<PushStateRow>> {
        let row = sqlx::query("select user_id, version, next_due_at, state from push_state where user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(push_state_from_row).transpose()
    }

    async fn claim_due_users(&self, now: DateTime<Utc>, limit: i64, token: Uuid, lease_until: DateTime<Utc>) -> StoreResult<Vec<PushStateRow>> {
        // SKIP LOCKED: concurrent replicas claim disjoint sets; the lease keeps a claimed row
        // away from other replicas until this one commits or the lease runs out.
        let rows = sqlx::query(
            "update push_state set claimed_until = $3, claim_token = $4 where user_id in ( \
                select user_id from push_state where next_due_at <= $1 \
                and (claimed_until is null or claimed_until < $1) \
                order by next_due_at limit $2 for update skip locked) \
             returning user_id, version, next_due_at, state",
        )
        .bind(now)
        .bind(limit)
        .bind(lease_until)
        .bind(token)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(push_state_from_row).collect()
    }

    async fn commit_plans(&self, token: Uuid, claimed: &[String], plans: &[UserPlan], now: DateTime<Utc>) -> StoreResult<PlanCommit> {
        // Three set-based statements for the whole batch, in one transaction: states (only
        // where the claim still holds and the version is unchanged), then the pushes and
        // decisions of the users whose state was written.
        let mut tx = self.pool.begin().await?;
        let users: Vec<&str> = plans.iter().map(|p| p.user_id.as_str()).collect();
        // States and decisions travel as text and are stored as json (migration 0004).
        let states: Vec<&str> = plans.iter().map(|p| p.state.as_str()).collect();
        let due: Vec<DateTime<Utc>> = plans.iter().map(|p| p.next_due_at).collect();
        let versions: Vec<i64> = plans.iter().map(|p| p.version).collect();
        let written: Vec<String> = sqlx::query_scalar(
            "update push_state p set state = u.state::json, next_due_at = u.due, version = p.version + 1, \
                claimed_until = null, claim_token = null, updated_at = $5 \
             from unnest($1::text[], $2::text[], $3::timestamptz[], $4::int8[]) as u(user_id, state, due, version) \
             where p.user_id = u.user_id and p.claim_token = $6 and p.version = u.version \
             returning p.user_id",
        )
        .bind(&users)
        .bind(&states)
        .bind(&due)
        .bind(&versions)
        .bind(now)
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        let written: std::collections::HashSet<String> = written.into_iter().collect();
        let applied: Vec<&UserPlan> = plans.iter().filter(|p| written.contains(&p.user_id)).collect();
        let mut report = PlanCommit { conflicts: (plans.len() - applied.len()) as u64, ..PlanCommit::default() };

        let with_push: Vec<&&UserPlan> = applied.iter().filter(|p| p.push.is_some()).collect();
        let pushes: Vec<&Push> = with_push.iter().filter_map(|p| p.push.as_ref()).collect();
        if !pushes.is_empty() {
            let inserted = sqlx::query(
                "insert into pushes (push_id, user_id, item_id, send_at, expires_at, score, reasons, status, created_at, features) \
                 select id, u, i, s, e, sc, r, 'planned', $8, f::json \
                 from unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::float8[], $7::jsonb[], $9::text[]) \
                      as t(id, u, i, s, e, sc, r, f) \
                 on conflict (user_id, send_at) do nothing",
            )
            .bind(pushes.iter().map(|p| p.push_id).collect::<Vec<_>>())
            .bind(pushes.iter().map(|p| p.user_id.as_str()).collect::<Vec<_>>())
            .bind(pushes.iter().map(|p| p.item_id.as_str()).collect::<Vec<_>>())
            .bind(pushes.iter().map(|p| p.send_at).collect::<Vec<_>>())
            .bind(pushes.iter().map(|p| p.expires_at).collect::<Vec<_>>())
            .bind(pushes.iter().map(|p| p.score).collect::<Vec<_>>())
            .bind(pushes.iter().map(|p| &p.reasons).collect::<Vec<_>>())
            .bind(now)
            .bind(with_push.iter().map(|p| p.push_features.as_deref()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            report.pushes = inserted.rows_affected();
            report.slot_taken = pushes.len() as u64 - report.pushes;
            // Other replicas' cached views hold the items pushed recently.
            sqlx::query("insert into user_changes (user_id, kind, changed_at) select u, 'push', clock_timestamp() from unnest($1::text[]) as u")
                .bind(pushes.iter().map(|p| p.user_id.as_str()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        if !applied.is_empty() {
            sqlx::query(
                "insert into decisions (user_id, decided_at, decision) \
                 select u, $3, d::json from unnest($1::text[], $2::text[]) as t(u, d)",
            )
            .bind(applied.iter().map(|p| p.user_id.as_str()).collect::<Vec<_>>())
            .bind(applied.iter().map(|p| p.decision.as_str()).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // Claims of users whose plan was dropped are released too.
        // By primary key: claim_token is not indexed, so that a claim (which sets only the
        // claim columns) is a HOT update that touches no index.
        sqlx::query("update push_state set claimed_until = null, claim_token = null where user_id = any($2) and claim_token = $1")
            .bind(token)
            .bind(claimed)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn recent_decisions(&self, user_id: &str, limit: i64) -> StoreResult<Vec<serde_json::Value>> {
        Ok(sqlx::query_scalar("select decision from decisions where user_id = $1 order by decided_at desc, id desc limit $2")
            .bind(user_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn expire_pushes(&self, now: DateTime<Utc>) -> StoreResult<Vec<Push>> {
        let rows = sqlx::query(
            // Rows another tick is expiring are skipped (locking them in any order deadlocked
            // concurrent ticks).
            "update pushes set status = 'expired', leased_until = null where push_id in ( \
                select push_id from pushes where status in ('planned', 'leased') and expires_at <= $1 \
                for update skip locked) returning *",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(push_from_row).collect()
    }

    async fn claim_due_pushes(&self, now: DateTime<Utc>, limit: i64, lease_until: DateTime<Utc>) -> StoreResult<Vec<Push>> {
        let rows = sqlx::query(
            "update pushes set status = 'leased', leased_until = $3, fetched_at = coalesce(fetched_at, $1) where push_id in ( \
                select push_id from pushes where status in ('planned', 'leased') and send_at <= $1 \
                and expires_at > $1 and (leased_until is null or leased_until < $1) \
                order by send_at limit $2 for update skip locked) \
             returning *",
        )
        .bind(now)
        .bind(limit)
        .bind(lease_until)
        .fetch_all(&self.pool)
        .await?;
        let mut pushes: Vec<Push> = rows.iter().map(push_from_row).collect::<StoreResult<_>>()?;
        pushes.sort_by_key(|p| p.send_at);
        Ok(pushes)
    }

    async fn get_push(&self, push_id: Uuid) -> StoreResult<Option<Push>> {
        let row = sqlx::query("select * from pushes where push_id = $1").bind(push_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(push_from_row).transpose()
    }

    async fn user_pushes(&self, user_id: &str, limit: i64) -> StoreResult<Vec<Push>> {
        let rows = sqlx::query("select * from pushes where user_id = $1 order by send_at desc limit $2")
            .bind(user_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(push_from_row).collect()
    }

    async fn record_feedback(&self, w: &FeedbackWrite, now: DateTime<Utc>) -> StoreResult<FeedbackOutcome> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "insert into feedback (push_id, kind, ts, received_at) values ($1, $2, $3, $4) on conflict do nothing",
        )
        .bind(w.push_id)
        .bind(&w.kind)
        .bind(w.ts)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(FeedbackOutcome::Duplicate);
        }
        let updated = sqlx::query(
            "update push_state set state = $2, version = version + 1, updated_at = $4 where user_id = $1 and version = $3",
        )
        .bind(&w.user_id)
        .bind(&w.state)
        .bind(w.expected_version)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(FeedbackOutcome::Conflict); // dropped tx rolls back the feedback row
        }
        if let Some(status) = w.push_status {
            sqlx::query("update pushes set status = $2, leased_until = null where push_id = $1")
                .bind(w.push_id)
                .bind(status.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if w.cancel_open_pushes {
            cancel_open_pushes(&mut tx, &w.user_id).await?;
            // An unsubscribe turns consent off where it is kept, so every reader agrees.
            sqlx::query("update users set push_consent = false, unsubscribed_at = $2 where user_id = $1")
                .bind(&w.user_id)
                .bind(w.ts)
                .execute(&mut *tx)
                .await?;
        }
        log_change(&mut tx, &w.user_id, ChangeKind::Push).await?;
        tx.commit().await?;
        Ok(FeedbackOutcome::Applied)
    }
}

/// Withdraws the user's planned and leased pushes; returns how many.
async fn cancel_open_pushes(tx: &mut sqlx::PgConnection, user_id: &str) -> StoreResult<u64> {
    let r = sqlx::query("update pushes set status = 'cancelled', leased_until = null where user_id = $1 and status in ('planned', 'leased')")
        .bind(user_id)
        .execute(tx)
        .await?;
    Ok(r.rows_affected())
}

/// Logs a change of the user for the other replicas' caches (inside the caller's transaction).
async fn log_change(tx: &mut sqlx::PgConnection, user_id: &str, kind: ChangeKind) -> StoreResult<()> {
    sqlx::query("insert into user_changes (user_id, kind, changed_at) values ($1, $2, clock_timestamp())")
        .bind(user_id)
        .bind(kind.as_str())
        .execute(tx)
        .await?;
    Ok(())
}
