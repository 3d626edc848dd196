//! Behaviour of the whole policy, one scenario per rule: feedback, hard limits, send time,
//! DST, holdout, and properties.


use chrono::{DateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;
use crate::domain::QuietHours;

pub(super) fn cfg() -> FrequencyConfig {
    // No holdout in tests unless a test asks for it, so arbitrary ids are never held out.
    FrequencyConfig { holdout_share: 0.0, ..FrequencyConfig::default() }
}

pub(super) fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, mi, 0).unwrap()
}

pub(super) fn user(tz: Tz) -> Recipient<'static> {
    Recipient { user_id: "u-1", timezone: tz, push_consent: true, quiet_hours: None }
}

/// A population that is active only in the given hour-of-week bins (weights given).
pub(super) fn population(bins: &[(usize, f64)], as_of: DateTime<Utc>) -> ActivityHistogram {
    let mut b = [0.0; HOURS_PER_WEEK];
    for (i, w) in bins {
        b[*i] = *w;
    }
    ActivityHistogram::from_bins(b, as_of)
}

/// A population active every day at the given local hour.
pub(super) fn daily_peak(hour: usize, as_of: DateTime<Utc>) -> ActivityHistogram {
    let bins: Vec<(usize, f64)> = (0..7).map(|d| (d * 24 + hour, 100.0)).collect();
    population(&bins, as_of)
}

pub(super) fn ctx<'a>(u: Recipient<'a>, pop: &'a ActivityHistogram) -> DecideContext<'a> {
    DecideContext::basic(u, Some(1.0), 100, pop)
}

pub(super) fn fb<'a>(push_id: &'a str, kind: FeedbackKind, ts: DateTime<Utc>) -> Feedback<'a> {
    Feedback { push_id, item_id: "item-1", kind, ts }
}

mod feedback;
mod learned;
mod limits;
mod properties;
mod send_time;
