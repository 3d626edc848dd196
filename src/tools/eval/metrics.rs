//! Metrics, the facts of the log, and the evaluation of every variant.

use super::*;

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
    pub(super) fn from_ranks(ranks: &[u8]) -> Metrics {
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

    pub(super) fn at(values: &[f64; 3], k: usize) -> f64 {
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
    /// Targets found in the top 10, and how many of them the user had touched before.
    pub hits10: usize,
    pub repeat_hits10: usize,
}

/// Replays `log` for `variants` on `threads` threads and measures them. `progress` advances
/// by one per variant and target.
pub fn evaluate(
    log: &[LogEvent],
    tuning: &Tuning,
    variants: &[Variant],
    retrain_every_hours: f64,
    threads: usize,
    progress: &ProgressBar,
) -> (Vec<VariantResult>, Schedule) {
    let items = log.iter().map(|e| e.item.as_str()).collect::<HashSet<_>>().len();
    let split = holdout_from(log);
    let prepared = prepare(log);
    let late: Vec<bool> = prepared.events.iter().filter(|e| e.behaviour.is_target()).map(|e| e.ts >= split).collect();
    let repeats = log_facts(log).repeat_flags;
    let with_sequence = variants.iter().any(|v| matches!(v.method, Method::Kairos { sequence: true, .. } | Method::Sequence));
    let schedule = if with_sequence || variants.iter().any(|v| matches!(v.method, Method::Kairos { learned: true, .. })) {
        retrain::schedule(&prepared.kairos, &prepared.items, tuning, retrain_every_hours, with_sequence, progress)
    } else {
        Schedule::default()
    };
    let accs = replay(&prepared, tuning, &schedule, variants, threads, false, progress);
    let part = |ranks: &[u8], want_late: bool| -> Vec<u8> {
        ranks.iter().zip(&late).filter(|(_, l)| **l == want_late).map(|(r, _)| *r).collect()
    };
    let results = variants
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
            hits10: a.item_rank.iter().filter(|&&r| (1..=10).contains(&r)).count(),
            repeat_hits10: a.item_rank.iter().zip(&repeats).filter(|(r, rep)| (1..=10).contains(*r) && **rep).count(),
        })
        .collect();
    (results, schedule)
}
