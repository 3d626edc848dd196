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
//!   before they are dropped).
//! - Each popularity segment keeps at most `max_items_per_segment` items, each item at most
//!   `max_neighbours` co-occurring items, each user at most `max_recent_per_user` recent items
//!   (and only those inside the co-occurrence window).
//! - Pruning runs by itself whenever an observation opens a new bucket, so memory is bounded
//!   by the number of distinct keys active in one horizon, whatever the length of the log.
//!   When a cap is exceeded, what is kept is the top by recency-weighted mass
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
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rank::catalog::{BrandIdx, CatIdx, Catalog, IdxMap, IdxSet, ItemIdx, StrMap};
use crate::rank::context::{ContextKey, ContextLifts};
use crate::rank::decay::Decay;

/// Width of the context-count buckets: one day (context patterns move slowly).
const CONTEXT_BUCKET_SECS: i64 = 86_400;
/// The neighbour cache is cleared when it holds this many items' lists (each at most
/// `max_neighbours` entries of 16 bytes: about 26 MB at the default 50).
const NEIGHBOUR_CACHE_MAX_KEYS: usize = 32_768;
/// The score cache is cleared when it holds more entries than this.
const CACHE_MAX_KEYS: usize = 4096;

/// Settings of the statistics. Changing any of them needs a rebuild (a replay of the log);
/// decay constants are not among them (they are applied at query time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// Width of a popularity / co-occurrence time bucket, in minutes.
    pub bucket_minutes: u32,
    /// Statistics older than this are dropped, in hours.
    pub horizon_hours: f64,
    /// Two items touched by the same user within this many minutes co-occur.
    pub cooccurrence_window_minutes: f64,
    /// Co-occurring items kept per item (the top by recency-weighted count).
    pub max_neighbours: usize,
    /// Items kept per popularity segment (global, each context key, category, brand).
    pub max_items_per_segment: usize,
    /// Recent items remembered per user, to pair with the next ones.
    pub max_recent_per_user: usize,
    /// How long computed trending lists, segment scores, co-occurrence lists and context lifts
    /// may be reused, in seconds (0: never cached).
    pub cache_ttl_secs: f64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            bucket_minutes: 60,
            horizon_hours: 14.0 * 24.0,
            cooccurrence_window_minutes: 60.0,
            max_neighbours: 50,
            max_items_per_segment: 10_000,
            max_recent_per_user: 30,
            cache_ttl_secs: 30.0,
        }
    }
}

impl StatsConfig {
    /// Checks every value; errors name the key under `stats.`.
    pub fn validate(&self) -> Result<(), String> {
        if self.bucket_minutes == 0 || self.bucket_minutes > 24 * 60 {
            return Err(format!("stats.bucket_minutes must be in 1..=1440 (got {})", self.bucket_minutes));
        }
        for (key, v) in [("horizon_hours", self.horizon_hours), ("cooccurrence_window_minutes", self.cooccurrence_window_minutes)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("stats.{key} must be > 0 and finite (got {v})"));
            }
        }
        if self.horizon_hours * 60.0 < f64::from(self.bucket_minutes) {
            return Err("stats.horizon_hours must cover at least one bucket (stats.bucket_minutes)".into());
        }
        for (key, v) in [
            ("max_neighbours", self.max_neighbours),
            ("max_items_per_segment", self.max_items_per_segment),
            ("max_recent_per_user", self.max_recent_per_user),
        ] {
            if v == 0 {
                return Err(format!("stats.{key} must be ≥ 1"));
            }
        }
        if !(self.cache_ttl_secs.is_finite() && self.cache_ttl_secs >= 0.0) {
            return Err(format!("stats.cache_ttl_secs must be ≥ 0 (got {})", self.cache_ttl_secs));
        }
        Ok(())
    }
}

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

/// Kind-weighted counts per time bucket, oldest first. Buckets are indices since the Unix
/// epoch (`ts / width`).
#[derive(Clone, Debug, Default)]
struct Series(Vec<(u32, f32)>);

impl Series {
    #[inline]
    fn add(&mut self, bucket: u32, w: f32) {
        match self.0.last_mut() {
            Some((b, v)) if *b == bucket => *v += w,
            Some((b, _)) if *b > bucket => match self.0.binary_search_by_key(&bucket, |&(b, _)| b) {
                Ok(i) => self.0[i].1 += w,
                Err(i) => self.0.insert(i, (bucket, w)),
            },
            _ => self.0.push((bucket, w)),
        }
    }

    /// Decayed sum, as seen from the table's `now`.
    #[inline]
    fn sum(&self, table: &DecayTable) -> f64 {
        let mut s = 0.0;
        for &(b, w) in self.0.iter().rev() {
            let b = i64::from(b);
            if b > table.now_bucket {
                continue;
            }
            let Some(&d) = table.w.get((table.now_bucket - b) as usize) else { break };
            s += f64::from(w) * d;
        }
        s
    }

    /// Drops buckets before `oldest`; true if nothing is left.
    fn prune(&mut self, oldest: i64) -> bool {
        let keep_from = self.0.partition_point(|&(b, _)| i64::from(b) < oldest);
        if keep_from > 0 {
            self.0.drain(..keep_from);
        }
        self.0.is_empty()
    }

    /// `Σ w · (1 − age/horizon)`: the decay-independent rank used to evict over caps.
    fn recency_mass(&self, now_bucket: i64, horizon_buckets: i64) -> f64 {
        let h = horizon_buckets.max(1) as f64;
        self.0
            .iter()
            .map(|&(b, w)| f64::from(w) * (1.0 - ((now_bucket - i64::from(b)).max(0) as f64 / h)).max(0.0))
            .sum()
    }
}

/// Decay weight per bucket age, computed once per query.
#[derive(Clone, Debug)]
struct DecayTable {
    now_bucket: i64,
    /// `w[i]`: weight of bucket `now_bucket − i`; empty beyond the horizon.
    w: Vec<f64>,
}

impl DecayTable {
    fn new(now: DateTime<Utc>, width: i64, horizon_buckets: i64, decay: &Decay) -> Self {
        let now_s = now.timestamp();
        let now_bucket = now_s.div_euclid(width);
        let offset = now_s.rem_euclid(width) as f64;
        let len = (horizon_buckets + 1).max(1) as usize;
        let half = width as f64 / 2.0;
        let age = |i: usize| offset + (i as f64) * width as f64 - half;
        let w = match *decay {
            // Same values as `Decay::weight`, by recurrence (one exp instead of `len`).
            Decay::Exponential { half_life_hours } => {
                let rate = std::f64::consts::LN_2 / (half_life_hours * 3600.0);
                let step = (-rate * width as f64).exp();
                let mut w = Vec::with_capacity(len);
                // Bucket 0's middle may lie ahead of `now`: its age is clamped to 0.
                w.push(decay.weight(age(0)));
                let mut cur = decay.weight(age(1).max(0.0));
                for _ in 1..len {
                    w.push(cur);
                    cur *= step;
                }
                w
            }
            _ => (0..len).map(|i| decay.weight(age(i))).collect(),
        };
        DecayTable { now_bucket, w }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum CacheKey {
    Trending(Segment, (u8, u64, u64)),
    Categories((u8, u64, u64)),
    /// The co-occurring items of one item.
    Neighbours(ItemIdx, (u8, u64, u64)),
}

#[derive(Clone, Debug)]
struct Cached {
    at: DateTime<Utc>,
    scores: Arc<Scores>,
}

/// Decayed scores of the entries of one segment (or of the leaf categories) at one time.
#[derive(Debug, Default)]
struct Scores {
    /// Entries with a positive score, best first (every one when cached, else the top asked for).
    ranked: Vec<(u32, f64)>,
    /// The same scores indexed by key, built on the first [`Scores::of`] (only segments
    /// scored item by item need it). `f32`: half the cache lines of a 100 k-item segment.
    dense: OnceLock<Vec<f32>>,
}

impl Scores {
    fn new(ranked: Vec<(u32, f64)>) -> Scores {
        Scores { ranked, dense: OnceLock::new() }
    }

    /// The score of `key` (0 when it has none).
    fn of(&self, key: u32) -> f64 {
        let dense = self.dense.get_or_init(|| {
            let mut v = vec![0.0; self.ranked.iter().map(|&(k, _)| k as usize + 1).max().unwrap_or(0)];
            for &(k, s) in &self.ranked {
                v[k as usize] = s as f32;
            }
            v
        });
        dense.get(key as usize).map_or(0.0, |&s| f64::from(s))
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
}

/// Popularity, co-occurrence and context counts. See the module documentation.
#[derive(Debug)]
pub struct Stats {
    cfg: StatsConfig,
    width: i64,
    horizon_buckets: i64,
    pop: IdxMap<Segment, IdxMap<ItemIdx, Series>>,
    /// Popularity of each event's leaf category.
    leaf_pop: IdxMap<CatIdx, Series>,
    cooc: IdxMap<ItemIdx, IdxMap<ItemIdx, Series>>,
    recent: StrMap<Box<str>, VecDeque<Recent>>,
    ctx_total: Series,
    ctx_key: IdxMap<ContextKey, Series>,
    ctx_cat: IdxMap<CatIdx, Series>,
    ctx_pair: IdxMap<(CatIdx, ContextKey), Series>,
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
    /// Context lifts, computed at most `cache_ttl_secs` earlier.
    ctx_lifts: Mutex<Option<(DateTime<Utc>, Arc<ContextLifts>)>>,
}

impl Stats {
    /// Empty statistics. `cfg` should have passed [`StatsConfig::validate`]; out-of-range
    /// values are clamped to something usable.
    pub fn new(cfg: StatsConfig) -> Self {
        let width = i64::from(cfg.bucket_minutes.clamp(1, 1440)) * 60;
        let horizon_buckets = ((cfg.horizon_hours.max(0.0) * 3600.0) / width as f64).ceil().max(1.0) as i64;
        Stats {
            cfg,
            width,
            horizon_buckets,
            pop: IdxMap::default(),
            leaf_pop: IdxMap::default(),
            cooc: IdxMap::default(),
            recent: StrMap::default(),
            ctx_total: Series::default(),
            ctx_key: IdxMap::default(),
            ctx_cat: IdxMap::default(),
            ctx_pair: IdxMap::default(),
            watermark: None,
            last_prune_bucket: i64::MIN,
            last_full_prune_bucket: i64::MIN,
            dirty_segments: IdxSet::default(),
            dirty_sources: IdxSet::default(),
            observed: 0,
            cache: Mutex::new(IdxMap::default()),
            neighbour_cache: Mutex::new(IdxMap::default()),
            ctx_lifts: Mutex::new(None),
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
        let mut add_pop = |seg: Segment| {
            self.pop.entry(seg).or_default().entry(o.item).or_default().add(bucket, w);
            self.dirty_segments.insert(seg);
        };
        add_pop(Segment::Global);
        for &k in o.context {
            add_pop(Segment::Context(k));
        }
        for &c in o.categories {
            add_pop(Segment::Category(c));
        }
        if let Some(b) = o.brand {
            add_pop(Segment::Brand(b));
        }
        if let Some(&leaf) = o.categories.last() {
            self.leaf_pop.entry(leaf).or_default().add(bucket, w);
        }

        let day = u32::try_from(o.ts.timestamp().div_euclid(CONTEXT_BUCKET_SECS).max(0)).unwrap_or(u32::MAX);
        self.ctx_total.add(day, w);
        for &k in o.context {
            self.ctx_key.entry(k).or_default().add(day, w);
        }
        for &c in o.categories {
            self.ctx_cat.entry(c).or_default().add(day, w);
            for &k in o.context {
                self.ctx_pair.entry((c, k)).or_default().add(day, w);
            }
        }

        self.observe_cooccurrence(o, bucket, w);
        self.watermark = Some(self.watermark.map_or(o.ts, |m| m.max(o.ts)));
        self.observed += 1;
    }

    fn observe_cooccurrence(&mut self, o: &Observation<'_>, bucket: u32, w: f32) {
        let window = (self.cfg.cooccurrence_window_minutes * 60.0) as i64;
        let ts = o.ts.timestamp();
        let list = match self.recent.get_mut(o.user) {
            Some(l) => l,
            None => self.recent.entry(o.user.into()).or_default(),
        };
        list.retain(|r| r.item != o.item && (ts - r.ts).abs() <= window);
        for r in list.iter() {
            // Geometric mean of the two kind weights: two purchases weigh more than two views.
            let pw = (w * r.weight).sqrt();
            self.cooc.entry(o.item).or_default().entry(r.item).or_default().add(bucket, pw);
            self.cooc.entry(r.item).or_default().entry(o.item).or_default().add(bucket, pw);
            self.dirty_sources.insert(o.item);
            self.dirty_sources.insert(r.item);
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
        self.leaf_pop.retain(|_, s| !s.prune(oldest));
        let cap_n = self.cfg.max_neighbours.max(1);
        self.cooc.retain(|_, ns| !trim(ns, oldest, cap_n, now_bucket, hb));
        let window = (self.cfg.cooccurrence_window_minutes * 60.0) as i64;
        let now_s = now.timestamp();
        self.recent.retain(|_, l| {
            l.retain(|r| now_s - r.ts <= window);
            !l.is_empty()
        });
        let oldest_day = (now.timestamp() - (self.horizon_buckets * self.width)).div_euclid(CONTEXT_BUCKET_SECS);
        self.ctx_total.prune(oldest_day);
        self.ctx_key.retain(|_, s| !s.prune(oldest_day));
        self.ctx_cat.retain(|_, s| !s.prune(oldest_day));
        self.ctx_pair.retain(|_, s| !s.prune(oldest_day));
        self.clear_caches();
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
        self.clear_caches();
    }

    fn clear_caches(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.neighbour_cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *self.ctx_lifts.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The smoothed context lifts of every category of `catalog` at `now` with smoothing
    /// strength `prior`: computed from [`Stats::context_view`], or reused when computed at
    /// most `cache_ttl_secs` before `now` (never after it) with the same prior and catalogue
    /// size.
    pub fn context_lifts(&self, now: DateTime<Utc>, catalog: &Catalog, prior: f64) -> Arc<ContextLifts> {
        let ttl = self.cfg.cache_ttl_secs;
        if ttl > 0.0
            && let Some((at, lifts)) = self.ctx_lifts.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && (0.0..=ttl).contains(&crate::rank::decay::age_secs(now, *at))
            && lifts.prior() == prior.max(1e-9)
            && lifts.categories() == catalog.category_count()
        {
            return lifts.clone();
        }
        let lifts = Arc::new(ContextLifts::compute(&self.context_view(now), catalog, prior));
        if ttl > 0.0 {
            *self.ctx_lifts.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, lifts.clone()));
        }
        lifts
    }

    /// A read view for queries at `now` with `decay` (popularity, co-occurrence).
    pub fn view(&self, now: DateTime<Utc>, decay: &Decay) -> StatsView<'_> {
        StatsView {
            stats: self,
            now,
            decay_key: decay.cache_key(),
            table: DecayTable::new(now, self.width, self.horizon_buckets, decay),
        }
    }

    /// A read view of the context counts at `now` (undecayed, over the horizon).
    pub fn context_view(&self, now: DateTime<Utc>) -> ContextView<'_> {
        // Exactly the days `prune` keeps at `now`, whenever it last ran.
        let now_s = now.timestamp();
        let days = now_s.div_euclid(CONTEXT_BUCKET_SECS)
            - (now_s - self.horizon_buckets * self.width).div_euclid(CONTEXT_BUCKET_SECS);
        ContextView { stats: self, table: DecayTable::new(now, CONTEXT_BUCKET_SECS, days, &Decay::None) }
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
        let mut s = StatsSizes { segments: self.pop.len(), users: self.recent.len(), ..Default::default() };
        for items in self.pop.values() {
            s.segment_items += items.len();
            s.buckets += items.values().map(|x| x.0.len()).sum::<usize>();
        }
        s.items_with_neighbours = self.cooc.len();
        for ns in self.cooc.values() {
            s.neighbour_pairs += ns.len();
            s.buckets += ns.values().map(|x| x.0.len()).sum::<usize>();
        }
        s.buckets += self.ctx_pair.values().map(|x| x.0.len()).sum::<usize>();
        s
    }
}

/// Keeps the `cap` entries of `map` with the largest recency-weighted mass.
/// Drops the buckets of `map` before `oldest` and its entries over `cap`; true if it is empty.
fn trim<K: Copy + Eq + std::hash::Hash + Ord>(map: &mut IdxMap<K, Series>, oldest: i64, cap: usize, now_bucket: i64, horizon_buckets: i64) -> bool {
    map.retain(|_, s| !s.prune(oldest));
    enforce_cap(map, cap, now_bucket, horizon_buckets);
    map.is_empty()
}

/// [`trim`] on the inner maps of `keys`, removing those left empty.
fn trim_keys<K: Copy + Eq + std::hash::Hash>(
    map: &mut IdxMap<K, IdxMap<ItemIdx, Series>>,
    keys: IdxSet<K>,
    oldest: i64,
    cap: usize,
    now_bucket: i64,
    horizon_buckets: i64,
) {
    for k in keys {
        if map.get_mut(&k).is_some_and(|inner| trim(inner, oldest, cap, now_bucket, horizon_buckets)) {
            map.remove(&k);
        }
    }
}

fn enforce_cap<K: Copy + Eq + std::hash::Hash + Ord>(
    map: &mut IdxMap<K, Series>,
    cap: usize,
    now_bucket: i64,
    horizon_buckets: i64,
) {
    if map.len() <= cap {
        return;
    }
    let scored: Vec<(K, f64)> = map.iter().map(|(&k, s)| (k, s.recency_mass(now_bucket, horizon_buckets))).collect();
    let keep: crate::rank::catalog::IdxSet<K> = top_n(scored, cap).into_iter().map(|(k, _)| k).collect();
    map.retain(|k, _| keep.contains(k));
}

/// The `n` entries with the largest score, best first; ties by key, so results are
/// deterministic. `O(len + n log n)`.
pub(crate) fn top_n<K: Copy + Ord>(mut v: Vec<(K, f64)>, n: usize) -> Vec<(K, f64)> {
    let cmp = |a: &(K, f64), b: &(K, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if n == 0 {
        return Vec::new();
    }
    if v.len() > n {
        v.select_nth_unstable_by(n - 1, cmp);
        v.truncate(n);
    }
    v.sort_unstable_by(cmp);
    v
}

/// Queries at one `now` under one decay. Cheap to create (one table of bucket weights).
pub struct StatsView<'a> {
    stats: &'a Stats,
    now: DateTime<Utc>,
    decay_key: (u8, u64, u64),
    table: DecayTable,
}

impl StatsView<'_> {
    /// The time this view answers for.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Decayed popularity of `item` in `segment` (0 if not tracked).
    pub fn popularity(&self, segment: Segment, item: ItemIdx) -> f64 {
        self.stats.pop.get(&segment).and_then(|m| m.get(&item)).map_or(0.0, |s| s.sum(&self.table))
    }

    /// Decayed popularity of a leaf category.
    pub fn category_popularity(&self, cat: CatIdx) -> f64 {
        self.stats.leaf_pop.get(&cat).map_or(0.0, |s| s.sum(&self.table))
    }

    /// Top `n` items of `segment` by decayed popularity, best first (only items with a
    /// positive score). Scans the segment (bounded by `max_items_per_segment`), or reuses a
    /// list computed at most `cache_ttl_secs` earlier.
    pub fn trending(&self, segment: Segment, n: usize) -> Vec<(ItemIdx, f64)> {
        let key = CacheKey::Trending(segment, self.decay_key);
        let scores = self.cached(key, n, || self.segment_scores(segment));
        scores.ranked.iter().take(n).map(|&(i, s)| (ItemIdx(i), s)).collect()
    }

    /// Top `n` leaf categories by decayed popularity, best first.
    pub fn trending_categories(&self, n: usize) -> Vec<(CatIdx, f64)> {
        let key = CacheKey::Categories(self.decay_key);
        let scores = self.cached(key, n, || {
            self.stats
                .leaf_pop
                .iter()
                .map(|(c, s)| (c.0, s.sum(&self.table)))
                .filter(|&(_, s)| s > 0.0)
                .collect()
        });
        scores.ranked.iter().take(n).map(|&(i, s)| (CatIdx(i), s)).collect()
    }

    /// Top `n` items that co-occurred with `item` (same user, within the window), by decayed
    /// count, best first; cached like the trending lists.
    pub fn neighbours(&self, item: ItemIdx, n: usize) -> Vec<(ItemIdx, f64)> {
        let Some(ns) = self.stats.cooc.get(&item) else { return Vec::new() };
        let scores = self.cached(CacheKey::Neighbours(item, self.decay_key), n, || {
            ns.iter().map(|(j, s)| (j.0, s.sum(&self.table))).filter(|&(_, s)| s > 0.0).collect()
        });
        scores.ranked.iter().take(n).map(|&(i, s)| (ItemIdx(i), s)).collect()
    }

    /// Decayed co-occurrence count of a pair.
    pub fn cooccurrence(&self, a: ItemIdx, b: ItemIdx) -> f64 {
        self.stats.cooc.get(&a).and_then(|m| m.get(&b)).map_or(0.0, |s| s.sum(&self.table))
    }

    /// Decayed popularity of the items of `segment`, for many lookups: one hash lookup each
    /// in the segment's cached scores when caching is on (the same scores `trending` ranks,
    /// so they lag `now` by at most `cache_ttl_secs`), else [`StatsView::popularity`].
    pub fn popularity_in(&self, segment: Segment) -> Popularity<'_> {
        let cached = (self.stats.cfg.cache_ttl_secs > 0.0)
            .then(|| self.cached(CacheKey::Trending(segment, self.decay_key), 0, || self.segment_scores(segment)));
        Popularity { view: self, segment, cached }
    }

    fn segment_scores(&self, segment: Segment) -> Vec<(u32, f64)> {
        let Some(items) = self.stats.pop.get(&segment) else { return Vec::new() };
        items.iter().map(|(i, s)| (i.0, s.sum(&self.table))).filter(|&(_, s)| s > 0.0).collect()
    }

    /// The scores of `key`: cached ones computed at most `cache_ttl_secs` before `now` (never
    /// after it), else `compute`d, all of them kept and cached when caching is on, only the
    /// top `n` when it is off.
    fn cached(&self, key: CacheKey, n: usize, compute: impl FnOnce() -> Vec<(u32, f64)>) -> Arc<Scores> {
        let ttl = self.stats.cfg.cache_ttl_secs;
        if ttl <= 0.0 {
            return Arc::new(Scores::new(top_n(compute(), n)));
        }
        let (cache, capacity) = match key {
            CacheKey::Neighbours(..) => (&self.stats.neighbour_cache, NEIGHBOUR_CACHE_MAX_KEYS),
            _ => (&self.stats.cache, CACHE_MAX_KEYS),
        };
        if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && (0.0..=ttl).contains(&crate::rank::decay::age_secs(self.now, c.at))
        {
            return c.scores.clone();
        }
        let scores = Arc::new(Scores::new(top_n(compute(), usize::MAX)));
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= capacity {
            cache.clear();
        }
        cache.insert(key, Cached { at: self.now, scores: scores.clone() });
        scores
    }
}

/// Popularity lookups in one segment, see [`StatsView::popularity_in`].
pub struct Popularity<'a> {
    view: &'a StatsView<'a>,
    segment: Segment,
    cached: Option<Arc<Scores>>,
}

impl Popularity<'_> {
    /// Decayed popularity of `item` (0 if not tracked).
    pub fn of(&self, item: ItemIdx) -> f64 {
        match &self.cached {
            Some(scores) => scores.of(item.0),
            None => self.view.popularity(self.segment, item),
        }
    }
}

/// Context counts at one `now`: kind-weighted events over the horizon (not decayed).
pub struct ContextView<'a> {
    stats: &'a Stats,
    table: DecayTable,
}

impl ContextView<'_> {
    /// All events.
    pub fn total(&self) -> f64 {
        self.stats.ctx_total.sum(&self.table)
    }

    /// Events in category `cat` (or a subcategory).
    pub fn category_total(&self, cat: CatIdx) -> f64 {
        self.stats.ctx_cat.get(&cat).map_or(0.0, |s| s.sum(&self.table))
    }

    /// Every context key with events, with its total, in key order.
    pub fn keys(&self) -> Vec<(ContextKey, f64)> {
        let mut keys: Vec<(ContextKey, f64)> =
            self.stats.ctx_key.iter().map(|(&k, s)| (k, s.sum(&self.table))).filter(|&(_, n)| n > 0.0).collect();
        keys.sort_by_key(|&(k, _)| k);
        keys
    }

    /// Events in category `cat` with context key `key`.
    pub fn pair(&self, cat: CatIdx, key: ContextKey) -> f64 {
        self.stats.ctx_pair.get(&(cat, key)).map_or(0.0, |s| s.sum(&self.table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::context::{DayType, HourBand};
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()
    }

    fn obs<'a>(user: &'a str, item: u32, cats: &'a [CatIdx], ts: DateTime<Utc>, ctx: &'a [ContextKey]) -> Observation<'a> {
        Observation { user, item: ItemIdx(item), categories: cats, brand: None, weight: 1.0, ts, context: ctx }
    }

    const NO_CTX: &[ContextKey] = &[];

    #[test]
    fn trending_ranks_recent_bursts_above_old_volume_only_when_decayed() {
        let mut s = Stats::new(StatsConfig { cache_ttl_secs: 0.0, ..Default::default() });
        for n in 0..10 {
            s.observe(&obs("u", 1, &[], t0() + Duration::minutes(n), NO_CTX));
        }
        for n in 0..4 {
            s.observe(&obs("v", 2, &[], t0() + Duration::hours(72) + Duration::minutes(n), NO_CTX));
        }
        let now = t0() + Duration::hours(73);
        let fast = Decay::Exponential { half_life_hours: 6.0 };
        assert_eq!(s.trending(Segment::Global, now, &fast, 2)[0].0, ItemIdx(2));
        assert_eq!(s.trending(Segment::Global, now, &Decay::None, 2)[0].0, ItemIdx(1));
        // Same state, another constant: the answer changes with no rebuild.
        let slow = Decay::Exponential { half_life_hours: 1000.0 };
        assert_eq!(s.trending(Segment::Global, now, &slow, 1)[0].0, ItemIdx(1));
    }

    #[test]
    fn decayed_popularity_matches_the_decay_function_to_half_a_bucket() {
        let mut s = Stats::new(StatsConfig { bucket_minutes: 10, ..Default::default() });
        let ts = t0() + Duration::minutes(5);
        s.observe(&obs("u", 7, &[], ts, NO_CTX));
        let d = Decay::Exponential { half_life_hours: 2.0 };
        let now = ts + Duration::hours(2);
        let got = s.view(now, &d).popularity(Segment::Global, ItemIdx(7));
        assert!((got - 0.5).abs() < 0.03, "{got}");
    }

    #[test]
    fn stats_ignore_what_was_observed_after_now() {
        let mut s = Stats::new(StatsConfig { cache_ttl_secs: 0.0, ..Default::default() });
        let cats = [CatIdx(0)];
        let ctx = [ContextKey::HourBand(HourBand::Night)];
        s.observe(&obs("a", 1, &cats, t0(), &ctx));
        s.observe(&obs("a", 2, &cats, t0() + Duration::minutes(1), &ctx));
        // The future: item 3 becomes hugely popular and co-occurs with item 1.
        for n in 0..50 {
            let user = format!("f{n}");
            let ts = t0() + Duration::hours(5);
            s.observe(&obs(&user, 1, &cats, ts, &ctx));
            s.observe(&obs(&user, 3, &cats, ts, &ctx));
        }
        let now = t0() + Duration::hours(2);
        let v = s.view(now, &Decay::None);
        assert!(v.trending(Segment::Global, 10).iter().all(|&(i, _)| i != ItemIdx(3)));
        assert!(v.trending(Segment::Category(CatIdx(0)), 10).iter().all(|&(i, _)| i != ItemIdx(3)));
        assert_eq!(v.popularity(Segment::Global, ItemIdx(1)), 1.0);
        assert_eq!(v.neighbours(ItemIdx(1), 10), vec![(ItemIdx(2), 1.0)]);
        assert_eq!(v.category_popularity(CatIdx(0)), 2.0);
        // Context counts are daily; a query on a later day sees none of the future day.
        let mut s2 = Stats::new(StatsConfig::default());
        s2.observe(&obs("a", 1, &cats, t0() + Duration::days(3), &ctx));
        let cv = s2.context_view(t0() + Duration::days(1));
        assert_eq!((cv.total(), cv.pair(CatIdx(0), ctx[0])), (0.0, 0.0));
    }

    #[test]
    fn items_touched_by_one_user_within_the_window_co_occur_and_others_do_not() {
        let mut s = Stats::new(StatsConfig { cooccurrence_window_minutes: 30.0, ..Default::default() });
        s.observe(&obs("u", 1, &[], t0(), NO_CTX));
        s.observe(&obs("u", 2, &[], t0() + Duration::minutes(10), NO_CTX));
        s.observe(&obs("u", 3, &[], t0() + Duration::minutes(35), NO_CTX)); // 2 is in the window, 1 is not
        s.observe(&obs("v", 4, &[], t0() + Duration::minutes(46), NO_CTX)); // another user
        let v = s.view(t0() + Duration::hours(1), &Decay::None);
        assert_eq!(v.neighbours(ItemIdx(1), 10), vec![(ItemIdx(2), 1.0)]);
        assert_eq!(v.neighbours(ItemIdx(2), 10), vec![(ItemIdx(1), 1.0), (ItemIdx(3), 1.0)]);
        assert_eq!(v.cooccurrence(ItemIdx(3), ItemIdx(4)), 0.0);
        assert_eq!(v.cooccurrence(ItemIdx(3), ItemIdx(1)), 0.0);
    }

    #[test]
    fn memory_stays_bounded_however_long_the_log() {
        let cfg = StatsConfig {
            horizon_hours: 24.0,
            max_items_per_segment: 50,
            max_neighbours: 5,
            max_recent_per_user: 4,
            ..Default::default()
        };
        let mut s = Stats::new(cfg);
        let ctx = [ContextKey::DayType(DayType::Weekday)];
        let cats = [CatIdx(0)];
        let mut peak = StatsSizes::default();
        for n in 0..60_000u32 {
            let ts = t0() + Duration::minutes(i64::from(n)); // ~42 days
            let user = format!("u{}", n % 37);
            s.observe(&obs(&user, (n * 7919) % 100_000, &cats, ts, &ctx));
            if n % 1000 == 999 {
                let z = s.sizes();
                peak.segment_items = peak.segment_items.max(z.segment_items);
                peak.neighbour_pairs = peak.neighbour_pairs.max(z.neighbour_pairs);
                peak.buckets = peak.buckets.max(z.buckets);
            }
        }
        // 3 segments (global, weekday, category) × (cap + what one hour adds).
        assert!(peak.segment_items <= 3 * (50 + 60), "{peak:?}");
        assert!(peak.neighbour_pairs < 20_000, "{peak:?}");
        let end = s.sizes();
        assert!(end.users <= 37);
        // Everything left lies inside the horizon.
        let now = t0() + Duration::minutes(60_000);
        let all_time = s.view(now, &Decay::None).trending(Segment::Global, 1000);
        let total: f64 = all_time.iter().map(|x| x.1).sum();
        assert!(total <= 50.0 + 60.0, "{total}");
    }

    #[test]
    fn cached_trending_is_reused_only_forward_in_time_and_within_its_ttl() {
        let mut s = Stats::new(StatsConfig { cache_ttl_secs: 60.0, ..Default::default() });
        s.observe(&obs("u", 1, &[], t0(), NO_CTX));
        let now = t0() + Duration::minutes(10);
        assert_eq!(s.trending(Segment::Global, now, &Decay::None, 5).len(), 1);
        // Observed after the list was cached, in the same bucket, without a prune.
        s.observe(&obs("u", 2, &[], t0() + Duration::minutes(11), NO_CTX));
        assert_eq!(s.trending(Segment::Global, now + Duration::seconds(30), &Decay::None, 5).len(), 1, "cached");
        assert_eq!(s.trending(Segment::Global, now + Duration::seconds(90), &Decay::None, 5).len(), 2, "expired");
        assert_eq!(
            s.trending(Segment::Global, t0() + Duration::minutes(11), &Decay::None, 5).len(),
            2,
            "a list computed later is not used for an earlier now"
        );
    }

    #[test]
    fn cached_neighbours_are_reused_only_forward_in_time_and_within_their_ttl() {
        let mut s = Stats::new(StatsConfig { cache_ttl_secs: 60.0, ..Default::default() });
        s.observe(&obs("u", 1, &[], t0(), NO_CTX));
        s.observe(&obs("u", 2, &[], t0() + Duration::minutes(1), NO_CTX));
        let now = t0() + Duration::minutes(10);
        let of_1 = |s: &Stats, at| s.neighbours(ItemIdx(1), at, &Decay::None, 5).into_iter().map(|(i, _)| i.0).collect::<Vec<_>>();
        assert_eq!(of_1(&s, now), vec![2]);
        // Item 1 co-occurs with item 3 after the list was cached, in the same bucket.
        s.observe(&obs("u", 3, &[], t0() + Duration::minutes(2), NO_CTX));
        assert_eq!(of_1(&s, now + Duration::seconds(30)), vec![2], "cached");
        assert_eq!(of_1(&s, now + Duration::seconds(90)).len(), 2, "expired");
        let mut exact = Stats::new(StatsConfig { cache_ttl_secs: 0.0, ..Default::default() });
        for (item, minute) in [(1, 0), (2, 1), (3, 2)] {
            exact.observe(&obs("u", item, &[], t0() + Duration::minutes(minute), NO_CTX));
        }
        assert_eq!(
            s.neighbours(ItemIdx(1), now + Duration::seconds(90), &Decay::None, 5),
            exact.neighbours(ItemIdx(1), now + Duration::seconds(90), &Decay::None, 5),
            "a recomputed list is the uncached one"
        );
    }

    #[test]
    fn popularity_lookups_share_the_cached_segment_scores_and_are_exact_without_a_cache() {
        let decay = Decay::Exponential { half_life_hours: 24.0 };
        for ttl in [60.0, 0.0] {
            let mut s = Stats::new(StatsConfig { cache_ttl_secs: ttl, ..Default::default() });
            s.observe(&obs("u", 1, &[], t0(), NO_CTX));
            s.observe(&obs("v", 1, &[], t0() + Duration::minutes(1), NO_CTX));
            let now = t0() + Duration::minutes(10);
            let view = s.view(now, &decay);
            let pop = view.popularity_in(Segment::Global);
            assert!((pop.of(ItemIdx(1)) - view.popularity(Segment::Global, ItemIdx(1))).abs() < 1e-12);
            assert_eq!(pop.of(ItemIdx(9)), 0.0, "an item never observed");
            drop(pop);
            drop(view);
            s.observe(&obs("w", 2, &[], t0() + Duration::minutes(10), NO_CTX));
            let later = s.view(now + Duration::seconds(30), &decay);
            let seen = later.popularity_in(Segment::Global).of(ItemIdx(2));
            if ttl > 0.0 {
                assert_eq!(seen, 0.0, "within the TTL the scores computed at `now` are reused");
            } else {
                assert!(seen > 0.0, "without a cache every lookup is current");
            }
        }
    }

    #[test]
    fn context_lifts_are_reused_only_forward_within_the_ttl_and_for_the_same_prior() {
        use crate::rank::catalog::Catalog;
        use crate::domain::Device;
        let mut catalog = Catalog::new();
        let idx = catalog.upsert(crate::domain::Item::new("a", vec!["toys".into()]));
        let toys = catalog.categories(idx).to_vec();
        let mobile = [ContextKey::Device(Device::Mobile)];
        let mut s = Stats::new(StatsConfig { cache_ttl_secs: 60.0, ..Default::default() });
        s.observe(&obs("u", idx.0, &toys, t0(), &mobile));
        let now = t0() + Duration::minutes(10);
        let first = s.context_lifts(now, &catalog, 5.0);
        assert!(Arc::ptr_eq(&first, &s.context_lifts(now + Duration::seconds(30), &catalog, 5.0)), "reused");
        assert!(!Arc::ptr_eq(&first, &s.context_lifts(now + Duration::seconds(90), &catalog, 5.0)), "expired");
        let again = s.context_lifts(now + Duration::seconds(90), &catalog, 5.0);
        assert!(!Arc::ptr_eq(&again, &s.context_lifts(now, &catalog, 5.0)), "not for an earlier now");
        let current = s.context_lifts(now + Duration::seconds(91), &catalog, 5.0);
        assert!(!Arc::ptr_eq(&current, &s.context_lifts(now + Duration::seconds(91), &catalog, 9.0)), "another prior");
    }

    #[test]
    fn top_n_breaks_ties_by_key() {
        let v = vec![(3u32, 1.0), (1, 2.0), (2, 1.0), (0, 0.5)];
        assert_eq!(top_n(v.clone(), 3), vec![(1, 2.0), (2, 1.0), (3, 1.0)]);
        assert_eq!(top_n(v, 10).len(), 4);
    }

    #[test]
    fn config_validation_names_the_key() {
        assert!(StatsConfig::default().validate().is_ok());
        let e = StatsConfig { max_neighbours: 0, ..Default::default() }.validate().unwrap_err();
        assert!(e.contains("stats.max_neighbours"), "{e}");
        let e = StatsConfig { horizon_hours: -1.0, ..Default::default() }.validate().unwrap_err();
        assert!(e.contains("stats.horizon_hours"), "{e}");
    }
}
