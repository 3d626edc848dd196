//! The sequence model: self-attention over a shopper's last events (SASRec/TiSASRec family)
//! with time-interval and context embeddings, trained with sampled-softmax cross-entropy, on
//! CPU with candle. Pure: the caller hands in the events; `engine` stores and loads.
//!
//! - `tokens`: the bounded item table (the `max_items` most recently active items; any other
//!   item, or one newer than the model, reads as "outside the table" and is served by the
//!   item-to-item signals until the next training), event kinds, time buckets, context;
//! - `net`: the parameters and the graph (softmax and layer norm from primitives);
//! - `train`: windows, negatives, AdamW, warm start;
//! - `model`: the stored form, its checks, and inference (encoded history, state, scores,
//!   nearest items).

use serde::{Deserialize, Serialize};

pub mod model;
pub mod net;
pub mod tokens;
pub mod train;
#[cfg(test)]
mod tests;

pub use model::{Encoded, SequenceError, SequenceModel, FORMAT};
pub use tokens::Moment;
pub use train::{SequenceOutcome, SequenceReport, train};

/// `[tuning.sequence]`: the sequence model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequenceConfig {
    /// Train it with the ranker, and use it (a ranker feature and a candidate pool).
    pub enabled: bool,
    /// Most items in the embedding table: the most recently active of the window.
    pub max_items: usize,
    /// Width of every embedding and hidden vector.
    pub dim: usize,
    /// Self-attention blocks.
    pub blocks: usize,
    /// Last events of a user the model reads.
    pub max_len: usize,
    /// Items drawn from the table per batch as the negatives of the sampled softmax.
    pub negatives: usize,
    /// Passes over the window's sequences.
    pub epochs: usize,
    /// AdamW step size.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Sequences per AdamW step.
    pub batch: usize,
    /// Fewest next-item targets (in the table) to train on; fewer: the training is skipped.
    pub min_targets: usize,
    /// Items nearest to the user's state added to the candidates (0: no pool).
    pub candidates: usize,
    /// Seed of the initialisation and every draw: the same log gives the same model.
    pub seed: u64,
}

impl Default for SequenceConfig {
    fn default() -> Self {
        SequenceConfig {
            enabled: false,
            max_items: 20_000,
            dim: 32,
            blocks: 2,
            max_len: 50,
            negatives: 256,
            epochs: 5,
            lr: 0.003,
            weight_decay: 0.01,
            batch: 64,
            min_targets: 500,
            candidates: 50,
            seed: 11,
        }
    }
}

impl SequenceConfig {
    /// Checks every value; errors name the key under `sequence.`.
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in [
            ("max_items", self.max_items),
            ("dim", self.dim),
            ("blocks", self.blocks),
            ("max_len", self.max_len),
            ("negatives", self.negatives),
            ("epochs", self.epochs),
            ("batch", self.batch),
            ("min_targets", self.min_targets),
        ] {
            if v == 0 {
                return Err(format!("sequence.{k} must be >= 1"));
            }
        }
        if self.dim > 512 || self.blocks > 8 || self.max_len > 512 {
            return Err("sequence.dim must be <= 512, sequence.blocks <= 8 and sequence.max_len <= 512".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!("sequence.lr must be a finite number > 0 (got {})", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!("sequence.weight_decay must be >= 0 (got {})", self.weight_decay));
        }
        Ok(())
    }
}
