//! Training examples from a log: the log is replayed in time order into fresh statistics,
//! catalogue and histories, and at every target event (`model.target_kinds`) the candidates
//! serving would have produced at that moment are taken, with their feature rows, before
//! the event itself is observed. The same `Scorer::candidates` as serving: no train/serve skew.

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset, Utc};
use rand::rngs::SmallRng;
use rand::seq::index::sample;
use rand::SeedableRng;

use super::Setup;
use crate::domain::{Event, Item};
use crate::rank::catalog::{Catalog, StrMap};
use crate::rank::context::{RequestContext, event_keys};
use crate::rank::decay::age_secs;
use crate::rank::features;
use crate::rank::profile::{InterestVector, ProfileParams};
use crate::rank::scoring::{Request, Scorer, SeqQuery};
use crate::rank::sequence::Moment;
use crate::rank::stats::{Observation, Stats};

/// One target event and the candidates of that moment.
#[derive(Clone, Debug)]
pub struct Example {
    pub at: DateTime<Utc>,
    /// Feature rows, row-major: every candidate for a held-out example, for a training one the
    /// positive and the sampled negatives. Empty when the positive was not a candidate.
    pub rows: Vec<f32>,
    /// The positive's row, when the target item was among the candidates.
    pub positive: Option<usize>,
    /// In the held-out period.
    pub holdout: bool,
}

/// The examples of a window.
#[derive(Clone, Debug, Default)]
pub struct Examples {
    /// Feature names, in row order.
    pub names: Vec<String>,
    pub width: usize,
    pub list: Vec<Example>,
}

impl Examples {
    /// Examples whose positive is among the candidates (the ones a model can learn from).
    pub fn learnable(&self) -> impl Iterator<Item = &Example> {
        self.list.iter().filter(|e| e.positive.is_some())
    }
}

/// The replayed state: what serving would know at the current event.
struct Replay<'a> {
    setup: &'a Setup<'a>,
    catalog: Catalog,
    stats: Stats,
    histories: StrMap<String, Vec<Event>>,
    horizon_secs: f64,
    /// Items the sequence model adds to the candidates (`tuning.sequence.candidates`).
    sequence_pool: usize,
}

impl Replay<'_> {
    /// The candidates of `e`'s user at `e`'s time, in `e`'s context, and the target's place.
    fn candidates(&self, e: &Event, zone: FixedOffset, zone_of: &dyn Fn(&Event) -> i32) -> (features::Table, Option<usize>) {
        let history = self.histories.get(&e.user_id).map_or(&[][..], Vec::as_slice);
        let params = ProfileParams { decay: self.setup.decay, kind_weights: self.setup.kinds, horizon_secs: self.horizon_secs };
        let profile = InterestVector::build(history, &self.catalog, &params, e.ts);
        let context = RequestContext::at(&e.ts.with_timezone(&zone), e.context.device, e.context.country.clone());
        let none = HashSet::new();
        let req = Request { n: 0, context, exclude: &none };
        let scorer = Scorer { catalog: &self.catalog, stats: &self.stats, kinds: self.setup.kinds, cfg: self.setup.scoring, model: None };
        let table = match self.setup.sequence {
            None => scorer.candidates(&req, &profile, history, e.ts, true).table,
            Some(model) => {
                let state = model.encode(history, &self.catalog, zone_of).map(|enc| model.state(&enc, e.ts, Moment::at(e.ts, zone_of(e), e.context.device)));
                let q = state.as_deref().map(|state| SeqQuery { model, state, pool: self.sequence_pool });
                scorer.candidates_with(&req, &profile, history, e.ts, true, q.as_ref(), true).table
            }
        };
        let target = e.item_id.as_deref().and_then(|id| self.catalog.idx(id));
        let positive = target.and_then(|t| table.items.binary_search(&t).ok());
        (table, positive)
    }

    fn observe(&mut self, e: &Event, item_of: &dyn Fn(&str) -> Option<Item>, zone: FixedOffset) {
        let Some(id) = e.item_id.as_deref() else { return };
        let idx = match self.catalog.idx(id).filter(|&i| self.catalog.item(i).is_some()) {
            Some(i) => i,
            None => match item_of(id) {
                Some(item) => self.catalog.upsert(Item { available: true, ..item }),
                None => self.catalog.intern(id),
            },
        };
        let keys = event_keys(e.ts, &zone, &e.context);
        self.stats.observe(&Observation {
            user: &e.user_id,
            item: idx,
            categories: self.catalog.categories(idx),
            brand: self.catalog.brand(idx),
            weight: self.setup.kinds.weight(&e.kind),
            ts: e.ts,
            context: &keys,
        });
        let history = self.histories.entry(e.user_id.clone()).or_default();
        // Only the horizon enters a profile: drop the rest now and then.
        if history.first().is_some_and(|f| age_secs(e.ts, f.ts) > 2.0 * self.horizon_secs) {
            history.retain(|x| age_secs(e.ts, x.ts) <= self.horizon_secs);
        }
        history.push(e.clone());
    }
}

/// Replays `events` (any order; ties keep their order) up to `to` and takes an example at
/// every target event from `from` on; those from `holdout_from` on are held out.
pub fn build(
    events: &[Event],
    item_of: &dyn Fn(&str) -> Option<Item>,
    zone: &dyn Fn(&Event) -> i32,
    setup: &Setup<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    holdout_from: DateTime<Utc>,
) -> Examples {
    let mut order: Vec<&Event> = events.iter().filter(|e| e.ts < to).collect();
    order.sort_by_key(|e| e.ts);
    let names = features::names_with(setup.kinds, setup.sequence.is_some());
    let mut out = Examples { width: names.len(), names, list: Vec::new() };
    let mut replay = Replay {
        setup,
        catalog: Catalog::new(),
        stats: Stats::new(setup.scoring.stats.clone()),
        histories: StrMap::default(),
        horizon_secs: setup.scoring.horizon_hours * 3600.0,
        sequence_pool: setup.sequence_pool,
    };
    let mut rng = SmallRng::seed_from_u64(setup.model.seed);
    for e in order {
        let offset = FixedOffset::east_opt(zone(e)).unwrap_or(FixedOffset::east_opt(0).expect("UTC"));
        if e.ts >= from && e.item_id.is_some() && setup.model.target_kinds.contains(&e.kind) {
            let (table, positive) = replay.candidates(e, offset, zone);
            let holdout = e.ts >= holdout_from;
            let (rows, positive) = match positive {
                None => (Vec::new(), None),
                Some(p) if holdout => (table.rows, Some(p)),
                Some(p) => sampled(&table, p, setup.model.max_negatives, &mut rng),
            };
            out.list.push(Example { at: e.ts, rows, positive, holdout });
        }
        replay.observe(e, item_of, offset);
    }
    out
}

/// The positive's row first, then up to `max` negatives: half the strongest by the hand-set
/// blend (the ones the model must learn to push down), half drawn from the others.
fn sampled(table: &features::Table, positive: usize, max: usize, rng: &mut SmallRng) -> (Vec<f32>, Option<usize>) {
    let mut others: Vec<usize> = (0..table.items.len()).filter(|&n| n != positive).collect();
    let mut keep = vec![positive];
    if others.len() <= max {
        keep.extend(others);
    } else {
        let hard = max / 2;
        others.select_nth_unstable_by(hard, |&a, &b| table.handset[b].total_cmp(&table.handset[a]).then(a.cmp(&b)));
        keep.extend_from_slice(&others[..hard]);
        let rest = &others[hard..];
        keep.extend(sample(rng, rest.len(), max - hard).into_iter().map(|i| rest[i]));
    }
    let rows = keep.iter().flat_map(|&n| table.row(n).iter().copied()).collect();
    (rows, Some(0))
}
