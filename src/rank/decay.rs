//! Time decay: how much an event of age `a` still counts, `d(a)` in `[0, 1]` with `d(0) = 1`.
//!
//! Four shapes, chosen in config (`kind = "exponential" | "sigmoid" | "linear" | "none"`):
//!
//! - exponential: `d(a) = 2^(−a / half_life)`; halves at every half-life.
//! - sigmoid: a logistic curve in age, rescaled so that `d(0) = 1` **and** `d(midpoint) = 1/2`
//!   exactly: `d(a) = 1 / (1 + (e^{k·a} − 1) / (e^{k·m} − 1))`. Its odds `1/d − 1` grow like
//!   `e^{k·a}`, as for the plain logistic `1 / (1 + e^{k(a − m)})` of DESIGN.md, which it
//!   approaches when `k·m ≫ 1`. The plain logistic is `< 1` at age 0, and normalising it by
//!   its value at 0 moves the half-point off the midpoint (`d(m) = (1 + e^{−km}) / 2`); this
//!   form keeps both properties, so `midpoint_hours` means what it says: the age at which an
//!   event counts half.
//! - linear: `d(a) = max(0, 1 − a / window)`; exactly 0 from the window on.
//! - none: `d(a) = 1`, the baseline every other setting is measured against.
//!
//! Negative (and NaN) ages are treated as 0: an event stamped slightly in the future by a
//! skewed clock counts fully, never more.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Seconds per hour, the unit of every decay constant.
const HOUR: f64 = 3600.0;

/// A decay function, as written in config. All constants are in hours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decay {
    /// `d(a) = 2^(−a / half_life)`.
    Exponential { half_life_hours: f64 },
    /// Logistic in age with `d(0) = 1` and `d(midpoint) = 1/2`; `steepness_per_hour` is `k`.
    Sigmoid { midpoint_hours: f64, steepness_per_hour: f64 },
    /// `d(a) = max(0, 1 − a / window)`.
    Linear { window_hours: f64 },
    /// `d(a) = 1`.
    None,
}

impl Default for Decay {
    /// The shipped default: exponential with a 24-hour half-life (see docs/EVALUATION.md for
    /// how it compares with the other settings on the Taobao log).
    fn default() -> Self {
        Decay::Exponential { half_life_hours: 24.0 }
    }
}

impl Decay {
    /// The weight of an event `age_secs` seconds old, in `[0, 1]`.
    #[inline]
    pub fn weight(&self, age_secs: f64) -> f64 {
        // `!(x > 0)` also catches NaN.
        let a = if age_secs > 0.0 { age_secs / HOUR } else { 0.0 };
        match *self {
            Decay::Exponential { half_life_hours } => (-std::f64::consts::LN_2 * a / half_life_hours).exp(),
            Decay::Sigmoid { midpoint_hours: m, steepness_per_hour: k } => {
                // odds = (e^{ka} − 1) / (e^{km} − 1), written so that neither side overflows
                // for large k·a or k·m: e^{k(a−m)} · (1 − e^{−ka}) / (1 − e^{−km}).
                if a == 0.0 {
                    return 1.0;
                }
                let odds = (k * (a - m)).exp() * (-(-k * a).exp_m1()) / (-(-k * m).exp_m1());
                1.0 / (1.0 + odds)
            }
            Decay::Linear { window_hours } => (1.0 - a / window_hours).max(0.0),
            Decay::None => 1.0,
        }
    }

    /// The weight at `now` of something that happened at `ts`.
    #[inline]
    pub fn weight_at(&self, now: DateTime<Utc>, ts: DateTime<Utc>) -> f64 {
        self.weight(age_secs(now, ts))
    }

    /// The age, in seconds, from which the weight is exactly 0 (`None` if it never is).
    pub fn support_secs(&self) -> Option<f64> {
        match *self {
            Decay::Linear { window_hours } => Some(window_hours * HOUR),
            _ => None,
        }
    }

    /// Checks that every constant is finite and positive. Errors name the key under `decay.`.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_at("decay")
    }

    /// As [`Decay::validate`], naming keys under `prefix` (e.g. `scoring.trending_decay`).
    pub fn validate_at(&self, prefix: &str) -> Result<(), String> {
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{prefix}.{key} must be > 0 and finite (got {v})"))
            }
        };
        match *self {
            Decay::Exponential { half_life_hours } => positive("half_life_hours", half_life_hours),
            Decay::Sigmoid { midpoint_hours, steepness_per_hour } => {
                positive("midpoint_hours", midpoint_hours)?;
                positive("steepness_per_hour", steepness_per_hour)
            }
            Decay::Linear { window_hours } => positive("window_hours", window_hours),
            Decay::None => Ok(()),
        }
    }

    /// A short human label for reports and logs: `exponential(6h)`, `sigmoid(12h, k=0.5/h)`.
    pub fn label(&self) -> String {
        match *self {
            Decay::Exponential { half_life_hours } => format!("exponential({}h)", fmt_num(half_life_hours)),
            Decay::Sigmoid { midpoint_hours, steepness_per_hour } => {
                format!("sigmoid({}h, k={}/h)", fmt_num(midpoint_hours), fmt_num(steepness_per_hour))
            }
            Decay::Linear { window_hours } => format!("linear({}h)", fmt_num(window_hours)),
            Decay::None => "none".to_owned(),
        }
    }

    /// A hashable identity of the function (kind and constants), for caches keyed by decay.
    pub(crate) fn cache_key(&self) -> (u8, u64, u64) {
        match *self {
            Decay::Exponential { half_life_hours } => (0, half_life_hours.to_bits(), 0),
            Decay::Sigmoid { midpoint_hours, steepness_per_hour } => {
                (1, midpoint_hours.to_bits(), steepness_per_hour.to_bits())
            }
            Decay::Linear { window_hours } => (2, window_hours.to_bits(), 0),
            Decay::None => (3, 0, 0),
        }
    }
}

/// Seconds from `ts` to `now` (negative when `ts` is later), with millisecond precision.
#[inline]
pub fn age_secs(now: DateTime<Utc>, ts: DateTime<Utc>) -> f64 {
    (now - ts).num_milliseconds() as f64 / 1000.0
}

/// `6`, `0.5`, `1.25`: no trailing zeros.
fn fmt_num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decays() -> impl Strategy<Value = Decay> {
        prop_oneof![
            (0.01f64..1000.0).prop_map(|h| Decay::Exponential { half_life_hours: h }),
            (0.01f64..1000.0, 0.001f64..50.0)
                .prop_map(|(m, k)| Decay::Sigmoid { midpoint_hours: m, steepness_per_hour: k }),
            (0.01f64..1000.0).prop_map(|w| Decay::Linear { window_hours: w }),
            Just(Decay::None),
        ]
    }

    proptest! {
        #[test]
        fn weights_stay_between_zero_and_one(d in decays(), age in -1e9f64..1e9) {
            let w = d.weight(age);
            prop_assert!((0.0..=1.0).contains(&w), "{} at {age}: {w}", d.label());
        }

        #[test]
        fn weights_never_increase_with_age(d in decays(), a in 0f64..1e8, gap in 0f64..1e7) {
            prop_assert!(d.weight(a + gap) <= d.weight(a) + 1e-12);
        }

        #[test]
        fn every_decay_counts_a_fresh_event_fully(d in decays(), skew in -1e6f64..=0.0) {
            prop_assert_eq!(d.weight(0.0), 1.0);
            prop_assert_eq!(d.weight(skew), 1.0);
        }

        #[test]
        fn exponential_halves_at_each_half_life(h in 0.01f64..1000.0, a in 0f64..1e7, n in 1u32..5) {
            let d = Decay::Exponential { half_life_hours: h };
            let later = d.weight(a + f64::from(n) * h * 3600.0);
            let expected = d.weight(a) * 0.5f64.powi(n as i32);
            prop_assert!((later - expected).abs() <= 1e-9 * (1.0 + expected), "{later} vs {expected}");
        }

        #[test]
        fn sigmoid_is_half_of_its_start_at_the_midpoint(m in 0.01f64..1000.0, k in 0.001f64..50.0) {
            let d = Decay::Sigmoid { midpoint_hours: m, steepness_per_hour: k };
            let at_mid = d.weight(m * 3600.0);
            prop_assert!((at_mid - 0.5 * d.weight(0.0)).abs() < 1e-9, "d(m) = {at_mid}");
        }

        #[test]
        fn linear_is_zero_from_its_window_on(w in 0.01f64..1000.0, extra in 0f64..1e7) {
            let d = Decay::Linear { window_hours: w };
            prop_assert_eq!(d.weight(w * 3600.0 + extra), 0.0);
        }

        #[test]
        fn none_is_always_one(age in -1e9f64..1e12) {
            prop_assert_eq!(Decay::None.weight(age), 1.0);
        }
    }

    #[test]
    fn steep_sigmoid_approaches_the_plain_logistic_of_the_design() {
        let (m, k) = (24.0, 2.0);
        let d = Decay::Sigmoid { midpoint_hours: m, steepness_per_hour: k };
        for a in [0.0, 12.0, 23.0, 24.0, 25.0, 30.0] {
            let plain = 1.0 / (1.0 + f64::exp(k * (a - m)));
            assert!((d.weight(a * 3600.0) - plain).abs() < 1e-9, "a = {a}");
        }
        // Huge k·a neither overflows nor yields NaN.
        assert_eq!(d.weight(1e9), 0.0);
    }

    #[test]
    fn validation_names_the_key_that_is_wrong() {
        let e = Decay::Exponential { half_life_hours: 0.0 }.validate().unwrap_err();
        assert!(e.starts_with("decay.half_life_hours must be > 0"), "{e}");
        let e = Decay::Sigmoid { midpoint_hours: 1.0, steepness_per_hour: f64::NAN }.validate().unwrap_err();
        assert!(e.starts_with("decay.steepness_per_hour"), "{e}");
        let e = Decay::Linear { window_hours: -3.0 }.validate_at("scoring.trending_decay").unwrap_err();
        assert!(e.starts_with("scoring.trending_decay.window_hours"), "{e}");
        assert!(Decay::None.validate().is_ok());
        assert!(Decay::default().validate().is_ok());
    }

    #[test]
    fn decay_reads_from_toml_and_refuses_unknown_keys() {
        #[derive(Deserialize)]
        struct Wrap {
            decay: Decay,
        }
        let w: Wrap = toml::from_str("[decay]\nkind = \"sigmoid\"\nmidpoint_hours = 12\nsteepness_per_hour = 0.5\n").unwrap();
        assert_eq!(w.decay, Decay::Sigmoid { midpoint_hours: 12.0, steepness_per_hour: 0.5 });
        let w: Wrap = toml::from_str("[decay]\nkind = \"none\"\n").unwrap();
        assert_eq!(w.decay, Decay::None);
        assert!(toml::from_str::<Wrap>("[decay]\nkind = \"exponential\"\nhalf_life = 3\n").is_err());
        assert!(toml::from_str::<Wrap>("[decay]\nkind = \"cubic\"\n").is_err());
    }

    #[test]
    fn labels_are_short_and_readable() {
        assert_eq!(Decay::Exponential { half_life_hours: 6.0 }.label(), "exponential(6h)");
        assert_eq!(
            Decay::Sigmoid { midpoint_hours: 12.0, steepness_per_hour: 0.5 }.label(),
            "sigmoid(12h, k=0.5/h)"
        );
        assert_eq!(Decay::Linear { window_hours: 72.0 }.label(), "linear(72h)");
        assert_eq!(Decay::None.label(), "none");
    }
}
