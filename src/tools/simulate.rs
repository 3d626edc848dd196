//! `kairos simulate`: the adaptive push policy against fixed frequencies and a holdout, in a
//! documented simulation over the real users' histories (DESIGN.md, "How quality is measured").
//!
//! ## What is real and what is simulated
//!
//! Real: the users, their behaviour log (replayed in time order, untouched by the pushes),
//! the items pushed (chosen by the service's own `profile` + `scoring`, from statistics fed
//! with the past of the log only) and, for the adaptive arm, every push decision (the
//! service's own [`PushState::decide`], [`PushState::sweep_ignored`] and
//! [`PushState::apply_feedback`] with the `[tuning.frequency]` of the service's config).
//!
//! Simulated: how a user responds to a push. The [`ResponseModel`] (parameters in
//! `config/simulate.toml`) draws for each push whether it is opened, whether an open converts,
//! and whether an ignored push makes the user unsubscribe:
//!
//! ```text
//! P(open)        = σ(open.bias + open.relevance · r + open.hour_match · m − open.recent_push · n)
//! P(convert|open)= σ(convert.bias + convert.relevance · r)
//! P(unsubscribe | push ignored) = σ(unsubscribe.bias + unsubscribe.per_ignored · k)
//! ```
//!
//! - `r`, relevance of the pushed item: `relevance.item` when the user touches that very item
//!   (any kind) within `relevance.window_hours` after the send in their real history, else
//!   `relevance.category` when they touch another item of its category, else 0;
//! - `m`, hour match: the user's share of activity in the local send hour (their whole real
//!   history, hour-of-day, smoothed over neighbouring hours and with a population prior of
//!   `hour_match.prior_events` events), divided by the share of their most active hour: 1 at
//!   their peak hour, near 0 at hours they are never active;
//! - `n`: pushes the user received in the `open.recent_window_hours` before this one;
//! - `k`: pushes the user ignored in the last `unsubscribe.ignored_window_days`, this one
//!   included.
//!
//! Every coefficient is `>= 0` (validated), so the open probability rises with relevance and
//! hour match and falls with recent pushes, and the unsubscribe hazard rises with ignored
//! pushes.
//!
//! ## The arms
//!
//! - `adaptive`: the service's policy. Every user's settings arrive (consent, time zone) at the
//!   start of the measured period, which makes them due at once, as `PUT /v1/users` does; each
//!   later decision happens at the time the policy asked to be called back (`next_check_at`),
//!   as the scheduler's claim query does. Opens, conversions and unsubscribes go back into the
//!   state through `apply_feedback` at the time they happen (as the gateway reports them, with
//!   no interest level), unanswered pushes are counted by `sweep_ignored`.
//! - `fixed` arms (`[[fixed]]` in the params): every subscribed user gets the best item at fixed
//!   local hours, whatever its score; the same repush window applies (no item twice within
//!   `frequency.repush_window_days`). They stop at an unsubscribe.
//! - `holdout`: no push at all. Its conversions are the organic purchases of the log, so the
//!   lift of each arm is its push-attributed conversions.
//!
//! The service's own holdout (`frequency.holdout_share`) stays in force inside the adaptive arm,
//! as deployed: those users are counted and never pushed.
//!
//! ## Mechanics
//!
//! One pass over time: a priority queue of actions (decisions, fixed sends, feedback) of every
//! arm, replication and sensitivity variant ("worlds"), and before each action the log events
//! up to its time are fed to the shared catalog, statistics and histories. Rankings are
//! memoised per (user, instant, blocked items) between two log events, so worlds that push the
//! same user at the same instant share one ranking. Random draws come from a `SmallRng` per
//! (seed, replication, user), shared by the arms (common random numbers), so differences
//! between arms are the policies', not the dice's.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chrono::{DateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::rank::catalog::Catalog;
use crate::config::{ConfigSource, Settings, Tuning};
use crate::rank::context::{RequestContext, event_keys};
use crate::domain::{Event, EventContext, EventProps, Item};
use crate::push::frequency::{
    ActivityHistogram, DecideContext, Decision, Feedback, FeedbackKind, FrequencyConfig, PushState, Recipient, fnv1a64,
    is_in_holdout,
};
use crate::rank::profile::{InterestVector, ProfileParams};
use crate::rank::scoring::{Request as ScoringRequest, rank};
use crate::rank::stats::{Observation, Stats};

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

fn one() -> u32 {
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

fn sigmoid(x: f64) -> f64 {
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

    fn window(&self) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
        let p = |k: &str, s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| anyhow::anyhow!("replay.{k} must be RFC 3339 ({e})"))
        };
        Ok((p("window_start", &self.replay.window_start)?, p("window_end", &self.replay.window_end)?))
    }

    /// The period in which pushes are sent and outcomes counted: after the warm-up, and early
    /// enough that every push has its whole relevance window in the log.
    fn measured(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let secs = |h: f64| TimeDelta::seconds((h * 3600.0).round() as i64);
        (start + secs(self.replay.warmup_days * 24.0), end - secs(self.model.relevance.window_hours))
    }
}

// ------------------------------------------------------------------------------------------
// The log
// ------------------------------------------------------------------------------------------

/// One row of the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogRow {
    /// Index into [`Dataset::user_ids`].
    pub user: u32,
    pub item: u64,
    pub category: u64,
    pub kind: &'static str,
    pub ts: i64,
}

/// The log in time order (ties in file order) and its users in order of first appearance.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub user_ids: Vec<String>,
    pub rows: Vec<LogRow>,
}

impl Dataset {
    /// Reads the log with [`crate::tools::eval::read_log`] (a folder holding the sample, or a `.csv`
    /// or `.csv.gz` file).
    pub fn read(path: &Path) -> anyhow::Result<Dataset> {
        Self::from_log(crate::tools::eval::read_log(path)?)
    }

    /// Parses `user_id,item_id,category_id,behavior_type,timestamp` lines (no header).
    pub fn parse(reader: impl Read) -> anyhow::Result<Dataset> {
        let mut text = String::new();
        BufReader::new(reader).read_to_string(&mut text)?;
        Self::from_log(crate::tools::eval::parse_log(&text)?)
    }

    /// Numeric ids, users indexed in order of first appearance, rows in time order (stable:
    /// ties keep file order).
    fn from_log(log: Vec<crate::tools::eval::LogEvent>) -> anyhow::Result<Dataset> {
        let mut users: HashMap<String, u32> = HashMap::new();
        let mut d = Dataset::default();
        for (n, e) in log.into_iter().enumerate() {
            let num = |s: &str, what: &str| s.parse::<u64>().with_context(|| format!("row {}: bad {what} {s:?}", n + 1));
            let (item, category) = (num(&e.item, "item id")?, num(&e.category, "category id")?);
            let next = u32::try_from(users.len())?;
            let user = *users.entry(e.user.clone()).or_insert_with(|| {
                d.user_ids.push(e.user);
                next
            });
            d.rows.push(LogRow { user, item, category, kind: e.behaviour.kind(), ts: e.ts });
        }
        d.rows.sort_by_key(|r| r.ts);
        Ok(d)
    }
}

// ------------------------------------------------------------------------------------------
// The replay: what the service would know at each instant
// ------------------------------------------------------------------------------------------

struct Replay<'a> {
    data: &'a Dataset,
    tuning: &'a Tuning,
    tz: Tz,
    catalog: Catalog,
    stats: Stats,
    population: ActivityHistogram,
    /// Each user's events fed so far, oldest first.
    histories: Vec<Vec<Event>>,
    /// Rows fed so far.
    fed: usize,
}

impl<'a> Replay<'a> {
    fn new(data: &'a Dataset, tuning: &'a Tuning, tz: Tz) -> Self {
        Replay {
            data,
            tuning,
            tz,
            catalog: Catalog::new(),
            stats: Stats::new(tuning.scoring.stats.clone()),
            population: ActivityHistogram::new(),
            histories: vec![Vec::new(); data.user_ids.len()],
            fed: 0,
        }
    }

    /// Feeds every row with `ts <= t` (the service's view at `t`), the way `Engine::refresh`
    /// folds the log: catalogue (an item is known from its first event), population activity,
    /// statistics, and the user's history.
    fn feed_until(&mut self, t: DateTime<Utc>) {
        let until = t.timestamp();
        while let Some(row) = self.data.rows.get(self.fed) {
            if row.ts > until {
                break;
            }
            self.fed += 1;
            let item_id = row.item.to_string();
            let ts = Utc.timestamp_opt(row.ts, 0).single().unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
            if self.catalog.get(&item_id).is_none() {
                self.catalog.upsert(Item::new(item_id.clone(), vec![row.category.to_string()]));
            }
            let event = Event {
                event_id: uuid::Uuid::from_u128(self.fed as u128),
                user_id: self.data.user_ids[row.user as usize].clone(),
                item_id: Some(item_id.clone()),
                kind: row.kind.to_string(),
                ts,
                context: EventContext { timezone: Some(self.tz.name().to_string()), ..EventContext::default() },
                props: EventProps::default(),
            };
            let weight = self.tuning.kinds.get(row.kind).map_or(0.0, |k| k.weight);
            self.population.observe(ts, self.tz, 1.0, &self.tuning.frequency);
            let item = self.catalog.intern(&item_id);
            let keys = event_keys(ts, &self.tz, &event.context);
            self.stats.observe(&Observation {
                user: &event.user_id,
                item,
                categories: self.catalog.categories(item),
                brand: self.catalog.brand(item),
                weight,
                ts,
                context: &keys,
            });
            self.histories[row.user as usize].push(event);
        }
    }
}

/// The item scoring picked for a push.
#[derive(Debug, Clone)]
struct Pick {
    item_id: String,
    item: u64,
    category: u64,
    score: f64,
}

/// The service's item choice (`Engine::push_candidate`: profile, then `rank` with n = 1 in
/// the context of the user's local time, recently pushed items excluded), memoised per
/// (user, instant, blocked items) while no new log event has been fed.
struct Ranker<'a> {
    tuning: &'a Tuning,
    weights: crate::rank::profile::KindWeights,
    memo: HashMap<(usize, i64, u64), Option<Pick>>,
    levels: HashMap<(usize, i64), f64>,
    epoch: usize,
    calls: u64,
    hits: u64,
}

impl<'a> Ranker<'a> {
    fn new(tuning: &'a Tuning) -> Self {
        Ranker { tuning, weights: tuning.kind_weights(), memo: HashMap::new(), levels: HashMap::new(), epoch: 0, calls: 0, hits: 0 }
    }

    fn sync(&mut self, replay: &Replay<'_>) {
        if replay.fed != self.epoch {
            self.memo.clear();
            self.levels.clear();
            self.epoch = replay.fed;
        }
    }

    fn profile(&self, replay: &Replay<'_>, user: usize, now: DateTime<Utc>) -> InterestVector {
        let params = ProfileParams {
            decay: &self.tuning.decay,
            kind_weights: &self.weights,
            horizon_secs: self.tuning.scoring.horizon_hours * 3600.0,
        };
        InterestVector::build(&replay.histories[user], &replay.catalog, &params, now)
    }

    /// The user's interest level (what the scheduler creates a new state with).
    fn level(&mut self, replay: &Replay<'_>, user: usize, now: DateTime<Utc>) -> f64 {
        self.sync(replay);
        let key = (user, now.timestamp_millis());
        if let Some(l) = self.levels.get(&key) {
            return *l;
        }
        let l = self.profile(replay, user, now).level();
        self.levels.insert(key, l);
        l
    }

    fn best(&mut self, replay: &Replay<'_>, user: usize, now: DateTime<Utc>, blocked: &[String]) -> Option<Pick> {
        self.sync(replay);
        let mut sorted: Vec<&str> = blocked.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let key = (user, now.timestamp_millis(), fnv1a64(sorted.join("\u{1f}").as_bytes()));
        self.calls += 1;
        if let Some(p) = self.memo.get(&key) {
            self.hits += 1;
            return p.clone();
        }
        let history = &replay.histories[user];
        let profile = self.profile(replay, user, now);
        let exclude: HashSet<String> = blocked.iter().cloned().collect();
        let context = RequestContext::at(&now.with_timezone(&replay.tz), None, None);
        let request = ScoringRequest { n: 1, context, exclude: &exclude };
        let ranking = rank(&request, &profile, history, &replay.catalog, &replay.stats, &self.tuning.scoring, now);
        let pick = ranking.items.into_iter().next().and_then(|s| {
            let category = replay.catalog.get(&s.item_id).and_then(|i| i.category.first()).and_then(|c| c.parse().ok())?;
            Some(Pick { item: s.item_id.parse().ok()?, item_id: s.item_id, category, score: s.score })
        });
        self.memo.insert(key, pick.clone());
        pick
    }
}

// ------------------------------------------------------------------------------------------
// Worlds
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Policy {
    Adaptive,
    Fixed { hours: Vec<u32>, every_days: u32 },
    Holdout,
}

/// Counts of one world.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    pub pushes: u64,
    pub opens: u64,
    pub push_conversions: u64,
    pub unsubscribes: u64,
    pub users_reached: u64,
    pub item_relevant: u64,
    pub category_relevant: u64,
    pub hour_match_sum: f64,
}

struct SimUser {
    /// The policy state (adaptive), or the bookkeeping of sent pushes (fixed arms).
    state: Option<PushState>,
    /// The adaptive state's target frequency when it was created, pushes per day.
    initial_frequency: Option<f64>,
    /// The model's truth: the user unsubscribed.
    unsubscribed: bool,
    rng: SmallRng,
    sent: VecDeque<DateTime<Utc>>,
    ignored: VecDeque<DateTime<Utc>>,
}

struct World {
    arm: usize,
    variant: Option<usize>,
    model: ResponseModel,
    /// Hour match per user and local hour under this world's model.
    hour_match: Vec<[f64; 24]>,
    users: Vec<SimUser>,
    sent_last_minute: VecDeque<DateTime<Utc>>,
    tally: Tally,
    push_seq: u64,
    skips: BTreeMap<&'static str, u64>,
}

enum Action {
    Decide,
    FixedSend,
    Feedback { push_id: String, item_id: String, kind: FeedbackKind },
}

struct Scheduled {
    at: DateTime<Utc>,
    seq: u64,
    world: usize,
    user: usize,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so `BinaryHeap` pops the earliest (then the first scheduled).
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct Queue {
    heap: BinaryHeap<Scheduled>,
    seq: u64,
}

impl Queue {
    fn push(&mut self, at: DateTime<Utc>, world: usize, user: usize, action: Action) {
        self.seq += 1;
        self.heap.push(Scheduled { at, seq: self.seq, world, user, action });
    }
}

/// What the response model knows about each user: their real future and active hours.
struct Truth {
    /// Each user's rows (ts, item, category), in time order.
    rows: Vec<Vec<(i64, u64, u64)>>,
    /// Events per user and local hour over the window.
    hour_counts: Vec<[f64; 24]>,
    /// The population's share of events per local hour.
    hour_share: [f64; 24],
}

impl Truth {
    fn new(data: &Dataset, tz: Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> Truth {
        let n = data.user_ids.len();
        let mut rows = vec![Vec::new(); n];
        let mut counts = vec![[0.0f64; 24]; n];
        let mut pop = [0.0f64; 24];
        for r in &data.rows {
            rows[r.user as usize].push((r.ts, r.item, r.category));
            if (start.timestamp()..end.timestamp()).contains(&r.ts) {
                let h = Utc.timestamp_opt(r.ts, 0).single().map_or(0, |t| t.with_timezone(&tz).hour()) as usize;
                counts[r.user as usize][h] += 1.0;
                pop[h] += 1.0;
            }
        }
        let total: f64 = pop.iter().sum::<f64>().max(1.0);
        let hour_share: [f64; 24] = std::array::from_fn(|h| pop[h] / total);
        Truth { rows, hour_counts: counts, hour_share }
    }

    /// Hour match per user and local hour under `model`.
    fn hour_match(&self, model: &ResponseModel) -> Vec<[f64; 24]> {
        self.hour_counts.iter().map(|c| model.hour_profile(c, &self.hour_share)).collect()
    }

    /// Relevance of `pick` pushed to `user` at `at`: their real behaviour in the next window.
    fn relevance(&self, model: &ResponseModel, user: usize, pick: &Pick, at: DateTime<Utc>) -> f64 {
        let (from, to) = (at.timestamp(), at.timestamp() + (model.relevance.window_hours * 3600.0) as i64);
        let rows = &self.rows[user];
        let first = rows.partition_point(|r| r.0 <= from);
        let mut category = false;
        for r in rows[first..].iter().take_while(|r| r.0 <= to) {
            if r.1 == pick.item {
                return model.relevance.item;
            }
            category |= r.2 == pick.category;
        }
        if category { model.relevance.category } else { 0.0 }
    }
}

/// Everything the worlds share while the queue runs.
struct Sim<'a> {
    tz: Tz,
    cfg: &'a FrequencyConfig,
    truth: &'a Truth,
    user_ids: &'a [String],
    measured_from: DateTime<Utc>,
    measured_to: DateTime<Utc>,
    arms: &'a [(String, Policy)],
}

fn exp_delay(rng_u: f64, mean_minutes: f64) -> TimeDelta {
    // Capped at 12 h so every response lands within a policy's ignore window in practice.
    let minutes = (-(1.0 - rng_u).ln() * mean_minutes).min(12.0 * 60.0);
    TimeDelta::seconds((minutes * 60.0).round() as i64)
}

impl Sim<'_> {
    /// Next fixed send instant strictly after `after`, at one of `hours` local, on a local day
    /// whose distance from the first measured day is a multiple of `every_days`.
    fn next_fixed(&self, hours: &[u32], every_days: u32, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz).date_naive();
        let first_day = self.measured_from.with_timezone(&self.tz).date_naive();
        (0..=u64::from(2 * every_days))
            .flat_map(|d| hours.iter().map(move |h| (d, *h)))
            .filter_map(|(d, h)| {
                let day = local + chrono::Days::new(d);
                if (day - first_day).num_days().rem_euclid(i64::from(every_days)) != 0 {
                    return None;
                }
                self.tz.from_local_datetime(&day.and_hms_opt(h, 0, 0)?).earliest().map(|t| t.with_timezone(&Utc))
            })
            .filter(|t| *t > after)
            .min()
    }

    /// Sends `pick` to `user` in world `w`: records it, draws the response, schedules feedback.
    fn push(&self, world: &mut World, w: usize, user: usize, pick: &Pick, now: DateTime<Utc>, queue: &mut Queue) {
        let cfg = self.cfg;
        let adaptive = self.arms[world.arm].1 == Policy::Adaptive;
        world.push_seq += 1;
        let push_id = format!("w{w}-u{user}-p{}", world.push_seq);
        let m = &world.model;
        let su = &mut world.users[user];
        let state = su.state.get_or_insert_with(|| PushState::new(0.0, now, cfg));
        state.record_sent(&push_id, &pick.item_id, now, self.tz, cfg);
        if state.totals.sent == 1 {
            world.tally.users_reached += 1;
        }
        world.tally.pushes += 1;
        world.sent_last_minute.push_back(now);

        let recent_from = now - TimeDelta::seconds((m.open.recent_window_hours * 3600.0) as i64);
        let ignored_from = now - TimeDelta::seconds((m.unsubscribe.ignored_window_days * 86_400.0) as i64);
        while su.sent.front().is_some_and(|t| *t <= recent_from) {
            su.sent.pop_front();
        }
        while su.ignored.front().is_some_and(|t| *t <= ignored_from) {
            su.ignored.pop_front();
        }
        let recent = su.sent.len() as u32;
        su.sent.push_back(now);
        let r = self.truth.relevance(m, user, pick, now);
        let hour = now.with_timezone(&self.tz).hour() as usize;
        let hm = world.hour_match[user][hour];
        world.tally.item_relevant += u64::from(r > 0.0 && r == m.relevance.item);
        world.tally.category_relevant += u64::from(r > 0.0 && r != m.relevance.item);
        world.tally.hour_match_sum += hm;

        // Always five draws per push, so a user's stream advances alike whatever happens.
        let u: [f64; 5] = std::array::from_fn(|_| su.rng.random::<f64>());
        if u[0] < m.open_probability(r, hm, recent) {
            world.tally.opens += 1;
            let opened_at = now + exp_delay(u[1], m.open.delay_minutes);
            let converts = u[2] < m.conversion_probability(r);
            if adaptive {
                let item_id = pick.item_id.clone();
                queue.push(opened_at, w, user, Action::Feedback { push_id: push_id.clone(), item_id, kind: FeedbackKind::Opened });
            }
            if converts {
                world.tally.push_conversions += 1;
                if adaptive {
                    let at = opened_at + exp_delay(u[3], m.convert.delay_minutes);
                    let item_id = pick.item_id.clone();
                    queue.push(at, w, user, Action::Feedback { push_id, item_id, kind: FeedbackKind::Converted });
                }
            }
        } else {
            su.ignored.push_back(now);
            if u[4] < m.unsubscribe_hazard(su.ignored.len() as u32) {
                world.tally.unsubscribes += 1;
                su.unsubscribed = true;
                if adaptive {
                    let at = now + TimeDelta::seconds((m.unsubscribe.delay_minutes * 60.0) as i64);
                    let item_id = pick.item_id.clone();
                    queue.push(at, w, user, Action::Feedback { push_id, item_id, kind: FeedbackKind::Unsubscribed });
                }
            }
        }
    }

    /// One scheduler decision for `user` in an adaptive world, as `Scheduler::try_run_once`
    /// makes it (the item is only ranked when the policy's slot is now: `decide` reads the
    /// score only then, so the decision is the same).
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        world: &mut World,
        w: usize,
        user: usize,
        now: DateTime<Utc>,
        replay: &Replay<'_>,
        ranker: &mut Ranker<'_>,
        queue: &mut Queue,
    ) {
        if now >= self.measured_to {
            return;
        }
        let cfg = self.cfg;
        let user_id = self.user_ids[user].as_str();
        let recipient = Recipient { user_id, timezone: self.tz, push_consent: true, quiet_hours: None };
        if world.users[user].state.is_none() {
            let level = ranker.level(replay, user, now);
            let state = PushState::new(level, now, cfg);
            world.users[user].initial_frequency = Some(state.target_frequency(cfg));
            world.users[user].state = Some(state);
        }
        let state = world.users[user].state.as_mut().expect("created above");
        let blocked = state.blocked_items(now, cfg);
        let seen_until = state.activity.as_of();
        for e in replay.histories[user].iter().filter(|e| seen_until.is_none_or(|t| e.ts > t) && e.ts <= now) {
            state.observe_activity(e.ts, self.tz, cfg);
        }
        state.sweep_ignored(now, cfg);
        let eligible = !state.is_unsubscribed() && !is_in_holdout(user_id, cfg.holdout_share);
        let slot_now = eligible && state.plan(&recipient, &replay.population, now, cfg).slot.is_some_and(|s| s.at <= now);
        let best = if slot_now {
            ranker
                .best(replay, user, now, &blocked)
                .filter(|b| !state.is_suppressed(&b.item_id, now) && !state.pushed_recently(&b.item_id, now, cfg))
        } else {
            None
        };
        while world.sent_last_minute.front().is_some_and(|t| *t <= now - TimeDelta::minutes(1)) {
            world.sent_last_minute.pop_front();
        }
        let budget = cfg.global_rate_per_minute.saturating_sub(world.sent_last_minute.len() as u32);
        let ctx = DecideContext {
            user: recipient,
            best_item_score: best.as_ref().map(|b| b.score),
            global_budget_left: budget,
            population: &replay.population,
        };
        let decision = state.decide(&ctx, now, cfg);
        *world.skips.entry(decision.skip_reason().map_or("send", |r| r.as_str())).or_default() += 1;
        if let (Decision::Send { .. }, Some(pick)) = (&decision, best) {
            self.push(world, w, user, &pick, now, queue);
        }
        let next = decision.next_check_at().unwrap_or(now + TimeDelta::days(1)).max(now + TimeDelta::seconds(1));
        queue.push(next, w, user, Action::Decide);
    }

    #[allow(clippy::too_many_arguments)]
    fn fixed_send(
        &self,
        world: &mut World,
        w: usize,
        user: usize,
        now: DateTime<Utc>,
        replay: &Replay<'_>,
        ranker: &mut Ranker<'_>,
        queue: &mut Queue,
    ) {
        if now >= self.measured_to || world.users[user].unsubscribed {
            return;
        }
        let blocked = world.users[user].state.as_ref().map(|s| s.blocked_items(now, self.cfg)).unwrap_or_default();
        if let Some(pick) = ranker.best(replay, user, now, &blocked) {
            self.push(world, w, user, &pick, now, queue);
        }
        if let Policy::Fixed { hours, every_days } = &self.arms[world.arm].1
            && let Some(next) = self.next_fixed(hours, *every_days, now)
        {
            queue.push(next, w, user, Action::FixedSend);
        }
    }
}

// ------------------------------------------------------------------------------------------
// The report
// ------------------------------------------------------------------------------------------

/// Figures per 1,000 users over the measured period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    pub pushes: f64,
    pub opens: f64,
    pub push_conversions: f64,
    pub organic_conversions: f64,
    pub conversions: f64,
    pub unsubscribes: f64,
}

/// One arm of the main table (mean over replications, and the 95 % half-width).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmSummary {
    pub name: String,
    pub per_1000: Rates,
    pub ci95: Rates,
    /// Total opens / total unsubscribes over every replication; `None` without unsubscribes.
    pub opens_per_unsubscribe: Option<f64>,
    pub open_rate: f64,
    pub users_reached_share: f64,
    /// Share of pushes whose item the user touched within the relevance window.
    pub item_relevant_share: f64,
    /// Share of pushes whose category (not the item) the user touched.
    pub category_relevant_share: f64,
    pub mean_hour_match: f64,
}

/// One sensitivity variant: the changed key and each pushing arm's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantSummary {
    pub key: String,
    pub base_value: f64,
    pub value: f64,
    /// (arm, opens per 1,000, unsubscribes per 1,000, opens per unsubscribe)
    pub arms: Vec<(String, f64, f64, Option<f64>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub users: usize,
    pub events: usize,
    pub timezone: String,
    pub measured_from: DateTime<Utc>,
    pub measured_to: DateTime<Utc>,
    pub seed: u64,
    pub replications: u32,
    pub arms: Vec<ArmSummary>,
    pub sensitivity: Vec<VariantSummary>,
    /// The base model over the same replications as the variants (what they are compared with).
    pub sensitivity_base: Vec<(String, f64, f64, Option<f64>)>,
    /// The adaptive arm's decisions by outcome (first replication).
    pub adaptive_decisions: Vec<(String, u64)>,
    /// The adaptive arm's target frequencies (first replication, users outside the holdout).
    pub adaptive_frequency: Option<FrequencySummary>,
    pub params: SimParams,
    pub frequency: FrequencyConfig,
    pub rankings: u64,
    pub rankings_memoised: u64,
    pub runtime: Duration,
    pub command: String,
}

/// Distribution of the adaptive arm's target frequencies, pushes per day.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrequencySummary {
    pub users: usize,
    pub initial_mean: f64,
    pub initial_quartiles: [f64; 3],
    pub final_mean: f64,
    pub final_quartiles: [f64; 3],
    /// Share of users whose final target is at `f_min` / at `f_max`.
    pub final_at_min: f64,
    pub final_at_max: f64,
}

fn quartiles(xs: &mut [f64]) -> [f64; 3] {
    xs.sort_by(f64::total_cmp);
    let q = |p: f64| xs.get(((xs.len() - 1) as f64 * p).round() as usize).copied().unwrap_or(f64::NAN);
    [q(0.25), q(0.5), q(0.75)]
}

impl FrequencySummary {
    fn of(users: &[SimUser], user_ids: &[String], cfg: &FrequencyConfig) -> Option<FrequencySummary> {
        let (mut initial, mut last) = (Vec::new(), Vec::new());
        for (u, id) in users.iter().zip(user_ids) {
            if let (Some(state), Some(f0)) = (&u.state, u.initial_frequency)
                && !is_in_holdout(id, cfg.holdout_share)
            {
                initial.push(f0);
                last.push(state.target_frequency(cfg));
            }
        }
        if initial.is_empty() {
            return None;
        }
        let n = initial.len() as f64;
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
        Some(FrequencySummary {
            users: initial.len(),
            initial_mean: initial.iter().sum::<f64>() / n,
            final_mean: last.iter().sum::<f64>() / n,
            final_at_min: last.iter().filter(|f| near(**f, cfg.f_min)).count() as f64 / n,
            final_at_max: last.iter().filter(|f| near(**f, cfg.f_max)).count() as f64 / n,
            initial_quartiles: quartiles(&mut initial),
            final_quartiles: quartiles(&mut last),
        })
    }
}

fn mean_ci(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, 1.96 * (var / n).sqrt())
}

fn ratio(opens: u64, unsubs: u64) -> Option<f64> {
    (unsubs > 0).then(|| opens as f64 / unsubs as f64)
}

// ------------------------------------------------------------------------------------------
// Running
// ------------------------------------------------------------------------------------------

/// Loads the dataset, the parameters and the service's config, simulates, writes the report.
pub fn run(opts: &SimulateOptions) -> anyhow::Result<SimReport> {
    let started = Instant::now();
    let text = std::fs::read_to_string(&opts.params).with_context(|| format!("reading {}", opts.params.display()))?;
    let mut params = SimParams::from_toml(&text).with_context(|| format!("in {}", opts.params.display()))?;
    if let Some(seed) = opts.seed {
        params.replay.seed = seed;
    }
    let settings = Settings::load(&ConfigSource { dir: opts.config_dir.clone(), env_name: None, use_env: false })
        .with_context(|| format!("loading the service configuration from {}", opts.config_dir.display()))?;
    let data = Dataset::read(&opts.dataset)?;
    let mut report = simulate(&data, &params, &settings.tuning, true)?;
    report.command = format!(
        "kairos --config-dir {} simulate --dataset {} --params {} --out {} --seed {}",
        opts.config_dir.display(),
        opts.dataset.display(),
        opts.params.display(),
        opts.out.display(),
        params.replay.seed
    );
    report.runtime = started.elapsed();
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&opts.out, report.to_markdown()).with_context(|| format!("writing {}", opts.out.display()))?;
    Ok(report)
}

/// The simulation proper (no file I/O).
pub fn simulate(data: &Dataset, params: &SimParams, tuning: &Tuning, progress: bool) -> anyhow::Result<SimReport> {
    params.validate()?;
    let started = Instant::now();
    let tz: Tz = params.replay.timezone.parse().map_err(|_| anyhow::anyhow!("bad replay.timezone"))?;
    let (start, end) = params.window()?;
    let (measured_from, measured_to) = params.measured(start, end);
    let cfg = &tuning.frequency;
    let n_users = data.user_ids.len();
    ensure!(n_users > 0, "the dataset has no users");

    let mut arms: Vec<(String, Policy)> = vec![("adaptive (kairos policy)".into(), Policy::Adaptive)];
    arms.extend(params.fixed.iter().map(|f| (f.name.clone(), Policy::Fixed { hours: f.hours.clone(), every_days: f.every_days })));
    arms.push(("holdout (no pushes)".into(), Policy::Holdout));

    let variant_models: Vec<ResponseModel> =
        params.sensitivity.iter().map(|v| params.model.with(&v.key, v.value)).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?;

    // Worlds: every arm × replication, then every variant × pushing arm × replication.
    let mut worlds: Vec<World> = Vec::new();
    let mut worlds_of: Vec<(usize, Option<usize>, u32)> = Vec::new();
    let make_users = |rep: u32| -> Vec<SimUser> {
        (0..n_users)
            .map(|u| SimUser {
                state: None,
                initial_frequency: None,
                unsubscribed: false,
                rng: SmallRng::seed_from_u64(fnv1a64(format!("{}/{rep}/{}", params.replay.seed, data.user_ids[u]).as_bytes())),
                sent: VecDeque::new(),
                ignored: VecDeque::new(),
            })
            .collect()
    };
    let truth = Truth::new(data, tz, start, end);
    let new_world = |arm: usize, variant: Option<usize>, model: ResponseModel, rep: u32| World {
        arm,
        variant,
        hour_match: truth.hour_match(&model),
        model,
        users: make_users(rep),
        sent_last_minute: VecDeque::new(),
        tally: Tally::default(),
        push_seq: 0,
        skips: BTreeMap::new(),
    };
    for rep in 0..params.replay.replications {
        for arm in 0..arms.len() {
            worlds.push(new_world(arm, None, params.model.clone(), rep));
            worlds_of.push((arm, None, rep));
        }
    }
    for (v, model) in variant_models.iter().enumerate() {
        for rep in 0..params.replay.sensitivity_replications {
            for (arm, (_, policy)) in arms.iter().enumerate() {
                if *policy != Policy::Holdout {
                    worlds.push(new_world(arm, Some(v), model.clone(), rep));
                    worlds_of.push((arm, Some(v), rep));
                }
            }
        }
    }

    let sim = Sim { tz, cfg, truth: &truth, user_ids: &data.user_ids, measured_from, measured_to, arms: &arms };
    let mut queue = Queue { heap: BinaryHeap::new(), seq: 0 };
    for (w, world) in worlds.iter().enumerate() {
        match &arms[world.arm].1 {
            Policy::Adaptive => (0..n_users).for_each(|u| queue.push(measured_from, w, u, Action::Decide)),
            Policy::Fixed { hours, every_days } => {
                let first = sim.next_fixed(hours, *every_days, measured_from - TimeDelta::seconds(1));
                if let Some(t) = first {
                    (0..n_users).for_each(|u| queue.push(t, w, u, Action::FixedSend));
                }
            }
            Policy::Holdout => {}
        }
    }

    let mut replay = Replay::new(data, tuning, tz);
    let mut ranker = Ranker::new(tuning);
    let hours = (measured_to - measured_from).num_hours().max(1) as u64;
    let bar = if progress { ProgressBar::new(hours) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("simulating {bar:30} {pos}/{len} simulated hours [{elapsed_precise}] {msg}")
            .expect("static template"),
    );
    while let Some(s) = queue.heap.pop() {
        replay.feed_until(s.at);
        if s.at < measured_to {
            bar.set_position(((s.at - measured_from).num_hours().max(0) as u64).min(hours));
        }
        let world = &mut worlds[s.world];
        match s.action {
            Action::Decide => sim.decide(world, s.world, s.user, s.at, &replay, &mut ranker, &mut queue),
            Action::FixedSend => sim.fixed_send(world, s.world, s.user, s.at, &replay, &mut ranker, &mut queue),
            Action::Feedback { push_id, item_id, kind } => {
                if let Some(state) = world.users[s.user].state.as_mut() {
                    let fb = Feedback { push_id: &push_id, item_id: &item_id, kind, ts: s.at };
                    state.apply_feedback(&fb, tz, None, s.at, cfg);
                }
            }
        }
    }
    bar.finish_and_clear();

    // Organic conversions: the log's purchases in the measured period (the same in every arm).
    let organic = data
        .rows
        .iter()
        .filter(|r| r.kind == "purchase" && (measured_from.timestamp()..measured_to.timestamp()).contains(&r.ts))
        .count() as f64;
    let per_1000 = |x: f64| x * 1000.0 / n_users as f64;

    let mut summaries = Vec::new();
    for (arm, (name, _)) in arms.iter().enumerate() {
        let tallies: Vec<Tally> =
            worlds.iter().zip(&worlds_of).filter(|(_, (a, v, _))| *a == arm && v.is_none()).map(|(w, _)| w.tally).collect();
        let col = |f: &dyn Fn(&Tally) -> f64| mean_ci(&tallies.iter().map(|t| per_1000(f(t))).collect::<Vec<_>>());
        let (pushes, pushes_ci) = col(&|t| t.pushes as f64);
        let (opens, opens_ci) = col(&|t| t.opens as f64);
        let (pc, pc_ci) = col(&|t| t.push_conversions as f64);
        let (un, un_ci) = col(&|t| t.unsubscribes as f64);
        let sum = |f: &dyn Fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
        let (p, o, un_n) = (sum(&|t| t.pushes), sum(&|t| t.opens), sum(&|t| t.unsubscribes));
        let share = |x: u64| if p > 0 { x as f64 / p as f64 } else { 0.0 };
        summaries.push(ArmSummary {
            name: name.clone(),
            per_1000: Rates {
                pushes,
                opens,
                push_conversions: pc,
                organic_conversions: per_1000(organic),
                conversions: per_1000(organic) + pc,
                unsubscribes: un,
            },
            ci95: Rates { pushes: pushes_ci, opens: opens_ci, push_conversions: pc_ci, organic_conversions: 0.0, conversions: pc_ci, unsubscribes: un_ci },
            opens_per_unsubscribe: ratio(o, un_n),
            open_rate: share(o),
            users_reached_share: sum(&|t| t.users_reached) as f64 / (n_users as f64 * tallies.len() as f64),
            item_relevant_share: share(sum(&|t| t.item_relevant)),
            category_relevant_share: share(sum(&|t| t.category_relevant)),
            mean_hour_match: if p > 0 { tallies.iter().map(|t| t.hour_match_sum).sum::<f64>() / p as f64 } else { 0.0 },
        });
    }

    // Opens, unsubscribes (per 1,000 users, mean over replications) and opens per unsubscribe of
    // each pushing arm, over the worlds that `keep` selects.
    let arm_figures = |keep: &dyn Fn(usize, Option<usize>, u32) -> bool| -> Vec<(String, f64, f64, Option<f64>)> {
        let mut out = Vec::new();
        for (arm, (name, policy)) in arms.iter().enumerate() {
            if *policy == Policy::Holdout {
                continue;
            }
            let tallies: Vec<Tally> =
                worlds.iter().zip(&worlds_of).filter(|(_, (a, v, r))| *a == arm && keep(*a, *v, *r)).map(|(w, _)| w.tally).collect();
            let reps = tallies.len().max(1) as f64;
            let o: u64 = tallies.iter().map(|t| t.opens).sum();
            let un: u64 = tallies.iter().map(|t| t.unsubscribes).sum();
            out.push((name.clone(), per_1000(o as f64 / reps), per_1000(un as f64 / reps), ratio(o, un)));
        }
        out
    };
    let sensitivity_base = if params.sensitivity.is_empty() {
        Vec::new()
    } else {
        let reps = params.replay.sensitivity_replications;
        arm_figures(&|_, v, r| v.is_none() && r < reps)
    };
    let mut sensitivity = Vec::new();
    for (v, var) in params.sensitivity.iter().enumerate() {
        let base_value = toml::Value::try_from(&params.model)
            .ok()
            .and_then(|t| var.key.split('.').try_fold(t, |t, k| t.get(k).cloned()))
            .and_then(|x| x.as_float())
            .unwrap_or(f64::NAN);
        let per_arm = arm_figures(&|_, vv, _| vv == Some(v));
        sensitivity.push(VariantSummary { key: var.key.clone(), base_value, value: var.value, arms: per_arm });
    }

    let adaptive_frequency = worlds
        .iter()
        .find(|w| w.variant.is_none() && arms[w.arm].1 == Policy::Adaptive)
        .and_then(|w| FrequencySummary::of(&w.users, &data.user_ids, cfg));
    let adaptive_decisions = worlds
        .iter()
        .find(|w| w.variant.is_none() && arms[w.arm].1 == Policy::Adaptive)
        .map(|w| {
            let mut v: Vec<(String, u64)> = w.skips.iter().map(|(k, n)| (k.to_string(), *n)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v
        })
        .unwrap_or_default();

    Ok(SimReport {
        users: n_users,
        events: data.rows.len(),
        timezone: params.replay.timezone.clone(),
        measured_from,
        measured_to,
        seed: params.replay.seed,
        replications: params.replay.replications,
        arms: summaries,
        sensitivity,
        sensitivity_base,
        adaptive_decisions,
        adaptive_frequency,
        params: params.clone(),
        frequency: cfg.clone(),
        rankings: ranker.calls,
        rankings_memoised: ranker.hits,
        runtime: started.elapsed(),
        command: String::new(),
    })
}

// ------------------------------------------------------------------------------------------
// Rendering
// ------------------------------------------------------------------------------------------

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "∞ (no unsubscribes)".to_string(), |r| format!("{r:.1}"))
}

fn pm(x: f64, ci: f64) -> String {
    if ci > 0.0 { format!("{x:.1} ± {ci:.1}") } else { format!("{x:.1}") }
}

impl SimReport {
    fn days(&self) -> f64 {
        (self.measured_to - self.measured_from).num_seconds() as f64 / 86_400.0
    }

    /// The headline table (also printed by the command).
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str("| policy | pushes | opens | conversions (total) | of which from pushes (lift) | unsubscribes | opens per unsubscribe |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        for a in &self.arms {
            let r = &a.per_1000;
            s.push_str(&format!(
                "| {} | {} | {} | {:.1} | {} | {} | {} |\n",
                a.name,
                pm(r.pushes, a.ci95.pushes),
                pm(r.opens, a.ci95.opens),
                r.conversions,
                pm(r.push_conversions, a.ci95.push_conversions),
                pm(r.unsubscribes, a.ci95.unsubscribes),
                fmt_ratio(a.opens_per_unsubscribe),
            ));
        }
        s
    }

    /// Which model parameters move the comparison most, from the sensitivity runs: for each
    /// variant, how far the adaptive arm's opens per unsubscribe moves relative to the best
    /// fixed arm's.
    fn drivers(&self) -> Vec<(String, f64, bool)> {
        let advantage = |arms: &[(String, f64, f64, Option<f64>)]| -> Option<(f64, bool)> {
            let adaptive = arms.first()?.3.unwrap_or(f64::INFINITY);
            let best_fixed = arms[1..].iter().map(|a| a.3.unwrap_or(f64::INFINITY)).fold(0.0, f64::max);
            let ratio = if best_fixed.is_finite() && adaptive.is_finite() { adaptive / best_fixed } else { f64::NAN };
            Some((ratio, adaptive >= best_fixed))
        };
        let Some((base_adv, _)) = advantage(&self.sensitivity_base) else { return Vec::new() };
        let mut out: Vec<(String, f64, bool)> = self
            .sensitivity
            .iter()
            .filter_map(|v| {
                let (adv, wins) = advantage(&v.arms)?;
                Some((format!("model.{} = {} (base {})", v.key, v.value, v.base_value), (adv.ln() - base_adv.ln()).abs(), wins))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// The headline in words: the adaptive arm against each fixed arm.
    fn reading(&self) -> String {
        let mut s = String::new();
        let Some(adaptive) = self.arms.first() else { return s };
        let per_day = |a: &ArmSummary| a.per_1000.pushes / 1000.0 / self.days();
        let pct = |a: f64, b: f64| if b > 0.0 { format!("{:.0} %", 100.0 * a / b) } else { "n/a".into() };
        s.push_str(&format!(
            "\n**Reading.** Pushes per user per day: {}. Against each fixed arm, the adaptive policy sends:\n\n",
            self.arms
                .iter()
                .filter(|a| a.per_1000.pushes > 0.0)
                .map(|a| format!("{} {:.2}", a.name, per_day(a)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for f in self.arms.iter().skip(1).filter(|a| a.per_1000.pushes > 0.0) {
            let (a, b) = (&adaptive.per_1000, &f.per_1000);
            s.push_str(&format!(
                "- vs {}: {} of the pushes, for {} of the opens, {} of the push conversions and {} of the unsubscribes \
                 ({} against {} opens per unsubscribe).\n",
                f.name,
                pct(a.pushes, b.pushes),
                pct(a.opens, b.opens),
                pct(a.push_conversions, b.push_conversions),
                pct(a.unsubscribes, b.unsubscribes),
                fmt_ratio(adaptive.opens_per_unsubscribe),
                fmt_ratio(f.opens_per_unsubscribe),
            ));
        }
        s
    }

    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let local = |t: DateTime<Utc>| -> String {
            self.timezone.parse::<Tz>().map_or_else(|_| t.to_rfc3339(), |tz| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string())
        };
        s.push_str("# Push policy simulation\n\n");
        s.push_str(
            "> **This is a simulation.** The users, their behaviour and the items pushed are real (the Taobao\n\
             > sample replayed in time order; items chosen by kairos's own scoring), but **how users respond to a\n\
             > push is a model** with made-up parameters (`config/simulate.toml`), not measured behaviour. The\n\
             > figures compare policies *under that model*; they are not a forecast of real opens or unsubscribes.\n\n",
        );
        s.push_str(&format!(
            "Generated by `{}` in {:.0} s on this machine. {} users, {} events; pushes from {} to {} ({:.0} days, \
             after {:.0} day(s) of warm-up), time zone {}; seed {}, {} replications of the random draws \
             (± is the 95 % interval over replications).\n\n",
            self.command,
            self.runtime.as_secs_f64(),
            self.users,
            self.events,
            local(self.measured_from),
            local(self.measured_to),
            self.days(),
            self.params.replay.warmup_days,
            self.timezone,
            self.seed,
            self.replications,
        ));
        s.push_str(&format!("## Results per 1,000 users over the {:.0} measured days\n\n", self.days()));
        s.push_str(&self.table());
        s.push_str(
            "\nConversions = the organic purchases of the log in the measured period (the same in every arm, since the\n\
             replayed behaviour does not change) + purchases the model attributes to an opened push; the holdout's\n\
             column is the organic baseline, so each arm's lift is its push-attributed conversions. The model\n\
             counts every push conversion as incremental, which makes it an upper bound on the lift.\n\n",
        );
        s.push_str("| policy | open rate | users reached | pushed item touched within the window | its category touched | mean hour match |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|\n");
        for a in self.arms.iter().filter(|a| a.per_1000.pushes > 0.0) {
            s.push_str(&format!(
                "| {} | {:.1} % | {:.0} % | {:.1} % | {:.1} % | {:.2} |\n",
                a.name,
                100.0 * a.open_rate,
                100.0 * a.users_reached_share,
                100.0 * a.item_relevant_share,
                100.0 * a.category_relevant_share,
                a.mean_hour_match
            ));
        }
        if let Some(f) = &self.adaptive_frequency {
            s.push_str(&format!(
                "\nThe adaptive arm's target frequency (first replication, {} users outside the holdout), pushes per day: \
                 at the start mean {:.2} (quartiles {:.2} / {:.2} / {:.2}); at the end mean {:.2} (quartiles {:.2} / {:.2} / {:.2}), \
                 {:.0} % of users at `f_min` = {} and {:.0} % at `f_max` = {}.\n",
                f.users,
                f.initial_mean,
                f.initial_quartiles[0],
                f.initial_quartiles[1],
                f.initial_quartiles[2],
                f.final_mean,
                f.final_quartiles[0],
                f.final_quartiles[1],
                f.final_quartiles[2],
                100.0 * f.final_at_min,
                self.frequency.f_min,
                100.0 * f.final_at_max,
                self.frequency.f_max,
            ));
        }
        if !self.adaptive_decisions.is_empty() {
            s.push_str("\nThe adaptive arm's decisions (first replication), by outcome: ");
            let parts: Vec<String> = self.adaptive_decisions.iter().map(|(k, n)| format!("{k} {n}")).collect();
            s.push_str(&parts.join(", "));
            s.push_str(".\n");
        }

        s.push_str(&self.reading());
        s.push_str("\n## What drives the result\n\n");
        s.push_str(
            "The arms push the same kind of items (kairos's top-ranked item for the user at the send time, no item\n\
             twice within the repush window), so what differs is **how many pushes, to whom, and at what hour**.\n\
             Under the model every ignored push has a cost: it raises the\n\
             unsubscribe hazard (`unsubscribe.per_ignored`), each recent push lowers the next one's open\n\
             probability (`open.recent_push`), and the base open probability (`open.bias`) decides how many pushes are\n\
             ignored at all. The send-hour effect (`open.hour_match`) is where the adaptive policy's timing can win.\n\
             Relevance (`open.relevance`) rewards every arm, though not equally: the items come from the same ranking,\n\
             but an item pushed while the user is active is more often touched in the next 24 hours, and the more\n\
             pushes an arm sends, the further down the ranking the repush window pushes it.\n\n",
        );
        let drivers = self.drivers();
        if !drivers.is_empty() {
            s.push_str(
                "Measured: each variant below changes one parameter and reruns every pushing arm with the same random\n\
                 draws as the base row of the table further down. Ranked by how much the change moves the adaptive\n\
                 arm's opens per unsubscribe relative to the best fixed arm's (with 2–5 replications, moves of a few\n\
                 per cent are within the noise):\n\n",
            );
            for (label, moved, wins) in &drivers {
                s.push_str(&format!(
                    "- `{label}`: moves the ratio by a factor {:.2}; the adaptive arm then has {} opens per unsubscribe than the best fixed arm\n",
                    moved.exp(),
                    if *wins { "more" } else { "fewer" }
                ));
            }
            s.push_str(&format!(
                "\nSensitivity runs ({} replication(s) each, the same draws as the base row; opens / unsubscribes per \
                 1,000 users → opens per unsubscribe):\n\n",
                self.params.replay.sensitivity_replications
            ));
            let names: Vec<&str> = self.sensitivity.first().map(|v| v.arms.iter().map(|a| a.0.as_str()).collect()).unwrap_or_default();
            s.push_str("| parameter | value (base) |");
            for n in &names {
                s.push_str(&format!(" {n} |"));
            }
            s.push_str("\n|---|---|");
            s.push_str(&"---|".repeat(names.len()));
            s.push('\n');
            s.push_str("| (base) | |");
            for (_, o, u, r) in &self.sensitivity_base {
                s.push_str(&format!(" {o:.0} / {u:.1} → {} |", fmt_ratio(*r)));
            }
            s.push('\n');
            for v in &self.sensitivity {
                s.push_str(&format!("| `model.{}` | {} ({}) |", v.key, v.value, v.base_value));
                for (_, o, u, r) in &v.arms {
                    s.push_str(&format!(" {o:.0} / {u:.1} → {} |", fmt_ratio(*r)));
                }
                s.push('\n');
            }
        }

        s.push_str("\n## The response model\n\n");
        let m = &self.params.model;
        s.push_str(&format!(
            "For a push sent at time `t` to user `u`:\n\n\
             - **relevance** `r` = {item} if `u` touches the pushed item (any behaviour) in `(t, t + {w} h]` of their real\n\
               history, {cat} if they touch another item of its category, else 0;\n\
             - **hour match** `m` = the user's share of activity in the local send hour (their real history over the\n\
               window, hour of day, smoothed ¼·½·¼ over neighbouring hours, plus {prior} events spread like the\n\
               population), divided by the share of their most active hour (1 at their peak hour);\n\
             - `n` = pushes `u` received in the {rw} h before; `k` = pushes `u` ignored in the last {iw} days, this one included;\n\
             - **P(open)** = σ({ob} + {or}·r + {oh}·m − {on}·n); an open comes after an exponential delay (mean {od} min);\n\
             - **P(convert | open)** = σ({cb} + {cr}·r), after a further delay (mean {cd} min);\n\
             - **P(unsubscribe | ignored)** = σ({ub} + {uk}·k), reported {ud} min after the push;\n\
             - no dismissals or clicks are modelled; the user's real behaviour (the log) does not change with pushes.\n\n\
             For the adaptive arm every open, conversion and unsubscribe goes back into the policy through\n\
             `PushState::apply_feedback` at the time it happens (as the gateway's `POST /v1/feedback` does, with no\n\
             interest level), and unanswered pushes are counted by `PushState::sweep_ignored` at the next decision.\n",
            item = m.relevance.item,
            w = m.relevance.window_hours,
            cat = m.relevance.category,
            prior = m.hour_match.prior_events,
            rw = m.open.recent_window_hours,
            iw = m.unsubscribe.ignored_window_days,
            ob = m.open.bias,
            or = m.open.relevance,
            oh = m.open.hour_match,
            on = m.open.recent_push,
            od = m.open.delay_minutes,
            cb = m.convert.bias,
            cr = m.convert.relevance,
            cd = m.convert.delay_minutes,
            ub = m.unsubscribe.bias,
            uk = m.unsubscribe.per_ignored,
            ud = m.unsubscribe.delay_minutes,
        ));
        s.push_str("\n## The arms\n\n");
        s.push_str(&format!(
            "- **adaptive**: kairos's own push policy (`PushState::decide` etc., `[tuning.frequency]` of the service's\n\
             config, below). Every user gives consent in time zone {tz} at the start of the measured period, which makes them due\n\
             at once (as `PUT /v1/users` does); the state starts from the user's interest level at that moment; later\n\
             decisions run at the time the policy asked to be called back, as the scheduler does. Items: kairos's\n\
             `profile` + `scoring::rank` (top 1, recently pushed items excluded) with a catalogue and statistics fed with\n\
             the past of the log only. The service's own holdout ({h:.0} % of users, by hash) stays in force.\n",
            tz = self.timezone,
            h = 100.0 * self.frequency.holdout_share
        ));
        for f in &self.params.fixed {
            let hours: Vec<String> = f.hours.iter().map(|h| format!("{h:02}:00")).collect();
            let days = if f.every_days == 1 { "every day".to_string() } else { format!("every {} days", f.every_days) };
            s.push_str(&format!(
                "- **{}**: every subscribed user gets kairos's top-ranked item at {} local time {}, whatever its\n  \
                 score (no item twice within {} days); pushes stop at an unsubscribe.\n",
                f.name,
                hours.join(", "),
                days,
                self.frequency.repush_window_days
            ));
        }
        s.push_str("- **holdout**: no pushes; its conversions are the organic purchases.\n");
        s.push_str(&format!(
            "\nRandom draws: one `SmallRng` per (seed, replication, user), the same for every arm (common random\n\
             numbers). {} rankings were asked for, {} of them answered from the memo (the same user at the same instant\n\
             with the same excluded items, shared between arms and variants).\n",
            self.rankings, self.rankings_memoised
        ));

        s.push_str("\n## Parameters\n\nSimulation (`config/simulate.toml`, with the seed in force):\n\n```toml\n");
        s.push_str(&toml::to_string(&self.params).unwrap_or_default());
        s.push_str("```\n\nThe adaptive policy (`[tuning.frequency]` of the service's configuration, defaults included):\n\n```toml\n");
        s.push_str(&toml::to_string(&self.frequency).unwrap_or_default());
        s.push_str("```\n");
        s.push_str(
            "\n## Limitations\n\n\
             - The response model is invented; only its shape (what rises and falls with what) is argued for. Read the\n\
               sensitivity table before the headline.\n\
             - 814 users from one ID block of one marketplace over 9 days; the behaviour log does not react to pushes.\n\
             - Relevance looks at the user's real next 24 hours, so a push of an item the user was about to revisit\n\
               counts as relevant (and its conversion as incremental) although it changed nothing.\n\
             - Everyone is assumed to consent, to live in one time zone and to have no quiet hours.\n",
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ResponseModel {
        ResponseModel::default()
    }

    #[test]
    fn the_open_probability_rises_with_relevance_and_hour_match_and_falls_with_recent_pushes() {
        let m = model();
        let grid = [0.0, 0.25, 0.5, 0.75, 1.0];
        for w in grid.windows(2) {
            for &other in &grid {
                for n in 0..5 {
                    assert!(m.open_probability(w[1], other, n) > m.open_probability(w[0], other, n));
                    assert!(m.open_probability(other, w[1], n) > m.open_probability(other, w[0], n));
                }
            }
        }
        for n in 0..10 {
            assert!(m.open_probability(0.5, 0.5, n + 1) < m.open_probability(0.5, 0.5, n));
        }
        let p = m.open_probability(1.0, 1.0, 0);
        assert!(p > 0.0 && p < 1.0);
    }

    #[test]
    fn the_unsubscribe_hazard_rises_with_ignored_pushes_and_conversion_with_relevance() {
        let m = model();
        for k in 0..30 {
            assert!(m.unsubscribe_hazard(k + 1) > m.unsubscribe_hazard(k));
        }
        assert!(m.conversion_probability(1.0) > m.conversion_probability(0.5));
        assert!(m.conversion_probability(0.5) > m.conversion_probability(0.0));
    }

    #[test]
    fn the_hour_profile_peaks_at_the_users_active_hour_and_a_negative_slope_is_refused() {
        let m = model();
        let mut counts = [0.0; 24];
        counts[21] = 30.0;
        counts[9] = 5.0;
        let pop = [1.0 / 24.0; 24];
        let h = m.hour_profile(&counts, &pop);
        assert_eq!(h[21], 1.0);
        assert!(h[9] > h[3] && h[3] > 0.0);
        assert_eq!(m.hour_profile(&[0.0; 24], &[0.0; 24]), [1.0; 24]);
        assert!(m.with("open.relevance", -1.0).is_err());
        assert!(m.with("open.nonsense", 1.0).is_err());
        assert_eq!(m.with("unsubscribe.per_ignored", 0.3).unwrap().unsubscribe.per_ignored, 0.3);
    }

    #[test]
    fn the_shipped_params_file_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/simulate.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let p = SimParams::from_toml(&text).unwrap();
        assert!(p.fixed.len() >= 2);
        assert!(SimParams::from_toml("[replay]\nnope = 1\n").is_err());
    }

    /// A small synthetic log in the dataset's format: 40 users over 4 days, evening-heavy.
    fn synthetic_log() -> String {
        let mut rng = SmallRng::seed_from_u64(7);
        let start = 1_511_539_200i64; // 2017-11-25 00:00 +08
        let mut lines = Vec::new();
        for u in 0..40u64 {
            let fav_cat = 100 + u % 5;
            for _ in 0..60 {
                let day = rng.random_range(0..4i64);
                let hour = if rng.random_bool(0.7) { rng.random_range(19..23i64) } else { rng.random_range(8..23i64) };
                let ts = start + day * 86_400 + hour * 3600 + rng.random_range(0..3600i64);
                let cat = if rng.random_bool(0.8) { fav_cat } else { 100 + rng.random_range(0..5u64) };
                let item = cat * 100 + rng.random_range(0..15u64);
                let kind = ["pv", "pv", "pv", "pv", "fav", "cart", "buy"][rng.random_range(0..7usize)];
                lines.push(format!("{u},{item},{cat},{kind},{ts}"));
            }
        }
        lines.join("\n")
    }

    fn small_params() -> SimParams {
        SimParams {
            replay: ReplayParams {
                window_end: "2017-11-29T00:00:00+08:00".into(),
                replications: 2,
                sensitivity_replications: 1,
                ..ReplayParams::default()
            },
            sensitivity: vec![Variant { key: "unsubscribe.per_ignored".into(), value: 0.5 }],
            ..SimParams::default()
        }
    }

    fn tuning() -> Tuning {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        Settings::load(&ConfigSource { dir, env_name: None, use_env: false }).unwrap().tuning
    }

    #[test]
    fn the_simulation_is_deterministic_with_a_seed() {
        let data = Dataset::parse(synthetic_log().as_bytes()).unwrap();
        assert_eq!(data.user_ids.len(), 40);
        let tuning = tuning();
        let p = small_params();
        let a = simulate(&data, &p, &tuning, false).unwrap();
        let b = simulate(&data, &p, &tuning, false).unwrap();
        assert_eq!(a.arms, b.arms);
        assert_eq!(a.sensitivity, b.sensitivity);
        assert_eq!(a.adaptive_decisions, b.adaptive_decisions);
        // Every pushing arm pushed, the holdout never did, and organic conversions are shared.
        assert!(a.arms.iter().filter(|x| !x.name.starts_with("holdout")).all(|x| x.per_1000.pushes > 0.0), "{:?}", a.arms);
        let holdout = a.arms.last().unwrap();
        assert_eq!(holdout.per_1000.pushes, 0.0);
        assert!(a.arms.iter().all(|x| x.per_1000.organic_conversions == holdout.per_1000.conversions));
        // 3 pushes a day means more pushes than 1 a day.
        assert!(a.arms[2].per_1000.pushes > a.arms[1].per_1000.pushes);
        let md = a.to_markdown();
        assert!(md.contains("This is a simulation") && md.contains("opens per unsubscribe"));

        let mut other = p.clone();
        other.replay.seed = 43;
        let c = simulate(&data, &other, &tuning, false).unwrap();
        assert_ne!(
            c.arms.iter().map(|x| x.per_1000.opens).collect::<Vec<_>>(),
            a.arms.iter().map(|x| x.per_1000.opens).collect::<Vec<_>>(),
            "another seed draws other responses"
        );
    }

    #[test]
    fn the_dataset_parser_maps_behaviours_and_orders_by_time_keeping_ties_in_file_order() {
        let d = Dataset::parse("2,10,1,pv,200\n1,11,1,buy,100\n1,12,2,cart,200\n".as_bytes()).unwrap();
        assert_eq!(d.user_ids, ["2", "1"]);
        let kinds: Vec<&str> = d.rows.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, ["purchase", "view", "cart"]);
        assert!(Dataset::parse("1,2,3,like,4\n".as_bytes()).is_err());
        assert!(Dataset::parse("1,2,3,pv\n".as_bytes()).is_err());
    }
}
