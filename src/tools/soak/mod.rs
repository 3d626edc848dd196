//! `kairos soak`: a bounded, paced mixed load on replicas of one service sharing one
//! PostgreSQL store (ingest, duplicates, recommendations, interests, push plans, settings, due
//! pushes with feedback, and erasures checked on the other replica), then an audit of the
//! store: every acknowledged event is there, nothing of an erased user is. It samples each
//! replica's `/metrics` for its resident memory, and prints (and writes with `--out`) a
//! markdown report whose every figure it measured in this run. It exits 1 when a check fails.
//!
//! `scripts/soak` builds the service, starts two replicas on a fresh database and runs this.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hyper::{Method, StatusCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

use super::loadgen::{Conn, random_event};

mod log;
mod report;
#[cfg(test)]
mod tests;

use log::Log;

#[derive(Debug, Clone, Args)]
pub struct SoakOptions {
    /// Base URLs of the replicas, comma-separated (two or more).
    #[arg(long, value_delimiter = ',', required = true)]
    pub urls: Vec<String>,
    /// API key holding every scope (ingest, read, gateway, admin).
    #[arg(long, env = "KAIROS_API_KEY", default_value = crate::config::DEV_KEY)]
    pub key: String,
    /// The PostgreSQL the replicas share, for the audit at the end.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Seconds of load.
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
    /// Seconds of warm-up: memory is compared from its end to the end of the run.
    #[arg(long, default_value_t = 180)]
    pub warmup: u64,
    /// Requests per second over all connections (paced: a bounded load, not a flood).
    #[arg(long, default_value_t = 150.0)]
    pub rate: f64,
    /// Connections, spread over the replicas.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Shoppers (`u0` ..), each given settings with push consent before the load starts.
    #[arg(long, default_value_t = 2_000)]
    pub users: u64,
    /// Catalogue items (`i0` ..), sent before the load starts. With 1,000 the statistics
    /// (co-occurrence and item-kNN pairs, capped per item) are near their caps by the end of
    /// the warm-up, so the memory after it is close to the steady state; with many more items
    /// they are still filling for the whole run (`kairos_stats_entries` shows it).
    #[arg(long, default_value_t = 1_000)]
    pub items: u64,
    /// Seconds between two erasures (each of a user created for it).
    #[arg(long, default_value_t = 2.0)]
    pub erase_every: f64,
    /// Also write the report here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// An erasure must be visible on the other replica within this (the stated bound is about
/// one refresh, a second).
const ERASE_VISIBLE_WITHIN: Duration = Duration::from_secs(10);
/// What the memory may grow by after warm-up and still count as flat: this share of its
/// size then, plus a fixed slack for allocator noise.
const RSS_GROWTH_SHARE: f64 = 0.10;
const RSS_GROWTH_SLACK: f64 = 16.0 * 1024.0 * 1024.0;
const TIMEZONES: [&str; 4] = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"];

/// One replica's memory at one moment, from its `/metrics`.
struct Sample {
    at: Duration,
    replica: usize,
    rss_bytes: f64,
    cached_users: f64,
    /// `kairos_stats_entries` by kind (statistics held in memory).
    stats: BTreeMap<String, f64>,
}

fn connect(url: &str, key: &str) -> anyhow::Result<Conn> {
    Conn::new(&url.trim_end_matches('/').parse().with_context(|| format!("--urls: {url}"))?, key)
}

pub async fn run(opts: SoakOptions) -> anyhow::Result<bool> {
    anyhow::ensure!(opts.urls.len() >= 2, "--urls needs two replicas or more");
    anyhow::ensure!(opts.connections > 0 && opts.rate > 0.0 && opts.users > 0 && opts.items > 0, "connections, rate, users and items must be > 0");
    anyhow::ensure!(opts.warmup < opts.duration, "--warmup must be shorter than --duration");
    let opts = Arc::new(opts);
    eprintln!("[soak] catalogue of {} items and {} shoppers' settings", opts.items, opts.users);
    setup(&opts).await?;
    eprintln!("[soak] {} s of load at {} requests/s on {} connections over {} replicas", opts.duration, opts.rate, opts.connections, opts.urls.len());
    let started = Instant::now();
    let deadline = Duration::from_secs(opts.duration);
    let mut tasks = Vec::new();
    for c in 0..opts.connections {
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move { shopper_load(&opts, c, started, deadline).await }));
    }
    let erasures = {
        let opts = opts.clone();
        tokio::spawn(async move { erasures(&opts, started, deadline).await })
    };
    let sampler = {
        let opts = opts.clone();
        tokio::spawn(async move { sample_memory(&opts, started, deadline).await })
    };
    let mut log = Log::default();
    for t in tasks {
        log.merge(t.await??);
    }
    log.merge(erasures.await??);
    let samples = sampler.await??;
    let elapsed = started.elapsed();
    eprintln!("[soak] load done after {:.0} s; auditing the store", elapsed.as_secs_f64());
    let audit = audit(&opts, &log).await?;
    let (report, passed) = report::report(&opts, &log, &samples, &audit, elapsed);
    println!("{report}");
    if let Some(out) = &opts.out {
        super::write_report(out, &report)?;
    }
    Ok(passed)
}

/// The catalogue and every shopper's settings (push consent on, a time zone, some with quiet
/// hours), before the clock starts.
async fn setup(opts: &SoakOptions) -> anyhow::Result<()> {
    let mut conn = connect(&opts.urls[0], &opts.key)?;
    let mut log = Log::default();
    let ids: Vec<u64> = (0..opts.items).collect();
    for chunk in ids.chunks(1000) {
        let items: Vec<Value> = chunk.iter().map(|i| json!({"item_id": format!("i{i}"), "category": format!("c{}/s{}", i % 40, i % 7), "brand": format!("b{}", i % 90), "price": 5 + i % 200})).collect();
        let answer = log.call(&mut conn, "setup", Method::POST, "/v1/items", Some(json!({"items": items}))).await;
        anyhow::ensure!(matches!(answer, Some((StatusCode::OK, _))), "POST /v1/items refused: {answer:?}");
    }
    let users: Vec<u64> = (0..opts.users).collect();
    let per = users.len().div_ceil(8);
    let mut writers = Vec::new();
    for part in users.chunks(per).map(<[u64]>::to_vec) {
        let mut conn = connect(&opts.urls[0], &opts.key)?;
        writers.push(tokio::spawn(async move {
            let mut log = Log::default();
            for u in part {
                let body = settings(u);
                let answer = log.call(&mut conn, "setup", Method::PUT, &format!("/v1/users/u{u}"), Some(body)).await;
                anyhow::ensure!(matches!(answer, Some((StatusCode::OK, _))), "PUT /v1/users/u{u} refused: {answer:?}");
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    Ok(())
}

fn settings(u: u64) -> Value {
    let mut body = json!({"push_consent": true, "timezone": TIMEZONES[(u % 4) as usize]});
    if u.is_multiple_of(5) {
        body["quiet_hours"] = json!({"start": 22, "end": 7});
    }
    body
}

fn pick<'a>(rng: &mut SmallRng, conns: &'a mut [Conn]) -> &'a mut Conn {
    let n = rng.random_range(0..conns.len());
    &mut conns[n]
}

/// One connection per replica, paced to its share of `rate`: a mix of what the backend and
/// the gateway send.
async fn shopper_load(opts: &SoakOptions, c: usize, started: Instant, deadline: Duration) -> anyhow::Result<Log> {
    let mut rng = SmallRng::seed_from_u64(opts.seed.wrapping_add(c as u64));
    let mut conns = opts.urls.iter().map(|u| connect(u, &opts.key)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut log = Log::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(opts.connections as f64 / opts.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while started.elapsed() < deadline {
        tick.tick().await;
        let user = format!("u{}", rng.random_range(0..opts.users));
        match rng.random_range(0..100) {
            0..35 => ingest(&mut log, &mut rng, &mut conns, opts).await,
            35..65 => {
                let device = ["mobile", "desktop", "tablet"][rng.random_range(0..3)];
                let path = format!("/v1/users/{user}/recommendations?n=10&device={device}");
                log.call(pick(&mut rng, &mut conns), "recommendations", Method::GET, &path, None).await;
            }
            65..72 => {
                log.call(pick(&mut rng, &mut conns), "interests", Method::GET, &format!("/v1/users/{user}/interests"), None).await;
            }
            72..77 => {
                log.call(pick(&mut rng, &mut conns), "push-plan", Method::GET, &format!("/v1/users/{user}/push-plan"), None).await;
            }
            77..80 => {
                let u = rng.random_range(0..opts.users);
                log.call(pick(&mut rng, &mut conns), "settings", Method::PUT, &format!("/v1/users/u{u}"), Some(settings(u))).await;
            }
            _ => gateway(&mut log, &mut rng, &mut conns).await,
        }
    }
    Ok(log)
}

/// One event or a batch of ten, now and then an acknowledged event sent again (it must count
/// as a duplicate and store nothing).
async fn ingest(log: &mut Log, rng: &mut SmallRng, conns: &mut [Conn], opts: &SoakOptions) {
    if !log.acked.is_empty() && rng.random_bool(0.03) {
        let id = log.acked[rng.random_range(0..log.acked.len())];
        let body = json!({"event_id": id, "user_id": "u0", "item_id": "i0", "kind": "view"});
        log.duplicates_sent += 1;
        if let Some((StatusCode::ACCEPTED, reply)) = log.call(pick(rng, conns), "events", Method::POST, "/v1/events", Some(body)).await
            && reply["duplicates"] != 1
        {
            log.ack_mismatches += 1;
        }
        return;
    }
    let n = if rng.random_bool(0.3) { 10 } else { 1 };
    let events: Vec<Value> = (0..n).map(|_| random_event(rng, opts.users, opts.items)).collect();
    let ids: Vec<Uuid> = events.iter().filter_map(|e| e["event_id"].as_str()?.parse().ok()).collect();
    let body = if n == 1 { events[0].clone() } else { json!({"events": events}) };
    if let Some((StatusCode::ACCEPTED, reply)) = log.call(pick(rng, conns), "events", Method::POST, "/v1/events", Some(body)).await {
        if reply["accepted"] != n {
            log.ack_mismatches += 1;
        }
        log.acked.extend(ids);
    }
}

/// The gateway: lease due pushes, report what the shopper did with each (or nothing, so the
/// lease ends and the push counts as ignored).
async fn gateway(log: &mut Log, rng: &mut SmallRng, conns: &mut [Conn]) {
    let Some((StatusCode::OK, due)) = log.call(pick(rng, conns), "pushes/due", Method::GET, "/v1/pushes/due?limit=20", None).await else { return };
    let pushes = due["pushes"].as_array().cloned().unwrap_or_default();
    log.pushes_leased += pushes.len() as u64;
    for push in pushes {
        let kinds: &[&str] = match rng.random_range(0..100) {
            0..35 => &["delivered", "opened"],
            35..45 => &["delivered", "opened", "clicked"],
            45..50 => &["delivered", "opened", "converted"],
            50..58 => &["delivered", "dismissed"],
            58..59 => &["delivered", "unsubscribed"],
            59..70 => &["delivered"],
            _ => &[],
        };
        for kind in kinds {
            let body = json!({"push_id": push["push_id"], "kind": kind});
            if let Some((StatusCode::OK, reply)) = log.call(pick(rng, conns), "feedback", Method::POST, "/v1/feedback", Some(body)).await
                && reply["applied"] == true
            {
                log.feedback_applied += 1;
            }
        }
    }
}

/// Every `erase_every` seconds: a new user's events on one replica, their interests read on
/// another (warming its caches), the user erased on the first, then the other polled until
/// it no longer serves them.
async fn erasures(opts: &SoakOptions, started: Instant, deadline: Duration) -> anyhow::Result<Log> {
    let mut conns = opts.urls.iter().map(|u| connect(u, &opts.key)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut rng = SmallRng::seed_from_u64(opts.seed ^ 0xe7a5e);
    let mut log = Log::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(opts.erase_every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut k = 0usize;
    while started.elapsed() < deadline {
        tick.tick().await;
        k += 1;
        let user = format!("soak-erase-{k}");
        let (a, b) = (k % conns.len(), (k + 1) % conns.len());
        let events: Vec<Value> = (0..5)
            .map(|_| {
                let mut e = random_event(&mut rng, 1, opts.items);
                e["user_id"] = json!(user);
                e
            })
            .collect();
        let ids: Vec<Uuid> = events.iter().filter_map(|e| e["event_id"].as_str()?.parse().ok()).collect();
        let Some((StatusCode::ACCEPTED, _)) = log.call(&mut conns[a], "events", Method::POST, "/v1/events", Some(json!({"events": events}))).await else { continue };
        log.erased_events.extend(ids);
        let interests = format!("/v1/users/{user}/interests");
        let served = |r: &Option<(StatusCode, Value)>| matches!(r, Some((StatusCode::OK, v)) if v["features"].as_array().is_some_and(|f| !f.is_empty()));
        let warm = log.call(&mut conns[b], "interests", Method::GET, &interests, None).await;
        if !served(&warm) {
            log.erase_not_visible += 1;
        }
        let Some((StatusCode::OK, _)) = log.call(&mut conns[a], "erase", Method::DELETE, &format!("/v1/users/{user}"), None).await else { continue };
        log.erased.push(user.clone());
        let erased_at = Instant::now();
        loop {
            let r = log.call(&mut conns[b], "interests", Method::GET, &interests, None).await;
            if matches!(r, Some((StatusCode::OK, _))) && !served(&r) {
                log.erase_visible_ms.push(erased_at.elapsed().as_millis() as u64);
                break;
            }
            if erased_at.elapsed() > ERASE_VISIBLE_WITHIN {
                log.erase_visible_ms.push(u64::MAX);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(log)
}

/// Every ten seconds, each replica's resident memory and cached users from `/metrics`.
async fn sample_memory(opts: &SoakOptions, started: Instant, deadline: Duration) -> anyhow::Result<Vec<Sample>> {
    let mut conns = opts.urls.iter().map(|u| connect(u, &opts.key)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        for (replica, conn) in conns.iter_mut().enumerate() {
            let Ok((StatusCode::OK, body)) = conn.exchange(Method::GET, "/metrics", None).await else { continue };
            let text = String::from_utf8_lossy(&body);
            let gauge = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok());
            let stats = text
                .lines()
                .filter_map(|l| {
                    let (kind, value) = l.strip_prefix("kairos_stats_entries{kind=\"")?.split_once("\"} ")?;
                    Some((kind.to_string(), value.trim().parse().ok()?))
                })
                .collect();
            if let Some(rss_bytes) = gauge("process_resident_memory_bytes") {
                let cached_users = gauge("kairos_history_cache_users").unwrap_or(0.0);
                samples.push(Sample { at: started.elapsed(), replica, rss_bytes, cached_users, stats });
            }
        }
        if started.elapsed() >= deadline {
            return Ok(samples);
        }
    }
}

struct Audit {
    acked_stored: i64,
    erased_stored: i64,
    erased_rows: Vec<(&'static str, i64)>,
}

async fn audit(opts: &SoakOptions, log: &Log) -> anyhow::Result<Audit> {
    // The replicas may still be committing what a request that timed out on our side sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&opts.database_url).await.context("connecting to PostgreSQL for the audit")?;
    let store = crate::store::PgStore::with_pool(pool);
    Ok(Audit {
        acked_stored: store.count_stored_events(&log.acked).await?,
        erased_stored: store.count_stored_events(&log.erased_events).await?,
        erased_rows: store.rows_naming_users(&log.erased).await?,
    })
}
