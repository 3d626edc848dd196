//! The behaviour log's daily partitions (migration 0008): one per UTC day of `ts`, named
//! `events_pYYYYMMDD`, created before the first insert into that day and dropped whole when
//! the day has passed the retention.
//!
//! Creating and dropping happen under one transaction-scoped advisory lock, so that replicas
//! (and a retention pass) never race on the catalogue. Each store remembers the days it has
//! made sure of; a day another replica dropped meanwhile shows as an insert that finds no
//! partition, which makes sure of the day again and retries once.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::PgPool;

use crate::store::StoreResult;

/// Advisory lock key of partition creation and dropping ("kairos-p").
const LOCK: i64 = 0x6b61_6972_6f73_2d70;

/// Days whose partition this store knows to exist.
#[derive(Default)]
pub(crate) struct Partitions {
    known: Mutex<HashSet<NaiveDate>>,
}

fn name(day: NaiveDate) -> String {
    format!("events_p{}", day.format("%Y%m%d"))
}

fn day_of(name: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(name.strip_prefix("events_p")?, "%Y%m%d").ok()
}

/// Whether `e` says a row had no partition to go to (check_violation, "no partition of
/// relation ... found for row").
pub(crate) fn is_missing_partition(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.code().as_deref() == Some("23514") && d.message().contains("no partition"))
}

impl Partitions {
    /// Makes sure every day of `times` has its partition (`forget`: ask the database even for
    /// days this store has made sure of before).
    pub(crate) async fn ensure(&self, pool: &PgPool, times: &[DateTime<Utc>], forget: bool) -> StoreResult<()> {
        let mut days: Vec<NaiveDate> = times.iter().map(DateTime::date_naive).collect();
        days.sort_unstable();
        days.dedup();
        if !forget {
            let known = self.known.lock().expect("partitions lock");
            days.retain(|d| !known.contains(d));
        }
        if days.is_empty() {
            return Ok(());
        }
        let mut tx = pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock($1)").bind(LOCK).execute(&mut *tx).await?;
        for &day in &days {
            let next = day.checked_add_days(Days::new(1)).unwrap_or(day);
            // The name and bounds are formatted from a date: nothing of a request reaches the SQL.
            let sql = format!(
                "create table if not exists {} partition of events for values from ('{day}T00:00:00Z') to ('{next}T00:00:00Z')",
                name(day)
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.known.lock().expect("partitions lock").extend(days);
        Ok(())
    }

    /// Drops the partitions of the days that end at or before `before`; returns how many rows
    /// they held.
    pub(crate) async fn drop_before(&self, pool: &PgPool, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock($1)").bind(LOCK).execute(&mut *tx).await?;
        let names: Vec<String> = sqlx::query_scalar(
            "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid \
             where i.inhparent = 'events'::regclass",
        )
        .fetch_all(&mut *tx)
        .await?;
        let expired: Vec<NaiveDate> = names
            .iter()
            .filter_map(|n| day_of(n).filter(|d| name(*d) == *n))
            .filter(|d| d.checked_add_days(Days::new(1)).is_some_and(|end| end.and_time(chrono::NaiveTime::MIN).and_utc() <= before))
            .collect();
        let mut rows = 0u64;
        for &day in &expired {
            let table = name(day);
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}"))).fetch_one(&mut *tx).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("drop table {table}"))).execute(&mut *tx).await?;
            rows += u64::try_from(n).unwrap_or(0);
        }
        tx.commit().await?;
        let mut known = self.known.lock().expect("partitions lock");
        expired.iter().for_each(|d| {
            known.remove(d);
        });
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_named_by_its_utc_day_and_read_back() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 9).unwrap();
        assert_eq!(name(day), "events_p20260309");
        assert_eq!(day_of(&name(day)), Some(day));
        assert_eq!(day_of("events_unpartitioned"), None);
        assert_eq!(day_of("event_ids"), None);
    }
}
