//! SQLite: models, pins, leases and the trainer's window of the log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::{SqliteStore, event_from_row, from_micros, to_micros};
use crate::store::{LoggedEvent, ModelRow, ModelStore, NewModel, PushOutcomeRow, StoreError, StoreResult};

fn model_from_row(row: &SqliteRow) -> StoreResult<ModelRow> {
    let metrics: String = row.try_get("metrics")?;
    let deployed: Option<i64> = row.try_get("deployed_at")?;
    Ok(ModelRow {
        version: row.try_get("version")?,
        kind: row.try_get("kind")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        window_from: from_micros(row.try_get("window_from")?)?,
        window_to: from_micros(row.try_get("window_to")?)?,
        deployed_at: deployed.map(from_micros).transpose()?,
        metrics: serde_json::from_str(&metrics).map_err(|e| StoreError::Corrupt(format!("model metrics: {e}")))?,
        params_bytes: row.try_get("params_bytes")?,
    })
}

#[async_trait]
impl ModelStore for SqliteStore {
    async fn insert_model(&self, m: &NewModel) -> StoreResult<i64> {
        let created = to_micros(m.created_at);
        Ok(sqlx::query_scalar(
            "insert into models (kind, created_at, window_from, window_to, deployed_at, metrics, params) \
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7) returning version",
        )
        .bind(&m.kind)
        .bind(created)
        .bind(to_micros(m.window_from))
        .bind(to_micros(m.window_to))
        .bind(m.deploy.then_some(created))
        .bind(m.metrics.to_string())
        .bind(&m.params)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn list_models(&self, kind: &str, limit: i64) -> StoreResult<Vec<ModelRow>> {
        let rows = sqlx::query(
            "select version, kind, created_at, window_from, window_to, deployed_at, metrics, length(params) as params_bytes \
             from models where kind = ?1 order by version desc limit ?2",
        )
        .bind(kind)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(model_from_row).collect()
    }

    async fn model_params(&self, version: i64) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar("select params from models where version = ?1").bind(version).fetch_optional(&self.pool).await?)
    }

    async fn model_in_force(&self, kind: &str) -> StoreResult<Option<(i64, bool)>> {
        let row = sqlx::query(
            "select version, pinned from (select version, 1 as pinned from model_pins where kind = ?1 \
             union all select * from (select version, 0 from models where kind = ?1 and deployed_at is not null \
             order by deployed_at desc, version desc limit 1)) order by pinned desc limit 1",
        )
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("version")?, r.try_get::<i64, _>("pinned")? == 1))).transpose()
    }

    async fn deploy_model(&self, version: i64, at: DateTime<Utc>) -> StoreResult<bool> {
        let r = sqlx::query("update models set deployed_at = ?2 where version = ?1").bind(version).bind(to_micros(at)).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    async fn pin_model(&self, kind: &str, version: Option<i64>) -> StoreResult<bool> {
        let Some(version) = version else {
            sqlx::query("delete from model_pins where kind = ?1").bind(kind).execute(&self.pool).await?;
            return Ok(true);
        };
        let r = sqlx::query(
            "insert into model_pins (kind, version) select ?1, version from models where version = ?2 and kind = ?1 \
             on conflict (kind) do update set version = excluded.version",
        )
        .bind(kind)
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn try_lease(&self, name: &str, holder: Uuid, until: DateTime<Utc>, now: DateTime<Utc>) -> StoreResult<bool> {
        let r = sqlx::query(
            "insert into leases (name, holder, until) values (?1, ?2, ?3) \
             on conflict (name) do update set holder = excluded.holder, until = excluded.until \
             where leases.holder = excluded.holder or leases.until <= ?4",
        )
        .bind(name)
        .bind(holder.to_string())
        .bind(to_micros(until))
        .bind(to_micros(now))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: Uuid) -> StoreResult<()> {
        sqlx::query("delete from leases where name = ?1 and holder = ?2").bind(name).bind(holder.to_string()).execute(&self.pool).await?;
        Ok(())
    }

    async fn events_between(&self, from: DateTime<Utc>, to: DateTime<Utc>, after_seq: i64, limit: i64) -> StoreResult<Vec<LoggedEvent>> {
        let rows = sqlx::query("select * from events where seq > ?3 and ts >= ?1 and ts < ?2 order by seq limit ?4")
            .bind(to_micros(from))
            .bind(to_micros(to))
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(LoggedEvent { seq: r.try_get("seq")?, event: event_from_row(r)? })).collect()
    }

    async fn push_outcomes(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Vec<PushOutcomeRow>> {
        let rows = sqlx::query(
            "select p.send_at, p.features, count(f.kind) > 0 as answered, \
                coalesce(max(f.kind in ('opened', 'clicked', 'converted')), 0) as opened, \
                coalesce(max(f.kind = 'converted'), 0) as converted, \
                coalesce(max(f.kind = 'unsubscribed'), 0) as unsubscribed \
             from pushes p left join feedback f on f.push_id = p.push_id \
             where p.fetched_at is not null and p.features is not null and p.send_at >= ?1 and p.send_at < ?2 \
             group by p.push_id order by p.send_at",
        )
        .bind(to_micros(from))
        .bind(to_micros(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let features: String = r.try_get("features")?;
                Ok(PushOutcomeRow {
                    send_at: from_micros(r.try_get("send_at")?)?,
                    features: serde_json::from_str(&features).map_err(|e| StoreError::Corrupt(format!("push features: {e}")))?,
                    answered: r.try_get("answered")?,
                    opened: r.try_get("opened")?,
                    converted: r.try_get("converted")?,
                    unsubscribed: r.try_get("unsubscribed")?,
                })
            })
            .collect()
    }

    async fn count_events_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("select count(*) from events where ts >= ?1 and ts < ?2")
            .bind(to_micros(from))
            .bind(to_micros(to))
            .fetch_one(&self.pool)
            .await?)
    }
}
