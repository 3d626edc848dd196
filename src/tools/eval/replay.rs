//! The replay: every variant answers each question before its event is observed.

use super::*;

// ---------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------

/// What one variant produced over the replay.
#[derive(Clone, Debug, Default)]
pub(super) struct Acc {
    /// Per target: 1-based rank of the target item in the top 20, 0 if absent.
    pub(super) item_rank: Vec<u8>,
    /// Per target: 1-based rank of the target's category in the top 20 categories, 0 if absent.
    pub(super) cat_rank: Vec<u8>,
    /// Items shown in some top 10.
    pub(super) covered: IdxSet<ItemIdx>,
    /// Σ over lists of (distinct leaf categories / length), and the number of lists.
    pub(super) diversity_sum: f64,
    pub(super) lists: usize,
    /// Per target, the top 10 item ids (tests only).
    pub(super) captured: Vec<Vec<String>>,
}

/// Exactly decayed popularity for the reference: `Σ w · 2^((ts − base)/h)` per item, kept in
/// an ordered set so the best items are read without a scan. Values only grow (a common factor
/// `2^(−(now − base)/h)` turns them into decayed values), so ordering by them is ordering by
/// decayed popularity at any `now` after the last event.
pub(super) struct ExactPopularity {
    half_life_secs: Option<f64>,
    base: Option<i64>,
    value: Vec<f64>,
    order: BTreeSet<(Reverse<u64>, u32)>,
}

impl ExactPopularity {
    pub(super) fn new(decay: &Decay) -> Self {
        let half_life_secs = match *decay {
            Decay::Exponential { half_life_hours } => Some(half_life_hours * 3600.0),
            Decay::None => None,
            _ => panic!("the reference supports exponential or no decay, not {}", decay.label()),
        };
        ExactPopularity { half_life_secs, base: None, value: Vec::new(), order: BTreeSet::new() }
    }

    pub(super) fn add(&mut self, item: ItemIdx, w: f64, ts: i64) {
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
    pub(super) fn iter(&self) -> impl Iterator<Item = ItemIdx> + '_ {
        self.order.iter().map(|&(_, i)| ItemIdx(i))
    }
}

/// The replay state of one thread, for its share of the variants.
pub(super) struct Replayer<'a> {
    tuning: &'a Tuning,
    /// The models the replay's retraining deployed, for learned variants.
    schedule: &'a Schedule,
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
    pub(super) fn new(tuning: &'a Tuning, schedule: &'a Schedule, variants: Vec<&'a Variant>, users: usize, capture: bool) -> Self {
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
            schedule,
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

    pub(super) fn run(mut self, prepared: &Prepared<'_>, progress: &ProgressBar) -> Vec<Acc> {
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
    pub(super) fn observe(&mut self, n: usize, e: &LogEvent, user: usize) {
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
            weight: self.kind_weights.weight(kind),
            ts,
            context: &keys,
        });
        self.histories[user].push(e.to_event(n));
        let w = e.behaviour.reference_weight();
        self.own[user].push((idx, w, e.ts));
        for p in self.popularity.iter_mut().flatten() {
            p.add(idx, w, e.ts);
        }
    }

    /// Step 1: every variant answers, then the target is revealed.
    pub(super) fn query_all(&mut self, e: &LogEvent, user: usize) {
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
    pub(super) fn query(&self, v: usize, user: usize, now: DateTime<Utc>, pad: &[CatIdx]) -> (Vec<ItemIdx>, Vec<CatIdx>) {
        let ranked: Vec<ItemIdx> = match &self.variants[v].method {
            Method::Kairos { decay, scoring, learned, sequence } => {
                let history = &self.histories[user];
                let params =
                    ProfileParams { decay, kind_weights: &self.kind_weights, horizon_secs: scoring.horizon_hours * 3600.0 };
                let profile = InterestVector::build(history, &self.catalog, &params, now);
                let context = RequestContext::at(&now.with_timezone(&self.zone), None, None);
                let request = Request { n: RANKED_ITEMS, context, exclude: &self.no_exclusions };
                let seq = &self.schedule.sequence;
                let model = match (*learned, *sequence) {
                    (false, _) => None,
                    (true, false) => self.schedule.at(now),
                    (true, true) => seq.ranker_at(now),
                };
                let scorer = Scorer { catalog: &self.catalog, stats: &self.stats, kinds: &self.kind_weights, cfg: scoring, model };
                let state = if *sequence { self.sequence_state(user, now) } else { None };
                let q = state.as_ref().map(|(m, s)| SeqQuery { model: m, state: s, pool: self.tuning.sequence.candidates });
                scorer.rank_with(&request, &profile, history, now, q.as_ref())
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
            Method::Knn { sources } => self.knn(user, now, *sources),
            Method::Sequence => {
                let mut out: Vec<ItemIdx> = match self.sequence_state(user, now) {
                    Some((m, state)) => m.nearest(&state, RANKED_ITEMS).into_iter().filter_map(|(id, _)| self.catalog.idx(id)).collect(),
                    None => Vec::new(),
                };
                let chosen: IdxSet<ItemIdx> = out.iter().copied().collect();
                let popular = self.stats.view(now, &Decay::None).trending(Segment::Global, RANKED_ITEMS * 2);
                out.extend(popular.into_iter().map(|(i, _)| i).filter(|i| !chosen.contains(i)));
                out.truncate(RANKED_ITEMS);
                out
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

impl Replayer<'_> {
    /// The sequence model in force at `now` and the user's state for a question then.
    fn sequence_state(&self, user: usize, now: DateTime<Utc>) -> Option<(&crate::rank::sequence::SequenceModel, Vec<f32>)> {
        let model = self.schedule.sequence.model_at(now)?;
        let zone = |_: &Event| LOCAL_UTC_OFFSET_SECS;
        let enc = model.encode(&self.histories[user], &self.catalog, &zone)?;
        Some((model, model.state(&enc, now, crate::rank::sequence::Moment::at(now, LOCAL_UTC_OFFSET_SECS, None))))
    }

    /// Item-kNN alone: the sum of similarities to the user's last `sources` distinct items,
    /// their own items excluded, then items by popularity.
    fn knn(&self, user: usize, now: DateTime<Utc>, sources: usize) -> Vec<ItemIdx> {
        let own: IdxSet<ItemIdx> = self.own[user].iter().map(|x| x.0).collect();
        let mut last: Vec<ItemIdx> = Vec::with_capacity(sources);
        for &(item, _, _) in self.own[user].iter().rev() {
            if last.len() == sources {
                break;
            }
            if !last.contains(&item) {
                last.push(item);
            }
        }
        let view = self.stats.view(now, &self.tuning.scoring.trending_decay);
        let mut scores: IdxMap<ItemIdx, f64> = IdxMap::default();
        for &src in &last {
            for (item, sim) in view.similar(src, usize::MAX) {
                if !own.contains(&item) {
                    *scores.entry(item).or_default() += sim;
                }
            }
        }
        let mut ranked: Vec<(ItemIdx, f64)> = scores.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut out: Vec<ItemIdx> = ranked.into_iter().map(|(i, _)| i).take(RANKED_ITEMS).collect();
        let chosen: IdxSet<ItemIdx> = out.iter().copied().collect();
        let popular = self.stats.view(now, &Decay::None).trending(Segment::Global, RANKED_ITEMS * 2);
        out.extend(popular.into_iter().map(|(i, _)| i).filter(|i| !own.contains(i) && !chosen.contains(i)));
        out.truncate(RANKED_ITEMS);
        out
    }
}

/// 1-based position of `target` in `list` (0 when absent or unknown).
pub(super) fn position<T: PartialEq + Copy>(list: &[T], target: Option<T>) -> u8 {
    target.and_then(|t| list.iter().position(|&x| x == t)).map_or(0, |p| (p + 1) as u8)
}

/// Runs `variants` over `log` on `threads` threads (each replays the log for its share of the
/// variants). Returns one accumulator per variant, in order.
pub(super) fn replay(prepared: &Prepared<'_>, tuning: &Tuning, schedule: &Schedule, variants: &[Variant], threads: usize, capture: bool, progress: &ProgressBar) -> Vec<Acc> {
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
                scope.spawn(move || {
                    let mine: Vec<&Variant> = idx.iter().map(|&i| &variants[i]).collect();
                    Replayer::new(tuning, schedule, mine, prepared.users, capture).run(prepared, progress)
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

