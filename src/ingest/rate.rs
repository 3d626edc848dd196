//! The per-user ingest limit: at most `ingest.max_events_per_user_per_minute` events of one
//! user per minute on this replica, counted in fixed minute windows. A request that would
//! take any of its users over the limit is refused whole and counts nothing.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::domain::{Event, FieldError};
use crate::rank::catalog::StrMap;

/// Users counted in one minute at most; beyond it the window starts over (a bound on memory,
/// reached only by millions of distinct senders in one minute).
const MAX_USERS: usize = 1_000_000;

pub struct UserRate {
    limit: u32,
    window: Mutex<(i64, StrMap<String, u32>)>,
}

/// A refusal: the events over the limit, and the seconds until the next window.
#[derive(Debug)]
pub struct Limited {
    pub errors: Vec<FieldError>,
    pub retry_after_secs: u64,
}

impl UserRate {
    pub fn new(limit: u32) -> Self {
        UserRate { limit, window: Mutex::new((i64::MIN, StrMap::default())) }
    }

    /// Counts `events` at `now`, or refuses them all when one user would exceed the limit.
    pub fn admit(&self, events: &[Event], now: DateTime<Utc>) -> Result<(), Limited> {
        let minute = now.timestamp().div_euclid(60);
        let mut guard = self.window.lock().expect("rate lock");
        let (current, counts) = &mut *guard;
        if *current != minute || counts.len() > MAX_USERS {
            *current = minute;
            counts.clear();
        }
        let mut wanted: StrMap<&str, u32> = StrMap::default();
        for e in events {
            *wanted.entry(e.user_id.as_str()).or_default() += 1;
        }
        let errors: Vec<FieldError> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| counts.get(&e.user_id).copied().unwrap_or(0) + wanted[e.user_id.as_str()] > self.limit)
            .map(|(n, e)| FieldError {
                field: format!("events[{n}].user_id"),
                index: Some(n),
                message: format!("user {:?} may send at most {} events per minute", e.user_id, self.limit),
            })
            .collect();
        if !errors.is_empty() {
            return Err(Limited { errors, retry_after_secs: (60 - now.timestamp().rem_euclid(60)).max(1) as u64 });
        }
        for (user, n) in wanted {
            *counts.entry(user.to_string()).or_default() += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ev(user: &str) -> Event {
        Event {
            event_id: uuid::Uuid::new_v4(),
            user_id: user.into(),
            item_id: Some("i".into()),
            kind: "view".into(),
            ts: Utc::now(),
            context: Default::default(),
            props: Default::default(),
        }
    }

    #[test]
    fn a_user_over_the_limit_is_refused_whole_and_counts_nothing_until_the_next_minute() {
        let rate = UserRate::new(3);
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 10).unwrap();
        assert!(rate.admit(&[ev("a"), ev("a"), ev("b")], t).is_ok());
        let refused = rate.admit(&[ev("b"), ev("a"), ev("a")], t).unwrap_err();
        assert_eq!(refused.errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["events[1].user_id", "events[2].user_id"]);
        assert_eq!(refused.retry_after_secs, 50);
        assert!(rate.admit(&[ev("a")], t).is_ok(), "the refused request counted nothing: a is at 2 of 3");
        assert!(rate.admit(&[ev("a")], t).is_err());
        assert!(rate.admit(&[ev("a"), ev("a"), ev("a")], t + chrono::TimeDelta::minutes(1)).is_ok(), "a new window");
    }
}
