//! `kairos datagen`: a synthetic catalog, users and behaviour histories written straight to
//! the configured store, for load tests at realistic sizes (e.g. 100k items, 100k users).
//!
//! Item `iN` sits in leaf category `N mod leaves`; each user has a few favourite leaf
//! categories, a favourite device and a time zone; their events fall mostly in those
//! categories, spread over the last `days` days, with popular items drawn more often.

use std::sync::Arc;

use anyhow::Context;
use chrono::{Duration, Utc};
use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::domain::{Device, Event, EventContext, EventProps, Item, QuietHours, User};
use crate::tools::loadgen::{random_kind, skewed};
use crate::store::Store;

#[derive(Debug, Clone, Args)]
pub struct DatagenOptions {
    #[arg(long, default_value_t = 100_000)]
    pub items: u64,
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Average events per user (each user gets between half and one and a half times this).
    #[arg(long, default_value_t = 20)]
    pub events_per_user: u64,
    /// Events are spread over this many days before now.
    #[arg(long, default_value_t = 14)]
    pub days: i64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

const TOPS: [&str; 10] = ["electronics", "fashion", "home", "beauty", "sports", "toys", "books", "garden", "food", "auto"];
const MIDS: usize = 10;
const LEAVES: usize = 10;
const ZONES: [&str; 5] = ["Europe/Berlin", "America/New_York", "Asia/Shanghai", "Europe/London", "America/Los_Angeles"];

/// The leaf category path of item `n`.
pub fn category_of(n: u64) -> Vec<String> {
    let leaves = (TOPS.len() * MIDS * LEAVES) as u64;
    let leaf = (n % leaves) as usize;
    let top = leaf / (MIDS * LEAVES);
    let mid = (leaf / LEAVES) % MIDS;
    vec![TOPS[top].to_string(), format!("{}-{mid}", TOPS[top]), format!("{}-{mid}-{}", TOPS[top], leaf % LEAVES)]
}

pub fn make_item(n: u64, rng: &mut SmallRng) -> Item {
    Item {
        item_id: format!("i{n}"),
        category: category_of(n),
        brand: Some(format!("brand-{}", n % 500)),
        price: Some(f64::from(rng.random_range(100..50_000u32)) / 100.0),
        tags: vec![],
        available: rng.random_bool(0.97),
        title: Some(format!("Item {n}")),
        created_at: None,
    }
}

pub fn make_history(u: u64, opts: &DatagenOptions, rng: &mut SmallRng) -> (User, Vec<Event>) {
    let leaves = (TOPS.len() * MIDS * LEAVES) as u64;
    let per_leaf = (opts.items / leaves).max(1);
    let favourites: Vec<u64> = (0..rng.random_range(1..=3)).map(|_| rng.random_range(0..leaves)).collect();
    let device = Device::ALL[rng.random_range(0..3)];
    let zone = ZONES[(u % ZONES.len() as u64) as usize];
    let user = User {
        unsubscribed_at: None,
        resubscribed_at: None,
        user_id: format!("u{u}"),
        timezone: zone.parse().expect("static zone names"),
        push_consent: rng.random_bool(0.85),
        quiet_hours: Some(QuietHours { start: 22, end: 7 }),
        locale: None,
        updated_at: Utc::now(),
    };
    let n = rng.random_range(opts.events_per_user / 2..=opts.events_per_user * 3 / 2).max(1);
    let now = Utc::now();
    let events = (0..n)
        .map(|_| {
            let leaf = if rng.random_bool(0.8) { favourites[rng.random_range(0..favourites.len())] } else { rng.random_range(0..leaves) };
            let item = (leaf + leaves * skewed(rng, per_leaf)).min(opts.items - 1);
            let age = Duration::seconds(rng.random_range(0..opts.days * 86_400));
            Event {
                event_id: uuid::Uuid::new_v4(),
                user_id: user.user_id.clone(),
                item_id: Some(format!("i{item}")),
                kind: random_kind(rng).to_string(),
                ts: now - age,
                context: EventContext {
                    device: Some(if rng.random_bool(0.8) { device } else { Device::ALL[rng.random_range(0..3)] }),
                    timezone: Some(zone.to_string()),
                    ..EventContext::default()
                },
                props: EventProps::default(),
            }
        })
        .collect();
    (user, events)
}

/// Writes the catalog, then users with their histories. Returns (items, users, events).
pub async fn run(store: Arc<dyn Store>, opts: &DatagenOptions) -> anyhow::Result<(u64, u64, u64)> {
    anyhow::ensure!(opts.items > 0 && opts.users > 0 && opts.days > 0, "items, users and days must be > 0");
    let style = ProgressStyle::with_template("{msg:>8} [{elapsed_precise}] {bar:30} {pos}/{len}").expect("static template");
    let bar = ProgressBar::new(opts.items).with_style(style.clone()).with_message("items");
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let mut start = 0;
    while start < opts.items {
        let end = (start + 1000).min(opts.items);
        let items: Vec<Item> = (start..end).map(|n| make_item(n, &mut rng)).collect();
        store.upsert_items(&items).await.context("writing items")?;
        bar.set_position(end);
        start = end;
    }
    bar.finish();

    let bar = ProgressBar::new(opts.users).with_style(style).with_message("users");
    let chunk = 500u64;
    let chunks: Vec<u64> = (0..opts.users.div_ceil(chunk)).collect();
    let results: Vec<anyhow::Result<u64>> = futures::stream::iter(chunks)
        .map(|c| {
            let store = store.clone();
            let bar = bar.clone();
            let opts = opts.clone();
            async move {
                let mut rng = SmallRng::seed_from_u64(opts.seed ^ (c + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut events = Vec::new();
                let mut users = Vec::new();
                for u in c * chunk..((c + 1) * chunk).min(opts.users) {
                    let (user, history) = make_history(u, &opts, &mut rng);
                    users.push(user);
                    events.extend(history);
                }
                for user in &users {
                    store.upsert_user(user).await.context("writing users")?;
                }
                store.insert_events(&events).await.context("writing events")?;
                bar.inc(users.len() as u64);
                Ok(events.len() as u64)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    bar.finish();
    let mut total = 0;
    for r in results {
        total += r?;
    }
    Ok((opts.items, opts.users, total))
}
