//! Queries over [`Stats`] at one `now` under one decay, and the short-lived caches of
//! computed scores they share (`stats.cache_ttl_secs`).

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};

use super::{Segment, Stats};
use crate::rank::buckets::{DecayTable, top_n};
use crate::rank::catalog::{CatIdx, ItemIdx};

/// The neighbour cache is cleared when it holds this many items' lists (each at most
/// `max_neighbours` entries of 16 bytes: about 26 MB at the default 50).
const NEIGHBOUR_CACHE_MAX_KEYS: usize = 32_768;
/// The score cache is cleared when it holds more entries than this.
const CACHE_MAX_KEYS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum CacheKey {
    Trending(Segment, (u8, u64, u64)),
    Categories((u8, u64, u64)),
    /// The co-occurring items of one item.
    Neighbours(ItemIdx, (u8, u64, u64)),
    /// The items most similar to one item (item-kNN).
    Similar(ItemIdx, (u8, u64, u64)),
}

#[derive(Clone, Debug)]
pub(super) struct Cached {
    at: DateTime<Utc>,
    scores: Arc<Scores>,
}

/// Decayed scores of the entries of one segment (or of the leaf categories) at one time.
#[derive(Debug, Default)]
pub(super) struct Scores {
    /// Entries with a positive score, best first (every one when cached, else the top asked for).
    ranked: Vec<(u32, f64)>,
    /// The same scores indexed by key, built on the first [`Scores::of`] (only segments
    /// scored item by item need it). `f32`: half the cache lines of a 100 k-item segment.
    dense: OnceLock<Vec<f32>>,
    /// `ln(1 + score)` of `dense`, built on the first [`Scores::ln_1p_of`] (a feature of
    /// every candidate of the learned ranker).
    logs: OnceLock<Vec<f32>>,
}

impl Scores {
    fn new(ranked: Vec<(u32, f64)>) -> Scores {
        Scores { ranked, dense: OnceLock::new(), logs: OnceLock::new() }
    }

    fn dense(&self) -> &[f32] {
        self.dense.get_or_init(|| {
            let mut v = vec![0.0; self.ranked.iter().map(|&(k, _)| k as usize + 1).max().unwrap_or(0)];
            for &(k, s) in &self.ranked {
                v[k as usize] = s as f32;
            }
            v
        })
    }

    /// The score of `key` (0 when it has none).
    fn of(&self, key: u32) -> f64 {
        self.dense().get(key as usize).map_or(0.0, |&s| f64::from(s))
    }

    /// `ln(1 + score)` of `key`.
    fn ln_1p_of(&self, key: u32) -> f32 {
        let logs = self.logs.get_or_init(|| self.dense().iter().map(|s| s.ln_1p()).collect());
        logs.get(key as usize).copied().unwrap_or(0.0)
    }
}

/// Queries at one `now` under one decay. Cheap to create (one table of bucket weights).
pub struct StatsView<'a> {
    pub(super) stats: &'a Stats,
    pub(super) now: DateTime<Utc>,
    pub(super) decay_key: (u8, u64, u64),
    pub(super) table: DecayTable,
    /// The same decay over the item-kNN's daily buckets.
    pub(super) knn_table: DecayTable,
}

impl StatsView<'_> {
    /// The time this view answers for.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Decayed popularity of `item` in `segment` (0 if not tracked).
    pub fn popularity(&self, segment: Segment, item: ItemIdx) -> f64 {
        let series = match segment {
            Segment::Global => self.stats.items.get(item.0 as usize),
            Segment::Category(_) | Segment::Brand(_) => {
                self.stats.members.get(&segment).filter(|m| m.contains(&item)).and_then(|_| self.stats.items.get(item.0 as usize))
            }
            Segment::Context(_) => self.stats.pop.get(&segment).and_then(|m| m.get(&item)),
        };
        series.map_or(0.0, |s| s.sum(&self.table))
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

    /// Top `n` items most similar to `item` by item-kNN cosine, best first; cached like the
    /// co-occurrence lists.
    pub fn similar(&self, item: ItemIdx, n: usize) -> Vec<(ItemIdx, f64)> {
        let scores = self.cached(CacheKey::Similar(item, self.decay_key), n, || self.stats.knn.similarities(&self.knn_table, item));
        scores.ranked.iter().take(n).map(|&(i, s)| (ItemIdx(i), s)).collect()
    }

    /// Item-kNN cosine similarity of a pair (0 when never co-touched).
    pub fn similarity(&self, a: ItemIdx, b: ItemIdx) -> f64 {
        self.stats.knn.similarity(&self.knn_table, a, b)
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
        let positive = |(i, s): (u32, f64)| (s > 0.0).then_some((i, s));
        let items = &self.stats.items;
        match segment {
            Segment::Global => items.iter().enumerate().filter_map(|(i, s)| positive((i as u32, s.sum(&self.table)))).collect(),
            Segment::Category(_) | Segment::Brand(_) => self.stats.members.get(&segment).map_or_else(Vec::new, |m| {
                m.iter().filter_map(|i| positive((i.0, items[i.0 as usize].sum(&self.table)))).collect()
            }),
            Segment::Context(_) => self.stats.pop.get(&segment).map_or_else(Vec::new, |m| {
                m.iter().filter_map(|(i, s)| positive((i.0, s.sum(&self.table)))).collect()
            }),
        }
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
            CacheKey::Neighbours(..) | CacheKey::Similar(..) => (&self.stats.neighbour_cache, NEIGHBOUR_CACHE_MAX_KEYS),
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

    /// `ln(1 + popularity)` of `item`, as a feature row holds it.
    pub fn ln_1p_of(&self, item: ItemIdx) -> f32 {
        match &self.cached {
            Some(scores) => scores.ln_1p_of(item.0),
            None => (self.view.popularity(self.segment, item) as f32).ln_1p(),
        }
    }
}
