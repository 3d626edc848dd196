// Over 400 lines: candidates, score and reasons are one pass over the same candidate table.
//! Ranking: candidates → score → filters → diversity → top-K, every item with its reasons.
//!
//! Candidates come from bounded pools, never a catalogue scan: the user's own recent items,
//! the most popular items of their top interest categories and brands, items that
//! co-occurred with their recent items, and what is trending in the request's context.
//! Each candidate is scored
//!
//! `score = λ_t · time + λ_o · cooccurrence + λ_p · trending + λ_c · context`
//!
//! where `time` is the user's decayed interest in the item, its categories and brand (scaled
//! by the user's largest feature weight), `cooccurrence` the decayed co-occurrence with the
//! user's recent items (scaled by the largest among candidates), `trending` the decayed
//! popularity in the request's device segment (likewise scaled), and `context` the smoothed
//! lift of the item's category in the request's context (`context` module), in `[-1, 1]`.
//! A user with no positive interest gets trending in context (`cold_start`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::rank::catalog::{CatIdx, Catalog, IdxMap, IdxSet, ItemIdx};
use crate::rank::context::{ContextModel, RequestContext};
use crate::rank::decay::{Decay, age_secs};
use crate::domain::Event;
use crate::rank::profile::{Evidence, Feature, InterestVector};
use crate::rank::stats::{Segment, Stats, StatsConfig};

/// Constants of the ranking. Reloadable, except `stats` (its buckets are built from the log).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// λ_t: weight of the user's time-decayed interest.
    pub lambda_time: f64,
    /// λ_c: weight of the context lift.
    pub lambda_context: f64,
    /// λ_p: weight of trending (decayed popularity in the request's device segment).
    pub lambda_trending: f64,
    /// λ_o: weight of co-occurrence with the user's recent items.
    pub lambda_cooccurrence: f64,
    /// Within `time`: weight of interest in the item itself (re-visits).
    pub item_weight: f64,
    /// Within `time`: weight of interest in the item's categories (mean over its path).
    pub category_weight: f64,
    /// Within `time`: weight of interest in the item's brand.
    pub brand_weight: f64,
    /// Decay of trending and co-occurrence counts (the user's own events use `tuning.decay`).
    pub trending_decay: Decay,
    /// Events older than this do not enter the interest vector, hours.
    pub horizon_hours: f64,
    /// Interest categories (and brands) whose popular items become candidates.
    pub interest_categories: usize,
    /// Candidates taken from each interest category or brand.
    pub per_category_candidates: usize,
    /// Recent items whose co-occurring items become candidates.
    pub cooccurrence_sources: usize,
    /// Co-occurring items taken per recent item.
    pub cooccurrence_candidates: usize,
    /// Trending items taken as candidates.
    pub trending_candidates: usize,
    /// Event kinds that mean "bought" for the purchase filter.
    pub purchase_kinds: Vec<String>,
    /// Items the user bought within this many days are not recommended (0: off), days.
    pub purchased_filter_days: f64,
    /// Within `time`: factor on the user's interest in an item they already bought (an event
    /// of `purchase_kinds` inside the horizon). 1: a bought item counts like any other item
    /// they touched; 0: only its category and brand interest remain. How often shoppers buy
    /// the same item again differs between shops: measure it on your log (`kairos eval`).
    pub bought_item_factor: f64,
    /// At most this many items of one leaf category in the answer (0: no limit).
    pub max_per_category: usize,
    /// Context smoothing strength m: a category/context pair needs about m events before
    /// its lift moves far from 1.
    pub context_prior: f64,
    /// How the popularity, co-occurrence and context statistics are bucketed and bounded.
    /// Not reloadable (a change needs a restart, which rebuilds them from the log).
    pub stats: StatsConfig,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            lambda_time: 1.0,
            lambda_context: 0.2,
            lambda_trending: 0.15,
            lambda_cooccurrence: 0.4,
            item_weight: 1.0,
            category_weight: 0.3,
            brand_weight: 0.1,
            trending_decay: Decay::Exponential { half_life_hours: 24.0 },
            horizon_hours: 14.0 * 24.0,
            interest_categories: 8,
            per_category_candidates: 40,
            cooccurrence_sources: 10,
            cooccurrence_candidates: 20,
            trending_candidates: 100,
            purchase_kinds: vec!["purchase".into()],
            purchased_filter_days: 0.0,
            bought_item_factor: 1.0,
            max_per_category: 0,
            context_prior: 20.0,
            stats: StatsConfig::default(),
        }
    }
}

impl ScoringConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in [
            ("lambda_time", self.lambda_time),
            ("lambda_context", self.lambda_context),
            ("lambda_trending", self.lambda_trending),
            ("lambda_cooccurrence", self.lambda_cooccurrence),
            ("item_weight", self.item_weight),
            ("category_weight", self.category_weight),
            ("brand_weight", self.brand_weight),
            ("purchased_filter_days", self.purchased_filter_days),
            ("bought_item_factor", self.bought_item_factor),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("scoring.{k} must be a finite number >= 0 (got {v})"));
            }
        }
        if !(self.horizon_hours.is_finite() && self.horizon_hours > 0.0) {
            return Err("scoring.horizon_hours must be > 0".into());
        }
        if !(self.context_prior.is_finite() && self.context_prior > 0.0) {
            return Err("scoring.context_prior must be > 0".into());
        }
        if self.trending_candidates == 0 {
            return Err("scoring.trending_candidates must be >= 1 (cold starts need candidates)".into());
        }
        self.trending_decay.validate().map_err(|e| format!("scoring.trending_decay: {e}"))?;
        self.stats.validate().map_err(|e| format!("scoring.{e}"))
    }
}

/// What a caller asks for.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub n: usize,
    pub context: RequestContext,
    /// Item ids never to return (the request's `exclude`, items pushed recently).
    pub exclude: &'a HashSet<String>,
}

/// The parts of a score and where they came from.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Reasons {
    /// λ_t · time interest.
    pub time: f64,
    /// λ_o · co-occurrence with recent items.
    pub cooccurrence: f64,
    /// λ_p · trending in the request's segment.
    pub trending: f64,
    /// λ_c · context lift.
    pub context: f64,
    /// The interest features behind `time`, e.g. `category:electronics/phones`, with weights.
    pub features: Vec<WeightedLabel>,
    /// The user's events that weigh most in those features.
    pub events: Vec<Evidence>,
    /// Recent items this one co-occurred with.
    pub cooccurs_with: Vec<String>,
    /// Lift of the item's category per context key, e.g. `device=mobile: 1.8`.
    pub context_lifts: Vec<WeightedLabel>,
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct WeightedLabel {
    pub label: String,
    pub weight: f64,
}

/// One ranked item.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Scored {
    pub item_id: String,
    /// Leaf category path.
    pub category: Option<String>,
    pub score: f64,
    pub reasons: Reasons,
}

/// The ranked answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ranking {
    pub items: Vec<Scored>,
    /// The user had no positive interest: the items are trending in context.
    pub cold_start: bool,
}

#[derive(Default, Clone, Copy)]
struct Parts {
    time: f64,
    cooc: f64,
    trend: f64,
}

/// Ranks items for one user. `history` is the user's events (any order), `profile` their
/// interest vector at `now` (built from this same slice: its evidence indexes it).
pub fn rank(
    req: &Request<'_>,
    profile: &InterestVector,
    history: &[Event],
    catalog: &Catalog,
    stats: &Stats,
    cfg: &ScoringConfig,
    now: DateTime<Utc>,
) -> Ranking {
    let view = stats.view(now, &cfg.trending_decay);
    let keys = req.context.keys();
    let segment = req.context.device.map_or(Segment::Global, |d| Segment::Context(crate::rank::context::ContextKey::Device(d)));
    let cold_start = profile.is_empty();

    // 1. Candidates from bounded pools.
    let mut parts: IdxMap<ItemIdx, Parts> = IdxMap::with_capacity_and_hasher(512, Default::default());
    // (candidate, recent item it co-occurred with), for the reasons of the items returned.
    let mut cooc_from: Vec<(ItemIdx, ItemIdx)> = Vec::new();
    if !cold_start {
        for &(item, _, _) in profile.recent_items().iter().rev() {
            parts.entry(item).or_default();
        }
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
            // Filled up from the catalogue when the statistics know few items of it.
            let fill = cfg.per_category_candidates.saturating_sub(popular.len());
            for (item, _) in popular {
                parts.entry(item).or_default();
            }
            for &item in from_catalog.iter().take(fill) {
                parts.entry(item).or_default();
            }
        }
        // Co-occurrence with the most recent items, weighted by their decayed weight.
        for &(src, ts, w) in profile.recent_items().iter().rev().take(cfg.cooccurrence_sources) {
            let recency = cfg.trending_decay.weight(age_secs(now, ts)) * w.max(0.0);
            for (item, c) in view.neighbours(src, cfg.cooccurrence_candidates) {
                parts.entry(item).or_default().cooc += recency * c;
                cooc_from.push((item, src));
            }
        }
    }
    for (item, _) in view.trending(segment, cfg.trending_candidates) {
        parts.entry(item).or_default();
    }
    if segment != Segment::Global {
        for (item, _) in view.trending(Segment::Global, cfg.trending_candidates / 2) {
            parts.entry(item).or_default();
        }
    }
    if parts.is_empty() {
        // Nothing observed yet: available items in catalogue order, so a new service still answers.
        for (idx, _) in catalog.iter().filter(|(_, i)| i.available).take(cfg.trending_candidates) {
            parts.entry(idx).or_default();
        }
    }

    // 2. Filters: unknown or unavailable items, bought recently, excluded.
    let bought = recently_bought(history, catalog, cfg, now);
    let excluded: IdxSet<ItemIdx> = req.exclude.iter().filter_map(|id| catalog.idx(id)).collect();
    parts.retain(|item, _| {
        catalog.is_available(*item) && !bought.contains(item) && !excluded.contains(item)
    });

    // 3. Score.
    let max_interest = profile.max_weight().max(f64::MIN_POSITIVE);
    let bought_before = if cold_start || cfg.bought_item_factor == 1.0 {
        IdxSet::default()
    } else {
        bought_within(history, catalog, cfg, now, cfg.horizon_hours * 3600.0)
    };
    let popularity = view.popularity_in(segment);
    // Mean interest over a category path, by leaf: candidates share few leaves.
    let mut path_interest: IdxMap<CatIdx, f64> = IdxMap::default();
    for (item, p) in parts.iter_mut() {
        p.trend = popularity.of(*item);
        if !cold_start {
            let cats = catalog.categories(*item);
            let cat_interest = match cats.last() {
                None => 0.0,
                Some(leaf) => *path_interest.entry(*leaf).or_insert_with(|| {
                    cats.iter().map(|c| profile.weight(Feature::Category(*c))).sum::<f64>() / cats.len() as f64
                }),
            };
            let brand_interest = catalog.brand(*item).map_or(0.0, |b| profile.weight(Feature::Brand(b)));
            let own = profile.weight(Feature::Item(*item));
            let own = if bought_before.contains(item) { cfg.bought_item_factor * own } else { own };
            p.time = (cfg.item_weight * own
                + cfg.category_weight * cat_interest
                + cfg.brand_weight * brand_interest)
                / max_interest;
        }
    }
    let max_cooc = parts.values().map(|p| p.cooc).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    let max_trend = parts.values().map(|p| p.trend).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    let model = ContextModel::new(stats.context_lifts(now, catalog, cfg.context_prior), &keys);
    let mut scored: Vec<(ItemIdx, f64, Parts, f64)> = parts
        .into_iter()
        .map(|(item, p)| {
            let path = catalog.categories(item);
            let ctx = if path.is_empty() { 0.0 } else { model.score(path) / crate::rank::context::CONTEXT_SCORE_CLAMP };
            let norm = Parts { time: p.time, cooc: p.cooc / max_cooc, trend: p.trend / max_trend };
            let s = cfg.lambda_time * norm.time
                + cfg.lambda_cooccurrence * norm.cooc
                + cfg.lambda_trending * norm.trend
                + cfg.lambda_context * ctx;
            (item, s, norm, ctx)
        })
        .collect();
    // Best first, ties by item id. Without a per-category cap only the top n can be shown:
    // select them before sorting.
    let best_first = |a: &(ItemIdx, f64, Parts, f64), b: &(ItemIdx, f64, Parts, f64)| {
        b.1.total_cmp(&a.1).then_with(|| catalog.id(a.0).cmp(catalog.id(b.0)))
    };
    if cfg.max_per_category == 0 && req.n < scored.len() {
        scored.select_nth_unstable_by(req.n, best_first);
        scored.truncate(req.n);
    }
    scored.sort_unstable_by(best_first);

    // 4. Diversity, then top-K with reasons.
    let mut per_leaf: IdxMap<Option<CatIdx>, usize> = IdxMap::default();
    let mut items = Vec::with_capacity(req.n);
    for (item, score, p, ctx) in scored {
        if items.len() >= req.n {
            break;
        }
        let leaf = catalog.leaf_category(item);
        if cfg.max_per_category > 0 {
            let count = per_leaf.entry(leaf).or_default();
            if *count >= cfg.max_per_category {
                continue;
            }
            *count += 1;
        }
        items.push(Scored {
            item_id: catalog.id(item).to_string(),
            category: leaf.map(|c| catalog.category_name(c).to_string()),
            score,
            reasons: reasons(item, p, ctx, profile, history, catalog, &model, &keys, &cooc_from, cfg),
        });
    }
    Ranking { items, cold_start }
}

fn recently_bought(history: &[Event], catalog: &Catalog, cfg: &ScoringConfig, now: DateTime<Utc>) -> IdxSet<ItemIdx> {
    if cfg.purchased_filter_days <= 0.0 {
        return IdxSet::default();
    }
    bought_within(history, catalog, cfg, now, cfg.purchased_filter_days * 86_400.0)
}

/// Items of `history` with an event of `purchase_kinds` at most `window` seconds before `now`.
fn bought_within(history: &[Event], catalog: &Catalog, cfg: &ScoringConfig, now: DateTime<Utc>, window: f64) -> IdxSet<ItemIdx> {
    history
        .iter()
        .filter(|e| cfg.purchase_kinds.contains(&e.kind))
        .filter(|e| (0.0..=window).contains(&age_secs(now, e.ts)))
        .filter_map(|e| e.item_id.as_deref().and_then(|id| catalog.idx(id)))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn reasons(
    item: ItemIdx,
    p: Parts,
    ctx: f64,
    profile: &InterestVector,
    history: &[Event],
    catalog: &Catalog,
    model: &ContextModel,
    keys: &[crate::rank::context::ContextKey],
    cooc_from: &[(ItemIdx, ItemIdx)],
    cfg: &ScoringConfig,
) -> Reasons {
    let mut features: Vec<Feature> = vec![Feature::Item(item)];
    features.extend(catalog.categories(item).iter().map(|c| Feature::Category(*c)));
    features.extend(catalog.brand(item).map(Feature::Brand));
    let mut weighted: Vec<WeightedLabel> = features
        .iter()
        .map(|f| WeightedLabel { label: InterestVector::label(catalog, *f), weight: profile.weight(*f) })
        .filter(|w| w.weight > 0.0)
        .collect();
    weighted.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    // The heaviest events behind those features (an event counts once, though it added to
    // its item, categories and brand), copied out only for the three shown.
    let mut top: Vec<(f64, usize)> = features.iter().flat_map(|f| profile.contributions(*f)).collect();
    top.sort_by(|a, b| b.0.total_cmp(&a.0).then(history[b.1].ts.cmp(&history[a.1].ts)));
    top.dedup_by(|a, b| {
        let (a, b) = (&history[a.1], &history[b.1]);
        a.item_id == b.item_id && a.ts == b.ts && a.kind == b.kind
    });
    let events: Vec<Evidence> = top.into_iter().take(3).map(|(c, n)| Evidence::of(&history[n], c)).collect();
    let path = catalog.categories(item);
    let context_lifts = if path.is_empty() {
        Vec::new()
    } else {
        keys.iter().zip(model.lifts(path)).map(|(k, l)| WeightedLabel { label: k.label(), weight: l }).collect()
    };
    Reasons {
        time: cfg.lambda_time * p.time,
        cooccurrence: cfg.lambda_cooccurrence * p.cooc,
        trending: cfg.lambda_trending * p.trend,
        context: cfg.lambda_context * ctx,
        features: weighted,
        events,
        cooccurs_with: cooc_from.iter().filter(|(c, _)| *c == item).take(3).map(|(_, src)| catalog.id(*src).to_string()).collect(),
        context_lifts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::context::event_keys;
    use crate::domain::{Device, EventContext, EventProps, Item};
    use crate::rank::profile::ProfileParams;
    use crate::rank::stats::Observation;
    use chrono::{Duration, TimeZone};

    fn item(id: &str, cat: &str) -> Item {
        Item::new(id, cat.split('/').map(String::from).collect())
    }

    fn ev(user: &str, item: &str, kind: &str, ts: DateTime<Utc>, device: Option<Device>) -> Event {
        Event {
            event_id: uuid::Uuid::new_v4(),
            user_id: user.into(),
            item_id: Some(item.into()),
            kind: kind.into(),
            ts,
            context: EventContext { device, ..EventContext::default() },
            props: EventProps::default(),
        }
    }

    fn weights() -> crate::rank::profile::KindWeights {
        [("view", 1.0), ("cart", 3.0), ("purchase", 4.0)].into_iter().map(|(k, v)| (k.into(), v)).collect()
    }

    fn catalog() -> Catalog {
        let mut items = Vec::new();
        for i in 0..6 {
            items.push(item(&format!("old{i}"), "garden/tools"));
            items.push(item(&format!("new{i}"), "toys/lego"));
        }
        Catalog::from_items(items)
    }

    fn observe_all(stats: &mut Stats, catalog: &mut Catalog, log: &[Event]) {
        for e in log {
            let idx = catalog.intern(e.item_id.as_deref().unwrap());
            let keys = event_keys(e.ts, &chrono_tz::UTC, &e.context);
            stats.observe(&Observation {
                user: &e.user_id,
                item: idx,
                categories: catalog.categories(idx),
                brand: catalog.brand(idx),
                weight: weights()[&e.kind],
                ts: e.ts,
                context: &keys,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run(history: &[Event], decay: &Decay, catalog: &Catalog, stats: &Stats, ctx: RequestContext, exclude: &HashSet<String>, cfg: &ScoringConfig, now: DateTime<Utc>) -> Ranking {
        let w = weights();
        let params = ProfileParams { decay, kind_weights: &w, horizon_secs: cfg.horizon_hours * 3600.0 };
        let profile = InterestVector::build(history, catalog, &params, now);
        rank(&Request { n: 4, context: ctx, exclude }, &profile, history, catalog, stats, cfg, now)
    }

    fn history(now: DateTime<Utc>) -> Vec<Event> {
        let mut h: Vec<Event> = (0..12).map(|i| ev("u", &format!("old{}", i % 3), "view", now - Duration::hours(72 + i), None)).collect();
        h.extend((0..3).map(|i| ev("u", &format!("new{i}"), "view", now - Duration::minutes(10 + i), None)));
        h
    }

    #[test]
    fn exponential_decay_ranks_the_recent_interest_first_and_none_the_larger_old_one() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let catalog = catalog();
        let stats = Stats::new(StatsConfig::default());
        let cfg = ScoringConfig::default();
        let none = HashSet::new();
        let h = history(now);
        let decayed = run(&h, &Decay::Exponential { half_life_hours: 6.0 }, &catalog, &stats, RequestContext::default(), &none, &cfg, now);
        let flat = run(&h, &Decay::None, &catalog, &stats, RequestContext::default(), &none, &cfg, now);
        assert!(decayed.items[0].item_id.starts_with("new"), "{:?}", decayed.items);
        assert!(flat.items[0].item_id.starts_with("old"), "{:?}", flat.items);
        assert!(!decayed.cold_start);
        assert!(decayed.items[0].reasons.time > 0.0);
        assert!(!decayed.items[0].reasons.events.is_empty(), "reasons name the events");
    }

    #[test]
    fn the_same_cold_user_gets_different_tops_on_mobile_at_night_and_desktop_in_the_morning() {
        let now = Utc.with_ymd_and_hms(2026, 3, 4, 12, 0, 0).unwrap();
        let mut catalog = Catalog::from_items((0..4).flat_map(|i| [item(&format!("n{i}"), "night/snacks"), item(&format!("d{i}"), "office/desk")]));
        let mut log = Vec::new();
        for day in 1..4 {
            let base = now - Duration::days(day);
            for u in 0..10 {
                let night = base.date_naive().and_hms_opt(23, 0, 0).unwrap().and_utc();
                let morning = base.date_naive().and_hms_opt(9, 0, 0).unwrap().and_utc();
                log.push(ev(&format!("a{u}"), &format!("n{}", u % 4), "view", night, Some(Device::Mobile)));
                log.push(ev(&format!("b{u}"), &format!("d{}", u % 4), "view", morning, Some(Device::Desktop)));
            }
        }
        log.sort_by_key(|e| e.ts);
        let mut stats = Stats::new(StatsConfig::default());
        observe_all(&mut stats, &mut catalog, &log);
        let cfg = ScoringConfig::default();
        let none = HashSet::new();
        let night = RequestContext { device: Some(Device::Mobile), local_hour: 23, weekend: false, country: None };
        let morning = RequestContext { device: Some(Device::Desktop), local_hour: 9, weekend: false, country: None };
        let a = run(&[], &Decay::None, &catalog, &stats, night, &none, &cfg, now);
        let b = run(&[], &Decay::None, &catalog, &stats, morning, &none, &cfg, now);
        assert!(a.cold_start && b.cold_start);
        assert!(a.items[0].item_id.starts_with('n'), "{:?}", a.items);
        assert!(b.items[0].item_id.starts_with('d'), "{:?}", b.items);
        assert!(a.items[0].reasons.context > 0.0, "the context lift is a reason");
    }

    #[test]
    fn excluded_unavailable_and_recently_bought_items_are_filtered_and_categories_capped() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let mut catalog = catalog();
        let mut gone = item("new1", "toys/lego");
        gone.available = false;
        catalog.upsert(gone);
        let stats = Stats::new(StatsConfig::default());
        let mut cfg = ScoringConfig { purchased_filter_days: 7.0, ..ScoringConfig::default() };
        let mut h = history(now);
        h.push(ev("u", "new2", "purchase", now - Duration::hours(1), None));
        let exclude: HashSet<String> = ["new0".to_string()].into();
        let r = run(&h, &Decay::Exponential { half_life_hours: 6.0 }, &catalog, &stats, RequestContext::default(), &exclude, &cfg, now);
        let ids: Vec<&str> = r.items.iter().map(|i| i.item_id.as_str()).collect();
        for banned in ["new0", "new1", "new2"] {
            assert!(!ids.contains(&banned), "{banned} in {ids:?}");
        }
        cfg.max_per_category = 1;
        let r = run(&h, &Decay::Exponential { half_life_hours: 6.0 }, &catalog, &stats, RequestContext::default(), &exclude, &cfg, now);
        let leaves: HashSet<_> = r.items.iter().map(|i| i.category.clone()).collect();
        assert_eq!(leaves.len(), r.items.len(), "one item per leaf category");
    }

    #[test]
    fn co_occurring_items_become_candidates_with_the_source_as_a_reason() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let mut catalog = Catalog::from_items([item("a", "x/1"), item("b", "y/2"), item("c", "z/3")]);
        let mut log = Vec::new();
        for u in 0..5 {
            log.push(ev(&format!("p{u}"), "a", "view", now - Duration::hours(5) + Duration::minutes(u), None));
            log.push(ev(&format!("p{u}"), "b", "view", now - Duration::hours(5) + Duration::minutes(u + 2), None));
        }
        log.push(ev("q", "c", "view", now - Duration::hours(4), None));
        log.sort_by_key(|e| e.ts);
        let mut stats = Stats::new(StatsConfig::default());
        observe_all(&mut stats, &mut catalog, &log);
        let h = vec![ev("u", "a", "view", now - Duration::minutes(5), None)];
        let r = run(&h, &Decay::None, &catalog, &stats, RequestContext::default(), &HashSet::new(), &ScoringConfig::default(), now);
        let b = r.items.iter().find(|i| i.item_id == "b").expect("b is recommended");
        assert_eq!(b.reasons.cooccurs_with, ["a"]);
        let c = r.items.iter().find(|i| i.item_id == "c").map_or(0.0, |i| i.score);
        assert!(b.score > c);
    }
}
