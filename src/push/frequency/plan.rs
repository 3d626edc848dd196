//! What the push-plan shows of a user's state: derived in one place, so its fields agree.
//!
//! - `fatigue` is the fatigue now, after every push so far; a decision's
//!   `inputs.fatigue` is the fatigue at that decision, before its own push, and
//!   `inputs.fatigue_after` the fatigue right after it.
//! - `next_send_at` is the first slot the policy would send in at or after `next_check_at`
//!   (the scheduler does not look at the user before then), so it is never earlier.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ActivityHistogram, FrequencyConfig, LocalWeek, PushState, Recipient, is_in_holdout, local_date};

/// Pushes used against the caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct CapsUsed {
    pub today: u32,
    pub max_per_day: u32,
    pub this_week: u32,
    pub max_per_week: u32,
}

/// The state-derived fields of the push-plan.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PlanSummary {
    pub in_holdout: bool,
    pub unsubscribed: bool,
    /// Pushes per day the policy aims at (before fatigue).
    pub target_frequency: Option<f64>,
    /// Fatigue now, after every push so far (fatigue units).
    pub fatigue: Option<f64>,
    /// When the scheduler looks at the user next.
    pub next_check_at: Option<DateTime<Utc>>,
    /// The first slot a push may go out at or after `next_check_at`, within the limits, at the
    /// user's most active time; `null` when none (no consent, unsubscribed, holdout, nothing
    /// allowed within the look-ahead).
    pub next_send_at: Option<DateTime<Utc>>,
    pub caps: Option<CapsUsed>,
    pub consecutive_ignored: Option<u32>,
}

/// The summary of `state` (none before the scheduler first planned for the user).
pub fn summarise(
    state: Option<&PushState>,
    next_due_at: Option<DateTime<Utc>>,
    user: &Recipient<'_>,
    population: &ActivityHistogram,
    now: DateTime<Utc>,
    cfg: &FrequencyConfig,
) -> PlanSummary {
    let in_holdout = is_in_holdout(user.user_id, cfg.holdout_share);
    let today = local_date(now, user.timezone);
    let from = next_due_at.map_or(now, |d| d.max(now));
    PlanSummary {
        in_holdout,
        unsubscribed: state.is_some_and(PushState::is_unsubscribed),
        target_frequency: state.map(|s| s.target_frequency(cfg)),
        fatigue: state.map(|s| s.fatigue_at(now, cfg)),
        next_check_at: next_due_at,
        next_send_at: state.and_then(|s| {
            let eligible = user.push_consent && !s.is_unsubscribed() && !in_holdout;
            eligible.then(|| s.next_send_time(user, population, from, cfg)).flatten()
        }),
        caps: state.map(|s| CapsUsed {
            today: s.pushes_on(today),
            max_per_day: cfg.max_per_day,
            this_week: s.pushes_in(LocalWeek::of(today)),
            max_per_week: cfg.max_per_week,
        }),
        consecutive_ignored: state.map(|s| s.consecutive_ignored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::QuietHours;
    use crate::push::frequency::{DecideContext, Decision};
    use chrono::{TimeDelta, TimeZone};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_plan_never_sends_before_it_looks_and_its_fatigue_follows_the_decisions(
            pushes in 0usize..6,
            gaps in proptest::collection::vec(1i64..600, 6),
            ahead in 0i64..2000,
            quiet in proptest::option::of((0u8..24, 0u8..24)),
            consent in any::<bool>(),
            zone in 0usize..3,
        ) {
            let cfg = FrequencyConfig { holdout_share: 0.0, ..FrequencyConfig::default() };
            let tz = [chrono_tz::UTC, chrono_tz::Europe::Berlin, chrono_tz::Asia::Tokyo][zone];
            let recipient = Recipient { user_id: "u", timezone: tz, push_consent: consent, quiet_hours: quiet.map(|(start, end)| QuietHours { start, end }) };
            let population = ActivityHistogram::new();
            let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
            let mut state = PushState::new(cfg.theta, t0, &cfg);
            let mut now = t0;
            let mut last: Option<Decision> = None;
            for (n, gap) in gaps.iter().take(pushes).enumerate() {
                now += TimeDelta::minutes(*gap);
                let ctx = DecideContext::basic(recipient, Some(1.0), 10, &population);
                let d = state.decide(&ctx, now, &cfg);
                if let Decision::Send { at, .. } = &d {
                    state.record_sent(&format!("p{n}"), &format!("i{n}"), *at, tz, &cfg);
                }
                last = Some(d);
            }
            let looked_at = now + TimeDelta::minutes(ahead / 2);
            let next_due = last.as_ref().and_then(Decision::next_check_at);
            let plan = summarise(Some(&state), next_due, &recipient, &population, looked_at, &cfg);
            if let (Some(send), Some(check)) = (plan.next_send_at, plan.next_check_at) {
                prop_assert!(send >= check, "next_send_at {send} before next_check_at {check}");
            }
            if let Some(send) = plan.next_send_at {
                prop_assert!(send >= looked_at);
                prop_assert!(consent);
            }
            if let Some(Decision::Send { at, inputs, .. }) = &last {
                // The fatigue now is the one right after the last push, decayed since.
                let after = inputs.fatigue_after;
                let shown = plan.fatigue.unwrap();
                prop_assert!(shown <= after + 1e-9 && after > inputs.fatigue, "{} then {} now {}", inputs.fatigue, after, shown);
                let decayed = after * 0.5f64.powf((looked_at - *at).num_seconds() as f64 / (cfg.fatigue_half_life_hours * 3600.0));
                prop_assert!((shown - decayed).abs() < 1e-6, "{shown} vs {decayed}");
            }
        }
    }
}
