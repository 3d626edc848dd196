//! PostgreSQL: the user change log and the shared push budget.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::PgStore;
use crate::store::{ChangeCursor, ChangeKind, ChangeStore, StoreResult, UserChange};

#[async_trait]
impl ChangeStore for PgStore {
    async fn user_changes_since(&self, after: Option<ChangeCursor>, limit: i64) -> StoreResult<(Vec<UserChange>, DateTime<Utc>)> {
        let now: DateTime<Utc> = sqlx::query_scalar("select clock_timestamp()").fetch_one(&self.pool).await?;
        let Some(after) = after else { return Ok((Vec::new(), now)) };
        let rows = sqlx::query(
            "select seq, user_id, kind, changed_at from user_changes where (changed_at, seq) > ($1, $2) order by changed_at, seq limit $3",
        )
        .bind(after.changed_at)
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
                    changed_at: r.try_get("changed_at")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((changes, now))
    }

    async fn prune_user_changes(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let r = sqlx::query("delete from user_changes where changed_at < $1").bind(before).execute(&self.pool).await?;
        sqlx::query("delete from push_budget where minute < $1").bind(before.timestamp() / 60).execute(&self.pool).await?;
        Ok(r.rows_affected())
    }

    async fn take_push_budget(&self, minute: i64, want: i64, limit: i64) -> StoreResult<i64> {
        // One row per minute, locked while a taker reads and adds its grant.
        let mut tx = self.pool.begin().await?;
        sqlx::query("insert into push_budget (minute, used) values ($1, 0) on conflict (minute) do nothing").bind(minute).execute(&mut *tx).await?;
        let used: i64 = sqlx::query_scalar("select used from push_budget where minute = $1 for update").bind(minute).fetch_one(&mut *tx).await?;
        let granted = want.min(limit - used).max(0);
        sqlx::query("update push_budget set used = used + $2 where minute = $1").bind(minute).bind(granted).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(granted)
    }

    async fn give_back_push_budget(&self, minute: i64, n: i64) -> StoreResult<()> {
        sqlx::query("update push_budget set used = greatest(used - $2, 0) where minute = $1").bind(minute).bind(n.max(0)).execute(&self.pool).await?;
        Ok(())
    }

    async fn unfetched_pushes(&self, user_ids: &[String]) -> StoreResult<Vec<(String, Uuid)>> {
        Ok(sqlx::query_as("select user_id, push_id from pushes where user_id = any($1) and fetched_at is null")
            .bind(user_ids)
            .fetch_all(&self.pool)
            .await?)
    }
}
