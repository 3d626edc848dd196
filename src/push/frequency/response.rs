// Over 400 lines: the features, the stored model and its cross-validated fit, which change together.
//! The push-response model: who opens a push when, who converts from it, who unsubscribes.
//!
//! Trained on the service's own push log (each fetched push with the [`ResponseFeatures`]
//! recorded when it was planned, and its outcome), it predicts `P(open)`, `P(convert)` and
//! `P(unsubscribe)` for a push to a user at a time. Three logistic regressions over the same
//! standardised features, fitted by Adam with an L2 penalty: `P(open)` over every push,
//! `P(convert | opened)` over the opened ones and `P(unsubscribe | ignored)` over the rest, each
//! with the penalty that cross-validation on the log chooses (a constant rate when the features
//! do not clearly help, as with a handful of unsubscribes). A user's own open rate enters
//! shrunk towards the population's, `(opens + k · p₀) / (pushes + k)`, so a new user is
//! predicted like the population and a known one by their own record.
//!
//! A model is data: its parameters are a JSON document stored in the `models` table (kind
//! `push_response`), refused at load when they do not fit this build.

use chrono::{DateTime, Datelike, TimeDelta, Utc, Weekday};

use crate::rank::catalog::Catalog;
use crate::rank::history::HistoryEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The format tag of the parameters this build reads and writes.
pub const FORMAT: &str = "kairos-push-response/3";
/// Pushes of pseudo-evidence with which a user's open rate is shrunk to the population's.
const PRIOR_PUSHES: f64 = 5.0;
/// Stand-in for "never" in the hours-since features (about six weeks).
const NEVER_HOURS: f64 = 1000.0;

/// What is known of a (user, send time, item) when the push is planned: recorded with the push,
/// so the push log can train the model on exactly what the policy saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResponseFeatures {
    /// Blended activity of the send hour of the week over the user's most active one (0..1).
    pub activity: f64,
    /// The same for the send hour of the day, pooled over the days of the week (0..1): on a
    /// short or irregular history the hour of the day is known long before the hour of the
    /// week. Pushes logged before it was recorded read `activity`.
    #[serde(default)]
    pub hour_activity: Option<f64>,
    /// Hours since the user's last push (none yet: `null`).
    pub hours_since_push: Option<f64>,
    /// Pushes to the user in the 24 hours before.
    pub pushes_24h: u32,
    /// Fatigue at the send time.
    pub fatigue: f64,
    /// Pushes sent to the user before, and how many of them were opened.
    pub sent: u64,
    pub opens: u64,
    /// Hours since the user last opened a push.
    pub hours_since_open: Option<f64>,
    /// Pushes in a row with no positive response, and pushes ignored in the 7 days before.
    pub ignored_streak: u32,
    pub ignored_7d: u32,
    /// The pushed item's ranking score.
    pub item_score: Option<f64>,
    /// Hours since the user last touched the pushed item (never: `null`), and how often they did.
    pub item_hours_since_touch: Option<f64>,
    pub item_touches: u32,
    /// Hours since the user's last event (none known: `null`).
    pub hours_since_active: Option<f64>,
    /// The user's events in the 24 hours before (as far as known when the push is planned).
    pub events_24h: u32,
    /// The send time falls on a Saturday or Sunday in the user's time zone.
    pub weekend: bool,
    /// The user's latest event came from a mobile device.
    pub mobile: bool,
}

/// The model's inputs, in order, after the transforms of [`ResponseFeatures::vector`].
pub const INPUTS: [&str; 20] = [
    "activity", "hour_activity", "log_hours_since_push", "never_pushed", "pushes_24h", "fatigue", "open_rate", "log_sent",
    "log_hours_since_open", "ignored_streak", "ignored_7d", "item_score", "no_item", "log_item_hours_since_touch",
    "item_never_touched", "log_item_touches", "log_hours_since_active", "log_events_24h", "weekend", "mobile",
];

impl ResponseFeatures {
    /// The input vector, with the user's open rate shrunk towards `p0`.
    pub fn vector(&self, p0: f64) -> [f64; INPUTS.len()] {
        let log_hours = |h: Option<f64>| h.unwrap_or(NEVER_HOURS).max(0.0).ln_1p();
        [
            self.activity,
            self.hour_activity.unwrap_or(self.activity),
            log_hours(self.hours_since_push),
            f64::from(u8::from(self.hours_since_push.is_none())),
            f64::from(self.pushes_24h),
            self.fatigue,
            (self.opens as f64 + PRIOR_PUSHES * p0) / (self.sent as f64 + PRIOR_PUSHES),
            (self.sent as f64).ln_1p(),
            log_hours(self.hours_since_open),
            f64::from(self.ignored_streak),
            f64::from(self.ignored_7d),
            self.item_score.unwrap_or(0.0),
            f64::from(u8::from(self.item_score.is_none())),
            log_hours(self.item_hours_since_touch),
            f64::from(u8::from(self.item_hours_since_touch.is_none())),
            f64::from(self.item_touches).ln_1p(),
            log_hours(self.hours_since_active),
            f64::from(self.events_24h).ln_1p(),
            f64::from(u8::from(self.weekend)),
            f64::from(u8::from(self.mobile)),
        ]
    }

    /// Whether `t`, in `tz`, is on a weekend.
    pub fn is_weekend(t: DateTime<Utc>, tz: chrono_tz::Tz) -> bool {
        matches!(t.with_timezone(&tz).weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// Hours from `from` to `to`, if there is a `from`.
    pub fn hours_between(from: Option<DateTime<Utc>>, to: DateTime<Utc>) -> Option<f64> {
        from.map(|f| ((to - f).num_seconds() as f64 / 3600.0).max(0.0))
    }
}

/// What the user's own log says at a decision, as the response features read it: their last
/// event, the times of their events in the last day, and their touches of the item to push.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentLog {
    pub last_active: Option<DateTime<Utc>>,
    /// The last event came from a mobile device.
    pub mobile: bool,
    /// Times of the events of the 24 hours up to the decision.
    pub last_day: Vec<DateTime<Utc>>,
    /// The user's last touch of the item to push, and how many events named it.
    pub item_last_touch: Option<DateTime<Utc>>,
    pub item_touches: u32,
}

impl RecentLog {
    /// Reads `history` (in time order, named through `catalog`) up to `now`, for a push of
    /// `item_id`.
    pub fn of<E: HistoryEvent>(history: &[E], catalog: &Catalog, item_id: Option<&str>, now: DateTime<Utc>) -> RecentLog {
        let past = &history[..history.partition_point(|e| e.ts() <= now)];
        let last = past.last();
        let day_start = now - TimeDelta::hours(24);
        let names_item = |e: &&E| item_id.is_some() && e.item_id(catalog) == item_id;
        RecentLog {
            last_active: last.map(HistoryEvent::ts),
            mobile: last.is_some_and(|e| e.device() == Some(crate::domain::Device::Mobile)),
            last_day: past.iter().rev().map(HistoryEvent::ts).take_while(|ts| *ts > day_start).collect(),
            item_last_touch: past.iter().rev().find(names_item).map(HistoryEvent::ts),
            item_touches: u32::try_from(past.iter().filter(names_item).count()).unwrap_or(u32::MAX),
        }
    }

    /// Events known in the 24 hours before `t` (a later `t` counts only what is known now).
    pub fn events_before(&self, t: DateTime<Utc>) -> u32 {
        let from = t - TimeDelta::hours(24);
        u32::try_from(self.last_day.iter().filter(|x| **x > from && **x <= t).count()).unwrap_or(u32::MAX)
    }
}

/// What became of one push, for training.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseExample {
    pub at: DateTime<Utc>,
    pub features: ResponseFeatures,
    pub opened: bool,
    pub converted: bool,
    pub unsubscribed: bool,
}

/// Predicted outcome probabilities of one push.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Predicted {
    pub open: f64,
    pub convert: f64,
    pub unsubscribe: f64,
}

/// One logistic head: `σ(b + w · z)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Head {
    bias: f64,
    weights: Vec<f64>,
}

impl Head {
    fn p(&self, z: &[f64]) -> f64 {
        sigmoid(self.bias + self.weights.iter().zip(z).map(|(w, x)| w * x).sum::<f64>())
    }
}

/// Why stored parameters were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResponseModelError {
    #[error("the parameters are not valid JSON of a push-response model: {0}")]
    Malformed(String),
    #[error("format {0:?} is not {FORMAT:?}, or its inputs are not this build's")]
    Incompatible(String),
    #[error("a parameter has the wrong length or a value that is not finite")]
    Invalid,
}

/// The stored model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseModel {
    pub format: String,
    pub inputs: Vec<String>,
    /// The population's open rate in the training pushes (the prior of a new user).
    pub p0: f64,
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    open: Head,
    /// `P(convert | opened)` and `P(unsubscribe | not opened)`.
    convert: Head,
    unsubscribe: Head,
    /// The store's version (0 when not stored).
    #[serde(skip)]
    pub version: u64,
}

impl ResponseModel {
    /// Reads and checks stored parameters.
    pub fn from_json(version: u64, json: &str) -> Result<ResponseModel, ResponseModelError> {
        let mut m: ResponseModel = serde_json::from_str(json).map_err(|e| ResponseModelError::Malformed(e.to_string()))?;
        if m.format != FORMAT || m.inputs != INPUTS {
            return Err(ResponseModelError::Incompatible(m.format));
        }
        let n = INPUTS.len();
        let heads = [&m.open, &m.convert, &m.unsubscribe];
        let ok = m.mean.len() == n
            && m.scale.len() == n
            && m.scale.iter().all(|s| s.is_finite() && *s > 0.0)
            && m.mean.iter().chain(heads.iter().flat_map(|h| h.weights.iter())).all(|x| x.is_finite())
            && heads.iter().all(|h| h.weights.len() == n && h.bias.is_finite())
            && (0.0..=1.0).contains(&m.p0);
        if !ok {
            return Err(ResponseModelError::Invalid);
        }
        m.version = version;
        Ok(m)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("model serialises")
    }

    fn z(&self, f: &ResponseFeatures) -> Vec<f64> {
        f.vector(self.p0).iter().zip(&self.mean).zip(&self.scale).map(|((x, m), s)| (x - m) / s).collect()
    }

    /// `P(open)`; `P(convert) = P(open) · P(convert | open)`; `P(unsubscribe) = (1 − P(open)) ·
    /// P(unsubscribe | ignored)`: each conditional head learns from the pushes it applies to
    /// (conversions among the opened, unsubscribes among the rest), which are few.
    pub fn predict(&self, f: &ResponseFeatures) -> Predicted {
        let z = self.z(f);
        let open = self.open.p(&z);
        Predicted { open, convert: open * self.convert.p(&z), unsubscribe: (1.0 - open) * self.unsubscribe.p(&z) }
    }

    /// Mean log-loss of the open head on `examples`.
    pub fn open_log_loss(&self, examples: &[ResponseExample]) -> f64 {
        log_loss(examples.iter().map(|e| (self.predict(&e.features).open, e.opened)))
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn log_loss(pairs: impl Iterator<Item = (f64, bool)>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (p, y) in pairs {
        let p = p.clamp(1e-6, 1.0 - 1e-6);
        sum -= if y { p.ln() } else { (1.0 - p).ln() };
        n += 1;
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// The examples whose outcome is settled at `now`: a push is judged once its ignore window
/// has passed (an open may still come before), so the training set is never biased towards
/// the pushes that were opened quickly.
pub fn settled(examples: &[ResponseExample], now: DateTime<Utc>, ignore_window: TimeDelta) -> Vec<ResponseExample> {
    examples.iter().filter(|e| e.at + ignore_window <= now).cloned().collect()
}

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct FitSettings {
    /// Fewest pushes with a known outcome to train on.
    pub min_pushes: usize,
    /// Adam iterations over the whole set.
    pub iterations: usize,
    pub learning_rate: f64,
    /// Precision of the Gaussian prior on the (standardised) weights, in examples, for a head
    /// with too few pushes to choose one by cross-validation (see [`PRIORS`]): the L2 penalty
    /// on the mean loss is `prior / n`, so it weakens as the push log grows.
    pub prior: f64,
}

impl Default for FitSettings {
    fn default() -> Self {
        FitSettings { min_pushes: 200, iterations: 400, learning_rate: 0.05, prior: 50.0 }
    }
}

/// The prior precisions each head chooses from by cross-validation (see `choose_prior`), besides
/// its constant rate. How much a shop's push log says, and so how far each head's weights may
/// move from zero, is learned from the log rather than set: an outcome with a handful of
/// events (unsubscribes) ends up a constant rate, a frequent one (opens) uses its features.
pub const PRIORS: [f64; 5] = [1.0, 4.0, 16.0, 64.0, 256.0];

/// The three outcomes, each a head over the pushes it applies to.
#[derive(Clone, Copy)]
enum Outcome {
    Open,
    ConvertIfOpened,
    UnsubscribeIfIgnored,
}

impl Outcome {
    /// Whether the push counts for the head, and its label.
    fn example(self, e: &ResponseExample) -> Option<bool> {
        match self {
            Outcome::Open => Some(e.opened),
            Outcome::ConvertIfOpened => e.opened.then_some(e.converted),
            Outcome::UnsubscribeIfIgnored => (!e.opened).then_some(e.unsubscribed),
        }
    }
}

/// The outcome of a training: a model when, fitted on the pushes before `holdout_from`, its
/// open head beats the population's constant open rate on the held-out pushes from then on,
/// else why not (also when cross-validation leaves the open head a constant rate). Each head's
/// prior is chosen by cross-validation over the training pushes; once the rule passes (or
/// nothing is held out yet) every head is refitted on every push.
pub fn fit(examples: &[ResponseExample], holdout_from: DateTime<Utc>, settings: FitSettings) -> Result<ResponseModel, String> {
    let (train, held): (Vec<&ResponseExample>, Vec<&ResponseExample>) = examples.iter().partition(|e| e.at < holdout_from);
    if train.len() < settings.min_pushes {
        return Err(format!("{} pushes with a known outcome before the held-out day; at least {} are needed", train.len(), settings.min_pushes));
    }
    let opens = train.iter().filter(|e| e.opened).count();
    if opens == 0 || opens == train.len() {
        return Err(format!("{opens} of {} training pushes were opened: nothing to learn from", train.len()));
    }
    let outcomes = [Outcome::Open, Outcome::ConvertIfOpened, Outcome::UnsubscribeIfIgnored];
    let priors = outcomes.map(|outcome| choose_prior(outcome, &train, settings));
    // An open head that is a constant rate knows nothing of who opens or when: every push would
    // have the same value, and the policy would send to everyone at their first allowed hour.
    if priors[0].is_none() {
        return Err(format!("in cross-validation over {} training pushes, no input predicts opens better than the constant rate", train.len()));
    }
    if !held.is_empty() {
        let model = fit_model(&train, priors, settings);
        let held: Vec<ResponseExample> = held.into_iter().cloned().collect();
        let constant = log_loss(held.iter().map(|e| (model.p0, e.opened)));
        let learned = model.open_log_loss(&held);
        if learned.is_nan() || learned >= constant {
            return Err(format!("held-out open log-loss {learned:.4} does not beat the population rate's {constant:.4}"));
        }
    }
    // The rule passed (or nothing is held out yet): refit on every push.
    let all: Vec<&ResponseExample> = examples.iter().collect();
    Ok(fit_model(&all, priors, settings))
}

/// The three heads fitted on `examples` with the given priors (`None`: a constant rate).
fn fit_model(examples: &[&ResponseExample], priors: [Option<f64>; 3], settings: FitSettings) -> ResponseModel {
    let standard = Standard::of(examples);
    let z = standard.all(examples);
    let head = |k: usize, outcome: Outcome| fit_head(outcome, examples, &z, priors[k], settings);
    ResponseModel {
        format: FORMAT.into(),
        inputs: INPUTS.iter().map(|s| s.to_string()).collect(),
        p0: standard.p0,
        open: head(0, Outcome::Open),
        convert: head(1, Outcome::ConvertIfOpened),
        unsubscribe: head(2, Outcome::UnsubscribeIfIgnored),
        mean: standard.mean,
        scale: standard.scale,
        version: 0,
    }
}

/// Blocks of consecutive training pushes in which the priors are compared.
const FOLDS: usize = 5;

/// The prior for `outcome`, by cross-validation over [`FOLDS`] blocks of consecutive pushes
/// (each block predicted by a head fitted on the others), with the one-standard-error rule:
/// the simplest candidate (the constant rate `None`, then the priors of [`PRIORS`] from the
/// strongest) whose held-out log-loss is within one standard error of the best one's. A head
/// with a handful of events stays constant unless its features clearly help: with the value's
/// costs multiplying it, a head fitted to noise would steer every decision. `settings.prior`
/// when there are too few pushes to compare. A head whose rarer outcome has fewer events than
/// the model has inputs stays constant: it cannot tell one weight per input from noise.
fn choose_prior(outcome: Outcome, train: &[&ResponseExample], settings: FitSettings) -> Option<f64> {
    let labels: Vec<bool> = train.iter().filter_map(|e| outcome.example(e)).collect();
    let (applies, events) = (labels.len(), labels.iter().filter(|y| **y).count());
    if applies < 2 * FOLDS {
        return Some(settings.prior);
    }
    if events.min(applies - events) < INPUTS.len() {
        return None;
    }
    let block = train.len().div_ceil(FOLDS);
    // Simplest first.
    let candidates: Vec<Option<f64>> = std::iter::once(None).chain(PRIORS.iter().rev().copied().map(Some)).collect();
    // Each candidate's log-loss on every held-out push the head applies to.
    let mut losses: Vec<Vec<f64>> = vec![Vec::with_capacity(applies); candidates.len()];
    for fold in 0..train.len().div_ceil(block) {
        let end = ((fold + 1) * block).min(train.len());
        let held = &train[fold * block..end];
        let rest: Vec<&ResponseExample> = train[..fold * block].iter().chain(&train[end..]).copied().collect();
        let standard = Standard::of(&rest);
        let (z_rest, z_held) = (standard.all(&rest), standard.all(held));
        for (c, prior) in candidates.iter().enumerate() {
            let head = fit_head(outcome, &rest, &z_rest, *prior, settings);
            let labelled = held.iter().zip(&z_held).filter_map(|(e, z)| outcome.example(e).map(|y| (head.p(z), y)));
            losses[c].extend(labelled.map(|pair| log_loss(std::iter::once(pair))));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let best = (0..candidates.len()).min_by(|a, b| mean(&losses[*a]).total_cmp(&mean(&losses[*b]))).unwrap_or(0);
    let within_one_se = |c: usize| {
        let d: Vec<f64> = losses[c].iter().zip(&losses[best]).map(|(a, b)| a - b).collect();
        let m = mean(&d);
        let se = (d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (d.len().max(2) - 1) as f64 / d.len().max(1) as f64).sqrt();
        m <= se
    };
    candidates[(0..candidates.len()).find(|c| within_one_se(*c)).unwrap_or(best)]
}

/// The standardisation of the inputs, from the pushes a model is fitted on.
struct Standard {
    p0: f64,
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl Standard {
    fn of(examples: &[&ResponseExample]) -> Standard {
        let n = examples.len().max(1) as f64;
        let p0 = examples.iter().filter(|e| e.opened).count() as f64 / n;
        let width = INPUTS.len();
        let (mut mean, mut var) = (vec![0.0; width], vec![0.0; width]);
        let xs: Vec<[f64; INPUTS.len()]> = examples.iter().map(|e| e.features.vector(p0)).collect();
        for x in &xs {
            mean.iter_mut().zip(x).for_each(|(m, v)| *m += v / n);
        }
        for x in &xs {
            var.iter_mut().zip(x).zip(&mean).for_each(|((s, v), m)| *s += (v - m).powi(2) / n);
        }
        let scale = var.into_iter().map(|v| if v.sqrt() > 1e-9 { v.sqrt() } else { 1.0 }).collect();
        Standard { p0, mean, scale }
    }

    fn all(&self, examples: &[&ResponseExample]) -> Vec<Vec<f64>> {
        let z = |x: [f64; INPUTS.len()]| x.iter().zip(&self.mean).zip(&self.scale).map(|((x, m), s)| (x - m) / s).collect();
        examples.iter().map(|e| z(e.features.vector(self.p0))).collect()
    }
}

/// One head by Adam on the mean log-loss plus `prior / n · |w|²` over the pushes it applies to;
/// `prior: None` fits only the bias (the head's constant rate, smoothed by half an example).
fn fit_head(outcome: Outcome, examples: &[&ResponseExample], zs: &[Vec<f64>], prior: Option<f64>, s: FitSettings) -> Head {
    let (zs, ys): (Vec<&Vec<f64>>, Vec<f64>) =
        examples.iter().zip(zs).filter_map(|(e, z)| outcome.example(e).map(|y| (z, f64::from(u8::from(y))))).unzip();
    let width = INPUTS.len();
    let n = ys.len() as f64;
    let rate = (ys.iter().sum::<f64>() + 0.5) / (n + 1.0);
    let mut theta = vec![0.0; width + 1];
    theta[width] = (rate / (1.0 - rate)).ln();
    let Some(prior) = prior.filter(|_| n > 0.0) else {
        return Head { bias: theta[width], weights: vec![0.0; width] };
    };
    let l2 = prior / n;
    let (mut m, mut v) = (vec![0.0; width + 1], vec![0.0; width + 1]);
    for t in 1..=s.iterations {
        let mut grad = vec![0.0; width + 1];
        for (z, y) in zs.iter().zip(&ys) {
            let p = sigmoid(theta[width] + z.iter().zip(&theta).map(|(a, b)| a * b).sum::<f64>());
            for k in 0..width {
                grad[k] += (p - y) * z[k] / n;
            }
            grad[width] += (p - y) / n;
        }
        for k in 0..width {
            grad[k] += l2 * theta[k];
        }
        let (b1, b2) = (0.9f64, 0.999f64);
        for k in 0..=width {
            m[k] = b1 * m[k] + (1.0 - b1) * grad[k];
            v[k] = b2 * v[k] + (1.0 - b2) * grad[k] * grad[k];
            let mh = m[k] / (1.0 - b1.powi(t as i32));
            let vh = v[k] / (1.0 - b2.powi(t as i32));
            theta[k] -= s.learning_rate * mh / (vh.sqrt() + 1e-8);
        }
    }
    Head { bias: theta[width], weights: theta[..width].to_vec() }
}

/// Hours of a `TimeDelta`, for the features.
pub fn hours(d: TimeDelta) -> f64 {
    d.num_seconds() as f64 / 3600.0
}

#[cfg(test)]
mod tests;
