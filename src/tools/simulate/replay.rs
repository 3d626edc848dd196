//! The log, and the replay of what the service would know at each instant.

use super::*;

// ------------------------------------------------------------------------------------------
// The log
// ------------------------------------------------------------------------------------------

/// One row of the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogRow {
    /// Index into [`Dataset::user_ids`].
    pub user: u32,
    pub item: u64,
    pub category: u64,
    pub kind: &'static str,
    pub ts: i64,
}

/// The log in time order (ties in file order) and its users in order of first appearance.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub user_ids: Vec<String>,
    pub rows: Vec<LogRow>,
}

impl Dataset {
    /// Reads the log with [`crate::tools::eval::read_log`] (a folder holding the sample, or a `.csv`
    /// or `.csv.gz` file).
    pub fn read(path: &Path) -> anyhow::Result<Dataset> {
        Self::from_log(crate::tools::eval::read_log(path)?)
    }

    /// Parses `user_id,item_id,category_id,behavior_type,timestamp` lines (no header).
    pub fn parse(reader: impl Read) -> anyhow::Result<Dataset> {
        let mut text = String::new();
        BufReader::new(reader).read_to_string(&mut text)?;
        Self::from_log(crate::tools::eval::parse_log(&text)?)
    }

    /// Numeric ids, users indexed in order of first appearance, rows in time order (stable:
    /// ties keep file order).
    pub(super) fn from_log(log: Vec<crate::tools::eval::LogEvent>) -> anyhow::Result<Dataset> {
        let mut users: HashMap<String, u32> = HashMap::new();
        let mut d = Dataset::default();
        for (n, e) in log.into_iter().enumerate() {
            let num = |s: &str, what: &str| s.parse::<u64>().with_context(|| format!("row {}: bad {what} {s:?}", n + 1));
            let (item, category) = (num(&e.item, "item id")?, num(&e.category, "category id")?);
            let next = u32::try_from(users.len())?;
            let user = *users.entry(e.user.clone()).or_insert_with(|| {
                d.user_ids.push(e.user);
                next
            });
            d.rows.push(LogRow { user, item, category, kind: e.behaviour.kind(), ts: e.ts });
        }
        d.rows.sort_by_key(|r| r.ts);
        Ok(d)
    }
}

// ------------------------------------------------------------------------------------------
// The replay: what the service would know at each instant
// ------------------------------------------------------------------------------------------

pub(super) struct Replay<'a> {
    pub(super) data: &'a Dataset,
    pub(super) tuning: &'a Tuning,
    pub(super) tz: Tz,
    pub(super) catalog: Catalog,
    pub(super) stats: Stats,
    pub(super) population: ActivityHistogram,
    /// Each user's events fed so far, oldest first.
    pub(super) histories: Vec<Vec<Event>>,
    /// Rows fed so far.
    pub(super) fed: usize,
}

impl<'a> Replay<'a> {
    pub(super) fn new(data: &'a Dataset, tuning: &'a Tuning, tz: Tz) -> Self {
        Replay {
            data,
            tuning,
            tz,
            catalog: Catalog::new(),
            stats: Stats::new(tuning.scoring.stats.clone()),
            population: ActivityHistogram::new(),
            histories: vec![Vec::new(); data.user_ids.len()],
            fed: 0,
        }
    }

    /// Feeds every row with `ts <= t` (the service's view at `t`), the way `Engine::refresh`
    /// folds the log: catalogue (an item is known from its first event), population activity,
    /// statistics, and the user's history.
    pub(super) fn feed_until(&mut self, t: DateTime<Utc>) {
        let until = t.timestamp();
        while let Some(row) = self.data.rows.get(self.fed) {
            if row.ts > until {
                break;
            }
            self.fed += 1;
            let item_id = row.item.to_string();
            let ts = Utc.timestamp_opt(row.ts, 0).single().unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
            if self.catalog.get(&item_id).is_none() {
                self.catalog.upsert(Item::new(item_id.clone(), vec![row.category.to_string()]));
            }
            let event = Event {
                event_id: uuid::Uuid::from_u128(self.fed as u128),
                user_id: self.data.user_ids[row.user as usize].clone(),
                item_id: Some(item_id.clone()),
                kind: row.kind.to_string(),
                ts,
                context: EventContext { timezone: Some(self.tz.name().to_string()), ..EventContext::default() },
                props: EventProps::default(),
            };
            let weight = self.tuning.kinds.get(row.kind).map_or(0.0, |k| k.weight);
            self.population.observe(ts, self.tz, 1.0, &self.tuning.frequency);
            let item = self.catalog.intern(&item_id);
            let keys = event_keys(ts, &self.tz, &event.context);
            self.stats.observe(&Observation {
                user: &event.user_id,
                item,
                categories: self.catalog.categories(item),
                brand: self.catalog.brand(item),
                weight,
                ts,
                context: &keys,
            });
            self.histories[row.user as usize].push(event);
        }
    }
}

/// The item scoring picked for a push.
#[derive(Debug, Clone)]
pub(super) struct Pick {
    pub(super) item_id: String,
    pub(super) item: u64,
    pub(super) category: u64,
    pub(super) score: f64,
}

/// The service's item choice (`Engine::push_candidate`: profile, then `rank` with n = 1 in
/// the context of the user's local time, recently pushed items excluded), memoised per
/// (user, instant, blocked items) while no new log event has been fed.
pub(super) struct Ranker<'a> {
    pub(super) tuning: &'a Tuning,
    pub(super) weights: crate::rank::profile::KindWeights,
    pub(super) memo: HashMap<(usize, i64, u64), Option<Pick>>,
    pub(super) levels: HashMap<(usize, i64), f64>,
    pub(super) epoch: usize,
    pub(super) calls: u64,
    pub(super) hits: u64,
}

impl<'a> Ranker<'a> {
    pub(super) fn new(tuning: &'a Tuning) -> Self {
        Ranker { tuning, weights: tuning.kind_weights(), memo: HashMap::new(), levels: HashMap::new(), epoch: 0, calls: 0, hits: 0 }
    }

    pub(super) fn sync(&mut self, replay: &Replay<'_>) {
        if replay.fed != self.epoch {
            self.memo.clear();
            self.levels.clear();
            self.epoch = replay.fed;
        }
    }

    pub(super) fn profile(&self, replay: &Replay<'_>, user: usize, now: DateTime<Utc>) -> InterestVector {
        let params = ProfileParams {
            decay: &self.tuning.decay,
            kind_weights: &self.weights,
            horizon_secs: self.tuning.scoring.horizon_hours * 3600.0,
        };
        InterestVector::build(&replay.histories[user], &replay.catalog, &params, now)
    }

    /// The user's interest level (what the scheduler creates a new state with).
    pub(super) fn level(&mut self, replay: &Replay<'_>, user: usize, now: DateTime<Utc>) -> f64 {
        self.sync(replay);
        let key = (user, now.timestamp_millis());
        if let Some(l) = self.levels.get(&key) {
            return *l;
        }
        let l = self.profile(replay, user, now).level();
        self.levels.insert(key, l);
        l
    }

    pub(super) fn best(&mut self, replay: &Replay<'_>, user: usize, now: DateTime<Utc>, blocked: &[String]) -> Option<Pick> {
        self.sync(replay);
        let mut sorted: Vec<&str> = blocked.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let key = (user, now.timestamp_millis(), fnv1a64(sorted.join("\u{1f}").as_bytes()));
        self.calls += 1;
        if let Some(p) = self.memo.get(&key) {
            self.hits += 1;
            return p.clone();
        }
        let history = &replay.histories[user];
        let profile = self.profile(replay, user, now);
        let exclude: HashSet<String> = blocked.iter().cloned().collect();
        let context = RequestContext::at(&now.with_timezone(&replay.tz), None, None);
        let request = ScoringRequest { n: 1, context, exclude: &exclude };
        let scorer = Scorer { catalog: &replay.catalog, stats: &replay.stats, kinds: &self.weights, cfg: &self.tuning.scoring, model: None };
        let ranking = scorer.rank(&request, &profile, history, now);
        let pick = ranking.items.into_iter().next().and_then(|s| {
            let category = replay.catalog.get(&s.item_id).and_then(|i| i.category.first()).and_then(|c| c.parse().ok())?;
            Some(Pick { item: s.item_id.parse().ok()?, item_id: s.item_id, category, score: s.score })
        });
        self.memo.insert(key, pick.clone());
        pick
    }
}
