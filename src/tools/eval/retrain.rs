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
use crate::rank::sequence::{self, SequenceModel, SequenceOutcome, SequenceReport};

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

/// One training of the sequence model, and of the ranker that reads its score.
#[derive(Clone, Debug)]
pub struct SeqRun {
    pub at: DateTime<Utc>,
    /// `trained` or `skipped`.
    pub outcome: &'static str,
    pub reason: Option<String>,
    pub report: Option<SequenceReport>,
    /// Bytes of the stored model.
    pub bytes: usize,
    /// Seconds of the sequence model's training.
    pub secs: f64,
    /// The ranker trained with the sequence model in force, as `Run`.
    pub ranker: Run,
}

/// From a time on: the sequence model in force, and the ranker with its feature deployed then.
type SeqPoint = (DateTime<Utc>, Option<Arc<SequenceModel>>, Option<Arc<Ranker>>);

/// The sequence models over the replay, and the rankers trained with them.
#[derive(Clone, Debug, Default)]
pub struct SeqSchedule {
    /// In time order.
    points: Vec<SeqPoint>,
    pub runs: Vec<SeqRun>,
}

impl SeqSchedule {
    fn point(&self, now: DateTime<Utc>) -> Option<&SeqPoint> {
        let n = self.points.partition_point(|(t, _, _)| *t <= now);
        n.checked_sub(1).map(|i| &self.points[i])
    }

    /// The sequence model in force at `now`.
    pub fn model_at(&self, now: DateTime<Utc>) -> Option<&SequenceModel> {
        self.point(now).and_then(|p| p.1.as_deref())
    }

    /// The ranker trained with the sequence model deployed at `now`.
    pub fn ranker_at(&self, now: DateTime<Utc>) -> Option<&Ranker> {
        self.point(now).and_then(|p| p.2.as_deref())
    }

    pub fn last_model(&self) -> Option<&SequenceModel> {
        self.points.iter().rev().find_map(|p| p.1.as_deref())
    }
}

/// The models in force over the replay.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    /// (from, model deployed then), in time order.
    points: Vec<(DateTime<Utc>, Option<Arc<Ranker>>)>,
    pub runs: Vec<Run>,
    /// With the sequence model (empty when no variant uses it).
    pub sequence: SeqSchedule,
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
/// With `with_sequence`, also trains the sequence model at each retraining (warm-started from
/// the previous one, on the ranker's window) and a second ranker whose examples read the
/// sequence model in force until then, as the service's trainer does.
pub fn schedule(events: &[Event], items: &StrMap<String, Item>, tuning: &Tuning, every_hours: f64, with_sequence: bool, progress: &ProgressBar) -> Schedule {
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
    let (mut seq_model, mut seq_ranker): (Option<Arc<SequenceModel>>, Option<Arc<Ranker>>) = (None, None);
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
        if with_sequence {
            // The ranker first, on the examples the sequence model in force would have scored.
            let started = Instant::now();
            let seq_setup = learn::Setup { sequence: seq_model.as_deref(), ..setup };
            let seq_names = features::names_with(&kinds, seq_model.is_some());
            let (r_outcome, r_reason, r_report) = match learn::train(&events[from..to], &item_of, &zone, &seq_setup, seq_ranker.as_deref(), at) {
                Outcome::Deploy(fit) => {
                    seq_ranker = Some(Arc::new(Ranker::new(0, fit.params, &seq_names).expect("a fitted model has its features")));
                    ("deployed", None, Some(fit.report))
                }
                Outcome::Keep(fit) => ("kept", None, Some(fit.report)),
                Outcome::Skip(why) => ("skipped", Some(why), None),
            };
            let ranker = Run { at, outcome: r_outcome, reason: r_reason, report: r_report, secs: started.elapsed().as_secs_f64() };
            let started = Instant::now();
            let window_from = events.partition_point(|e| e.ts < at - TimeDelta::seconds((tuning.model.train_window_days * 86_400.0) as i64));
            let run = match sequence::train(&events[window_from..to], &zone, &tuning.sequence, seq_model.as_deref(), at) {
                SequenceOutcome::Trained(model, report) => {
                    let bytes = model.to_json().len();
                    seq_model = Some(Arc::from(model));
                    SeqRun { at, outcome: "trained", reason: None, report: Some(report), bytes, secs: started.elapsed().as_secs_f64(), ranker }
                }
                SequenceOutcome::Skip(why) => SeqRun { at, outcome: "skipped", reason: Some(why), report: None, bytes: 0, secs: started.elapsed().as_secs_f64(), ranker },
            };
            out.sequence.runs.push(run);
            out.sequence.points.push((at, seq_model.clone(), seq_ranker.clone()));
        }
        progress.inc(1);
        at += step;
    }
    out
}

/// The report's section on the sequence model: each training, its size and time, and the
/// ranker trained with it.
pub(super) fn sequence_section(w: &mut String, r: &super::EvalReport) {
    use std::fmt::Write as _;
    let runs = &r.schedule.sequence.runs;
    if runs.is_empty() {
        return;
    }
    let cfg = &r.tuning.sequence;
    let _ = writeln!(w, "\n## The sequence model\n");
    let trained: Vec<&SeqRun> = runs.iter().filter(|x| x.report.is_some()).collect();
    let secs: Vec<f64> = trained.iter().map(|x| x.secs).collect();
    let _ = writeln!(
        w,
        "Self-attention over each shopper's last {} events ({} blocks, width {}, at most {} items in its table), \
         sampled softmax over {} negatives, {} epochs per training, each warm-started from the previous model; retrained \
         with the ranker ({} trainings, {} skipped{}). A training took {:.1} s on average, {:.1} s at most \
         ({} threads available to candle). The ranker row \"with the sequence model\" is a second ranker whose examples read \
         the sequence model in force until its training (as the service's trainer does), and whose candidates include the \
         {} items nearest to the user's state.\n",
        cfg.max_len,
        cfg.blocks,
        cfg.dim,
        cfg.max_items,
        cfg.negatives,
        cfg.epochs,
        runs.len(),
        runs.len() - trained.len(),
        runs.iter().find_map(|x| x.reason.as_ref()).map_or_else(String::new, |why| format!(": {why}")),
        secs.iter().sum::<f64>() / secs.len().max(1) as f64,
        secs.iter().copied().fold(0.0, f64::max),
        r.threads,
        cfg.candidates,
    );
    let _ = writeln!(
        w,
        "| trained at (UTC) | outcome | users | targets | items | loss: first epoch → last | stored bytes | seconds | ranker with it: outcome | held-out NDCG@10 new / hand-set / in force |\n|---|---|---:|---:|---:|---|---:|---:|---|---|"
    );
    for run in runs {
        let (users, targets, items, loss) = run.report.as_ref().map_or((0, 0, 0, "–".to_string()), |rep| {
            let loss = format!("{:.3} → {:.3}", rep.losses.first().copied().unwrap_or(f64::NAN), rep.losses.last().copied().unwrap_or(f64::NAN));
            (rep.users, rep.targets, rep.items, loss)
        });
        let ranker = run.ranker.report.as_ref().map_or_else(
            || "–".to_string(),
            |rep| format!("{:.3} / {:.3} / {}", rep.holdout_ndcg, rep.holdout_ndcg_handset, rep.holdout_ndcg_deployed.map_or_else(|| "–".into(), |d| format!("{d:.3}"))),
        );
        let _ = writeln!(
            w,
            "| {} | {} | {users} | {targets} | {items} | {loss} | {} | {:.1} | {} | {ranker} |",
            run.at.format("%Y-%m-%d %H:%M"),
            run.outcome,
            run.bytes,
            run.secs,
            run.ranker.outcome,
        );
    }
    if let Some(m) = r.schedule.sequence.last_model() {
        let _ = writeln!(w, "\nThe last sequence model: {} parameters ({} items in its table).", m.size(), m.items().len());
    }
}
