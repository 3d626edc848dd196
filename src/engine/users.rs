//! One replica's cache of user views (recent events, time zone, items pushed recently),
//! bounded in users (`engine.history_cache_users`, least recently used dropped first) and in
//! events per user (`engine.max_events_per_user`, newest kept).
//!
//! The cache is keyed by user only, so it must never hold what one request's parameters
//! chose: entries are always loaded for the service clock's now. A request `at` a past time
//! (more than [`TIME_TRAVEL`] before now) reads the store for that moment and caches nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Engine, HISTORY_TTL, UserView};
use crate::config::Tuning;
use crate::domain::{Event, User};
use crate::push::frequency::PushState;
use crate::rank::catalog::{Catalog, StrMap};
use crate::rank::profile::{KindWeights, Touch};
use crate::store::StoreResult;

/// A request this far before the service's now is answered from the store, uncached.
pub const TIME_TRAVEL: TimeDelta = TimeDelta::minutes(5);

struct CachedUser {
    view: UserView,
    loaded: Instant,
    used: Instant,
    /// The touches of `view.events` under a tuning, made at the first request that needed
    /// them; dropped whenever `view.events` changes.
    touches: Option<(Arc<Tuning>, Arc<Vec<Touch>>)>,
}

/// The cached views. See the module documentation.
pub(super) struct UserCache {
    map: Mutex<StrMap<String, CachedUser>>,
    capacity: usize,
    max_events: usize,
}

impl UserCache {
    pub(super) fn new(capacity: usize, max_events: usize) -> Self {
        UserCache { map: Mutex::new(StrMap::default()), capacity: capacity.max(1), max_events: max_events.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StrMap<String, CachedUser>> {
        self.map.lock().expect("user cache lock")
    }

    /// The user's view when cached and younger than [`HISTORY_TTL`].
    fn fresh(&self, user_id: &str) -> Option<UserView> {
        let mut map = self.lock();
        let c = map.get_mut(user_id).filter(|c| c.loaded.elapsed() < HISTORY_TTL)?;
        c.used = Instant::now();
        Some(c.view.clone())
    }

    fn insert(&self, user_id: String, view: UserView) {
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&user_id) {
            // Drop the least recently used eighth at once, so eviction is rare.
            let mut used: Vec<Instant> = map.values().map(|c| c.used).collect();
            let cut = (map.len() / 8).max(1).min(used.len() - 1);
            let (_, &mut threshold, _) = used.select_nth_unstable(cut);
            map.retain(|_, c| c.used > threshold);
            metrics::counter!("kairos_history_cache_evictions_total").increment(1);
        }
        let now = Instant::now();
        map.insert(user_id, CachedUser { view, loaded: now, used: now, touches: None });
    }

    pub(super) fn remove(&self, user_id: &str) {
        self.lock().remove(user_id);
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Keeps the newest `max_events` of `events`.
    fn bounded(&self, mut events: Vec<Event>) -> Vec<Event> {
        if events.len() > self.max_events {
            events.drain(..events.len() - self.max_events);
        }
        events
    }

    /// Adds `events` to the cached histories of their users (those cached), in time order,
    /// skipping any already there (this replica's commits arrive twice: at commit time and
    /// from the log), and keeps each history within `max_events`.
    pub(super) fn append<'e>(&self, events: impl IntoIterator<Item = &'e Event>) {
        let mut map = self.lock();
        for e in events {
            let Some(c) = map.get_mut(&e.user_id) else { continue };
            let v = &c.view.events;
            let from = v.partition_point(|x| x.ts < e.ts);
            let to = v.partition_point(|x| x.ts <= e.ts);
            if v[from..to].iter().any(|x| x.event_id == e.event_id) {
                continue;
            }
            // The touches were made of the events before this one.
            c.touches = None;
            let events = Arc::make_mut(&mut c.view.events);
            events.insert(to, e.clone());
            if events.len() > self.max_events {
                events.drain(..events.len() - self.max_events);
            }
        }
    }

    /// The cached touches of `events` under `tuning`, or new ones (kept when `events` is
    /// still the entry's history).
    pub(super) fn touches(&self, user_id: &str, events: &Arc<Vec<Event>>, catalog: &Catalog, tuning: &Arc<Tuning>, weights: &KindWeights) -> Arc<Vec<Touch>> {
        if let Some(c) = self.lock().get(user_id)
            && Arc::ptr_eq(&c.view.events, events)
            && let Some((t, touches)) = &c.touches
            && Arc::ptr_eq(t, tuning)
        {
            return touches.clone();
        }
        let touches = Arc::new(Touch::of(events, catalog, weights));
        if let Some(c) = self.lock().get_mut(user_id)
            && Arc::ptr_eq(&c.view.events, events)
        {
            c.touches = Some((tuning.clone(), touches.clone()));
        }
        touches
    }
}

impl Engine {
    /// One user's view at `at`: from the cache, or the store (cached when `at` is not in the
    /// past of the service clock, see the module documentation).
    pub async fn user_view(&self, user_id: &str, at: DateTime<Utc>) -> StoreResult<UserView> {
        let now = self.clock.now();
        let travel = at < now - TIME_TRAVEL;
        if !travel && let Some(view) = self.users.fresh(user_id) {
            return Ok(view);
        }
        let read_at = if travel { at } else { now };
        let limit = self.users.max_events as i64;
        let rows = self.store.user_view_rows(user_id, read_at - self.horizon(), limit).await?;
        let events = if travel { rows.events.into_iter().filter(|e| e.ts <= at).collect() } else { rows.events };
        let tuning = self.tuning.get();
        let pushed: HashSet<String> = rows
            .push_state
            .and_then(|v| serde_json::from_value::<PushState>(v).ok())
            .map(|s| s.blocked_items(read_at, &tuning.frequency).into_iter().collect())
            .unwrap_or_default();
        let view = UserView { events: Arc::new(self.users.bounded(events)), timezone: rows.timezone, pushed: Arc::new(pushed) };
        if !travel {
            self.users.insert(user_id.to_string(), view.clone());
        }
        Ok(view)
    }

    /// Histories of many users at once: cached ones from memory, the rest in one query.
    pub async fn histories_for(&self, users: &[User], now: DateTime<Utc>) -> StoreResult<HashMap<String, Arc<Vec<Event>>>> {
        let mut out = HashMap::with_capacity(users.len());
        let mut missing = Vec::new();
        for u in users {
            match self.users.fresh(&u.user_id) {
                Some(view) => {
                    out.insert(u.user_id.clone(), view.events);
                }
                None => missing.push(u.user_id.clone()),
            }
        }
        if !missing.is_empty() {
            let mut loaded: HashMap<String, Vec<Event>> = missing.iter().map(|id| (id.clone(), Vec::new())).collect();
            let limit = self.users.max_events as i64;
            for e in self.store.users_events(&missing, now - self.horizon(), limit).await? {
                if let Some(v) = loaded.get_mut(&e.user_id) {
                    v.push(e);
                }
            }
            // Not cached: the view would lack the pushed items the request path needs.
            out.extend(loaded.into_iter().map(|(id, events)| (id, Arc::new(events))));
        }
        Ok(out)
    }
}
