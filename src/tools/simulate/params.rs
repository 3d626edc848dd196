//! Options and parameters: the simulator's world (`config/simulate.toml`), its response model, the arms.

use super::*;

// ------------------------------------------------------------------------------------------
// Options and parameters
// ------------------------------------------------------------------------------------------

/// `kairos simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateOptions {
    /// The Taobao UserBehavior sample (gzip CSV: user_id,item_id,category_id,behavior,timestamp).
    #[arg(long, default_value = "../shared/datasets/taobao_userbehavior_sample/UserBehavior_sample.csv.gz")]
    pub dataset: PathBuf,
    /// The simulation's parameters (response model, fixed arms, replay window).
    #[arg(long, default_value = "config/simulate.toml")]
    pub params: PathBuf,
    /// The service's config directory (its `[tuning]`, `[tuning.frequency]` above all, is
    /// what the adaptive arm runs with). Set from the global `--config-dir`.
    #[arg(skip = PathBuf::from("config"))]
    pub config_dir: PathBuf,
    /// Where the Markdown report is written.
    #[arg(long, default_value = "docs/SIMULATION.md")]
    pub out: PathBuf,
    /// Random seed (default: `replay.seed` in the params file).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Everything in `config/simulate.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimParams {
    pub replay: ReplayParams,
    /// The fixed-frequency arms.
    pub fixed: Vec<FixedArm>,
    pub model: ResponseModel,
    /// One-at-a-time changes of a model parameter, to show which ones drive the result.
    pub sensitivity: Vec<Variant>,
    /// The learned arm.
    pub learned: LearnedArm,
}

/// The learned arm: how it gathers the feedback it trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearnedArm {
    /// Exploration rate of the hand-set policy during the push warm-up (0..=1): a wider spread
    /// of send hours and frequencies to learn from.
    pub warmup_exploration_rate: f64,
}

impl Default for LearnedArm {
    fn default() -> Self {
        LearnedArm { warmup_exploration_rate: 0.5 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayParams {
    pub seed: u64,
    /// IANA time zone of every user.
    pub timezone: String,
    /// Start of the replayed window (RFC 3339); events before it are history only.
    pub window_start: String,
    /// End of the replayed window (RFC 3339, exclusive).
    pub window_end: String,
    /// Days at the start of the window during which the log only feeds history and statistics.
    pub warmup_days: f64,
    /// Days after the warm-up in which every arm already pushes but nothing is counted: the
    /// learned arm gathers the feedback its model is trained on.
    pub push_warmup_days: f64,
    /// Independent repetitions of the random draws for the main table.
    pub replications: u32,
    /// Repetitions for each sensitivity variant.
    pub sensitivity_replications: u32,
}

impl Default for ReplayParams {
    fn default() -> Self {
        ReplayParams {
            seed: 42,
            timezone: "Asia/Shanghai".into(),
            window_start: "2017-11-25T00:00:00+08:00".into(),
            window_end: "2017-12-04T00:00:00+08:00".into(),
            warmup_days: 1.0,
            push_warmup_days: 3.0,
            replications: 5,
            sensitivity_replications: 3,
        }
    }
}

/// A fixed-frequency arm: a push at each of `hours` (local) every `every_days` days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedArm {
    pub name: String,
    pub hours: Vec<u32>,
    /// Push on every n-th local day, counted from the first measured day (1: every day).
    #[serde(default = "one")]
    pub every_days: u32,
}

pub(super) fn one() -> u32 {
    1
}

/// One sensitivity variant: `key` (a dotted path under `[model]`) set to `value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub key: String,
    pub value: f64,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            replay: ReplayParams::default(),
            fixed: vec![
                FixedArm { name: "fixed 1/day".into(), hours: vec![20], every_days: 1 },
                FixedArm { name: "fixed 3/day".into(), hours: vec![10, 15, 20], every_days: 1 },
            ],
            model: ResponseModel::default(),
            sensitivity: Vec::new(),
            learned: LearnedArm::default(),
        }
    }
}

/// How a user responds to a push. See the module documentation for the formulas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseModel {
    pub relevance: RelevanceParams,
    pub hour_match: HourMatchParams,
    pub open: OpenParams,
    pub convert: ConvertParams,
    pub unsubscribe: UnsubscribeParams,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelevanceParams {
    /// Hours after the send in which the user's real history is looked at.
    pub window_hours: f64,
    /// Relevance when the user touches the pushed item in the window.
    pub item: f64,
    /// Relevance when they touch another item of its category (and not the item).
    pub category: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HourMatchParams {
    /// Weight of the population's hour profile in each user's, in events.
    pub prior_events: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenParams {
    pub bias: f64,
    pub relevance: f64,
    pub hour_match: f64,
    pub recent_push: f64,
    pub recent_window_hours: f64,
    /// Mean delay between send and open (exponential), minutes.
    pub delay_minutes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConvertParams {
    pub bias: f64,
    pub relevance: f64,
    /// Mean delay between open and conversion (exponential), minutes.
    pub delay_minutes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnsubscribeParams {
    pub bias: f64,
    pub per_ignored: f64,
    pub ignored_window_days: f64,
    /// Delay between the ignored push and the unsubscribe report, minutes.
    pub delay_minutes: f64,
}

impl Default for RelevanceParams {
    fn default() -> Self {
        RelevanceParams { window_hours: 24.0, item: 1.0, category: 0.5 }
    }
}
impl Default for HourMatchParams {
    fn default() -> Self {
        HourMatchParams { prior_events: 5.0 }
    }
}
impl Default for OpenParams {
    fn default() -> Self {
        OpenParams { bias: -4.0, relevance: 2.5, hour_match: 1.5, recent_push: 0.3, recent_window_hours: 24.0, delay_minutes: 30.0 }
    }
}
impl Default for ConvertParams {
    fn default() -> Self {
        ConvertParams { bias: -3.0, relevance: 2.0, delay_minutes: 60.0 }
    }
}
impl Default for UnsubscribeParams {
    fn default() -> Self {
        UnsubscribeParams { bias: -6.0, per_ignored: 0.15, ignored_window_days: 7.0, delay_minutes: 5.0 }
    }
}

pub(super) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl ResponseModel {
    /// Probability that a push is opened: rises with `relevance` (0..1) and `hour_match`
    /// (0..1), falls with the number of pushes received in the recent window.
    pub fn open_probability(&self, relevance: f64, hour_match: f64, recent_pushes: u32) -> f64 {
        let o = &self.open;
        sigmoid(o.bias + o.relevance * relevance + o.hour_match * hour_match - o.recent_push * f64::from(recent_pushes))
    }

    /// Probability that an opened push converts (a purchase attributed to the push).
    pub fn conversion_probability(&self, relevance: f64) -> f64 {
        sigmoid(self.convert.bias + self.convert.relevance * relevance)
    }

    /// Probability that the user unsubscribes on ignoring a push, given the pushes they
    /// ignored in the window (this one included).
    pub fn unsubscribe_hazard(&self, ignored_pushes: u32) -> f64 {
        sigmoid(self.unsubscribe.bias + self.unsubscribe.per_ignored * f64::from(ignored_pushes))
    }

    /// A user's hour match per local hour (0..24) from their event counts per local hour and
    /// the population's shares: smoothed over neighbouring hours (¼, ½, ¼), blended with
    /// `prior_events` events spread like the population, scaled so the best hour is 1.
    pub fn hour_profile(&self, counts: &[f64; 24], population_share: &[f64; 24]) -> [f64; 24] {
        let smooth = |v: &[f64; 24]| -> [f64; 24] {
            std::array::from_fn(|h| 0.25 * v[(h + 23) % 24] + 0.5 * v[h] + 0.25 * v[(h + 1) % 24])
        };
        let (c, p) = (smooth(counts), smooth(population_share));
        let k = self.hour_match.prior_events;
        let raw: [f64; 24] = std::array::from_fn(|h| c[h] + k * p[h]);
        let max = raw.iter().copied().fold(0.0, f64::max);
        if max > 0.0 { std::array::from_fn(|h| raw[h] / max) } else { [1.0; 24] }
    }

    pub fn validate(&self) -> Result<(), String> {
        let all = [
            ("relevance.window_hours", self.relevance.window_hours),
            ("relevance.item", self.relevance.item),
            ("relevance.category", self.relevance.category),
            ("hour_match.prior_events", self.hour_match.prior_events),
            ("open.bias", self.open.bias),
            ("open.relevance", self.open.relevance),
            ("open.hour_match", self.open.hour_match),
            ("open.recent_push", self.open.recent_push),
            ("open.recent_window_hours", self.open.recent_window_hours),
            ("open.delay_minutes", self.open.delay_minutes),
            ("convert.bias", self.convert.bias),
            ("convert.relevance", self.convert.relevance),
            ("convert.delay_minutes", self.convert.delay_minutes),
            ("unsubscribe.bias", self.unsubscribe.bias),
            ("unsubscribe.per_ignored", self.unsubscribe.per_ignored),
            ("unsubscribe.ignored_window_days", self.unsubscribe.ignored_window_days),
            ("unsubscribe.delay_minutes", self.unsubscribe.delay_minutes),
        ];
        for (k, v) in all {
            if !v.is_finite() {
                return Err(format!("model.{k} must be a finite number, got {v}"));
            }
        }
        // The documented monotonicity holds only with non-negative slopes.
        for (k, v) in all.iter().filter(|(k, _)| !k.ends_with("bias")) {
            if *v < 0.0 {
                return Err(format!("model.{k} must be >= 0, got {v}"));
            }
        }
        for (k, v) in [
            ("relevance.window_hours", self.relevance.window_hours),
            ("open.recent_window_hours", self.open.recent_window_hours),
            ("unsubscribe.ignored_window_days", self.unsubscribe.ignored_window_days),
        ] {
            if v <= 0.0 {
                return Err(format!("model.{k} must be > 0, got {v}"));
            }
        }
        if !(0.0..=1.0).contains(&self.relevance.item) || !(0.0..=1.0).contains(&self.relevance.category) {
            return Err("model.relevance.item and model.relevance.category must be in [0, 1]".into());
        }
        Ok(())
    }

    /// This model with one parameter (a dotted path such as `open.hour_match`) set to `value`.
    pub fn with(&self, key: &str, value: f64) -> Result<ResponseModel, String> {
        let mut v = toml::Value::try_from(self).map_err(|e| e.to_string())?;
        let mut slot = &mut v;
        for part in key.split('.') {
            slot = slot
                .as_table_mut()
                .and_then(|t| t.get_mut(part))
                .ok_or_else(|| format!("sensitivity key model.{key} does not exist"))?;
        }
        if !slot.is_float() {
            return Err(format!("sensitivity key model.{key} is not a number"));
        }
        *slot = toml::Value::Float(value);
        let m: ResponseModel = v.try_into().map_err(|e: toml::de::Error| e.to_string())?;
        m.validate().map_err(|e| format!("sensitivity model.{key} = {value}: {e}"))?;
        Ok(m)
    }
}

impl SimParams {
    pub fn from_toml(text: &str) -> anyhow::Result<SimParams> {
        let p: SimParams = toml::from_str(text).context("parsing the simulation parameters")?;
        p.validate()?;
        Ok(p)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.model.validate().map_err(anyhow::Error::msg)?;
        let r = &self.replay;
        r.timezone.parse::<Tz>().map_err(|_| anyhow::anyhow!("replay.timezone {:?} is not an IANA zone", r.timezone))?;
        let (start, end) = self.window()?;
        ensure!(start < end, "replay.window_start must be before replay.window_end");
        ensure!(r.warmup_days.is_finite() && r.warmup_days >= 0.0, "replay.warmup_days must be >= 0");
        ensure!(r.push_warmup_days.is_finite() && r.push_warmup_days >= 0.0, "replay.push_warmup_days must be >= 0");
        ensure!((0.0..=1.0).contains(&self.learned.warmup_exploration_rate), "learned.warmup_exploration_rate must be in 0..=1");
        let (from, to) = self.measured(start, end);
        ensure!(from < to, "the measured period (window minus warm-up minus the relevance window) is empty");
        ensure!(r.replications >= 1, "replay.replications must be >= 1");
        ensure!(
            self.sensitivity.is_empty() || (1..=r.replications).contains(&r.sensitivity_replications),
            "replay.sensitivity_replications must be in 1..=replay.replications (the variants are compared with \
             the same replications of the base model)"
        );
        for (i, f) in self.fixed.iter().enumerate() {
            ensure!(!f.hours.is_empty(), "fixed[{i}].hours must list at least one hour");
            ensure!(f.hours.iter().all(|h| *h < 24), "fixed[{i}].hours must be local hours 0..=23");
            ensure!((1..=30).contains(&f.every_days), "fixed[{i}].every_days must be in 1..=30");
        }
        for v in &self.sensitivity {
            self.model.with(&v.key, v.value).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    pub(super) fn window(&self) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
        let p = |k: &str, s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| anyhow::anyhow!("replay.{k} must be RFC 3339 ({e})"))
        };
        Ok((p("window_start", &self.replay.window_start)?, p("window_end", &self.replay.window_end)?))
    }

    /// The period in which outcomes are counted: after both warm-ups, and early enough that
    /// every push has its whole relevance window in the log.
    pub(super) fn measured(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let secs = |h: f64| TimeDelta::seconds((h * 3600.0).round() as i64);
        (self.push_from(start) + secs(self.replay.push_warmup_days * 24.0), end - secs(self.model.relevance.window_hours))
    }

    /// When the arms start pushing: after the history warm-up.
    pub(super) fn push_from(&self, start: DateTime<Utc>) -> DateTime<Utc> {
        start + TimeDelta::seconds((self.replay.warmup_days * 86_400.0).round() as i64)
    }
}
