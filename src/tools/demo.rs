// Over 400 lines: one end-to-end script, step after step.
//! `kairos demo`: the whole service on the real Taobao sample, end to end, in one command.
//!
//! 1. Starts the app in-process on a fresh embedded SQLite store in a temporary directory, on a
//!    free port of 127.0.0.1, with the configuration of `--config-dir` (the store, port and
//!    API keys overridden; the background scheduler paused so the demo drives it).
//! 2. Loads the dataset through the HTTP API with the development key: the catalogue
//!    (`POST /v1/items`, one item per distinct item id, category = the category id), the users
//!    (`PUT /v1/users/{id}`, Asia/Shanghai, consent given) and the events (`POST /v1/events`,
//!    pv → view, fav → fav, cart → cart, buy → purchase), in batches of at most 1,000, several
//!    requests in flight. Ingest refuses events older than `ingest.retention_days` or in the
//!    future, so every timestamp is shifted by the same whole number of days (which keeps each
//!    event's local hour of day) so that the log ends just before now; the output says by how
//!    much.
//! 3. Waits for the statistics refresher to fold the log, runs scheduler ticks (at now until
//!    every user is decided, then hourly over the next 24 hours of scheduler time), and prints
//!    for three users their recommendations, interests and push plan, with the reasons.
//!
//! The HTTP loading lives here rather than in `loadgen`: the load tool generates synthetic
//! bodies for a fixed time, while the demo posts prepared bodies once each, in order, and must
//! know that every one was accepted.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::config::{ConfigSource, DEV_KEY, Settings};
use crate::push::scheduler::Outcome;
use crate::tools::simulate::Dataset;

/// The time zone every user of the sample is given (Taobao's local time is UTC+8).
const ZONE: Tz = chrono_tz::Asia::Shanghai;
/// Largest batch the API accepts for items and (by default) events.
const BATCH: usize = 1000;
/// How far before now the shifted log ends at the latest.
const END_MARGIN: TimeDelta = TimeDelta::seconds(60);

#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// The Taobao UserBehavior sample (gzip CSV).
    #[arg(long, default_value = "../shared/datasets/taobao_userbehavior_sample/UserBehavior_sample.csv.gz")]
    pub dataset: PathBuf,
    /// The service's config directory. Set from the global `--config-dir`.
    #[arg(skip = PathBuf::from("config"))]
    pub config_dir: PathBuf,
    /// A user to show (repeat for several); by default three users chosen by their activity in
    /// the last day of the log.
    #[arg(long = "user")]
    pub users: Vec<String>,
    /// HTTP requests in flight while loading.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Hours of scheduler time stepped through after the first ticks (one tick per hour).
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// Keep the temporary store (its path is printed) instead of deleting it.
    #[arg(long)]
    pub keep_store: bool,
}

/// A temporary directory removed on drop (unless kept).
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn new(keep: bool) -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("kairos-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path, keep })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// An HTTP client bound to the demo's service and key.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    /// Sends a JSON body, retrying a 503 (queue full) or a connection error a few times;
    /// any other non-2xx answer is an error carrying the problem document.
    async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> anyhow::Result<Value> {
        let mut delay = Duration::from_millis(100);
        for attempt in 0..8 {
            let r = self.client.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(DEV_KEY).json(body).send().await;
            match r {
                Ok(r) if r.status().is_success() => return Ok(r.json().await?),
                Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempt < 7 => {
                    let wait = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok());
                    tokio::time::sleep(wait.map_or(delay, Duration::from_secs)).await;
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    bail!("{method} {path} answered {status}: {}", text.chars().take(600).collect::<String>());
                }
                Err(e) if attempt < 7 => {
                    tracing::debug!(error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e).with_context(|| format!("{method} {path}")),
            }
            delay *= 2;
        }
        bail!("{method} {path}: no success after retries")
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.client.get(format!("{}{path}", self.base)).bearer_auth(DEV_KEY).send().await.with_context(|| format!("GET {path}"))?;
        let status = r.status();
        if !status.is_success() {
            bail!("GET {path} answered {status}: {}", r.text().await.unwrap_or_default());
        }
        Ok(r.json().await?)
    }

    /// Sends every request of `bodies` with `concurrency` in flight, advancing `bar` by each
    /// request's weight. Fails on the first request that is refused.
    async fn send_all(
        &self,
        method: reqwest::Method,
        requests: Vec<(String, Value, u64)>,
        concurrency: usize,
        bar: &ProgressBar,
    ) -> anyhow::Result<Vec<Value>> {
        let results: Vec<anyhow::Result<Value>> = futures::stream::iter(requests)
            .map(|(path, body, weight)| {
                let (api, method, bar) = (self.clone(), method.clone(), bar.clone());
                async move {
                    let v = api.send(method, &path, &body).await?;
                    bar.inc(weight);
                    Ok(v)
                }
            })
            .buffered(concurrency.max(1))
            .collect()
            .await;
        bar.finish();
        results.into_iter().collect()
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>8} {bar:30} {pos}/{len} [{elapsed_precise}, {per_sec}]").expect("static template"),
    );
    b.set_message(what.to_string());
    b
}

fn local(ts: DateTime<Utc>) -> String {
    ts.with_timezone(&ZONE).format("%a %d %b %H:%M").to_string()
}

fn parse_ts(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

fn ago(now: DateTime<Utc>, ts: DateTime<Utc>) -> String {
    let m = (now - ts).num_minutes();
    if m < 0 {
        format!("in {} min", -m)
    } else if m < 120 {
        format!("{m} min ago")
    } else if m < 48 * 60 {
        format!("{} h ago", m / 60)
    } else {
        format!("{} d ago", m / 1440)
    }
}

/// A compact one-line rendering of a JSON value (numbers to 3 decimals, timestamps local).
fn compact(v: &Value, now: DateTime<Utc>) -> String {
    match v {
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), |x| if x.fract() == 0.0 { format!("{x}") } else { format!("{x:.3}") }),
        Value::String(s) => parse_ts(v).map_or_else(|| s.clone(), |t| format!("{} ({})", local(t), ago(now, t))),
        Value::Array(a) => a.iter().take(3).map(|x| compact(x, now)).collect::<Vec<_>>().join(", "),
        Value::Object(o) => o
            .iter()
            .filter(|(_, x)| !x.is_null())
            .map(|(k, x)| match x {
                Value::Object(_) | Value::Array(_) => format!("{k}: [{}]", compact(x, now)),
                _ => format!("{k} {}", compact(x, now)),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::Bool(b) => b.to_string(),
        Value::Null => "-".into(),
    }
}

/// Runs the demo; prints as it goes.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut phase = Instant::now();
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let mut lap = |name: &'static str, phase: &mut Instant| {
        timings.push((name, phase.elapsed()));
        *phase = Instant::now();
    };

    // --- the data -------------------------------------------------------------------------
    let data = Dataset::read(&opts.dataset)?;
    anyhow::ensure!(!data.rows.is_empty(), "the dataset is empty");
    let last_ts = data.rows.iter().map(|r| r.ts).max().unwrap_or(0);
    let first_ts = data.rows.iter().map(|r| r.ts).min().unwrap_or(0);
    let real_now = Utc::now();
    let shift_days = ((real_now - END_MARGIN).timestamp() - last_ts).div_euclid(86_400);
    let shift = shift_days * 86_400;
    let at = |ts: i64| Utc.timestamp_opt(ts + shift, 0).single().unwrap_or(real_now);
    println!("kairos demo: {} events of {} users from {}", data.rows.len(), data.user_ids.len(), opts.dataset.display());
    println!(
        "  timestamps shifted by {shift_days} days (whole days keep every event's local hour; ingest refuses events older \
         than the retention or in the future): the log now runs from {} to {} ({}), local time {}",
        local(at(first_ts)),
        local(at(last_ts)),
        ago(real_now, at(last_ts)),
        ZONE.name()
    );

    // --- the service ----------------------------------------------------------------------
    let dir = TempDir::new(opts.keep_store)?;
    let mut settings = Settings::load(&ConfigSource { dir: opts.config_dir.clone(), env_name: None, use_env: false })
        .with_context(|| format!("loading the configuration from {}", opts.config_dir.display()))?;
    settings.database.url = None;
    settings.database.sqlite_path = dir.path.join("kairos.db");
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.auth.keys.clear();
    settings.auth.allow_dev_key = true;
    // The demo runs the scheduler's ticks itself, at chosen times.
    settings.tuning.scheduler.enabled = false;
    let retention_days = settings.ingest.retention_days;
    let max_events = settings.ingest.max_events_per_request.min(BATCH);
    let source = ConfigSource { dir: opts.config_dir.clone(), env_name: None, use_env: false };
    let app = crate::startup::App::build(settings, source).await?;
    let state = app.state.clone();
    let base = format!("http://{}", app.addr);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    println!("  service listening on {base}, embedded SQLite store at {}", state.settings.database.sqlite_path.display());
    // Events the ingest would refuse as too old (only with a retention shorter than the log).
    let oldest_ok = (real_now - TimeDelta::days(i64::from(retention_days)) + TimeDelta::hours(1)).timestamp() - shift;
    let too_old = data.rows.iter().filter(|r| r.ts < oldest_ok).count();
    if too_old > 0 {
        println!("  note: {too_old} events are older than ingest.retention_days = {retention_days} after the shift; left out");
    }
    let api = Api { client: reqwest::Client::builder().pool_max_idle_per_host(opts.concurrency.max(1)).build()?, base };
    lap("start the service", &mut phase);

    // --- catalogue --------------------------------------------------------------------------
    let mut items: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &data.rows {
        items.entry(r.item).or_insert(r.category);
    }
    let item_bodies: Vec<(String, Value, u64)> = items
        .iter()
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|c| {
            let items: Vec<Value> = c.iter().map(|(i, cat)| json!({"item_id": i.to_string(), "category": cat.to_string()})).collect();
            ("/v1/items".to_string(), json!({ "items": items }), c.len() as u64)
        })
        .collect();
    let b = bar(items.len() as u64, "items");
    api.send_all(reqwest::Method::POST, item_bodies, opts.concurrency, &b).await.context("loading the catalogue")?;
    lap("POST /v1/items", &mut phase);

    // --- users --------------------------------------------------------------------------------
    let user_bodies: Vec<(String, Value, u64)> = data
        .user_ids
        .iter()
        .map(|u| (format!("/v1/users/{u}"), json!({"timezone": ZONE.name(), "push_consent": true}), 1))
        .collect();
    let b = bar(data.user_ids.len() as u64, "users");
    api.send_all(reqwest::Method::PUT, user_bodies, opts.concurrency * 2, &b).await.context("loading the users")?;
    lap("PUT /v1/users", &mut phase);

    // --- events (in time order) ---------------------------------------------------------------
    let event_bodies: Vec<(String, Value, u64)> = data
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.ts >= oldest_ok)
        .collect::<Vec<_>>()
        .chunks(max_events)
        .map(|c| {
            let events: Vec<Value> = c
                .iter()
                .map(|(n, r)| {
                    json!({
                        // Stable ids: re-sending the same row is a harmless duplicate.
                        "event_id": uuid::Uuid::from_u128(0x6b61_6972_6f73_0000_0000_0000_0000_0000 | *n as u128),
                        "user_id": data.user_ids[r.user as usize],
                        "item_id": r.item.to_string(),
                        "kind": r.kind,
                        "ts": at(r.ts).to_rfc3339(),
                        "context": {"timezone": ZONE.name()},
                    })
                })
                .collect();
            ("/v1/events".to_string(), json!({ "events": events }), c.len() as u64)
        })
        .collect();
    let b = bar((data.rows.len() - too_old) as u64, "events");
    let outcomes = api.send_all(reqwest::Method::POST, event_bodies, opts.concurrency, &b).await.context("loading the events")?;
    let accepted: u64 = outcomes.iter().filter_map(|o| o.get("accepted").and_then(Value::as_u64)).sum();
    let duplicates: u64 = outcomes.iter().filter_map(|o| o.get("duplicates").and_then(Value::as_u64)).sum();
    println!("  events: {accepted} accepted, {duplicates} duplicates (each 202 came after the commit)");
    lap("POST /v1/events", &mut phase);

    // --- statistics ----------------------------------------------------------------------------
    // The background refresher folds the log into the statistics (every second, for events
    // committed at least `SETTLE` ago). Calling `Engine::refresh` from here as well could fold a
    // page twice (the two would race on the same cursor), so the demo waits for it instead.
    let tuning = state.tuning.get();
    let expected = data.rows.iter().filter(|r| r.ts >= oldest_ok && tuning.kinds.get(r.kind).is_some_and(|k| k.weight > 0.0)).count() as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let observed = state.engine.stats.read().expect("stats lock").observed();
        if observed >= expected {
            println!("  statistics: {observed} events folded into popularity, co-occurrence and context counts");
            break;
        }
        if Instant::now() > deadline {
            println!("  statistics: only {observed} of {expected} events folded after 120 s; going on");
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    lap("statistics refresh", &mut phase);

    // --- scheduler -------------------------------------------------------------------------------
    let now = state.clock.now();
    let mut ticks = 0u32;
    let mut planned = 0u64;
    while let Outcome::Worked { claimed, pushes, .. } = state.scheduler.try_run_once(now).await? {
        ticks += 1;
        planned += pushes;
        println!("  scheduler tick at {} (now): {claimed} users decided, {pushes} pushes planned", local(now));
    }
    let mut per_hour = Vec::new();
    for h in 1..=opts.hours {
        let t = now + TimeDelta::hours(i64::from(h));
        let (mut c, mut p) = (0, 0);
        while let Outcome::Worked { claimed, pushes, .. } = state.scheduler.try_run_once(t).await? {
            ticks += 1;
            c += claimed;
            p += pushes;
        }
        planned += p;
        if c > 0 {
            per_hour.push(format!("{} {c}/{p}", t.with_timezone(&ZONE).format("%H:%M")));
        }
    }
    if !per_hour.is_empty() {
        println!(
            "  scheduler ticks over the next {} h of scheduler time (local hour: users decided/pushes planned): {}",
            opts.hours,
            per_hour.join(", ")
        );
    }
    println!("  {ticks} ticks, {planned} pushes planned in the outbox (no gateway claims them in the demo)");
    lap("scheduler ticks", &mut phase);

    // --- three users -----------------------------------------------------------------------------
    let users = if opts.users.is_empty() { pick_users(&data) } else { opts.users.clone() };
    for user in &users {
        show_user(&api, user, now).await?;
    }
    lap("GET recommendations, interests, push plans", &mut phase);

    // --- shutdown ---------------------------------------------------------------------------------
    let _ = stop_tx.send(());
    server.await.context("the service task")??;
    lap("graceful shutdown", &mut phase);
    println!("\ntimings:");
    for (name, d) in &timings {
        println!("  {name:<44} {:>7.1} s", d.as_secs_f64());
    }
    println!("  {:<44} {:>7.1} s", "total", started.elapsed().as_secs_f64());
    if opts.keep_store {
        println!("store kept at {}", dir.path.display());
    }
    Ok(())
}

/// Three users worth showing: by events in the last day of the log, the most active one, one
/// at the first quartile and one at the median of those active that day.
fn pick_users(data: &Dataset) -> Vec<String> {
    let last = data.rows.iter().map(|r| r.ts).max().unwrap_or(0);
    let mut recent: HashMap<u32, usize> = HashMap::new();
    for r in data.rows.iter().filter(|r| r.ts > last - 86_400) {
        *recent.entry(r.user).or_default() += 1;
    }
    let mut ranked: Vec<(u32, usize)> = recent.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut picks: Vec<String> = Vec::new();
    for pos in [0, ranked.len() / 4, ranked.len() / 2] {
        if let Some((u, _)) = ranked.get(pos) {
            let id = data.user_ids[*u as usize].clone();
            if !picks.contains(&id) {
                picks.push(id);
            }
        }
    }
    picks
}

async fn show_user(api: &Api, user: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    println!("\n================ user {user} ================");
    let interests = api.get(&format!("/v1/users/{user}/interests")).await?;
    println!("interests (level I = {}):", compact(&interests["level"], now));
    for f in interests["features"].as_array().into_iter().flatten().take(6) {
        let evidence = f.get("evidence").or_else(|| f.get("contributors")).map(|e| compact(e, now)).unwrap_or_default();
        println!("  {:<24} {:>8}   {}", compact(&f["feature"], now), compact(&f["weight"], now), evidence);
    }

    let recs = api.get(&format!("/v1/users/{user}/recommendations?n=5&device=mobile")).await?;
    println!(
        "recommendations now, on mobile ({}; cold start: {}):",
        compact(&recs["context"], now),
        compact(&recs["cold_start"], now)
    );
    for (i, item) in recs["items"].as_array().into_iter().flatten().enumerate() {
        println!(
            "  {}. item {} (category {}) score {}",
            i + 1,
            compact(&item["item_id"], now),
            compact(&item["category"], now),
            compact(&item["score"], now)
        );
        if let Some(reasons) = item["reasons"].as_object() {
            let parts: Vec<String> = reasons
                .iter()
                .filter(|(_, v)| v.as_f64().is_some_and(|x| x != 0.0))
                .map(|(k, v)| format!("{k} {}", compact(v, now)))
                .collect();
            println!("       score parts: {}", parts.join(", "));
            for (k, v) in reasons.iter().filter(|(_, v)| v.as_array().is_some_and(|a| !a.is_empty())) {
                println!("       {k}: {}", compact(v, now));
            }
        }
    }

    let plan = api.get(&format!("/v1/users/{user}/push-plan")).await?;
    let next_send = parse_ts(&plan["next_send_at"]).map_or_else(|| "none".into(), |t| format!("{} ({})", local(t), ago(now, t)));
    println!(
        "push plan: target {} pushes/day, fatigue {}, holdout {}, next send {next_send}, caps {}",
        compact(&plan["target_frequency"], now),
        compact(&plan["fatigue"], now),
        compact(&plan["in_holdout"], now),
        compact(&plan["caps"], now)
    );
    for d in plan["decisions"].as_array().into_iter().flatten().take(4) {
        let when = parse_ts(&d["inputs"]["now"]).map_or_else(String::new, local);
        println!("  decision at {when}: {}", d["summary"].as_str().unwrap_or("-"));
    }
    for p in plan["recent_pushes"].as_array().into_iter().flatten().take(3) {
        let when = parse_ts(&p["send_at"]).map_or_else(String::new, local);
        let why = p["reasons"].as_object().map(|r| {
            r.iter()
                .filter(|(_, v)| v.as_f64().is_some_and(|x| x != 0.0))
                .map(|(k, v)| format!("{k} {}", compact(v, now)))
                .collect::<Vec<_>>()
                .join(", ")
        });
        println!(
            "  push planned for {when}: item {} score {} ({}) [{}]",
            compact(&p["item_id"], now),
            compact(&p["score"], now),
            why.unwrap_or_default(),
            compact(&p["status"], now)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_picked_by_recent_activity_without_repeats() {
        let d = Dataset::parse("1,10,1,pv,100000\n1,11,1,pv,100001\n2,12,2,pv,100002\n3,13,3,pv,10\n".as_bytes()).unwrap();
        assert_eq!(pick_users(&d), ["1", "2"]);
    }

    #[test]
    fn compact_renders_numbers_and_timestamps_briefly() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(compact(&json!(1.23456), now), "1.235");
        assert_eq!(compact(&json!({"a": 2, "b": null}), now), "a 2");
        assert!(compact(&json!("2026-01-01T10:00:00Z"), now).contains("2 h ago"));
        assert!(compact(&json!("2026-01-01T11:30:00Z"), now).contains("30 min ago"));
    }
}
