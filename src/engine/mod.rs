//! The recommendation engine of one replica: caches over the store (user histories, the
//! catalog, popularity/co-occurrence/context statistics) feeding the pure `profile` and
//! `scoring` code.
//!
//! Freshness: events committed by this replica are appended to its cached histories at
//! commit time, so its next answer reflects them. Events committed by other replicas reach
//! the statistics and the cached histories at the next refresh (every `REFRESH_EVERY`,
//! `SETTLE` after their commit): about 3 s of cross-replica staleness. A cached entry is
//! re-read from the store after `HISTORY_TTL` (2 min), which bounds the staleness of what
//! other replicas change in a user's settings and push state (items pushed or suppressed);
//! this replica's own changes to them drop the entry at once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use serde::Serialize;
use utoipa::ToSchema;

use crate::rank::catalog::Catalog;
use crate::clock::Clock;
use crate::config::{EngineSettings, LiveTuning, Tuning};
use crate::rank::context::RequestContext;
use crate::rank::decay::Decay;
use crate::rank::profile::{Evidence, InterestVector, KindWeights, ProfileParams};
use crate::rank::scoring::{Request as ScoringRequest, Scored, Scorer, SeqQuery};
use crate::domain::{Item, User};
use crate::rank::history::{HistoryEvent, Packed};
use crate::push::frequency::ActivityHistogram;
use crate::push::frequency::response::RecentLog;
use crate::rank::stats::{Stats, StatsConfig};
use crate::store::{Store, StoreResult};

mod models;
pub use models::{PUSH_RESPONSE, RANKER};
mod sequence;
mod refresh;
mod users;
pub mod trainer;

/// How long a cached user view is trusted before it is re-read from the store (its events
/// are kept current by the refresher meanwhile).
pub const HISTORY_TTL: Duration = Duration::from_secs(120);
/// How often the statistics and catalog are brought up to date from the store.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Events are consumed this long after their commit (see `Store::events_after`).
pub const SETTLE: TimeDelta = TimeDelta::seconds(2);
/// Events read from the log per refresh query.
const REFRESH_PAGE: i64 = 20_000;
/// Items read per catalog refresh query.
const CATALOG_PAGE: i64 = 5_000;
/// Item changes this recent are read again at the next refresh (an item written at `t` may
/// commit a little after a refresh has read past `t`).
const CATALOG_OVERLAP: TimeDelta = TimeDelta::seconds(5);

/// A user's packed events, oldest first, and the time zone their latest event's device named.
#[derive(Clone, Default)]
pub struct History {
    pub events: Arc<[Packed]>,
    pub event_zone: Option<Tz>,
}

/// What the engine keeps about one user between requests.
#[derive(Clone)]
pub struct UserView {
    /// Events inside the horizon, oldest first, packed for this replica's catalogue.
    pub events: Arc<[Packed]>,
    /// The user's time zone when their settings are known.
    pub timezone: Option<Tz>,
    /// The time zone their latest event's device named, if any.
    pub event_zone: Option<Tz>,
    /// Items recently pushed to the user (or suppressed after a dismissal).
    pub pushed: Arc<HashSet<String>>,
}

impl UserView {
    /// The user's time zone: their settings, else their latest event's device zone, else UTC.
    pub fn zone(&self) -> Tz {
        self.timezone
            .or(self.event_zone)
            .unwrap_or(chrono_tz::UTC)
    }
}

/// A parsed `GET /v1/users/{id}/recommendations`.
#[derive(Clone, Debug)]
pub struct RecommendationRequest {
    pub n: usize,
    pub device: Option<crate::domain::Device>,
    pub country: Option<String>,
    pub at: DateTime<Utc>,
    pub exclude: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RecommendationResponse {
    pub user_id: String,
    pub at: DateTime<Utc>,
    /// The user had no events in the horizon: these are trending items in this context.
    pub cold_start: bool,
    /// The context the answer was computed for (local hour and weekday in the user's zone).
    pub context: RequestContext,
    /// The decay setting used for the user's events.
    #[schema(value_type = Object)]
    pub decay: Decay,
    /// Version of the tuning used (bumped by every applied reload).
    pub config_version: u64,
    /// The version of the learned model that ranked; `null` when the hand-set blend did
    /// (no model trained yet, `tuning.model.enabled = false`, or none fits the features).
    pub model_version: Option<u64>,
    /// The version of the sequence model whose candidates and score took part; `null` when
    /// none did (`tuning.sequence.enabled = false`, none trained yet, or a user it cannot read).
    pub sequence_model_version: Option<u64>,
    pub items: Vec<Scored>,
}

#[derive(Serialize, ToSchema)]
pub struct InterestFeature {
    /// `item:…`, `category:…` or `brand:…`.
    pub feature: String,
    pub weight: f64,
    pub evidence: Vec<Evidence>,
}

#[derive(Serialize, ToSchema)]
pub struct InterestsResponse {
    pub user_id: String,
    pub at: DateTime<Utc>,
    /// The interest level I used by the push frequency policy.
    pub level: f64,
    #[schema(value_type = Object)]
    pub decay: Decay,
    pub config_version: u64,
    pub features: Vec<InterestFeature>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    tuning: Arc<LiveTuning>,
    clock: Clock,
    users: users::UserCache,
    /// Item ids interned without catalogue data, kept at most.
    max_unknown_items: usize,
    /// Where this replica has read the user change log up to (the store's clock).
    changes_read: Mutex<Option<DateTime<Utc>>>,
    /// The change log's sequence numbers applied within the overlap read again, with their
    /// times: a change is applied once, however often the overlap reads it.
    changes_applied: Mutex<HashMap<i64, DateTime<Utc>>>,
    pub(crate) catalog: RwLock<Catalog>,
    pub(crate) stats: RwLock<Stats>,
    population: RwLock<ActivityHistogram>,
    /// Last event `seq` folded into the statistics.
    stats_seq: AtomicI64,
    /// The catalog cache holds every item up to this (change time, item id).
    catalog_cursor: Mutex<(DateTime<Utc>, String)>,
    refreshed: Mutex<Option<Instant>>,
    /// `Tuning::kind_weights` of the tuning last used.
    kind_weights: Mutex<Option<(Arc<Tuning>, Arc<KindWeights>)>>,
    /// The learned ranker in force, as loaded from the store (see `models`).
    models: models::Loaded,
}

/// The best item to push to a user, with the reasons scoring gave for it.
#[derive(Debug, Clone)]
pub struct CandidateItem {
    pub item_id: String,
    pub score: f64,
    pub reasons: serde_json::Value,
}

/// What the scheduler asks of scoring for one user.
#[derive(Debug, Clone)]
pub struct PushCandidate {
    /// The user's interest level I (frequency policy: f = clamp(f_min, f_max, f0 · I / θ)).
    pub interest_level: f64,
    pub best: Option<CandidateItem>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, tuning: Arc<LiveTuning>, limits: &EngineSettings, clock: Clock) -> Engine {
        let stats_cfg = Self::stats_config(&tuning);
        Engine {
            store,
            tuning,
            clock,
            users: users::UserCache::new(limits.history_cache_users, limits.max_events_per_user),
            max_unknown_items: limits.max_unknown_items,
            changes_read: Mutex::new(None),
            changes_applied: Mutex::new(HashMap::new()),
            catalog: RwLock::new(Catalog::new()),
            stats: RwLock::new(Stats::new(stats_cfg)),
            population: RwLock::new(ActivityHistogram::new()),
            stats_seq: AtomicI64::new(0),
            catalog_cursor: Mutex::new((DateTime::<Utc>::UNIX_EPOCH, String::new())),
            refreshed: Mutex::new(None),
            kind_weights: Mutex::new(None),
            models: models::Loaded::default(),
        }
    }

    fn stats_config(tuning: &LiveTuning) -> StatsConfig {
        tuning.get().scoring.stats.clone()
    }

    /// How far back a user's events count.
    pub fn horizon(&self) -> TimeDelta {
        TimeDelta::seconds((self.tuning.get().scoring.horizon_hours * 3600.0) as i64)
    }

    /// The population's hour-of-week activity (the prior of the send-time choice).
    pub fn population_activity(&self) -> ActivityHistogram {
        self.population.read().expect("population lock").clone()
    }

    fn profile<E: HistoryEvent>(&self, events: &[E], catalog: &Catalog, tuning: &Arc<Tuning>, at: DateTime<Utc>) -> InterestVector {
        let weights = self.kind_weights(tuning);
        InterestVector::build(events, catalog, &Self::profile_params(tuning, &weights), at)
    }

    fn profile_params<'a>(tuning: &'a Tuning, weights: &'a KindWeights) -> ProfileParams<'a> {
        ProfileParams { decay: &tuning.decay, kind_weights: weights, horizon_secs: tuning.scoring.horizon_hours * 3600.0 }
    }

    /// The event kinds' weights of `tuning`, built once per tuning rather than per request.
    pub(crate) fn kind_weights(&self, tuning: &Arc<Tuning>) -> Arc<KindWeights> {
        let mut cached = self.kind_weights.lock().expect("kind weights lock");
        match cached.as_ref() {
            // The cache holds the tuning itself, so its address cannot be reused meanwhile.
            Some((t, w)) if Arc::ptr_eq(t, tuning) => w.clone(),
            _ => {
                let w = Arc::new(tuning.kind_weights());
                *cached = Some((tuning.clone(), w.clone()));
                w
            }
        }
    }

    /// Ranks items for a user in the request's context.
    pub async fn recommend(&self, user_id: &str, req: &RecommendationRequest) -> StoreResult<RecommendationResponse> {
        let view = self.user_view(user_id, req.at).await?;
        let tuning = self.tuning.get();
        let version = self.tuning.version();
        let local = req.at.with_timezone(&view.zone());
        let context = RequestContext::at(&local, req.device, req.country.clone());
        let mut exclude: HashSet<String> = req.exclude.iter().cloned().collect();
        exclude.extend(view.pushed.iter().cloned());
        let ranking = {
            let catalog = self.catalog.read().expect("catalog lock");
            let stats = self.stats.read().expect("stats lock");
            let profile = self.profile(&view.events, &catalog, &tuning, req.at);
            let request = ScoringRequest { n: req.n, context: context.clone(), exclude: &exclude };
            let kinds = self.kind_weights(&tuning);
            let model = self.ranker(&tuning, &kinds);
            let scorer = Scorer { catalog: &catalog, stats: &stats, kinds: &kinds, cfg: &tuning.scoring, model: model.as_deref() };
            let seq = self.sequence_model(&tuning);
            let state = seq.as_deref().and_then(|m| self.sequence_state(m, user_id, &view.events, view.event_zone, &catalog, view.zone(), req.device, req.at));
            let q = seq.as_deref().zip(state.as_deref()).map(|(model, state)| SeqQuery { model, state, pool: tuning.sequence.candidates });
            scorer.rank_with(&request, &profile, &view.events, req.at, q.as_ref())
        };
        Ok(RecommendationResponse {
            user_id: user_id.to_string(),
            at: req.at,
            cold_start: ranking.cold_start,
            context,
            decay: tuning.decay.clone(),
            config_version: version,
            model_version: ranking.model,
            sequence_model_version: ranking.sequence_model,
            items: ranking.items,
        })
    }

    /// The user's interest vector at `at`, heaviest features first.
    pub async fn interests(&self, user_id: &str, at: DateTime<Utc>) -> StoreResult<InterestsResponse> {
        let view = self.user_view(user_id, at).await?;
        let tuning = self.tuning.get();
        let catalog = self.catalog.read().expect("catalog lock");
        let profile = self.profile(&view.events, &catalog, &tuning, at);
        let features = profile
            .top(50)
            .into_iter()
            .map(|(f, w)| InterestFeature { feature: InterestVector::label(&catalog, f), weight: w, evidence: profile.evidence(f, &view.events, &catalog) })
            .collect();
        Ok(InterestsResponse {
            user_id: user_id.to_string(),
            at,
            level: profile.level(),
            decay: tuning.decay.clone(),
            config_version: self.tuning.version(),
            features,
        })
    }

    /// The user's interest level and, when `rank(level)` says the decision will read it, the
    /// best item to push now (not in `blocked`), for the scheduler (the ranking is most of a
    /// tick's CPU).
    pub fn push_candidate(&self, user: &User, history: &History, blocked: &[String], now: DateTime<Utc>, rank: impl FnOnce(f64) -> bool) -> PushCandidate {
        let tuning = self.tuning.get();
        let catalog = self.catalog.read().expect("catalog lock");
        let profile = self.profile(&history.events, &catalog, &tuning, now);
        if !rank(profile.level()) {
            return PushCandidate { interest_level: profile.level(), best: None };
        }
        let stats = self.stats.read().expect("stats lock");
        let exclude: HashSet<String> = blocked.iter().cloned().collect();
        let context = RequestContext::at(&now.with_timezone(&user.timezone), None, None);
        let request = ScoringRequest { n: 1, context, exclude: &exclude };
        let kinds = self.kind_weights(&tuning);
        let model = self.ranker(&tuning, &kinds);
        let scorer = Scorer { catalog: &catalog, stats: &stats, kinds: &kinds, cfg: &tuning.scoring, model: model.as_deref() };
        let seq = self.sequence_model(&tuning);
        let state = seq.as_deref().and_then(|m| self.sequence_state(m, &user.user_id, &history.events, history.event_zone, &catalog, user.timezone, None, now));
        let q = seq.as_deref().zip(state.as_deref()).map(|(model, state)| SeqQuery { model, state, pool: tuning.sequence.candidates });
        let ranking = scorer.rank_with(&request, &profile, &history.events, now, q.as_ref());
        let best = ranking.items.into_iter().next().map(|s| CandidateItem {
            item_id: s.item_id,
            score: s.score,
            reasons: serde_json::to_value(&s.reasons).unwrap_or(serde_json::Value::Null),
        });
        PushCandidate { interest_level: profile.level(), best }
    }

    /// What the user's own log says for a push of `item_id` at `now` (the push-response
    /// model's inputs), from their packed history.
    pub fn recent_log(&self, history: &[Packed], item_id: Option<&str>, now: DateTime<Utc>) -> RecentLog {
        RecentLog::of(history, &self.catalog.read().expect("catalog lock"), item_id, now)
    }

    /// The item ids of packed events, in order (events without an item left out).
    pub fn item_ids(&self, events: &[Packed]) -> Vec<String> {
        let catalog = self.catalog.read().expect("catalog lock");
        events.iter().filter_map(|e| e.item_id(&catalog)).map(str::to_string).collect()
    }

    pub fn item_changed(&self, item: Item) {
        self.catalog.write().expect("catalog lock").upsert(item);
    }

    /// Whether the statistics keep anything about `user_id` (erasure checks).
    pub fn stats_remember(&self, user_id: &str) -> bool {
        self.stats.read().expect("stats lock").remembers(user_id)
    }

    pub fn forget_user(&self, user_id: &str) {
        self.users.remove(user_id);
        self.forget_sequence_state(user_id);
    }
}
