//! Item-kNN: how similar two items are, by the users who touched both.
//!
//! Each user's `knn_recent_items` most recent distinct items are remembered. When the user
//! touches an item that is not among them, the item gains one user, and every remembered item
//! forms a pair with it; touching a remembered item again only refreshes it. The similarity of
//! two items is the cosine over users, `sim(a, b) = n(a, b) / √(n(a) · n(b))`, with every count
//! kept per day and decayed at query time like the other statistics: a decay constant changed
//! in config applies to the next answer.
//!
//! Memory is bounded: each item keeps at most `knn_max_neighbours` partners (trimmed back to
//! the cap when it holds a quarter more) and at most `knn_max_items` items are tracked (the
//! top by recency-weighted count, a rule that does not depend on the decay); days past the
//! horizon are dropped.
//!
//! ## Compact pairs
//!
//! Pairs are most of the statistics' memory on a large log (a hundred partners for each of
//! 100 k items), so one pair takes 16 bytes: the partner, and its counts in two day slots,
//! the latest day it was co-touched exact and every earlier day merged into one slot at their
//! count-weighted mean day ([`PairDays`]). A decayed count then weighs the merged days by the
//! decay at their mean age: exact for `none` and `linear` decay inside the window, a little
//! under the exact sum for a convex kernel (exponential) where old days of very different ages
//! are merged, which old days weigh little under anyway. Days are held relative to the first
//! day observed (`u16`: 179 years). Each item's partners are a vector sorted by partner.

use chrono::{DateTime, Utc};

use crate::rank::buckets::{DecayTable, Series, top_n, trim};
use crate::rank::catalog::{IdxMap, ItemIdx};
use crate::rank::decay::Decay;

use super::{StatsConfig, UserKey};

/// Width of a kNN bucket: one day (similarity moves slowly, and pairs are many).
pub const KNN_BUCKET_SECS: i64 = 86_400;

/// One pair's co-touches in two day slots (see the module documentation): `days[1]` the
/// latest day with a co-touch, `days[0]` every earlier one merged at their count-weighted
/// mean day. Days relative to [`ItemKnn`]'s first day; a count of 0 marks an empty slot.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct PairDays {
    counts: [u32; 2],
    days: [u16; 2],
}

impl PairDays {
    /// One more co-touch on `day`.
    fn add(&mut self, day: u16) {
        let last = self.counts[1];
        if last > 0 && self.days[1] == day {
            self.counts[1] = last.saturating_add(1);
            return;
        }
        if last > 0 && day < self.days[1] {
            // A late event: it belongs among the earlier days.
            self.merge_into_older(day, 1);
            return;
        }
        if last > 0 {
            self.merge_into_older(self.days[1], last);
        }
        (self.counts[1], self.days[1]) = (1, day);
    }

    /// Adds `n` co-touches on `day` to the older slot, at the count-weighted mean day.
    fn merge_into_older(&mut self, day: u16, n: u32) {
        let (c, d) = (self.counts[0], self.days[0]);
        let total = u64::from(c) + u64::from(n);
        let mean = (u64::from(c) * u64::from(d) + u64::from(n) * u64::from(day) + total / 2) / total;
        self.counts[0] = u32::try_from(total).unwrap_or(u32::MAX);
        self.days[0] = u16::try_from(mean).unwrap_or(u16::MAX);
    }

    /// The slots held, oldest first, as (day, count).
    fn slots(&self) -> impl Iterator<Item = (u16, u32)> + '_ {
        (0..2).filter(|&s| self.counts[s] > 0).map(|s| (self.days[s], self.counts[s]))
    }

    /// Drops slots before `oldest`; true if nothing is left.
    fn prune(&mut self, oldest: i64) -> bool {
        for s in 0..2 {
            if self.counts[s] > 0 && i64::from(self.days[s]) < oldest {
                self.counts[s] = 0;
            }
        }
        self.counts == [0, 0]
    }

    /// Decayed count under `table` (whose buckets are days relative to `base`).
    fn sum(&self, table: &DecayTable, base: i64) -> f64 {
        self.slots()
            .filter_map(|(d, c)| {
                let age = table.now_bucket - (base + i64::from(d));
                (age >= 0).then(|| table.w.get(age as usize).map_or(0.0, |w| f64::from(c) * w))
            })
            .sum()
    }

    /// `Σ n · (1 − age/horizon)`: the decay-independent rank used to evict over the cap.
    fn recency_mass(&self, now_day: i64, horizon: i64) -> f64 {
        let h = horizon.max(1) as f64;
        self.slots().map(|(d, c)| f64::from(c) * (1.0 - ((now_day - i64::from(d)).max(0) as f64 / h)).max(0.0)).sum()
    }
}

/// One partner of an item.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Pair {
    partner: u32,
    days: PairDays,
}

/// Users' co-touches of items, for cosine similarity. See the module documentation.
#[derive(Debug, Default)]
pub struct ItemKnn {
    recent_items: usize,
    max_neighbours: usize,
    max_items: usize,
    horizon_days: i64,
    /// Per user, their most recent distinct items with the day of the last touch (relative
    /// to `base_day`), oldest first, in a slice of its exact length (a million users' lists
    /// are a large part of the statistics).
    users: IdxMap<UserKey, Box<[(ItemIdx, u16)]>>,
    /// Per item, the distinct users who touched it, per day.
    users_of: IdxMap<ItemIdx, Series>,
    /// Per item (by index), its partners sorted by partner.
    pairs: Vec<Vec<Pair>>,
    /// The day pairs' days are counted from (the first day observed).
    base_day: Option<i64>,
    last_day: Option<i64>,
}

impl ItemKnn {
    pub fn new(cfg: &StatsConfig) -> Self {
        ItemKnn {
            recent_items: cfg.knn_recent_items.max(1),
            max_neighbours: cfg.knn_max_neighbours.max(1),
            max_items: cfg.knn_max_items.max(1),
            horizon_days: ((cfg.horizon_hours.max(0.0) * 3600.0) / KNN_BUCKET_SECS as f64).ceil().max(1.0) as i64,
            ..ItemKnn::default()
        }
    }

    /// Counts `user` touching `item` at `ts` (events with a positive kind weight only).
    pub fn observe(&mut self, user: UserKey, item: ItemIdx, ts: DateTime<Utc>) {
        let day = ts.timestamp().div_euclid(KNN_BUCKET_SECS);
        if self.last_day.is_some_and(|d| day > d) {
            self.prune(day);
        }
        self.last_day = Some(self.last_day.map_or(day, |d| d.max(day)));
        let base = *self.base_day.get_or_insert(day);
        let bucket = u32::try_from(day.max(0)).unwrap_or(u32::MAX);
        // A day before the first one counts as the first (such a late event is rare, and
        // older than anything held).
        let rel = u16::try_from((day - base).max(0)).unwrap_or(u16::MAX);
        let list = self.users.entry(user).or_default();
        let known = list.iter().position(|&(i, _)| i == item);
        // The list again: `item` last, without its earlier place, within `recent_items`.
        let mut next: Vec<(ItemIdx, u16)> = Vec::with_capacity((list.len() + 1).min(self.recent_items));
        let kept = list.iter().enumerate().filter(|&(n, _)| Some(n) != known).map(|(_, &x)| x);
        next.extend(kept.skip((list.len() + usize::from(known.is_none())).saturating_sub(self.recent_items)));
        next.push((item, rel));
        let earlier = std::mem::replace(list, next.into_boxed_slice());
        if known.is_some() {
            return;
        }
        self.users_of.entry(item).or_default().add(bucket, 1.0);
        let limit = self.max_neighbours + self.max_neighbours.div_ceil(4);
        for &(other, _) in earlier.iter() {
            for (a, b) in [(item, other), (other, item)] {
                let at = a.0 as usize;
                if self.pairs.len() <= at {
                    self.pairs.resize_with(at + 1, Vec::new);
                }
                let ps = &mut self.pairs[at];
                match ps.binary_search_by_key(&b.0, |p| p.partner) {
                    Ok(i) => ps[i].days.add(rel),
                    Err(i) => {
                        let mut days = PairDays::default();
                        days.add(rel);
                        if ps.len() == ps.capacity() {
                            // Grow by a quarter, not double: pairs are most of the memory.
                            ps.reserve_exact((ps.len() / 4).max(4));
                        }
                        ps.insert(i, Pair { partner: b.0, days });
                    }
                }
                if ps.len() > limit {
                    trim_pairs(ps, day - base - self.horizon_days, self.max_neighbours, day - base, self.horizon_days);
                }
            }
        }
    }

    /// Drops days before the horizon at `day` and enforces the caps.
    fn prune(&mut self, day: i64) {
        let oldest = day - self.horizon_days;
        let (cap, h) = (self.max_neighbours, self.horizon_days);
        let base = self.base_day.unwrap_or(day);
        for ps in &mut self.pairs {
            trim_pairs(ps, oldest - base, cap, day - base, h);
        }
        self.users_of.retain(|_, s| !s.prune(oldest));
        if self.users_of.len() > self.max_items {
            trim(&mut self.users_of, oldest, self.max_items, day, h);
            let kept = &self.users_of;
            for (i, ps) in self.pairs.iter_mut().enumerate() {
                if !kept.contains_key(&ItemIdx(i as u32)) {
                    *ps = Vec::new();
                }
                ps.retain(|p| kept.contains_key(&ItemIdx(p.partner)));
            }
        }
        self.users.retain(|_, l| {
            if l.iter().any(|&(_, d)| i64::from(d) + base < oldest) {
                *l = l.iter().copied().filter(|&(_, d)| i64::from(d) + base >= oldest).collect();
            }
            !l.is_empty()
        });
    }

    /// The decay weights of the kNN buckets at `now`.
    pub(crate) fn table(&self, now: DateTime<Utc>, decay: &Decay) -> DecayTable {
        DecayTable::new(now, KNN_BUCKET_SECS, self.horizon_days, decay)
    }

    /// Decayed number of users who touched `item`.
    fn users_of(&self, table: &DecayTable, item: ItemIdx) -> f64 {
        self.users_of.get(&item).map_or(0.0, |s| s.sum(table))
    }

    fn partners(&self, item: ItemIdx) -> &[Pair] {
        self.pairs.get(item.0 as usize).map_or(&[], Vec::as_slice)
    }

    /// Cosine similarity of `a` and `b` under `table`'s decay (0 when never co-touched).
    pub(crate) fn similarity(&self, table: &DecayTable, a: ItemIdx, b: ItemIdx) -> f64 {
        let ps = self.partners(a);
        let Ok(i) = ps.binary_search_by_key(&b.0, |p| p.partner) else { return 0.0 };
        let base = self.base_day.unwrap_or(0);
        cosine(ps[i].days.sum(table, base), self.users_of(table, a), self.users_of(table, b))
    }

    /// Every tracked partner of `item` with its similarity (positive ones only), unordered.
    pub(crate) fn similarities(&self, table: &DecayTable, item: ItemIdx) -> Vec<(u32, f64)> {
        let ps = self.partners(item);
        if ps.is_empty() {
            return Vec::new();
        }
        let n_item = self.users_of(table, item);
        let base = self.base_day.unwrap_or(0);
        ps.iter()
            .map(|p| (p.partner, cosine(p.days.sum(table, base), n_item, self.users_of(table, ItemIdx(p.partner)))))
            .filter(|&(_, s)| s > 0.0)
            .collect()
    }

    /// Items with partners, and partner entries (for the statistics' sizes).
    pub fn sizes(&self) -> (usize, usize) {
        (self.pairs.iter().filter(|ps| !ps.is_empty()).count(), self.pairs.iter().map(Vec::len).sum())
    }

    /// Users remembered.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Forgets a user's remembered items.
    pub fn forget_user(&mut self, user: UserKey) {
        self.users.remove(&user);
    }

    pub fn remembers(&self, user: UserKey) -> bool {
        self.users.contains_key(&user)
    }
}

/// Drops an item's pair slots before `oldest` and, past `cap` partners, keeps the `cap` with
/// the largest recency-weighted count (days relative to the first day, as `now_day`).
fn trim_pairs(ps: &mut Vec<Pair>, oldest: i64, cap: usize, now_day: i64, horizon: i64) {
    ps.retain_mut(|p| !p.days.prune(oldest));
    if ps.len() > cap {
        let scored: Vec<(u32, f64)> = ps.iter().map(|p| (p.partner, p.days.recency_mass(now_day, horizon))).collect();
        let mut keep: Vec<u32> = top_n(scored, cap).into_iter().map(|(k, _)| k).collect();
        keep.sort_unstable();
        ps.retain(|p| keep.binary_search(&p.partner).is_ok());
    }
    if ps.capacity() > ps.len() + ps.len() / 2 + 4 {
        ps.shrink_to_fit();
    }
}

fn cosine(pair: f64, a: f64, b: f64) -> f64 {
    let norm = (a * b).sqrt();
    if pair > 0.0 && norm > 0.0 { (pair / norm).min(1.0) } else { 0.0 }
}

#[cfg(test)]
mod tests;
