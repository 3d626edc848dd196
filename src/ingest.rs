//! Event ingest: parse raw JSON into validated events, then group commit.
//!
//! Requests put their events on a bounded queue; writer tasks take everything waiting (up
//! to `flush_max_events`, waiting at most `flush_interval_ms` for more), write it with one
//! statement in one transaction, and only then answer each request. A full queue answers
//! 503 with Retry-After instead of buffering without bound.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::config::{IngestSettings, Tuning};
use crate::domain::{Device, Event, EventContext, EventProps, FieldError, MAX_ID_CHARS};
use crate::parse::{Fields, MAX_TEXT_CHARS};
use crate::store::{Store, StoreError};

/// Why a batch was refused before reaching the queue, or failed in it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the request body is not a valid event or batch")]
    Invalid(Vec<FieldError>),
    #[error("a batch holds at most {max} events, got {got}")]
    TooMany { max: usize, got: usize },
    #[error("a user sent more events than allowed per minute")]
    RateLimited { errors: Vec<FieldError>, retry_after_secs: u64 },
    #[error("the ingest queue is full")]
    Overloaded,
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("the events could not be committed")]
    Store(#[source] Arc<StoreError>),
}

/// What the limits of parsing are.
pub struct ParseLimits {
    pub max_events: usize,
    pub retention: chrono::Duration,
    pub max_future: chrono::Duration,
}

impl ParseLimits {
    pub fn from_settings(s: &IngestSettings) -> Self {
        ParseLimits {
            max_events: s.max_events_per_request,
            retention: chrono::Duration::days(i64::from(s.retention_days)),
            max_future: chrono::Duration::seconds(s.max_future_secs),
        }
    }
}

const EVENT_FIELDS: [&str; 7] = ["event_id", "user_id", "item_id", "kind", "ts", "context", "props"];
const CONTEXT_FIELDS: [&str; 7] = ["device", "platform", "country", "region", "timezone", "network", "session_id"];
const PROPS_FIELDS: [&str; 3] = ["price", "quantity", "query"];

/// Parses a body holding one event or `{"events": [...]}`. Either every event is valid, or
/// the whole batch is refused with every bad field named.
pub fn parse_events(body: &Value, tuning: &Tuning, limits: &ParseLimits, now: DateTime<Utc>) -> Result<Vec<Event>, IngestError> {
    let mut errors = Vec::new();
    let events = match body.get("events") {
        Some(Value::Array(arr)) => {
            if arr.is_empty() {
                return Err(IngestError::Invalid(vec![FieldError::new("events", "must hold at least one event")]));
            }
            if arr.len() > limits.max_events {
                return Err(IngestError::TooMany { max: limits.max_events, got: arr.len() });
            }
            if let Some(obj) = body.as_object()
                && let Some(k) = obj.keys().find(|k| *k != "events")
            {
                errors.push(FieldError::new(k.clone(), "unknown field"));
            }
            let mut out = Vec::with_capacity(arr.len());
            for (i, raw) in arr.iter().enumerate() {
                if let Some(e) = parse_event(raw, &format!("events[{i}]"), Some(i), tuning, limits, now, &mut errors) {
                    out.push(e);
                }
            }
            out
        }
        Some(_) => return Err(IngestError::Invalid(vec![FieldError::new("events", "must be an array of events")])),
        None => parse_event(body, "", None, tuning, limits, now, &mut errors).into_iter().collect(),
    };
    if errors.is_empty() { Ok(events) } else { Err(IngestError::Invalid(errors)) }
}

fn parse_event(
    raw: &Value,
    prefix: &str,
    index: Option<usize>,
    tuning: &Tuning,
    limits: &ParseLimits,
    now: DateTime<Utc>,
    errors: &mut Vec<FieldError>,
) -> Option<Event> {
    let before = errors.len();
    let mut f = Fields::object(raw, prefix, index, errors)?;
    f.deny_unknown(&EVENT_FIELDS);
    let event_id = f.opt_uuid("event_id");
    let user_id = f.req_id("user_id");
    let kind = f.req_id("kind");
    let item_id = f.opt_id("item_id");
    if let Some(k) = &kind {
        match tuning.kinds.get(k) {
            None => {
                let known: Vec<&str> = tuning.kinds.keys().map(String::as_str).collect();
                f.error("kind", format!("unknown event kind {k:?}; known kinds: {}", known.join(", ")));
            }
            Some(cfg) if cfg.item && item_id.is_none() && !f.has("item_id") => {
                f.error("item_id", format!("is required for {k:?} events"));
            }
            Some(_) => {}
        }
    }
    let ts = f.opt_time("ts");
    if let Some(t) = ts {
        if t > now + limits.max_future {
            f.error("ts", format!("is more than {} s in the future", limits.max_future.num_seconds()));
        } else if t < now - limits.retention {
            f.error("ts", format!("is older than the retention of {} days", limits.retention.num_days()));
        }
    }
    let context_value = f.nested("context");
    let props_value = f.nested("props");
    let context = context_value.and_then(|v| parse_context(v, &f.path("context"), index, f.errors)).unwrap_or_default();
    let props = props_value.and_then(|v| parse_props(v, &f.path("props"), index, f.errors)).unwrap_or_default();
    if errors.len() > before {
        return None;
    }
    Some(Event {
        event_id: event_id.unwrap_or_else(Uuid::now_v7),
        user_id: user_id?,
        item_id,
        kind: kind?,
        ts: ts.unwrap_or(now),
        context,
        props,
    })
}

fn parse_context(v: &Value, prefix: &str, index: Option<usize>, errors: &mut Vec<FieldError>) -> Option<EventContext> {
    let mut f = Fields::object(v, prefix, index, errors)?;
    f.deny_unknown(&CONTEXT_FIELDS);
    let device = f.opt_str("device", 32).and_then(|d| {
        Device::parse(&d).or_else(|| {
            f.error("device", format!("unknown device {d:?}; expected mobile, desktop or tablet"));
            None
        })
    });
    let country = f.opt_str("country", 2).and_then(|c| {
        if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()) {
            Some(c.to_ascii_uppercase())
        } else {
            f.error("country", "must be an ISO 3166-1 alpha-2 code");
            None
        }
    });
    let timezone = f.opt_tz("timezone").map(|tz| tz.name().to_string());
    Some(EventContext {
        device,
        platform: f.opt_str("platform", 64),
        country,
        region: f.opt_str("region", 64),
        timezone,
        network: f.opt_str("network", 32),
        session_id: f.opt_id("session_id"),
    })
}

fn parse_props(v: &Value, prefix: &str, index: Option<usize>, errors: &mut Vec<FieldError>) -> Option<EventProps> {
    let mut f = Fields::object(v, prefix, index, errors)?;
    f.deny_unknown(&PROPS_FIELDS);
    Some(EventProps {
        price: f.opt_non_negative("price"),
        quantity: f.opt_i64("quantity", 0, 1_000_000).map(|q| q as i32),
        query: f.opt_str("query", MAX_TEXT_CHARS.max(MAX_ID_CHARS)),
    })
}

/// Per-request result: how many events were new and how many were already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct IngestOutcome {
    pub accepted: usize,
    pub duplicates: usize,
}

/// Told about every committed batch (the recommendation caches of this replica).
pub trait CommitSink: Send + Sync {
    fn committed(&self, events: &[Event]);
}

struct Job {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<IngestOutcome, IngestError>>,
}

/// The handle requests use to submit events.
#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Job>,
    rate: Arc<rate::UserRate>,
}

impl Ingestor {
    /// Starts `settings.writers` writer tasks on `tracker`; they drain the queue and stop
    /// when `shutdown` is cancelled.
    pub fn start(
        store: Arc<dyn Store>,
        settings: &IngestSettings,
        sink: Arc<dyn CommitSink>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Ingestor {
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..settings.writers {
            let writer = Writer {
                store: store.clone(),
                rx: rx.clone(),
                sink: sink.clone(),
                max_events: settings.flush_max_events,
                interval: Duration::from_millis(settings.flush_interval_ms),
            };
            tracker.spawn(writer.run(shutdown.clone()));
        }
        Ingestor { tx, rate: Arc::new(rate::UserRate::new(settings.max_events_per_user_per_minute)) }
    }

    /// Queues the events and waits until they are committed. A request that would take one
    /// of its users over the per-minute limit is refused whole.
    pub async fn submit(&self, events: Vec<Event>, now: DateTime<Utc>) -> Result<IngestOutcome, IngestError> {
        self.rate.admit(&events, now).map_err(|l| IngestError::RateLimited { errors: l.errors, retry_after_secs: l.retry_after_secs })?;
        let (reply, answer) = oneshot::channel();
        let n = events.len();
        match self.tx.try_send(Job { events, reply }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("kairos_ingest_overloaded_total").increment(1);
                return Err(IngestError::Overloaded);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(IngestError::ShuttingDown),
        }
        metrics::gauge!("kairos_ingest_queue_depth").set((self.tx.max_capacity() - self.tx.capacity()) as f64);
        let outcome = answer.await.map_err(|_| IngestError::ShuttingDown)??;
        tracing::debug!(events = n, accepted = outcome.accepted, "events committed");
        Ok(outcome)
    }
}

struct Writer {
    store: Arc<dyn Store>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    sink: Arc<dyn CommitSink>,
    max_events: usize,
    interval: Duration,
}

impl Writer {
    async fn run(self, shutdown: CancellationToken) {
        loop {
            let jobs = tokio::select! {
                jobs = self.collect() => jobs,
                () = shutdown.cancelled() => {
                    // Stop taking new work, then commit everything already queued.
                    let mut rx = self.rx.lock().await;
                    rx.close();
                    let mut rest = Vec::new();
                    while let Some(job) = rx.recv().await {
                        rest.push(job);
                    }
                    drop(rx);
                    if !rest.is_empty() {
                        tracing::info!(requests = rest.len(), "flushing the ingest queue before shutdown");
                        self.flush(rest).await;
                    }
                    return;
                }
            };
            if jobs.is_empty() {
                return; // channel closed
            }
            self.flush(jobs).await;
        }
    }

    /// Waits for one job, then takes what else is waiting, up to the size or time limit.
    async fn collect(&self) -> Vec<Job> {
        let mut rx = self.rx.lock().await;
        let Some(first) = rx.recv().await else { return Vec::new() };
        let mut total = first.events.len();
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + self.interval;
        while total < self.max_events {
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(deadline, rx.recv()).await.unwrap_or_default()
                }
            };
            match next {
                Some(job) => {
                    total += job.events.len();
                    jobs.push(job);
                }
                None => break,
            }
        }
        jobs
    }

    async fn flush(&self, jobs: Vec<Job>) {
        // Keep the first occurrence of each id; later ones in the same flush are duplicates.
        let mut seen: HashSet<Uuid> = HashSet::new();
        let mut unique = Vec::new();
        let mut first_flags: Vec<Vec<bool>> = Vec::with_capacity(jobs.len());
        for job in &jobs {
            first_flags.push(
                job.events
                    .iter()
                    .map(|e| {
                        let first = seen.insert(e.event_id);
                        if first {
                            unique.push(e.clone());
                        }
                        first
                    })
                    .collect(),
            );
        }
        metrics::histogram!("kairos_ingest_flush_events").record(unique.len() as f64);
        let started = Instant::now();
        let result = self.store.insert_events(&unique).await;
        metrics::histogram!("kairos_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(inserted) => {
                let inserted: HashSet<Uuid> = inserted.into_iter().collect();
                let (mut acc_total, mut dup_total) = (0u64, 0u64);
                for (job, firsts) in jobs.into_iter().zip(first_flags) {
                    let accepted = job
                        .events
                        .iter()
                        .zip(&firsts)
                        .filter(|(e, first)| **first && inserted.contains(&e.event_id))
                        .count();
                    let outcome = IngestOutcome { accepted, duplicates: job.events.len() - accepted };
                    acc_total += outcome.accepted as u64;
                    dup_total += outcome.duplicates as u64;
                    let _ = job.reply.send(Ok(outcome));
                }
                metrics::counter!("kairos_events_total", "outcome" => "accepted").increment(acc_total);
                metrics::counter!("kairos_events_total", "outcome" => "duplicate").increment(dup_total);
                let committed: Vec<Event> = unique.into_iter().filter(|e| inserted.contains(&e.event_id)).collect();
                self.sink.committed(&committed);
            }
            Err(e) => {
                tracing::error!(error = ?e, events = unique.len(), "event commit failed");
                let shared = Arc::new(e);
                for job in jobs {
                    let _ = job.reply.send(Err(IngestError::Store(shared.clone())));
                }
            }
        }
    }
}

mod rate;

#[cfg(test)]
mod tests;
