//! Serving cost of the sequence model per recommendation (`cargo bench --bench sequence`,
//! add `-- --quick` for a short run).
//!
//! A model of the shipped size (width 32, 2 blocks, the last 50 events, 20 000 items) is
//! trained briefly on a synthetic seeded log (the figures do not depend on what it learned).
//! Measured: `encode` — a user's last 50 events through the encoder (once per new event of
//! the user; the service caches the result); `state_and_score_300` — the request's state from
//! a cached encoding plus the scores of 300 candidates (every request); `nearest_of_table` —
//! the exact nearest items over the whole table (the candidate pool, every request).

use std::hint::black_box;

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use kairos::domain::{Event, EventContext, EventProps};
use kairos::rank::sequence::{Moment, SequenceConfig, SequenceModel, SequenceOutcome, train};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 20, 0, 0).unwrap()
}

fn log(users: usize, per_user: usize, items: u64) -> Vec<Event> {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut out = Vec::new();
    for u in 0..users {
        for n in 0..per_user {
            let u3: f64 = rng.random();
            out.push(Event {
                event_id: uuid::Uuid::nil(),
                user_id: format!("u{u}"),
                item_id: Some(format!("i{}", ((items as f64) * u3.powi(2)) as u64)),
                kind: if n % 10 == 0 { "cart".into() } else { "view".into() },
                ts: now() - Duration::seconds(rng.random_range(60..7 * 86_400)),
                context: EventContext::default(),
                props: EventProps::default(),
            });
        }
    }
    out.sort_by_key(|e| e.ts);
    out
}

fn model() -> (SequenceModel, Vec<Event>) {
    let events = log(4_000, 60, 40_000);
    let cfg = SequenceConfig { epochs: 1, ..SequenceConfig::default() };
    let SequenceOutcome::Trained(m, _) = train(&events, &|_| 0, &cfg, None, now()) else { panic!("trained") };
    let history: Vec<Event> = events.iter().filter(|e| e.user_id == "u7").cloned().collect();
    (*m, history)
}

fn bench_sequence(c: &mut Criterion) {
    let (m, history) = model();
    let zone = |_: &Event| 0;
    let names = kairos::rank::catalog::Catalog::new();
    let mut g = c.benchmark_group("sequence");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    g.bench_function("encode_50_events", |b| b.iter(|| m.encode(black_box(&history), &names, &zone)));
    let enc = m.encode(&history, &names, &zone).expect("encodes");
    let ids: Vec<String> = m.items().iter().step_by(m.items().len() / 300).take(300).cloned().collect();
    let moment = Moment::at(now(), 0, None);
    g.bench_function("state_and_score_300", |b| {
        b.iter(|| {
            let s = m.state(black_box(&enc), now(), moment);
            ids.iter().filter_map(|id| m.score(&s, id)).sum::<f32>()
        })
    });
    let s = m.state(&enc, now(), moment);
    g.bench_function(format!("nearest_50_of_{}_items", m.items().len()), |b| b.iter(|| m.nearest(black_box(&s), 50)));
    g.finish();
}

criterion_group!(benches, bench_sequence);
criterion_main!(benches);
