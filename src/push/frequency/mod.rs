//! Push frequency policy (DESIGN.md, idea 3): how often and when each user gets a push.
//!
//! Pure logic: every function takes the state, the config and `now`; nothing here does I/O or
//! reads a clock, so the scheduler, the API and `kairos simulate` run the same code.
//!
//! - [`initial_frequency`]: `f = clamp(f0 · I / θ, f_min, f_max)` pushes per day from the
//!   user's interest level `I`.
//! - [`PushState::apply_feedback`]: opens, clicks and conversions raise the target frequency
//!   multiplicatively, ignored pushes ([`PushState::sweep_ignored`]) lower it by
//!   `ignore_factor`, dismissals by the smaller `dismiss_factor` and suppress the item for
//!   `dismiss_suppression_days`, an unsubscribe stops all pushes at once. Each push adds fatigue
//!   (taken back when the push is opened), which decays with a half-life and, above a threshold,
//!   slows pacing down.
//! - [`PushState::decide`]: hard limits first (unsubscribed, consent, holdout, caps per local
//!   day and ISO week, minimum gap, quiet hours in local time, DST-correct), then the send
//!   time (the most active allowed hour of the current send window, from the user's hour-of-week
//!   histogram blended with the population's), then the content threshold and the global
//!   per-minute budget. Every decision is recorded with its inputs.
//! - [`is_in_holdout`]: a stable share of users never gets a push, so lift can be measured.

mod config;
mod histogram;
mod plan;
mod planner;
mod policy;
pub mod response;
mod state;
mod value;

pub use config::FrequencyConfig;
pub use histogram::{ActivityHistogram, BlendedActivity, HOURS_PER_WEEK, hour_of_week};
pub use plan::{CapsUsed, PlanSummary, summarise};
pub use value::exploration_draw;
pub use planner::{SendPlan, Slot};
pub use policy::{DecideContext, Decision, DecisionInputs, Recipient, SkipReason, collapse_repeated_skips};
pub use state::{
    DayCount, Feedback, FeedbackEffect, LocalWeek, PushOutcome, PushState, PushTotals, SentPush, WeekCount,
    local_date,
};

use serde::{Deserialize, Serialize};

/// What the gateway reports about a push (`POST /v1/feedback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackKind {
    Delivered,
    Opened,
    Clicked,
    Dismissed,
    Converted,
    Failed,
    Unsubscribed,
}

impl FeedbackKind {
    pub const ALL: [FeedbackKind; 7] = [
        FeedbackKind::Delivered,
        FeedbackKind::Opened,
        FeedbackKind::Clicked,
        FeedbackKind::Dismissed,
        FeedbackKind::Converted,
        FeedbackKind::Failed,
        FeedbackKind::Unsubscribed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackKind::Delivered => "delivered",
            FeedbackKind::Opened => "opened",
            FeedbackKind::Clicked => "clicked",
            FeedbackKind::Dismissed => "dismissed",
            FeedbackKind::Converted => "converted",
            FeedbackKind::Failed => "failed",
            FeedbackKind::Unsubscribed => "unsubscribed",
        }
    }

    /// Parses the wire name; `None` for an unknown kind (the API refuses it).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Initial target frequency from the interest level: `clamp(f0 · I / θ, f_min, f_max)`,
/// in pushes per day. A negative or non-finite interest counts as none (`f_min`).
pub fn initial_frequency(interest_level: f64, cfg: &FrequencyConfig) -> f64 {
    let i = if interest_level.is_finite() { interest_level.max(0.0) } else { 0.0 };
    state::clamp_frequency(cfg.f0 * i / cfg.theta, cfg)
}

/// Salt of the holdout hash. Changing it redraws the holdout group, so it is a constant, not
/// configuration.
const HOLDOUT_SALT: &[u8] = b"kairos-holdout-v1\0";

/// 64-bit FNV-1a. Stable across runs, processes and platforms (unlike std's `RandomState`).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64 finaliser: FNV-1a alone spreads ids that differ in the last byte poorly over
/// the high bits; this mixes every input bit into every output bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable point in `[0, 1)` for a user id.
pub fn holdout_point(user_id: &str) -> f64 {
    let mut bytes = Vec::with_capacity(HOLDOUT_SALT.len() + user_id.len());
    bytes.extend_from_slice(HOLDOUT_SALT);
    bytes.extend_from_slice(user_id.as_bytes());
    (mix64(fnv1a64(&bytes)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Is the user in the holdout group (never pushed)? Stable across runs and processes; raising
/// `share` only adds users to the group, never moves one out.
pub fn is_in_holdout(user_id: &str, share: f64) -> bool {
    holdout_point(user_id) < share
}

#[cfg(test)]
mod tests;
