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
use crate::push::frequency::response::{self as push_response, RecentLog, ResponseExample, ResponseFeatures, ResponseModel as PushResponseModel};
use crate::rank::profile::{InterestVector, ProfileParams};
use crate::rank::scoring::{Request as ScoringRequest, Scorer};
use crate::rank::stats::{Observation, Stats};


mod learned;
mod params;
mod render;
mod replay;
mod report;
#[cfg(test)]
mod tests;
mod world;

pub use params::*;
pub use replay::*;
pub use report::*;
use world::*;

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
    let settings = Settings::load(&ConfigSource::from_env(&opts.config_dir))
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
    crate::tools::write_report(&opts.out, &report.to_markdown())?;
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

    let mut arms: Vec<(String, Policy)> = vec![
        ("adaptive (kairos hand-set policy)".into(), Policy::Adaptive),
        ("learned (kairos expected-value policy)".into(), Policy::Learned),
    ];
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
                reached: false,
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
        examples: Vec::new(),
        example_of: HashMap::new(),
        response: None,
        response_note: None,
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

    let warmup_exploration = params.learned.warmup_exploration_rate;
    let sim = Sim { tz, cfg, truth: &truth, user_ids: &data.user_ids, measured_from, measured_to, arms: &arms, warmup_exploration };
    // Every pushing arm starts at the push warm-up; only the measured period is counted.
    let push_from = params.push_from(start);
    let mut queue = Queue { heap: BinaryHeap::new(), seq: 0 };
    for (w, world) in worlds.iter().enumerate() {
        match &arms[world.arm].1 {
            Policy::Adaptive => (0..n_users).for_each(|u| queue.push(push_from, w, u, Action::Decide)),
            Policy::Learned => {
                (0..n_users).for_each(|u| queue.push(push_from, w, u, Action::Decide));
                // Trained at the end of the warm-up, then every day on the feedback so far, as the
                // service's trainer retrains.
                let mut t = measured_from;
                while t < measured_to {
                    queue.push(t, w, 0, Action::Train);
                    t += TimeDelta::days(1);
                }
            }
            Policy::Fixed { hours, every_days } => {
                let first = sim.next_fixed(hours, *every_days, push_from - TimeDelta::seconds(1));
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
        let turn = Turn { world: s.world, user: s.user, at: s.at };
        match s.action {
            Action::Decide => sim.decide(world, turn, &replay, &mut ranker, &mut queue),
            Action::FixedSend => sim.fixed_send(world, turn, &replay, &mut ranker, &mut queue),
            Action::Train => learned::train_response(world, s.at, cfg),
            Action::Feedback { push_id, item_id, kind } => {
                if let Some(&n) = world.example_of.get(&push_id) {
                    let e = &mut world.examples[n];
                    match kind {
                        FeedbackKind::Opened | FeedbackKind::Clicked => e.opened = true,
                        FeedbackKind::Converted => (e.opened, e.converted) = (true, true),
                        FeedbackKind::Unsubscribed => e.unsubscribed = true,
                        _ => {}
                    }
                }
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
    let adaptive_decisions = learned::decisions(&worlds, &arms, Policy::Adaptive);
    let learned_decisions = learned::decisions(&worlds, &arms, Policy::Learned);
    let learned_model = worlds
        .iter()
        .find(|w| w.variant.is_none() && arms[w.arm].1 == Policy::Learned)
        .and_then(|w| w.response_note.clone());
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
        learned_decisions,
        learned_model,
        adaptive_frequency,
        params: params.clone(),
        frequency: cfg.clone(),
        rankings: ranker.calls,
        rankings_memoised: ranker.hits,
        runtime: started.elapsed(),
        command: String::new(),
    })
}
