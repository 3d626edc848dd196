use super::*;
use chrono::{Duration, TimeZone};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()
}

#[test]
fn items_taken_by_the_same_users_are_similar_by_cosine() {
    let mut k = ItemKnn::new(&StatsConfig::default());
    // Users u0..u3 take a then b; u4 takes a then c; u5 takes only c.
    for u in 0..4 {
        k.observe(UserKey::test(&format!("u{u}")), ItemIdx(1), t0());
        k.observe(UserKey::test(&format!("u{u}")), ItemIdx(2), t0() + Duration::hours(1));
    }
    k.observe(UserKey::test("u4"), ItemIdx(1), t0());
    k.observe(UserKey::test("u4"), ItemIdx(3), t0());
    k.observe(UserKey::test("u5"), ItemIdx(3), t0());
    let table = k.table(t0() + Duration::hours(2), &Decay::None);
    let ab = k.similarity(&table, ItemIdx(1), ItemIdx(2));
    let ac = k.similarity(&table, ItemIdx(1), ItemIdx(3));
    assert!((ab - 4.0 / (5.0f64 * 4.0).sqrt()).abs() < 1e-9, "{ab}");
    assert!((ac - 1.0 / (5.0f64 * 2.0).sqrt()).abs() < 1e-9, "{ac}");
    assert_eq!(k.similarity(&table, ItemIdx(2), ItemIdx(3)), 0.0);
    assert_eq!(k.similarity(&table, ItemIdx(2), ItemIdx(1)), ab, "symmetric");
}

#[test]
fn a_repeated_touch_counts_its_user_once_and_old_items_leave_the_window() {
    let cfg = StatsConfig { knn_recent_items: 2, ..StatsConfig::default() };
    let mut k = ItemKnn::new(&cfg);
    for (n, item) in [1, 1, 1, 2, 3, 4].into_iter().enumerate() {
        k.observe(UserKey::test("u"), ItemIdx(item), t0() + Duration::minutes(n as i64));
    }
    let table = k.table(t0() + Duration::hours(1), &Decay::None);
    assert_eq!(k.users_of(&table, ItemIdx(1)), 1.0, "one user, however often");
    assert!(k.similarity(&table, ItemIdx(3), ItemIdx(2)) > 0.0);
    assert!(k.similarity(&table, ItemIdx(4), ItemIdx(3)) > 0.0);
    assert_eq!(k.similarity(&table, ItemIdx(4), ItemIdx(1)), 0.0, "1 had left the two remembered items");
}

#[test]
fn similarity_decays_with_the_configured_kernel_and_old_days_are_dropped() {
    let mut k = ItemKnn::new(&StatsConfig { horizon_hours: 48.0, ..StatsConfig::default() });
    k.observe(UserKey::test("old"), ItemIdx(1), t0());
    k.observe(UserKey::test("old"), ItemIdx(2), t0());
    for u in 0..3 {
        k.observe(UserKey::test(&format!("new{u}")), ItemIdx(1), t0() + Duration::days(1));
        k.observe(UserKey::test(&format!("new{u}")), ItemIdx(3), t0() + Duration::days(1));
    }
    let now = t0() + Duration::days(1) + Duration::hours(12);
    let flat = k.table(now, &Decay::None);
    let fast = k.table(now, &Decay::Exponential { half_life_hours: 6.0 });
    let (b_flat, b_fast) = (k.similarity(&flat, ItemIdx(1), ItemIdx(2)), k.similarity(&fast, ItemIdx(1), ItemIdx(2)));
    assert!(b_fast < b_flat, "the old pair weighs less under a short half-life: {b_fast} vs {b_flat}");
    k.observe(UserKey::test("late"), ItemIdx(9), t0() + Duration::days(5));
    let later = k.table(t0() + Duration::days(5), &Decay::None);
    assert_eq!(k.similarity(&later, ItemIdx(1), ItemIdx(3)), 0.0, "past the horizon");
    assert_eq!(k.sizes().0, 0, "pruned");
}

#[test]
fn a_pair_keeps_its_latest_day_exact_and_earlier_days_at_their_mean_day() {
    assert_eq!(std::mem::size_of::<Pair>(), 16);
    let mut d = PairDays::default();
    for (day, n) in [(2u16, 3u32), (4, 1), (10, 2)] {
        for _ in 0..n {
            d.add(day);
        }
    }
    // Days 2 (×3) and 4 (×1) merged at (3·2 + 4) / 4 = 2.5, rounded to 3; day 10 exact.
    assert_eq!(d.slots().collect::<Vec<_>>(), vec![(3, 4), (10, 2)]);
    d.add(5);
    assert_eq!(d.slots().collect::<Vec<_>>(), vec![(3, 5), (10, 2)], "a late day joins the earlier slot");
    // Under no decay the sum is the count; the horizon drops a slot as a whole.
    let base = 100;
    let now = DateTime::from_timestamp((base + 12) * KNN_BUCKET_SECS, 0).unwrap();
    let table = DecayTable::new(now, KNN_BUCKET_SECS, 14, &Decay::None);
    assert_eq!(d.sum(&table, base), 7.0);
    assert!(!d.prune(4));
    assert_eq!(d.slots().collect::<Vec<_>>(), vec![(10, 2)]);
    assert!(d.prune(11));
}

#[test]
fn similarities_are_the_same_from_compact_pairs_under_no_decay() {
    // Two users co-touch a and b on different days, one user a and c: the counts behind
    // the cosine are the users, however their days were merged.
    let mut k = ItemKnn::new(&StatsConfig::default());
    for (u, day) in [("u1", 0), ("u2", 3), ("u3", 5)] {
        k.observe(UserKey::test(u), ItemIdx(1), t0() + Duration::days(day));
        k.observe(UserKey::test(u), ItemIdx(2), t0() + Duration::days(day) + Duration::hours(1));
    }
    k.observe(UserKey::test("u4"), ItemIdx(1), t0() + Duration::days(5));
    k.observe(UserKey::test("u4"), ItemIdx(3), t0() + Duration::days(5));
    let table = k.table(t0() + Duration::days(6), &Decay::None);
    let ab = k.similarity(&table, ItemIdx(1), ItemIdx(2));
    assert!((ab - 3.0 / (4.0f64 * 3.0).sqrt()).abs() < 1e-9, "{ab}");
    let mut sims = k.similarities(&table, ItemIdx(1));
    sims.sort_by_key(|x| x.0);
    assert_eq!(sims.len(), 2);
    assert!((sims[1].1 - 1.0 / 4.0f64.sqrt()).abs() < 1e-9, "{sims:?}");
}

#[test]
fn neighbours_and_tracked_items_stay_within_their_caps() {
    let cfg = StatsConfig { knn_recent_items: 5, knn_max_neighbours: 3, knn_max_items: 50, ..StatsConfig::default() };
    let mut k = ItemKnn::new(&cfg);
    for n in 0..20_000u32 {
        let ts = t0() + Duration::minutes(i64::from(n));
        k.observe(UserKey::test(&format!("u{}", n % 97)), ItemIdx((n * 7919) % 5000), ts);
    }
    let (items, pairs) = k.sizes();
    assert!(items <= 5000 && pairs <= items * 4, "a quarter over the cap at most: {items} items, {pairs} pairs");
    assert!(k.users_of.len() <= 50 + 1440, "at most the cap plus a day's new items: {}", k.users_of.len());
}
