//! The push-response model: who opens a push when, who converts from it, who unsubscribes.
//!
//! Trained on the service's own push log (each fetched push with the [`ResponseFeatures`]
//! recorded when it was planned, and its outcome), it predicts `P(open)`, `P(convert)` and
//! `P(unsubscribe)` for a push to a user at a time. Three logistic regressions over the same
//! standardised features, fitted by Adam with an L2 penalty. A user's own open rate enters
//! shrunk towards the population's, `(opens + k · p₀) / (pushes + k)`, so a new user is
//! predicted like the population and a known one by their own record.
//!
//! A model is data: its parameters are a JSON document stored in the `models` table (kind
//! `push_response`), refused at load when they do not fit this build.

use chrono::{DateTime, Datelike, TimeDelta, Utc, Weekday};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The format tag of the parameters this build reads and writes.
pub const FORMAT: &str = "kairos-push-response/2";
/// Pushes of pseudo-evidence with which a user's open rate is shrunk to the population's.
const PRIOR_PUSHES: f64 = 5.0;
/// Stand-in for "never" in the hours-since features (about six weeks).
const NEVER_HOURS: f64 = 1000.0;

/// What is known of a (user, send time, item) when the push is planned: recorded with the push,
/// so the push log can train the model on exactly what the policy saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResponseFeatures {
    /// Blended activity of the send hour over the user's most active hour (0..1).
    pub activity: f64,
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
pub const INPUTS: [&str; 19] = [
    "activity", "log_hours_since_push", "never_pushed", "pushes_24h", "fatigue", "open_rate", "log_sent",
    "log_hours_since_open", "ignored_streak", "ignored_7d", "item_score", "no_item", "log_item_hours_since_touch",
    "item_never_touched", "log_item_touches", "log_hours_since_active", "log_events_24h", "weekend", "mobile",
];

impl ResponseFeatures {
    /// The input vector, with the user's open rate shrunk towards `p0`.
    pub fn vector(&self, p0: f64) -> [f64; INPUTS.len()] {
        let log_hours = |h: Option<f64>| h.unwrap_or(NEVER_HOURS).max(0.0).ln_1p();
        [
            self.activity,
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
    /// Reads `history` (in time order) up to `now`, for a push of `item_id`.
    pub fn of(history: &[crate::domain::Event], item_id: Option<&str>, now: DateTime<Utc>) -> RecentLog {
        let past = &history[..history.partition_point(|e| e.ts <= now)];
        let last = past.last();
        let day_start = now - TimeDelta::hours(24);
        let touches = || past.iter().filter(|e| item_id.is_some() && e.item_id.as_deref() == item_id);
        RecentLog {
            last_active: last.map(|e| e.ts),
            mobile: last.is_some_and(|e| e.context.device == Some(crate::domain::Device::Mobile)),
            last_day: past.iter().rev().take_while(|e| e.ts > day_start).map(|e| e.ts).collect(),
            item_last_touch: past.iter().rev().find(|e| item_id.is_some() && e.item_id.as_deref() == item_id).map(|e| e.ts),
            item_touches: u32::try_from(touches().count()).unwrap_or(u32::MAX),
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

    pub fn predict(&self, f: &ResponseFeatures) -> Predicted {
        let z = self.z(f);
        Predicted { open: self.open.p(&z), convert: self.convert.p(&z), unsubscribe: self.unsubscribe.p(&z) }
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
    /// Precision of the Gaussian prior on the (standardised) weights, in examples: the L2
    /// penalty on the mean loss is `prior / n`, so it weakens as the push log grows.
    pub prior: f64,
}

impl Default for FitSettings {
    fn default() -> Self {
        FitSettings { min_pushes: 200, iterations: 400, learning_rate: 0.05, prior: 50.0 }
    }
}

/// The outcome of a training: a model when it beats the population's constant open rate on
/// the held-out pushes (those from `holdout_from` on), else why not.
pub fn fit(examples: &[ResponseExample], holdout_from: DateTime<Utc>, settings: FitSettings) -> Result<ResponseModel, String> {
    let (train, held): (Vec<&ResponseExample>, Vec<&ResponseExample>) = examples.iter().partition(|e| e.at < holdout_from);
    if train.len() < settings.min_pushes {
        return Err(format!("{} pushes with a known outcome before the held-out day; at least {} are needed", train.len(), settings.min_pushes));
    }
    let opens = train.iter().filter(|e| e.opened).count();
    if opens == 0 || opens == train.len() {
        return Err(format!("{opens} of {} training pushes were opened: nothing to learn from", train.len()));
    }
    let model = fit_on(&train, settings);
    if !held.is_empty() {
        let held: Vec<ResponseExample> = held.into_iter().cloned().collect();
        let constant = log_loss(held.iter().map(|e| (model.p0, e.opened)));
        let learned = model.open_log_loss(&held);
        if learned.is_nan() || learned >= constant {
            return Err(format!("held-out open log-loss {learned:.4} does not beat the population rate's {constant:.4}"));
        }
    }
    // The rule passed (or nothing is held out yet): refit on every push.
    let all: Vec<&ResponseExample> = examples.iter().collect();
    Ok(fit_on(&all, settings))
}

fn fit_on(examples: &[&ResponseExample], s: FitSettings) -> ResponseModel {
    let n = examples.len().max(1) as f64;
    let p0 = examples.iter().filter(|e| e.opened).count() as f64 / n;
    let xs: Vec<[f64; INPUTS.len()]> = examples.iter().map(|e| e.features.vector(p0)).collect();
    let width = INPUTS.len();
    let mut mean = vec![0.0; width];
    let mut scale = vec![0.0; width];
    for x in &xs {
        for k in 0..width {
            mean[k] += x[k] / n;
        }
    }
    for x in &xs {
        for k in 0..width {
            scale[k] += (x[k] - mean[k]).powi(2) / n;
        }
    }
    let scale: Vec<f64> = scale.into_iter().map(|v| if v.sqrt() > 1e-9 { v.sqrt() } else { 1.0 }).collect();
    let zs: Vec<Vec<f64>> = xs.iter().map(|x| x.iter().zip(&mean).zip(&scale).map(|((x, m), s)| (x - m) / s).collect()).collect();
    let head = |label: &dyn Fn(&ResponseExample) -> bool| -> Head {
        let ys: Vec<f64> = examples.iter().map(|e| f64::from(u8::from(label(e)))).collect();
        let rate = (ys.iter().sum::<f64>() + 0.5) / (n + 1.0);
        let l2 = s.prior / n;
        let mut theta = vec![0.0; width + 1];
        theta[width] = (rate / (1.0 - rate)).ln();
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
    };
    ResponseModel {
        format: FORMAT.into(),
        inputs: INPUTS.iter().map(|s| s.to_string()).collect(),
        p0,
        mean,
        scale,
        open: head(&|e| e.opened),
        convert: head(&|e| e.converted),
        unsubscribe: head(&|e| e.unsubscribed),
        version: 0,
    }
}

/// Hours of a `TimeDelta`, for the features.
pub fn hours(d: TimeDelta) -> f64 {
    d.num_seconds() as f64 / 3600.0
}

#[cfg(test)]
mod tests;
