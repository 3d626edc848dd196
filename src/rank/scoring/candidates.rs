//! Candidate generation: bounded pools, never a catalogue scan, shared by serving and by the
//! trainer's examples (so a model is trained on exactly the candidates it will rank).
//!
//! The pools: the user's own recent items; the most popular items of their top interest
//! categories and brands; items that co-occurred (same user, within the window) with their
//! recent items; items similar by item-kNN to their last distinct items; what is trending in
//! the request's context and globally. While gathering, each candidate collects the pair
//! signals (co-occurrence, kNN similarity) that only the pools know.

use chrono::{DateTime, Utc};

use super::{Request, ScoringConfig, SeqQuery};
use crate::rank::catalog::{Catalog, IdxMap, IdxSet, ItemIdx};
use crate::rank::decay::age_secs;
use crate::rank::profile::{Feature, InterestVector};
use crate::rank::stats::{Segment, StatsView};

/// The pair signals of one candidate.
#[derive(Clone, Copy, Debug, Default)]
pub struct PairSignals {
    /// `Σ_src recency(src) · w(src) · cooccurrence(src, c)` over the recent items.
    pub cooc: f64,
    /// `Σ_src recency(src) · sim(src, c)` over the last distinct items (item-kNN).
    pub knn: f64,
    /// `max_src sim(src, c)`.
    pub knn_max: f64,
    /// `sim(last item, c)`.
    pub knn_last: f64,
}

/// The candidates of one request, with their pair signals.
pub struct Pool {
    pub items: IdxMap<ItemIdx, PairSignals>,
    /// (candidate, recent item it co-occurred with), for the reasons of the items returned.
    pub cooc_from: Vec<(ItemIdx, ItemIdx)>,
    /// (candidate, recent item it is similar to), likewise.
    pub similar_to: Vec<(ItemIdx, ItemIdx)>,
}

/// Gathers the candidates of `req` for `profile` at `view.now()`, then drops unknown,
/// unavailable and excluded items and those in `bought` (the purchase filter).
pub fn gather(
    req: &Request<'_>,
    profile: &InterestVector,
    catalog: &Catalog,
    view: &StatsView<'_>,
    segment: Segment,
    bought: &IdxSet<ItemIdx>,
    cfg: &ScoringConfig,
) -> Pool {
    let now = view.now();
    let mut items: IdxMap<ItemIdx, PairSignals> = IdxMap::with_capacity_and_hasher(768, Default::default());
    let mut cooc_from = Vec::new();
    let mut similar_to = Vec::new();
    if !profile.is_empty() {
        for t in profile.recent_items().iter().rev() {
            items.entry(t.item).or_default();
        }
        interest_pools(&mut items, profile, catalog, view, cfg);
        // Co-occurrence with the most recent items, weighted by their decayed weight.
        for t in profile.recent_items().iter().rev().take(cfg.cooccurrence_sources) {
            let recency = cfg.trending_decay.weight(age_secs(now, t.last)) * t.weight.max(0.0);
            for (item, c) in view.neighbours(t.item, cfg.cooccurrence_candidates) {
                items.entry(item).or_default().cooc += recency * c;
                cooc_from.push((item, t.item));
            }
        }
        knn_pool(&mut items, &mut similar_to, profile, view, now, cfg);
    }
    for (item, _) in view.trending(segment, cfg.trending_candidates) {
        items.entry(item).or_default();
    }
    if segment != Segment::Global {
        for (item, _) in view.trending(Segment::Global, cfg.trending_candidates / 2) {
            items.entry(item).or_default();
        }
    }
    if items.is_empty() {
        // Nothing observed yet: available items in catalogue order, so a new service still answers.
        for (idx, _) in catalog.iter().filter(|(_, i)| i.available).take(cfg.trending_candidates) {
            items.entry(idx).or_default();
        }
    }
    let excluded: IdxSet<ItemIdx> = req.exclude.iter().filter_map(|id| catalog.idx(id)).collect();
    items.retain(|item, _| catalog.is_available(*item) && !bought.contains(item) && !excluded.contains(item));
    Pool { items, cooc_from, similar_to }
}

/// The most popular items of the user's top categories and brands, filled up from the
/// catalogue when the statistics know few items there.
fn interest_pools(items: &mut IdxMap<ItemIdx, PairSignals>, profile: &InterestVector, catalog: &Catalog, view: &StatsView<'_>, cfg: &ScoringConfig) {
    let mut sources: Vec<Segment> =
        profile.top_categories(cfg.interest_categories).into_iter().map(|(c, _)| Segment::Category(c)).collect();
    sources.extend(profile.top(cfg.interest_categories * 2).into_iter().filter_map(|(f, _)| match f {
        Feature::Brand(b) => Some(Segment::Brand(b)),
        _ => None,
    }));
    for seg in sources {
        let popular = view.trending(seg, cfg.per_category_candidates);
        let from_catalog = match seg {
            Segment::Category(c) => catalog.items_in_category(c),
            Segment::Brand(b) => catalog.items_of_brand(b),
            _ => &[],
        };
        let fill = cfg.per_category_candidates.saturating_sub(popular.len());
        for (item, _) in popular {
            items.entry(item).or_default();
        }
        for &item in from_catalog.iter().take(fill) {
            items.entry(item).or_default();
        }
    }
}

/// Item-kNN: the `knn_candidates` most similar items of each of the last `knn_sources`
/// distinct items become candidates; then every candidate's similarity to every source is
/// read from the sources' (cached) similar-item lists.
fn knn_pool(
    items: &mut IdxMap<ItemIdx, PairSignals>,
    similar_to: &mut Vec<(ItemIdx, ItemIdx)>,
    profile: &InterestVector,
    view: &StatsView<'_>,
    now: DateTime<Utc>,
    cfg: &ScoringConfig,
) {
    if cfg.knn_sources == 0 {
        return;
    }
    // (source, its recency weight, its similar items with their similarity)
    type Source = (ItemIdx, f64, Vec<(ItemIdx, f64)>);
    let sources: Vec<Source> = profile
        .recent_items()
        .iter()
        .rev()
        .take(cfg.knn_sources)
        .map(|t| (t.item, cfg.trending_decay.weight(age_secs(now, t.last)), view.similar(t.item, usize::MAX)))
        .collect();
    for (src, _, similar) in &sources {
        for &(item, _) in similar.iter().take(cfg.knn_candidates) {
            items.entry(item).or_default();
            similar_to.push((item, *src));
        }
    }
    for (n, (_, recency, similar)) in sources.iter().enumerate() {
        for &(item, sim) in similar {
            if let Some(p) = items.get_mut(&item) {
                p.knn += recency * sim;
                p.knn_max = p.knn_max.max(sim);
                if n == 0 {
                    p.knn_last = sim;
                }
            }
        }
    }
}

/// The sequence model's pool: the `q.pool` items of its table nearest to the user's state
/// (exact over the table), those the catalogue offers and the request does not exclude.
pub fn sequence_pool(pool: &mut Pool, q: &SeqQuery<'_>, req: &Request<'_>, catalog: &Catalog, bought: &IdxSet<ItemIdx>) {
    if q.pool == 0 {
        return;
    }
    for (id, _) in q.model.nearest(q.state, q.pool) {
        if req.exclude.contains(id) {
            continue;
        }
        if let Some(item) = catalog.idx(id).filter(|&i| catalog.is_available(i) && !bought.contains(&i)) {
            pool.items.entry(item).or_default();
        }
    }
}

/// The sequence model's score of every candidate: in its table, the score for the state;
/// outside, the lowest of those (no evidence for it); all 0 without a model.
pub fn sequence_column(pool: &Pool, seq: Option<&SeqQuery<'_>>, catalog: &Catalog) -> IdxMap<ItemIdx, f32> {
    let Some(q) = seq else { return pool.items.keys().map(|&i| (i, 0.0)).collect() };
    let scores: Vec<(ItemIdx, Option<f32>)> = pool.items.keys().map(|&i| (i, q.model.score(q.state, catalog.id(i)))).collect();
    let floor = scores.iter().filter_map(|s| s.1).fold(f32::INFINITY, f32::min);
    let floor = if floor.is_finite() { floor } else { 0.0 };
    scores.into_iter().map(|(i, s)| (i, s.unwrap_or(floor))).collect()
}
