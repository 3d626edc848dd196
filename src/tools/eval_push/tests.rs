//! Reading the logs, the learned policies, and the whole protocol on a log with a planted item.

use std::io::Write as _;

use chrono::DateTime;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::learn::beta_sample;
use super::*;
use crate::push::ope::TargetPolicy;

/// A header like the dataset's, with `items` affinity columns.
fn header(items: usize) -> String {
    let affinity: Vec<String> = (0..items).map(|i| format!("user-item_affinity_{i}")).collect();
    format!(",timestamp,item_id,position,click,propensity_score,user_feature_0,{}\n", affinity.join(","))
}

fn line(n: usize, ts_s: i64, item: usize, position: usize, click: bool, propensity: f64, items: usize) -> String {
    let t = DateTime::from_timestamp(1_574_553_600 + ts_s, 123_000).expect("valid time").format("%Y-%m-%d %H:%M:%S%.6f+00:00");
    format!("{n},{t},{item},{position},{},{propensity},abc,{}\n", u8::from(click), vec!["0.0"; items].join(","))
}

#[test]
fn a_campaign_file_is_read_by_column_name_with_its_items_counted_from_the_affinity_columns_in_time_order() {
    let text = format!("{}{}{}", header(3), line(0, 50, 2, 1, true, 0.25, 3), line(1, 10, 0, 2, false, 0.5, 3));
    let (items, positions, rows) = data::parse_campaign(&text).unwrap();
    assert_eq!((items, positions, rows.len()), (3, 2, 2));
    assert_eq!(rows[0], Impression { ts_us: (1_574_553_600 + 10) * 1_000_000 + 123, item: 0, position: 2, click: false, propensity: 0.5 });
    assert_eq!((rows[1].item, rows[1].click, rows[1].propensity), (2, true, 0.25));
}

#[test]
fn a_campaign_file_with_an_unknown_item_a_bad_click_or_no_affinity_columns_is_refused_naming_the_row() {
    let bad_item = format!("{}{}", header(3), line(0, 0, 3, 1, false, 0.25, 3));
    let e = data::parse_campaign(&bad_item).unwrap_err().to_string();
    assert!(e.contains("row 1") && e.contains("item_id 3"), "{e}");
    let bad_click = format!("{}{}", header(3), line(0, 0, 1, 1, false, 0.25, 3).replace(",1,0,0.25,", ",1,2,0.25,"));
    let e = data::parse_campaign(&bad_click).unwrap_err().to_string();
    assert!(e.contains("row 1") && e.contains("click"), "{e}");
    let e = data::parse_campaign(",timestamp,item_id,position,click,propensity_score\n").unwrap_err().to_string();
    assert!(e.contains("affinity"), "{e}");
}

fn imp(item: usize, position: usize, click: bool) -> Impression {
    Impression { ts_us: 0, item, position, click, propensity: 0.25 }
}

#[test]
fn the_click_model_shrinks_towards_the_pooled_rate_and_greedy_shows_the_best_items_best_first() {
    // Item 2: 2 clicks in 10; item 1: 1 in 10; items 0 and 3: none.
    let mut log = Vec::new();
    for n in 0..10 {
        log.extend([imp(0, 1, false), imp(1, 2, n == 0), imp(2, 1, n < 2), imp(3, 2, false)]);
    }
    let m = ClickModel::fit(&log, 4);
    assert!((m.prior_mean - 4.0 / 42.0).abs() < 1e-12);
    let (a0, b0) = m.prior();
    assert!((a0 - 1.0).abs() < 1e-12 && (b0 - 38.0 / 4.0).abs() < 1e-12);
    assert!((m.mean(2) - 3.0 / (1.0 + 38.0 / 4.0 + 10.0)).abs() < 1e-12);
    assert!(m.mean(2) > m.mean(1) && m.mean(1) > m.mean(0) && m.mean(0) == m.mean(3));
    assert!(m.mean(2) < 0.2, "shrunk below the raw rate 2/10");
    let g = Ranking::greedy(&m, 2);
    assert_eq!(g.top(), vec![2, 1]);
    assert_eq!(g.probabilities(&imp(0, 1, false)), vec![0.0, 0.0, 1.0, 0.0]);
    // A position the ranking does not cover has no distribution, which `ope` refuses.
    assert!(g.probabilities(&imp(0, 3, false)).is_empty());
}

#[test]
fn thompson_marginals_are_distributions_reproducible_from_their_seed_and_favour_the_clicked_item() {
    let mut log = Vec::new();
    for n in 0..200 {
        log.extend([imp(0, 1, n % 4 == 0), imp(1, 2, n % 40 == 0), imp(2, 1, false)]);
    }
    let m = ClickModel::fit(&log, 3);
    let a = Ranking::thompson(&m, 2, 2000, &mut SmallRng::seed_from_u64(5));
    assert_eq!(a, Ranking::thompson(&m, 2, 2000, &mut SmallRng::seed_from_u64(5)));
    for row in &a.table {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    // Each item is shown once per ranking: its marginals over the positions sum to at most 1.
    for item in 0..3 {
        assert!(a.table.iter().map(|row| row[item]).sum::<f64>() <= 1.0 + 1e-9);
    }
    assert_eq!(a.top(), vec![0, 1]);
    assert!(a.table[0][0] > 0.99, "{:?}", a.table);
}

#[test]
fn beta_draws_have_the_beta_mean_and_variance() {
    let mut rng = SmallRng::seed_from_u64(9);
    for (a, b) in [(2.0, 5.0), (1.0, 300.0), (0.5, 0.5)] {
        let draws: Vec<f64> = (0..40_000).map(|_| beta_sample(a, b, &mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / draws.len() as f64;
        let (m, v) = (a / (a + b), a * b / ((a + b) * (a + b) * (a + b + 1.0)));
        assert!((mean - m).abs() < 4.0 * (v / draws.len() as f64).sqrt(), "Beta({a}, {b}): mean {mean} vs {m}");
        assert!((var / v - 1.0).abs() < 0.05, "Beta({a}, {b}): variance {var} vs {v}");
        assert!(draws.iter().all(|x| (0.0..=1.0).contains(x)));
    }
}

#[test]
fn cross_fitting_predicts_each_half_with_the_model_of_the_other() {
    let early = ClickModel::fit(&[imp(0, 1, true), imp(1, 1, false)], 2);
    let late = ClickModel::fit(&[imp(0, 1, false), imp(1, 1, true)], 2);
    let cross = CrossFit { split: 100, early: early.clone(), late: late.clone() };
    let at = |ts_us| Impression { ts_us, ..imp(0, 1, false) };
    assert_eq!(cross.predict(&at(99), 0), late.mean(0));
    assert_eq!(cross.predict(&at(100), 0), early.mean(0));
}

/// A dataset folder with one campaign: 4 items, 2 positions; item 0 is clicked with
/// probability 0.3, the others 0.05. `random` is uniform; `bts` shows item 0 at position 1
/// half of the time.
fn planted(dir: &std::path::Path, rows: usize) {
    let (items, means) = (4usize, [0.3, 0.05, 0.05, 0.05]);
    let mut rng = SmallRng::seed_from_u64(42);
    for policy in [UNIFORM_LOG, THOMPSON_LOG] {
        let mut text = header(items);
        for n in 0..rows {
            let position = 1 + n % 2;
            let skewed = policy == THOMPSON_LOG && position == 1;
            let item = if skewed && rng.random::<f64>() < 0.5 { 0 } else { rng.random_range(0..items) };
            let propensity = match (skewed, item) {
                (true, 0) => 0.5 + 0.5 / 4.0,
                (true, _) => 0.5 / 4.0,
                _ => 0.25,
            };
            let click = rng.random::<f64>() < means[item];
            text.push_str(&line(n, (n as i64) * 60, item, position, click, propensity, items));
        }
        let folder = dir.join(policy).join("toy");
        std::fs::create_dir_all(&folder).unwrap();
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(folder.join("toy.csv.gz")).unwrap(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
    }
}

#[test]
fn on_a_planted_log_the_uniform_policy_gives_back_its_click_rate_and_greedy_finds_the_planted_item() {
    let dir = tempfile::tempdir().unwrap();
    planted(dir.path(), 4000);
    let out = dir.path().join("docs/OFFPOLICY.md");
    let opts = EvalPushOptions { dataset: dir.path().to_path_buf(), out: out.clone(), seed: 3, resamples: 200, draws: 500 };
    let report = run(&opts).unwrap();
    let c = &report.campaigns[0];
    assert_eq!((c.name.as_str(), c.random.items, c.random.positions), ("toy", 4, 2));
    // (a) Weights are all 1: IPS and SNIPS are the logged click rate, exactly.
    assert_eq!(c.uniform_all.get(Estimator::Ips).unwrap().0.value, c.observed_all.value);
    assert_eq!(c.uniform_all.get(Estimator::Snips).unwrap().0.value, c.observed_all.value);
    // (b) Greedy shows item 0 first; its value, averaged over the two positions, is
    // (0.3 + 0.05) / 2, and every estimator's interval covers it.
    assert_eq!(c.greedy.top()[0], 0);
    for e in Estimator::ALL {
        let (x, _) = c.second_half[1].get(e).unwrap();
        assert!(x.interval.contains(0.175), "{}: {x:?}", e.name());
    }
    // (d) On the non-uniform log, the uniform policy's interval covers its true value 0.1125.
    let (u, _) = c.on_bts[0].get(Estimator::Ips).unwrap();
    assert!(u.interval.contains(0.1125), "{u:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    for heading in ["## (a)", "## (b)", "## (c)", "## (d)", "IPS equals it exactly", "`toy`"] {
        assert!(text.contains(heading), "missing {heading:?}");
    }
}
