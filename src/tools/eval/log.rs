//! The log: Taobao UserBehavior rows, read, parsed, sorted, and the facts that bound what
//! it can show.

use super::*;

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

    /// As the log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Pv => "pv",
            Behaviour::Fav => "fav",
            Behaviour::Cart => "cart",
            Behaviour::Buy => "buy",
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
    let text = crate::tools::read_text(&file)?;
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

/// The log, sorted, with dense user indices.
pub(super) struct Prepared<'a> {
    pub(super) events: Vec<&'a LogEvent>,
    pub(super) user_of: Vec<u32>,
    pub(super) users: usize,
    /// The same events as the service stores them, in the same order.
    pub(super) kairos: Vec<Event>,
    /// Each item's catalogue data: its category in the log (the first it appears with).
    pub(super) items: StrMap<String, Item>,
}

impl LogEvent {
    /// The event as the service stores it (`n` makes its id).
    pub fn to_event(&self, n: usize) -> Event {
        Event {
            event_id: uuid::Uuid::from_u128(n as u128),
            user_id: self.user.clone(),
            item_id: Some(self.item.clone()),
            kind: self.behaviour.kind().to_owned(),
            ts: utc(self.ts),
            context: EventContext::default(),
            props: EventProps::default(),
        }
    }
}

pub(super) fn prepare(log: &[LogEvent]) -> Prepared<'_> {
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
    let kairos = events.iter().enumerate().map(|(n, e)| e.to_event(n)).collect();
    let mut items: StrMap<String, Item> = StrMap::default();
    for e in &events {
        items.entry(e.item.clone()).or_insert_with(|| Item::new(e.item.clone(), vec![e.category.clone()]));
    }
    Prepared { events, user_of, users: ids.len(), kairos, items }
}

pub(super) fn local_zone() -> FixedOffset {
    FixedOffset::east_opt(LOCAL_UTC_OFFSET_SECS).expect("UTC+8 is a valid offset")
}

pub(super) fn utc(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
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
    /// Per target, in replay order: the user had touched its item before.
    pub repeat_flags: Vec<bool>,
}

pub(super) fn log_facts(log: &[LogEvent]) -> LogFacts {
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
            let repeat = touched.contains(&(u, e.item.as_str()));
            f.repeat_item += usize::from(repeat);
            f.repeat_flags.push(repeat);
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
pub(super) fn holdout_from_ts(last: i64) -> i64 {
    let offset = i64::from(LOCAL_UTC_OFFSET_SECS);
    (last + offset).div_euclid(86_400) * 86_400 - offset - 2 * 86_400
}
