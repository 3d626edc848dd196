//! SQLite: the user change log and the shared push budget (one writer at a time, so a
//! transaction is exclusion enough).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{SqliteStore, from_micros, parse_uuid, to_micros};
use crate::store::{ChangeCursor, ChangeKind, ChangeStore, StoreError, StoreResult, UserChange};

#[async_trait]
impl ChangeStore for SqliteStore {
    async fn user_changes_since(&self, after: Option<ChangeCursor>, limit: i64) -> StoreResult<(Vec<UserChange>, DateTime<Utc>)> {
        let now = Utc::now();
        let Some(after) = after else { return Ok((Vec::new(), now)) };
        let rows = sqlx::query(
            "select seq, user_id, kind, changed_at from user_changes \
             where changed_at > ?1 or (changed_at = ?1 and seq > ?2) order by changed_at, seq limit ?3",
        )
        .bind(to_micros(after.changed_at))
        .bind(after.seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let changes = rows
            .iter()
            .map(|r| {
                Ok(UserChange {
                    seq: r.try_get("seq")?,
                    user_id: r.try_get("user_id")?,
                    kind: ChangeKind::parse(r.try_get("kind")?)?,
                    changed_at: from_micros(r.try_get("changed_at")?)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((changes, now))
    }

    async fn prune_user_changes(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let r = sqlx::query("delete from user_changes where changed_at < ?1").bind(to_micros(before)).execute(&self.pool).await?;
        sqlx::query("delete from push_budget where minute < ?1").bind(before.timestamp() / 60).execute(&self.pool).await?;
        Ok(r.rows_affected())
    }

    async fn take_push_budget(&self, minute: i64, want: i64, limit: i64) -> StoreResult<i64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("insert or ignore into push_budget (minute, used) values (?1, 0)").bind(minute).execute(&mut *tx).await?;
        let used: i64 = sqlx::query_scalar("select used from push_budget where minute = ?1").bind(minute).fetch_one(&mut *tx).await?;
        let granted = want.min(limit - used).max(0);
        sqlx::query("update push_budget set used = used + ?2 where minute = ?1").bind(minute).bind(granted).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(granted)
    }

    async fn give_back_push_budget(&self, minute: i64, n: i64) -> StoreResult<()> {
        sqlx::query("update push_budget set used = max(used - ?2, 0) where minute = ?1").bind(minute).bind(n.max(0)).execute(&self.pool).await?;
        Ok(())
    }

    async fn unfetched_pushes(&self, user_ids: &[String]) -> StoreResult<Vec<(String, Uuid)>> {
        let ids = serde_json::to_string(user_ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows: Vec<(String, String)> =
            sqlx::query_as("select user_id, push_id from pushes where user_id in (select value from json_each(?1)) and fetched_at is null")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(|(u, p)| Ok((u, parse_uuid(&p)?))).collect()
    }
}
