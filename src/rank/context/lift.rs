//! How much each context lifts each category: counts per category and context key, and
//! the smoothed lift estimated from them.
//!
//! ## Smoothing
//!
//! The raw lift `n(c,x) / e(c,x)`, with the expected count `e(c,x) = n(c)·n(x)/N`, is noise for
//! rare categories and rare contexts. It is shrunk with a Gamma–Poisson prior of strength
//! `m` (`scoring.context_prior`, in pseudo-events) centred on the lift of the parent category
//! (a root is centred on 1):
//!
//! ```text
//! lift(c, x) = (n(c,x) + m · lift(parent(c), x)) / (e(c,x) + m)
//! ```
//!
//! With little data (`n, e ≪ m`) the lift is the parent's (finally 1: "no effect"); with a lot
//! it is the observed ratio. A category's context score for a request is `Σ_x ln lift(c, x)`
//! over the request's keys (keys are treated as independent, naive-Bayes style), clamped to
//! `±CONTEXT_SCORE_CLAMP`.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::ContextKey;
use crate::rank::buckets::{DecayTable, Series};
use crate::rank::catalog::{CatIdx, Catalog, IdxMap};
use crate::rank::decay::Decay;

/// A category's context score never goes beyond `±` this (in natural-log units of lift).
pub const CONTEXT_SCORE_CLAMP: f64 = 3.0;
/// Width of the context-count buckets: one day (context patterns move slowly).
const CONTEXT_BUCKET_SECS: i64 = 86_400;

/// Kind-weighted event counts per category and context key, in daily buckets over a
/// horizon; `stats` feeds them, [`ContextLifts`] reads them.
#[derive(Debug)]
pub struct ContextCounts {
    horizon_secs: i64,
    total: Series,
    key: IdxMap<ContextKey, Series>,
    cat: IdxMap<CatIdx, Series>,
    pair: IdxMap<(CatIdx, ContextKey), Series>,
    /// Lifts computed at most `cache_ttl` seconds earlier.
    lifts: Mutex<Option<(DateTime<Utc>, Arc<ContextLifts>)>>,
}

impl ContextCounts {
    /// Empty counts kept for `horizon_secs`.
    pub fn new(horizon_secs: i64) -> Self {
        ContextCounts {
            horizon_secs,
            total: Series::default(),
            key: IdxMap::default(),
            cat: IdxMap::default(),
            pair: IdxMap::default(),
            lifts: Mutex::new(None),
        }
    }

    /// Counts one event of weight `w` on an item of `categories` (every ancestor) at `ts`.
    pub fn observe(&mut self, categories: &[CatIdx], context: &[ContextKey], w: f32, ts: DateTime<Utc>) {
        let day = u32::try_from(ts.timestamp().div_euclid(CONTEXT_BUCKET_SECS).max(0)).unwrap_or(u32::MAX);
        self.total.add(day, w);
        for &k in context {
            self.key.entry(k).or_default().add(day, w);
        }
        for &c in categories {
            self.cat.entry(c).or_default().add(day, w);
            for &k in context {
                self.pair.entry((c, k)).or_default().add(day, w);
            }
        }
    }

    /// Drops the days before the horizon at `now`.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let oldest_day = (now.timestamp() - self.horizon_secs).div_euclid(CONTEXT_BUCKET_SECS);
        self.total.prune(oldest_day);
        self.key.retain(|_, s| !s.prune(oldest_day));
        self.cat.retain(|_, s| !s.prune(oldest_day));
        self.pair.retain(|_, s| !s.prune(oldest_day));
        self.clear_cache();
    }

    /// Forgets the cached lifts.
    pub fn clear_cache(&self) {
        *self.lifts.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Buckets held (for the statistics' sizes).
    pub fn buckets(&self) -> usize {
        self.pair.values().map(Series::len).sum()
    }

    /// A read view of the counts at `now` (undecayed, over the horizon).
    pub fn view(&self, now: DateTime<Utc>) -> ContextView<'_> {
        // Exactly the days `prune` keeps at `now`, whenever it last ran.
        let now_s = now.timestamp();
        let days = now_s.div_euclid(CONTEXT_BUCKET_SECS) - (now_s - self.horizon_secs).div_euclid(CONTEXT_BUCKET_SECS);
        ContextView { counts: self, table: DecayTable::new(now, CONTEXT_BUCKET_SECS, days, &Decay::None) }
    }

    /// The smoothed lifts of every category of `catalog` at `now` with smoothing strength
    /// `prior`: computed from [`ContextCounts::view`], or reused when computed at most
    /// `ttl_secs` before `now` (never after it) with the same prior and catalogue size.
    pub fn lifts(&self, now: DateTime<Utc>, catalog: &Catalog, prior: f64, ttl_secs: f64) -> Arc<ContextLifts> {
        if ttl_secs > 0.0
            && let Some((at, lifts)) = self.lifts.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && (0.0..=ttl_secs).contains(&crate::rank::decay::age_secs(now, *at))
            && lifts.prior() == prior.max(1e-9)
            && lifts.categories() == catalog.category_count()
        {
            return lifts.clone();
        }
        let lifts = Arc::new(ContextLifts::compute(&self.view(now), catalog, prior));
        if ttl_secs > 0.0 {
            *self.lifts.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, lifts.clone()));
        }
        lifts
    }
}

/// Context counts at one `now`: kind-weighted events over the horizon (not decayed).
pub struct ContextView<'a> {
    counts: &'a ContextCounts,
    table: DecayTable,
}

impl ContextView<'_> {
    /// All events.
    pub fn total(&self) -> f64 {
        self.counts.total.sum(&self.table)
    }

    /// Events in category `cat` (or a subcategory).
    pub fn category_total(&self, cat: CatIdx) -> f64 {
        self.counts.cat.get(&cat).map_or(0.0, |s| s.sum(&self.table))
    }

    /// Every context key with events, with its total, in key order.
    pub fn keys(&self) -> Vec<(ContextKey, f64)> {
        let mut keys: Vec<(ContextKey, f64)> =
            self.counts.key.iter().map(|(&k, s)| (k, s.sum(&self.table))).filter(|&(_, n)| n > 0.0).collect();
        keys.sort_by_key(|&(k, _)| k);
        keys
    }

    /// Events in category `cat` with context key `key`.
    pub fn pair(&self, cat: CatIdx, key: ContextKey) -> f64 {
        self.counts.pair.get(&(cat, key)).map_or(0.0, |s| s.sum(&self.table))
    }
}


/// Smoothed lifts of every category of the catalogue in every context key the counts have
/// seen, at one time. Computed in one pass, parents before children (a few thousand
/// categories × a dozen keys: well under a millisecond), and shared by every request until
/// `stats.cache_ttl_secs` have passed (see [`ContextCounts::lifts`]).
#[derive(Debug)]
pub struct ContextLifts {
    prior: f64,
    /// Column of each observed key.
    columns: IdxMap<ContextKey, usize>,
    /// `lifts[c · columns.len() + k]`: lift of category `c` in the key of column `k`.
    lifts: Vec<f64>,
    /// `ln` of each lift (the context score sums them).
    logs: Vec<f64>,
    /// Categories covered (those of the catalogue when computed).
    categories: usize,
}

impl ContextLifts {
    /// The lifts from `view`'s counts with smoothing strength `prior` (`m`), for the
    /// categories of `catalog`.
    pub fn compute(view: &ContextView<'_>, catalog: &Catalog, prior: f64) -> Self {
        let prior = prior.max(1e-9);
        let total = view.total();
        let keys = view.keys();
        let width = keys.len();
        let columns = keys.iter().enumerate().map(|(i, &(k, _))| (k, i)).collect();
        let categories = catalog.category_count();
        let mut order: Vec<CatIdx> = (0..categories as u32).map(CatIdx).collect();
        order.sort_by_key(|&c| catalog.category_depth(c));
        let mut lifts = vec![1.0; categories * width];
        for c in order {
            let n_c = view.category_total(c);
            let parent = catalog.category_parent(c).map(|p| p.0 as usize);
            for (k, &(key, n_x)) in keys.iter().enumerate() {
                let p = parent.map_or(1.0, |p| lifts[p * width + k]);
                let expected = if total > 0.0 { n_c * n_x / total } else { 0.0 };
                let n = if n_c > 0.0 && n_x > 0.0 { view.pair(c, key) } else { 0.0 };
                lifts[c.0 as usize * width + k] = (n + prior * p) / (expected + prior);
            }
        }
        let logs = lifts.iter().map(|l| l.ln()).collect();
        ContextLifts { prior, columns, lifts, logs, categories }
    }

    /// The smoothing strength these lifts were computed with.
    pub fn prior(&self) -> f64 {
        self.prior
    }

    /// Categories covered.
    pub fn categories(&self) -> usize {
        self.categories
    }
}

/// Lift of categories in one request's context: the request's columns of [`ContextLifts`].
///
/// A key never seen in the counts has lift 1 everywhere; a category newer than the lifts
/// (added to the catalogue since) takes the lift of its nearest covered ancestor, as a
/// category with no events does.
pub struct ContextModel {
    lifts: Arc<ContextLifts>,
    columns: Vec<Option<usize>>,
}

impl ContextModel {
    /// A model for the keys of one request.
    pub fn new(lifts: Arc<ContextLifts>, keys: &[ContextKey]) -> Self {
        let columns = keys.iter().map(|k| lifts.columns.get(k).copied()).collect();
        ContextModel { lifts, columns }
    }

    /// Lifts of `path`'s last category in each of the request's keys (same order as the
    /// keys given to [`ContextModel::new`]). `path` is the category with its ancestors, root
    /// first.
    pub fn lifts(&self, path: &[CatIdx]) -> Vec<f64> {
        self.cells(path).map(|cell| cell.map_or(1.0, |i| self.lifts.lifts[i])).collect()
    }

    /// The context score of a category: `Σ_x ln lift(c, x)`, clamped to `±CONTEXT_SCORE_CLAMP`.
    pub fn score(&self, path: &[CatIdx]) -> f64 {
        let s: f64 = self.cells(path).map(|cell| cell.map_or(0.0, |i| self.lifts.logs[i])).sum();
        s.clamp(-CONTEXT_SCORE_CLAMP, CONTEXT_SCORE_CLAMP)
    }

    /// Index into the lift table of `path`'s row for each request key (`None`: lift 1).
    fn cells(&self, path: &[CatIdx]) -> impl Iterator<Item = Option<usize>> + '_ {
        let row = path.iter().rev().find(|c| (c.0 as usize) < self.lifts.categories).map(|c| c.0 as usize);
        let width = self.lifts.columns.len();
        self.columns.iter().map(move |col| Some(row? * width + (*col)?))
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Device;
    use crate::rank::catalog::tests::item;
    use crate::rank::context::RequestContext;
    use chrono::{Duration, TimeZone};

    fn counts_with(log: &[(&str, &str, Device, u32)], catalog: &mut Catalog) -> (ContextCounts, DateTime<Utc>) {
        let mut counts = ContextCounts::new(14 * 86_400);
        let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        for (n, &(_user, cat, device, hour)) in log.iter().enumerate() {
            let id = format!("{cat}-{n}");
            let idx = catalog.upsert(item(&id, cat, None));
            let ts = t0 + Duration::minutes(n as i64);
            let ctx = RequestContext { device: Some(device), local_hour: hour, weekend: false, country: None };
            counts.observe(catalog.categories(idx), &ctx.keys(), 1.0, ts);
        }
        (counts, t0 + Duration::minutes(log.len() as i64))
    }

    #[test]
    fn a_category_that_dominates_a_context_is_lifted_there_and_shrunk_when_rare() {
        let mut catalog = Catalog::new();
        let mut log = Vec::new();
        for _ in 0..200 {
            log.push(("u", "games", Device::Mobile, 23));
            log.push(("u", "office", Device::Desktop, 10));
        }
        log.push(("u", "garden", Device::Mobile, 23));
        let (counts, now) = counts_with(&log, &mut catalog);
        let mobile_night = RequestContext { device: Some(Device::Mobile), local_hour: 23, ..Default::default() };
        let m = ContextModel::new(counts.lifts(now, &catalog, 5.0, 0.0), &mobile_night.keys());
        let games = [catalog.category_idx("games").unwrap()];
        let office = [catalog.category_idx("office").unwrap()];
        let garden = [catalog.category_idx("garden").unwrap()];
        assert!(m.lifts(&games)[0] > 1.8, "games on mobile: {:?}", m.lifts(&games));
        assert!(m.lifts(&office)[0] < 0.1, "office on mobile: {:?}", m.lifts(&office));
        assert!(m.score(&games) > 0.5 && m.score(&office) < -0.5);
        // One garden event on mobile: raw lift ≈ 2, shrunk to nearly 1.
        let g = m.lifts(&garden)[0];
        assert!(g > 1.0 && g < 1.2, "garden lift {g}");
        assert!(m.score(&games) <= CONTEXT_SCORE_CLAMP);
    }

    #[test]
    fn an_empty_log_lifts_nothing() {
        let counts = ContextCounts::new(86_400);
        let keys = RequestContext { device: Some(Device::Tablet), ..Default::default() }.keys();
        let m = ContextModel::new(counts.lifts(Utc::now(), &Catalog::new(), 10.0, 0.0), &keys);
        assert!(m.lifts(&[CatIdx(0)]).iter().all(|&l| (l - 1.0).abs() < 1e-12));
        assert_eq!(m.score(&[]), 0.0);
    }

    #[test]
    fn a_category_newer_than_the_lifts_and_an_unseen_key_are_handled_without_recomputing() {
        let mut catalog = Catalog::new();
        let log: Vec<_> = (0..100).flat_map(|_| [("u", "toys/cars", Device::Mobile, 20), ("u", "tools/saws", Device::Desktop, 20)]).collect();
        let (counts, now) = counts_with(&log, &mut catalog);
        let lifts = counts.lifts(now, &catalog, 5.0, 0.0);
        // Added to the catalogue after the lifts were computed: it takes its parent's lift.
        let new = catalog.upsert(item("late", "toys/dolls", None));
        let dolls = catalog.categories(new).to_vec();
        let tablet = ContextKey::Device(Device::Tablet);
        let m = ContextModel::new(lifts, &[ContextKey::Device(Device::Mobile), tablet]);
        let toys = m.lifts(&dolls[..1]);
        assert!(toys[0] > 1.5, "toys on mobile {toys:?}");
        assert_eq!(m.lifts(&dolls), toys, "the new subcategory has its parent's lifts");
        assert_eq!(toys[1], 1.0, "a key never seen lifts nothing");
        assert!((m.score(&dolls) - toys[0].ln()).abs() < 1e-12);
    }

    #[test]
    fn a_rare_subcategory_inherits_its_parents_lift() {
        let mut catalog = Catalog::new();
        let mut log = Vec::new();
        for _ in 0..100 {
            log.push(("u", "toys/cars", Device::Mobile, 20));
            log.push(("u", "tools/saws", Device::Desktop, 20));
        }
        log.push(("u", "toys/dolls", Device::Mobile, 20));
        let (counts, now) = counts_with(&log, &mut catalog);
        let keys = RequestContext { device: Some(Device::Mobile), local_hour: 20, ..Default::default() }.keys();
        let m = ContextModel::new(counts.lifts(now, &catalog, 5.0, 0.0), &keys);
        let dolls = catalog.category_path(catalog.category_idx("toys/dolls").unwrap());
        let toys = m.lifts(&dolls[..1])[0];
        let d = m.lifts(&dolls)[0];
        assert!(toys > 1.8, "toys lift on mobile {toys}");
        assert!(d > 1.7, "dolls, seen once, is shrunk towards toys, not towards 1: {d}");
    }
}
