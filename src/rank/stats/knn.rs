//! Item-kNN: how similar two items are, by the users who touched both.
//!
//! Each user's `knn_recent_items` most recent distinct items are remembered. When the user
//! touches an item that is not among them, the item gains one user, and every remembered item
//! forms a pair with it; touching a remembered item again only refreshes it. The similarity of
//! two items is the cosine over users, `sim(a, b) = n(a, b) / √(n(a) · n(b))`, with every count
//! kept per day ([`Series`]) and decayed at query time like the other statistics: a decay
//! constant changed in config applies to the next answer.
//!
//! Memory is bounded: each item keeps at most `knn_max_neighbours` partners and at most
//! `knn_max_items` items are tracked (the top by recency-weighted count, a rule that does not
//! depend on the decay); days past the horizon are dropped.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use crate::rank::buckets::{DecayTable, Series, trim};
use crate::rank::catalog::{IdxMap, ItemIdx, StrMap};
use crate::rank::decay::Decay;

use super::StatsConfig;

/// Width of a kNN bucket: one day (similarity moves slowly, and pairs are many).
pub const KNN_BUCKET_SECS: i64 = 86_400;

/// Users' co-touches of items, for cosine similarity. See the module documentation.
#[derive(Debug, Default)]
pub struct ItemKnn {
    recent_items: usize,
    max_neighbours: usize,
    max_items: usize,
    horizon_days: i64,
    /// Per user, their most recent distinct items with the day of the last touch, oldest first.
    users: StrMap<Box<str>, VecDeque<(ItemIdx, u32)>>,
    /// Per item, the distinct users who touched it, per day.
    users_of: IdxMap<ItemIdx, Series>,
    /// Per item, the items touched by the same users, per day.
    pairs: IdxMap<ItemIdx, IdxMap<ItemIdx, Series>>,
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
    pub fn observe(&mut self, user: &str, item: ItemIdx, ts: DateTime<Utc>) {
        let day = ts.timestamp().div_euclid(KNN_BUCKET_SECS);
        if self.last_day.is_some_and(|d| day > d) {
            self.prune(day);
        }
        self.last_day = Some(self.last_day.map_or(day, |d| d.max(day)));
        let bucket = u32::try_from(day.max(0)).unwrap_or(u32::MAX);
        let list = match self.users.get_mut(user) {
            Some(l) => l,
            None => self.users.entry(user.into()).or_default(),
        };
        if let Some(at) = list.iter().position(|&(i, _)| i == item) {
            list.remove(at);
            list.push_back((item, bucket));
            return;
        }
        self.users_of.entry(item).or_default().add(bucket, 1.0);
        let cap = 2 * self.max_neighbours;
        for &(other, _) in list.iter() {
            for (a, b) in [(item, other), (other, item)] {
                let ns = self.pairs.entry(a).or_default();
                ns.entry(b).or_default().add(bucket, 1.0);
                if ns.len() > cap {
                    trim(ns, day - self.horizon_days, self.max_neighbours, day, self.horizon_days);
                }
            }
        }
        list.push_back((item, bucket));
        if list.len() > self.recent_items {
            list.pop_front();
        }
    }

    /// Drops days before the horizon at `day` and enforces the caps.
    fn prune(&mut self, day: i64) {
        let oldest = day - self.horizon_days;
        let (cap, h) = (self.max_neighbours, self.horizon_days);
        self.pairs.retain(|_, ns| !trim(ns, oldest, cap, day, h));
        self.users_of.retain(|_, s| !s.prune(oldest));
        if self.users_of.len() > self.max_items {
            trim(&mut self.users_of, oldest, self.max_items, day, h);
            let kept = &self.users_of;
            self.pairs.retain(|i, ns| {
                ns.retain(|j, _| kept.contains_key(j));
                kept.contains_key(i) && !ns.is_empty()
            });
        }
        self.users.retain(|_, l| {
            l.retain(|&(_, d)| i64::from(d) >= oldest);
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

    /// Cosine similarity of `a` and `b` under `table`'s decay (0 when never co-touched).
    pub(crate) fn similarity(&self, table: &DecayTable, a: ItemIdx, b: ItemIdx) -> f64 {
        let Some(c) = self.pairs.get(&a).and_then(|ns| ns.get(&b)).map(|s| s.sum(table)) else { return 0.0 };
        cosine(c, self.users_of(table, a), self.users_of(table, b))
    }

    /// Every tracked partner of `item` with its similarity (positive ones only), unordered.
    pub(crate) fn similarities(&self, table: &DecayTable, item: ItemIdx) -> Vec<(u32, f64)> {
        let Some(ns) = self.pairs.get(&item) else { return Vec::new() };
        let n_item = self.users_of(table, item);
        ns.iter()
            .map(|(j, s)| (j.0, cosine(s.sum(table), n_item, self.users_of(table, *j))))
            .filter(|&(_, s)| s > 0.0)
            .collect()
    }

    /// Items with partners, and partner entries (for the statistics' sizes).
    pub fn sizes(&self) -> (usize, usize) {
        (self.pairs.len(), self.pairs.values().map(IdxMap::len).sum())
    }

    /// Users remembered.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Forgets a user's remembered items.
    pub fn forget_user(&mut self, user: &str) {
        self.users.remove(user);
    }

    pub fn remembers(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
}

fn cosine(pair: f64, a: f64, b: f64) -> f64 {
    let norm = (a * b).sqrt();
    if pair > 0.0 && norm > 0.0 { (pair / norm).min(1.0) } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn items_taken_by_the_same_users_are_similar_by_cosine() {
        let mut k = ItemKnn::new(&StatsConfig::default());
        // Users u0..u3 take a then b; u4 takes a then c; u5 takes only c.
        for u in 0..4 {
            k.observe(&format!("u{u}"), ItemIdx(1), t0());
            k.observe(&format!("u{u}"), ItemIdx(2), t0() + Duration::hours(1));
        }
        k.observe("u4", ItemIdx(1), t0());
        k.observe("u4", ItemIdx(3), t0());
        k.observe("u5", ItemIdx(3), t0());
        let table = k.table(t0() + Duration::hours(2), &Decay::None);
        let ab = k.similarity(&table, ItemIdx(1), ItemIdx(2));
        let ac = k.similarity(&table, ItemIdx(1), ItemIdx(3));
        assert!((ab - 4.0 / (5.0f64 * 4.0).sqrt()).abs() < 1e-9, "{ab}");
        assert!((ac - 1.0 / (5.0f64 * 2.0).sqrt()).abs() < 1e-9, "{ac}");
        assert_eq!(k.similarity(&table, ItemIdx(2), ItemIdx(3)), 0.0);
        assert_eq!(k.similarity(&table, ItemIdx(2), ItemIdx(1)), ab, "symmetric");
    }

    #[test]
    fn a_repeated_touch_counts_its_user_once_and_old_items_leave_the_window() {
        let cfg = StatsConfig { knn_recent_items: 2, ..StatsConfig::default() };
        let mut k = ItemKnn::new(&cfg);
        for (n, item) in [1, 1, 1, 2, 3, 4].into_iter().enumerate() {
            k.observe("u", ItemIdx(item), t0() + Duration::minutes(n as i64));
        }
        let table = k.table(t0() + Duration::hours(1), &Decay::None);
        assert_eq!(k.users_of(&table, ItemIdx(1)), 1.0, "one user, however often");
        assert!(k.similarity(&table, ItemIdx(3), ItemIdx(2)) > 0.0);
        assert!(k.similarity(&table, ItemIdx(4), ItemIdx(3)) > 0.0);
        assert_eq!(k.similarity(&table, ItemIdx(4), ItemIdx(1)), 0.0, "1 had left the two remembered items");
    }

    #[test]
    fn similarity_decays_with_the_configured_kernel_and_old_days_are_dropped() {
        let mut k = ItemKnn::new(&StatsConfig { horizon_hours: 48.0, ..StatsConfig::default() });
        k.observe("old", ItemIdx(1), t0());
        k.observe("old", ItemIdx(2), t0());
        for u in 0..3 {
            k.observe(&format!("new{u}"), ItemIdx(1), t0() + Duration::days(1));
            k.observe(&format!("new{u}"), ItemIdx(3), t0() + Duration::days(1));
        }
        let now = t0() + Duration::days(1) + Duration::hours(12);
        let flat = k.table(now, &Decay::None);
        let fast = k.table(now, &Decay::Exponential { half_life_hours: 6.0 });
        let (b_flat, b_fast) = (k.similarity(&flat, ItemIdx(1), ItemIdx(2)), k.similarity(&fast, ItemIdx(1), ItemIdx(2)));
        assert!(b_fast < b_flat, "the old pair weighs less under a short half-life: {b_fast} vs {b_flat}");
        k.observe("late", ItemIdx(9), t0() + Duration::days(5));
        let later = k.table(t0() + Duration::days(5), &Decay::None);
        assert_eq!(k.similarity(&later, ItemIdx(1), ItemIdx(3)), 0.0, "past the horizon");
        assert_eq!(k.sizes().0, 0, "pruned");
    }

    #[test]
    fn neighbours_and_tracked_items_stay_within_their_caps() {
        let cfg = StatsConfig { knn_recent_items: 5, knn_max_neighbours: 3, knn_max_items: 50, ..StatsConfig::default() };
        let mut k = ItemKnn::new(&cfg);
        for n in 0..20_000u32 {
            let ts = t0() + Duration::minutes(i64::from(n));
            k.observe(&format!("u{}", n % 97), ItemIdx((n * 7919) % 5000), ts);
        }
        let (items, pairs) = k.sizes();
        assert!(items <= 5000 && pairs <= items * 6, "{items} items, {pairs} pairs");
        assert!(k.users_of.len() <= 50 + 1440, "at most the cap plus a day's new items: {}", k.users_of.len());
    }
}
