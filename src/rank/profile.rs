//! Interest vectors: what a user cares about at time `T`, from their decayed events.
//!
//! `I_u(T) = Σ_e w_kind(e) · d(T − ts_e) · x(item_e)` over the user's events inside the
//! horizon, where `x(item)` has a 1 for the item itself, for its category and every ancestor,
//! and for its brand. Kinds with negative weights (dismiss, return) subtract. The features of
//! one profile are indexed on the fly and accumulated into a dense `ndarray` vector.
//!
//! Pure: the caller passes the events, the catalog, the kind weights, the decay and `now`.
//! Events after `now` are ignored, so replaying a log never looks ahead.


use chrono::{DateTime, Utc};
use ndarray::Array1;
use serde::Serialize;
use utoipa::ToSchema;

use crate::rank::catalog::{BrandIdx, CatIdx, Catalog, IdxMap, ItemIdx, StrMap};
use crate::rank::decay::{Decay, age_secs};
use crate::rank::history::HistoryEvent;

/// One dimension of the interest vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    Item(ItemIdx),
    Category(CatIdx),
    Brand(BrandIdx),
}

/// An event that contributed to a feature, for the reasons shown with recommendations.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Evidence {
    pub item_id: String,
    pub kind: String,
    pub ts: DateTime<Utc>,
    /// `w_kind · d(T − ts)`: what this event added to each of its features.
    pub contribution: f64,
}

/// The event kinds of a tuning: each kind's weight, and for a kind that names an item its
/// slot (its place among those kinds, by name), under which the per-kind signals of the
/// learned ranker are kept. At most [`MAX_KIND_SLOTS`] kinds get a slot.
#[derive(Clone, Debug, Default)]
pub struct KindWeights {
    by_name: StrMap<String, (f64, Option<u8>)>,
    item_kinds: Vec<String>,
}

/// Item kinds with a slot of their own.
pub const MAX_KIND_SLOTS: usize = 32;

impl KindWeights {
    /// From `(kind, weight, names an item)`.
    pub fn new<'a>(kinds: impl IntoIterator<Item = (&'a str, f64, bool)>) -> Self {
        let mut kinds: Vec<(&str, f64, bool)> = kinds.into_iter().collect();
        kinds.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = KindWeights::default();
        for (name, weight, item) in kinds {
            let slot = (item && out.item_kinds.len() < MAX_KIND_SLOTS).then(|| {
                out.item_kinds.push(name.to_string());
                (out.item_kinds.len() - 1) as u8
            });
            out.by_name.insert(name.to_string(), (weight, slot));
        }
        out
    }

    /// The weight of `kind` (0 for kinds not configured).
    #[inline]
    pub fn weight(&self, kind: &str) -> f64 {
        self.by_name.get(kind).map_or(0.0, |k| k.0)
    }

    /// The slot of an item kind.
    #[inline]
    pub fn slot(&self, kind: &str) -> Option<u8> {
        self.by_name.get(kind).and_then(|k| k.1)
    }

    /// The item kinds with a slot, in slot order.
    pub fn item_kinds(&self) -> &[String] {
        &self.item_kinds
    }
}

impl FromIterator<(String, f64)> for KindWeights {
    /// Every kind names an item.
    fn from_iter<I: IntoIterator<Item = (String, f64)>>(iter: I) -> Self {
        let kinds: Vec<(String, f64)> = iter.into_iter().collect();
        KindWeights::new(kinds.iter().map(|(k, w)| (k.as_str(), *w, true)))
    }
}

impl Evidence {
    /// `event` (named through `catalog`), shown as having contributed `contribution`.
    pub fn of<E: HistoryEvent>(event: &E, catalog: &Catalog, contribution: f64) -> Evidence {
        Evidence {
            item_id: event.item_id(catalog).unwrap_or_default().to_string(),
            kind: event.kind(catalog).to_string(),
            ts: event.ts(),
            contribution,
        }
    }
}

/// How a profile is computed.
#[derive(Clone, Copy, Debug)]
pub struct ProfileParams<'a> {
    pub decay: &'a Decay,
    /// Weight per event kind; kinds not listed count 0.
    pub kind_weights: &'a KindWeights,
    /// Events older than this are left out, seconds.
    pub horizon_secs: f64,
}

/// Most evidence events kept per feature.
const EVIDENCE_PER_FEATURE: usize = 3;

/// The `EVIDENCE_PER_FEATURE` largest contributions to one feature, largest first (ties:
/// the earlier event first).
#[derive(Clone, Copy, Debug, Default)]
struct TopContributions {
    len: usize,
    top: [(f64, usize); EVIDENCE_PER_FEATURE],
}

impl TopContributions {
    fn offer(&mut self, c: f64, n: usize) {
        let at = self.top[..self.len].partition_point(|&(x, _)| x >= c);
        if at == EVIDENCE_PER_FEATURE {
            return;
        }
        self.len = (self.len + 1).min(EVIDENCE_PER_FEATURE);
        self.top.copy_within(at..self.len - 1, at + 1);
        self.top[at] = (c, n);
    }

    fn iter(&self) -> impl Iterator<Item = (f64, usize)> + '_ {
        self.top[..self.len].iter().copied()
    }
}

/// The interest vector of one user at one time.
#[derive(Clone, Debug, Default)]
pub struct InterestVector {
    index: IdxMap<Feature, usize>,
    features: Vec<Feature>,
    weights: Array1<f64>,
    /// Per feature, its largest positive contributions as (contribution, index of the event
    /// in the slice the vector was built from), largest first; turned into [`Evidence`] only
    /// for the features shown.
    evidence: Vec<TopContributions>,
    level: f64,
    /// Items the user touched, most recently touched last.
    recent: Vec<ItemTouch>,
    /// Position of each touched item in `recent`.
    recent_at: IdxMap<ItemIdx, u32>,
    /// Per touched item, the decayed count `Σ d(T − ts)` of each kind slot: the slots of the
    /// item at `ItemTouch::kinds_at`, `slots` of them.
    kind_sums: Vec<f32>,
    slots: usize,
}

/// What one user did with one item inside the horizon.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ItemTouch {
    pub item: ItemIdx,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    /// `Σ w_kind · d(T − ts)` over the item's events.
    pub weight: f64,
    /// Events on the item.
    pub touches: u32,
    /// Events on the item in the last hour before `T`.
    pub touches_last_hour: u32,
    /// The user's events (on any item) after their last one on this item.
    pub events_since: u32,
    /// Bit `s` is set when the item had an event of kind slot `s`.
    pub kinds: u32,
    kinds_at: u32,
}

impl InterestVector {
    /// Computes the vector from `events` at `now`. Any order gives the same vector, but
    /// [`ItemTouch::events_since`] counts in slice order: callers keep histories oldest first.
    pub fn build<E: HistoryEvent>(events: &[E], catalog: &Catalog, params: &ProfileParams<'_>, now: DateTime<Utc>) -> Self {
        let mut index: IdxMap<Feature, usize> = IdxMap::default();
        let mut features = Vec::new();
        let mut contributions: Vec<(usize, f64, usize)> = Vec::new();
        let mut level = 0.0;
        let slots = params.kind_weights.item_kinds().len();
        let mut recent: Vec<ItemTouch> = Vec::new();
        let mut recent_at: IdxMap<ItemIdx, u32> = IdxMap::default();
        let mut kind_sums: Vec<f32> = Vec::new();
        let mut counted: u32 = 0;
        for (n, e) in events.iter().enumerate() {
            let ts = e.ts();
            let age = age_secs(now, ts);
            if age < 0.0 || age > params.horizon_secs {
                continue;
            }
            let kind = e.kind(catalog);
            let weight = params.kind_weights.weight(kind);
            if weight == 0.0 {
                continue;
            }
            let Some(item) = e.item(catalog) else { continue };
            let d = params.decay.weight(age);
            let c = weight * d;
            level += c;
            let at = *recent_at.entry(item).or_insert_with(|| {
                recent.push(ItemTouch {
                    item,
                    first: ts,
                    last: ts,
                    weight: 0.0,
                    touches: 0,
                    touches_last_hour: 0,
                    events_since: 0,
                    kinds: 0,
                    kinds_at: kind_sums.len() as u32,
                });
                kind_sums.extend(std::iter::repeat_n(0.0, slots));
                (recent.len() - 1) as u32
            });
            let r = &mut recent[at as usize];
            r.first = r.first.min(ts);
            if ts >= r.last {
                r.last = ts;
                // Until the end of the loop: the count of events counted so far.
                r.events_since = counted;
            }
            r.weight += c;
            r.touches += 1;
            r.touches_last_hour += u32::from(age <= 3600.0);
            counted += 1;
            if let Some(slot) = params.kind_weights.slot(kind).map(usize::from).filter(|&s| s < slots) {
                r.kinds |= 1 << slot;
                kind_sums[r.kinds_at as usize + slot] += d as f32;
            }
            let mut touch = |f: Feature| {
                let i = *index.entry(f).or_insert_with(|| {
                    features.push(f);
                    features.len() - 1
                });
                contributions.push((i, c, n));
            };
            touch(Feature::Item(item));
            for &cat in catalog.categories(item) {
                touch(Feature::Category(cat));
            }
            if let Some(b) = catalog.brand(item) {
                touch(Feature::Brand(b));
            }
        }
        let mut weights = Array1::<f64>::zeros(features.len());
        let mut evidence = vec![TopContributions::default(); features.len()];
        for &(i, c, n) in &contributions {
            weights[i] += c;
            if c > 0.0 {
                evidence[i].offer(c, n);
            }
        }
        for r in &mut recent {
            r.events_since = counted - 1 - r.events_since;
        }
        recent.sort_by_key(|r| (r.last, r.item));
        for (at, r) in recent.iter().enumerate() {
            recent_at.insert(r.item, at as u32);
        }
        InterestVector { index, features, weights, evidence, level: level.max(0.0), recent, recent_at, kind_sums, slots }
    }

    /// The weight of one feature (0 when absent).
    pub fn weight(&self, f: Feature) -> f64 {
        self.index.get(&f).map_or(0.0, |&i| self.weights[i])
    }

    /// The events that contributed most to a feature, largest first. `events` must be the
    /// slice the vector was built from.
    pub fn evidence<E: HistoryEvent>(&self, f: Feature, events: &[E], catalog: &Catalog) -> Vec<Evidence> {
        self.contributions(f).map(|(c, n)| Evidence::of(&events[n], catalog, c)).collect()
    }

    /// What [`InterestVector::evidence`] shows, as (contribution, index of the event in the
    /// slice the vector was built from), largest first.
    pub fn contributions(&self, f: Feature) -> impl Iterator<Item = (f64, usize)> + '_ {
        self.index.get(&f).into_iter().flat_map(|&i| self.evidence[i].iter())
    }

    /// Features with a positive weight, heaviest first, at most `n`.
    pub fn top(&self, n: usize) -> Vec<(Feature, f64)> {
        let mut v: Vec<(Feature, f64)> =
            self.features.iter().zip(self.weights.iter()).filter(|(_, w)| **w > 0.0).map(|(f, w)| (*f, *w)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// Categories with a positive weight, heaviest first, at most `n`.
    pub fn top_categories(&self, n: usize) -> Vec<(CatIdx, f64)> {
        let mut v: Vec<(CatIdx, f64)> = self
            .features
            .iter()
            .zip(self.weights.iter())
            .filter_map(|(f, w)| match f {
                Feature::Category(c) if *w > 0.0 => Some((*c, *w)),
                _ => None,
            })
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// The largest feature weight (for normalising scores; 0 for an empty profile).
    pub fn max_weight(&self) -> f64 {
        self.weights.iter().copied().fold(0.0, f64::max)
    }

    /// The interest level `I = max(0, Σ_e w_kind · d(T − ts))` over the item events counted:
    /// the decayed amount of (net positive) attention, used by the push frequency policy.
    pub fn level(&self) -> f64 {
        self.level
    }

    /// No positive interest at all (a cold start).
    pub fn is_empty(&self) -> bool {
        self.weights.iter().all(|w| *w <= 0.0)
    }

    /// Items the user touched, most recently touched last.
    pub fn recent_items(&self) -> &[ItemTouch] {
        &self.recent
    }

    /// What the user did with `item`, if they touched it inside the horizon, and its position
    /// among [`InterestVector::recent_items`] counted from the most recent (0).
    #[inline]
    pub fn touch(&self, item: ItemIdx) -> Option<(&ItemTouch, usize)> {
        let at = *self.recent_at.get(&item)? as usize;
        Some((&self.recent[at], self.recent.len() - 1 - at))
    }

    /// The decayed count of each kind slot on a touched item, in slot order.
    pub fn kind_sums(&self, touch: &ItemTouch) -> &[f32] {
        let at = touch.kinds_at as usize;
        &self.kind_sums[at..at + self.slots]
    }

    /// Human-readable label of a feature.
    pub fn label(catalog: &Catalog, f: Feature) -> String {
        match f {
            Feature::Item(i) => format!("item:{}", catalog.id(i)),
            Feature::Category(c) => format!("category:{}", catalog.category_name(c)),
            Feature::Brand(b) => format!("brand:{}", catalog.brand_name(b)),
        }
    }
}

#[cfg(test)]
mod tests;
