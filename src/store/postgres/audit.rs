//! Read-only checks of what the store holds, for `kairos soak`: are the events it
//! acknowledged all stored, and is nothing left of the users it erased.

use uuid::Uuid;

use super::PgStore;
use crate::store::StoreResult;

/// Every table with rows about one user, and the query counting them.
const USER_TABLES: [(&str, &str); 5] = [
    ("events", "select count(*) from events where user_id = any($1)"),
    ("users", "select count(*) from users where user_id = any($1)"),
    ("push_state", "select count(*) from push_state where user_id = any($1)"),
    ("pushes", "select count(*) from pushes where user_id = any($1)"),
    ("decisions", "select count(*) from decisions where user_id = any($1)"),
];

impl PgStore {
    /// How many of `ids` name a stored event (`event_ids`, written with the log, holds each once).
    pub async fn count_stored_events(&self, ids: &[Uuid]) -> StoreResult<i64> {
        let mut found = 0;
        for chunk in ids.chunks(10_000) {
            let n: i64 = sqlx::query_scalar("select count(*) from event_ids where event_id = any($1)").bind(chunk).fetch_one(&self.pool).await?;
            found += n;
        }
        Ok(found)
    }

    /// Rows in each per-user table that still name one of `users`.
    pub async fn rows_naming_users(&self, users: &[String]) -> StoreResult<Vec<(&'static str, i64)>> {
        let mut counts = Vec::new();
        for (table, sql) in USER_TABLES {
            let n: i64 = sqlx::query_scalar(sql).bind(users).fetch_one(&self.pool).await?;
            counts.push((table, n));
        }
        Ok(counts)
    }
}
