//! The settings of the statistics (`[tuning.scoring.stats]`).

use serde::{Deserialize, Serialize};

/// Settings of the statistics. Changing any of them needs a rebuild (a replay of the log);
/// decay constants are not among them (they are applied at query time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// Width of a popularity / co-occurrence time bucket, in minutes.
    pub bucket_minutes: u32,
    /// Statistics older than this are dropped, in hours.
    pub horizon_hours: f64,
    /// Two items touched by the same user within this many minutes co-occur.
    pub cooccurrence_window_minutes: f64,
    /// Co-occurring items kept per item (the top by recency-weighted count).
    pub max_neighbours: usize,
    /// Items kept per context popularity segment (device, hour band, day type, country); the
    /// global, category and brand segments read one series per item, bounded by the catalogue.
    pub max_items_per_segment: usize,
    /// Recent items remembered per user, to pair with the next ones.
    pub max_recent_per_user: usize,
    /// How long computed trending lists, segment scores, co-occurrence lists and context lifts
    /// may be reused, in seconds (0: never cached).
    pub cache_ttl_secs: f64,
    /// Item-kNN: the distinct items each user touched most recently, whose pairs with the
    /// next new item count as co-occurrences (cosine similarity over users).
    pub knn_recent_items: usize,
    /// Item-kNN: similar items kept per item (the top by recency-weighted count).
    pub knn_max_neighbours: usize,
    /// Item-kNN: items tracked at most (those touched least recently are dropped first).
    pub knn_max_items: usize,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            bucket_minutes: 60,
            horizon_hours: 14.0 * 24.0,
            cooccurrence_window_minutes: 60.0,
            max_neighbours: 50,
            max_items_per_segment: 10_000,
            max_recent_per_user: 30,
            cache_ttl_secs: 30.0,
            knn_recent_items: 10,
            knn_max_neighbours: 100,
            knn_max_items: 200_000,
        }
    }
}

impl StatsConfig {
    /// Checks every value; errors name the key under `stats.`.
    pub fn validate(&self) -> Result<(), String> {
        if self.bucket_minutes == 0 || self.bucket_minutes > 24 * 60 {
            return Err(format!("stats.bucket_minutes must be in 1..=1440 (got {})", self.bucket_minutes));
        }
        for (key, v) in [("horizon_hours", self.horizon_hours), ("cooccurrence_window_minutes", self.cooccurrence_window_minutes)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("stats.{key} must be > 0 and finite (got {v})"));
            }
        }
        if self.horizon_hours * 60.0 < f64::from(self.bucket_minutes) {
            return Err("stats.horizon_hours must cover at least one bucket (stats.bucket_minutes)".into());
        }
        for (key, v) in [
            ("max_neighbours", self.max_neighbours),
            ("max_items_per_segment", self.max_items_per_segment),
            ("max_recent_per_user", self.max_recent_per_user),
            ("knn_recent_items", self.knn_recent_items),
            ("knn_max_neighbours", self.knn_max_neighbours),
            ("knn_max_items", self.knn_max_items),
        ] {
            if v == 0 {
                return Err(format!("stats.{key} must be ≥ 1"));
            }
        }
        if !(self.cache_ttl_secs.is_finite() && self.cache_ttl_secs >= 0.0) {
            return Err(format!("stats.cache_ttl_secs must be ≥ 0 (got {})", self.cache_ttl_secs));
        }
        Ok(())
    }
}
