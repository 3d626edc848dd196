//! Learning the ranker from a shop's own log.
//!
//! The parts are kept apart, as RecBole and LensKit do:
//! - **data** (`examples`): the log's window is replayed in time order through the same
//!   statistics, profiles and candidate code as serving; at each cart or purchase the
//!   candidates the service would have produced at that moment become one example, the
//!   bought item the positive, the others the negatives;
//! - **model** (`crate::rank::ranker`): a linear score over standardised features;
//! - **trainer** (`fit`): listwise softmax cross-entropy, Adam on mini-batches of examples,
//!   early stop on the held-out last day, and the deployment rule: a new model is kept only
//!   if it beats the deployed one and the hand-set blend on that day;
//! - **evaluator**: `tools/eval` replays the log with retraining on the past only.
//!
//! Nothing here reads the store: the caller hands in the window's events.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Event, Item};
use crate::rank::decay::Decay;
use crate::rank::profile::KindWeights;
use crate::rank::ranker::Ranker;
use crate::rank::scoring::ScoringConfig;
use crate::rank::sequence::SequenceModel;

pub mod examples;
pub mod fit;

pub use examples::{Example, Examples};
pub use fit::{Fit, FitReport};

/// `[tuning.model]`: when and how the ranker is learned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Rank with the deployed learned model (false: always the hand-set blend).
    pub enabled: bool,
    /// Days of log a model is trained on (carts and purchases in the window; the statistics
    /// and histories are replayed from one scoring horizon earlier).
    pub train_window_days: f64,
    /// Hours between two trainings by the service's trainer (and by `kairos eval`'s replay).
    pub retrain_every_hours: f64,
    /// Event kinds that are the positives a model learns to predict.
    pub target_kinds: Vec<String>,
    /// The last this many days of the window are held out: early stop, and the deployment
    /// rule (the new model must beat the deployed one and the hand-set blend there).
    pub holdout_days: f64,
    /// Fewest training examples (targets whose item was among the candidates) to train on.
    pub min_examples: usize,
    /// Negatives kept per training example: half the strongest by the hand-set blend, half
    /// drawn at random from the rest.
    pub max_negatives: usize,
    /// Most passes over the training examples.
    pub max_epochs: usize,
    /// Adam step size.
    pub learning_rate: f64,
    /// L2 penalty on the weights.
    pub l2: f64,
    /// Most events of the window the service's trainer reads; beyond it, a fixed share of
    /// the users is kept (all of each kept user's events).
    pub max_events: usize,
    /// Seed of the trainer's random draws (negatives, order): the same log gives the same model.
    pub seed: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            enabled: true,
            train_window_days: 14.0,
            retrain_every_hours: 24.0,
            target_kinds: vec!["cart".into(), "purchase".into()],
            holdout_days: 1.0,
            min_examples: 50,
            max_negatives: 100,
            max_epochs: 30,
            learning_rate: 0.05,
            l2: 1e-4,
            max_events: 2_000_000,
            seed: 7,
        }
    }
}

impl ModelConfig {
    /// Checks every value; errors name the key under `model.`.
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in [
            ("train_window_days", self.train_window_days),
            ("retrain_every_hours", self.retrain_every_hours),
            ("holdout_days", self.holdout_days),
            ("learning_rate", self.learning_rate),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("model.{k} must be a finite number > 0 (got {v})"));
            }
        }
        if self.holdout_days >= self.train_window_days {
            return Err("model.holdout_days must be shorter than model.train_window_days".into());
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(format!("model.l2 must be >= 0 (got {})", self.l2));
        }
        if self.target_kinds.is_empty() {
            return Err("model.target_kinds must name at least one event kind".into());
        }
        if self.max_epochs == 0 || self.max_negatives == 0 || self.min_examples == 0 || self.max_events == 0 {
            return Err("model.max_epochs, model.max_negatives, model.min_examples and model.max_events must be >= 1".into());
        }
        Ok(())
    }

    fn window(&self) -> TimeDelta {
        TimeDelta::seconds((self.train_window_days * 86_400.0) as i64)
    }

    fn holdout(&self) -> TimeDelta {
        TimeDelta::seconds((self.holdout_days * 86_400.0) as i64)
    }
}

/// Everything training reads from the tuning.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    pub decay: &'a Decay,
    pub kinds: &'a KindWeights,
    pub scoring: &'a ScoringConfig,
    pub model: &'a ModelConfig,
    /// The sequence model in force, whose score becomes the examples' last feature (and whose
    /// nearest items join their candidates), as serving with it would see them.
    pub sequence: Option<&'a SequenceModel>,
    /// Items nearest to the sequence model's state added to the candidates.
    pub sequence_pool: usize,
}

/// The first event a training at `now` needs: one window plus one scoring horizon back.
pub fn replay_from(setup: &Setup<'_>, now: DateTime<Utc>) -> DateTime<Utc> {
    now - setup.model.window() - TimeDelta::seconds((setup.scoring.horizon_hours * 3600.0) as i64)
}

/// What a training run decided.
#[derive(Debug)]
pub enum Outcome {
    /// The new model beat the deployed one and the hand-set blend on the held-out day.
    Deploy(Box<Fit>),
    /// Trained, but not better on the held-out day: the deployed model stays.
    Keep(Box<Fit>),
    /// Not trained, and why (too little data, or a loss that was not finite).
    Skip(String),
}

/// Trains on `events` (the window: every event from [`replay_from`] up to `now`, in any
/// order) and decides whether the result replaces `deployed`. `item_of` gives the catalogue
/// data of an item id (an unknown item gets none: it has no category or brand); `zone`
/// gives an event's local UTC offset in seconds, for its context.
pub fn train(
    events: &[Event],
    item_of: &dyn Fn(&str) -> Option<Item>,
    zone: &dyn Fn(&Event) -> i32,
    setup: &Setup<'_>,
    deployed: Option<&Ranker>,
    now: DateTime<Utc>,
) -> Outcome {
    let started = std::time::Instant::now();
    let from = now - setup.model.window();
    let holdout_from = now - setup.model.holdout();
    let data = examples::build(events, item_of, zone, setup, from, now, holdout_from);
    fit::decide(&data, setup, deployed, holdout_from, started)
}
