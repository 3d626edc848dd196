//! Benchmarks of the pure recommendation core: decay weights, interest vectors, ranking.
//!
//! `cargo bench --bench recommend` (add `-- --quick` for a short run).
//!
//! The data is synthetic and seeded: a catalogue with a three-level category tree
//! (10 × 10 × 10 leaves) and 200 brands, item popularity skewed (a few items draw most
//! events), and users who mostly browse a few favourite leaf categories on one favourite
//! device. Statistics are built by observing that log in time order, exactly as the service
//! does, so trending lists, co-occurrence and context counts have realistic sizes.
//!
//! What "recommend" measures is one whole request as the service runs it: the user's
//! interest vector from their last 200 events (`InterestVector::build`), then `scoring::rank`
//! (candidates, scoring, filters, diversity, reasons) for a top 10. `warm` keeps the default
//! statistics cache (`stats.cache_ttl_secs`: segment scores and context lifts are reused for
//! 30 s, the steady state of a busy service); `cold` disables it, so every request rescans its
//! segments and recomputes the context lifts.

use std::collections::HashSet;
use std::hint::black_box;

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use kairos::rank::catalog::Catalog;
use kairos::rank::context::{RequestContext, event_keys};
use kairos::rank::decay::Decay;
use kairos::rank::history::{HistoryEvent, Packed};
use kairos::domain::{Device, Event, EventContext, EventProps, Item};
use kairos::rank::profile::{InterestVector, KindWeights, ProfileParams};
use kairos::rank::ranker::{Ranker, RankerParams};
use kairos::rank::scoring::{Request, Scorer, ScoringConfig};
use kairos::rank::stats::{Observation, Stats, StatsConfig};

const LEAVES: u64 = 1000;
const KINDS: [(&str, f64); 4] = [("view", 1.0), ("fav", 2.0), ("cart", 3.0), ("purchase", 4.0)];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 20, 0, 0).unwrap()
}

fn kind_weights() -> KindWeights {
    KindWeights::new(KINDS.iter().map(|&(k, v)| (k, v, true)).chain([("dismiss", -1.0, true)]))
}

fn category(leaf: u64) -> Vec<String> {
    vec![format!("c{}", leaf / 100), format!("c{}-{}", leaf / 100, leaf / 10 % 10), format!("c{}-{}-{}", leaf / 100, leaf / 10 % 10, leaf % 10)]
}

fn catalog(items: u64) -> Catalog {
    Catalog::from_items((0..items).map(|n| Item {
        item_id: format!("i{n}"),
        category: category(n % LEAVES),
        brand: Some(format!("b{}", n % 200)),
        price: None,
        tags: vec![],
        available: n % 50 != 0,
        title: None,
        created_at: None,
    }))
}

/// A skewed draw in `0..n`: small values are much more likely.
fn skewed(rng: &mut SmallRng, n: u64) -> u64 {
    let u: f64 = rng.random();
    ((n as f64) * u.powi(3)) as u64 % n.max(1)
}

/// An item in leaf `leaf`, popular ones more often.
fn item_in(rng: &mut SmallRng, leaf: u64, items: u64) -> u64 {
    let per_leaf = (items / LEAVES).max(1);
    (skewed(rng, per_leaf) * LEAVES + leaf) % items
}

fn random_kind(rng: &mut SmallRng) -> &'static str {
    match rng.random_range(0..100) {
        0..=84 => "view",
        85..=89 => "fav",
        90..=96 => "cart",
        _ => "purchase",
    }
}

/// `events` events of one user over the last `days` days, sorted by time.
fn history(rng: &mut SmallRng, user: &str, items: u64, events: usize, days: i64) -> Vec<Event> {
    let favourites: Vec<u64> = (0..3).map(|_| rng.random_range(0..LEAVES)).collect();
    let device = Device::ALL[rng.random_range(0..3)];
    let mut out: Vec<Event> = (0..events)
        .map(|_| {
            let leaf = if rng.random_bool(0.8) { favourites[rng.random_range(0..3)] } else { rng.random_range(0..LEAVES) };
            Event {
                event_id: uuid::Uuid::nil(),
                user_id: user.to_owned(),
                item_id: Some(format!("i{}", item_in(rng, leaf, items))),
                kind: random_kind(rng).to_owned(),
                ts: now() - Duration::seconds(rng.random_range(1..days * 86_400)),
                context: EventContext {
                    device: Some(if rng.random_bool(0.8) { device } else { Device::ALL[rng.random_range(0..3)] }),
                    ..Default::default()
                },
                props: EventProps::default(),
            }
        })
        .collect();
    out.sort_by_key(|e| e.ts);
    out
}

/// Statistics from `users` users × `per_user` events, observed in time order.
fn stats(catalog: &Catalog, cfg: StatsConfig, users: usize, per_user: usize, seed: u64) -> Stats {
    let mut rng = SmallRng::seed_from_u64(seed);
    let items = catalog.len() as u64;
    let mut log: Vec<Event> = (0..users).flat_map(|u| history(&mut rng, &format!("u{u}"), items, per_user, 7)).collect();
    log.sort_by_key(|e| e.ts);
    let weights = kind_weights();
    let tz = chrono_tz::Europe::Berlin;
    let mut stats = Stats::new(cfg);
    for e in &log {
        let Some(idx) = e.item_id.as_deref().and_then(|id| catalog.idx(id)) else { continue };
        let keys = event_keys(e.ts, &tz, &e.context);
        stats.observe(&Observation {
            user: &e.user_id,
            item: idx,
            categories: catalog.categories(idx),
            brand: catalog.brand(idx),
            weight: weights.weight(&e.kind),
            ts: e.ts,
            context: &keys,
        });
    }
    stats
}

fn bench_decay(c: &mut Criterion) {
    let mut g = c.benchmark_group("decay_weight");
    let ages: Vec<f64> = (0..1000).map(|n| f64::from(n) * 611.0).collect();
    g.throughput(Throughput::Elements(ages.len() as u64));
    for d in [
        Decay::Exponential { half_life_hours: 24.0 },
        Decay::Sigmoid { midpoint_hours: 24.0, steepness_per_hour: 0.25 },
        Decay::Linear { window_hours: 72.0 },
        Decay::None,
    ] {
        g.bench_function(BenchmarkId::from_parameter(d.label()), |b| {
            b.iter(|| ages.iter().map(|&a| black_box(&d).weight(a)).sum::<f64>())
        });
    }
    g.finish();
}

fn bench_profile(c: &mut Criterion) {
    let cat = catalog(10_000);
    let mut rng = SmallRng::seed_from_u64(1);
    let events = history(&mut rng, "u", 10_000, 200, 14);
    let weights = kind_weights();
    let decay = Decay::default();
    let params = ProfileParams { decay: &decay, kind_weights: &weights, horizon_secs: 14.0 * 86_400.0 };
    let mut g = c.benchmark_group("profile");
    g.throughput(Throughput::Elements(1));
    g.bench_function("build_from_200_events", |b| {
        b.iter(|| InterestVector::build(black_box(&events), &cat, &params, now()))
    });
    // The service's cached form of the same history (what a request builds from).
    let mut names = cat.clone();
    let packed: Vec<Packed> = events
        .iter()
        .map(|e| {
            let kind = names.intern_kind(&e.kind);
            Packed::new(e, e.item(&names), kind)
        })
        .collect();
    g.bench_function("build_from_200_packed_events", |b| {
        b.iter(|| InterestVector::build(black_box(&packed), &names, &params, now()))
    });
    g.finish();
}

/// The scoring constants the service ships (`config/default.toml`).
fn shipped() -> ScoringConfig {
    let text = include_str!("../config/default.toml");
    kairos::config::Settings::from_toml(text).expect("the shipped config is valid").tuning.scoring
}

/// A learned ranker over this build's features, every weight non-zero (its cost does not
/// depend on the values).
fn learned_ranker(kinds: &KindWeights) -> Ranker {
    let names = kairos::rank::features::names(kinds);
    let n = names.len();
    let params = RankerParams {
        format: kairos::rank::ranker::FORMAT.into(),
        features: names.clone(),
        mean: vec![0.0; n],
        scale: vec![1.0; n],
        weights: (0..n).map(|i| 1.0 / (1.0 + i as f32)).collect(),
    };
    Ranker::new(1, params, &names).expect("a valid ranker")
}

fn bench_recommend(c: &mut Criterion) {
    let mut g = c.benchmark_group("recommend");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    let weights = kind_weights();
    let decay = Decay::default();
    let exclude: HashSet<String> = HashSet::new();
    let ctx = RequestContext { device: Some(Device::Mobile), local_hour: 21, weekend: true, country: None };
    for (items, users) in [(10_000u64, 5_000usize), (100_000, 20_000)] {
        let cat = catalog(items);
        for (cache, ttl) in [("warm", 30.0), ("cold", 0.0)] {
            let base = shipped();
            let cfg = ScoringConfig { stats: StatsConfig { cache_ttl_secs: ttl, ..base.stats.clone() }, ..base };
            let st = stats(&cat, cfg.stats.clone(), users, 20, 7);
            let mut rng = SmallRng::seed_from_u64(99);
            let users_hist: Vec<Vec<Event>> = (0..64).map(|u| history(&mut rng, &format!("q{u}"), items, 200, 14)).collect();
            let params = ProfileParams { decay: &decay, kind_weights: &weights, horizon_secs: cfg.horizon_hours * 3600.0 };
            let id = format!("{}k_items_{cache}", items / 1000);
            // The hand-set blend, and a learned ranker (every feature weighted) on the same data.
            let learned = learned_ranker(&weights);
            for (name, model) in [("top10_200_events", None), ("top10_200_events_learned", Some(&learned))] {
                let mut n = 0usize;
                g.bench_function(BenchmarkId::new(name, &id), |b| {
                    b.iter(|| {
                        n = (n + 1) % users_hist.len();
                        let h = &users_hist[n];
                        let profile = InterestVector::build(h, &cat, &params, now());
                        let req = Request { n: 10, context: ctx.clone(), exclude: &exclude };
                        Scorer { catalog: &cat, stats: &st, kinds: &weights, cfg: &cfg, model }.rank(&req, &profile, h, now())
                    })
                });
            }
        }
        // Cold start: no history, context-aware trending only.
        let cfg = shipped();
        let st = stats(&cat, cfg.stats.clone(), users, 20, 7);
        let empty = InterestVector::build::<Event>(&[], &cat, &ProfileParams { decay: &decay, kind_weights: &weights, horizon_secs: 1.0 }, now());
        g.bench_function(BenchmarkId::new("top10_cold_start", format!("{}k_items_warm", items / 1000)), |b| {
            b.iter(|| {
                let req = Request { n: 10, context: ctx.clone(), exclude: &exclude };
                Scorer { catalog: &cat, stats: &st, kinds: &weights, cfg: &cfg, model: None }.rank::<Event>(&req, &empty, &[], now())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_decay, bench_profile, bench_recommend);
criterion_main!(benches);
