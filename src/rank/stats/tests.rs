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
    // The global and category segments read one series per item: the items of the last
    // horizon and at most an eighth more (expired series are dropped at each full prune), one
    // event a minute; the weekday segment holds its cap and what one hour adds.
    assert!(peak.segment_items <= (24 + 3) * 60 + (50 + 60), "{peak:?}");
    assert!(peak.neighbour_pairs < 20_000, "{peak:?}");
    let end = s.sizes();
    assert!(end.users <= 37);
    // Everything left lies inside the horizon.
    let now = t0() + Duration::minutes(60_000);
    let all_time = s.view(now, &Decay::None).trending(Segment::Global, 10_000);
    let total: f64 = all_time.iter().map(|x| x.1).sum();
    assert!(total <= 24.0 * 60.0 + 1.0, "{total}");
    let weekday = s.view(now, &Decay::None).trending(Segment::Context(ctx[0]), 10_000);
    assert!(weekday.len() <= 50 + 60, "a context segment keeps its cap: {}", weekday.len());
}

/// A burst inside one bucket: memory used to grow with every distinct item and pair until
/// the next bucket began (40,000 events in ten minutes left ~160,000 pairs); now no context
/// segment or co-occurrence source holds more than twice its cap at any moment, and the
/// global and category segments hold one series per distinct item.
#[test]
fn a_burst_of_distinct_items_inside_one_bucket_stays_bounded() {
    let cfg = StatsConfig { max_items_per_segment: 50, max_neighbours: 5, max_recent_per_user: 4, ..Default::default() };
    let mut s = Stats::new(cfg);
    let cats = [CatIdx(0)];
    let mut peak = StatsSizes::default();
    for n in 0..40_000u32 {
        let ts = t0() + Duration::milliseconds(i64::from(n) * 15); // ten minutes, one bucket
        let user = format!("u{}", n % 500);
        s.observe(&obs(&user, (n * 7919) % 20_000, &cats, ts, NO_CTX));
        if n % 500 == 499 {
            let z = s.sizes();
            peak.segment_items = peak.segment_items.max(z.segment_items);
            peak.neighbour_pairs = peak.neighbour_pairs.max(z.neighbour_pairs);
        }
    }
    // One series per distinct item, read by the global and the category segment alike.
    assert!(peak.segment_items <= 20_000, "{peak:?}");
    // Each of at most 20,000 sources holds at most twice its cap.
    let sources = s.cooc.len();
    assert!(peak.neighbour_pairs <= sources * 2 * 5, "{peak:?} over {sources} sources");
    assert!(s.cooc.values().all(|ns| ns.len() <= 2 * 5));
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
fn config_validation_names_the_key() {
    assert!(StatsConfig::default().validate().is_ok());
    let e = StatsConfig { max_neighbours: 0, ..Default::default() }.validate().unwrap_err();
    assert!(e.contains("stats.max_neighbours"), "{e}");
    let e = StatsConfig { horizon_hours: -1.0, ..Default::default() }.validate().unwrap_err();
    assert!(e.contains("stats.horizon_hours"), "{e}");
}
