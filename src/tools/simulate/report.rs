//! What a simulation measured, per arm and per 1,000 users.

use super::*;

// ------------------------------------------------------------------------------------------
// The report
// ------------------------------------------------------------------------------------------

/// Figures per 1,000 users over the measured period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    pub pushes: f64,
    pub opens: f64,
    pub push_conversions: f64,
    pub organic_conversions: f64,
    pub conversions: f64,
    pub unsubscribes: f64,
}

/// One arm of the main table (mean over replications, and the 95 % half-width).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmSummary {
    pub name: String,
    pub per_1000: Rates,
    pub ci95: Rates,
    /// Total opens / total unsubscribes over every replication; `None` without unsubscribes.
    pub opens_per_unsubscribe: Option<f64>,
    pub open_rate: f64,
    pub users_reached_share: f64,
    /// Share of pushes whose item the user touched within the relevance window.
    pub item_relevant_share: f64,
    /// Share of pushes whose category (not the item) the user touched.
    pub category_relevant_share: f64,
    pub mean_hour_match: f64,
}

/// One sensitivity variant: the changed key and each pushing arm's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantSummary {
    pub key: String,
    pub base_value: f64,
    pub value: f64,
    /// (arm, opens per 1,000, unsubscribes per 1,000, opens per unsubscribe)
    pub arms: Vec<(String, f64, f64, Option<f64>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub users: usize,
    pub events: usize,
    pub timezone: String,
    pub measured_from: DateTime<Utc>,
    pub measured_to: DateTime<Utc>,
    pub seed: u64,
    pub replications: u32,
    pub arms: Vec<ArmSummary>,
    pub sensitivity: Vec<VariantSummary>,
    /// The base model over the same replications as the variants (what they are compared with).
    pub sensitivity_base: Vec<(String, f64, f64, Option<f64>)>,
    /// The adaptive arm's decisions by outcome (first replication).
    pub adaptive_decisions: Vec<(String, u64)>,
    /// The learned arm's decisions by outcome (first replication), and its model's last training.
    pub learned_decisions: Vec<(String, u64)>,
    pub learned_model: Option<String>,
    /// The adaptive arm's target frequencies (first replication, users outside the holdout).
    pub adaptive_frequency: Option<FrequencySummary>,
    pub params: SimParams,
    pub frequency: FrequencyConfig,
    pub rankings: u64,
    pub rankings_memoised: u64,
    pub runtime: Duration,
    pub command: String,
}

/// Distribution of the adaptive arm's target frequencies, pushes per day.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrequencySummary {
    pub users: usize,
    pub initial_mean: f64,
    pub initial_quartiles: [f64; 3],
    pub final_mean: f64,
    pub final_quartiles: [f64; 3],
    /// Share of users whose final target is at `f_min` / at `f_max`.
    pub final_at_min: f64,
    pub final_at_max: f64,
}

pub(super) fn quartiles(xs: &mut [f64]) -> [f64; 3] {
    xs.sort_by(f64::total_cmp);
    let q = |p: f64| xs.get(((xs.len() - 1) as f64 * p).round() as usize).copied().unwrap_or(f64::NAN);
    [q(0.25), q(0.5), q(0.75)]
}

impl FrequencySummary {
    pub(super) fn of(users: &[SimUser], user_ids: &[String], cfg: &FrequencyConfig) -> Option<FrequencySummary> {
        let (mut initial, mut last) = (Vec::new(), Vec::new());
        for (u, id) in users.iter().zip(user_ids) {
            if let (Some(state), Some(f0)) = (&u.state, u.initial_frequency)
                && !is_in_holdout(id, cfg.holdout_share)
            {
                initial.push(f0);
                last.push(state.target_frequency(cfg));
            }
        }
        if initial.is_empty() {
            return None;
        }
        let n = initial.len() as f64;
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
        Some(FrequencySummary {
            users: initial.len(),
            initial_mean: initial.iter().sum::<f64>() / n,
            final_mean: last.iter().sum::<f64>() / n,
            final_at_min: last.iter().filter(|f| near(**f, cfg.f_min)).count() as f64 / n,
            final_at_max: last.iter().filter(|f| near(**f, cfg.f_max)).count() as f64 / n,
            initial_quartiles: quartiles(&mut initial),
            final_quartiles: quartiles(&mut last),
        })
    }
}

pub(super) fn mean_ci(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, 1.96 * (var / n).sqrt())
}

pub(super) fn ratio(opens: u64, unsubs: u64) -> Option<f64> {
    (unsubs > 0).then(|| opens as f64 / unsubs as f64)
}
