use super::*;

fn model() -> ResponseModel {
    ResponseModel::default()
}

#[test]
fn the_open_probability_rises_with_relevance_and_hour_match_and_falls_with_recent_pushes() {
    let m = model();
    let grid = [0.0, 0.25, 0.5, 0.75, 1.0];
    for w in grid.windows(2) {
        for &other in &grid {
            for n in 0..5 {
                assert!(m.open_probability(w[1], other, n) > m.open_probability(w[0], other, n));
                assert!(m.open_probability(other, w[1], n) > m.open_probability(other, w[0], n));
            }
        }
    }
    for n in 0..10 {
        assert!(m.open_probability(0.5, 0.5, n + 1) < m.open_probability(0.5, 0.5, n));
    }
    let p = m.open_probability(1.0, 1.0, 0);
    assert!(p > 0.0 && p < 1.0);
}

#[test]
fn the_unsubscribe_hazard_rises_with_ignored_pushes_and_conversion_with_relevance() {
    let m = model();
    for k in 0..30 {
        assert!(m.unsubscribe_hazard(k + 1) > m.unsubscribe_hazard(k));
    }
    assert!(m.conversion_probability(1.0) > m.conversion_probability(0.5));
    assert!(m.conversion_probability(0.5) > m.conversion_probability(0.0));
}

#[test]
fn the_hour_profile_peaks_at_the_users_active_hour_and_a_negative_slope_is_refused() {
    let m = model();
    let mut counts = [0.0; 24];
    counts[21] = 30.0;
    counts[9] = 5.0;
    let pop = [1.0 / 24.0; 24];
    let h = m.hour_profile(&counts, &pop);
    assert_eq!(h[21], 1.0);
    assert!(h[9] > h[3] && h[3] > 0.0);
    assert_eq!(m.hour_profile(&[0.0; 24], &[0.0; 24]), [1.0; 24]);
    assert!(m.with("open.relevance", -1.0).is_err());
    assert!(m.with("open.nonsense", 1.0).is_err());
    assert_eq!(m.with("unsubscribe.per_ignored", 0.3).unwrap().unsubscribe.per_ignored, 0.3);
}

#[test]
fn the_shipped_params_file_parses_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/simulate.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let p = SimParams::from_toml(&text).unwrap();
    assert!(p.fixed.len() >= 2);
    assert!(SimParams::from_toml("[replay]\nnope = 1\n").is_err());
}

/// A small synthetic log in the dataset's format: 40 users over 4 days, evening-heavy.
fn synthetic_log() -> String {
    let mut rng = SmallRng::seed_from_u64(7);
    let start = 1_511_539_200i64; // 2017-11-25 00:00 +08
    let mut lines = Vec::new();
    for u in 0..40u64 {
        let fav_cat = 100 + u % 5;
        for _ in 0..60 {
            let day = rng.random_range(0..4i64);
            let hour = if rng.random_bool(0.7) { rng.random_range(19..23i64) } else { rng.random_range(8..23i64) };
            let ts = start + day * 86_400 + hour * 3600 + rng.random_range(0..3600i64);
            let cat = if rng.random_bool(0.8) { fav_cat } else { 100 + rng.random_range(0..5u64) };
            let item = cat * 100 + rng.random_range(0..15u64);
            let kind = ["pv", "pv", "pv", "pv", "fav", "cart", "buy"][rng.random_range(0..7usize)];
            lines.push(format!("{u},{item},{cat},{kind},{ts}"));
        }
    }
    lines.join("\n")
}

fn small_params() -> SimParams {
    SimParams {
        replay: ReplayParams {
            window_end: "2017-11-29T00:00:00+08:00".into(),
            replications: 2,
            sensitivity_replications: 1,
            push_warmup_days: 1.0,
            ..ReplayParams::default()
        },
        sensitivity: vec![Variant { key: "unsubscribe.per_ignored".into(), value: 0.5 }],
        ..SimParams::default()
    }
}

fn tuning() -> Tuning {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    Settings::load(&ConfigSource { dir, env_name: None, use_env: false }).unwrap().tuning
}

#[test]
fn the_simulation_is_deterministic_with_a_seed() {
    let data = Dataset::parse(synthetic_log().as_bytes()).unwrap();
    assert_eq!(data.user_ids.len(), 40);
    let tuning = tuning();
    let p = small_params();
    let a = simulate(&data, &p, &tuning, false).unwrap();
    let b = simulate(&data, &p, &tuning, false).unwrap();
    assert_eq!(a.arms, b.arms);
    assert_eq!(a.sensitivity, b.sensitivity);
    assert_eq!(a.adaptive_decisions, b.adaptive_decisions);
    // Every pushing arm pushed, the holdout never did, and organic conversions are shared.
    assert!(a.arms.iter().filter(|x| !x.name.starts_with("holdout")).all(|x| x.per_1000.pushes > 0.0), "{:?}", a.arms);
    let holdout = a.arms.last().unwrap();
    assert_eq!(holdout.per_1000.pushes, 0.0);
    assert!(a.arms.iter().all(|x| x.per_1000.organic_conversions == holdout.per_1000.conversions));
    // 3 pushes a day means more pushes than 1 a day.
    let arm = |prefix: &str| a.arms.iter().find(|x| x.name.starts_with(prefix)).expect("the arm");
    assert!(arm("fixed 3").per_1000.pushes > arm("fixed 1").per_1000.pushes);
    let md = a.to_markdown();
    assert!(md.contains("This is a simulation") && md.contains("opens per unsubscribe"));

    let mut other = p.clone();
    other.replay.seed = 43;
    let c = simulate(&data, &other, &tuning, false).unwrap();
    assert_ne!(
        c.arms.iter().map(|x| x.per_1000.opens).collect::<Vec<_>>(),
        a.arms.iter().map(|x| x.per_1000.opens).collect::<Vec<_>>(),
        "another seed draws other responses"
    );
}

#[test]
fn the_dataset_parser_maps_behaviours_and_orders_by_time_keeping_ties_in_file_order() {
    let d = Dataset::parse("2,10,1,pv,200\n1,11,1,buy,100\n1,12,2,cart,200\n".as_bytes()).unwrap();
    assert_eq!(d.user_ids, ["2", "1"]);
    let kinds: Vec<&str> = d.rows.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["purchase", "view", "cart"]);
    assert!(Dataset::parse("1,2,3,like,4\n".as_bytes()).is_err());
    assert!(Dataset::parse("1,2,3,pv\n".as_bytes()).is_err());
}
