//! Hour-of-week activity histogram, time-decayed lazily, and its blend with the population.
//!
//! Bin `b = weekday · 24 + hour` in the user's local time (Monday = 0), so "Tuesday 21:00"
//! is one bin whatever the UTC offset was on that day: DST moves the UTC instant, not the bin.
//! The bins hold weights as of `as_of`; every bin decays by the same factor with time, so the
//! decay is applied only when something is added (scaling every bin to the new reference
//! time) or when the total mass is read. The shape of the histogram never depends on when it
//! is read, and changing the half-life in config changes the next answer without a rebuild.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::FrequencyConfig;

/// Number of bins: 7 days × 24 hours.
pub const HOURS_PER_WEEK: usize = 168;

/// Hour-of-week bin of an instant in a time zone: `weekday_from_monday · 24 + local_hour`.
pub fn hour_of_week(ts: DateTime<Utc>, tz: Tz) -> usize {
    let local = ts.with_timezone(&tz);
    local.weekday().num_days_from_monday() as usize * 24 + local.hour() as usize
}

/// `2^(-dt / half_life)`; 1 for `dt <= 0` (a clock that went back never inflates weights).
pub(crate) fn decay_factor(dt: TimeDelta, half_life: TimeDelta) -> f64 {
    let dt = dt.num_milliseconds() as f64;
    let hl = half_life.num_milliseconds() as f64;
    if dt <= 0.0 || hl <= 0.0 { 1.0 } else { (-std::f64::consts::LN_2 * dt / hl).exp() }
}

/// Time-decayed counts of activity per hour of the week, in the user's local time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "HistogramRepr", into = "HistogramRepr")]
pub struct ActivityHistogram {
    bins: Vec<f64>,
    as_of: Option<DateTime<Utc>>,
}

/// The stored form: the non-zero bins as `[bin, weight]` pairs and the time they are valid
/// at. A user's few active hours take a few pairs where 168 weights took ~1.7 KB of JSON,
/// rewritten at every scheduler decision. The dense form (`bins`, all 168 weights), written
/// before, is still read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistogramRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bins: Option<Vec<f64>>,
    #[serde(default)]
    nonzero: Vec<(usize, f64)>,
    as_of: Option<DateTime<Utc>>,
}

impl TryFrom<HistogramRepr> for ActivityHistogram {
    type Error = String;
    fn try_from(r: HistogramRepr) -> Result<Self, String> {
        let mut bins = match r.bins {
            Some(bins) if bins.len() == HOURS_PER_WEEK => bins,
            Some(bins) => return Err(format!("activity histogram needs {HOURS_PER_WEEK} bins, got {}", bins.len())),
            None => vec![0.0; HOURS_PER_WEEK],
        };
        for (bin, w) in r.nonzero {
            let slot = bins.get_mut(bin).ok_or_else(|| format!("activity histogram bin {bin} is not below {HOURS_PER_WEEK}"))?;
            *slot = w;
        }
        if bins.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err("activity histogram bins must be finite and non-negative".into());
        }
        Ok(Self { bins, as_of: r.as_of })
    }
}

impl From<ActivityHistogram> for HistogramRepr {
    fn from(h: ActivityHistogram) -> Self {
        let nonzero = h.bins.iter().enumerate().filter(|&(_, &w)| w != 0.0).map(|(b, &w)| (b, w)).collect();
        Self { bins: None, nonzero, as_of: h.as_of }
    }
}

impl Default for ActivityHistogram {
    fn default() -> Self {
        Self { bins: vec![0.0; HOURS_PER_WEEK], as_of: None }
    }
}

impl ActivityHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// A histogram with the given weights valid at `as_of` (e.g. a population prior).
    /// Negative or non-finite weights are stored as 0.
    pub fn from_bins(bins: [f64; HOURS_PER_WEEK], as_of: DateTime<Utc>) -> Self {
        let bins = bins.iter().map(|v| if v.is_finite() && *v > 0.0 { *v } else { 0.0 }).collect();
        Self { bins, as_of: Some(as_of) }
    }

    /// The raw weights, valid at [`Self::as_of`].
    pub fn bins(&self) -> &[f64] {
        &self.bins
    }

    /// The time the stored weights are valid at; `None` for an empty histogram.
    pub fn as_of(&self) -> Option<DateTime<Utc>> {
        self.as_of
    }

    fn half_life(cfg: &FrequencyConfig) -> TimeDelta {
        super::config::days(cfg.activity_half_life_days)
    }

    /// Adds `weight` at the local hour of `ts` in `tz`.
    pub fn observe(&mut self, ts: DateTime<Utc>, tz: Tz, weight: f64, cfg: &FrequencyConfig) {
        self.add_to_bin(hour_of_week(ts, tz), ts, weight, cfg);
    }

    /// Adds `weight` to bin `bin` (taken modulo 168) at time `ts`.
    pub fn add_to_bin(&mut self, bin: usize, ts: DateTime<Utc>, weight: f64, cfg: &FrequencyConfig) {
        if !weight.is_finite() || weight <= 0.0 {
            return;
        }
        let hl = Self::half_life(cfg);
        let w = match self.as_of {
            Some(as_of) if ts < as_of => weight * decay_factor(as_of - ts, hl),
            Some(as_of) => {
                let f = decay_factor(ts - as_of, hl);
                self.bins.iter_mut().for_each(|v| *v *= f);
                self.as_of = Some(ts);
                weight
            }
            None => {
                self.as_of = Some(ts);
                weight
            }
        };
        self.bins[bin % HOURS_PER_WEEK] += w;
    }

    /// Adds another histogram (e.g. to build the population histogram from users'),
    /// bringing both to the later of their reference times first.
    pub fn merge(&mut self, other: &ActivityHistogram, cfg: &FrequencyConfig) {
        let Some(theirs) = other.as_of else { return };
        let hl = Self::half_life(cfg);
        let target = self.as_of.map_or(theirs, |mine| mine.max(theirs));
        if let Some(mine) = self.as_of {
            let f = decay_factor(target - mine, hl);
            self.bins.iter_mut().for_each(|v| *v *= f);
        }
        let f = decay_factor(target - theirs, hl);
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b * f;
        }
        self.as_of = Some(target);
    }

    /// Total decayed weight at `now`, in events.
    pub fn total_at(&self, now: DateTime<Utc>, cfg: &FrequencyConfig) -> f64 {
        match self.as_of {
            None => 0.0,
            Some(as_of) => self.bins.iter().sum::<f64>() * decay_factor(now - as_of, Self::half_life(cfg)),
        }
    }

    /// The histogram as shares summing to 1 (uniform when empty).
    pub fn shares(&self) -> [f64; HOURS_PER_WEEK] {
        let total: f64 = self.bins.iter().sum();
        let mut out = [1.0 / HOURS_PER_WEEK as f64; HOURS_PER_WEEK];
        if total > 0.0 {
            for (o, v) in out.iter_mut().zip(&self.bins) {
                *o = v / total;
            }
        }
        out
    }

    /// The bin with the most weight (the lowest such bin on ties), or `None` when empty.
    pub fn peak_bin(&self) -> Option<usize> {
        let total: f64 = self.bins.iter().sum();
        (total > 0.0).then(|| argmax(&self.bins))
    }
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// A user's send-time score per hour-of-week bin: their own histogram blended with the
/// population's, so a user with little history gets the population's habits.
///
/// `own(b) = (n · p_user(b) + k · p_pop(b)) / (n + k)` with `n` the user's decayed activity
/// mass and `k = population_prior_strength`; then `score(b) = (1 − w) · own(b) + w · day(h)`
/// where `day(h)` is the average of `own` over the seven bins of the same local hour and
/// `w = hour_of_day_pooling`. Scores sum to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct BlendedActivity {
    scores: [f64; HOURS_PER_WEEK],
    /// `day(h)`: the blend pooled over the seven days, per local hour (sums to 1).
    day: [f64; 24],
    /// Weight of the user's own histogram in the blend, 0..1 (`n / (n + k)`).
    pub own_weight: f64,
}

impl BlendedActivity {
    pub fn new(user: &ActivityHistogram, population: &ActivityHistogram, now: DateTime<Utc>, cfg: &FrequencyConfig) -> Self {
        let n = user.total_at(now, cfg);
        let k = cfg.population_prior_strength;
        let own_weight = if n + k > 0.0 { n / (n + k) } else { 0.0 };
        let (pu, pp) = (user.shares(), population.shares());
        let mut own = [0.0; HOURS_PER_WEEK];
        for b in 0..HOURS_PER_WEEK {
            own[b] = own_weight * pu[b] + (1.0 - own_weight) * pp[b];
        }
        let mut day = [0.0; 24];
        for (b, v) in own.iter().enumerate() {
            day[b % 24] += v / 7.0;
        }
        let w = cfg.hour_of_day_pooling;
        let mut scores = [0.0; HOURS_PER_WEEK];
        for b in 0..HOURS_PER_WEEK {
            scores[b] = (1.0 - w) * own[b] + w * day[b % 24];
        }
        Self { scores, day, own_weight }
    }

    /// Share of local hour `hour` (modulo 24) pooled over the days of the week.
    pub fn hour_of_day(&self, hour: usize) -> f64 {
        self.day[hour % 24]
    }

    /// The highest share of one local hour pooled over the days of the week.
    pub fn hour_of_day_peak(&self) -> f64 {
        self.day.iter().copied().fold(0.0, f64::max)
    }

    /// Score of bin `b` (modulo 168).
    pub fn score(&self, bin: usize) -> f64 {
        self.scores[bin % HOURS_PER_WEEK]
    }

    /// The best-scoring bin (the lowest on ties).
    pub fn peak_bin(&self) -> usize {
        argmax(&self.scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cfg() -> FrequencyConfig {
        FrequencyConfig::default()
    }

    #[test]
    fn the_bin_is_the_local_weekday_and_hour() {
        // 2026-03-30 is a Monday. 19:00 UTC is 21:00 in Berlin (CEST, after the switch).
        let ts = Utc.with_ymd_and_hms(2026, 3, 30, 19, 0, 0).unwrap();
        assert_eq!(hour_of_week(ts, chrono_tz::Europe::Berlin), 21);
        // The same wall-clock hour a week earlier was 20:00 UTC (CET): same bin.
        let ts = Utc.with_ymd_and_hms(2026, 3, 23, 20, 0, 0).unwrap();
        assert_eq!(hour_of_week(ts, chrono_tz::Europe::Berlin), 21);
        // Sunday 23:00 local is the last bin.
        let ts = Utc.with_ymd_and_hms(2026, 3, 29, 21, 30, 0).unwrap();
        assert_eq!(hour_of_week(ts, chrono_tz::Europe::Berlin), 167);
    }

    #[test]
    fn the_histogram_total_halves_with_one_half_life() {
        let c = cfg();
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap();
        let mut h = ActivityHistogram::new();
        h.observe(t0, chrono_tz::UTC, 4.0, &c);
        let later = t0 + super::super::config::days(c.activity_half_life_days);
        assert!((h.total_at(later, &c) - 2.0).abs() < 1e-9);
        // A later event scales the old weights, an out-of-order one is decayed on the way in.
        h.observe(later, chrono_tz::UTC, 1.0, &c);
        assert!((h.total_at(later, &c) - 3.0).abs() < 1e-9);
        h.observe(t0, chrono_tz::UTC, 2.0, &c);
        assert!((h.total_at(later, &c) - 4.0).abs() < 1e-9);
    }

    #[test]
    fn a_new_user_blends_to_the_population_and_an_active_user_to_their_own_habits() {
        let c = cfg();
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap();
        let mut pop = ActivityHistogram::new();
        pop.add_to_bin(20, t0, 100.0, &c);
        let empty = ActivityHistogram::new();
        assert_eq!(BlendedActivity::new(&empty, &pop, t0, &c).peak_bin(), 20);
        let mut user = ActivityHistogram::new();
        for _ in 0..200 {
            user.add_to_bin(8, t0, 1.0, &c);
        }
        let b = BlendedActivity::new(&user, &pop, t0, &c);
        assert_eq!(b.peak_bin(), 8);
        assert!(b.own_weight > 0.9);
        let total: f64 = (0..HOURS_PER_WEEK).map(|i| b.score(i)).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn merge_adds_histograms_at_the_later_reference_time() {
        let c = cfg();
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap();
        let t1 = t0 + super::super::config::days(c.activity_half_life_days);
        let mut a = ActivityHistogram::new();
        a.add_to_bin(1, t0, 2.0, &c);
        let mut b = ActivityHistogram::new();
        b.add_to_bin(2, t1, 1.0, &c);
        a.merge(&b, &c);
        assert_eq!(a.as_of(), Some(t1));
        assert!((a.bins()[1] - 1.0).abs() < 1e-9 && (a.bins()[2] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_histogram_is_stored_sparsely_read_back_exactly_and_bad_forms_are_refused() {
        let c = FrequencyConfig::default();
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap();
        let mut h = ActivityHistogram::new();
        h.add_to_bin(3, t0, 0.123_456_789_012_345_67, &c);
        h.add_to_bin(167, t0, 2.0, &c);
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.contains(r#""nonzero":[[3,"#) && !json.contains("bins"), "{json}");
        assert_eq!(serde_json::from_str::<ActivityHistogram>(&json).unwrap(), h);
        // The dense form written by earlier versions is still read.
        let mut dense = vec![0.0; HOURS_PER_WEEK];
        dense[5] = 1.5;
        let old = serde_json::json!({ "bins": dense, "as_of": t0 }).to_string();
        assert_eq!(serde_json::from_str::<ActivityHistogram>(&old).unwrap().bins()[5], 1.5);
        assert!(serde_json::from_str::<ActivityHistogram>(r#"{"bins":[1.0],"as_of":null}"#).is_err());
        assert!(serde_json::from_str::<ActivityHistogram>(r#"{"nonzero":[[168,1.0]],"as_of":null}"#).is_err());
        assert!(serde_json::from_str::<ActivityHistogram>(r#"{"nonzero":[[1,-1.0]],"as_of":null}"#).is_err());
    }
}
