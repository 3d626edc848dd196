use super::*;

fn tuning() -> Tuning {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml")).expect("the shipped config");
    Settings::from_toml(&text).expect("the shipped config loads").tuning
}

/// Rows `user,item,category,behaviour,ts` as the log has them.
fn log(rows: &[(&str, &str, &str, &str, i64)]) -> Vec<LogEvent> {
    let text: String = rows.iter().map(|(u, i, c, b, t)| format!("{u},{i},{c},{b},{t}\n")).collect();
    parse_log(&text).expect("valid rows")
}

const T0: i64 = 1_511_700_000; // 2017-11-26, inside the sample's period

/// The past of the first question: u1 looks at two items of c1, u2 at an item of c2,
/// then u1 carts i1.
fn past() -> Vec<(&'static str, &'static str, &'static str, &'static str, i64)> {
    vec![
        ("u1", "i1", "c1", "pv", T0),
        ("u1", "i2", "c1", "pv", T0 + 60),
        ("u2", "i3", "c2", "pv", T0 + 120),
        ("u2", "i1", "c1", "pv", T0 + 180),
        ("u1", "i1", "c1", "cart", T0 + 3600),
    ]
}

/// After the first question: six users view i1 and buy i9 (a new item, so i9 co-occurs
/// with i1 and becomes the most popular), then u1 carts i4 (the last question).
fn future() -> Vec<(&'static str, &'static str, &'static str, &'static str, i64)> {
    let users = ["u3", "u4", "u5", "u6", "u7", "u8"];
    let mut rows = Vec::new();
    for (n, u) in users.iter().enumerate() {
        let t = T0 + 3600 + 60 * (n as i64 + 1);
        rows.push((*u, "i1", "c1", "pv", t));
        rows.push((*u, "i9", "c3", "buy", t + 10));
    }
    rows.push(("u1", "i4", "c1", "cart", T0 + 7200));
    rows
}

fn answers(rows: &[(&str, &str, &str, &str, i64)], variants: &[Variant]) -> Vec<Vec<Vec<String>>> {
    let t = tuning();
    let log = log(rows);
    let prepared = prepare(&log);
    let schedule = retrain::schedule(&prepared.kairos, &prepared.items, &t, 1.0, false, &ProgressBar::hidden());
    replay(&prepared, &t, &schedule, variants, 2, true, &ProgressBar::hidden()).into_iter().map(|a| a.captured).collect()
}

#[test]
fn nothing_from_the_future_changes_an_answer() {
    let variants = variants(&tuning());
    let only_past = answers(&past(), &variants);
    let mut rows = past();
    rows.extend(future());
    let with_future = answers(&rows, &variants);
    for ((v, a), b) in variants.iter().zip(&only_past).zip(&with_future) {
        assert_eq!(a.len(), 1, "{}: one question in the past-only log", v.name);
        assert_eq!(b.len(), 8, "{}: six purchases and a cart follow the first question", v.name);
        assert_eq!(a[0], b[0], "{}: the first answer must not depend on later events", v.name);
        assert!(!b[0].contains(&"i9".to_owned()), "{}: i9 does not exist yet at the first question", v.name);
    }
    // The later events do change later answers (so the check above could fail).
    let popularity = variants.iter().position(|v| v.name == POPULARITY_ROW).expect("popularity row");
    assert_eq!(with_future[popularity][7].first().map(String::as_str), Some("i9"));
    let default = variants.iter().position(|v| v.name == DEFAULT_ROW).expect("default row");
    assert!(with_future[default][7].contains(&"i9".to_owned()), "{:?}", with_future[default][7]);
}

#[test]
fn a_question_is_answered_before_its_own_event_is_seen() {
    // u1's only earlier event is a view of i1; the cart of i2 must not find i2 (unseen).
    let variants = variants(&tuning());
    let got = answers(&[("u1", "i1", "c1", "pv", T0), ("u1", "i2", "c1", "cart", T0 + 60)], &variants);
    for (v, a) in variants.iter().zip(&got) {
        assert!(!a[0].contains(&"i2".to_owned()), "{} saw the target before answering: {:?}", v.name, a[0]);
    }
}

#[test]
fn metrics_follow_their_definitions() {
    // Ranks 1, 3, absent, 12.
    let m = Metrics::from_ranks(&[1, 3, 0, 12]);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(m.hr_at(5), 2.0 / 4.0));
    assert!(close(m.hr_at(20), 3.0 / 4.0));
    assert!(close(m.ndcg_at(5), (1.0 + 0.5) / 4.0));
    assert!(close(m.ndcg_at(20), (1.0 + 0.5 + 1.0 / 13f64.log2()) / 4.0));
    assert!(close(m.mrr_at(10), (1.0 + 1.0 / 3.0) / 4.0));
    assert!(close(m.mrr_at(20), (1.0 + 1.0 / 3.0 + 1.0 / 12.0) / 4.0));
    assert_eq!(Metrics::from_ranks(&[]), Metrics::default());
}

#[test]
fn the_log_parser_names_the_bad_row() {
    let err = parse_log("1,2,3,pv,100\n1,2,3,click,101\n").unwrap_err();
    assert!(format!("{err:#}").contains("row 2"), "{err:#}");
    let err = parse_log("1,2,3,pv,soon\n").unwrap_err();
    assert!(format!("{err:#}").contains("timestamp"), "{err:#}");
}

#[test]
fn facts_count_targets_and_repeats_in_time_order() {
    // File order is not time order: the replay sorts, so the cart at 20 follows the view at 10.
    let l = log(&[("u", "a", "c", "cart", T0 + 20), ("u", "a", "c", "pv", T0 + 10), ("v", "b", "c", "buy", T0 + 30)]);
    let f = log_facts(&l);
    assert_eq!((f.rows, f.users, f.items, f.targets, f.carts, f.buys), (3, 2, 2, 2, 1, 1));
    assert_eq!((f.repeat_item, f.known_item, f.repeat_category), (1, 1, 1));
}

/// The learned default's answers, and its schedule, on a generated log cut at `cut` (unix s).
fn learned_answers(log: &[LogEvent], cut: i64) -> (Vec<Vec<String>>, Schedule) {
    let t = tuning();
    let log: Vec<LogEvent> = log.iter().filter(|e| e.ts < cut).cloned().collect();
    let prepared = prepare(&log);
    let schedule = retrain::schedule(&prepared.kairos, &prepared.items, &t, 24.0, false, &ProgressBar::hidden());
    let default: Vec<Variant> = variants(&t).into_iter().filter(|v| v.name == DEFAULT_ROW).collect();
    let answers = replay(&prepared, &t, &schedule, &default, 1, true, &ProgressBar::hidden()).remove(0).captured;
    (answers, schedule)
}

#[test]
fn no_answer_of_the_retrained_model_depends_on_later_events() {
    use crate::tools::synth::{Regime, Shape, generate};
    let log = generate(Regime::Sequential, Shape { users: 80, items: 400, events: 4_000, days: 6, seed: 3 });
    let (first, last) = (log[0].ts, log.last().unwrap().ts);
    let cut = first + (last - first) * 2 / 3;
    let (full, schedule) = learned_answers(&log, i64::MAX);
    let (past, past_schedule) = learned_answers(&log, cut);
    let cut_at = utc(cut);
    assert!(schedule.at(cut_at).is_some(), "a model is in force before the cut, so the check means something");
    assert!(schedule.last() != past_schedule.last(), "later retrainings (after the cut) trained other models");
    assert!(past.len() > 100);
    assert_eq!(past[..], full[..past.len()], "the answers before the cut are those of the full log");
}
