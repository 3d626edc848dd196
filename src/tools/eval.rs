//! Offline evaluation (`kairos eval`): replays a real behaviour log, in time order, through the
//! same profile and scoring code the service runs, and measures how well it predicts each
//! add-to-cart and purchase *before* seeing it.
//!
//! ## Protocol
//!
//! - Events are sorted by timestamp; ties keep file order. Each event is, in this order:
//!   1. if it is a target (`cart` or `buy`): every variant is asked for the user's top-K at
//!      the event's time, from what has been observed so far, and the target item (and its
//!      category) is looked up in the answer;
//!   2. then observed: its item enters the catalogue (`Catalog::upsert`, category path
//!      `[category_id]`, no brand), `Stats` counts it (`Observation`, weighted by the
//!      configured kind weight, context keys from the timestamp in UTC+8), and it is
//!      appended to the user's history.
//!
//!   So a query sees only events before it (ties: earlier in the file), and only items and
//!   categories that have appeared before it. Nothing from the future is used: not the
//!   user's later events, not later popularity or co-occurrence, not even the existence of
//!   an item that has not yet appeared (the test at the bottom checks this).
//! - kairos variants call [`crate::rank::profile::InterestVector::build`] and
//!   [`crate::rank::scoring::rank`] exactly as `recommend::Engine::recommend` does; only the decay
//!   and the scoring constants differ between them.
//! - Baselines: global popularity and recent popularity (both `Stats` trending), and the
//!   yardstick of DESIGN.md ("reference": the user's own items by kind-weighted decayed sum,
//!   then items by decayed popularity), implemented here independently of kairos' code with
//!   exact (unbucketed) decay.
//! - Metrics: HR@K, NDCG@K and MRR@K (one relevant item per target) for K ∈ {5, 10, 20},
//!   catalogue coverage and category diversity of the top 10, at item level and at category
//!   level. See `docs/EVALUATION.md`, which `kairos eval` regenerates.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, FixedOffset, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use crate::rank::catalog::{CatIdx, Catalog, IdxMap, IdxSet, ItemIdx};
use crate::config::{Settings, Tuning};
use crate::rank::context::{RequestContext, event_keys};
use crate::rank::decay::Decay;
use crate::domain::{Event, EventContext, EventProps, Item};
use crate::rank::profile::{InterestVector, ProfileParams};
use crate::rank::scoring::{Request, ScoringConfig, rank};
use crate::rank::stats::{Observation, Segment, Stats};

mod report;

/// The cut-offs reported.
pub const KS: [usize; 3] = [5, 10, 20];
/// The longest list scored.
const MAX_K: usize = 20;
/// Coverage and diversity are measured on the top this many.
const LIST_K: usize = 10;
/// Items asked of `rank` per query: the top 20 are scored, all of them feed the category list.
const RANKED_ITEMS: usize = 100;
/// Local time of the Taobao platform: China Standard Time.
const LOCAL_UTC_OFFSET_SECS: i32 = 8 * 3600;
/// File name of the sample inside its folder.
const SAMPLE_FILE: &str = "UserBehavior_sample.csv.gz";

/// `kairos eval`: replay a behaviour log and write the report.
#[derive(clap::Args, Clone, Debug)]
pub struct EvalOptions {
    /// The Taobao UserBehavior log: a folder holding `UserBehavior_sample.csv.gz`, or a
    /// `.csv` / `.csv.gz` file (columns user_id,item_id,category_id,behavior_type,timestamp).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "docs/EVALUATION.md")]
    pub out: PathBuf,
    /// Where to write the plot of NDCG@10 against the half-life (PNG).
    #[arg(long, default_value = "docs/eval_ndcg_half_life.png")]
    pub plot: PathBuf,
    /// Directory holding `default.toml`, whose `[tuning]` is the "default" row. Taken from the
    /// global `--config-dir`.
    #[arg(skip = PathBuf::from("config"))]
    pub config_dir: PathBuf,
}

// ---------------------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------------------

/// A behaviour type of the Taobao log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Behaviour {
    Pv,
    Fav,
    Cart,
    Buy,
}

impl Behaviour {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pv" => Some(Behaviour::Pv),
            "fav" => Some(Behaviour::Fav),
            "cart" => Some(Behaviour::Cart),
            "buy" => Some(Behaviour::Buy),
            _ => None,
        }
    }

    /// The kairos event kind it maps to (`tuning.kinds.*`).
    pub fn kind(self) -> &'static str {
        match self {
            Behaviour::Pv => "view",
            Behaviour::Fav => "fav",
            Behaviour::Cart => "cart",
            Behaviour::Buy => "purchase",
        }
    }

    /// The yardstick's kind weight (DESIGN.md): pv 1, fav 2, cart 3, buy 4.
    pub fn reference_weight(self) -> f64 {
        match self {
            Behaviour::Pv => 1.0,
            Behaviour::Fav => 2.0,
            Behaviour::Cart => 3.0,
            Behaviour::Buy => 4.0,
        }
    }

    /// Carts and purchases are predicted.
    pub fn is_target(self) -> bool {
        matches!(self, Behaviour::Cart | Behaviour::Buy)
    }
}

/// One row of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEvent {
    pub user: String,
    pub item: String,
    pub category: String,
    pub behaviour: Behaviour,
    /// Unix seconds, UTC.
    pub ts: i64,
}

/// Reads a log (gzip when the name ends in `.gz`). A folder means its `UserBehavior_sample.csv.gz`.
pub fn read_log(path: &Path) -> anyhow::Result<Vec<LogEvent>> {
    let file = if path.is_dir() { path.join(SAMPLE_FILE) } else { path.to_path_buf() };
    let raw = std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut text = String::new();
    if file.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(raw).read_to_string(&mut text)
    } else {
        std::io::BufReader::new(raw).read_to_string(&mut text)
    }
    .with_context(|| format!("cannot read {}", file.display()))?;
    parse_log(&text).with_context(|| format!("in {}", file.display()))
}

/// Parses CSV rows `user_id,item_id,category_id,behavior_type,timestamp` (no header).
pub fn parse_log(text: &str) -> anyhow::Result<Vec<LogEvent>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let r = record.with_context(|| format!("row {}", n + 1))?;
        if r.len() != 5 {
            bail!("row {}: expected 5 columns, found {}", n + 1, r.len());
        }
        let behaviour =
            Behaviour::parse(&r[3]).with_context(|| format!("row {}: unknown behavior_type {:?}", n + 1, &r[3]))?;
        let ts: i64 = r[4].parse().with_context(|| format!("row {}: bad timestamp {:?}", n + 1, &r[4]))?;
        out.push(LogEvent { user: r[0].to_owned(), item: r[1].to_owned(), category: r[2].to_owned(), behaviour, ts });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Variants
// ---------------------------------------------------------------------------------------

/// How a variant ranks.
#[derive(Clone, Debug)]
pub enum Method {
    /// kairos: `InterestVector::build` with `decay` and the configured kind weights, then
    /// `scoring::rank` with `scoring`.
    Kairos { decay: Decay, scoring: Box<ScoringConfig> },
    /// The yardstick of DESIGN.md: the user's own items by `Σ w_ref(kind) · d(age)` (pv 1,
    /// fav 2, cart 3, buy 4), then every other item by `Σ w_ref · d(age)` over all users.
    /// `decay` must be exponential or none (exact incremental popularity).
    Reference { decay: Decay },
    /// Items by `Stats` popularity (global segment, configured kind weights) under `decay`.
    Popularity { decay: Decay },
}

/// Where a row is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The shipped configuration and the yardstick.
    Headline,
    /// kairos with other decay functions (everything else as configured).
    Decay,
    /// kairos with one scoring component changed or isolated.
    Ablation,
    /// Baselines that do not use kairos' scoring.
    Baseline,
}

/// Curves of the plot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    Kairos,
    Reference,
}

/// One configuration evaluated.
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    pub group: Group,
    pub method: Method,
    /// A point of a plotted curve (exponential decay, at this half-life).
    pub curve: Option<(Curve, f64)>,
}

impl Variant {
    fn cost(&self) -> u32 {
        match self.method {
            Method::Kairos { .. } => 20,
            Method::Reference { .. } => 2,
            Method::Popularity { .. } => 1,
        }
    }
}

/// Half-lives (hours) swept for the plot.
pub const HALF_LIVES: [f64; 8] = [1.0, 3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 168.0];

/// Name of the shipped configuration's row.
pub const DEFAULT_ROW: &str = "kairos default (config/default.toml)";
/// Name of the yardstick's row.
pub const REFERENCE_ROW: &str = "reference: own items + popularity, exp 6h";
/// Name of the yardstick without decay.
pub const REFERENCE_NONE_ROW: &str = "reference, no decay";
/// Global popularity.
pub const POPULARITY_ROW: &str = "global popularity (all time)";

/// Every variant of the report, built from the configured tuning.
pub fn variants(tuning: &Tuning) -> Vec<Variant> {
    let base = tuning.scoring.clone();
    let kairos = |name: String, group: Group, decay: Decay, scoring: ScoringConfig| Variant {
        name,
        group,
        method: Method::Kairos { decay, scoring: Box::new(scoring) },
        curve: None,
    };
    let mut v = vec![
        kairos(DEFAULT_ROW.into(), Group::Headline, tuning.decay.clone(), base.clone()),
        Variant {
            name: REFERENCE_ROW.into(),
            group: Group::Headline,
            method: Method::Reference { decay: Decay::Exponential { half_life_hours: 6.0 } },
            curve: None,
        },
        Variant {
            name: REFERENCE_NONE_ROW.into(),
            group: Group::Headline,
            method: Method::Reference { decay: Decay::None },
            curve: None,
        },
        Variant {
            name: POPULARITY_ROW.into(),
            group: Group::Headline,
            method: Method::Popularity { decay: Decay::None },
            curve: None,
        },
    ];
    // Decay functions for the user's own events.
    v.push(kairos("kairos, decay none".into(), Group::Decay, Decay::None, base.clone()));
    for h in HALF_LIVES {
        let decay = Decay::Exponential { half_life_hours: h };
        let mut k = kairos(format!("kairos, {}", decay.label()), Group::Decay, decay, base.clone());
        k.curve = Some((Curve::Kairos, h));
        v.push(k);
    }
    for decay in [
        Decay::Sigmoid { midpoint_hours: 24.0, steepness_per_hour: 0.25 },
        Decay::Sigmoid { midpoint_hours: 6.0, steepness_per_hour: 1.0 },
        Decay::Linear { window_hours: 72.0 },
        Decay::Linear { window_hours: 24.0 },
    ] {
        v.push(kairos(format!("kairos, {}", decay.label()), Group::Decay, decay, base.clone()));
    }
    // Components.
    let d = tuning.decay.clone();
    v.push(kairos(
        "kairos default, context off (λ_c = 0)".into(),
        Group::Ablation,
        d.clone(),
        ScoringConfig { lambda_context: 0.0, ..base.clone() },
    ));
    v.push(kairos(
        "kairos default, bought items count fully (bought_item_factor 1)".into(),
        Group::Ablation,
        d.clone(),
        ScoringConfig { bought_item_factor: 1.0, ..base.clone() },
    ));
    v.push(kairos(
        "kairos default, purchased filter 7 days".into(),
        Group::Ablation,
        d.clone(),
        ScoringConfig { purchased_filter_days: 7.0, ..base.clone() },
    ));
    v.push(kairos(
        "kairos, co-occurrence only".into(),
        Group::Ablation,
        d.clone(),
        ScoringConfig { lambda_time: 0.0, lambda_context: 0.0, lambda_trending: 0.0, lambda_cooccurrence: 1.0, ..base.clone() },
    ));
    // Baselines.
    v.push(Variant {
        name: format!("recent popularity ({})", base.trending_decay.label()),
        group: Group::Baseline,
        method: Method::Popularity { decay: base.trending_decay.clone() },
        curve: None,
    });
    for h in HALF_LIVES {
        let decay = Decay::Exponential { half_life_hours: h };
        let name = if h == 6.0 { REFERENCE_ROW.to_string() } else { format!("reference, {}", decay.label()) };
        if let Some(existing) = v.iter_mut().find(|x| x.name == name) {
            existing.curve = Some((Curve::Reference, h));
            continue;
        }
        v.push(Variant {
            name,
            group: Group::Baseline,
            method: Method::Reference { decay },
            curve: Some((Curve::Reference, h)),
        });
    }
    // The configured decay is one of the sweep's points: mark the default row, drop the copy.
    if let Decay::Exponential { half_life_hours } = tuning.decay {
        let dup = v.iter().position(|x| {
            x.group == Group::Decay && matches!(&x.method, Method::Kairos { decay, .. } if *decay == tuning.decay)
        });
        if let Some(i) = dup {
            v.remove(i);
            v[0].curve = Some((Curve::Kairos, half_life_hours));
        }
    }
    v
}

// ---------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------

/// What one variant produced over the replay.
#[derive(Clone, Debug, Default)]
struct Acc {
    /// Per target: 1-based rank of the target item in the top 20, 0 if absent.
    item_rank: Vec<u8>,
    /// Per target: 1-based rank of the target's category in the top 20 categories, 0 if absent.
    cat_rank: Vec<u8>,
    /// Items shown in some top 10.
    covered: IdxSet<ItemIdx>,
    /// Σ over lists of (distinct leaf categories / length), and the number of lists.
    diversity_sum: f64,
    lists: usize,
    /// Per target, the top 10 item ids (tests only).
    captured: Vec<Vec<String>>,
}

/// Exactly decayed popularity for the reference: `Σ w · 2^((ts − base)/h)` per item, kept in
/// an ordered set so the best items are read without a scan. Values only grow (a common factor
/// `2^(−(now − base)/h)` turns them into decayed values), so ordering by them is ordering by
/// decayed popularity at any `now` after the last event.
struct ExactPopularity {
    half_life_secs: Option<f64>,
    base: Option<i64>,
    value: Vec<f64>,
    order: BTreeSet<(Reverse<u64>, u32)>,
}

impl ExactPopularity {
    fn new(decay: &Decay) -> Self {
        let half_life_secs = match *decay {
            Decay::Exponential { half_life_hours } => Some(half_life_hours * 3600.0),
            Decay::None => None,
            _ => panic!("the reference supports exponential or no decay, not {}", decay.label()),
        };
        ExactPopularity { half_life_secs, base: None, value: Vec::new(), order: BTreeSet::new() }
    }

    fn add(&mut self, item: ItemIdx, w: f64, ts: i64) {
        let mut w = w;
        if let Some(h) = self.half_life_secs {
            let base = *self.base.get_or_insert(ts);
            let mut e = (ts - base) as f64 / h;
            if e > 500.0 {
                // Rescale everything to a new base before the factors overflow.
                let f = (-e).exp2();
                for v in &mut self.value {
                    *v *= f;
                }
                self.order = self.value.iter().enumerate().filter(|(_, v)| **v > 0.0).map(|(i, v)| (Reverse(v.to_bits()), i as u32)).collect();
                self.base = Some(ts);
                e = 0.0;
            }
            w *= e.exp2();
        }
        let i = item.0 as usize;
        if self.value.len() <= i {
            self.value.resize(i + 1, 0.0);
        }
        let old = self.value[i];
        if old > 0.0 {
            self.order.remove(&(Reverse(old.to_bits()), item.0));
        }
        let new = old + w;
        self.value[i] = new;
        if new > 0.0 {
            self.order.insert((Reverse(new.to_bits()), item.0));
        }
    }

    /// Items, most popular first (ties: first seen first).
    fn iter(&self) -> impl Iterator<Item = ItemIdx> + '_ {
        self.order.iter().map(|&(_, i)| ItemIdx(i))
    }
}

/// The log, sorted, with dense user indices.
struct Prepared<'a> {
    events: Vec<&'a LogEvent>,
    user_of: Vec<u32>,
    users: usize,
}

fn prepare(log: &[LogEvent]) -> Prepared<'_> {
    let mut events: Vec<&LogEvent> = log.iter().collect();
    // Stable: ties keep file order.
    events.sort_by_key(|e| e.ts);
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let user_of = events
        .iter()
        .map(|e| {
            let n = ids.len() as u32;
            *ids.entry(e.user.as_str()).or_insert(n)
        })
        .collect();
    Prepared { events, user_of, users: ids.len() }
}

fn local_zone() -> FixedOffset {
    FixedOffset::east_opt(LOCAL_UTC_OFFSET_SECS).expect("UTC+8 is a valid offset")
}

fn utc(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// The replay state of one thread, for its share of the variants.
struct Replayer<'a> {
    tuning: &'a Tuning,
    kind_weights: crate::rank::profile::KindWeights,
    variants: Vec<&'a Variant>,
    catalog: Catalog,
    stats: Stats,
    histories: Vec<Vec<Event>>,
    /// Per user: (item, reference weight, ts), for the reference.
    own: Vec<Vec<(ItemIdx, f64, i64)>>,
    /// Per variant: the reference's exact popularity.
    popularity: Vec<Option<ExactPopularity>>,
    accs: Vec<Acc>,
    capture: bool,
    zone: FixedOffset,
    no_exclusions: HashSet<String>,
}

impl<'a> Replayer<'a> {
    fn new(tuning: &'a Tuning, variants: Vec<&'a Variant>, users: usize, capture: bool) -> Self {
        let popularity = variants
            .iter()
            .map(|v| match &v.method {
                Method::Reference { decay } => Some(ExactPopularity::new(decay)),
                _ => None,
            })
            .collect();
        let accs = vec![Acc::default(); variants.len()];
        Replayer {
            tuning,
            kind_weights: tuning.kind_weights(),
            variants,
            catalog: Catalog::new(),
            stats: Stats::new(tuning.scoring.stats.clone()),
            histories: vec![Vec::new(); users],
            own: vec![Vec::new(); users],
            popularity,
            accs,
            capture,
            zone: local_zone(),
            no_exclusions: HashSet::new(),
        }
    }

    fn run(mut self, prepared: &Prepared<'_>, progress: &ProgressBar) -> Vec<Acc> {
        for (n, e) in prepared.events.iter().enumerate() {
            let user = prepared.user_of[n] as usize;
            if e.behaviour.is_target() {
                self.query_all(e, user);
                progress.inc(self.variants.len() as u64);
            }
            self.observe(n, e, user);
        }
        self.accs
    }

    /// Step 2: the event becomes the past.
    fn observe(&mut self, n: usize, e: &LogEvent, user: usize) {
        let idx = match self.catalog.idx(&e.item) {
            Some(idx) if self.catalog.item(idx).is_some_and(|i| i.category.len() == 1 && i.category[0] == e.category) => idx,
            _ => self.catalog.upsert(Item::new(e.item.clone(), vec![e.category.clone()])),
        };
        let ts = utc(e.ts);
        let kind = e.behaviour.kind();
        let keys = event_keys(ts, &self.zone, &EventContext::default());
        self.stats.observe(&Observation {
            user: &e.user,
            item: idx,
            categories: self.catalog.categories(idx),
            brand: None,
            weight: self.kind_weights.get(kind).copied().unwrap_or(0.0),
            ts,
            context: &keys,
        });
        self.histories[user].push(Event {
            event_id: uuid::Uuid::from_u128(n as u128),
            user_id: e.user.clone(),
            item_id: Some(e.item.clone()),
            kind: kind.to_owned(),
            ts,
            context: EventContext::default(),
            props: EventProps::default(),
        });
        let w = e.behaviour.reference_weight();
        self.own[user].push((idx, w, e.ts));
        for p in self.popularity.iter_mut().flatten() {
            p.add(idx, w, e.ts);
        }
    }

    /// Step 1: every variant answers, then the target is revealed.
    fn query_all(&mut self, e: &LogEvent, user: usize) {
        let now = utc(e.ts);
        let target_item = self.catalog.idx(&e.item).filter(|&i| self.catalog.item(i).is_some());
        let target_cat = self.catalog.category_idx(&e.category);
        // Padding of category lists: leaf categories by trending (the same for every variant).
        let pad: Vec<CatIdx> = self
            .stats
            .view(now, &self.tuning.scoring.trending_decay)
            .trending_categories(MAX_K)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        for v in 0..self.variants.len() {
            let (items, cats) = self.query(v, user, now, &pad);
            let acc = &mut self.accs[v];
            acc.item_rank.push(position(&items, target_item));
            acc.cat_rank.push(position(&cats, target_cat));
            let top = &items[..items.len().min(LIST_K)];
            if !top.is_empty() {
                acc.covered.extend(top.iter().copied());
                let distinct: IdxSet<Option<CatIdx>> = top.iter().map(|&i| self.catalog.leaf_category(i)).collect();
                acc.diversity_sum += distinct.len() as f64 / top.len() as f64;
                acc.lists += 1;
            }
            if self.capture {
                acc.captured.push(top.iter().map(|&i| self.catalog.id(i).to_owned()).collect());
            }
        }
    }

    /// One variant's answer: the top items, and the top categories (leaf categories in order
    /// of first appearance in the ranked list, then padded with trending categories).
    fn query(&self, v: usize, user: usize, now: DateTime<Utc>, pad: &[CatIdx]) -> (Vec<ItemIdx>, Vec<CatIdx>) {
        let ranked: Vec<ItemIdx> = match &self.variants[v].method {
            Method::Kairos { decay, scoring } => {
                let history = &self.histories[user];
                let params =
                    ProfileParams { decay, kind_weights: &self.kind_weights, horizon_secs: scoring.horizon_hours * 3600.0 };
                let profile = InterestVector::build(history, &self.catalog, &params, now);
                let context = RequestContext::at(&now.with_timezone(&self.zone), None, None);
                let request = Request { n: RANKED_ITEMS, context, exclude: &self.no_exclusions };
                rank(&request, &profile, history, &self.catalog, &self.stats, scoring, now)
                    .items
                    .iter()
                    .filter_map(|s| self.catalog.idx(&s.item_id))
                    .collect()
            }
            Method::Reference { decay } => {
                // (item) → (decayed weight, first touch)
                let mut mine: IdxMap<ItemIdx, (f64, i64)> = IdxMap::default();
                for &(item, w, ts) in &self.own[user] {
                    let slot = mine.entry(item).or_insert((0.0, ts));
                    slot.0 += w * decay.weight((now.timestamp() - ts) as f64);
                }
                let mut mine: Vec<(ItemIdx, f64, i64)> = mine.into_iter().map(|(i, (s, t))| (i, s, t)).collect();
                // Heaviest first; ties: first touched first (a stable sort over the user's
                // items in the order of their first touch: what reproduces the yardstick's
                // no-decay figure; see the report).
                mine.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
                let own: IdxSet<ItemIdx> = mine.iter().map(|x| x.0).collect();
                let popular = self.popularity[v].as_ref().expect("reference state").iter().filter(|i| !own.contains(i));
                mine.iter().map(|x| x.0).chain(popular).take(RANKED_ITEMS).collect()
            }
            Method::Popularity { decay } => self
                .stats
                .view(now, decay)
                .trending(Segment::Global, RANKED_ITEMS)
                .into_iter()
                .map(|(i, _)| i)
                .collect(),
        };
        let mut cats: Vec<CatIdx> = Vec::with_capacity(MAX_K);
        for c in ranked.iter().filter_map(|&i| self.catalog.leaf_category(i)).chain(pad.iter().copied()) {
            if cats.len() >= MAX_K {
                break;
            }
            if !cats.contains(&c) {
                cats.push(c);
            }
        }
        let mut items = ranked;
        items.truncate(MAX_K);
        (items, cats)
    }
}

/// 1-based position of `target` in `list` (0 when absent or unknown).
fn position<T: PartialEq + Copy>(list: &[T], target: Option<T>) -> u8 {
    target.and_then(|t| list.iter().position(|&x| x == t)).map_or(0, |p| (p + 1) as u8)
}

/// Runs `variants` over `log` on `threads` threads (each replays the log for its share of the
/// variants). Returns one accumulator per variant, in order.
fn replay(log: &[LogEvent], tuning: &Tuning, variants: &[Variant], threads: usize, capture: bool, progress: &ProgressBar) -> Vec<Acc> {
    let prepared = prepare(log);
    let threads = threads.clamp(1, variants.len().max(1));
    // Longest job first onto the least loaded thread.
    let mut order: Vec<usize> = (0..variants.len()).collect();
    order.sort_by_key(|&i| Reverse(variants[i].cost()));
    let mut shares: Vec<(u32, Vec<usize>)> = vec![(0, Vec::new()); threads];
    for i in order {
        let s = shares.iter_mut().min_by_key(|s| s.0).expect("at least one thread");
        s.0 += variants[i].cost();
        s.1.push(i);
    }
    let mut out: Vec<Option<Acc>> = vec![None; variants.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .iter()
            .map(|(_, idx)| {
                let prepared = &prepared;
                scope.spawn(move || {
                    let mine: Vec<&Variant> = idx.iter().map(|&i| &variants[i]).collect();
                    Replayer::new(tuning, mine, prepared.users, capture).run(prepared, progress)
                })
            })
            .collect();
        for (h, (_, idx)) in handles.into_iter().zip(&shares) {
            let accs = h.join().expect("a replay thread panicked");
            for (acc, &i) in accs.into_iter().zip(idx) {
                out[i] = Some(acc);
            }
        }
    });
    out.into_iter().map(|a| a.expect("every variant replayed")).collect()
}

// ---------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------

/// Ranking quality over all targets, one value per K in [`KS`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    pub hr: [f64; 3],
    pub ndcg: [f64; 3],
    pub mrr: [f64; 3],
}

impl Metrics {
    /// From 1-based ranks (0: not in the list); one relevant item per target.
    fn from_ranks(ranks: &[u8]) -> Metrics {
        let mut m = Metrics::default();
        if ranks.is_empty() {
            return m;
        }
        for &r in ranks.iter().filter(|&&r| r > 0) {
            for (k, &cut) in KS.iter().enumerate() {
                if usize::from(r) <= cut {
                    m.hr[k] += 1.0;
                    m.ndcg[k] += 1.0 / (f64::from(r) + 1.0).log2();
                    m.mrr[k] += 1.0 / f64::from(r);
                }
            }
        }
        let n = ranks.len() as f64;
        for k in 0..KS.len() {
            m.hr[k] /= n;
            m.ndcg[k] /= n;
            m.mrr[k] /= n;
        }
        m
    }

    fn at(values: &[f64; 3], k: usize) -> f64 {
        KS.iter().position(|&x| x == k).map_or(f64::NAN, |i| values[i])
    }

    pub fn hr_at(&self, k: usize) -> f64 {
        Self::at(&self.hr, k)
    }

    pub fn ndcg_at(&self, k: usize) -> f64 {
        Self::at(&self.ndcg, k)
    }

    pub fn mrr_at(&self, k: usize) -> f64 {
        Self::at(&self.mrr, k)
    }
}

/// One row of the report.
#[derive(Clone, Debug)]
pub struct VariantResult {
    pub name: String,
    pub group: Group,
    pub curve: Option<(Curve, f64)>,
    /// Is the target item in the top K.
    pub item: Metrics,
    /// Is the target's category in the top K categories.
    pub category: Metrics,
    /// Item level, targets before the held-out period (where constants were tuned).
    pub early: Metrics,
    /// Item level, targets in the held-out period (the last three local days).
    pub late: Metrics,
    /// Category level, targets in the held-out period.
    pub late_category: Metrics,
    /// Distinct items shown in some top 10 / items in the log.
    pub coverage: f64,
    /// Mean over top-10 lists of distinct leaf categories / list length.
    pub diversity: f64,
}

/// Facts about the log that bound what can be measured.
#[derive(Clone, Debug, Default)]
pub struct LogFacts {
    pub rows: usize,
    pub users: usize,
    pub items: usize,
    pub categories: usize,
    pub first_ts: i64,
    pub last_ts: i64,
    pub targets: usize,
    pub carts: usize,
    pub buys: usize,
    /// Targets whose item the same user touched before.
    pub repeat_item: usize,
    /// Targets whose item appeared in the log before (any user): the ceiling of any
    /// recommender that only knows items it has seen.
    pub known_item: usize,
    /// Targets whose category the same user touched before.
    pub repeat_category: usize,
    /// Targets whose item the user bought before.
    pub rebought: usize,
}

fn log_facts(log: &[LogEvent]) -> LogFacts {
    let prepared = prepare(log);
    let mut f = LogFacts { rows: log.len(), users: prepared.users, ..Default::default() };
    let mut items: HashSet<&str> = HashSet::new();
    let mut cats: HashSet<&str> = HashSet::new();
    let mut touched: HashSet<(u32, &str)> = HashSet::new();
    let mut touched_cat: HashSet<(u32, &str)> = HashSet::new();
    let mut bought: HashSet<(u32, &str)> = HashSet::new();
    f.first_ts = prepared.events.first().map_or(0, |e| e.ts);
    f.last_ts = prepared.events.last().map_or(0, |e| e.ts);
    for (e, &u) in prepared.events.iter().zip(&prepared.user_of) {
        if e.behaviour.is_target() {
            f.targets += 1;
            f.carts += usize::from(e.behaviour == Behaviour::Cart);
            f.buys += usize::from(e.behaviour == Behaviour::Buy);
            f.repeat_item += usize::from(touched.contains(&(u, e.item.as_str())));
            f.known_item += usize::from(items.contains(e.item.as_str()));
            f.repeat_category += usize::from(touched_cat.contains(&(u, e.category.as_str())));
            f.rebought += usize::from(bought.contains(&(u, e.item.as_str())));
        }
        items.insert(&e.item);
        cats.insert(&e.category);
        touched.insert((u, &e.item));
        touched_cat.insert((u, &e.category));
        if e.behaviour == Behaviour::Buy {
            bought.insert((u, &e.item));
        }
    }
    f.items = items.len();
    f.categories = cats.len();
    f
}

/// Start of the held-out period: local (UTC+8) midnight two days before the last event's day,
/// so the last three local days are held out (2017-12-01 to 12-03 for the Taobao sample).
pub fn holdout_from(log: &[LogEvent]) -> i64 {
    holdout_from_ts(log.iter().map(|e| e.ts).max().unwrap_or(0))
}

/// [`holdout_from`] given the last event's time.
fn holdout_from_ts(last: i64) -> i64 {
    let offset = i64::from(LOCAL_UTC_OFFSET_SECS);
    (last + offset).div_euclid(86_400) * 86_400 - offset - 2 * 86_400
}

/// Replays `log` for `variants` on `threads` threads and measures them. `progress` advances
/// by one per variant and target.
pub fn evaluate(
    log: &[LogEvent],
    tuning: &Tuning,
    variants: &[Variant],
    threads: usize,
    progress: &ProgressBar,
) -> Vec<VariantResult> {
    let items = log.iter().map(|e| e.item.as_str()).collect::<HashSet<_>>().len();
    let split = holdout_from(log);
    let late: Vec<bool> = prepare(log).events.iter().filter(|e| e.behaviour.is_target()).map(|e| e.ts >= split).collect();
    let accs = replay(log, tuning, variants, threads, false, progress);
    let part = |ranks: &[u8], want_late: bool| -> Vec<u8> {
        ranks.iter().zip(&late).filter(|(_, l)| **l == want_late).map(|(r, _)| *r).collect()
    };
    variants
        .iter()
        .zip(&accs)
        .map(|(v, a)| VariantResult {
            name: v.name.clone(),
            group: v.group,
            curve: v.curve,
            item: Metrics::from_ranks(&a.item_rank),
            category: Metrics::from_ranks(&a.cat_rank),
            early: Metrics::from_ranks(&part(&a.item_rank, false)),
            late: Metrics::from_ranks(&part(&a.item_rank, true)),
            late_category: Metrics::from_ranks(&part(&a.cat_rank, true)),
            coverage: a.covered.len() as f64 / items.max(1) as f64,
            diversity: if a.lists == 0 { 0.0 } else { a.diversity_sum / a.lists as f64 },
        })
        .collect()
}

/// What `kairos eval` measured.
#[derive(Clone, Debug)]
pub struct EvalReport {
    pub dataset: PathBuf,
    pub facts: LogFacts,
    pub results: Vec<VariantResult>,
    /// The tuning evaluated as "default".
    pub tuning: Tuning,
    pub threads: usize,
    pub runtime_secs: f64,
    pub machine: String,
}

impl EvalReport {
    /// The row with this name.
    pub fn row(&self, name: &str) -> Option<&VariantResult> {
        self.results.iter().find(|r| r.name == name)
    }

    /// The headline rows as a plain-text table (for the terminal).
    pub fn headline(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<46} {:>7} {:>8} {:>7} | {:>9} {:>10}",
            "", "HR@10", "NDCG@10", "MRR@20", "cat HR@10", "cat NDCG@10"
        );
        for r in self.results.iter().filter(|r| r.group == Group::Headline) {
            let _ = writeln!(
                s,
                "{:<46} {:>7.3} {:>8.3} {:>7.3} | {:>9.3} {:>10.3}",
                r.name,
                r.item.hr_at(10),
                r.item.ndcg_at(10),
                r.item.mrr_at(20),
                r.category.hr_at(10),
                r.category.ndcg_at(10)
            );
        }
        let _ = write!(
            s,
            "{} targets, {} variants, {:.0} s on {} threads",
            self.facts.targets,
            self.results.len(),
            self.runtime_secs,
            self.threads
        );
        s
    }
}

/// Loads the tuning of `default.toml` in `config_dir` (that file alone: no local or
/// environment overrides, so the report describes the shipped defaults).
pub fn load_default_tuning(config_dir: &Path) -> anyhow::Result<Tuning> {
    let path = config_dir.join("default.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let settings = Settings::from_toml(&text).with_context(|| format!("invalid {}", path.display()))?;
    Ok(settings.tuning)
}

/// `kairos eval`: replays the log, writes the report and the plot, returns what it measured.
pub fn run(opts: &EvalOptions) -> anyhow::Result<EvalReport> {
    let started = Instant::now();
    let tuning = load_default_tuning(&opts.config_dir)?;
    for b in [Behaviour::Pv, Behaviour::Fav, Behaviour::Cart, Behaviour::Buy] {
        if !tuning.kinds.contains_key(b.kind()) {
            bail!("tuning.kinds.{} is not configured (the log's {:?} events map to it)", b.kind(), b);
        }
    }
    let log = read_log(&opts.dataset)?;
    if log.is_empty() {
        bail!("{} holds no events", opts.dataset.display());
    }
    let facts = log_facts(&log);
    let variants = variants(&tuning);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let progress = ProgressBar::new((facts.targets * variants.len()) as u64).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {percent:>3}% {human_pos}/{human_len} queries, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let results = evaluate(&log, &tuning, &variants, threads, &progress);
    progress.finish_and_clear();
    let report = EvalReport {
        dataset: opts.dataset.clone(),
        results,
        facts,
        tuning,
        threads,
        runtime_secs: started.elapsed().as_secs_f64(),
        machine: machine(),
    };
    report::write(&report, &opts.out, &opts.plot)?;
    Ok(report)
}

/// CPU model and core count, for the report.
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cores} cores of {model}, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning() -> Tuning {
        load_default_tuning(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config")).expect("the shipped config loads")
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
        replay(&log(rows), &t, variants, 2, true, &ProgressBar::hidden()).into_iter().map(|a| a.captured).collect()
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
}
