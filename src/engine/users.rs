//! One replica's cache of user views (recent events, time zone, items pushed recently),
//! bounded in users (`engine.history_cache_users`, least recently used dropped first) and in
//! events per user (`engine.max_events_per_user`, newest kept).
//!
//! Built to hold a million shoppers on one machine. The events are held packed ([`Packed`]:
//! 12 bytes each, items and kinds as catalogue indices) and ranking reads them as they are.
//! The entries lie in one vector, found through a table of their positions hashed by user id
//! (4 bytes a slot, where a map keyed by the id took 60), and keep no derived data (a profile
//! is built from the packed events at each request, which costs less than its memory would).
//! A cached shopper with twenty events takes about 330 bytes; with full events and a map it
//! was about 10 KB.
//!
//! The cache is keyed by user only, so it must never hold what one request's parameters
//! chose: entries are always loaded for the service clock's now. A request `at` a past time
//! (more than [`TIME_TRAVEL`] before now) reads the store for that moment and caches nothing.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use hashbrown::HashTable;

use super::{Engine, HISTORY_TTL, History, UserView};
use crate::domain::{Event, User};
use crate::push::frequency::PushState;
use crate::rank::catalog::Catalog;
use crate::rank::history::{HistoryEvent, Packed};
use crate::store::StoreResult;

/// A request this far before the service's now is answered from the store, uncached.
pub const TIME_TRAVEL: TimeDelta = TimeDelta::minutes(5);

/// One cached user (56 bytes, plus the packed events and the id).
struct Slot {
    id: Box<str>,
    events: Arc<[Packed]>,
    /// Items recently pushed to the user; `None` when there are none (most users).
    pushed: Option<Arc<HashSet<String>>>,
    timezone: Option<Tz>,
    event_zone: Option<Tz>,
    /// When the entry was loaded and last used, in seconds since the cache's epoch.
    loaded: u32,
    used: u32,
}

/// The entries, and the table of their positions by the hash of their ids.
#[derive(Default)]
struct Slots {
    slots: Vec<Slot>,
    index: HashTable<u32>,
    seed: foldhash::fast::RandomState,
}

impl Slots {
    fn position(&self, id: &str) -> Option<usize> {
        let slots = &self.slots;
        self.index.find(self.seed.hash_one(id), |&i| *slots[i as usize].id == *id).map(|&i| i as usize)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Slot> {
        self.position(id).map(|i| &mut self.slots[i])
    }

    /// Adds or replaces the entry of `slot.id`.
    fn insert(&mut self, slot: Slot) {
        if let Some(i) = self.position(&slot.id) {
            self.slots[i] = slot;
            return;
        }
        if self.slots.len() == self.slots.capacity() {
            // Grow by an eighth, not double: a million entries are tens of megabytes.
            self.slots.reserve_exact(self.slots.len() / 8 + 16);
        }
        let (slots, seed) = (&self.slots, &self.seed);
        let at = u32::try_from(slots.len()).expect("fewer than 2^32 cached users");
        self.index.insert_unique(seed.hash_one(&*slot.id), at, |&i| seed.hash_one(&*slots[i as usize].id));
        self.slots.push(slot);
    }

    fn remove(&mut self, id: &str) {
        let (slots, seed) = (&self.slots, &self.seed);
        let Ok(entry) = self.index.find_entry(seed.hash_one(id), |&i| *slots[i as usize].id == *id) else { return };
        let (at, _) = entry.remove();
        // The last entry moves into the freed place.
        let last = slots.len() - 1;
        if at as usize != last
            && let Some(moved) = self.index.find_mut(seed.hash_one(&*slots[last].id), |&i| i as usize == last)
        {
            *moved = at;
        }
        self.slots.swap_remove(at as usize);
    }

    /// Keeps the entries `keep` says to keep, and indexes them again.
    fn retain(&mut self, keep: impl FnMut(&Slot) -> bool) {
        self.slots.retain(keep);
        self.slots.shrink_to(self.slots.len() + self.slots.len() / 8);
        let (slots, seed) = (&self.slots, &self.seed);
        self.index.clear();
        for (n, s) in slots.iter().enumerate() {
            self.index.insert_unique(seed.hash_one(&*s.id), n as u32, |&i| seed.hash_one(&*slots[i as usize].id));
        }
    }
}

/// The cached views. See the module documentation.
pub(super) struct UserCache {
    slots: Mutex<Slots>,
    epoch: Instant,
    /// The pushed items of a view that has none.
    no_items: Arc<HashSet<String>>,
    capacity: usize,
    max_events: usize,
}

impl UserCache {
    pub(super) fn new(capacity: usize, max_events: usize) -> Self {
        UserCache {
            slots: Mutex::new(Slots::default()),
            epoch: Instant::now(),
            no_items: Arc::default(),
            capacity: capacity.max(1),
            max_events: max_events.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().expect("user cache lock")
    }

    fn seconds(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// The user's view when cached and younger than [`HISTORY_TTL`].
    fn fresh(&self, user_id: &str) -> Option<UserView> {
        let now = self.seconds();
        let mut slots = self.lock();
        let c = slots.get_mut(user_id).filter(|c| u64::from(now - c.loaded) < HISTORY_TTL.as_secs())?;
        c.used = now;
        Some(UserView {
            events: c.events.clone(),
            event_zone: c.event_zone,
            timezone: c.timezone,
            pushed: c.pushed.clone().unwrap_or_else(|| self.no_items.clone()),
        })
    }

    fn insert(&self, user_id: &str, view: &UserView) {
        let mut slots = self.lock();
        if slots.slots.len() >= self.capacity && slots.position(user_id).is_none() {
            // Drop the least recently used eighth at once, so eviction is rare.
            let mut used: Vec<u32> = slots.slots.iter().map(|c| c.used).collect();
            let cut = (used.len() / 8).max(1).min(used.len() - 1);
            let (_, &mut threshold, _) = used.select_nth_unstable(cut);
            slots.retain(|c| c.used > threshold);
            metrics::counter!("kairos_history_cache_evictions_total").increment(1);
        }
        let now = self.seconds();
        slots.insert(Slot {
            id: user_id.into(),
            events: view.events.clone(),
            pushed: (!view.pushed.is_empty()).then(|| view.pushed.clone()),
            timezone: view.timezone,
            event_zone: view.event_zone,
            loaded: now,
            used: now,
        });
    }

    pub(super) fn remove(&self, user_id: &str) {
        self.lock().remove(user_id);
    }

    pub(super) fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// The newest `max_events` of `events`.
    fn bounded<'e>(&self, events: &'e [Event]) -> &'e [Event] {
        &events[events.len().saturating_sub(self.max_events)..]
    }

    /// Adds `events` (packed, with their users and device zones) to the cached histories of
    /// their users (those cached), in time order, skipping any already there (this replica's
    /// commits arrive twice: at commit time and from the log), and keeps each history within
    /// `max_events`. A zone named by a user's newest event becomes their event zone.
    ///
    /// A packed event has no id, so "already there" means an event of the same user with the
    /// same time (to the microsecond), item, kind and device: two such events sent apart are
    /// counted once here until the entry is read again from the store.
    pub(super) fn append<'e>(&self, events: impl IntoIterator<Item = (&'e str, Packed, Option<Tz>)>) {
        let mut slots = self.lock();
        for (user, p, zone) in events {
            let Some(c) = slots.get_mut(user) else { continue };
            let v = &c.events;
            let ts = p.ts();
            let from = v.partition_point(|x| x.ts() < ts);
            let to = v.partition_point(|x| x.ts() <= ts);
            if v[from..to].contains(&p) {
                continue;
            }
            if to == v.len() && zone.is_some() {
                c.event_zone = zone;
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
        let kept = self.users.bounded(&rows.events[..past]);
        let History { events, event_zone } = self.history_of(kept);
        let tuning = self.tuning.get();
        let pushed: HashSet<String> = rows
            .push_state
            .and_then(|v| serde_json::from_value::<PushState>(v).ok())
            .map(|s| s.blocked_items(read_at, &tuning.frequency).into_iter().collect())
            .unwrap_or_default();
        let view = UserView { events, event_zone, timezone: rows.timezone, pushed: Arc::new(pushed) };
        if !travel {
            self.users.insert(user_id, &view);
        }
        Ok(view)
    }

    /// Histories of many users at once: cached ones from memory, the rest in one query.
    pub async fn histories_for(&self, users: &[User], now: DateTime<Utc>) -> StoreResult<HashMap<String, History>> {
        let mut out = HashMap::with_capacity(users.len());
        let mut missing = Vec::new();
        for u in users {
            match self.users.fresh(&u.user_id) {
                Some(view) => {
                    out.insert(u.user_id.clone(), History { events: view.events, event_zone: view.event_zone });
                }
                None => missing.push(u.user_id.clone()),
            }
        }
        if !missing.is_empty() {
            let limit = self.users.max_events as i64;
            let events = self.store.users_events(&missing, now - self.horizon(), limit).await?;
            let mut loaded: HashMap<&str, Vec<Event>> = missing.iter().map(|id| (id.as_str(), Vec::new())).collect();
            for e in events {
                if let Some(v) = loaded.get_mut(e.user_id.as_str()) {
                    v.push(e);
                }
            }
            // Not cached: the view would lack the pushed items the request path needs.
            out.extend(loaded.into_iter().map(|(id, events)| (id.to_string(), self.history_of(&events))));
        }
        Ok(out)
    }

    /// A user's `events` (oldest first) as the cache holds them: packed, with the zone the
    /// newest of them to name one named.
    fn history_of(&self, events: &[Event]) -> History {
        let event_zone = events.iter().rev().find_map(|e| e.context.timezone.as_deref().and_then(|z| z.parse().ok()));
        History { events: self.pack(events).into(), event_zone }
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
