//! `FrequencyConfig`: every constant of the push frequency policy, with its unit.
//!
//! The `[frequency]` table of `config/*.toml` deserialises into this struct. Every key has a
//! default, unknown keys are refused, and [`FrequencyConfig::validate`] names a bad key as
//! `frequency.<key>`. All of it is reloadable: the policy reads the config on every call and
//! the stored [`super::PushState`] keeps no value whose meaning depends on a constant (the
//! target frequency is re-clamped to `[f_min, f_max]` whenever it is read).

use serde::{Deserialize, Serialize};

/// Constants of the push frequency policy. See each field for its unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrequencyConfig {
    // --- target frequency -------------------------------------------------------------
    /// Lowest target frequency, in pushes per day (0.2 = one push every five days).
    pub f_min: f64,
    /// Highest target frequency, in pushes per day.
    pub f_max: f64,
    /// Target frequency of a user whose interest level equals `theta`, in pushes per day.
    /// The initial frequency is `clamp(f0 · I / theta, f_min, f_max)`.
    pub f0: f64,
    /// Interest level at which a new user starts at `f0`; same unit as the interest level the
    /// caller passes (the user's sum of time-decayed event weights).
    pub theta: f64,
    /// Relative raise of the target frequency per open (unitless): an open multiplies it by
    /// `1 + alpha · g`, where `g = clamp(I / theta, 0.5, 2)` when the interest is known, else 1.
    pub alpha: f64,
    /// How much a click counts, in opens (a click that follows an open adds only the difference).
    pub click_weight: f64,
    /// How much a conversion counts, in opens.
    pub convert_weight: f64,
    /// Factor applied to the target frequency for every ignored push (unitless, in (0, 1]).
    pub ignore_factor: f64,
    /// Factor applied to the target frequency for every dismissed push (unitless, in (0, 1]);
    /// smaller than `ignore_factor`, because a dismissal says more than silence.
    pub dismiss_factor: f64,
    /// A push with no open, click or conversion within this many hours counts as ignored, in hours.
    pub ignore_window_hours: f64,
    /// A dismissed item is not pushed again to that user for this many days, in days.
    pub dismiss_suppression_days: f64,
    /// An item pushed to a user is not pushed to them again within this many days, in days.
    pub repush_window_days: f64,

    // --- fatigue ------------------------------------------------------------------------
    /// Fatigue added by each push, in fatigue units (an opened push takes it back again).
    pub fatigue_per_push: f64,
    /// Half-life of fatigue, in hours.
    pub fatigue_half_life_hours: f64,
    /// Fatigue above which pacing slows down, in fatigue units.
    pub fatigue_threshold: f64,
    /// Slow-down per fatigue unit above the threshold (unitless): the pacing frequency is
    /// `target / (1 + fatigue_penalty · max(0, fatigue − fatigue_threshold))`.
    pub fatigue_penalty: f64,

    // --- hard limits (always win) -----------------------------------------------------------
    /// Most pushes in one local calendar day of the user, in pushes.
    pub max_per_day: u32,
    /// Most pushes in one local ISO week (Monday to Sunday) of the user, in pushes.
    pub max_per_week: u32,
    /// Least time between two pushes to the same user, in minutes.
    pub min_gap_minutes: u32,
    /// Most pushes the whole service sends in one minute, in pushes per minute. The scheduler
    /// counts and passes the budget left; the policy refuses to send when it is zero.
    pub global_rate_per_minute: u32,

    // --- send time ------------------------------------------------------------------------
    /// Half-life of the hour-of-week activity histogram, in days.
    pub activity_half_life_days: f64,
    /// Weight of an open in the activity histogram, in events (a plain event weighs 1).
    pub open_activity_weight: f64,
    /// Strength of the population prior in the blended histogram, in (decayed) events: a user
    /// with this much own activity is weighted half-and-half with the population.
    pub population_prior_strength: f64,
    /// Share of the hour-of-day profile pooled over all weekdays in the send-time score
    /// (unitless, 0..=1): sparse hour-of-week bins borrow from the same hour on other days.
    pub hour_of_day_pooling: f64,
    /// Longest window the send time is chosen within, in hours. The window is one pacing
    /// interval (`24 / frequency` hours) long but at most this.
    pub send_window_max_hours: f64,
    /// How far ahead the planner looks for a send window with an allowed hour before giving
    /// up, in hours (a window starting within it is searched to its end).
    pub lookahead_hours: u32,

    // --- content and holdout ------------------------------------------------------------
    /// No push when the best item scores below this, in the scoring module's score units.
    pub min_item_score: f64,
    /// After a skip for lack of content, look again after this many minutes, in minutes.
    pub content_retry_minutes: u32,
    /// Share of users that never get a push so lift can be measured (0..=1, unitless).
    pub holdout_share: f64,

    // --- the learned policy: decisions by expected value ------------------------------------
    /// Value of an opened push, in value units (those of `value_threshold`).
    pub value_open: f64,
    /// Value of a conversion from a push, in value units.
    pub value_convert: f64,
    /// Cost of an unsubscribe, in value units.
    pub cost_unsubscribe: f64,
    /// With a push-response model, a push goes out only when
    /// `value_open·P(open) + value_convert·P(convert) − cost_unsubscribe·P(unsubscribe)`
    /// reaches this, in value units.
    pub value_threshold: f64,
    /// Hours ahead in which the learned policy values every allowed hour, in hours.
    pub value_lookahead_hours: u32,
    /// Probability of exploring when a push is allowed now (unitless, 0..=1): the greedy
    /// action is replaced by the other with probability `exploration_rate / 2`.
    pub exploration_rate: f64,
    /// Fewest pushes with a known outcome to train the push-response model on, in pushes.
    pub response_min_pushes: usize,

    // --- outbox -------------------------------------------------------------------------------
    /// A planned push not delivered within this many hours expires in the outbox, in hours.
    pub push_ttl_hours: f64,
    /// How many recent decisions the push-plan API shows (read from the decision log, with
    /// repeats of one skip collapsed), in decisions.
    pub decision_log_len: usize,
}

impl Default for FrequencyConfig {
    fn default() -> Self {
        Self {
            f_min: 0.2,
            f_max: 3.0,
            f0: 1.0,
            theta: 10.0,
            alpha: 0.15,
            click_weight: 1.5,
            convert_weight: 3.0,
            ignore_factor: 0.85,
            dismiss_factor: 0.6,
            ignore_window_hours: 24.0,
            dismiss_suppression_days: 30.0,
            repush_window_days: 7.0,
            fatigue_per_push: 1.0,
            fatigue_half_life_hours: 48.0,
            fatigue_threshold: 3.0,
            fatigue_penalty: 0.5,
            max_per_day: 3,
            max_per_week: 10,
            min_gap_minutes: 180,
            global_rate_per_minute: 10_000,
            activity_half_life_days: 14.0,
            open_activity_weight: 2.0,
            population_prior_strength: 20.0,
            hour_of_day_pooling: 0.5,
            send_window_max_hours: 24.0,
            lookahead_hours: 168,
            min_item_score: 0.1,
            content_retry_minutes: 60,
            holdout_share: 0.05,
            value_open: 1.0,
            value_convert: 10.0,
            cost_unsubscribe: 30.0,
            value_threshold: 0.15,
            value_lookahead_hours: 24,
            exploration_rate: 0.05,
            response_min_pushes: 200,
            push_ttl_hours: 6.0,
            decision_log_len: 20,
        }
    }
}

impl FrequencyConfig {
    /// Checks every rule the policy relies on; the error names the key as `frequency.<key>`.
    pub fn validate(&self) -> Result<(), String> {
        fn finite(key: &str, v: f64) -> Result<(), String> {
            if v.is_finite() { Ok(()) } else { Err(format!("frequency.{key} must be a finite number, got {v}")) }
        }
        fn positive(key: &str, v: f64) -> Result<(), String> {
            finite(key, v)?;
            if v > 0.0 { Ok(()) } else { Err(format!("frequency.{key} must be > 0, got {v}")) }
        }
        fn non_negative(key: &str, v: f64) -> Result<(), String> {
            finite(key, v)?;
            if v >= 0.0 { Ok(()) } else { Err(format!("frequency.{key} must be >= 0, got {v}")) }
        }
        fn unit_open_closed(key: &str, v: f64) -> Result<(), String> {
            finite(key, v)?;
            if v > 0.0 && v <= 1.0 { Ok(()) } else { Err(format!("frequency.{key} must be in (0, 1], got {v}")) }
        }
        fn unit_closed(key: &str, v: f64) -> Result<(), String> {
            finite(key, v)?;
            if (0.0..=1.0).contains(&v) { Ok(()) } else { Err(format!("frequency.{key} must be in [0, 1], got {v}")) }
        }

        positive("f_min", self.f_min)?;
        positive("f_max", self.f_max)?;
        if self.f_min > self.f_max {
            return Err(format!("frequency.f_min ({}) must not exceed frequency.f_max ({})", self.f_min, self.f_max));
        }
        // Pushes per day above 24 would make the pacing interval shorter than the hour grid.
        if self.f_max > 24.0 {
            return Err(format!("frequency.f_max must be at most 24 pushes per day, got {}", self.f_max));
        }
        positive("f0", self.f0)?;
        positive("theta", self.theta)?;
        non_negative("alpha", self.alpha)?;
        non_negative("click_weight", self.click_weight)?;
        non_negative("convert_weight", self.convert_weight)?;
        unit_open_closed("ignore_factor", self.ignore_factor)?;
        unit_open_closed("dismiss_factor", self.dismiss_factor)?;
        positive("ignore_window_hours", self.ignore_window_hours)?;
        non_negative("dismiss_suppression_days", self.dismiss_suppression_days)?;
        non_negative("repush_window_days", self.repush_window_days)?;
        non_negative("fatigue_per_push", self.fatigue_per_push)?;
        positive("fatigue_half_life_hours", self.fatigue_half_life_hours)?;
        non_negative("fatigue_threshold", self.fatigue_threshold)?;
        non_negative("fatigue_penalty", self.fatigue_penalty)?;
        if self.max_per_day == 0 {
            return Err("frequency.max_per_day must be at least 1 (withdraw consent to stop pushes)".into());
        }
        if self.max_per_week < self.max_per_day {
            return Err(format!(
                "frequency.max_per_week ({}) must be at least frequency.max_per_day ({})",
                self.max_per_week, self.max_per_day
            ));
        }
        if self.min_gap_minutes > 7 * 24 * 60 {
            return Err(format!("frequency.min_gap_minutes must be at most one week (10080), got {}", self.min_gap_minutes));
        }
        if self.global_rate_per_minute == 0 {
            return Err("frequency.global_rate_per_minute must be at least 1".into());
        }
        positive("activity_half_life_days", self.activity_half_life_days)?;
        non_negative("open_activity_weight", self.open_activity_weight)?;
        positive("population_prior_strength", self.population_prior_strength)?;
        unit_closed("hour_of_day_pooling", self.hour_of_day_pooling)?;
        finite("send_window_max_hours", self.send_window_max_hours)?;
        if !(1.0..=168.0).contains(&self.send_window_max_hours) {
            return Err(format!("frequency.send_window_max_hours must be in [1, 168], got {}", self.send_window_max_hours));
        }
        if !(24..=24 * 31).contains(&self.lookahead_hours) {
            return Err(format!("frequency.lookahead_hours must be in [24, 744], got {}", self.lookahead_hours));
        }
        finite("min_item_score", self.min_item_score)?;
        if self.content_retry_minutes == 0 {
            return Err("frequency.content_retry_minutes must be at least 1".into());
        }
        unit_closed("holdout_share", self.holdout_share)?;
        non_negative("value_open", self.value_open)?;
        non_negative("value_convert", self.value_convert)?;
        non_negative("cost_unsubscribe", self.cost_unsubscribe)?;
        finite("value_threshold", self.value_threshold)?;
        if !(1..=168).contains(&self.value_lookahead_hours) {
            return Err(format!("frequency.value_lookahead_hours must be in [1, 168], got {}", self.value_lookahead_hours));
        }
        unit_closed("exploration_rate", self.exploration_rate)?;
        if self.response_min_pushes == 0 {
            return Err("frequency.response_min_pushes must be at least 1".into());
        }
        positive("push_ttl_hours", self.push_ttl_hours)?;
        if self.decision_log_len == 0 || self.decision_log_len > 1000 {
            return Err(format!("frequency.decision_log_len must be in [1, 1000], got {}", self.decision_log_len));
        }
        Ok(())
    }

    /// Least time between two pushes.
    pub fn min_gap(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::minutes(i64::from(self.min_gap_minutes))
    }
}

/// `TimeDelta` from a (validated, finite, non-negative) number of hours, rounded to the second.
pub(crate) fn hours(h: f64) -> chrono::TimeDelta {
    // Clamp keeps an absurd value (e.g. from an unvalidated config in a test) from overflowing.
    chrono::TimeDelta::seconds((h * 3600.0).round().clamp(0.0, 1e12) as i64)
}

/// `TimeDelta` from a number of days, rounded to the second.
pub(crate) fn days(d: f64) -> chrono::TimeDelta {
    hours(d * 24.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        FrequencyConfig::default().validate().unwrap();
    }

    #[test]
    fn validation_names_the_bad_key() {
        let mut c = FrequencyConfig { f_min: 5.0, ..FrequencyConfig::default() };
        assert!(c.validate().unwrap_err().contains("frequency.f_min"));
        c = FrequencyConfig { ignore_factor: 1.5, ..FrequencyConfig::default() };
        assert!(c.validate().unwrap_err().contains("frequency.ignore_factor"));
        c = FrequencyConfig { max_per_week: 1, ..FrequencyConfig::default() };
        assert!(c.validate().unwrap_err().contains("frequency.max_per_week"));
        c = FrequencyConfig { holdout_share: f64::NAN, ..FrequencyConfig::default() };
        assert!(c.validate().unwrap_err().contains("frequency.holdout_share"));
    }

    #[test]
    fn unknown_keys_are_refused_and_missing_keys_take_defaults() {
        let c: FrequencyConfig = serde_json::from_str(r#"{"f_max": 2.0}"#).unwrap();
        assert_eq!(c.f_max, 2.0);
        assert_eq!(c.f_min, FrequencyConfig::default().f_min);
        let err = serde_json::from_str::<FrequencyConfig>(r#"{"f_maxx": 2.0}"#).unwrap_err();
        assert!(err.to_string().contains("f_maxx"));
    }
}
