//! The replay's retraining: the learned ranker is trained exactly as the service's trainer
//! would (`rank::learn::train`, same window, same deployment rule), every
//! `retrain_every_hours` of log time, on the events before that moment only. A question at
//! time `t` is answered by the model deployed at the last retraining at or before `t`.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use indicatif::ProgressBar;

use crate::config::Tuning;
use crate::domain::{Event, Item};
use crate::rank::features;
use crate::rank::learn::{self, FitReport, Outcome};
use crate::rank::ranker::Ranker;

use super::{LOCAL_UTC_OFFSET_SECS, StrMap};

/// What one retraining did.
#[derive(Clone, Debug)]
pub struct Run {
    pub at: DateTime<Utc>,
    /// `deployed`, `kept` (trained, not better on the held-out day) or `skipped`.
    pub outcome: &'static str,
    /// Why it was skipped, or the deployment rule's figures.
    pub reason: Option<String>,
    pub report: Option<FitReport>,
    pub secs: f64,
}

/// The models in force over the replay.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    /// (from, model deployed then), in time order.
    points: Vec<(DateTime<Utc>, Option<Arc<Ranker>>)>,
    pub runs: Vec<Run>,
}

impl Schedule {
    /// The model deployed at `now` (none before the first deployment).
    pub fn at(&self, now: DateTime<Utc>) -> Option<&Ranker> {
        let n = self.points.partition_point(|(t, _)| *t <= now);
        n.checked_sub(1).and_then(|i| self.points[i].1.as_deref())
    }

    /// The last model deployed.
    pub fn last(&self) -> Option<&Ranker> {
        self.points.iter().rev().find_map(|(_, m)| m.as_deref())
    }
}

/// Retrains every `every_hours` of log time from the first local midnight after the first
/// event. `events` is the whole log in time order; `items` each item's catalogue data.
pub fn schedule(events: &[Event], items: &StrMap<String, Item>, tuning: &Tuning, every_hours: f64, progress: &ProgressBar) -> Schedule {
    let (Some(first), Some(last)) = (events.first(), events.last()) else { return Schedule::default() };
    let kinds = tuning.kind_weights();
    let setup = tuning.training_setup(&kinds);
    let names = features::names(&kinds);
    let offset = i64::from(LOCAL_UTC_OFFSET_SECS);
    let day = (first.ts.timestamp() + offset).div_euclid(86_400) * 86_400 - offset + 86_400;
    let step = TimeDelta::seconds((every_hours * 3600.0).max(60.0) as i64);
    let mut at = DateTime::from_timestamp(day, 0).unwrap_or(first.ts);
    let item_of = |id: &str| items.get(id).cloned();
    let zone = |_: &Event| LOCAL_UTC_OFFSET_SECS;
    let mut out = Schedule::default();
    let mut deployed: Option<Arc<Ranker>> = None;
    while at <= last.ts {
        let started = Instant::now();
        let from = events.partition_point(|e| e.ts < learn::replay_from(&setup, at));
        let to = events.partition_point(|e| e.ts < at);
        let (outcome, reason, report) = match learn::train(&events[from..to], &item_of, &zone, &setup, deployed.as_deref(), at) {
            Outcome::Deploy(fit) => {
                let model = Ranker::new(0, fit.params, &names).expect("a fitted model has this build's features");
                deployed = Some(Arc::new(model));
                ("deployed", None, Some(fit.report))
            }
            Outcome::Keep(fit) => ("kept", None, Some(fit.report)),
            Outcome::Skip(why) => ("skipped", Some(why), None),
        };
        out.points.push((at, deployed.clone()));
        out.runs.push(Run { at, outcome, reason, report, secs: started.elapsed().as_secs_f64() });
        progress.inc(1);
        at += step;
    }
    out
}
