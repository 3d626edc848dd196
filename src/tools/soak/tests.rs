//! The soak report's verdicts: a healthy run passes, each broken promise fails it.

use hdrhistogram::Histogram;

use super::report::report;
use super::*;

fn opts() -> SoakOptions {
    SoakOptions {
        urls: vec!["http://a".into(), "http://b".into()],
        key: "k".into(),
        database_url: "postgres://x".into(),
        duration: 600,
        warmup: 180,
        rate: 150.0,
        connections: 16,
        users: 10,
        items: 10,
        erase_every: 2.0,
        out: None,
        seed: 1,
    }
}

fn answered(log: &mut Log, action: &'static str, status: u16, n: u64) {
    *log.statuses.entry((action, status)).or_default() += n;
    log.latency.entry(action).or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()).saturating_record(1_000);
}

/// A run where everything held, and its samples: flat memory on both replicas.
fn healthy() -> (Log, Vec<Sample>, Audit) {
    let mut log = Log::default();
    answered(&mut log, "events", 202, 10);
    answered(&mut log, "feedback", 409, 1);
    answered(&mut log, "recommendations", 503, 2);
    log.acked = (0..10).map(|_| Uuid::new_v4()).collect();
    log.erased = vec!["e1".into()];
    log.erased_events = vec![Uuid::new_v4()];
    log.erase_visible_ms = vec![600];
    let mb = 1024.0 * 1024.0;
    let samples = (0..2)
        .flat_map(|replica| {
            [(200, 100.0), (400, 105.0), (590, 104.0)].map(|(s, rss)| Sample {
                at: Duration::from_secs(s),
                replica,
                rss_bytes: rss * mb,
                cached_users: 5.0,
                stats: BTreeMap::new(),
            })
        })
        .collect();
    let audit = Audit { acked_stored: 10, erased_stored: 0, erased_rows: vec![("events", 0), ("users", 0)] };
    (log, samples, audit)
}

#[test]
fn a_healthy_run_passes_and_counts_503_and_withdrawn_feedback_as_deliberate() {
    let (log, samples, audit) = healthy();
    let (text, passed) = report(&opts(), &log, &samples, &audit, Duration::from_secs(600));
    assert!(passed, "{text}");
    assert!(text.contains("2 answers 503"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
}

#[test]
fn each_broken_promise_fails_the_run() {
    type Break = fn(&mut Log, &mut Vec<Sample>, &mut Audit);
    let cases: [(&str, Break); 7] = [
        ("a 500", |log, _, _| answered(log, "events", 500, 1)),
        ("an unexpected 4xx", |log, _, _| answered(log, "recommendations", 422, 1)),
        ("a lost event", |_, _, audit| audit.acked_stored = 9),
        ("a miscounted duplicate", |log, _, _| log.ack_mismatches = 1),
        ("a row left of an erased user", |_, _, audit| audit.erased_rows[1].1 = 1),
        ("a late erasure", |log, _, _| log.erase_visible_ms.push(u64::MAX)),
        ("memory growing after warm-up", |_, samples, _| samples[2].rss_bytes *= 2.0),
    ];
    for (what, break_it) in cases {
        let (mut log, mut samples, mut audit) = healthy();
        break_it(&mut log, &mut samples, &mut audit);
        let (text, passed) = report(&opts(), &log, &samples, &audit, Duration::from_secs(600));
        assert!(!passed, "{what} must fail the run:\n{text}");
        assert!(text.contains("FAIL"), "{what}");
    }
}
