//! The signals of a (user, candidate, context): the hand-set blend's parts, and the feature
//! row the learned ranker reads. Computed by one function for serving and for training, so a
//! model sees at training exactly what it will see when it ranks.
//!
//! Features (each a plain number; the ranker standardises them with the mean and spread it
//! learned them with):
//!
//! | name | what it measures |
//! |---|---|
//! | `handset` | the hand-set score `λ_t·time + λ_o·cooc + λ_p·trend + λ_c·context + λ_k·knn` |
//! | `own` | the user's decayed, kind-weighted interest in the item, over their largest feature weight |
//! | `kind:<k>` | `ln(1 + Σ d(age))` over the user's events of kind `k` on the item |
//! | `touched`, `touches` | the user touched the item inside the horizon; `ln(1 + events)` |
//! | `recent_rank` | `1 / (1 + r)`, `r` the item's place among the user's items by last touch (0: the latest) |
//! | `recency_1h` … `recency_7d`, `age_log` | `e^(−age/τ)` of the last touch for τ = 1 h, 6 h, 1 d, 7 d; `ln(1 + hours)` |
//! | `bought` | the user bought the item inside the horizon (`purchase_kinds`) |
//! | `category`, `brand` | interest in the item's categories (mean over the path) and brand, over the largest weight |
//! | `cat_last` | the item's leaf category is that of the user's latest touched item |
//! | `cat_items`, `cat_rank` | `ln(1 + distinct items)` the user touched in the item's leaf category; `1 / (1 + r)`, `r` the item's place among them by decayed weight (0 when not touched) |
//! | `first_age_log` | `ln(1 + hours)` since the user's first touch of the item |
//! | `events_since`, `touches_1h` | `ln(1 + n)`: the user's events since their last one on the item; their events on it in the last hour |
//! | `knn`, `knn_max`, `knn_last` | item-kNN: recency-weighted similarity to the last distinct items (over the largest among candidates), the largest, the one to the last item |
//! | `cooc` | decayed co-occurrence with the recent items, over the largest among candidates |
//! | `trend` | decayed popularity in the request's device segment, over the largest among candidates |
//! | `pop_recent`, `pop_all` | `ln(1 + popularity)`: decayed (`trending_decay`), and undecayed over the statistics' horizon |
//! | `context` | the context score of the item's category, over its clamp (in `[−1, 1]`) |
//! | `sequence` | only in the rows of a ranker trained with the sequence model, last: its score of the item for the user's state (an item outside its table: the lowest among the candidates; 0 for all when no sequence model is in force) |
//!
//! The basis functions of recency let a linear model learn the shape of the decay the log
//! shows, rather than the one configured.

use chrono::{DateTime, Utc};

use crate::rank::catalog::{CatIdx, Catalog, IdxMap, ItemIdx};
use crate::rank::context::{CONTEXT_SCORE_CLAMP, ContextModel};
use crate::rank::decay::{Decay, age_secs};
use crate::rank::profile::{Feature, InterestVector, KindWeights};
use crate::rank::scoring::ScoringConfig;
use crate::rank::scoring::candidates::Pool;
use crate::rank::stats::{Segment, StatsView};

/// The features before the per-kind ones, in row order.
pub const BASE_FEATURES: [&str; 27] = [
    "handset", "own", "touched", "touches", "recent_rank", "recency_1h", "recency_6h", "recency_1d", "recency_7d",
    "age_log", "bought", "category", "brand", "cat_last", "cat_items", "cat_rank", "first_age_log", "events_since", "touches_1h", "knn", "knn_max",
    "knn_last", "cooc", "trend", "pop_recent", "pop_all", "context",
];

/// The sequence model's feature: last in the row of a ranker trained with it.
pub const SEQUENCE: &str = "sequence";

/// Time constants of the recency basis, seconds.
const RECENCY_TAUS: [f64; 4] = [3600.0, 6.0 * 3600.0, 86_400.0, 7.0 * 86_400.0];

/// The names of the feature row for a tuning whose item kinds are `kinds`: [`BASE_FEATURES`],
/// then `kind:<name>` per item kind in slot order.
pub fn names(kinds: &KindWeights) -> Vec<String> {
    BASE_FEATURES.iter().map(|s| s.to_string()).chain(kinds.item_kinds().iter().map(|k| format!("kind:{k}"))).collect()
}

/// [`names`], then [`SEQUENCE`] when `sequence`.
pub fn names_with(kinds: &KindWeights, sequence: bool) -> Vec<String> {
    let mut out = names(kinds);
    if sequence {
        out.push(SEQUENCE.to_string());
    }
    out
}

/// Whether a ranker with these feature names reads the sequence model's score.
pub fn wants_sequence(names: &[String]) -> bool {
    names.last().is_some_and(|n| n == SEQUENCE)
}

/// Whether `names` are [`names`]`(kinds)`, with or without [`SEQUENCE`] last (without
/// building them: serving checks it per request).
pub fn matches(kinds: &KindWeights, names: &[String]) -> bool {
    let names = if wants_sequence(names) { &names[..names.len() - 1] } else { names };
    let (base, rest) = names.split_at(names.len().min(BASE_FEATURES.len()));
    base.iter().zip(BASE_FEATURES).all(|(a, b)| a == b)
        && base.len() == BASE_FEATURES.len()
        && rest.len() == kinds.item_kinds().len()
        && rest.iter().zip(kinds.item_kinds()).all(|(a, k)| a.strip_prefix("kind:") == Some(k.as_str()))
}

/// The hand-set blend's parts of one candidate, each normalised as the blend uses it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Parts {
    pub time: f64,
    pub cooc: f64,
    pub trend: f64,
    pub knn: f64,
    /// Context score over its clamp, in `[−1, 1]`.
    pub context: f64,
}

impl Parts {
    /// `λ_t·time + λ_o·cooc + λ_p·trend + λ_k·knn + λ_c·context`.
    pub fn blend(&self, cfg: &ScoringConfig) -> f64 {
        cfg.lambda_time * self.time
            + cfg.lambda_cooccurrence * self.cooc
            + cfg.lambda_trending * self.trend
            + cfg.lambda_knn * self.knn
            + cfg.lambda_context * self.context
    }
}

/// Every candidate's parts, hand-set score and (when asked) feature row, in one table.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub items: Vec<ItemIdx>,
    pub parts: Vec<Parts>,
    pub handset: Vec<f64>,
    /// Row-major, `width` per candidate; empty when rows were not asked for.
    pub rows: Vec<f32>,
    pub width: usize,
}

impl Table {
    /// The feature row of candidate `n`.
    pub fn row(&self, n: usize) -> &[f32] {
        &self.rows[n * self.width..(n + 1) * self.width]
    }
}

/// What the features of one request are computed from.
pub struct Inputs<'a> {
    pub profile: &'a InterestVector,
    pub kinds: &'a KindWeights,
    pub catalog: &'a Catalog,
    pub view: &'a StatsView<'a>,
    /// Undecayed popularity over the statistics' horizon, for `pop_all`.
    pub all_time: &'a StatsView<'a>,
    pub segment: Segment,
    pub context: &'a ContextModel,
    pub cfg: &'a ScoringConfig,
    pub now: DateTime<Utc>,
    /// The sequence model's score per candidate: the row's last column when given.
    pub sequence: Option<&'a IdxMap<ItemIdx, f32>>,
}

/// Computes the table of `pool`'s candidates (in an order fixed by item index, so that a
/// table does not depend on hash order). Rows are filled only when `with_rows`.
pub fn table(inp: &Inputs<'_>, pool: &Pool, with_rows: bool) -> Table {
    let (profile, catalog, cfg) = (inp.profile, inp.catalog, inp.cfg);
    let mut items: Vec<ItemIdx> = pool.items.keys().copied().collect();
    items.sort_unstable();
    let cold = profile.is_empty();
    let max_interest = profile.max_weight().max(f64::MIN_POSITIVE);
    let purchase_mask: u32 = cfg.purchase_kinds.iter().filter_map(|k| inp.kinds.slot(k)).fold(0, |m, s| m | (1 << s));
    let popularity = inp.view.popularity_in(inp.segment);
    let (recent_pop, all_pop) = (inp.view.popularity_in(Segment::Global), inp.all_time.popularity_in(Segment::Global));
    let max_of = |f: fn(&crate::rank::scoring::candidates::PairSignals) -> f64| {
        pool.items.values().map(f).fold(0.0, f64::max).max(f64::MIN_POSITIVE)
    };
    let (max_cooc, max_knn) = (max_of(|p| p.cooc), max_of(|p| p.knn));
    let trend: Vec<f64> = items.iter().map(|&i| popularity.of(i)).collect();
    let max_trend = trend.iter().copied().fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    let width = if with_rows { BASE_FEATURES.len() + inp.kinds.item_kinds().len() + usize::from(inp.sequence.is_some()) } else { 0 };
    let mut out = Table { parts: Vec::with_capacity(items.len()), handset: Vec::with_capacity(items.len()), rows: Vec::with_capacity(items.len() * width), width, items: Vec::new() };
    // Mean interest over a category path, by leaf: candidates share few leaves.
    let mut path_interest: IdxMap<CatIdx, f64> = IdxMap::default();
    let leaves = if with_rows { LeafTouches::of(profile, catalog) } else { LeafTouches::default() };
    for (n, &item) in items.iter().enumerate() {
        let pair = pool.items[&item];
        let touch = profile.touch(item);
        let bought = touch.is_some_and(|(t, _)| t.kinds & purchase_mask != 0);
        let (own, cat, brand) = if cold {
            (0.0, 0.0, 0.0)
        } else {
            let cats = catalog.categories(item);
            let cat = match cats.last() {
                None => 0.0,
                Some(leaf) => *path_interest.entry(*leaf).or_insert_with(|| {
                    cats.iter().map(|c| profile.weight(Feature::Category(*c))).sum::<f64>() / cats.len() as f64
                }),
            };
            let brand = catalog.brand(item).map_or(0.0, |b| profile.weight(Feature::Brand(b)));
            (touch.map_or(0.0, |(t, _)| t.weight), cat, brand)
        };
        let own_blend = if bought { cfg.bought_item_factor * own } else { own };
        let path = catalog.categories(item);
        let parts = Parts {
            time: (cfg.item_weight * own_blend + cfg.category_weight * cat + cfg.brand_weight * brand) / max_interest,
            cooc: pair.cooc / max_cooc,
            trend: trend[n] / max_trend,
            knn: pair.knn / max_knn,
            context: if path.is_empty() { 0.0 } else { inp.context.score(path) / CONTEXT_SCORE_CLAMP },
        };
        let handset = parts.blend(cfg);
        if with_rows {
            let age = touch.map(|(t, _)| age_secs(inp.now, t.last).max(0.0));
            let recency = |tau: f64| age.map_or(0.0, |a| (-a / tau).exp());
            out.rows.extend_from_slice(&[
                handset as f32,
                (own / max_interest) as f32,
                f32::from(u8::from(touch.is_some())),
                touch.map_or(0.0, |(t, _)| ln_1p_count(t.touches)),
                touch.map_or(0.0, |(_, r)| 1.0 / (1.0 + r as f64)) as f32,
                recency(RECENCY_TAUS[0]) as f32,
                recency(RECENCY_TAUS[1]) as f32,
                recency(RECENCY_TAUS[2]) as f32,
                recency(RECENCY_TAUS[3]) as f32,
                age.map_or(0.0, |a| (a / 3600.0).ln_1p()) as f32,
                f32::from(u8::from(bought)),
                (cat / max_interest) as f32,
                (brand / max_interest) as f32,
                f32::from(u8::from(leaves.last.is_some() && catalog.leaf_category(item) == leaves.last)),
                catalog.leaf_category(item).and_then(|l| leaves.items.get(&l)).map_or(0.0, |&n| ln_1p_count(n)),
                leaves.rank.get(&item).map_or(0.0, |&r| 1.0 / (1.0 + f64::from(r))) as f32,
                touch.map_or(0.0, |(t, _)| (age_secs(inp.now, t.first).max(0.0) / 3600.0).ln_1p()) as f32,
                touch.map_or(0.0, |(t, _)| ln_1p_count(t.events_since)),
                touch.map_or(0.0, |(t, _)| ln_1p_count(t.touches_last_hour)),
                parts.knn as f32,
                pair.knn_max as f32,
                pair.knn_last as f32,
                parts.cooc as f32,
                parts.trend as f32,
                recent_pop.ln_1p_of(item),
                all_pop.ln_1p_of(item),
                parts.context as f32,
            ]);
            match touch {
                Some((t, _)) => out.rows.extend(profile.kind_sums(t).iter().map(|&c| c.ln_1p())),
                None => out.rows.extend(std::iter::repeat_n(0.0, inp.kinds.item_kinds().len())),
            }
            if let Some(seq) = inp.sequence {
                out.rows.push(seq.get(&item).copied().unwrap_or(0.0));
            }
        }
        out.parts.push(parts);
        out.handset.push(handset);
    }
    out.items = items;
    out
}

/// `ln(1 + n)` of a count as a row holds it: from a table for the small counts nearly every
/// row has (the same values as computing it; a row of ~30 features per candidate made the
/// logarithm a fifth of the learned ranker's extra cost).
fn ln_1p_count(n: u32) -> f32 {
    static SMALL: std::sync::LazyLock<[f32; 256]> = std::sync::LazyLock::new(|| std::array::from_fn(|n| (n as f64).ln_1p() as f32));
    SMALL.get(n as usize).copied().unwrap_or_else(|| f64::from(n).ln_1p() as f32)
}

/// The user's touched items grouped by leaf category.
#[derive(Default)]
struct LeafTouches {
    /// The leaf of the latest touched item.
    last: Option<CatIdx>,
    /// Distinct touched items per leaf.
    items: IdxMap<CatIdx, u32>,
    /// Each touched item's place in its leaf by decayed weight (0: the heaviest).
    rank: IdxMap<ItemIdx, u32>,
}

impl LeafTouches {
    fn of(profile: &InterestVector, catalog: &Catalog) -> Self {
        let mut by_leaf: IdxMap<CatIdx, Vec<(f64, ItemIdx)>> = IdxMap::default();
        for t in profile.recent_items() {
            if let Some(leaf) = catalog.leaf_category(t.item) {
                by_leaf.entry(leaf).or_default().push((t.weight, t.item));
            }
        }
        let mut out = LeafTouches { last: profile.recent_items().last().and_then(|t| catalog.leaf_category(t.item)), ..Default::default() };
        for (leaf, mut v) in by_leaf {
            v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            out.items.insert(leaf, v.len() as u32);
            out.rank.extend(v.into_iter().enumerate().map(|(r, (_, i))| (i, r as u32)));
        }
        out
    }
}

/// The decay of the `pop_all` feature: none (the statistics' horizon bounds it).
pub const ALL_TIME: Decay = Decay::None;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_logarithm_a_computation_would() {
        for n in [0, 1, 2, 7, 255, 256, 1000, u32::MAX] {
            assert_eq!(ln_1p_count(n), f64::from(n).ln_1p() as f32, "n = {n}");
        }
    }

    #[test]
    fn names_list_the_base_features_then_one_per_item_kind_and_matches_agrees() {
        let kinds = KindWeights::new([("view", 1.0, true), ("cart", 3.0, true), ("search", 0.0, false)]);
        let n = names(&kinds);
        assert_eq!(n.len(), BASE_FEATURES.len() + 2);
        assert_eq!(&n[BASE_FEATURES.len()..], ["kind:cart", "kind:view"], "slot order is name order");
        assert!(matches(&kinds, &n));
        let other = KindWeights::new([("view", 1.0, true)]);
        assert!(!matches(&other, &n));
        let mut renamed = n.clone();
        renamed[3] = "x".into();
        assert!(!matches(&kinds, &renamed));
        let with = names_with(&kinds, true);
        assert_eq!(with.last().map(String::as_str), Some(SEQUENCE));
        assert!(matches(&kinds, &with) && wants_sequence(&with) && !wants_sequence(&n));
    }
}
