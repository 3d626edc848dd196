//! `kairos eval-push`: off-policy evaluation ([`crate::push::ope`]) on the Open Bandit
//! Dataset's logged recommendations, so that a new policy's value is estimated from logged
//! decisions before it is switched on.
//!
//! ## Protocol
//!
//! - The log of each (logging policy, campaign) is one CSV: the item shown, its position, the
//!   click and the propensity of that item at that position. A record's **action is the item
//!   at the record's position**, its context the position, its reward the click; a target is a
//!   ranking policy given by its marginals `π(item | position)` ([`learn::Ranking`]).
//! - Split: the midpoint of the `random` log's first and last timestamps, per campaign
//!   ("the first half of the week"). Nothing after it is used to learn.
//! - (a) The uniform policy is estimated on the whole `random` log (its own logging policy),
//!   DR with a click model cross-fitted on the two halves ([`learn::CrossFit`]).
//! - (b) A click model ([`learn::ClickModel`]) is fitted on the first half of `random`; two
//!   policies are learned from it, greedy and Thompson sampling, and estimated with the
//!   uniform policy on the second half, DR with that model. The `bts` log's observed click rate
//!   over the same second half is the value of the policy that was really switched on.
//! - (c) Every estimate comes with its effective sample size, the records its policy gives
//!   zero probability and the clicks that carry its weight.
//! - (d) The same policies estimated on the second half of the `bts` log, whose propensities
//!   are not uniform: a second, independent estimate.
//!
//! `docs/OFFPOLICY.md` is rewritten by every run; its sentences are computed from these results.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, ensure};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::push::frequency::fnv1a64;
use crate::push::ope::{Diagnostics, Estimate, Estimator, Evaluation, Interval, OpeError, Record, RewardModel, observed_mean};

pub mod data;
pub mod learn;
mod report;
#[cfg(test)]
mod tests;

pub use data::{CampaignLog, Impression};
pub use learn::{ClickModel, CrossFit, Ranking};

/// The logging policies of the dataset, as its folders name them.
pub const UNIFORM_LOG: &str = "random";
pub const THOMPSON_LOG: &str = "bts";

/// `kairos eval-push`: estimate push policies on logged decisions and write the report.
#[derive(clap::Args, Clone, Debug)]
pub struct EvalPushOptions {
    /// The Open Bandit Dataset folder: `random/{campaign}/{campaign}.csv.gz` and `bts/…`.
    #[arg(long, default_value = "../shared/datasets/open_bandit_dataset_small")]
    pub dataset: PathBuf,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "docs/OFFPOLICY.md")]
    pub out: PathBuf,
    /// Seed of the Thompson policy's draws and of the bootstrap resamples.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bootstrap resamples per estimate.
    #[arg(long, default_value_t = 2000)]
    pub resamples: usize,
    /// Monte Carlo draws that give the Thompson policy's probabilities.
    #[arg(long, default_value_t = 10_000)]
    pub draws: usize,
}

/// An estimate with its normal interval and its bootstrap interval, or why it is undefined.
pub type Figure = Result<(Estimate, Interval), OpeError>;

/// One policy estimated on one log.
#[derive(Clone, Debug)]
pub struct Row {
    pub policy: &'static str,
    /// IPS, SNIPS, DR.
    pub estimates: Vec<(Estimator, Figure)>,
    pub diagnostics: Diagnostics,
}

impl Row {
    pub fn get(&self, e: Estimator) -> Option<&(Estimate, Interval)> {
        self.estimates.iter().find(|(x, _)| *x == e).and_then(|(_, r)| r.as_ref().ok())
    }
}

/// What the log of one (logging policy, campaign) holds.
#[derive(Clone, Debug)]
pub struct LogFacts {
    pub file: PathBuf,
    pub rows: usize,
    pub items: usize,
    pub positions: usize,
    pub clicks: usize,
    pub first_ts: i64,
    pub last_ts: i64,
    pub min_propensity: f64,
    pub max_propensity: f64,
    /// Records whose propensity is exactly `1 / items`.
    pub uniform_propensities: usize,
}

impl LogFacts {
    fn of(log: &CampaignLog) -> Self {
        let p = log.impressions.iter().map(|i| i.propensity);
        LogFacts {
            file: log.file.clone(),
            rows: log.impressions.len(),
            items: log.items,
            positions: log.positions,
            clicks: log.clicks(),
            first_ts: log.first_ts(),
            last_ts: log.last_ts(),
            min_propensity: p.clone().fold(f64::INFINITY, f64::min),
            max_propensity: p.clone().fold(f64::NEG_INFINITY, f64::max),
            uniform_propensities: p.filter(|&x| x == 1.0 / log.items as f64).count(),
        }
    }
}

/// Everything measured on one campaign.
#[derive(Clone, Debug)]
pub struct CampaignResult {
    pub name: String,
    pub random: LogFacts,
    pub bts: LogFacts,
    /// Microseconds since the epoch: the first half is before it.
    pub split: i64,
    /// (a) The logged click rate of the whole `random` log, and the uniform policy's estimates.
    pub observed_all: Estimate,
    pub uniform_all: Row,
    /// (b) Records and clicks of the halves of `random`.
    pub train: (usize, usize),
    pub test: (usize, usize),
    pub model: ClickModel,
    /// (item, position) cells of the first half without a click.
    pub cells_without_click: usize,
    pub greedy: Ranking,
    pub thompson: Ranking,
    /// Uniform, greedy, Thompson on the second half of `random`.
    pub second_half: Vec<Row>,
    pub observed_random_second: Estimate,
    /// The `bts` log's own click rate over the second half, and its records.
    pub observed_bts_second: Estimate,
    pub bts_second_rows: usize,
    /// (d) Uniform, greedy, Thompson on the second half of `bts`.
    pub on_bts: Vec<Row>,
}

/// What `kairos eval-push` measured.
#[derive(Clone, Debug)]
pub struct EvalPushReport {
    pub opts: EvalPushOptions,
    pub campaigns: Vec<CampaignResult>,
    pub runtime_secs: f64,
    pub machine: String,
}

impl EvalPushReport {
    /// A plain-text summary for the terminal.
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        for c in &self.campaigns {
            let cell = |r: &Row, e| r.get(e).map_or_else(|| "  n/a ".to_owned(), |(x, _)| format!("{:.4}", x.value));
            lines.push(format!(
                "{:<6} logged {:.4} | second half: bts {:.4}, random {:.4} | DR uniform {} greedy {} thompson {}",
                c.name,
                c.observed_all.value,
                c.observed_bts_second.value,
                c.observed_random_second.value,
                cell(&c.second_half[0], Estimator::Dr),
                cell(&c.second_half[1], Estimator::Dr),
                cell(&c.second_half[2], Estimator::Dr),
            ));
        }
        lines.join("\n")
    }
}

/// `kairos eval-push`: reads the logs, estimates, writes the report.
pub fn run(opts: &EvalPushOptions) -> anyhow::Result<EvalPushReport> {
    let started = Instant::now();
    let names = data::campaigns(&opts.dataset, UNIFORM_LOG)?;
    ensure!(!names.is_empty(), "{} holds no campaign folders", opts.dataset.join(UNIFORM_LOG).display());
    let mut campaigns = Vec::new();
    for name in names {
        let random = data::read_campaign(&opts.dataset, UNIFORM_LOG, &name)?;
        let bts = data::read_campaign(&opts.dataset, THOMPSON_LOG, &name)?;
        campaigns.push(evaluate_campaign(&name, &random, &bts, opts).with_context(|| format!("campaign {name}"))?);
    }
    let report = EvalPushReport {
        opts: opts.clone(),
        campaigns,
        runtime_secs: started.elapsed().as_secs_f64(),
        machine: crate::tools::machine(),
    };
    crate::tools::write_report(&opts.out, &report::markdown(&report))?;
    Ok(report)
}

/// The whole protocol on one campaign's two logs (no file I/O).
pub fn evaluate_campaign(name: &str, random: &CampaignLog, bts: &CampaignLog, opts: &EvalPushOptions) -> anyhow::Result<CampaignResult> {
    ensure!(random.items == bts.items, "campaign {name}: {} items in random, {} in bts", random.items, bts.items);
    ensure!(random.positions <= random.items, "campaign {name}: {} positions for {} items", random.positions, random.items);
    let (items, positions) = (random.items, random.positions.max(bts.positions));
    let split = random.first_ts() + (random.last_ts() - random.first_ts()) / 2;
    let (train, test) = random.split(split);
    let (_, bts_test) = bts.split(split);
    // One seed per (campaign, estimate), so each figure is reproducible on its own.
    let seed = |what: &str| opts.seed ^ fnv1a64(format!("{name}/{what}").as_bytes());

    // (a) The uniform policy on its own log, DR cross-fitted.
    let uniform = Ranking::uniform(items, positions);
    let cross = CrossFit { split, early: ClickModel::fit(&train, items), late: ClickModel::fit(&test, items) };
    let uniform_all = estimate("uniform", &random.impressions, &uniform, &cross, opts.resamples, seed("a/uniform"))?;
    let observed_all = observed_mean(&rewards(&random.impressions))?;

    // (b) Learned on the first half, estimated on the second.
    let model = ClickModel::fit(&train, items);
    let greedy = Ranking::greedy(&model, positions);
    let thompson = Ranking::thompson(&model, positions, opts.draws, &mut SmallRng::seed_from_u64(seed("thompson")));
    let policies = [("uniform", &uniform), ("greedy", &greedy), ("Thompson", &thompson)];
    let mut second_half = Vec::new();
    let mut on_bts = Vec::new();
    for (label, policy) in policies {
        second_half.push(estimate(label, &test, policy, &model, opts.resamples, seed(&format!("b/{label}")))?);
        // (d) The same on the `bts` log's second half.
        on_bts.push(estimate(label, &bts_test, policy, &model, opts.resamples, seed(&format!("d/{label}")))?);
    }
    let clicked: std::collections::HashSet<(usize, usize)> =
        train.iter().filter(|i| i.click).map(|i| (i.item, i.position)).collect();
    let count = |v: &[Impression]| (v.len(), v.iter().filter(|i| i.click).count());
    Ok(CampaignResult {
        name: name.to_owned(),
        random: LogFacts::of(random),
        bts: LogFacts::of(bts),
        split,
        observed_all,
        uniform_all,
        train: count(&train),
        test: count(&test),
        observed_random_second: observed_mean(&rewards(&test))?,
        observed_bts_second: observed_mean(&rewards(&bts_test))?,
        bts_second_rows: bts_test.len(),
        model,
        cells_without_click: items * positions - clicked.len(),
        greedy,
        thompson,
        second_half,
        on_bts,
    })
}

fn rewards(impressions: &[Impression]) -> Vec<f64> {
    impressions.iter().map(|i| f64::from(u8::from(i.click))).collect()
}

/// The log as `ope` records: the item at the record's position, its click, its propensity.
pub fn records(impressions: &[Impression]) -> Vec<Record<Impression>> {
    impressions
        .iter()
        .map(|i| Record { context: *i, action: i.item, reward: f64::from(u8::from(i.click)), propensity: i.propensity })
        .collect()
}

/// IPS, SNIPS and DR of `policy` on `impressions` with normal and bootstrap intervals (the
/// three estimators see the same resamples, drawn from `seed`). A bad log is an error; an
/// estimator that is undefined on it (SNIPS without support) is kept as its reason.
fn estimate(
    policy: &'static str,
    impressions: &[Impression],
    target: &Ranking,
    model: &impl RewardModel<Impression>,
    resamples: usize,
    seed: u64,
) -> anyhow::Result<Row> {
    let ev = Evaluation::with_model(&records(impressions), target, model)?;
    let estimates = Estimator::ALL
        .iter()
        .map(|&e| {
            let boot = |x| Ok((x, ev.bootstrap(e, resamples, &mut SmallRng::seed_from_u64(seed))?));
            (e, ev.estimate(e).and_then(boot))
        })
        .collect();
    Ok(Row { policy, estimates, diagnostics: ev.diagnostics() })
}
