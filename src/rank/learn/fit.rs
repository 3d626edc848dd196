//! The trainer: listwise softmax cross-entropy over each example's candidates,
//! `−ln(e^{s_pos} / Σ_j e^{s_j})` with `s = w · z` on standardised features `z`, minimised by
//! Adam on mini-batches of examples with an L2 penalty, stopped early when the held-out loss
//! stops falling; then the deployment rule.
//!
//! The weights start from the hand-set blend (only the `handset` feature weighs), so training
//! begins at the fallback's ranking and moves away from it only as far as the log supports.

use std::time::Instant;

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::{Example, Examples, Outcome, Setup};
use crate::rank::ranker::{FORMAT, Ranker, RankerParams};

/// Examples per Adam step.
const BATCH: usize = 32;
/// Epochs without a better held-out loss before training stops.
const PATIENCE: usize = 2;
/// Cut-off of the deployment rule's NDCG.
const NDCG_K: usize = 10;

/// What a training run measured (stored with the model).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FitReport {
    /// Target events in the window, and how many had their item among the candidates.
    pub targets: usize,
    pub learnable: usize,
    pub train_examples: usize,
    pub holdout_examples: usize,
    /// Epochs of the held-out loss's minimum.
    pub epochs: usize,
    /// Mean held-out cross-entropy of the new model.
    pub holdout_loss: f64,
    /// NDCG@10 on the held-out day (every target counts; a target not among the candidates
    /// scores 0): the new model, the hand-set blend, the deployed model.
    pub holdout_ndcg: f64,
    pub holdout_ndcg_handset: f64,
    pub holdout_ndcg_deployed: Option<f64>,
    pub train_secs: f64,
}

/// A trained model and how it was measured.
#[derive(Clone, Debug)]
pub struct Fit {
    pub params: RankerParams,
    pub report: FitReport,
}

/// Fits on `data` and applies the deployment rule against `deployed` and the hand-set blend.
pub fn decide(data: &Examples, setup: &Setup<'_>, deployed: Option<&Ranker>, _holdout_from: DateTime<Utc>, started: Instant) -> Outcome {
    let cfg = setup.model;
    let train: Vec<&Example> = data.learnable().filter(|e| !e.holdout).collect();
    let holdout: Vec<&Example> = data.list.iter().filter(|e| e.holdout).collect();
    let held_learnable: Vec<&Example> = holdout.iter().copied().filter(|e| e.positive.is_some()).collect();
    if train.len() < cfg.min_examples {
        return Outcome::Skip(format!(
            "{} training examples (carts or purchases whose item was among the candidates) before the held-out day; at least {} are needed",
            train.len(),
            cfg.min_examples
        ));
    }
    if held_learnable.is_empty() {
        return Outcome::Skip("no held-out example whose item was among the candidates: nothing to judge a model by".into());
    }
    let (mean, scale) = standardisation(&train, data.width);
    let mut trainer = Trainer::new(data.width, &mean, &scale, cfg.learning_rate, cfg.l2);
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let (mut best, mut best_loss, mut best_epoch) = (trainer.w.clone(), trainer.loss(&held_learnable), 0);
    let mut order: Vec<&Example> = train.clone();
    for epoch in 1..=cfg.max_epochs {
        order.shuffle(&mut rng);
        trainer.epoch(&order);
        let loss = trainer.loss(&held_learnable);
        if !loss.is_finite() {
            return Outcome::Skip(format!("the held-out loss is not finite after epoch {epoch}: training diverged"));
        }
        if loss < best_loss - 1e-6 {
            (best, best_loss, best_epoch) = (trainer.w.clone(), loss, epoch);
        } else if epoch - best_epoch >= PATIENCE {
            break;
        }
    }
    let params = |w: &[f64]| RankerParams {
        format: FORMAT.into(),
        features: data.names.clone(),
        mean: mean.iter().map(|&x| x as f32).collect(),
        scale: scale.iter().map(|&x| x as f32).collect(),
        weights: w.iter().map(|&x| x as f32).collect(),
    };
    let candidate = Ranker::new(0, params(&best), &data.names).expect("a fitted model has the data's features");
    // A deployed model whose features are a prefix of these (one trained without the sequence
    // model's column) is judged on the same rows: its score reads only its own columns.
    let deployed = deployed.filter(|d| data.names.starts_with(d.features()));
    let mut report = FitReport {
        targets: data.list.len(),
        learnable: data.learnable().count(),
        train_examples: train.len(),
        holdout_examples: holdout.len(),
        epochs: best_epoch,
        holdout_loss: best_loss,
        holdout_ndcg: ndcg(&holdout, |r| candidate.score(r), data.width),
        holdout_ndcg_handset: ndcg(&holdout, |r| f64::from(r[0]), data.width),
        holdout_ndcg_deployed: deployed.map(|d| ndcg(&holdout, |r| d.score(r), data.width)),
        train_secs: 0.0,
    };
    let beats = report.holdout_ndcg > report.holdout_ndcg_handset && report.holdout_ndcg_deployed.is_none_or(|d| report.holdout_ndcg > d);
    if beats {
        // The rule passed: refit on the whole window (the held-out day is the most recent, and
        // the most telling) for as many epochs as the held-out minimum took.
        let all: Vec<&Example> = data.learnable().collect();
        let mut refit = Trainer::new(data.width, &mean, &scale, cfg.learning_rate, cfg.l2);
        let mut order = all.clone();
        for _ in 0..best_epoch.max(1) {
            order.shuffle(&mut rng);
            refit.epoch(&order);
        }
        report.train_secs = started.elapsed().as_secs_f64();
        Outcome::Deploy(Box::new(Fit { params: params(&refit.w), report }))
    } else {
        report.train_secs = started.elapsed().as_secs_f64();
        Outcome::Keep(Box::new(Fit { params: params(&best), report }))
    }
}

/// Per feature, the mean and spread over the training rows (spread 1 for a constant).
fn standardisation(train: &[&Example], width: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut sum, mut sq, mut n) = (vec![0.0f64; width], vec![0.0f64; width], 0.0f64);
    for e in train {
        for row in e.rows.chunks_exact(width) {
            for (k, &x) in row.iter().enumerate() {
                sum[k] += f64::from(x);
                sq[k] += f64::from(x) * f64::from(x);
            }
            n += 1.0;
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n.max(1.0)).collect();
    let scale = sq.iter().zip(&mean).map(|(q, m)| (q / n.max(1.0) - m * m).max(0.0).sqrt()).map(|s| if s > 1e-6 { s } else { 1.0 }).collect();
    (mean, scale)
}

/// NDCG@10 of `score` over `examples`: the positive's rank among all rows (ties against it),
/// 0 for an example without a positive.
pub fn ndcg(examples: &[&Example], score: impl Fn(&[f32]) -> f64, width: usize) -> f64 {
    if examples.is_empty() {
        return 0.0;
    }
    let total: f64 = examples
        .iter()
        .filter_map(|e| {
            let p = e.positive?;
            let rows: Vec<&[f32]> = e.rows.chunks_exact(width).collect();
            let s = score(rows[p]);
            let rank = 1 + rows.iter().enumerate().filter(|&(n, r)| n != p && score(r) >= s).count();
            (rank <= NDCG_K).then(|| 1.0 / ((rank + 1) as f64).log2())
        })
        .sum();
    // `+ 0.0`: a sum of nothing is −0.0.
    total / examples.len() as f64 + 0.0
}

/// Adam on the listwise loss, in standardised feature space.
struct Trainer<'a> {
    w: Vec<f64>,
    mean: &'a [f64],
    scale: &'a [f64],
    lr: f64,
    l2: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl<'a> Trainer<'a> {
    fn new(width: usize, mean: &'a [f64], scale: &'a [f64], lr: f64, l2: f64) -> Self {
        let mut w = vec![0.0; width];
        // Start at the hand-set ranking: the `handset` feature (first) with its own scale.
        w[0] = scale[0];
        Trainer { w, mean, scale, lr, l2, m: vec![0.0; width], v: vec![0.0; width], t: 0 }
    }

    fn z(&self, row: &[f32], out: &mut [f64]) {
        for (k, &x) in row.iter().enumerate() {
            out[k] = (f64::from(x) - self.mean[k]) / self.scale[k];
        }
    }

    /// Adds the example's loss gradient to `grad`; returns its loss.
    fn example(&self, e: &Example, grad: Option<&mut [f64]>) -> f64 {
        let width = self.w.len();
        let p = e.positive.expect("learnable examples only");
        let n = e.rows.len() / width;
        let mut zs = vec![0.0; n * width];
        let mut scores = Vec::with_capacity(n);
        for (j, row) in e.rows.chunks_exact(width).enumerate() {
            let z = &mut zs[j * width..(j + 1) * width];
            self.z(row, z);
            scores.push(z.iter().zip(&self.w).map(|(a, b)| a * b).sum::<f64>());
        }
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
        let loss = max + sum.ln() - scores[p];
        if let Some(grad) = grad {
            for (j, s) in scores.iter().enumerate() {
                let coef = (s - max).exp() / sum - f64::from(u8::from(j == p));
                for (g, z) in grad.iter_mut().zip(&zs[j * width..(j + 1) * width]) {
                    *g += coef * z;
                }
            }
        }
        loss
    }

    /// Mean loss over `examples`.
    fn loss(&self, examples: &[&Example]) -> f64 {
        examples.iter().map(|e| self.example(e, None)).sum::<f64>() / examples.len().max(1) as f64
    }

    /// One pass over `examples` in mini-batches.
    fn epoch(&mut self, examples: &[&Example]) {
        let width = self.w.len();
        for batch in examples.chunks(BATCH) {
            let mut grad = vec![0.0; width];
            for e in batch {
                self.example(e, Some(&mut grad));
            }
            self.t += 1;
            let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
            for (k, g) in grad.iter().enumerate() {
                let g = g / batch.len() as f64 + self.l2 * self.w[k];
                self.m[k] = b1 * self.m[k] + (1.0 - b1) * g;
                self.v[k] = b2 * self.v[k] + (1.0 - b2) * g * g;
                let mh = self.m[k] / (1.0 - b1.powi(self.t));
                let vh = self.v[k] / (1.0 - b2.powi(self.t));
                self.w[k] -= self.lr * mh / (vh.sqrt() + eps);
            }
        }
    }
}
