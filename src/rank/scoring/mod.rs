// Over 400 lines: one request's ranking, from candidates through scores, diversity and reasons, reads in one place.
//! Ranking: candidates → features → score → diversity → top-K, every item with its reasons.
//!
//! Candidates come from bounded pools (`candidates`). Each gets the signals of `features`;
//! then either the learned ranker scores its feature row (when a compatible model is
//! deployed), or the hand-set blend, the fallback of a shop that has no model yet:
//!
//! `score = λ_t · time + λ_o · cooccurrence + λ_p · trending + λ_k · knn + λ_c · context`
//!
//! where `time` is the user's decayed interest in the item, its categories and brand (scaled
//! by the user's largest feature weight), `cooccurrence`, `knn` and `trending` are scaled by
//! their largest among the candidates, and `context` is the smoothed lift of the item's
//! category in the request's context, in `[-1, 1]`. A user with no positive interest gets
//! trending in context (`cold_start`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::rank::history::HistoryEvent;
use crate::rank::catalog::{CatIdx, Catalog, IdxMap, IdxSet, ItemIdx};
use crate::rank::context::{ContextKey, ContextModel, RequestContext};
use crate::rank::decay::{Decay, age_secs};
use crate::rank::features::{self, Inputs, Parts, Table};
use crate::rank::profile::{Evidence, Feature, InterestVector, KindWeights};
use crate::rank::ranker::Ranker;
use crate::rank::sequence::SequenceModel;
use crate::rank::stats::{Segment, Stats, StatsConfig};

pub mod candidates;
#[cfg(test)]
mod tests;

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
    /// λ_k: weight of item-kNN similarity to the user's last distinct items.
    pub lambda_knn: f64,
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
    /// Last distinct items whose item-kNN neighbours become candidates (0: no kNN pool).
    pub knn_sources: usize,
    /// Most similar items taken per source item.
    pub knn_candidates: usize,
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
            lambda_knn: 0.4,
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
            knn_sources: 10,
            knn_candidates: 30,
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
            ("lambda_knn", self.lambda_knn),
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
    /// λ_k · item-kNN similarity to the last distinct items.
    pub knn: f64,
    /// With a learned model: the features that lifted the item most above an average
    /// candidate, with their terms of the score, largest first (see `docs/API.md`).
    pub contributions: Vec<WeightedLabel>,
    /// The interest features behind `time`, e.g. `category:electronics/phones`, with weights.
    pub features: Vec<WeightedLabel>,
    /// The user's events that weigh most in those features.
    pub events: Vec<Evidence>,
    /// Recent items this one co-occurred with.
    pub cooccurs_with: Vec<String>,
    /// Recent items this one is similar to (item-kNN).
    pub similar_to: Vec<String>,
    /// Lift of the item's category per context key, e.g. `device=mobile: 1.8`.
    pub context_lifts: Vec<WeightedLabel>,
}

/// How many contributions a short answer keeps.
pub const SHORT_CONTRIBUTIONS: usize = 3;

impl Reasons {
    /// The short form (`?reasons=short`): the score's parts and its largest
    /// `SHORT_CONTRIBUTIONS` contributions; the evidence lists left empty.
    pub fn shorten(&mut self) {
        self.contributions.truncate(SHORT_CONTRIBUTIONS);
        self.features.clear();
        self.context_lifts.clear();
        self.events.clear();
        self.cooccurs_with.clear();
        self.similar_to.clear();
    }
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
    /// The version of the learned model that ranked, `None` for the hand-set blend.
    pub model: Option<u64>,
    /// The version of the sequence model that added candidates and scored them, if any.
    pub sequence_model: Option<u64>,
}

/// The sequence model's part of one request: the model in force and the user's state.
#[derive(Clone, Copy)]
pub struct SeqQuery<'a> {
    pub model: &'a SequenceModel,
    pub state: &'a [f32],
    /// Items nearest to the state added to the candidates.
    pub pool: usize,
}

/// What ranking reads that every user shares: the catalogue, the statistics, the tuning's
/// event kinds and scoring constants, and the deployed model, if any.
#[derive(Clone, Copy)]
pub struct Scorer<'a> {
    pub catalog: &'a Catalog,
    pub stats: &'a Stats,
    pub kinds: &'a KindWeights,
    pub cfg: &'a ScoringConfig,
    /// A model whose features are those of `kinds` (checked when it was loaded).
    pub model: Option<&'a Ranker>,
}

/// The candidates of one request with their signals, before scoring.
pub struct Candidates {
    pub pool: candidates::Pool,
    pub table: Table,
    keys: Vec<ContextKey>,
    context: ContextModel,
}

impl Scorer<'_> {
    /// Gathers the candidates of `req` and computes their table (with feature rows when
    /// `with_rows`). `history` is the user's events, `profile` their vector at `now`.
    pub fn candidates<E: HistoryEvent>(&self, req: &Request<'_>, profile: &InterestVector, history: &[E], now: DateTime<Utc>, with_rows: bool) -> Candidates {
        self.candidates_with(req, profile, history, now, with_rows, None, false)
    }

    /// [`Scorer::candidates`], with the sequence model's nearest items added to the pool
    /// (when `seq`), and its score as the rows' last column (when `column`; 0 without `seq`).
    #[allow(clippy::too_many_arguments)]
    pub fn candidates_with<E: HistoryEvent>(
        &self,
        req: &Request<'_>,
        profile: &InterestVector,
        history: &[E],
        now: DateTime<Utc>,
        with_rows: bool,
        seq: Option<&SeqQuery<'_>>,
        column: bool,
    ) -> Candidates {
        let cfg = self.cfg;
        let view = self.stats.view(now, &cfg.trending_decay);
        let all_time = self.stats.view(now, &features::ALL_TIME);
        let keys = req.context.keys();
        let segment = req.context.device.map_or(Segment::Global, |d| Segment::Context(ContextKey::Device(d)));
        let bought = recently_bought(history, self.catalog, cfg, now);
        let mut pool = candidates::gather(req, profile, self.catalog, &view, segment, &bought, cfg);
        if let Some(q) = seq {
            candidates::sequence_pool(&mut pool, q, req, self.catalog, &bought);
        }
        let sequence = column.then(|| candidates::sequence_column(&pool, seq, self.catalog));
        let context = ContextModel::new(self.stats.context_lifts(now, self.catalog, cfg.context_prior), &keys);
        let inputs = Inputs {
            profile,
            kinds: self.kinds,
            catalog: self.catalog,
            view: &view,
            all_time: &all_time,
            segment,
            context: &context,
            cfg,
            now,
            sequence: sequence.as_ref(),
        };
        let table = features::table(&inputs, &pool, with_rows);
        Candidates { pool, table, keys, context }
    }

    /// Ranks items for one user: by the model when there is one, else by the hand-set blend.
    pub fn rank<E: HistoryEvent>(&self, req: &Request<'_>, profile: &InterestVector, history: &[E], now: DateTime<Utc>) -> Ranking {
        self.rank_with(req, profile, history, now, None)
    }

    /// [`Scorer::rank`] with the sequence model's part: its nearest items join the candidates,
    /// and a ranker trained with its score reads it.
    pub fn rank_with<E: HistoryEvent>(&self, req: &Request<'_>, profile: &InterestVector, history: &[E], now: DateTime<Utc>, seq: Option<&SeqQuery<'_>>) -> Ranking {
        let column = self.model.is_some_and(|m| features::wants_sequence(m.features()));
        let c = self.candidates_with(req, profile, history, now, self.model.is_some(), seq, column);
        let t = &c.table;
        let score = |n: usize| match self.model {
            Some(m) => m.score(t.row(n)),
            None => t.handset[n],
        };
        let mut order: Vec<(usize, f64)> = (0..t.items.len()).map(|n| (n, score(n))).collect();
        // Best first, ties by item id. Without a per-category cap only the top n can be shown:
        // select them before sorting.
        let best_first = |a: &(usize, f64), b: &(usize, f64)| {
            b.1.total_cmp(&a.1).then_with(|| self.catalog.id(t.items[a.0]).cmp(self.catalog.id(t.items[b.0])))
        };
        if self.cfg.max_per_category == 0 && req.n < order.len() {
            order.select_nth_unstable_by(req.n, best_first);
            order.truncate(req.n);
        }
        order.sort_unstable_by(best_first);

        let mut per_leaf: IdxMap<Option<CatIdx>, usize> = IdxMap::default();
        let mut items = Vec::with_capacity(req.n);
        for (n, score) in order {
            if items.len() >= req.n {
                break;
            }
            let item = t.items[n];
            let leaf = self.catalog.leaf_category(item);
            if self.cfg.max_per_category > 0 {
                let count = per_leaf.entry(leaf).or_default();
                if *count >= self.cfg.max_per_category {
                    continue;
                }
                *count += 1;
            }
            items.push(Scored {
                item_id: self.catalog.id(item).to_string(),
                category: leaf.map(|c| self.catalog.category_name(c).to_string()),
                score,
                reasons: self.reasons(&c, n, profile, history),
            });
        }
        Ranking { items, cold_start: profile.is_empty(), model: self.model.map(|m| m.version), sequence_model: seq.map(|q| q.model.version) }
    }

    fn reasons<E: HistoryEvent>(&self, c: &Candidates, n: usize, profile: &InterestVector, history: &[E]) -> Reasons {
        let (catalog, cfg) = (self.catalog, self.cfg);
        let item = c.table.items[n];
        let p: Parts = c.table.parts[n];
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
        top.sort_by(|a, b| b.0.total_cmp(&a.0).then(history[b.1].ts().cmp(&history[a.1].ts())));
        top.dedup_by(|a, b| {
            let (a, b) = (&history[a.1], &history[b.1]);
            a.item_id(catalog) == b.item_id(catalog) && a.ts() == b.ts() && a.kind(catalog) == b.kind(catalog)
        });
        let events: Vec<Evidence> = top.into_iter().take(3).map(|(c, n)| Evidence::of(&history[n], catalog, c)).collect();
        let path = catalog.categories(item);
        let context_lifts = if path.is_empty() {
            Vec::new()
        } else {
            c.keys.iter().zip(c.context.lifts(path)).map(|(k, l)| WeightedLabel { label: k.label(), weight: l }).collect()
        };
        let contributions = match self.model {
            Some(m) => {
                let mut terms: Vec<WeightedLabel> = m
                    .features()
                    .iter()
                    .zip(m.contributions(c.table.row(n)))
                    .filter(|(_, w)| *w > 0.0)
                    .map(|(label, weight)| WeightedLabel { label: label.clone(), weight })
                    .collect();
                terms.sort_by(|a, b| b.weight.total_cmp(&a.weight));
                terms.truncate(3);
                terms
            }
            None => Vec::new(),
        };
        let sources = |pairs: &[(ItemIdx, ItemIdx)]| -> Vec<String> {
            pairs.iter().filter(|(c, _)| *c == item).take(3).map(|(_, src)| catalog.id(*src).to_string()).collect()
        };
        Reasons {
            time: cfg.lambda_time * p.time,
            cooccurrence: cfg.lambda_cooccurrence * p.cooc,
            trending: cfg.lambda_trending * p.trend,
            context: cfg.lambda_context * p.context,
            knn: cfg.lambda_knn * p.knn,
            contributions,
            features: weighted,
            events,
            cooccurs_with: sources(&c.pool.cooc_from),
            similar_to: sources(&c.pool.similar_to),
            context_lifts,
        }
    }
}

fn recently_bought<E: HistoryEvent>(history: &[E], catalog: &Catalog, cfg: &ScoringConfig, now: DateTime<Utc>) -> IdxSet<ItemIdx> {
    if cfg.purchased_filter_days <= 0.0 {
        return IdxSet::default();
    }
    let window = cfg.purchased_filter_days * 86_400.0;
    history
        .iter()
        .filter(|e| cfg.purchase_kinds.iter().any(|k| k == e.kind(catalog)))
        .filter(|e| (0.0..=window).contains(&age_secs(now, e.ts())))
        .filter_map(|e| e.item(catalog))
        .collect()
}
