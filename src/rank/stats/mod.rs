// Over 400 lines: the statistics' state and its bounded-memory rules (observe, prune, caps, sizes) change together.
//! Time-bucketed popularity ("trending"), item-to-item co-occurrence and context counts,
//! shared by the service and the offline evaluation.
//!
//! ## Decay at query time
//!
//! Nothing here stores a decayed value. Every statistic is kept as kind-weighted counts per
//! time bucket (`stats.bucket_minutes`, hourly by default; daily for the context counts),
//! and a query applies the decay function it is given to the buckets' ages. Changing a decay
//! constant in config therefore changes the very next answer, with no rebuild. (A bucket's
//! age is measured from its middle, so ages are exact to ± half a bucket.)
//!
//! What *is* baked in at observation time, and needs a replay of the log to change: the kind
//! weights (each observation carries its weight), the bucket width, the co-occurrence window,
//! and the caps below.
//!
//! ## Bounded memory
//!
//! - Buckets older than `stats.horizon_hours` are dropped (and ignored by queries even
//!   before they are dropped). Buckets older than two days are merged into one per day at
//!   their weighted mean ([`Resolution`]): a series holds at most 48 hourly buckets and one
//!   per older day.
//! - An item's popularity over every event is one series, read by the global segment and by
//!   each category and brand segment the item was observed in (the item counts the same in
//!   all of them): those segments are bounded by the catalogue, one series per item. Each
//!   context segment (device, hour band, day type, country) keeps its own series for at most
//!   `max_items_per_segment` items.
//! - Each item keeps at most `max_neighbours` co-occurring items, each user at most
//!   `max_recent_per_user` recent items (and only those inside the co-occurrence window:
//!   users idle for longer are forgotten at the next bucket). Item-kNN has its own caps
//!   (see [`ItemKnn`]).
//! - Pruning runs by itself whenever an observation opens a new bucket, so memory is bounded
//!   by the number of distinct keys active in one horizon, whatever the length of the log;
//!   between two buckets a segment or source that reaches twice its cap is trimmed to the cap
//!   at once, so a burst inside one bucket is bounded too. When a cap is exceeded, what is kept is the top by recency-weighted mass
//!   `Σ w · (1 − age/horizon)`, a rule that does not depend on any decay constant.
//!
//! ## No look-ahead
//!
//! A query at `now` ignores every bucket that starts after `now` and measures ages from `now`.
//! Stats is fed in time order (the evaluation feeds the log event by event and queries
//! *before* observing the event it predicts; the service observes events as they arrive), so
//! everything it holds at a query is the past. If a caller observes an event later than `now`
//! and then queries at `now`, an observation in the *same* bucket as `now` would be counted:
//! [`Stats::watermark`] tells the latest observation, and queries are exact whenever
//! `now ≥ watermark`, which is how both callers use it. Cached trending and co-occurrence lists
//! (see `stats.cache_ttl_secs`) are reused only at a `now` no earlier than when they were computed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::rank::buckets::{DecayTable, Resolution, Series, trim, trim_keys};
use crate::rank::catalog::{BrandIdx, CatIdx, Catalog, IdxMap, IdxSet, ItemIdx};
use crate::rank::context::{ContextCounts, ContextKey, ContextLifts, ContextView};
use crate::rank::decay::Decay;

mod config;
mod knn;
mod view;
#[cfg(test)]
mod tests;

pub use config::StatsConfig;
pub use knn::ItemKnn;
pub use view::{Popularity, StatsView};
use view::{CacheKey, Cached};

/// A popularity segment: which events an item's popularity counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// Every event.
    Global,
    /// Events that carried this context key (device, hour band, day type, country).
    Context(ContextKey),
    /// Events on items in this category (or a subcategory).
    Category(CatIdx),
    /// Events on items of this brand.
    Brand(BrandIdx),
}

/// One event, as stats sees it.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    pub user: &'a str,
    pub item: ItemIdx,
    /// The item's category and every ancestor, root first (`Catalog::categories`).
    pub categories: &'a [CatIdx],
    pub brand: Option<BrandIdx>,
    /// The kind weight of the event. Events with weight ≤ 0 (dismiss, return) are not
    /// counted: popularity and co-occurrence measure attention, not approval.
    pub weight: f64,
    pub ts: DateTime<Utc>,
    /// The event's context keys (`context::event_keys`).
    pub context: &'a [ContextKey],
}
/// A user as the statistics remember them: a 64-bit hash of their id under a seed drawn for
/// each [`Stats`], so no id is stored (a million users' ids were tens of megabytes) and ids
/// cannot be crafted to collide. Two users who collide anyway (about one chance in ten
/// million among a million users) would share their recent items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserKey(u64);

impl UserKey {
    /// A key under a fixed seed, for tests of the parts that take keys.
    #[cfg(test)]
    pub(crate) fn test(user: &str) -> UserKey {
        use std::hash::BuildHasher;
        UserKey(foldhash::fast::FixedState::default().hash_one(user))
    }
}

/// A user's recently touched item, to pair with the next ones.
#[derive(Clone, Copy, Debug)]
struct Recent {
    item: ItemIdx,
    ts: i64,
    weight: f32,
}

/// Sizes of the statistics, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsSizes {
    pub segments: usize,
    pub segment_items: usize,
    pub items_with_neighbours: usize,
    pub neighbour_pairs: usize,
    pub users: usize,
    pub buckets: usize,
    /// Item-kNN: items with similar items, and (item, similar item) entries.
    pub knn_items: usize,
    pub knn_pairs: usize,
}

/// Popularity, co-occurrence and context counts. See the module documentation.
#[derive(Debug)]
pub struct Stats {
    cfg: StatsConfig,
    width: i64,
    horizon_buckets: i64,
    /// Per item (by index), its popularity over every event on it: the global segment's,
    /// and each category's and brand's it was observed in (an item counts the same in all of
    /// them, so it is kept once).
    items: Vec<Series>,
    /// The items observed in each category and brand segment.
    members: IdxMap<Segment, IdxSet<ItemIdx>>,
    /// Per context segment, its items' popularity (events with that context only).
    pop: IdxMap<Segment, IdxMap<ItemIdx, Series>>,
    /// How finely series keep their past (see [`Resolution`]).
    res: Resolution,
    /// Popularity of each event's leaf category.
    leaf_pop: IdxMap<CatIdx, Series>,
    cooc: IdxMap<ItemIdx, IdxMap<ItemIdx, Series>>,
    recent: IdxMap<UserKey, VecDeque<Recent>>,
    /// The seed of [`UserKey`]s.
    user_seed: foldhash::fast::RandomState,
    /// Context counts (daily buckets), from which context lifts are estimated.
    context: ContextCounts,
    /// Item-kNN co-touch counts (daily buckets).
    knn: ItemKnn,
    watermark: Option<DateTime<Utc>>,
    last_prune_bucket: i64,
    /// Bucket of the last full prune (every series scanned), see [`Stats::observe`].
    last_full_prune_bucket: i64,
    /// Popularity segments and co-occurrence sources written since the last prune: the caps
    /// are enforced on them at every new bucket without scanning everything.
    dirty_segments: IdxSet<Segment>,
    dirty_sources: IdxSet<ItemIdx>,
    observed: u64,
    cache: Mutex<IdxMap<CacheKey, Cached>>,
    /// `CacheKey::Neighbours` entries, apart: there are many more of them, and clearing
    /// them when full must not drop the segment scores.
    neighbour_cache: Mutex<IdxMap<CacheKey, Cached>>,
}

impl Stats {
    /// Empty statistics. `cfg` should have passed [`StatsConfig::validate`]; out-of-range
    /// values are clamped to something usable.
    pub fn new(cfg: StatsConfig) -> Self {
        let width = i64::from(cfg.bucket_minutes.clamp(1, 1440)) * 60;
        let horizon_buckets = ((cfg.horizon_hours.max(0.0) * 3600.0) / width as f64).ceil().max(1.0) as i64;
        Stats {
            knn: ItemKnn::new(&cfg),
            cfg,
            width,
            horizon_buckets,
            items: Vec::new(),
            members: IdxMap::default(),
            pop: IdxMap::default(),
            res: Resolution::for_width(width),
            leaf_pop: IdxMap::default(),
            cooc: IdxMap::default(),
            recent: IdxMap::default(),
            user_seed: foldhash::fast::RandomState::default(),
            context: ContextCounts::new(horizon_buckets * width),
            watermark: None,
            last_prune_bucket: i64::MIN,
            last_full_prune_bucket: i64::MIN,
            dirty_segments: IdxSet::default(),
            dirty_sources: IdxSet::default(),
            observed: 0,
            cache: Mutex::new(IdxMap::default()),
            neighbour_cache: Mutex::new(IdxMap::default()),
        }
    }

    /// The settings these statistics were built with.
    pub fn config(&self) -> &StatsConfig {
        &self.cfg
    }

    /// The latest timestamp observed. Queries at `now ≥ watermark` see exactly the past.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.watermark
    }

    /// Number of observations counted (weight > 0).
    pub fn observed(&self) -> u64 {
        self.observed
    }

    fn bucket_of(&self, ts: DateTime<Utc>) -> u32 {
        u32::try_from(ts.timestamp().div_euclid(self.width).max(0)).unwrap_or(u32::MAX)
    }

    /// Counts one event. Meant to be fed in time order; a late event lands in its own bucket.
    pub fn observe(&mut self, o: &Observation<'_>) {
        if !(o.weight > 0.0 && o.weight.is_finite()) {
            return;
        }
        let bucket = self.bucket_of(o.ts);
        if i64::from(bucket) > self.last_prune_bucket {
            // At each new bucket the caps are enforced where something was written; every
            // series is scanned for expired buckets only every eighth of the horizon, since
            // queries ignore buckets past the horizon anyway. Scanning everything at every
            // bucket made folding a long log quadratic.
            if self.last_prune_bucket == i64::MIN {
                self.last_full_prune_bucket = i64::from(bucket);
            } else if i64::from(bucket) - self.last_full_prune_bucket >= (self.horizon_buckets / 8).max(1) {
                self.prune(o.ts);
            } else {
                self.prune_written(o.ts);
            }
            self.last_prune_bucket = i64::from(bucket);
        }
        let w = o.weight as f32;
        // A map past twice its cap is trimmed to the cap at once: between two buckets a burst
        // of distinct items (or pairs) must not grow memory without bound.
        let (now_bucket, hb) = (i64::from(bucket), self.horizon_buckets);
        let oldest = now_bucket - hb;
        let cap_items = self.cfg.max_items_per_segment.max(1);
        let res = self.res;
        let at = o.item.0 as usize;
        if self.items.len() <= at {
            self.items.resize_with(at + 1, Series::default);
        }
        self.items[at].add_at(bucket, w, res);
        for seg in o.categories.iter().map(|&c| Segment::Category(c)).chain(o.brand.map(Segment::Brand)) {
            self.members.entry(seg).or_default().insert(o.item);
        }
        for &k in o.context {
            let seg = Segment::Context(k);
            let items = self.pop.entry(seg).or_default();
            items.entry(o.item).or_default().add_at(bucket, w, res);
            if items.len() > 2 * cap_items {
                trim(items, oldest, cap_items, now_bucket, hb);
            }
            self.dirty_segments.insert(seg);
        }
        if let Some(&leaf) = o.categories.last() {
            self.leaf_pop.entry(leaf).or_default().add_at(bucket, w, res);
        }

        self.context.observe(o.categories, o.context, w, o.ts);
        let user = self.key(o.user);
        self.knn.observe(user, o.item, o.ts);

        self.observe_cooccurrence(o, user, bucket, w);
        self.watermark = Some(self.watermark.map_or(o.ts, |m| m.max(o.ts)));
        self.observed += 1;
    }

    fn key(&self, user: &str) -> UserKey {
        use std::hash::BuildHasher;
        UserKey(self.user_seed.hash_one(user))
    }

    fn observe_cooccurrence(&mut self, o: &Observation<'_>, user: UserKey, bucket: u32, w: f32) {
        let window = (self.cfg.cooccurrence_window_minutes * 60.0) as i64;
        let ts = o.ts.timestamp();
        let list = self.recent.entry(user).or_default();
        list.retain(|r| r.item != o.item && (ts - r.ts).abs() <= window);
        let (now_bucket, hb) = (i64::from(bucket), self.horizon_buckets);
        let cap = self.cfg.max_neighbours.max(1);
        for r in list.iter() {
            // Geometric mean of the two kind weights: two purchases weigh more than two views.
            let pw = (w * r.weight).sqrt();
            for (a, b) in [(o.item, r.item), (r.item, o.item)] {
                let ns = self.cooc.entry(a).or_default();
                ns.entry(b).or_default().add_at(bucket, pw, self.res);
                // As in `observe`: a source past twice its cap is trimmed at once.
                if ns.len() > 2 * cap {
                    trim(ns, now_bucket - hb, cap, now_bucket, hb);
                }
                self.dirty_sources.insert(a);
            }
        }
        list.push_back(Recent { item: o.item, ts, weight: w });
        while list.len() > self.cfg.max_recent_per_user.max(1) {
            list.pop_front();
        }
    }

    /// Drops what is older than the horizon at `now` and enforces every cap. Runs by itself
    /// from `observe` every eighth of the horizon (and [`Stats::prune_written`] at each new
    /// bucket); callers may run it more often.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        self.dirty_segments.clear();
        self.dirty_sources.clear();
        let now_bucket = now.timestamp().div_euclid(self.width);
        self.last_full_prune_bucket = now_bucket;
        let oldest = now_bucket - self.horizon_buckets;
        let hb = self.horizon_buckets;
        let cap_items = self.cfg.max_items_per_segment.max(1);
        self.pop.retain(|_, items| !trim(items, oldest, cap_items, now_bucket, hb));
        let mut emptied = false;
        for s in &mut self.items {
            emptied |= s.len() > 0 && s.prune(oldest);
        }
        if emptied {
            let items = &self.items;
            self.members.retain(|_, set| {
                set.retain(|i| items[i.0 as usize].len() > 0);
                !set.is_empty()
            });
        }
        self.leaf_pop.retain(|_, s| !s.prune(oldest));
        let cap_n = self.cfg.max_neighbours.max(1);
        self.cooc.retain(|_, ns| !trim(ns, oldest, cap_n, now_bucket, hb));
        self.forget_past_window(now);
        self.context.prune(now);
        self.clear_caches();
    }

    /// Drops users' recent items older than the co-occurrence window (they pair with nothing
    /// any more), and users left with none: at each new bucket, so that only the users active
    /// within about a bucket and a window are remembered.
    fn forget_past_window(&mut self, now: DateTime<Utc>) {
        let window = (self.cfg.cooccurrence_window_minutes * 60.0) as i64;
        let now_s = now.timestamp();
        self.recent.retain(|_, l| {
            l.retain(|r| now_s - r.ts <= window);
            !l.is_empty()
        });
    }

    /// [`Stats::prune`] limited to the segments and co-occurrence sources written since the
    /// last prune: expired buckets dropped and caps enforced there.
    fn prune_written(&mut self, now: DateTime<Utc>) {
        let now_bucket = now.timestamp().div_euclid(self.width);
        let oldest = now_bucket - self.horizon_buckets;
        let hb = self.horizon_buckets;
        let (segments, sources) = (std::mem::take(&mut self.dirty_segments), std::mem::take(&mut self.dirty_sources));
        trim_keys(&mut self.pop, segments, oldest, self.cfg.max_items_per_segment.max(1), now_bucket, hb);
        trim_keys(&mut self.cooc, sources, oldest, self.cfg.max_neighbours.max(1), now_bucket, hb);
        self.forget_past_window(now);
        self.clear_caches();
    }

    fn clear_caches(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.neighbour_cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.context.clear_cache();
    }

    /// The smoothed context lifts of every category of `catalog` at `now` with smoothing
    /// strength `prior`, reused for `cache_ttl_secs` (see [`ContextCounts::lifts`]).
    pub fn context_lifts(&self, now: DateTime<Utc>, catalog: &Catalog, prior: f64) -> Arc<ContextLifts> {
        self.context.lifts(now, catalog, prior, self.cfg.cache_ttl_secs)
    }

    /// Forgets what is kept about one user (their recent items, paired with their next ones):
    /// an erased user leaves only anonymous counts behind.
    pub fn forget_user(&mut self, user: &str) {
        let user = self.key(user);
        self.recent.remove(&user);
        self.knn.forget_user(user);
    }

    /// Whether anything is kept about `user` (tests of erasure).
    pub fn remembers(&self, user: &str) -> bool {
        let user = self.key(user);
        self.recent.contains_key(&user) || self.knn.remembers(user)
    }

    /// A read view for queries at `now` with `decay` (popularity, co-occurrence).
    pub fn view(&self, now: DateTime<Utc>, decay: &Decay) -> StatsView<'_> {
        StatsView {
            stats: self,
            now,
            decay_key: decay.cache_key(),
            table: DecayTable::new(now, self.width, self.horizon_buckets, decay),
            knn_table: self.knn.table(now, decay),
        }
    }

    /// A read view of the context counts at `now` (undecayed, over the horizon).
    pub fn context_view(&self, now: DateTime<Utc>) -> ContextView<'_> {
        self.context.view(now)
    }

    /// Top `n` items of a segment at `now` under `decay` (shorthand for `view(..).trending`).
    pub fn trending(&self, segment: Segment, now: DateTime<Utc>, decay: &Decay, n: usize) -> Vec<(ItemIdx, f64)> {
        self.view(now, decay).trending(segment, n)
    }

    /// Top `n` co-occurring items of `item` at `now` under `decay`.
    pub fn neighbours(&self, item: ItemIdx, now: DateTime<Utc>, decay: &Decay, n: usize) -> Vec<(ItemIdx, f64)> {
        self.view(now, decay).neighbours(item, n)
    }

    /// How much is held, for metrics and memory tests.
    pub fn sizes(&self) -> StatsSizes {
        let mut s = StatsSizes { segments: 1 + self.members.len() + self.pop.len(), users: self.recent.len(), ..Default::default() };
        for series in &self.items {
            s.segment_items += usize::from(series.len() > 0);
            s.buckets += series.len();
        }
        for items in self.pop.values() {
            s.segment_items += items.len();
            s.buckets += items.values().map(|x| x.len()).sum::<usize>();
        }
        s.items_with_neighbours = self.cooc.len();
        for ns in self.cooc.values() {
            s.neighbour_pairs += ns.len();
            s.buckets += ns.values().map(|x| x.len()).sum::<usize>();
        }
        s.buckets += self.context.buckets();
        (s.knn_items, s.knn_pairs) = self.knn.sizes();
        s
    }
}
