//! `kairos loadgen`: an HTTP load generator for the ingest and read paths, and a raw
//! PostgreSQL COPY writer of the same rows, so the two rates can be set side by side.
//!
//! It sends only to the URL given (loopback in every documented use), runs for a bounded
//! time, and prints throughput and latency percentiles (HdrHistogram) with a progress bar.
//! Each connection is a bare hyper HTTP/1.1 client connection owned by one task (no pool,
//! no per-request URL parsing): the tool shares the machine's cores with the service it
//! measures, so it should spend as little of them as it can.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Target {
    /// POST /v1/events with `--batch` events per request.
    Events,
    /// GET /v1/users/{id}/recommendations for random users.
    Recommendations,
    /// COPY the same event rows straight into PostgreSQL (`--database-url`), no HTTP.
    Copy,
}

#[derive(Debug, Clone, Args)]
pub struct LoadgenOptions {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key (ingest scope for events, read for recommendations).
    #[arg(long, env = "KAIROS_API_KEY", default_value = crate::config::DEV_KEY)]
    pub key: String,
    #[arg(long, value_enum, default_value = "events")]
    pub target: Target,
    /// Concurrent connections (each a task with its own request loop).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Events per request (events and copy targets).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Distinct user ids to draw from (`u0` .. `uN-1`, as `kairos datagen` makes them).
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Distinct item ids to draw from (`i0` .. `iN-1`).
    #[arg(long, default_value_t = 100_000)]
    pub items: u64,
    /// Recommendations: ask for each user once, in order (`u0`, `u1`, ...: a first pass over
    /// cold caches), ending when all were asked or the time is up.
    #[arg(long)]
    pub each_user_once: bool,
    /// PostgreSQL URL for `--target copy`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub requests: u64,
    pub units: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LoadReport {
    pub fn units_per_sec(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64()
    }
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests, {} units in {:.1} s: {:.0} units/s, {:.0} req/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
            self.requests,
            self.units,
            self.elapsed.as_secs_f64(),
            self.units_per_sec(),
            self.requests_per_sec(),
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.errors
        )
    }
}

const KINDS: [(&str, u32); 4] = [("view", 85), ("cart", 8), ("fav", 4), ("purchase", 3)];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];

/// Draws an index in `0..n` skewed towards small values (popular items).
pub fn skewed(rng: &mut SmallRng, n: u64) -> u64 {
    let u: f64 = rng.random();
    ((n as f64).powf(u) - 1.0).floor().clamp(0.0, (n - 1) as f64) as u64
}

pub fn random_kind(rng: &mut SmallRng) -> &'static str {
    let mut r = rng.random_range(0..100);
    for (k, w) in KINDS {
        if r < w {
            return k;
        }
        r -= w;
    }
    "view"
}

/// One synthetic event, as JSON for the API.
pub fn random_event(rng: &mut SmallRng, users: u64, items: u64) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4(),
        "user_id": format!("u{}", rng.random_range(0..users)),
        "item_id": format!("i{}", skewed(rng, items)),
        "kind": random_kind(rng),
        "context": {"device": DEVICES[rng.random_range(0..3)], "country": "DE"},
    })
}

/// One keep-alive connection to the service, reopened after an error.
pub(crate) struct Conn {
    /// `host:port` to connect to.
    addr: String,
    host: HeaderValue,
    auth: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub(crate) fn new(url: &hyper::Uri, key: &str) -> anyhow::Result<Conn> {
        anyhow::ensure!(url.scheme_str() == Some("http"), "--url must be http://host:port (got {url})");
        let authority = url.authority().context("--url needs a host")?;
        let addr = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
        Ok(Conn {
            addr,
            host: HeaderValue::from_str(authority.as_str())?,
            auth: HeaderValue::from_str(&format!("Bearer {key}"))?,
            sender: None,
        })
    }

    /// Sends one request and reads the whole answer; returns its status.
    async fn send(&mut self, method: Method, path: &str, json: Option<Vec<u8>>) -> anyhow::Result<StatusCode> {
        self.exchange(method, path, json).await.map(|(status, _)| status)
    }

    /// Sends one request; returns its status and body.
    pub(crate) async fn exchange(&mut self, method: Method, path: &str, json: Option<Vec<u8>>) -> anyhow::Result<(StatusCode, Bytes)> {
        let result = self.try_send(method, path, json).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn try_send(&mut self, method: Method, path: &str, json: Option<Vec<u8>>) -> anyhow::Result<(StatusCode, Bytes)> {
        let sender = match &mut self.sender {
            Some(s) if !s.is_closed() => s,
            _ => {
                let stream = tokio::net::TcpStream::connect(&self.addr).await?;
                stream.set_nodelay(true)?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                // Drives the connection; ends when the sender is dropped.
                tokio::spawn(conn);
                self.sender.insert(sender)
            }
        };
        sender.ready().await?;
        let mut req = Request::builder().method(method).uri(path).header(HOST, &self.host).header(AUTHORIZATION, &self.auth);
        if json.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let response = sender.send_request(req.body(Full::new(Bytes::from(json.unwrap_or_default())))?).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

pub async fn run(opts: LoadgenOptions) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(opts.connections > 0 && opts.batch > 0 && opts.duration > 0, "connections, batch and duration must be > 0");
    anyhow::ensure!(opts.users > 0 && opts.items > 0, "users and items must be > 0");
    let deadline = Duration::from_secs(opts.duration);
    let bar = ProgressBar::new(opts.duration);
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}s {msg}").expect("static template"));
    let units = Arc::new(AtomicU64::new(0));
    let next_user = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let ticker = {
        let (bar, units) = (bar.clone(), units.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let secs = started.elapsed().as_secs_f64();
                bar.set_position(secs as u64);
                bar.set_message(format!("{:.0} units/s", units.load(Ordering::Relaxed) as f64 / secs));
            }
        })
    };
    let mut tasks = Vec::new();
    let copy_pool = match opts.target {
        Target::Copy => {
            let url = opts.database_url.clone().context("--target copy needs --database-url or DATABASE_URL")?;
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(opts.connections as u32)
                .connect(&url)
                .await
                .context("connecting to PostgreSQL")?;
            // Today's partition of the log, as the service makes sure of before inserting.
            crate::store::PgStore::with_pool(pool.clone()).ensure_event_partitions(&[chrono::Utc::now()]).await?;
            Some(pool)
        }
        _ => None,
    };
    let url: hyper::Uri = opts.url.trim_end_matches('/').parse().context("--url")?;
    let prefix = url.path().trim_end_matches('/').to_string();
    for c in 0..opts.connections {
        let (opts, units, pool, prefix, next_user) = (opts.clone(), units.clone(), copy_pool.clone(), prefix.clone(), next_user.clone());
        let mut conn = Conn::new(&url, &opts.key)?;
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(opts.seed.wrapping_add(c as u64));
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let (mut requests, mut errors) = (0u64, 0u64);
            while started.elapsed() < deadline {
                let t0 = Instant::now();
                let (ok, n) = match opts.target {
                    Target::Events => {
                        let events: Vec<Value> = (0..opts.batch).map(|_| random_event(&mut rng, opts.users, opts.items)).collect();
                        let body = if opts.batch == 1 { events.into_iter().next().expect("one") } else { json!({"events": events}) };
                        let r = conn.send(Method::POST, &format!("{prefix}/v1/events"), Some(body.to_string().into_bytes())).await;
                        (matches!(r, Ok(StatusCode::ACCEPTED)), opts.batch as u64)
                    }
                    Target::Recommendations => {
                        let user = if opts.each_user_once { next_user.fetch_add(1, Ordering::Relaxed) } else { rng.random_range(0..opts.users) };
                        if user >= opts.users {
                            break;
                        }
                        let device = DEVICES[rng.random_range(0..3)];
                        let path = format!("{prefix}/v1/users/u{user}/recommendations?n=10&device={device}");
                        (matches!(conn.send(Method::GET, &path, None).await, Ok(StatusCode::OK)), 1)
                    }
                    Target::Copy => {
                        let pool = pool.as_ref().expect("pool for copy");
                        (copy_rows(pool, &mut rng, &opts).await.is_ok(), opts.batch as u64)
                    }
                };
                let us = t0.elapsed().as_micros() as u64;
                requests += 1;
                if ok {
                    hist.saturating_record(us.max(1));
                    units.fetch_add(n, Ordering::Relaxed);
                } else {
                    errors += 1;
                }
            }
            (hist, requests, errors)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let (mut requests, mut errors) = (0, 0);
    for t in tasks {
        let (h, r, e) = t.await?;
        hist.add(h).ok();
        requests += r;
        errors += e;
    }
    let elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    Ok(LoadReport {
        requests,
        units: units.load(Ordering::Relaxed),
        errors,
        elapsed,
        p50_ms: hist.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: hist.max() as f64 / 1000.0,
    })
}

/// Writes one batch of the same rows the events target would send, with COPY: into the log
/// and its idempotency keys, as the service writes them, in one transaction.
async fn copy_rows(pool: &sqlx::PgPool, rng: &mut SmallRng, opts: &LoadgenOptions) -> anyhow::Result<()> {
    let mut csv = String::with_capacity(opts.batch * 120);
    let mut keys = String::with_capacity(opts.batch * 70);
    let now = chrono::Utc::now().to_rfc3339();
    for _ in 0..opts.batch {
        let e = random_event(rng, opts.users, opts.items);
        keys.push_str(&format!("{},{now}\n", e["event_id"].as_str().unwrap_or_default()));
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            e["event_id"].as_str().unwrap_or_default(),
            e["user_id"].as_str().unwrap_or_default(),
            e["item_id"].as_str().unwrap_or_default(),
            e["kind"].as_str().unwrap_or_default(),
            now,
            e["context"]["device"].as_str().unwrap_or_default(),
            e["context"]["country"].as_str().unwrap_or_default(),
        ));
    }
    let mut tx = pool.begin().await?;
    for (sql, rows) in [
        ("copy event_ids (event_id, ts) from stdin with (format csv)", &keys),
        ("copy events (event_id, user_id, item_id, kind, ts, device, country) from stdin with (format csv)", &csv),
    ] {
        let mut copy = tx.copy_in_raw(sql).await?;
        copy.send(rows.as_bytes()).await?;
        copy.finish().await?;
    }
    tx.commit().await?;
    Ok(())
}
