use super::*;
use crate::rank::context::event_keys;
use crate::domain::{Device, Event, EventContext, EventProps, Item};
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
            weight: weights().weight(&e.kind),
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
    Scorer { catalog, stats, kinds: &w, cfg, model: None }.rank(&Request { n: 4, context: ctx, exclude }, &profile, history, now)
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
