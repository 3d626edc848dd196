//! Context ("scene") sensitivity: how much each context lifts each category.
//!
//! A context is described by a few discrete keys ([`ContextKey`]): the device class, the band
//! of the local hour ([`HourBand`]), weekday or weekend ([`DayType`]) and the country. `stats`
//! counts (kind-weighted) events per category and key; from those counts [`ContextModel`]
//! estimates the lift `P(category | key) / P(category)` of every category in every key.
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

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use std::sync::Arc;

use crate::rank::catalog::{CatIdx, Catalog, IdxMap};
use crate::domain::{Device, EventContext};
use crate::rank::stats::ContextView;

/// A category's context score never goes beyond `±` this (in natural-log units of lift).
pub const CONTEXT_SCORE_CLAMP: f64 = 3.0;

/// Band of the local hour of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HourBand {
    /// 00:00–05:59
    Night,
    /// 06:00–11:59
    Morning,
    /// 12:00–17:59
    Afternoon,
    /// 18:00–23:59
    Evening,
}

impl HourBand {
    pub const ALL: [HourBand; 4] = [HourBand::Night, HourBand::Morning, HourBand::Afternoon, HourBand::Evening];

    /// The band of a local hour (0–23; larger values wrap).
    pub fn from_hour(hour: u32) -> Self {
        match hour % 24 {
            0..=5 => HourBand::Night,
            6..=11 => HourBand::Morning,
            12..=17 => HourBand::Afternoon,
            _ => HourBand::Evening,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HourBand::Night => "night",
            HourBand::Morning => "morning",
            HourBand::Afternoon => "afternoon",
            HourBand::Evening => "evening",
        }
    }
}

/// Weekday or weekend (Saturday and Sunday), in the user's local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DayType {
    Weekday,
    Weekend,
}

impl DayType {
    pub fn from_weekend(weekend: bool) -> Self {
        if weekend { DayType::Weekend } else { DayType::Weekday }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DayType::Weekday => "weekday",
            DayType::Weekend => "weekend",
        }
    }
}

/// An ISO 3166-1 alpha-2 country code, stored upper case in two bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    /// Parses two ASCII letters (any case); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        (b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic))
            .then(|| Country([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()]))
    }

    pub fn as_str(&self) -> &str {
        // Always two ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

/// One discrete context key that events and requests carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContextKey {
    Device(Device),
    HourBand(HourBand),
    DayType(DayType),
    Country(Country),
}

impl ContextKey {
    /// `device=mobile`, `hour=night`, `day=weekend`, `country=DE`.
    pub fn label(&self) -> String {
        match self {
            ContextKey::Device(d) => format!("device={}", d.as_str()),
            ContextKey::HourBand(h) => format!("hour={}", h.as_str()),
            ContextKey::DayType(d) => format!("day={}", d.as_str()),
            ContextKey::Country(c) => format!("country={}", c.as_str()),
        }
    }
}

/// The context of a recommendation request. Hour and weekday are already in the user's local
/// time (the caller converts with the user's time zone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestContext {
    pub device: Option<Device>,
    /// Local hour of day, 0–23.
    pub local_hour: u32,
    /// Saturday or Sunday in the user's local time.
    pub weekend: bool,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
}

impl RequestContext {
    /// The context at local time `local`.
    pub fn at<Tz: TimeZone>(local: &DateTime<Tz>, device: Option<Device>, country: Option<String>) -> Self {
        RequestContext {
            device,
            local_hour: local.hour(),
            weekend: matches!(local.weekday(), Weekday::Sat | Weekday::Sun),
            country,
        }
    }

    /// The keys of this context: device (if known), hour band, day type, country (if valid).
    pub fn keys(&self) -> Vec<ContextKey> {
        let mut keys = Vec::with_capacity(4);
        if let Some(d) = self.device {
            keys.push(ContextKey::Device(d));
        }
        keys.push(ContextKey::HourBand(HourBand::from_hour(self.local_hour)));
        keys.push(ContextKey::DayType(DayType::from_weekend(self.weekend)));
        if let Some(c) = self.country.as_deref().and_then(Country::parse) {
            keys.push(ContextKey::Country(c));
        }
        keys
    }
}

/// The context keys of an event at `ts`, in time zone `tz` (the user's, or the event's own
/// `context.timezone` if the caller prefers it).
pub fn event_keys<Tz: TimeZone>(ts: DateTime<Utc>, tz: &Tz, ctx: &EventContext) -> Vec<ContextKey> {
    RequestContext::at(&ts.with_timezone(tz), ctx.device, ctx.country.clone()).keys()
}

/// Smoothed lifts of every category of the catalogue in every context key the counts have
/// seen, at one time. Computed in one pass, parents before children (a few thousand
/// categories × a dozen keys: well under a millisecond), and shared by every request until
/// `stats.cache_ttl_secs` have passed (see `Stats::context_lifts`).
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
    use crate::rank::catalog::{Catalog, tests::item};
    use crate::rank::stats::{Observation, Stats, StatsConfig};
    use chrono::{Duration, FixedOffset};

    #[test]
    fn hours_fall_into_four_bands() {
        assert_eq!(HourBand::from_hour(0), HourBand::Night);
        assert_eq!(HourBand::from_hour(5), HourBand::Night);
        assert_eq!(HourBand::from_hour(6), HourBand::Morning);
        assert_eq!(HourBand::from_hour(12), HourBand::Afternoon);
        assert_eq!(HourBand::from_hour(18), HourBand::Evening);
        assert_eq!(HourBand::from_hour(23), HourBand::Evening);
    }

    #[test]
    fn request_context_keys_come_from_local_time() {
        // 2017-12-02 (a Saturday) 15:30 UTC is 23:30 in UTC+8.
        let utc = Utc.with_ymd_and_hms(2017, 12, 2, 15, 30, 0).unwrap();
        let local = utc.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap());
        let ctx = RequestContext::at(&local, Some(Device::Mobile), Some("cn".into()));
        assert_eq!((ctx.local_hour, ctx.weekend), (23, true));
        assert_eq!(
            ctx.keys(),
            vec![
                ContextKey::Device(Device::Mobile),
                ContextKey::HourBand(HourBand::Evening),
                ContextKey::DayType(DayType::Weekend),
                ContextKey::Country(Country::parse("CN").unwrap()),
            ]
        );
        let bare = RequestContext { local_hour: 9, country: Some("nowhere".into()), ..Default::default() };
        assert_eq!(bare.keys().len(), 2, "no device, invalid country: hour and day only");
        assert_eq!(ContextKey::Country(Country::parse("de").unwrap()).label(), "country=DE");
    }

    fn stats_with(log: &[(&str, &str, Device, u32)], catalog: &mut Catalog) -> (Stats, DateTime<Utc>) {
        let mut stats = Stats::new(StatsConfig::default());
        let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        for (n, &(user, cat, device, hour)) in log.iter().enumerate() {
            let id = format!("{cat}-{n}");
            let idx = catalog.upsert(item(&id, cat, None));
            let ts = t0 + Duration::minutes(n as i64);
            let ctx = RequestContext { device: Some(device), local_hour: hour, weekend: false, country: None };
            let keys = ctx.keys();
            stats.observe(&Observation {
                user,
                item: idx,
                categories: catalog.categories(idx),
                brand: None,
                weight: 1.0,
                ts,
                context: &keys,
            });
        }
        (stats, t0 + Duration::minutes(log.len() as i64))
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
        let (stats, now) = stats_with(&log, &mut catalog);
        let mobile_night = RequestContext { device: Some(Device::Mobile), local_hour: 23, ..Default::default() };
        let m = ContextModel::new(stats.context_lifts(now, &catalog, 5.0), &mobile_night.keys());
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
        let stats = Stats::new(StatsConfig::default());
        let keys = RequestContext { device: Some(Device::Tablet), ..Default::default() }.keys();
        let m = ContextModel::new(stats.context_lifts(Utc::now(), &Catalog::new(), 10.0), &keys);
        assert!(m.lifts(&[CatIdx(0)]).iter().all(|&l| (l - 1.0).abs() < 1e-12));
        assert_eq!(m.score(&[]), 0.0);
    }

    #[test]
    fn a_category_newer_than_the_lifts_and_an_unseen_key_are_handled_without_recomputing() {
        let mut catalog = Catalog::new();
        let log: Vec<_> = (0..100).flat_map(|_| [("u", "toys/cars", Device::Mobile, 20), ("u", "tools/saws", Device::Desktop, 20)]).collect();
        let (stats, now) = stats_with(&log, &mut catalog);
        let lifts = stats.context_lifts(now, &catalog, 5.0);
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
        let (stats, now) = stats_with(&log, &mut catalog);
        let keys = RequestContext { device: Some(Device::Mobile), local_hour: 20, ..Default::default() }.keys();
        let m = ContextModel::new(stats.context_lifts(now, &catalog, 5.0), &keys);
        let dolls = catalog.category_path(catalog.category_idx("toys/dolls").unwrap());
        let toys = m.lifts(&dolls[..1])[0];
        let d = m.lifts(&dolls)[0];
        assert!(toys > 1.8, "toys lift on mobile {toys}");
        assert!(d > 1.7, "dolls, seen once, is shrunk towards toys, not towards 1: {d}");
    }
}
