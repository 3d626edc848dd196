//! Decisions by expected value, and exploration.
//!
//! With a push-response model, every allowed hour of the next `value_lookahead_hours` (the
//! hard limits decide which: quiet hours, caps per local day and week, minimum gap) is valued
//! at `v_open·P(open) + v_convert·P(convert) − c_unsubscribe·P(unsubscribe)` for the user's
//! best item, and the push goes out at the best hour when that value reaches
//! `value_threshold`: a shopper who opens and converts gets more pushes, at the hours they
//! respond, and one who does not gets fewer. A later hour is valued with the user's log as it
//! stands now (their last event, the last day's events, their touches of the item), and a push
//! planned for it goes out when it comes, unless a hard limit stands in its way or the
//! threshold has since risen above the value it was planned with. There is no pacing
//! frequency: how often is what the values say, within the caps.
//!
//! Exploration: when a push would be allowed now (hard limits, an item, the global budget),
//! the greedy action is replaced, with probability `exploration_rate / 2`, by the other one
//! (send instead of wait, wait instead of send). Every decision records the probability of the
//! action taken (`propensity`), so a new policy can be evaluated on the decision log.

use chrono::{DateTime, TimeDelta, Utc};

use super::histogram::{BlendedActivity, hour_of_week};
use super::planner::{hard_limit_at, local_hour_start, next_local_hour};
use super::policy::{DecideContext, Decision, DecisionInputs, SkipReason};
use super::response::{Predicted, ResponseFeatures, ResponseModel};
use super::state::{PushOutcome, PushState};
use super::{FrequencyConfig, is_in_holdout};

/// A uniform draw in `[0, 1)` fixed by (user, minute), for [`super::DecideContext::draw`]:
/// the exploration of one decision is reproducible, and independent between users.
pub fn exploration_draw(user_id: &str, now: DateTime<Utc>) -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x6578_706c_6f72).build_hasher();
    h.write(user_id.as_bytes());
    h.write_i64(now.timestamp().div_euclid(60));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// How long an explored skip waits before looking again.
const EXPLORED_SKIP_RETRY: TimeDelta = TimeDelta::hours(1);

impl FrequencyConfig {
    /// The expected value of a push with these predicted outcomes.
    pub fn push_value(&self, p: &Predicted) -> f64 {
        self.value_open * p.open + self.value_convert * p.convert - self.cost_unsubscribe * p.unsubscribe
    }
}

/// The blended activity of the user and its peak, as the response features read them.
struct Activity {
    blended: BlendedActivity,
    peak: f64,
    day_peak: f64,
}

impl PushState {
    fn activity_now(&self, ctx: &DecideContext<'_>, cfg: &FrequencyConfig) -> Activity {
        let blend_at = self.activity.as_of().map_or(self.pacing_reference(), |a| a.max(self.pacing_reference()));
        let blended = BlendedActivity::new(&self.activity, ctx.population, blend_at, cfg);
        let peak = blended.score(blended.peak_bin());
        let day_peak = blended.hour_of_day_peak();
        Activity { blended, peak, day_peak }
    }

    /// What the push-response model sees of a push at `t` with an item scoring `item_score`.
    pub fn response_features(&self, ctx: &DecideContext<'_>, t: DateTime<Utc>, item_score: Option<f64>, cfg: &FrequencyConfig) -> ResponseFeatures {
        self.features_at(&self.activity_now(ctx, cfg), ctx, t, t, item_score, cfg)
    }

    /// The features of a push at `t` as planned at `now` (`<= t`): what depends on the user's
    /// own log (last event, events of the last day, touches of the item) is read at `now` and
    /// held, the best forecast of it that does not assume the user stays away until `t`; what
    /// depends on the hour and the pushes before `t` is read at `t`.
    fn features_at(
        &self,
        a: &Activity,
        ctx: &DecideContext<'_>,
        t: DateTime<Utc>,
        now: DateTime<Utc>,
        item_score: Option<f64>,
        cfg: &FrequencyConfig,
    ) -> ResponseFeatures {
        let tz = ctx.user.timezone;
        let bin = hour_of_week(t, tz);
        let activity = if a.peak > 0.0 { a.blended.score(bin) / a.peak } else { 0.0 };
        let hour_activity = if a.day_peak > 0.0 { a.blended.hour_of_day(bin) / a.day_peak } else { 0.0 };
        let day_before = t - TimeDelta::hours(24);
        let last_open = self
            .recent_pushes
            .iter()
            .filter(|p| matches!(p.outcome, PushOutcome::Opened | PushOutcome::Clicked | PushOutcome::Converted))
            .map(|p| p.sent_at)
            .max();
        ResponseFeatures {
            activity,
            hour_activity: Some(hour_activity),
            hours_since_push: ResponseFeatures::hours_between(self.last_push_at, t),
            pushes_24h: self.recent_pushes.iter().filter(|p| p.sent_at > day_before && p.sent_at <= t).count() as u32,
            fatigue: self.fatigue_at(t, cfg),
            sent: self.totals.sent,
            opens: self.totals.opened,
            hours_since_open: ResponseFeatures::hours_between(last_open, t),
            ignored_streak: self.consecutive_ignored,
            ignored_7d: self
                .recent_pushes
                .iter()
                .filter(|p| p.outcome == PushOutcome::Ignored && p.sent_at > t - TimeDelta::days(7) && p.sent_at <= t)
                .count() as u32,
            item_score,
            item_hours_since_touch: ResponseFeatures::hours_between(ctx.recent.item_last_touch, now),
            item_touches: ctx.recent.item_touches,
            hours_since_active: ResponseFeatures::hours_between(ctx.recent.last_active, now),
            events_24h: ctx.recent.events_before(now),
            weekend: ResponseFeatures::is_weekend(t, tz),
            mobile: ctx.recent.mobile,
        }
    }

    /// The learned policy (see the module documentation).
    pub(super) fn decide_by_value(&self, ctx: &DecideContext<'_>, model: &ResponseModel, now: DateTime<Utc>, cfg: &FrequencyConfig) -> Decision {
        let user = &ctx.user;
        let mut inputs = DecisionInputs {
            policy: "learned".into(),
            value_threshold: Some(cfg.value_threshold),
            ..self.base_inputs(ctx, now, cfg)
        };
        let skip = |reason: SkipReason, next: Option<DateTime<Utc>>, inputs: DecisionInputs| Decision::Skip {
            reason,
            next_check_at: next,
            summary: format!("skip: {}", reason.describe()),
            inputs,
            propensity: 1.0,
        };
        if self.is_unsubscribed() {
            return skip(SkipReason::Unsubscribed, None, inputs);
        }
        if !user.push_consent {
            return skip(SkipReason::NoConsent, None, inputs);
        }
        if is_in_holdout(user.user_id, cfg.holdout_share) {
            return skip(SkipReason::Holdout, None, inputs);
        }
        let activity = self.activity_now(ctx, cfg);
        let value_at = |t: DateTime<Utc>| {
            let f = self.features_at(&activity, ctx, t, now, ctx.best_item_score, cfg);
            let p = model.predict(&f);
            (cfg.push_value(&p), p, f)
        };
        // Every allowed hour of the look-ahead, `now` first; the best by value (ties: earliest).
        let horizon = now + TimeDelta::hours(i64::from(cfg.value_lookahead_hours));
        let mut best: Option<(DateTime<Utc>, f64)> = None;
        let (mut hour, mut t) = (local_hour_start(now, user.timezone), now);
        while t < horizon {
            if hard_limit_at(self, user, t, cfg).is_none() {
                let (v, ..) = value_at(t);
                if best.is_none_or(|(_, b)| v > b) {
                    best = Some((t, v));
                }
            }
            hour = next_local_hour(hour, user.timezone);
            t = hour;
        }
        let (v, p, f) = value_at(now);
        (inputs.value, inputs.predicted, inputs.features) = (Some(v), Some(p), Some(f));
        let retry = now + TimeDelta::minutes(i64::from(cfg.content_retry_minutes));
        // A plan made earlier whose hour has come is kept: the value was judged when it was
        // made, with what the user's log said then; judging it again now, when the activity
        // that prompted it is hours old, would drop most plans at their hour.
        let due = self.planned.filter(|p| p.at <= now && now < p.at + TimeDelta::hours(1));
        let best = match due {
            Some(plan) if hard_limit_at(self, user, now, cfg).is_none() => Some((now, plan.value)),
            _ => best,
        };
        match best {
            None => skip(hard_limit_at(self, user, now, cfg).unwrap_or(SkipReason::NoAllowedSlot), Some(now + TimeDelta::hours(24)), inputs),
            Some((_, b)) if b < cfg.value_threshold => skip(SkipReason::LowValue, Some(retry), inputs),
            Some((at, b)) if at > now => {
                (inputs.slot, inputs.slot_value) = (Some(at), Some(b));
                skip(SkipReason::WaitingForBetterSlot, Some(at), inputs)
            }
            Some(_) if ctx.best_item_score.is_none() => skip(SkipReason::NoItem, Some(retry), inputs),
            Some(_) if ctx.global_budget_left == 0 => skip(SkipReason::GlobalRateLimit, Some(now + TimeDelta::minutes(1)), inputs),
            Some((at, value)) => {
                (inputs.slot, inputs.slot_value) = (Some(at), Some(value));
                let inputs = DecisionInputs { fatigue_after: inputs.fatigue + cfg.fatigue_per_push, ..inputs };
                let why = match due {
                    Some(plan) => format!("planned at {} with expected value {:.3}", plan.planned_at.format("%Y-%m-%d %H:%M UTC"), plan.value),
                    None => format!("expected value {value:.3}"),
                };
                Decision::Send {
                    at: now,
                    next_check_at: now + cfg.min_gap(),
                    summary: format!(
                        "send: {why} >= {:.3} (now: P(open) {:.3}, P(convert) {:.3}, P(unsubscribe) {:.4})",
                        cfg.value_threshold, p.open, p.convert, p.unsubscribe
                    ),
                    inputs,
                    propensity: 1.0,
                }
            }
        }
    }

    /// Applies exploration to the greedy decision (see the module documentation).
    pub(super) fn explore(&self, greedy: Decision, ctx: &DecideContext<'_>, now: DateTime<Utc>, cfg: &FrequencyConfig) -> Decision {
        let eps = cfg.exploration_rate;
        let sendable = eps > 0.0
            && !self.is_unsubscribed()
            && ctx.user.push_consent
            && !is_in_holdout(ctx.user.user_id, cfg.holdout_share)
            && hard_limit_at(self, &ctx.user, now, cfg).is_none()
            && ctx.best_item_score.is_some()
            && ctx.global_budget_left > 0;
        if !sendable {
            return greedy;
        }
        let flip = ctx.draw < eps / 2.0;
        let (kept, flipped) = (1.0 - eps / 2.0, eps / 2.0);
        match greedy {
            Decision::Send { inputs, summary, .. } if flip => Decision::Skip {
                reason: SkipReason::Exploration,
                next_check_at: Some(now + EXPLORED_SKIP_RETRY),
                summary: format!("skip to explore (the greedy action was: {summary})"),
                inputs: DecisionInputs { fatigue_after: inputs.fatigue, ..inputs },
                propensity: flipped,
            },
            Decision::Skip { reason, inputs, .. } if flip => Decision::Send {
                at: now,
                next_check_at: now + cfg.min_gap(),
                summary: format!("send to explore (the greedy action was to skip: {})", reason.describe()),
                inputs: DecisionInputs { fatigue_after: inputs.fatigue + cfg.fatigue_per_push, ..inputs },
                propensity: flipped,
            },
            Decision::Send { at, next_check_at, summary, inputs, .. } => Decision::Send { at, next_check_at, summary, inputs, propensity: kept },
            Decision::Skip { reason, next_check_at, summary, inputs, .. } => Decision::Skip { reason, next_check_at, summary, inputs, propensity: kept },
        }
    }
}
