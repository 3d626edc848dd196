//! The push scheduler: a background task that, each tick, claims due users, asks scoring for
//! the best item not pushed recently, lets the frequency policy decide (send or skip, and
//! why), and writes pushes, states and decisions in one transaction.
//!
//! Any number of replicas may run it against one PostgreSQL: users are claimed with
//! `FOR UPDATE SKIP LOCKED` under a lease, a plan is only written while the claim holds and
//! the state is unchanged, and the outbox allows one push per user and slot.
//! `try_run_once(now)` runs one tick with a given clock, so tests drive it step by step.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::LiveTuning;
use crate::domain::User;
use crate::push::frequency::{DecideContext, Decision, FrequencyConfig, PushState, Recipient};
use crate::engine::{Engine, History, PushCandidate};
use crate::store::{Push, PushStatus, Store, StoreError, UserPlan};

/// What one tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Users were due; `claimed` were decided, `pushes` written, `conflicts` left for later.
    Worked { claimed: usize, pushes: u64, conflicts: u64, expired: usize },
    /// Nobody was due.
    Idle { expired: usize },
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    tuning: Arc<LiveTuning>,
    clock: Clock,
}

/// How far ahead a user with no reason to be looked at again is re-checked anyway (their
/// consent or settings may change; a settings change also makes them due at once).
const IDLE_RECHECK: TimeDelta = TimeDelta::days(1);

impl Scheduler {
    pub fn new(store: Arc<dyn Store>, engine: Arc<Engine>, tuning: Arc<LiveTuning>, clock: Clock) -> Self {
        Scheduler { store, engine, tuning, clock }
    }

    /// Runs `tuning.scheduler.workers` ticks at once every `tuning.scheduler.interval_secs`
    /// until `stop`; when one found work the next round starts at once, so a backlog drains
    /// at full speed. Stops between rounds.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let tuning = self.tuning.get();
            let pause = Duration::from_secs_f64(tuning.scheduler.interval_secs);
            let workers = if tuning.scheduler.enabled { tuning.scheduler.workers as usize } else { 0 };
            let mut busy = false;
            for outcome in self.clone().run_ticks(workers, self.clock.now()).await {
                match outcome {
                    Ok(Outcome::Worked { .. }) => busy = true,
                    Ok(Outcome::Idle { .. }) => {}
                    Err(e) => tracing::error!(error = ?e, "scheduler tick failed"),
                }
            }
            if busy && !stop.is_cancelled() {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// `n` ticks at `now` at once, each its own task: one tick's ranking (which holds its
    /// thread) then never delays another's database round trips.
    pub async fn run_ticks(self: Arc<Self>, n: usize, now: DateTime<Utc>) -> Vec<Result<Outcome, StoreError>> {
        let ticks: Vec<_> = (0..n)
            .map(|_| {
                let this = self.clone();
                tokio::spawn(async move { this.try_run_once(now).await })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(n);
        for t in ticks {
            match t.await {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {} // cancelled: the runtime is shutting down
            }
        }
        outcomes
    }

    /// One tick at `now`.
    pub async fn try_run_once(&self, now: DateTime<Utc>) -> Result<Outcome, StoreError> {
        let started = Instant::now();
        let tuning = self.tuning.get();
        let cfg = &tuning.frequency;
        let expired = self.store.expire_pushes(now).await?;
        if !expired.is_empty() {
            metrics::counter!("kairos_pushes_total", "outcome" => "expired").increment(expired.len() as u64);
        }
        let token = Uuid::new_v4();
        let lease_until = now + TimeDelta::seconds(tuning.scheduler.lease_secs);
        let claimed = self.store.claim_due_users(now, i64::from(tuning.scheduler.batch_size), token, lease_until).await?;
        if claimed.is_empty() {
            return Ok(Outcome::Idle { expired: expired.len() });
        }
        let ids: Vec<String> = claimed.iter().map(|c| c.user_id.clone()).collect();
        let claimed_at = started.elapsed();
        let found = self.store.get_users(&ids).await?;
        let histories = self.engine.histories_for(&found, now).await?;
        let no_history = History::default();
        let users: HashMap<String, User> = found.into_iter().map(|u| (u.user_id.clone(), u)).collect();
        // One budget per minute for every worker of every replica, held in the store: this
        // tick takes what it could use, and gives back what it did not plan.
        let minute = now.timestamp().div_euclid(60);
        let granted = self.store.take_push_budget(minute, claimed.len() as i64, i64::from(cfg.global_rate_per_minute)).await?;
        let mut budget = u32::try_from(granted).unwrap_or(0);
        let unfetched: HashSet<String> = self.store.unfetched_pushes(&ids).await?.into_iter().map(|(_, p)| p.to_string()).collect();
        let population = self.engine.population_activity();
        // The learned policy when a push-response model is in force, else the hand-set one.
        let (response, fallback) = self.engine.response_model();

        // Inputs per claimed user; their states are brought up to now and ranked (the
        // CPU-heavy part) on every core, and the decisions, which share the global budget, run
        // in order.
        let mut work: Vec<Work<'_>> = Vec::with_capacity(claimed.len());
        for row in &claimed {
            let Some(user) = users.get(&row.user_id) else {
                // A push state without settings (e.g. created from events only): look again later.
                continue;
            };
            let history = histories.get(&row.user_id).unwrap_or(&no_history);
            let stored = match row.state.as_ref().map(|v| serde_json::from_value::<PushState>(v.clone())) {
                Some(Ok(s)) => Some(s),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "stored push state unreadable; starting afresh");
                    None
                }
                None => None,
            };
            let blocked = stored.as_ref().map(|s| s.blocked_items(now, cfg)).unwrap_or_default();
            work.push(Work { version: row.version, user, history, stored, blocked });
        }
        let loaded_at = started.elapsed();
        let prepared = self.prepare(work, now, cfg, &unfetched, response.is_some());
        let ranked_at = started.elapsed();

        let mut plans = Vec::with_capacity(prepared.len());
        for Prepared { version, user, history, mut state, candidate } in prepared {
            let best = candidate.best.filter(|b| !state.is_suppressed(&b.item_id, now) && !state.pushed_recently(&b.item_id, now, cfg));
            let ctx = DecideContext {
                user: Recipient::from(user),
                best_item_score: best.as_ref().map(|b| b.score),
                global_budget_left: budget,
                population: &population,
                model: response.as_deref(),
                fallback: response.is_none().then_some(fallback),
                recent: self.engine.recent_log(&history.events, best.as_ref().map(|b| b.item_id.as_str()), now),
                draw: crate::push::frequency::exploration_draw(&user.user_id, now),
            };
            let decision = state.decide(&ctx, now, cfg);
            let push = match (&decision, best) {
                (&Decision::Send { at, .. }, Some(item)) => {
                    let push = Push {
                        push_id: Uuid::now_v7(),
                        user_id: user.user_id.clone(),
                        item_id: item.item_id.clone(),
                        send_at: at,
                        expires_at: now + TimeDelta::seconds((cfg.push_ttl_hours * 3600.0) as i64),
                        score: item.score,
                        reasons: item.reasons,
                        status: PushStatus::Planned,
                        leased_until: None,
                        created_at: now,
                    };
                    state.record_sent(&push.push_id.to_string(), &push.item_id, at, user.timezone, cfg);
                    budget = budget.saturating_sub(1);
                    Some(push)
                }
                _ => None,
            };
            let label = decision.skip_reason().map_or("send", |r| r.as_str());
            let policy = if response.is_some() { "learned" } else { "hand-set" };
            metrics::counter!("kairos_scheduler_decisions_total", "decision" => label, "policy" => policy).increment(1);
            if response.is_none() {
                metrics::counter!("kairos_push_policy_fallbacks_total", "reason" => fallback).increment(1);
            }
            let push_features = push.as_ref().and_then(|_| decision.inputs().features.as_ref()).and_then(|f| serde_json::to_string(f).ok());
            let next_due_at = decision.next_check_at().unwrap_or(now + IDLE_RECHECK).max(now + TimeDelta::seconds(1));
            let state_json = serde_json::to_string(&state).map_err(|e| StoreError::Corrupt(format!("push state: {e}")))?;
            let decision_json = serde_json::to_string(&decision).map_err(|e| StoreError::Corrupt(format!("decision: {e}")))?;
            plans.push(UserPlan {
                user_id: user.user_id.clone(),
                version,
                state: state_json,
                next_due_at,
                push,
                push_features,
                decision: decision_json,
            });
        }
        let decided_at = started.elapsed();
        let commit = self.store.commit_plans(token, &ids, &plans, now).await?;
        let unused = granted - commit.pushes as i64;
        if unused > 0 {
            self.store.give_back_push_budget(minute, unused).await?;
        }
        metrics::counter!("kairos_pushes_total", "outcome" => "planned").increment(commit.pushes);
        metrics::histogram!("kairos_scheduler_tick_seconds").record(started.elapsed().as_secs_f64());
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            claimed = claimed.len(),
            pushes = commit.pushes,
            conflicts = commit.conflicts,
            claim_ms = ms(claimed_at),
            load_ms = ms(loaded_at - claimed_at),
            rank_ms = ms(ranked_at - loaded_at),
            decide_ms = ms(decided_at - ranked_at),
            commit_ms = ms(started.elapsed() - decided_at),
            "scheduler tick"
        );
        Ok(Outcome::Worked { claimed: claimed.len(), pushes: commit.pushes, conflicts: commit.conflicts, expired: expired.len() })
    }

    /// Every user of `work`, in order, with their push state brought up to `now` (a new one
    /// from their interest level) and, where the decision will read it
    /// ([`PushState::reads_item`]), the best item to push, on all cores. The threads only read
    /// the engine's catalog and statistics; the tick waits for them.
    fn prepare<'a>(&self, work: Vec<Work<'a>>, now: DateTime<Utc>, cfg: &FrequencyConfig, unfetched: &HashSet<String>, learned: bool) -> Vec<Prepared<'a>> {
        let one = |w: Work<'a>| {
            let Work { version, user, history, mut stored, blocked } = w;
            let mut state = None;
            let candidate = self.engine.push_candidate(user, history, &blocked, now, |level| {
                let s = state.insert(stored.take().unwrap_or_else(|| PushState::new(level, now, cfg)));
                s.catch_up(&history.events, user.timezone, now, cfg, &|push| unfetched.contains(push));
                // Consent on again after an unsubscribe (an explicit resubscribe in the settings).
                if s.unsubscribed_at.zip(user.resubscribed_at).is_some_and(|(un, re)| re > un) {
                    s.resubscribe(user.resubscribed_at.unwrap_or(now));
                }
                s.reads_item(&Recipient::from(user), learned, now, cfg)
            });
            let state = state.expect("push_candidate asks whether to rank");
            Prepared { version, user, history, state, candidate }
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if work.len() <= 1 || threads == 1 {
            return work.into_iter().map(one).collect();
        }
        let chunk = work.len().div_ceil(threads);
        let mut rest = work.into_iter();
        let parts = std::iter::from_fn(|| Some(rest.by_ref().take(chunk).collect::<Vec<_>>()).filter(|part| !part.is_empty()));
        let one = &one;
        std::thread::scope(|scope| {
            let handles: Vec<_> = parts.map(|part| scope.spawn(move || part.into_iter().map(one).collect::<Vec<_>>())).collect();
            handles.into_iter().flat_map(|h| h.join().expect("a ranking thread panicked")).collect()
        })
    }
}

/// One claimed user's inputs to a decision.
struct Work<'a> {
    version: i64,
    user: &'a User,
    history: &'a History,
    stored: Option<PushState>,
    blocked: Vec<String>,
}

/// The same user, their state up to now and their ranking (where the decision reads it).
struct Prepared<'a> {
    version: i64,
    user: &'a User,
    history: &'a History,
    state: PushState,
    candidate: PushCandidate,
}
