//! One replica's cache of user views (recent events, time zone, items pushed recently),
//! bounded in users (`engine.history_cache_users`, least recently used dropped first) and in
//! events per user (`engine.max_events_per_user`, newest kept).
//!
//! The events are held packed ([`Packed`]: 16 bytes each, items and kinds as catalogue
//! indices) and ranking reads them as they are: a cached shopper with twenty events takes
//! about 400 bytes, where the full events took about 10 KB. An entry keeps no derived data
//! (a profile is built from the packed events at each request, which is cheaper than the
//! memory a cached one would take per user).
//!
//! The cache is keyed by user only, so it must never hold what one request's parameters
//! chose: entries are always loaded for the service clock's now. A request `at` a past time
//! (more than [`TIME_TRAVEL`] before now) reads the store for that moment and caches nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::{Engine, HISTORY_TTL, UserView};
use crate::domain::{Event, User};
use crate::push::frequency::PushState;
use crate::rank::catalog::{Catalog, StrMap};
use crate::rank::history::{HistoryEvent, Packed};
use crate::store::StoreResult;

/// A request this far before the service's now is answered from the store, uncached.
pub const TIME_TRAVEL: TimeDelta = TimeDelta::minutes(5);

/// One cached user: 48 bytes here, plus the packed events and the id.
struct CachedUser {
    events: Arc<[Packed]>,
    /// Items recently pushed to the user; `None` when there are none (most users).
    pushed: Option<Arc<HashSet<String>>>,
    timezone: Option<Tz>,
    /// When the entry was loaded and last used, in seconds since the cache's epoch.
    loaded: u32,
    used: u32,
}

/// The cached views. See the module documentation.
pub(super) struct UserCache {
    map: Mutex<StrMap<Box<str>, CachedUser>>,
    epoch: Instant,
    /// The pushed items of a view that has none.
    no_items: Arc<HashSet<String>>,
    capacity: usize,
    max_events: usize,
}

impl UserCache {
    pub(super) fn new(capacity: usize, max_events: usize) -> Self {
        UserCache {
            map: Mutex::new(StrMap::default()),
            epoch: Instant::now(),
            no_items: Arc::default(),
            capacity: capacity.max(1),
            max_events: max_events.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StrMap<Box<str>, CachedUser>> {
        self.map.lock().expect("user cache lock")
    }

    fn seconds(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// The user's view when cached and younger than [`HISTORY_TTL`].
    fn fresh(&self, user_id: &str) -> Option<UserView> {
        let now = self.seconds();
        let mut map = self.lock();
        let c = map.get_mut(user_id).filter(|c| u64::from(now - c.loaded) < HISTORY_TTL.as_secs())?;
        c.used = now;
        Some(UserView { events: c.events.clone(), timezone: c.timezone, pushed: c.pushed.clone().unwrap_or_else(|| self.no_items.clone()) })
    }

    fn insert(&self, user_id: &str, view: &UserView) {
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(user_id) {
            // Drop the least recently used eighth at once, so eviction is rare.
            let mut used: Vec<u32> = map.values().map(|c| c.used).collect();
            let cut = (map.len() / 8).max(1).min(used.len() - 1);
            let (_, &mut threshold, _) = used.select_nth_unstable(cut);
            map.retain(|_, c| c.used > threshold);
            metrics::counter!("kairos_history_cache_evictions_total").increment(1);
        }
        let now = self.seconds();
        let pushed = (!view.pushed.is_empty()).then(|| view.pushed.clone());
        map.insert(user_id.into(), CachedUser { events: view.events.clone(), pushed, timezone: view.timezone, loaded: now, used: now });
    }

    pub(super) fn remove(&self, user_id: &str) {
        self.lock().remove(user_id);
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The newest `max_events` of `events`.
    fn bounded<'e>(&self, events: &'e [Event]) -> &'e [Event] {
        &events[events.len().saturating_sub(self.max_events)..]
    }

    /// Adds `events` (packed, with their users) to the cached histories of their users (those
    /// cached), in time order, skipping any already there (this replica's commits arrive
    /// twice: at commit time and from the log), and keeps each history within `max_events`.
    ///
    /// A packed event has no id, so "already there" means an event of the same user with the
    /// same time (to the microsecond), item, kind, device and zone: two such events sent apart
    /// are counted once here until the entry is read again from the store.
    pub(super) fn append<'e>(&self, events: impl IntoIterator<Item = (&'e str, Packed)>) {
        let mut map = self.lock();
        for (user, p) in events {
            let Some(c) = map.get_mut(user) else { continue };
            let v = &c.events;
            let ts = p.ts();
            let from = v.partition_point(|x| x.ts() < ts);
            let to = v.partition_point(|x| x.ts() <= ts);
            if v[from..to].contains(&p) {
                continue;
            }
            let keep_from = (v.len() + 1).saturating_sub(self.max_events);
            let mut grown: Vec<Packed> = Vec::with_capacity(v.len() + 1);
            grown.extend_from_slice(&v[..to]);
            grown.push(p);
            grown.extend_from_slice(&v[to..]);
            c.events = grown[keep_from..].into();
        }
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
        let past = rows.events.partition_point(|e| !travel || e.ts <= at);
        let events = self.pack(self.users.bounded(&rows.events[..past]));
        let tuning = self.tuning.get();
        let pushed: HashSet<String> = rows
            .push_state
            .and_then(|v| serde_json::from_value::<PushState>(v).ok())
            .map(|s| s.blocked_items(read_at, &tuning.frequency).into_iter().collect())
            .unwrap_or_default();
        let view = UserView { events: events.into(), timezone: rows.timezone, pushed: Arc::new(pushed) };
        if !travel {
            self.users.insert(user_id, &view);
        }
        Ok(view)
    }

    /// Histories of many users at once: cached ones from memory, the rest in one query.
    pub async fn histories_for(&self, users: &[User], now: DateTime<Utc>) -> StoreResult<HashMap<String, Arc<[Packed]>>> {
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
            let limit = self.users.max_events as i64;
            let events = self.store.users_events(&missing, now - self.horizon(), limit).await?;
            let packed = self.pack(&events);
            let mut loaded: HashMap<&str, Vec<Packed>> = missing.iter().map(|id| (id.as_str(), Vec::new())).collect();
            for (e, p) in events.iter().zip(packed) {
                if let Some(v) = loaded.get_mut(e.user_id.as_str()) {
                    v.push(p);
                }
            }
            // Not cached: the view would lack the pushed items the request path needs.
            out.extend(loaded.into_iter().map(|(id, events)| (id.to_string(), events.into())));
        }
        Ok(out)
    }

    /// `events` packed for this replica's catalogue: an item it does not know yet is interned
    /// (within `engine.max_unknown_items`, else the packed event has no item), and so is a
    /// new kind name. The write lock is taken only when something is new.
    pub(super) fn pack(&self, events: &[Event]) -> Vec<Packed> {
        let known = |catalog: &Catalog, e: &Event| {
            let item = match e.item_id.as_deref() {
                Some(id) => Some(catalog.idx(id)?),
                None => None,
            };
            Some(Packed::new(e, item, catalog.kind_idx(&e.kind)?))
        };
        {
            let catalog = self.catalog.read().expect("catalog lock");
            if let Some(packed) = events.iter().map(|e| known(&catalog, e)).collect::<Option<Vec<Packed>>>() {
                return packed;
            }
        }
        let mut catalog = self.catalog.write().expect("catalog lock");
        events
            .iter()
            .map(|e| {
                let item = e.item_id.as_deref().and_then(|id| self.item_index(&mut catalog, id));
                let kind = catalog.intern_kind(&e.kind);
                Packed::new(e, item, kind)
            })
            .collect()
    }
}
