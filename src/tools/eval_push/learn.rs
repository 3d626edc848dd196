//! The policies evaluated, as rankings of a campaign's items over the widget's positions, and
//! the click model they are learned from (also DR's reward model).

use rand::Rng;

use super::data::Impression;
use crate::push::ope::{RewardModel, TargetPolicy};

/// Per item, a Beta posterior of its click rate over the impressions it was fitted on, pooled
/// over positions. The prior is worth one click at the pooled rate: `Beta(1, 1/p̄ − 1)` with
/// `p̄ = (clicks + 1) / (impressions + 2)`, so an item never shown sits at the pooled rate and
/// a single click moves an item by about one prior's worth.
#[derive(Clone, Debug)]
pub struct ClickModel {
    pub shown: Vec<u64>,
    pub clicks: Vec<u64>,
    /// `p̄`, the prior's mean.
    pub prior_mean: f64,
    alpha: Vec<f64>,
    beta: Vec<f64>,
}

impl ClickModel {
    pub fn fit(impressions: &[Impression], items: usize) -> Self {
        let (mut shown, mut clicks) = (vec![0u64; items], vec![0u64; items]);
        for i in impressions.iter().filter(|i| i.item < items) {
            shown[i.item] += 1;
            clicks[i.item] += u64::from(i.click);
        }
        let (n, c) = (shown.iter().sum::<u64>() as f64, clicks.iter().sum::<u64>() as f64);
        let prior_mean = (c + 1.0) / (n + 2.0);
        let (a0, b0) = Self::prior_of(prior_mean);
        let alpha = clicks.iter().map(|&k| a0 + k as f64).collect();
        let beta = shown.iter().zip(&clicks).map(|(&s, &k)| b0 + (s - k) as f64).collect();
        ClickModel { shown, clicks, prior_mean, alpha, beta }
    }

    fn prior_of(mean: f64) -> (f64, f64) {
        (1.0, 1.0 / mean - 1.0)
    }

    /// The prior `(α₀, β₀)`.
    pub fn prior(&self) -> (f64, f64) {
        Self::prior_of(self.prior_mean)
    }

    pub fn items(&self) -> usize {
        self.alpha.len()
    }

    /// The posterior mean click rate of `item`.
    pub fn mean(&self, item: usize) -> f64 {
        self.alpha[item] / (self.alpha[item] + self.beta[item])
    }

    /// Items from the highest posterior mean down (ties: lower id first).
    pub fn by_mean(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.items()).collect();
        order.sort_by(|&a, &b| self.mean(b).total_cmp(&self.mean(a)).then(a.cmp(&b)));
        order
    }

    /// One draw of every item's click rate from its posterior.
    fn draw(&self, rng: &mut impl Rng) -> Vec<f64> {
        self.alpha.iter().zip(&self.beta).map(|(&a, &b)| beta_sample(a, b, rng)).collect()
    }
}

impl RewardModel<Impression> for ClickModel {
    fn predict(&self, _: &Impression, action: usize) -> f64 {
        self.mean(action)
    }
}

/// Two click models cross-fitted on the halves of one log: a record before `split` is
/// predicted by the model fitted on the records after it, and the other way round, so no
/// record's reward is predicted by a model that saw it.
#[derive(Clone, Debug)]
pub struct CrossFit {
    pub split: i64,
    /// Fitted before `split`.
    pub early: ClickModel,
    /// Fitted at or after `split`.
    pub late: ClickModel,
}

impl RewardModel<Impression> for CrossFit {
    fn predict(&self, x: &Impression, action: usize) -> f64 {
        if x.ts_us < self.split { self.late.mean(action) } else { self.early.mean(action) }
    }
}

/// A ranking policy given by its marginals: `table[k][i]` is the probability that item `i`
/// is shown at position `k + 1`. Each record is one (item, position), so that marginal is
/// exactly `π(item | position)`, the probability the estimators need.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranking {
    pub table: Vec<Vec<f64>>,
}

impl Ranking {
    /// Every item equally likely at every position (the `random` logging policy).
    pub fn uniform(items: usize, positions: usize) -> Self {
        Ranking { table: vec![vec![1.0 / items as f64; items]; positions] }
    }

    /// The items of the highest posterior means, best first, one per position.
    pub fn greedy(model: &ClickModel, positions: usize) -> Self {
        let mut table = vec![vec![0.0; model.items()]; positions];
        for (row, item) in table.iter_mut().zip(model.by_mean()) {
            row[item] = 1.0;
        }
        Ranking { table }
    }

    /// Thompson sampling, as the `bts` logging policy ranks: every request draws each item's
    /// click rate from its posterior and shows the best draws, best first. The marginals are
    /// the frequencies over `draws` Monte Carlo draws.
    pub fn thompson(model: &ClickModel, positions: usize, draws: usize, rng: &mut impl Rng) -> Self {
        let items = model.items();
        let mut table = vec![vec![0.0; items]; positions];
        let mut order: Vec<usize> = (0..items).collect();
        for _ in 0..draws {
            let theta = model.draw(rng);
            order.sort_unstable_by(|&a, &b| theta[b].total_cmp(&theta[a]));
            for (row, &item) in table.iter_mut().zip(&order) {
                row[item] += 1.0;
            }
        }
        for row in &mut table {
            row.iter_mut().for_each(|p| *p /= draws.max(1) as f64);
        }
        Ranking { table }
    }

    /// The item of highest probability at each position.
    pub fn top(&self) -> Vec<usize> {
        self.table
            .iter()
            .map(|row| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0))).map_or(0, |(i, _)| i))
            .collect()
    }
}

impl TargetPolicy<Impression> for Ranking {
    /// A position the ranking does not cover has no distribution (and is refused by `ope`).
    fn probabilities(&self, x: &Impression) -> Vec<f64> {
        x.position.checked_sub(1).and_then(|k| self.table.get(k)).cloned().unwrap_or_default()
    }
}

/// A draw from Beta(a, b), as Ga(a) / (Ga(a) + Ga(b)).
pub(super) fn beta_sample(a: f64, b: f64, rng: &mut impl Rng) -> f64 {
    let (x, y) = (gamma_sample(a, rng), gamma_sample(b, rng));
    if x + y > 0.0 { x / (x + y) } else { 0.5 }
}

/// A draw from Gamma(shape, 1): Marsaglia and Tsang's method (2000); below shape 1 by
/// `Ga(shape + 1) · U^(1/shape)`.
fn gamma_sample(shape: f64, rng: &mut impl Rng) -> f64 {
    if shape < 1.0 {
        return gamma_sample(shape + 1.0, rng) * rng.random::<f64>().powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal_sample(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u: f64 = rng.random();
        if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal_sample(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
