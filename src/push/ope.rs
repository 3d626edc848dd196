//! Off-policy evaluation: the value of a target policy estimated from decisions logged under
//! another (the logging) policy, before the target is switched on.
//!
//! Each logged [`Record`] is a context `x_i`, the action `a_i` the logging policy took, the
//! reward `r_i` observed and the logging propensity `p_i = μ(a_i | x_i)`. The target is given
//! as probabilities `π(· | x)` ([`TargetPolicy`]); the doubly robust estimate also needs a
//! reward model `q̂(x, a)` ([`RewardModel`]). With the importance weight `w_i = π(a_i|x_i) / p_i`:
//!
//! ```text
//! IPS    V = 1/n Σ w_i r_i
//! SNIPS  V = Σ w_i r_i / Σ w_i
//! DR     V = 1/n Σ [ Σ_a π(a|x_i) q̂(x_i, a)  +  w_i (r_i − q̂(x_i, a_i)) ]
//! ```
//!
//! Intervals are 95 % normal approximations: IPS and DR from the sample variance of their
//! per-record terms; SNIPS by the delta method, from the terms `w_i (r_i − V) / w̄`. A
//! percentile bootstrap ([`Evaluation::bootstrap`]) takes the caller's seeded RNG. The
//! diagnostics ([`Diagnostics`]) say how much of the log the estimate really rests on: the
//! effective sample size `(Σ w)² / Σ w²` and the records the target would never have taken.
//!
//! Pure: plain data in, numbers out; every bad input is an [`OpeError`], never a panic.

use rand::Rng;

/// The two-sided 95 % quantile of the standard normal distribution.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Probabilities of the target may sum to 1 within this (they are often computed).
const SUM_TOLERANCE: f64 = 1e-6;

/// One logged decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Record<X> {
    /// What the logging policy saw.
    pub context: X,
    /// The action it took, an index into the target's action space.
    pub action: usize,
    /// The reward observed after it.
    pub reward: f64,
    /// The probability with which the logging policy took that action in that context.
    pub propensity: f64,
}

/// A target policy: the probability of every action in a context.
pub trait TargetPolicy<X> {
    /// `π(· | x)`: one probability per action `0..n`, summing to 1.
    fn probabilities(&self, x: &X) -> Vec<f64>;
}

impl<X, F: Fn(&X) -> Vec<f64>> TargetPolicy<X> for F {
    fn probabilities(&self, x: &X) -> Vec<f64> {
        self(x)
    }
}

/// A reward model for the doubly robust estimate: the expected reward of an action in a context.
pub trait RewardModel<X> {
    /// `q̂(x, a)`.
    fn predict(&self, x: &X, action: usize) -> f64;
}

impl<X, F: Fn(&X, usize) -> f64> RewardModel<X> for F {
    fn predict(&self, x: &X, action: usize) -> f64 {
        self(x, action)
    }
}

/// Why an estimate could not be computed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum OpeError {
    #[error("the log is empty: there is nothing to estimate from")]
    EmptyLog,
    #[error("an interval needs at least 2 records, the log holds {records}")]
    TooFewRecords { records: usize },
    #[error("record {index}: the logging propensity {value} is not in (0, 1]")]
    Propensity { index: usize, value: f64 },
    #[error("record {index}: the reward {value} is not a finite number")]
    Reward { index: usize, value: f64 },
    #[error("record {index}: action {action} is outside the target policy's {actions} actions")]
    ActionOutOfRange { index: usize, action: usize, actions: usize },
    #[error("record {index}: the target gives action {action} the probability {value}, not in [0, 1]")]
    TargetProbability { index: usize, action: usize, value: f64 },
    #[error("record {index}: the target's probabilities sum to {sum}, not 1")]
    TargetSum { index: usize, sum: f64 },
    #[error("record {index}: the reward model predicts {value} for action {action}, not a finite number")]
    Prediction { index: usize, action: usize, value: f64 },
    #[error("the doubly robust estimate needs a reward model (Evaluation::with_model)")]
    NoRewardModel,
    #[error("the target gives probability 0 to every logged action: self-normalised IPS is undefined")]
    NoSupport,
    #[error("a bootstrap needs at least one resample")]
    NoResamples,
}

/// The estimators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Estimator {
    /// Inverse propensity scoring.
    Ips,
    /// Self-normalised IPS.
    Snips,
    /// Doubly robust.
    Dr,
}

impl Estimator {
    pub const ALL: [Estimator; 3] = [Estimator::Ips, Estimator::Snips, Estimator::Dr];

    pub fn name(self) -> &'static str {
        match self {
            Estimator::Ips => "IPS",
            Estimator::Snips => "SNIPS",
            Estimator::Dr => "DR",
        }
    }
}

/// A confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, v: f64) -> bool {
        self.low <= v && v <= self.high
    }

    pub fn width(&self) -> f64 {
        self.high - self.low
    }
}

/// A value with its standard error and 95 % normal interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub std_error: f64,
    pub interval: Interval,
}

impl Estimate {
    fn normal(value: f64, std_error: f64) -> Self {
        Estimate { value, std_error, interval: Interval { low: value - Z95 * std_error, high: value + Z95 * std_error } }
    }
}

/// How much of the log an estimate rests on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Diagnostics {
    /// Records in the log.
    pub records: usize,
    /// `(Σ w)² / Σ w²`: the number of records an unweighted sample of equal variance would
    /// hold; 0 when every weight is 0.
    pub ess: f64,
    /// Records whose logged action the target gives probability 0: they add nothing to IPS.
    pub zero_target: usize,
    /// Records with a positive weight and a non-zero reward: the terms IPS is made of.
    pub weighted_rewards: usize,
    /// Mean weight. Whatever the target, weights average to 1 in expectation when the
    /// propensities are right and every action the target takes could have been logged, so
    /// a mean weight far from 1 (in units of its standard error) points at the propensities.
    pub mean_weight: f64,
    /// The standard error of the mean weight (sample variance of the weights).
    pub mean_weight_std_error: f64,
    pub max_weight: f64,
}

/// The per-record quantities every estimator is a function of.
#[derive(Clone, Copy, Debug)]
struct Term {
    /// `π(a_i|x_i) / p_i`.
    weight: f64,
    reward: f64,
    /// `Σ_a π(a|x_i) q̂(x_i, a)` (0 without a model).
    direct: f64,
    /// `q̂(x_i, a_i)` (0 without a model).
    logged: f64,
}

/// A log checked against a target policy, ready for every estimator.
#[derive(Clone, Debug)]
pub struct Evaluation {
    terms: Vec<Term>,
    has_model: bool,
}

impl Evaluation {
    /// IPS and SNIPS (DR refuses without a model).
    pub fn new<X>(log: &[Record<X>], target: &impl TargetPolicy<X>) -> Result<Self, OpeError> {
        Self::build(log, target, None)
    }

    /// Every estimator, DR with `model`.
    pub fn with_model<X>(
        log: &[Record<X>],
        target: &impl TargetPolicy<X>,
        model: &impl RewardModel<X>,
    ) -> Result<Self, OpeError> {
        Self::build(log, target, Some(model))
    }

    fn build<X>(
        log: &[Record<X>],
        target: &impl TargetPolicy<X>,
        model: Option<&dyn RewardModel<X>>,
    ) -> Result<Self, OpeError> {
        check_size(log.len())?;
        let mut terms = Vec::with_capacity(log.len());
        for (index, rec) in log.iter().enumerate() {
            if !(rec.propensity > 0.0 && rec.propensity <= 1.0) {
                return Err(OpeError::Propensity { index, value: rec.propensity });
            }
            if !rec.reward.is_finite() {
                return Err(OpeError::Reward { index, value: rec.reward });
            }
            let pi = target.probabilities(&rec.context);
            check_distribution(index, &pi)?;
            let Some(&p_logged) = pi.get(rec.action) else {
                return Err(OpeError::ActionOutOfRange { index, action: rec.action, actions: pi.len() });
            };
            let (mut direct, mut logged) = (0.0, 0.0);
            if let Some(model) = model {
                let predict = |action: usize| {
                    let value = model.predict(&rec.context, action);
                    if value.is_finite() { Ok(value) } else { Err(OpeError::Prediction { index, action, value }) }
                };
                for (a, &p) in pi.iter().enumerate().filter(|(_, p)| **p > 0.0) {
                    direct += p * predict(a)?;
                }
                logged = predict(rec.action)?;
            }
            terms.push(Term { weight: p_logged / rec.propensity, reward: rec.reward, direct, logged });
        }
        Ok(Evaluation { terms, has_model: model.is_some() })
    }

    /// Records in the log.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Never true: an empty log is refused.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The estimate of `estimator`, with its 95 % normal interval.
    pub fn estimate(&self, estimator: Estimator) -> Result<Estimate, OpeError> {
        let terms: Vec<&Term> = self.terms.iter().collect();
        self.estimate_on(estimator, &terms)
    }

    fn estimate_on(&self, estimator: Estimator, terms: &[&Term]) -> Result<Estimate, OpeError> {
        match estimator {
            Estimator::Ips => Ok(mean_estimate(terms.iter().map(|t| t.weight * t.reward))),
            Estimator::Dr if !self.has_model => Err(OpeError::NoRewardModel),
            Estimator::Dr => Ok(mean_estimate(terms.iter().map(|t| t.direct + t.weight * (t.reward - t.logged)))),
            Estimator::Snips => {
                let n = terms.len() as f64;
                let weights: f64 = terms.iter().map(|t| t.weight).sum();
                if weights <= 0.0 {
                    return Err(OpeError::NoSupport);
                }
                let value = terms.iter().map(|t| t.weight * t.reward).sum::<f64>() / weights;
                // Delta method: the influence of record i is w_i (r_i − V) / w̄.
                let mean_weight = weights / n;
                let influence = terms.iter().map(|t| t.weight * (t.reward - value) / mean_weight);
                Ok(Estimate::normal(value, std_error(influence)))
            }
        }
    }

    /// A percentile bootstrap interval (2.5 % and 97.5 % of `resamples` resamples of the log
    /// with replacement). SNIPS skips resamples in which every weight is 0.
    pub fn bootstrap(&self, estimator: Estimator, resamples: usize, rng: &mut impl Rng) -> Result<Interval, OpeError> {
        if resamples == 0 {
            return Err(OpeError::NoResamples);
        }
        let n = self.terms.len();
        let mut values = Vec::with_capacity(resamples);
        let mut sample: Vec<&Term> = Vec::with_capacity(n);
        for _ in 0..resamples {
            sample.clear();
            sample.extend((0..n).map(|_| &self.terms[rng.random_range(0..n)]));
            match self.estimate_on(estimator, &sample) {
                Ok(e) => values.push(e.value),
                Err(OpeError::NoSupport) => {}
                Err(e) => return Err(e),
            }
        }
        if values.is_empty() {
            return Err(OpeError::NoSupport);
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((q * values.len() as f64).floor() as usize).min(values.len() - 1)];
        Ok(Interval { low: at(0.025), high: at(0.975) })
    }

    /// How much of the log the estimates rest on.
    pub fn diagnostics(&self) -> Diagnostics {
        let (sum, sum_sq) = self.terms.iter().fold((0.0, 0.0), |(s, q), t| (s + t.weight, q + t.weight * t.weight));
        Diagnostics {
            records: self.terms.len(),
            ess: if sum_sq > 0.0 { sum * sum / sum_sq } else { 0.0 },
            zero_target: self.terms.iter().filter(|t| t.weight == 0.0).count(),
            weighted_rewards: self.terms.iter().filter(|t| t.weight > 0.0 && t.reward != 0.0).count(),
            mean_weight: sum / self.terms.len() as f64,
            mean_weight_std_error: std_error(self.terms.iter().map(|t| t.weight)),
            max_weight: self.terms.iter().map(|t| t.weight).fold(0.0, f64::max),
        }
    }
}

/// The mean of rewards observed on-policy (the logging policy's own value), with its 95 %
/// normal interval: what the off-policy estimates are compared with.
pub fn observed_mean(rewards: &[f64]) -> Result<Estimate, OpeError> {
    check_size(rewards.len())?;
    if let Some((index, &value)) = rewards.iter().enumerate().find(|(_, r)| !r.is_finite()) {
        return Err(OpeError::Reward { index, value });
    }
    Ok(mean_estimate(rewards.iter().copied()))
}

fn check_size(records: usize) -> Result<(), OpeError> {
    match records {
        0 => Err(OpeError::EmptyLog),
        1 => Err(OpeError::TooFewRecords { records }),
        _ => Ok(()),
    }
}

fn check_distribution(index: usize, pi: &[f64]) -> Result<(), OpeError> {
    if let Some((action, &value)) = pi.iter().enumerate().find(|(_, p)| !(**p >= 0.0 && **p <= 1.0)) {
        return Err(OpeError::TargetProbability { index, action, value });
    }
    let sum: f64 = pi.iter().sum();
    if (sum - 1.0).abs() > SUM_TOLERANCE {
        return Err(OpeError::TargetSum { index, sum });
    }
    Ok(())
}

/// The mean of `values` with the normal interval from their sample variance.
fn mean_estimate(values: impl Iterator<Item = f64> + Clone) -> Estimate {
    let (n, sum) = values.clone().fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
    Estimate::normal(sum / n as f64, std_error(values))
}

/// `sd / √n`, with the sample standard deviation (n − 1); callers ensure n ≥ 2.
fn std_error(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let (n, sum) = values.clone().fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
    let n = n as f64;
    let mean = sum / n;
    let ss: f64 = values.map(|v| (v - mean) * (v - mean)).sum();
    (ss / (n - 1.0) / n).sqrt()
}

#[cfg(test)]
mod tests;
