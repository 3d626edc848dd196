// Over 400 lines: the decision types and the hand-set decision, which records every input it used.
//! The decision: send now or skip (and why), and the send-time planner behind it.
//!
//! ## Pacing and the send window
//!
//! The pacing interval is `P = 24 h / f` for the pacing frequency `f` (target slowed by
//! fatigue). Sends are planned in windows of length `W = clamp(P, 1 h, send_window_max_hours)`
//! laid on a fixed grid: the first window starts at `E = last_push + P − W/2` (so a push lands
//! on average one interval after the last), or at the state's creation for a user who never got
//! one, and later windows follow back to back. Within the current window the planner picks the
//! allowed local hour with the highest blended activity (ties: the earliest). Because the grid
//! does not move with `now`, asking again later in the same window gives the same hour (unless
//! new activity changed the histogram): the push is never postponed forever.
//!
//! ## Hard limits (always win)
//!
//! Unsubscribed, no consent, holdout: never. Then an hour is allowed only when it is outside
//! the quiet hours, its local day is under `max_per_day`, its local ISO week under
//! `max_per_week`, and it is at least `min_gap_minutes` after the last push. Local hours are
//! enumerated as UTC instants and converted with chrono-tz, so a local hour that does not exist
//! (spring forward) is never offered and one that repeats (fall back) is offered twice, each
//! with its own UTC instant. At the chosen hour, the best item must score at least
//! `min_item_score`, and the global per-minute budget must not be spent.

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::histogram::ActivityHistogram;
use super::state::{LocalWeek, PlannedPush, PushState, local_date};
use super::response::{Predicted, RecentLog, ResponseFeatures, ResponseModel};
use super::{FrequencyConfig, is_in_holdout};
use crate::domain::{QuietHours, User};

/// The user settings the policy needs (a view of [`User`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipient<'a> {
    pub user_id: &'a str,
    pub timezone: Tz,
    pub push_consent: bool,
    pub quiet_hours: Option<QuietHours>,
}

impl<'a> From<&'a User> for Recipient<'a> {
    fn from(u: &'a User) -> Self {
        Self { user_id: &u.user_id, timezone: u.timezone, push_consent: u.push_consent, quiet_hours: u.quiet_hours }
    }
}

/// Everything besides the user's state that a decision depends on.
#[derive(Debug, Clone)]
pub struct DecideContext<'a> {
    pub user: Recipient<'a>,
    /// Score of the best item that may be pushed to the user now (not suppressed, not pushed
    /// within the repush window); `None` when there is none.
    pub best_item_score: Option<f64>,
    /// Pushes the whole service may still send in the current minute.
    pub global_budget_left: u32,
    /// The population's activity histogram (prior for users with little history).
    pub population: &'a ActivityHistogram,
    /// The push-response model in force: decisions by expected value when there is one,
    /// else the hand-set policy.
    pub model: Option<&'a ResponseModel>,
    /// Why there is no model, shown in the decision (`None` with a model).
    pub fallback: Option<&'a str>,
    /// What the user's log says near now (last event, device, the last day, the item).
    pub recent: RecentLog,
    /// A uniform draw in `[0, 1)` for exploration, fixed per (user, instant) by the caller.
    pub draw: f64,
}

impl<'a> DecideContext<'a> {
    /// A context with no model, no known activity and a draw that never explores.
    pub fn basic(user: Recipient<'a>, best_item_score: Option<f64>, global_budget_left: u32, population: &'a ActivityHistogram) -> Self {
        DecideContext { user, best_item_score, global_budget_left, population, model: None, fallback: None, recent: RecentLog::default(), draw: 1.0 }
    }
}

/// Why no push was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    Unsubscribed,
    NoConsent,
    Holdout,
    DailyCap,
    WeeklyCap,
    MinGap,
    QuietHours,
    /// Too early for the next push at the current frequency.
    Pacing,
    /// Allowed now, but a later hour in the current window is more active.
    WaitingForActiveHour,
    /// No allowed hour within `lookahead_hours`.
    NoAllowedSlot,
    /// No item may be pushed (none scored, all suppressed or pushed recently).
    NoItem,
    BelowContentThreshold,
    GlobalRateLimit,
    /// The learned policy: no allowed hour's expected value reaches `value_threshold`.
    LowValue,
    /// The learned policy: a later allowed hour has a higher expected value.
    WaitingForBetterSlot,
    /// Exploration: the greedy action was to send.
    Exploration,
}

impl SkipReason {
    /// Stable snake_case code (the serde name), for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Unsubscribed => "unsubscribed",
            SkipReason::NoConsent => "no_consent",
            SkipReason::Holdout => "holdout",
            SkipReason::DailyCap => "daily_cap",
            SkipReason::WeeklyCap => "weekly_cap",
            SkipReason::MinGap => "min_gap",
            SkipReason::QuietHours => "quiet_hours",
            SkipReason::Pacing => "pacing",
            SkipReason::WaitingForActiveHour => "waiting_for_active_hour",
            SkipReason::NoAllowedSlot => "no_allowed_slot",
            SkipReason::NoItem => "no_item",
            SkipReason::BelowContentThreshold => "below_content_threshold",
            SkipReason::GlobalRateLimit => "global_rate_limit",
            SkipReason::LowValue => "low_value",
            SkipReason::WaitingForBetterSlot => "waiting_for_better_slot",
            SkipReason::Exploration => "exploration",
        }
    }

    /// A sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Unsubscribed => "the user unsubscribed",
            SkipReason::NoConsent => "the user has not consented to pushes",
            SkipReason::Holdout => "the user is in the holdout group",
            SkipReason::DailyCap => "the cap per local day is reached",
            SkipReason::WeeklyCap => "the cap per local week is reached",
            SkipReason::MinGap => "the minimum gap since the last push has not passed",
            SkipReason::QuietHours => "it is within the user's quiet hours",
            SkipReason::Pacing => "too early for the next push at the user's frequency",
            SkipReason::WaitingForActiveHour => "waiting for an hour the user is more active",
            SkipReason::NoAllowedSlot => "no allowed hour in the look-ahead",
            SkipReason::NoItem => "no item is available to push",
            SkipReason::BelowContentThreshold => "the best item scores below the content threshold",
            SkipReason::GlobalRateLimit => "the global rate limit for this minute is spent",
            SkipReason::LowValue => "no allowed hour's expected value reaches the threshold",
            SkipReason::WaitingForBetterSlot => "a later allowed hour has a higher expected value",
            SkipReason::Exploration => "exploring: the greedy action was to send",
        }
    }
}

/// Every input a decision was taken on, recorded with it (shown by the push-plan API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionInputs {
    pub now: DateTime<Utc>,
    /// The user's local time at `now`, RFC 3339 with offset.
    pub local_time: String,
    pub timezone: String,
    pub push_consent: bool,
    pub quiet_hours: Option<QuietHours>,
    pub unsubscribed: bool,
    pub in_holdout: bool,
    pub best_item_score: Option<f64>,
    pub min_item_score: f64,
    pub global_budget_left: u32,
    /// Pushes per day.
    pub target_frequency: f64,
    /// Pushes per day, after the fatigue slow-down.
    pub pacing_frequency: f64,
    /// Fatigue at the decision, before its own push.
    pub fatigue: f64,
    /// Fatigue right after the decision: with its push when it sends.
    #[serde(default)]
    pub fatigue_after: f64,
    pub pushes_today: u32,
    pub max_per_day: u32,
    pub pushes_this_week: u32,
    pub max_per_week: u32,
    pub last_push_at: Option<DateTime<Utc>>,
    /// No push before this (last push + minimum gap).
    pub min_gap_until: Option<DateTime<Utc>>,
    pub consecutive_ignored: u32,
    /// `learned` (by expected value, with the push-response model) or `hand-set`.
    #[serde(default)]
    pub policy: String,
    /// Why the hand-set policy decided (no model trained yet, a model refused at load, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// The model's predictions for a push now, and the expected value
    /// `v_open·P(open) + v_convert·P(convert) − c_unsubscribe·P(unsubscribe)`, with its threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<Predicted>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_threshold: Option<f64>,
    /// What the push-response model sees of a push now (recorded with the push it plans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<ResponseFeatures>,
    /// The send window the slot was looked for in.
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    /// The planned send time, and its blended activity share (0..1).
    pub slot: Option<DateTime<Utc>>,
    pub slot_activity: Option<f64>,
    /// The learned policy: the expected value of a push at the slot, as planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_value: Option<f64>,
    /// Weight of the user's own histogram against the population's (0..1).
    pub own_activity_weight: Option<f64>,
}

/// A send-or-skip decision with its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Push now (`at` is the decision time); look at the user again at `next_check_at`.
    /// `propensity`: the probability with which the policy took this action (1 unless it
    /// explores), for off-policy evaluation.
    Send {
        at: DateTime<Utc>,
        next_check_at: DateTime<Utc>,
        summary: String,
        inputs: DecisionInputs,
        #[serde(default = "certain")]
        propensity: f64,
    },
    /// No push now; `next_check_at: None` means not until the user's settings change.
    Skip {
        reason: SkipReason,
        next_check_at: Option<DateTime<Utc>>,
        summary: String,
        inputs: DecisionInputs,
        #[serde(default = "certain")]
        propensity: f64,
    },
}

impl Decision {
    pub fn is_send(&self) -> bool {
        matches!(self, Decision::Send { .. })
    }

    pub fn skip_reason(&self) -> Option<SkipReason> {
        match self {
            Decision::Send { .. } => None,
            Decision::Skip { reason, .. } => Some(*reason),
        }
    }

    pub fn next_check_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Decision::Send { next_check_at, .. } => Some(*next_check_at),
            Decision::Skip { next_check_at, .. } => *next_check_at,
        }
    }

    pub fn inputs(&self) -> &DecisionInputs {
        match self {
            Decision::Send { inputs, .. } | Decision::Skip { inputs, .. } => inputs,
        }
    }

    /// The probability with which the policy took this action (1 unless it explored).
    pub fn propensity(&self) -> f64 {
        match self {
            Decision::Send { propensity, .. } | Decision::Skip { propensity, .. } => *propensity,
        }
    }

    pub fn summary(&self) -> &str {
        match self {
            Decision::Send { summary, .. } | Decision::Skip { summary, .. } => summary,
        }
    }

    /// Same skip reason and next check as `other` (used to collapse repeated polls in the log).
    pub(crate) fn same_skip_as(&self, other: &Decision) -> bool {
        match (self, other) {
            (
                Decision::Skip { reason: a, next_check_at: na, .. },
                Decision::Skip { reason: b, next_check_at: nb, .. },
            ) => a == b && na == nb,
            _ => false,
        }
    }
}

fn certain() -> f64 {
    1.0
}

/// At most `n` of `newest_first` decisions, where a skip that repeats the next newer one
/// (same reason, same next check: a user looked at again before anything changed) is left
/// out, so the log stays readable.
pub fn collapse_repeated_skips(newest_first: impl IntoIterator<Item = Decision>, n: usize) -> Vec<Decision> {
    let mut out: Vec<Decision> = Vec::with_capacity(n);
    for d in newest_first {
        if out.len() >= n {
            break;
        }
        if out.last().is_some_and(|newer| newer.same_skip_as(&d)) {
            continue;
        }
        out.push(d);
    }
    out
}

impl PushState {
    /// Decides whether to push to this user now, records the decision (with every input) in the
    /// decision log and sets [`PushState::next_due_at`]. With a push-response model in
    /// `ctx`, by expected value (`value.rs`), else by the hand-set policy; either way within
    /// the hard limits, then with the configured exploration. On `Send`, the caller writes the
    /// push and then calls [`PushState::record_sent`]. Call [`PushState::sweep_ignored`] first
    /// so the frequency reflects pushes that went unanswered.
    pub fn decide(&mut self, ctx: &DecideContext<'_>, now: DateTime<Utc>, cfg: &FrequencyConfig) -> Decision {
        let greedy = match ctx.model {
            Some(model) => self.decide_by_value(ctx, model, now, cfg),
            None => self.decide_hand_set(ctx, now, cfg),
        };
        let decision = self.explore(greedy, ctx, now, cfg);
        self.next_due_at = decision.next_check_at();
        self.planned = match &decision {
            Decision::Skip { reason: SkipReason::WaitingForBetterSlot, inputs, .. } => inputs.slot.map(|at| PlannedPush {
                at,
                planned_at: now,
                value: inputs.slot_value.unwrap_or_default(),
            }),
            _ => None,
        };
        decision
    }

    /// What every decision records of its inputs, before the policy adds its own.
    pub(super) fn base_inputs(&self, ctx: &DecideContext<'_>, now: DateTime<Utc>, cfg: &FrequencyConfig) -> DecisionInputs {
        let user = &ctx.user;
        let tz = user.timezone;
        let today = local_date(now, tz);
        let in_holdout = is_in_holdout(user.user_id, cfg.holdout_share);
        DecisionInputs {
            now,
            local_time: now.with_timezone(&tz).to_rfc3339(),
            timezone: tz.name().to_owned(),
            push_consent: user.push_consent,
            quiet_hours: user.quiet_hours,
            unsubscribed: self.is_unsubscribed(),
            in_holdout,
            best_item_score: ctx.best_item_score,
            min_item_score: cfg.min_item_score,
            global_budget_left: ctx.global_budget_left,
            target_frequency: self.target_frequency(cfg),
            pacing_frequency: self.pacing_frequency(cfg),
            fatigue: self.fatigue_at(now, cfg),
            fatigue_after: self.fatigue_at(now, cfg),
            pushes_today: self.pushes_on(today),
            max_per_day: cfg.max_per_day,
            pushes_this_week: self.pushes_in(LocalWeek::of(today)),
            max_per_week: cfg.max_per_week,
            last_push_at: self.last_push_at,
            min_gap_until: self.last_push_at.map(|l| l + cfg.min_gap()),
            consecutive_ignored: self.consecutive_ignored,
            window_start: None,
            window_end: None,
            slot: None,
            slot_activity: None,
            slot_value: None,
            own_activity_weight: None,
            policy: String::new(),
            fallback: None,
            predicted: None,
            value: None,
            value_threshold: None,
            features: None,
        }
    }

    /// The hand-set policy: pacing from the target frequency, the most active hour of the send
    /// window, the content threshold.
    fn decide_hand_set(&self, ctx: &DecideContext<'_>, now: DateTime<Utc>, cfg: &FrequencyConfig) -> Decision {
        let user = &ctx.user;
        let tz = user.timezone;
        let in_holdout = is_in_holdout(user.user_id, cfg.holdout_share);
        let skip = |reason: SkipReason, next: Option<DateTime<Utc>>, inputs: DecisionInputs| {
            let summary = match next {
                Some(t) => format!("skip: {}; next check {}", reason.describe(), t.with_timezone(&tz).to_rfc3339()),
                None => format!("skip: {}; no further check until the user's settings change", reason.describe()),
            };
            Decision::Skip { reason, next_check_at: next, summary, inputs, propensity: 1.0 }
        };

        let mut inputs = DecisionInputs {
            policy: "hand-set".into(),
            fallback: ctx.fallback.map(str::to_string),
            features: Some(self.response_features(ctx, now, ctx.best_item_score, cfg)),
            ..self.base_inputs(ctx, now, cfg)
        };
        if self.is_unsubscribed() {
            skip(SkipReason::Unsubscribed, None, inputs)
        } else if !user.push_consent {
            skip(SkipReason::NoConsent, None, inputs)
        } else if in_holdout {
            skip(SkipReason::Holdout, None, inputs)
        } else {
            let plan = self.plan(user, ctx.population, now, cfg);
            inputs.window_start = Some(plan.window_start);
            inputs.window_end = Some(plan.window_end);
            inputs.slot = plan.slot.map(|s| s.at);
            inputs.slot_activity = plan.slot.map(|s| s.activity);
            inputs.own_activity_weight = Some(plan.own_activity_weight);
            match plan.slot {
                None => {
                    let reason = plan.blocked_now.unwrap_or(SkipReason::NoAllowedSlot);
                    skip(reason, Some(now + TimeDelta::hours(24)), inputs)
                }
                Some(slot) if slot.at > now => {
                    let reason = plan.blocked_now.unwrap_or(SkipReason::WaitingForActiveHour);
                    skip(reason, Some(slot.at), inputs)
                }
                Some(slot) => {
                    let retry = now + TimeDelta::minutes(i64::from(cfg.content_retry_minutes));
                    match ctx.best_item_score {
                        None => skip(SkipReason::NoItem, Some(retry), inputs),
                        Some(s) if s.is_nan() || s < cfg.min_item_score => {
                            skip(SkipReason::BelowContentThreshold, Some(retry), inputs)
                        }
                        Some(_) if ctx.global_budget_left == 0 => {
                            let next_minute = now - TimeDelta::seconds(i64::from(now.second()))
                                - TimeDelta::nanoseconds(i64::from(now.nanosecond()))
                                + TimeDelta::minutes(1);
                            skip(SkipReason::GlobalRateLimit, Some(next_minute), inputs)
                        }
                        Some(score) => {
                            // After this push, the next window opens half an interval before the
                            // next nominal push; never look before the minimum gap has passed.
                            let (_, p, w) = self.pacing(cfg);
                            let next = now + (p - w / 2).max(cfg.min_gap());
                            let summary = format!(
                                "send: item score {score:.3} >= {:.3}; local hour {} has activity share {:.3} \
                                 (own history weight {:.2}); target {:.2}/day, pacing {:.2}/day",
                                cfg.min_item_score,
                                now.with_timezone(&tz).format("%a %H:00 %Z"),
                                slot.activity,
                                plan.own_activity_weight,
                                inputs.target_frequency,
                                inputs.pacing_frequency,
                            );
                            let inputs = DecisionInputs { fatigue_after: inputs.fatigue + cfg.fatigue_per_push, ..inputs };
                            Decision::Send { at: now, next_check_at: next, summary, inputs, propensity: 1.0 }
                        }
                    }
                }
            }
        }
    }
}
