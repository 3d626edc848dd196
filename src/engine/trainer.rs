//! The trainer: a background task of every replica, of which one at a time trains (a lease
//! row in the store). Every `tuning.model.retrain_every_hours` (and on demand: `kairos
//! train`, `POST /v1/admin/models/train`) it reads the window of the log, trains on a
//! blocking thread (one training per replica at a time, so serving keeps the other cores),
//! stores the model with what it measured, and when the deployment rule passed makes it the
//! model in force, which every replica then loads at its next refresh.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Engine;
use super::models::{PUSH_RESPONSE, RANKER, SEQUENCE};
use crate::clock::Clock;
use crate::config::LiveTuning;
use crate::domain::Event;
use crate::push::frequency::response::{self as push_response, FitSettings, ResponseExample};
use crate::rank::learn::{self, FitReport, Outcome};
use crate::rank::ranker::Ranker;
use crate::rank::sequence::{self, SequenceOutcome};
use crate::store::{NewModel, PushOutcomeRow, Store, StoreResult};

/// How often a replica checks whether a training is due.
const CHECK_EVERY: Duration = Duration::from_secs(60);
/// The lease a training holds; longer than any training should take.
const LEASE: TimeDelta = TimeDelta::hours(2);
const LEASE_NAME: &str = "trainer";
/// Events read per query of the window.
const PAGE: i64 = 20_000;

/// What a training run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Trained, beat the model in force and the hand-set blend on the held-out day: in force now.
    Deployed,
    /// Trained and stored, but not better on the held-out day: the model in force stays.
    Kept,
    /// Not trained (too little data, or training diverged): see `reason`.
    Skipped,
    /// Another training holds the lease (on this or another replica).
    Busy,
}

/// One training run, as `GET /v1/admin/models` shows the last one of this replica.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrainingRun {
    pub started_at: DateTime<Utc>,
    pub outcome: RunOutcome,
    /// The stored model's version (deployed or kept).
    pub version: Option<i64>,
    pub reason: Option<String>,
    /// The events of the window read, and how many were kept (users sampled beyond
    /// `tuning.model.max_events`).
    pub events_read: usize,
    pub events_used: usize,
    /// What the fit measured; `null` when nothing was fitted.
    #[schema(value_type = Option<Object>)]
    pub report: Option<FitReport>,
    /// The sequence model's training in the same run (`tuning.sequence.enabled`): its outcome
    /// (`deployed` or `skipped`), version, reason and report; `null` when it is off.
    #[schema(value_type = Option<Object>)]
    pub sequence: Option<serde_json::Value>,
    pub secs: f64,
    /// The push-response model's training in the same run (`null` when the run was busy).
    pub push_response: Option<ResponseRun>,
}

/// The push-response model's part of a training run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResponseRun {
    /// `deployed` (in force now) or `skipped` (see `reason`; the model in force stays).
    pub outcome: RunOutcome,
    pub version: Option<i64>,
    pub reason: Option<String>,
    /// Fetched pushes of the window with recorded features, and how many were trained on
    /// (settled, with features this build reads).
    pub pushes_read: usize,
    pub pushes_used: usize,
}

pub struct Trainer {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    tuning: Arc<LiveTuning>,
    clock: Clock,
    holder: Uuid,
    /// One training at a time on this replica.
    busy: tokio::sync::Mutex<()>,
    last: Mutex<Option<TrainingRun>>,
}

impl Trainer {
    pub fn new(engine: Arc<Engine>, store: Arc<dyn Store>, tuning: Arc<LiveTuning>, clock: Clock) -> Self {
        Trainer { engine, store, tuning, clock, holder: Uuid::new_v4(), busy: tokio::sync::Mutex::new(()), last: Mutex::new(None) }
    }

    /// The last run of this replica.
    pub fn last_run(&self) -> Option<TrainingRun> {
        self.last.lock().expect("trainer lock").clone()
    }

    /// Trains now (unless a training is already running here or elsewhere).
    pub async fn train_now(&self) -> StoreResult<TrainingRun> {
        let started_at = self.clock.now();
        let busy = |reason: &str| TrainingRun {
            started_at,
            outcome: RunOutcome::Busy,
            version: None,
            reason: Some(reason.to_string()),
            events_read: 0,
            events_used: 0,
            report: None,
            sequence: None,
            secs: 0.0,
            push_response: None,
        };
        let Ok(_one) = self.busy.try_lock() else { return Ok(busy("a training is running on this replica")) };
        if !self.store.try_lease(LEASE_NAME, self.holder, started_at + LEASE, started_at).await? {
            return Ok(busy("another replica is training"));
        }
        let run = self.train_leased(started_at).await;
        let response = match &run {
            Ok(_) => Some(self.train_response(started_at).await),
            Err(_) => None,
        };
        self.store.release_lease(LEASE_NAME, self.holder).await?;
        let mut run = run?;
        run.push_response = response.transpose()?;
        let outcome = match run.outcome {
            RunOutcome::Deployed => "deployed",
            RunOutcome::Kept => "kept",
            RunOutcome::Skipped => "skipped",
            RunOutcome::Busy => "busy",
        };
        metrics::counter!("kairos_trainings_total", "kind" => RANKER, "outcome" => outcome).increment(1);
        metrics::histogram!("kairos_training_seconds").record(run.secs);
        match &run.reason {
            Some(reason) => tracing::warn!(outcome, %reason, "training skipped"),
            None => tracing::info!(outcome, version = ?run.version, secs = run.secs, "training finished"),
        }
        if let Some(r) = &run.push_response {
            match &r.reason {
                Some(reason) => tracing::warn!(%reason, pushes = r.pushes_used, "push-response training skipped; the model in force stays"),
                None => tracing::info!(version = ?r.version, pushes = r.pushes_used, "push-response model deployed"),
            }
        }
        *self.last.lock().expect("trainer lock") = Some(run.clone());
        Ok(run)
    }

    async fn train_leased(&self, now: DateTime<Utc>) -> StoreResult<TrainingRun> {
        let clock = Instant::now();
        let tuning = self.tuning.get();
        let kinds = self.engine.kind_weights(&tuning);
        let from = learn::replay_from(&tuning.training_setup(&kinds), now);
        let (events, read) = self.window(from, now, tuning.model.max_events).await?;
        let deployed = self.engine.ranker(&tuning, &kinds);
        let engine = self.engine.clone();
        let used = events.len();
        let seq_in_force = self.engine.sequence_model(&tuning);
        let seq_tuning = tuning.clone();
        let (outcome, seq_outcome) = tokio::task::spawn_blocking(move || {
            // The ranker learns from the sequence model in force, as serving scores with it.
            let setup = learn::Setup { sequence: seq_in_force.as_deref(), ..tuning.training_setup(&kinds) };
            let item_of = |id: &str| engine.catalog.read().expect("catalog lock").get(id).cloned();
            let ranker = learn::train(&events, &item_of, &local_offset, &setup, deployed.as_deref(), now);
            let seq = tuning.sequence.enabled.then(|| {
                let from = now - TimeDelta::seconds((tuning.model.train_window_days * 86_400.0) as i64);
                let window: Vec<Event> = events.into_iter().filter(|e| e.ts >= from).collect();
                sequence::train(&window, &local_offset, &tuning.sequence, seq_in_force.as_deref(), now)
            });
            (ranker, seq)
        })
        .await
        .expect("the training thread does not panic");
        let sequence = match seq_outcome {
            None => None,
            Some(o) => Some(self.store_sequence(o, now, &seq_tuning).await?),
        };
        let run = |outcome, version, reason, report| TrainingRun {
            started_at: now,
            outcome,
            version,
            reason,
            events_read: read,
            events_used: used,
            report,
            sequence: sequence.clone(),
            secs: clock.elapsed().as_secs_f64(),
            push_response: None,
        };
        let (fit, deploy) = match outcome {
            Outcome::Skip(why) => return Ok(run(RunOutcome::Skipped, None, Some(why), None)),
            Outcome::Deploy(fit) => (fit, true),
            Outcome::Keep(fit) => (fit, false),
        };
        let report = FitReport { train_secs: clock.elapsed().as_secs_f64(), ..fit.report.clone() };
        let model = NewModel {
            kind: RANKER.into(),
            created_at: now,
            window_from: now - TimeDelta::seconds((self.tuning.get().model.train_window_days * 86_400.0) as i64),
            window_to: now,
            deploy,
            metrics: serde_json::json!({ "outcome": if deploy { "deployed" } else { "kept" }, "report": report, "events": used }),
            params: serde_json::to_string(&fit.params).expect("parameters serialise"),
        };
        let version = self.store.insert_model(&model).await?;
        if deploy {
            self.engine.load_model().await?;
        }
        Ok(run(if deploy { RunOutcome::Deployed } else { RunOutcome::Kept }, Some(version), None, Some(report)))
    }

    /// Trains the push-response model on the window's fetched pushes whose outcome is settled
    /// (their ignore window is over), the last settled day held out for the deployment rule
    /// (beat the population's open rate). A deployed model is in force at once; a skipped
    /// training keeps the one in force.
    async fn train_response(&self, now: DateTime<Utc>) -> StoreResult<ResponseRun> {
        let tuning = self.tuning.get();
        let from = now - TimeDelta::seconds((tuning.model.train_window_days * 86_400.0) as i64);
        let rows = self.store.push_outcomes(from, now).await?;
        let window = TimeDelta::seconds((tuning.frequency.ignore_window_hours * 3600.0) as i64);
        let known = push_response::settled(&response_examples(&rows), now, window);
        let (read, used) = (rows.len(), known.len());
        let settings = FitSettings { min_pushes: tuning.frequency.response_min_pushes, ..FitSettings::default() };
        let holdout_from = now - window - TimeDelta::days(1);
        let fitted = tokio::task::spawn_blocking(move || push_response::fit(&known, holdout_from, settings))
            .await
            .expect("the training thread does not panic");
        let run = |outcome, version, reason| ResponseRun { outcome, version, reason, pushes_read: read, pushes_used: used };
        let model = match fitted {
            Ok(model) => model,
            Err(why) => {
                metrics::counter!("kairos_trainings_total", "kind" => PUSH_RESPONSE, "outcome" => "skipped").increment(1);
                return Ok(run(RunOutcome::Skipped, None, Some(why)));
            }
        };
        let stored = NewModel {
            kind: PUSH_RESPONSE.into(),
            created_at: now,
            window_from: from,
            window_to: now,
            deploy: true,
            metrics: serde_json::json!({ "outcome": "deployed", "pushes": used, "open_rate": model.p0 }),
            params: model.to_json(),
        };
        let version = self.store.insert_model(&stored).await?;
        metrics::counter!("kairos_trainings_total", "kind" => PUSH_RESPONSE, "outcome" => "deployed").increment(1);
        self.engine.load_model().await?;
        Ok(run(RunOutcome::Deployed, Some(version), None))
    }

    /// Stores a trained sequence model as the one in force (a NaN loss or too small a log was
    /// skipped: logged, and the model in force keeps serving). Returns what the run reports.
    async fn store_sequence(&self, outcome: SequenceOutcome, now: DateTime<Utc>, tuning: &crate::config::Tuning) -> StoreResult<serde_json::Value> {
        match outcome {
            SequenceOutcome::Skip(reason) => {
                metrics::counter!("kairos_trainings_total", "kind" => SEQUENCE, "outcome" => "skipped").increment(1);
                tracing::warn!(kind = SEQUENCE, %reason, "sequence model training skipped; the model in force keeps serving");
                Ok(serde_json::json!({ "outcome": "skipped", "reason": reason }))
            }
            SequenceOutcome::Trained(model, report) => {
                let params = model.to_json();
                let row = NewModel {
                    kind: SEQUENCE.into(),
                    created_at: now,
                    window_from: now - TimeDelta::seconds((tuning.model.train_window_days * 86_400.0) as i64),
                    window_to: now,
                    deploy: true,
                    metrics: serde_json::json!({ "outcome": "deployed", "report": report, "bytes": params.len() }),
                    params,
                };
                let version = self.store.insert_model(&row).await?;
                // This replica serves it at once (the others at their next refresh).
                self.engine.load_model().await?;
                metrics::counter!("kairos_trainings_total", "kind" => SEQUENCE, "outcome" => "deployed").increment(1);
                tracing::info!(kind = SEQUENCE, version, secs = report.secs, "sequence model trained");
                Ok(serde_json::json!({ "outcome": "deployed", "version": version, "report": report }))
            }
        }
    }

    /// The window's events, in log order. Beyond `max` events, only a deterministic share of
    /// the users is kept (all of each kept user's events), so memory stays bounded.
    async fn window(&self, from: DateTime<Utc>, to: DateTime<Utc>, max: usize) -> StoreResult<(Vec<Event>, usize)> {
        let total = self.store.count_events_between(from, to).await?.max(0) as usize;
        let keep = if total > max { max as f64 / total as f64 } else { 1.0 };
        let mut out = Vec::with_capacity(total.min(max));
        let (mut after, mut read) = (0, 0);
        loop {
            let page = self.store.events_between(from, to, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            read += page.len();
            out.extend(page.into_iter().map(|l| l.event).filter(|e| keep >= 1.0 || user_share(&e.user_id) < keep));
        }
        Ok((out, read))
    }

    /// Trains when the last model is older than `retrain_every_hours` (and this replica has
    /// not tried within that time).
    pub async fn run_if_due(&self) -> StoreResult<Option<TrainingRun>> {
        let tuning = self.tuning.get();
        if !tuning.model.enabled {
            return Ok(None);
        }
        let now = self.clock.now();
        let every = TimeDelta::seconds((tuning.model.retrain_every_hours * 3600.0) as i64);
        let latest = self.store.list_models(RANKER, 1).await?.into_iter().next().map(|m| m.created_at);
        let tried = self.last_run().map(|r| r.started_at);
        let due = |t: Option<DateTime<Utc>>| t.is_none_or(|t| now - t >= every);
        if due(latest) && due(tried) { self.train_now().await.map(Some) } else { Ok(None) }
    }

    /// Checks every minute until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(CHECK_EVERY) => {}
                () = stop.cancelled() => return,
            }
            if let Err(e) = self.run_if_due().await {
                tracing::warn!(error = ?e, "training check failed");
            }
        }
    }

    /// The version of the sequence model serving on this replica, for the admin API.
    pub fn serving_sequence(&self) -> Option<u64> {
        self.engine.serving_sequence_model()
    }

    /// The model in force on this replica, for the admin API.
    pub fn serving(&self) -> Option<Arc<Ranker>> {
        let tuning = self.tuning.get();
        self.engine.ranker(&tuning, &self.engine.kind_weights(&tuning))
    }
}

/// The pushes whose recorded features this build reads (a push planned by an older format's
/// policy is left out), with what came of them.
fn response_examples(rows: &[PushOutcomeRow]) -> Vec<ResponseExample> {
    rows.iter()
        .filter_map(|r| {
            Some(ResponseExample {
                at: r.send_at,
                features: serde_json::from_value(r.features.clone()).ok()?,
                opened: r.opened,
                converted: r.converted,
                unsubscribed: r.unsubscribed,
            })
        })
        .collect()
}

/// An event's local UTC offset: its device's time zone when it names one, else UTC.
pub(super) fn local_offset(e: &Event) -> i32 {
    e.context.timezone.as_deref().and_then(|z| z.parse::<Tz>().ok()).map_or(0, |tz| offset_at(tz, e.ts))
}

/// The UTC offset of `tz` at `t`, in seconds.
pub(super) fn offset_at(tz: Tz, t: DateTime<Utc>) -> i32 {
    use chrono::Offset;
    t.with_timezone(&tz).offset().fix().local_minus_utc()
}

/// A user's place in `[0, 1)`, the same on every replica and run.
fn user_share(user: &str) -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x6b61_6972_6f73).build_hasher();
    h.write(user.as_bytes());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
