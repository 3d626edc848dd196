//! The send-time planner: the time-dependent hard limits (quiet hours, caps per local day and
//! week, minimum gap), pacing and the send window, and the most active allowed hour in it.
//! See `policy.rs` for how a decision uses it.

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::config::hours;
use super::histogram::{ActivityHistogram, BlendedActivity, hour_of_week};
use super::policy::{Recipient, SkipReason};
use super::state::{LocalWeek, PushState, local_date};
use super::{FrequencyConfig, is_in_holdout};

/// A planned send time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub at: DateTime<Utc>,
    /// Hour-of-week bin in the user's local time.
    pub bin: usize,
    /// Blended activity share of the bin (0..1).
    pub activity: f64,
}

/// The planner's answer: the next allowed send time and what limits the present.
#[derive(Debug, Clone, PartialEq)]
pub struct SendPlan {
    /// The best allowed time in the first window that has one; `None` when no window starting
    /// within `lookahead_hours` has an allowed hour. Never before `now`.
    pub slot: Option<Slot>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// The limit that keeps a push from going out at `now`, if any (hard limits first, then
    /// `Pacing` when `now` is before the first window).
    pub blocked_now: Option<SkipReason>,
    /// Pushes per day.
    pub pacing_frequency: f64,
    pub own_activity_weight: f64,
}

/// Start of the local hour containing `t` (in UTC).
pub(super) fn local_hour_start(t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let local = t.with_timezone(&tz);
    t - TimeDelta::seconds(i64::from(local.minute() * 60 + local.second()))
        - TimeDelta::nanoseconds(i64::from(local.nanosecond()))
}

/// Start of the next local hour after the one starting at `start`. One UTC hour later is the
/// next local hour for whole-hour DST shifts (the skipped hour is simply never produced and a
/// repeated one comes twice); realigning handles zones whose offset moves by 30 minutes.
pub(super) fn next_local_hour(start: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let next = start + TimeDelta::hours(1);
    let aligned = local_hour_start(next, tz);
    if aligned > start { aligned } else { next }
}

/// Why a push at `t` is not allowed by the hard limits that depend on the time, if any.
pub(super) fn hard_limit_at(state: &PushState, user: &Recipient<'_>, t: DateTime<Utc>, cfg: &FrequencyConfig) -> Option<SkipReason> {
    let day = local_date(t, user.timezone);
    if state.pushes_on(day) >= cfg.max_per_day {
        return Some(SkipReason::DailyCap);
    }
    if state.pushes_in(LocalWeek::of(day)) >= cfg.max_per_week {
        return Some(SkipReason::WeeklyCap);
    }
    if let Some(last) = state.last_push_at
        && t < last + cfg.min_gap()
    {
        return Some(SkipReason::MinGap);
    }
    if let Some(q) = user.quiet_hours
        && q.contains(t.with_timezone(&user.timezone).hour())
    {
        return Some(SkipReason::QuietHours);
    }
    None
}

impl PushState {
    /// Whether the time-dependent hard limits (quiet hours, caps, minimum gap) allow a push at `t`.
    pub fn allowed_at(&self, user: &Recipient<'_>, t: DateTime<Utc>, cfg: &FrequencyConfig) -> bool {
        hard_limit_at(self, user, t, cfg).is_none()
    }

    /// Whether a decision at `now` may read the item to push (its score, the user's touches of
    /// it): never for a user who cannot be pushed (unsubscribed, no consent, holdout); by
    /// expected value (`learned`), whenever they can, since every hour of the look-ahead is
    /// valued with the item; by the hand-set rule (and for exploration), only when a push is
    /// allowed now. A caller that ranks only then takes the same action as one that always
    /// ranks; only the decision's logged inputs lack the item it did not read.
    pub fn reads_item(&self, user: &Recipient<'_>, learned: bool, now: DateTime<Utc>, cfg: &FrequencyConfig) -> bool {
        if self.is_unsubscribed() || !user.push_consent || is_in_holdout(user.user_id, cfg.holdout_share) {
            return false;
        }
        learned || self.allowed_at(user, now, cfg)
    }

    /// Pacing interval `P` and window length `W` at `now`.
    pub(super) fn pacing(&self, cfg: &FrequencyConfig) -> (f64, TimeDelta, TimeDelta) {
        let f = self.pacing_frequency(cfg);
        let p = hours(24.0 / f);
        let w = hours((24.0 / f).clamp(1.0, cfg.send_window_max_hours));
        (f, p, w)
    }

    /// Plans the next send time within every time-dependent limit (pacing, quiet hours, caps per
    /// local day and week, minimum gap), at the local hour with the highest blended activity in
    /// the current send window. It does not look at consent, unsubscribe, holdout, content or
    /// the global budget: [`PushState::decide`] does. A scheduler may call this first and score
    /// items only when the slot is now.
    pub fn plan(
        &self,
        user: &Recipient<'_>,
        population: &ActivityHistogram,
        now: DateTime<Utc>,
        cfg: &FrequencyConfig,
    ) -> SendPlan {
        let (f, p, w) = self.pacing(cfg);
        let anchor = match self.last_push_at {
            Some(last) => last + p - w / 2,
            None => self.created_at,
        };
        // The window of the fixed grid (anchor + k·W) that contains `now`, or the first one.
        let mut ws = anchor;
        if now >= anchor {
            let k = (now - anchor).num_seconds() / w.num_seconds().max(1);
            ws = anchor + TimeDelta::seconds(k * w.num_seconds());
        }
        let mut we = ws + w;
        // The blend is read at a time that only moves when something happens (a push, new
        // activity), so the chosen hour does not drift as the user's own weight decays.
        let blend_at = self.activity.as_of().map_or(self.pacing_reference(), |a| a.max(self.pacing_reference()));
        let blended = BlendedActivity::new(&self.activity, population, blend_at, cfg);
        let blocked_now = hard_limit_at(self, user, now, cfg).or((now < anchor).then_some(SkipReason::Pacing));
        let gap_until = self.last_push_at.map(|l| l + cfg.min_gap());
        let horizon = now + TimeDelta::hours(i64::from(cfg.lookahead_hours));
        let (first_ws, first_we) = (ws, we);
        let mut slot = None;
        while ws < horizon && slot.is_none() {
            let from = [Some(ws), Some(now), gap_until].into_iter().flatten().max().unwrap_or(now);
            // A window that starts within the look-ahead is searched to its end: cutting it at
            // the horizon made the choice depend on when one asks (a plan made earlier saw
            // only the window's first hours and chose one that a later decision rejected).
            slot = best_slot_in(self, user, &blended, from, we, cfg);
            if slot.is_none() {
                ws = we;
                we = ws + w;
            }
        }
        let (window_start, window_end) = if slot.is_some() { (ws, we) } else { (first_ws, first_we) };
        SendPlan { slot, window_start, window_end, blocked_now, pacing_frequency: f, own_activity_weight: blended.own_weight }
    }

    /// The next time a push may go out (see [`PushState::plan`]), or `None` within the look-ahead.
    pub fn next_send_time(
        &self,
        user: &Recipient<'_>,
        population: &ActivityHistogram,
        now: DateTime<Utc>,
        cfg: &FrequencyConfig,
    ) -> Option<DateTime<Utc>> {
        self.plan(user, population, now, cfg).slot.map(|s| s.at)
    }

}

/// The best allowed time in `[from, to)`: the start of each local hour (or `from` within the
/// first one), scored by the blended activity of its hour-of-week bin; ties go to the earliest.
fn best_slot_in(
    state: &PushState,
    user: &Recipient<'_>,
    blended: &BlendedActivity,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cfg: &FrequencyConfig,
) -> Option<Slot> {
    let mut best: Option<Slot> = None;
    let mut hour_start = local_hour_start(from, user.timezone);
    let mut t = from;
    while t < to {
        if hard_limit_at(state, user, t, cfg).is_none() {
            let bin = hour_of_week(t, user.timezone);
            let activity = blended.score(bin);
            if best.is_none_or(|b| activity > b.activity) {
                best = Some(Slot { at: t, bin, activity });
            }
        }
        hour_start = next_local_hour(hour_start, user.timezone);
        t = hour_start;
    }
    best
}
