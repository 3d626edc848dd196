//! `kairos synth`: behaviour logs with a planted behaviour, in the schema of the Taobao
//! sample (`user_id,item_id,category_id,behavior_type,timestamp`), so `kairos eval` and the
//! tests can check that the system learns each shop's behaviour from its log rather than
//! having one shop's behaviour built in.
//!
//! Two regimes:
//! - **repeat**: shoppers come back to the items they considered. A session picks one of
//!   the user's two favourite categories, looks at a handful of items there several times
//!   (some of them looked at in earlier sessions), and often carts one (mostly the one looked
//!   at most, sometimes another, now and then one never looked at), then sometimes buys it.
//! - **sequential**: nobody touches an item twice. Items form a hidden graph: every item has
//!   three successors. A shopper walks it, each step to an untouched successor of the item
//!   before (the first successor most often), now and then jumping to a popular item; carts
//!   and purchases are steps like views. What other shoppers took after an item predicts the
//!   next one; the shopper's own items never do.
//!
//! Deterministic for a seed.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::tools::eval::{Behaviour, LogEvent};

/// Which behaviour the log plants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Regime {
    Repeat,
    Sequential,
}

/// `kairos synth`.
#[derive(clap::Args, Clone, Debug)]
pub struct SynthOptions {
    #[arg(long, value_enum)]
    pub regime: Regime,
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    #[arg(long, default_value_t = 2000)]
    pub items: usize,
    /// Events in all (approximately: whole sessions are generated).
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// Days the log spans.
    #[arg(long, default_value_t = 210)]
    pub days: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the log (`.csv`, or `.csv.gz` for gzip).
    #[arg(long)]
    pub out: PathBuf,
}

/// The shape of a generated log.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub users: usize,
    pub items: usize,
    pub events: usize,
    pub days: u32,
    pub seed: u64,
}

/// Items per category.
const CATEGORY_SIZE: usize = 40;
/// 2017-11-25 00:00 UTC+8, like the Taobao sample.
const START: i64 = 1_511_539_200;

/// Generates a log of `regime`, sorted by time.
pub fn generate(regime: Regime, shape: Shape) -> Vec<LogEvent> {
    let mut rng = SmallRng::seed_from_u64(shape.seed);
    let items = shape.items.max(CATEGORY_SIZE);
    let per_user = (shape.events / shape.users.max(1)).max(4);
    let span = i64::from(shape.days.max(1)) * 86_400;
    let successors: Vec<[usize; 3]> =
        (0..items).map(|_| [rng.random_range(0..items), rng.random_range(0..items), rng.random_range(0..items)]).collect();
    let mut log = Vec::with_capacity(shape.events + per_user);
    for u in 0..shape.users {
        let user = format!("u{u}");
        let favourites = [rng.random_range(0..items / CATEGORY_SIZE), rng.random_range(0..items / CATEGORY_SIZE)];
        let mut considered: Vec<usize> = Vec::new();
        let mut touched: HashSet<usize> = HashSet::new();
        let mut left = per_user;
        let mut at = START + rng.random_range(0..span / 4);
        let mut current = popular(&mut rng, items);
        while left > 0 && at < START + span {
            let session = left.min(rng.random_range(6..16));
            let push = |item: usize, behaviour: Behaviour, at: i64, log: &mut Vec<LogEvent>| {
                log.push(LogEvent {
                    user: user.clone(),
                    item: format!("i{item}"),
                    category: format!("c{}", item / CATEGORY_SIZE),
                    behaviour,
                    ts: at,
                });
            };
            let mut t = at;
            match regime {
                Regime::Repeat => {
                    let cat = favourites[usize::from(rng.random_bool(0.3))];
                    let mut pool: Vec<usize> = considered.iter().copied().filter(|i| i / CATEGORY_SIZE == cat).take(3).collect();
                    while pool.len() < 5 {
                        pool.push(cat * CATEGORY_SIZE + zipf(&mut rng, CATEGORY_SIZE));
                    }
                    let mut views = vec![0usize; pool.len()];
                    for _ in 0..session.saturating_sub(2) {
                        // The first items of the pool get most of the looks.
                        let k = zipf(&mut rng, pool.len());
                        views[k] += 1;
                        push(pool[k], Behaviour::Pv, t, &mut log);
                        t += rng.random_range(20..240);
                    }
                    // Mostly the item looked at most; sometimes another one considered, or one
                    // never looked at (an impulse).
                    let most = (0..pool.len()).max_by_key(|&k| (views[k], std::cmp::Reverse(k))).unwrap_or(0);
                    let pick = match rng.random_range(0..10) {
                        0..=5 => pool[most],
                        6..=8 => pool[rng.random_range(0..pool.len())],
                        _ => cat * CATEGORY_SIZE + rng.random_range(0..CATEGORY_SIZE),
                    };
                    if rng.random_bool(0.6) {
                        push(pick, Behaviour::Cart, t, &mut log);
                        t += rng.random_range(20..240);
                        if rng.random_bool(0.4) {
                            push(pick, Behaviour::Buy, t, &mut log);
                        }
                    }
                    considered.extend(pool);
                    considered.dedup();
                }
                Regime::Sequential => {
                    for _ in 0..session {
                        let next = successors[current]
                            .iter()
                            .copied()
                            .enumerate()
                            .filter(|(_, s)| !touched.contains(s))
                            .find(|(k, _)| rng.random_bool([0.7, 0.6, 1.0][*k]))
                            .map(|(_, s)| s);
                        current = match next {
                            Some(s) if rng.random_bool(0.92) => s,
                            _ => (0..50).map(|_| popular(&mut rng, items)).find(|i| !touched.contains(i)).unwrap_or(current),
                        };
                        if !touched.insert(current) {
                            continue;
                        }
                        let roll: f64 = rng.random();
                        let behaviour = if roll < 0.08 {
                            Behaviour::Cart
                        } else if roll < 0.11 {
                            Behaviour::Buy
                        } else if roll < 0.14 {
                            Behaviour::Fav
                        } else {
                            Behaviour::Pv
                        };
                        push(current, behaviour, t, &mut log);
                        t += rng.random_range(20..240);
                    }
                }
            }
            left = left.saturating_sub(session);
            at = t + rng.random_range(3600..(span / (per_user as i64 / 10).max(1)).max(7200));
        }
    }
    log.sort_by_key(|e| e.ts);
    log
}

/// An item index by a Zipf-like draw (index `k` with weight `1 / (k + 1)`).
fn zipf(rng: &mut SmallRng, n: usize) -> usize {
    let h: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
    let mut x = rng.random::<f64>() * h;
    for k in 0..n {
        x -= 1.0 / (k + 1) as f64;
        if x <= 0.0 {
            return k;
        }
    }
    n - 1
}

/// A popular item: a Zipf draw over a shuffled order of all items.
fn popular(rng: &mut SmallRng, items: usize) -> usize {
    (zipf(rng, items) * 7919) % items
}

/// `kairos synth`: writes the log.
pub fn run(opts: &SynthOptions) -> anyhow::Result<usize> {
    let shape = Shape { users: opts.users, items: opts.items, events: opts.events, days: opts.days, seed: opts.seed };
    let log = generate(opts.regime, shape);
    let file = std::fs::File::create(&opts.out).with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut out: Box<dyn Write> = if opts.out.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()))
    } else {
        Box::new(std::io::BufWriter::new(file))
    };
    for e in &log {
        let b = e.behaviour.as_str();
        let user = &e.user[1..];
        let item = &e.item[1..];
        let category = &e.category[1..];
        writeln!(out, "{user},{item},{category},{b},{}", e.ts)?;
    }
    out.flush()?;
    Ok(log.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Settings, Tuning};
    use crate::domain::{Event, Item};
    use crate::rank::catalog::StrMap;
    use crate::rank::learn::{self, Outcome, examples, fit};
    use crate::rank::ranker::Ranker;
    use chrono::DateTime;

    fn shipped() -> Tuning {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml")).expect("shipped config");
        Settings::from_toml(&text).expect("valid").tuning
    }

    struct Log {
        events: Vec<Event>,
        items: StrMap<String, Item>,
    }

    fn log(regime: Regime) -> Log {
        let rows = generate(regime, Shape { users: 160, items: 800, events: 9_000, days: 6, seed: 3 });
        let mut items: StrMap<String, Item> = StrMap::default();
        for r in &rows {
            items.entry(r.item.clone()).or_insert_with(|| Item::new(r.item.clone(), vec![r.category.clone()]));
        }
        Log { events: rows.iter().enumerate().map(|(n, r)| r.to_event(n)).collect(), items }
    }

    const SPLIT_DAYS: i64 = 4;

    fn split() -> DateTime<chrono::Utc> {
        DateTime::from_timestamp(START + SPLIT_DAYS * 86_400, 0).unwrap()
    }

    /// The model the shipped config trains on `log`'s first days.
    fn trained(log: &Log, tuning: &Tuning) -> Ranker {
        let kinds = tuning.kind_weights();
        let setup = tuning.training_setup(&kinds);
        let before: Vec<Event> = log.events.iter().filter(|e| e.ts < split()).cloned().collect();
        match learn::train(&before, &|id| log.items.get(id).cloned(), &|_| 8 * 3600, &setup, None, split()) {
            Outcome::Deploy(fit) => Ranker::new(0, fit.params, &crate::rank::features::names(&kinds)).unwrap(),
            other => panic!("the shipped config should train and deploy here: {other:?}"),
        }
    }

    /// NDCG@10 of `score` on `log`'s days after the split.
    fn ndcg_after_split(log: &Log, tuning: &Tuning, score: &dyn Fn(&[f32]) -> f64) -> f64 {
        let kinds = tuning.kind_weights();
        let setup = tuning.training_setup(&kinds);
        let data = examples::build(&log.events, &|id| log.items.get(id).cloned(), &|_| 8 * 3600, &setup, split(), DateTime::<chrono::Utc>::MAX_UTC, split());
        let all: Vec<&examples::Example> = data.list.iter().collect();
        fit::ndcg(&all, score, data.width)
    }

    #[test]
    fn generated_logs_plant_their_behaviour() {
        for (regime, repeats) in [(Regime::Repeat, true), (Regime::Sequential, false)] {
            let rows = generate(regime, Shape { users: 50, items: 400, events: 3_000, days: 5, seed: 1 });
            let mut seen: HashSet<(&str, &str)> = HashSet::new();
            let (mut targets, mut repeated) = (0, 0);
            for r in &rows {
                if r.behaviour.is_target() {
                    targets += 1;
                    repeated += usize::from(seen.contains(&(r.user.as_str(), r.item.as_str())));
                }
                seen.insert((&r.user, &r.item));
            }
            assert!(targets > 100, "{regime:?}: {targets} targets");
            if repeats {
                assert!(repeated * 2 > targets, "{regime:?}: most targets were looked at before ({repeated} of {targets})");
            } else {
                assert_eq!(repeated, 0, "{regime:?}: nobody touches an item twice");
            }
            assert!(rows.windows(2).all(|w| w[0].ts <= w[1].ts), "time order");
            assert_eq!(rows.len(), generate(regime, Shape { users: 50, items: 400, events: 3_000, days: 5, seed: 1 }).len(), "deterministic");
        }
    }

    #[test]
    fn the_shipped_config_learns_each_regime_and_beats_the_other_regimes_model_on_it_by_far() {
        let tuning = shipped();
        let (repeat, sequential) = (log(Regime::Repeat), log(Regime::Sequential));
        let (on_repeat, on_sequential) = (trained(&repeat, &tuning), trained(&sequential, &tuning));
        for (name, log, own, other) in [("repeat", &repeat, &on_repeat, &on_sequential), ("sequential", &sequential, &on_sequential, &on_repeat)] {
            let mine = ndcg_after_split(log, &tuning, &|r| own.score(r));
            let theirs = ndcg_after_split(log, &tuning, &|r| other.score(r));
            let handset = ndcg_after_split(log, &tuning, &|r| f64::from(r[0]));
            assert!(mine > 1.5 * theirs && mine > theirs + 0.1, "{name}: its own model {mine:.3}, the other regime's {theirs:.3}");
            assert!(mine > handset, "{name}: learned {mine:.3} vs hand-set {handset:.3}");
        }
    }
}
