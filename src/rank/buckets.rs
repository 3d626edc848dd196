//! Time-bucketed counts decayed at query time: the storage under every statistic of
//! `stats` and `context`.
//!
//! Nothing here stores a decayed value. A [`Series`] keeps kind-weighted counts per time
//! bucket; a query builds a [`DecayTable`] (the decay weight of each bucket age at its
//! `now`) and sums. Changing a decay constant therefore changes the next answer with no
//! rebuild. A bucket's age is measured from its middle, so ages are exact to ± half a bucket.
//! When a map of series outgrows its cap, what is kept is the top by recency-weighted mass
//! `Σ w · (1 − age/horizon)`, a rule that does not depend on any decay constant.

use crate::rank::catalog::{IdxMap, IdxSet, ItemIdx};
use crate::rank::decay::Decay;
use chrono::{DateTime, Utc};

/// Kind-weighted counts per time bucket, oldest first. Buckets are indices since the Unix
/// epoch (`ts / width`).
///
/// Most series of a large log (a pair of items, an item in a segment) hold one bucket: that
/// one lives inline, and a longer one in a boxed slice of its exact length. 16 bytes and no
/// allocation for one bucket, where a `Vec` took 24 bytes and a 32-byte allocation (tens of
/// millions of series at 100 k users, most of the statistics' memory).
#[derive(Clone, Debug)]
pub(crate) enum Series {
    One((u32, f32)),
    Many(Box<[(u32, f32)]>),
}

impl Default for Series {
    fn default() -> Self {
        Series::Many(Box::default())
    }
}

impl Series {
    #[inline]
    fn buckets(&self) -> &[(u32, f32)] {
        match self {
            Series::One(p) => std::slice::from_ref(p),
            Series::Many(v) => v,
        }
    }

    fn from_vec(v: Vec<(u32, f32)>) -> Series {
        match v[..] {
            [one] => Series::One(one),
            _ => Series::Many(v.into_boxed_slice()),
        }
    }

    /// Adds `w` to `bucket`; true when the bucket was new to the series.
    #[inline]
    pub(crate) fn add(&mut self, bucket: u32, w: f32) -> bool {
        // Where a new bucket goes, unless the bucket is held already.
        let (buckets, at) = match self {
            Series::One((b, v)) if *b == bucket => {
                *v += w;
                return false;
            }
            Series::One(p) => (std::slice::from_ref(p), usize::from(p.0 < bucket)),
            Series::Many(v) => {
                // Counts nearly always go to the latest bucket.
                if let Some((b, x)) = v.last_mut()
                    && *b == bucket
                {
                    *x += w;
                    return false;
                }
                match v.binary_search_by_key(&bucket, |&(b, _)| b) {
                    Ok(i) => {
                        v[i].1 += w;
                        return false;
                    }
                    Err(i) => (&v[..], i),
                }
            }
        };
        let mut grown = Vec::with_capacity(buckets.len() + 1);
        grown.extend_from_slice(&buckets[..at]);
        grown.push((bucket, w));
        grown.extend_from_slice(&buckets[at..]);
        *self = Series::from_vec(grown);
        true
    }

    /// [`Series::add`], then merges what `res` says is old enough (see [`Resolution`]) when
    /// the bucket was new: a series holds at most `res.fine + res.group − 1` buckets plus one
    /// per older group.
    #[inline]
    pub(crate) fn add_at(&mut self, bucket: u32, w: f32, res: Resolution) {
        if self.add(bucket, w) && res.group > 1 {
            self.compact(i64::from(bucket), res);
        }
    }

    /// Merges the buckets of each group (`bucket / res.group`) that lies wholly at least
    /// `res.fine` buckets before `now_bucket` into one at their weight-weighted mean bucket:
    /// the total weight is kept, and so is its mean age up to rounding. A group is merged once,
    /// when its last bucket comes of age (an event arriving later for it joins the merged
    /// bucket at the next compaction).
    fn compact(&mut self, now_bucket: i64, res: Resolution) {
        let buckets = self.buckets();
        let group = |b: u32| b / res.group;
        let group_end = |b: u32| i64::from(group(b)) * i64::from(res.group) + i64::from(res.group) - 1;
        let old = buckets.partition_point(|&(b, _)| now_bucket - group_end(b) >= i64::from(res.fine));
        if buckets[..old].windows(2).all(|p| group(p[0].0) != group(p[1].0)) {
            return;
        }
        let mut merged: Vec<(u32, f32)> = Vec::with_capacity(buckets.len());
        for chunk in buckets[..old].chunk_by(|a, b| group(a.0) == group(b.0)) {
            let mass: f64 = chunk.iter().map(|&(_, w)| f64::from(w)).sum();
            let at = if mass > 0.0 {
                let mean = chunk.iter().map(|&(b, w)| f64::from(b) * f64::from(w)).sum::<f64>() / mass;
                (mean.round() as u32).clamp(chunk[0].0, chunk[chunk.len() - 1].0)
            } else {
                chunk[chunk.len() - 1].0
            };
            merged.push((at, mass as f32));
        }
        merged.extend_from_slice(&buckets[old..]);
        *self = Series::from_vec(merged);
    }

    /// Decayed sum, as seen from the table's `now`.
    #[inline]
    pub(crate) fn sum(&self, table: &DecayTable) -> f64 {
        let mut s = 0.0;
        for &(b, w) in self.buckets().iter().rev() {
            let b = i64::from(b);
            if b > table.now_bucket {
                continue;
            }
            let Some(&d) = table.w.get((table.now_bucket - b) as usize) else { break };
            s += f64::from(w) * d;
        }
        s
    }

    /// Number of buckets held.
    pub(crate) fn len(&self) -> usize {
        self.buckets().len()
    }

    /// Drops buckets before `oldest`; true if nothing is left.
    pub(crate) fn prune(&mut self, oldest: i64) -> bool {
        let buckets = self.buckets();
        let keep_from = buckets.partition_point(|&(b, _)| i64::from(b) < oldest);
        if keep_from > 0 {
            *self = Series::from_vec(buckets[keep_from..].to_vec());
        }
        self.buckets().is_empty()
    }

    /// `Σ w · (1 − age/horizon)`: the decay-independent rank used to evict over caps.
    fn recency_mass(&self, now_bucket: i64, horizon_buckets: i64) -> f64 {
        let h = horizon_buckets.max(1) as f64;
        self.buckets()
            .iter()
            .map(|&(b, w)| f64::from(w) * (1.0 - ((now_bucket - i64::from(b)).max(0) as f64 / h)).max(0.0))
            .sum()
    }
}

/// How finely a [`Series`] keeps its past: buckets younger than `fine` buckets stay as they
/// are; older ones are merged per group of `group` consecutive buckets (aligned on multiples
/// of `group`), each group into one bucket at its weight-weighted mean. With hourly buckets,
/// two days at full resolution and one bucket per day before that: a series of a 14-day
/// horizon holds at most 83 buckets instead of 336 (the hours of two to three days, and the
/// days before). The state still means "this much weight,
/// about this old", so the decay stays a query-time choice; what it costs is that a merged
/// day is weighed at its mean age, which for a convex kernel (exponential) is a little less
/// than the sum of its hours (for a 24 h half-life at most about 2 %).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolution {
    pub(crate) fine: u32,
    pub(crate) group: u32,
}

impl Resolution {
    /// Full resolution for two days, then one bucket per day, for buckets `width` seconds wide.
    pub(crate) fn for_width(width: i64) -> Resolution {
        let width = width.max(1);
        Resolution { fine: u32::try_from((2 * 86_400 + width - 1) / width).unwrap_or(u32::MAX), group: u32::try_from((86_400 / width).max(1)).unwrap_or(1) }
    }
}

/// Decay weight per bucket age, computed once per query.
#[derive(Clone, Debug)]
pub(crate) struct DecayTable {
    pub(crate) now_bucket: i64,
    /// `w[i]`: weight of bucket `now_bucket − i`; empty beyond the horizon.
    pub(crate) w: Vec<f64>,
}

impl DecayTable {
    pub(crate) fn new(now: DateTime<Utc>, width: i64, horizon_buckets: i64, decay: &Decay) -> Self {
        let now_s = now.timestamp();
        let now_bucket = now_s.div_euclid(width);
        let offset = now_s.rem_euclid(width) as f64;
        let len = (horizon_buckets + 1).max(1) as usize;
        let half = width as f64 / 2.0;
        let age = |i: usize| offset + (i as f64) * width as f64 - half;
        let w = match *decay {
            // Same values as `Decay::weight`, by recurrence (one exp instead of `len`).
            Decay::Exponential { half_life_hours } => {
                let rate = std::f64::consts::LN_2 / (half_life_hours * 3600.0);
                let step = (-rate * width as f64).exp();
                let mut w = Vec::with_capacity(len);
                // Bucket 0's middle may lie ahead of `now`: its age is clamped to 0.
                w.push(decay.weight(age(0)));
                let mut cur = decay.weight(age(1).max(0.0));
                for _ in 1..len {
                    w.push(cur);
                    cur *= step;
                }
                w
            }
            _ => (0..len).map(|i| decay.weight(age(i))).collect(),
        };
        DecayTable { now_bucket, w }
    }
}

/// Keeps the `cap` entries of `map` with the largest recency-weighted mass.
/// Drops the buckets of `map` before `oldest` and its entries over `cap`; true if it is empty.
pub(crate) fn trim<K: Copy + Eq + std::hash::Hash + Ord>(map: &mut IdxMap<K, Series>, oldest: i64, cap: usize, now_bucket: i64, horizon_buckets: i64) -> bool {
    map.retain(|_, s| !s.prune(oldest));
    enforce_cap(map, cap, now_bucket, horizon_buckets);
    map.is_empty()
}

/// [`trim`] on the inner maps of `keys`, removing those left empty.
pub(crate) fn trim_keys<K: Copy + Eq + std::hash::Hash>(
    map: &mut IdxMap<K, IdxMap<ItemIdx, Series>>,
    keys: IdxSet<K>,
    oldest: i64,
    cap: usize,
    now_bucket: i64,
    horizon_buckets: i64,
) {
    for k in keys {
        if map.get_mut(&k).is_some_and(|inner| trim(inner, oldest, cap, now_bucket, horizon_buckets)) {
            map.remove(&k);
        }
    }
}

fn enforce_cap<K: Copy + Eq + std::hash::Hash + Ord>(
    map: &mut IdxMap<K, Series>,
    cap: usize,
    now_bucket: i64,
    horizon_buckets: i64,
) {
    if map.len() <= cap {
        return;
    }
    let scored: Vec<(K, f64)> = map.iter().map(|(&k, s)| (k, s.recency_mass(now_bucket, horizon_buckets))).collect();
    let keep: IdxSet<K> = top_n(scored, cap).into_iter().map(|(k, _)| k).collect();
    map.retain(|k, _| keep.contains(k));
}

/// The `n` entries with the largest score, best first; ties by key, so results are
/// deterministic. `O(len + n log n)`.
pub(crate) fn top_n<K: Copy + Ord>(mut v: Vec<(K, f64)>, n: usize) -> Vec<(K, f64)> {
    let cmp = |a: &(K, f64), b: &(K, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if n == 0 {
        return Vec::new();
    }
    if v.len() > n {
        v.select_nth_unstable_by(n - 1, cmp);
        v.truncate(n);
    }
    v.sort_unstable_by(cmp);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    #[test]
    fn a_series_holds_one_bucket_inline_and_more_in_order() {
        assert_eq!(std::mem::size_of::<Series>(), 16);
        let mut s = Series::default();
        assert_eq!(s.len(), 0);
        s.add(5, 1.0);
        s.add(5, 2.0);
        assert!(matches!(s, Series::One((5, w)) if w == 3.0));
        s.add(7, 1.0);
        s.add(3, 0.5);
        s.add(7, 1.0);
        s.add(5, 1.0);
        assert_eq!(s.buckets(), &[(3, 0.5), (5, 4.0), (7, 2.0)]);
        assert!(!s.prune(5));
        assert_eq!(s.buckets(), &[(5, 4.0), (7, 2.0)]);
        assert!(!s.prune(6));
        assert!(matches!(s, Series::One((7, w)) if w == 2.0), "{s:?}");
        assert!(s.prune(8));
        assert_eq!(s.len(), 0);
        s.add(9, 1.0);
        assert_eq!(s.buckets(), &[(9, 1.0)]);
    }

    #[test]
    fn hours_older_than_two_days_merge_into_one_bucket_per_day_at_their_mean() {
        let res = Resolution::for_width(3600);
        assert_eq!(res, Resolution { fine: 48, group: 24 });
        // Four days of hourly counts (1 + the hour of the day), oldest first.
        let (start, end) = (24 * 1000u32, 24 * 1004u32);
        let mut s = Series::default();
        for b in start..end {
            s.add_at(b, 1.0 + (b % 24) as f32, res);
        }
        let held = s.buckets();
        // Days 1000 and 1001 are wholly 48 h old: one bucket each; the rest by the hour.
        assert_eq!(held.len(), 2 + 48, "{held:?}");
        let mass = |from: u32, to: u32| (from..to).map(|b| 1.0 + (b % 24) as f64).sum::<f64>();
        let mean = |from: u32, to: u32| (from..to).map(|b| f64::from(b) * (1.0 + (b % 24) as f64)).sum::<f64>() / mass(from, to);
        for (n, day) in [1000u32, 1001].into_iter().enumerate() {
            let (b, w) = held[n];
            assert_eq!(f64::from(w), mass(day * 24, day * 24 + 24), "the day's whole weight");
            assert_eq!(b, mean(day * 24, day * 24 + 24).round() as u32, "at its weight-weighted mean hour");
        }
        assert_eq!(&held[2..], (24 * 1002..end).map(|b| (b, 1.0 + (b % 24) as f32)).collect::<Vec<_>>().as_slice());
        let now = DateTime::from_timestamp(i64::from(end) * 3600, 0).unwrap();
        let exact = |decay: &Decay| {
            let t = DecayTable::new(now, 3600, 400, decay);
            (start..end).map(|b| (1.0 + (b % 24) as f64) * t.w[(t.now_bucket - i64::from(b)) as usize]).sum::<f64>()
        };
        let none = DecayTable::new(now, 3600, 400, &Decay::None);
        assert!((s.sum(&none) - exact(&Decay::None)).abs() < 1e-9, "no decay: exactly the counts");
        let fast = Decay::Exponential { half_life_hours: 24.0 };
        let (got, want) = (s.sum(&DecayTable::new(now, 3600, 400, &fast)), exact(&fast));
        assert!(got <= want && got > 0.99 * want, "a convex kernel weighs a merged day a little less: {got} vs {want}");
        // Merged days stay merged, and a late hour inside one joins it at the next compaction.
        s.add_at(end, 1.0, res);
        s.add_at(24 * 1000 + 3, 5.0, res);
        s.add_at(end + 1, 1.0, res);
        assert_eq!(s.buckets().iter().filter(|(b, _)| *b < 24 * 1001).count(), 1);
    }

    #[test]
    fn top_n_breaks_ties_by_key() {
        let v = vec![(3u32, 1.0), (1, 2.0), (2, 1.0), (0, 0.5)];
        assert_eq!(top_n(v.clone(), 3), vec![(1, 2.0), (2, 1.0), (3, 1.0)]);
        assert_eq!(top_n(v, 10).len(), 4);
    }
}
