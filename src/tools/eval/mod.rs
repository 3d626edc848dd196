//! Offline evaluation (`kairos eval`): replays a real behaviour log, in time order, through the
//! same profile and scoring code the service runs, and measures how well it predicts each
//! add-to-cart and purchase *before* seeing it.
//!
//! ## Protocol
//!
//! - Events are sorted by timestamp; ties keep file order. Each event is, in this order:
//!   1. if it is a target (`cart` or `buy`): every variant is asked for the user's top-K at
//!      the event's time, from what has been observed so far, and the target item (and its
//!      category) is looked up in the answer;
//!   2. then observed: its item enters the catalogue (`Catalog::upsert`, category path
//!      `[category_id]`, no brand), `Stats` counts it (`Observation`, weighted by the
//!      configured kind weight, context keys from the timestamp in UTC+8), and it is
//!      appended to the user's history.
//!
//!   So a query sees only events before it (ties: earlier in the file), and only items and
//!   categories that have appeared before it. Nothing from the future is used: not the
//!   user's later events, not later popularity or co-occurrence, not even the existence of
//!   an item that has not yet appeared (the test at the bottom checks this).
//! - kairos variants call [`crate::rank::profile::InterestVector::build`] and
//!   [`crate::rank::scoring::rank`] exactly as `recommend::Engine::recommend` does; only the decay
//!   and the scoring constants differ between them.
//! - Baselines: global popularity and recent popularity (both `Stats` trending), and the
//!   yardstick of DESIGN.md ("reference": the user's own items by kind-weighted decayed sum,
//!   then items by decayed popularity), implemented here independently of kairos' code with
//!   exact (unbucketed) decay.
//! - Metrics: HR@K, NDCG@K and MRR@K (one relevant item per target) for K ∈ {5, 10, 20},
//!   catalogue coverage and category diversity of the top 10, at item level and at category
//!   level. See `docs/EVALUATION.md`, which `kairos eval` regenerates.


use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, FixedOffset, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use crate::rank::catalog::{CatIdx, Catalog, IdxMap, IdxSet, ItemIdx, StrMap};
use crate::config::{ConfigSource, Settings, Tuning};
use crate::rank::context::{RequestContext, event_keys};
use crate::rank::decay::Decay;
use crate::domain::{Event, EventContext, EventProps, Item};
use crate::rank::profile::{InterestVector, ProfileParams};
use crate::rank::scoring::{Request, ScoringConfig, Scorer, SeqQuery};
use crate::rank::stats::{Observation, Segment, Stats};
use crate::tools::machine;

mod log;
mod metrics;
mod plot;
mod replay;
mod report;
mod retrain;
#[cfg(test)]
mod tests;
mod variants;

pub use log::*;
pub use metrics::*;
use replay::*;
pub use retrain::{Run, Schedule};
pub use variants::*;


/// The cut-offs reported.
pub const KS: [usize; 3] = [5, 10, 20];
/// The longest list scored.
pub(super) const MAX_K: usize = 20;
/// Coverage and diversity are measured on the top this many.
pub(super) const LIST_K: usize = 10;
/// Items asked of `rank` per query: the top 20 are scored, all of them feed the category list.
pub(super) const RANKED_ITEMS: usize = 100;
/// Local time of the Taobao platform: China Standard Time.
pub(super) const LOCAL_UTC_OFFSET_SECS: i32 = 8 * 3600;
/// File name of the sample inside its folder.
pub(super) const SAMPLE_FILE: &str = "UserBehavior_sample.csv.gz";

/// `kairos eval`: replay a behaviour log and write the report.
#[derive(clap::Args, Clone, Debug)]
pub struct EvalOptions {
    /// The Taobao UserBehavior log: a folder holding `UserBehavior_sample.csv.gz`, or a
    /// `.csv` / `.csv.gz` file (columns user_id,item_id,category_id,behavior_type,timestamp).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "docs/EVALUATION.md")]
    pub out: PathBuf,
    /// Where to write the plot of NDCG@10 against the half-life (PNG).
    #[arg(long, default_value = "docs/eval_ndcg_half_life.png")]
    pub plot: PathBuf,
    /// Directory holding `default.toml`, whose `[tuning]` is the "default" row. Taken from the
    /// global `--config-dir`.
    #[arg(skip = PathBuf::from("config"))]
    pub config_dir: PathBuf,
    /// Hours of log time between two retrainings of the learned ranker inside the replay
    /// (default: `tuning.model.retrain_every_hours`, 24 as shipped).
    #[arg(long)]
    pub retrain_every_hours: Option<f64>,
    /// Only the rows whose name contains one of these (comma-separated), for a quick look;
    /// the written report then holds only those rows.
    #[arg(long, value_delimiter = ',')]
    pub rows: Vec<String>,
}


/// What `kairos eval` measured.
#[derive(Clone, Debug)]
pub struct EvalReport {
    pub dataset: PathBuf,
    pub facts: LogFacts,
    pub results: Vec<VariantResult>,
    /// The replay's retrainings and the models they deployed.
    pub schedule: Schedule,
    pub retrain_every_hours: f64,
    /// The tuning evaluated as "default", and the configuration layers it was read from.
    pub tuning: Tuning,
    pub layers: Vec<String>,
    pub threads: usize,
    pub runtime_secs: f64,
    pub machine: String,
}

impl EvalReport {
    /// The row with this name.
    pub fn row(&self, name: &str) -> Option<&VariantResult> {
        self.results.iter().find(|r| r.name == name)
    }

    /// The headline rows as a plain-text table (for the terminal).
    pub fn headline(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<46} {:>7} {:>8} {:>7} | {:>9} {:>10}",
            "", "HR@10", "NDCG@10", "MRR@20", "cat HR@10", "cat NDCG@10"
        );
        for r in self.results.iter().filter(|r| r.group == Group::Headline) {
            let _ = writeln!(
                s,
                "{:<46} {:>7.3} {:>8.3} {:>7.3} | {:>9.3} {:>10.3}",
                r.name,
                r.item.hr_at(10),
                r.item.ndcg_at(10),
                r.item.mrr_at(20),
                r.category.hr_at(10),
                r.category.ndcg_at(10)
            );
        }
        for run in &self.schedule.runs {
            if let Some(r) = &run.report {
                let _ = writeln!(
                    s,
                    "retrain {} {}: {} train / {} held out (learnable {} of {}), {} epochs, held-out NDCG@10 {:.3} vs hand-set {:.3}{}, {:.1} s",
                    run.at.format("%m-%d %H:%M"),
                    run.outcome,
                    r.train_examples,
                    r.holdout_examples,
                    r.learnable,
                    r.targets,
                    r.epochs,
                    r.holdout_ndcg,
                    r.holdout_ndcg_handset,
                    r.holdout_ndcg_deployed.map_or(String::new(), |d| format!(", deployed {d:.3}")),
                    run.secs
                );
            }
        }
        for run in &self.schedule.sequence.runs {
            let _ = writeln!(
                s,
                "sequence {} {}: {} targets, {} items, loss {:?}, {:.1} s, {} bytes; ranker with it {}{}",
                run.at.format("%m-%d %H:%M"),
                run.outcome,
                run.report.as_ref().map_or(0, |r| r.targets),
                run.report.as_ref().map_or(0, |r| r.items),
                run.report.as_ref().map(|r| r.losses.iter().map(|l| (l * 1000.0).round() / 1000.0).collect::<Vec<_>>()),
                run.secs,
                run.bytes,
                run.ranker.outcome,
                run.ranker.report.as_ref().map_or(String::new(), |r| format!(" (held-out NDCG@10 {:.3} vs hand-set {:.3})", r.holdout_ndcg, r.holdout_ndcg_handset)),
            );
        }
        let _ = write!(
            s,
            "{} targets, {} variants, {:.0} s on {} threads",
            self.facts.targets,
            self.results.len(),
            self.runtime_secs,
            self.threads
        );
        s
    }
}

/// Loads the tuning as the service would from `config_dir`: `default.toml`, then
/// `{KAIROS_ENV}.toml`, `local.toml` and `KAIROS__*` variables. Returns it with the layers read.
pub fn load_tuning(config_dir: &Path) -> anyhow::Result<(Tuning, Vec<String>)> {
    let source = ConfigSource::from_env(config_dir);
    let settings = Settings::load(&source).with_context(|| format!("invalid configuration in {}", config_dir.display()))?;
    Ok((settings.tuning, source.layers()))
}

/// `kairos eval`: replays the log, writes the report and the plot, returns what it measured.
pub fn run(opts: &EvalOptions) -> anyhow::Result<EvalReport> {
    let started = Instant::now();
    let (tuning, layers) = load_tuning(&opts.config_dir)?;
    for b in [Behaviour::Pv, Behaviour::Fav, Behaviour::Cart, Behaviour::Buy] {
        if !tuning.kinds.contains_key(b.kind()) {
            bail!("tuning.kinds.{} is not configured (the log's {:?} events map to it)", b.kind(), b);
        }
    }
    let log = read_log(&opts.dataset)?;
    if log.is_empty() {
        bail!("{} holds no events", opts.dataset.display());
    }
    let facts = log_facts(&log);
    let mut variants = variants(&tuning);
    if !opts.rows.is_empty() {
        variants.retain(|v| opts.rows.iter().any(|r| v.name.contains(r.as_str())));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let progress = ProgressBar::new((facts.targets * variants.len()) as u64).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {percent:>3}% {human_pos}/{human_len} queries, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let every = opts.retrain_every_hours.unwrap_or(tuning.model.retrain_every_hours);
    let (results, schedule) = evaluate(&log, &tuning, &variants, every, threads, &progress);
    progress.finish_and_clear();
    let report = EvalReport {
        dataset: opts.dataset.clone(),
        results,
        schedule,
        retrain_every_hours: every,
        facts,
        tuning,
        layers,
        threads,
        runtime_secs: started.elapsed().as_secs_f64(),
        machine: machine(),
    };
    report::write(&report, &opts.out, &opts.plot)?;
    Ok(report)
}
