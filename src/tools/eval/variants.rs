//! The variants a report compares.

use super::*;

// ---------------------------------------------------------------------------------------
// Variants
// ---------------------------------------------------------------------------------------

/// How a variant ranks.
#[derive(Clone, Debug)]
pub enum Method {
    /// kairos: `InterestVector::build` with `decay` and the configured kind weights, then
    /// `Scorer::rank` with `scoring`: by the model the replay's retraining deployed when
    /// `learned` (the hand-set blend until a first model exists), else by the hand-set blend.
    /// With `sequence`, the sequence model the replay trained is in force too (its nearest
    /// items join the candidates) and the learned ranker is the one trained with its score.
    Kairos { decay: Decay, scoring: Box<ScoringConfig>, learned: bool, sequence: bool },
    /// The sequence model alone: the items of its table nearest to the user's state, then
    /// popularity (a user it cannot encode, or before its first training).
    Sequence,
    /// Item-kNN alone: Σ cosine similarity (the statistics' item-kNN) to the user's last
    /// `sources` distinct items, the user's own items excluded, then popularity.
    Knn { sources: usize },
    /// The yardstick of DESIGN.md: the user's own items by `Σ w_ref(kind) · d(age)` (pv 1,
    /// fav 2, cart 3, buy 4), then every other item by `Σ w_ref · d(age)` over all users.
    /// `decay` must be exponential or none (exact incremental popularity).
    Reference { decay: Decay },
    /// Items by `Stats` popularity (global segment, configured kind weights) under `decay`.
    Popularity { decay: Decay },
}

/// Where a row is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The shipped configuration and the yardstick.
    Headline,
    /// kairos with other decay functions (everything else as configured).
    Decay,
    /// kairos with one scoring component changed or isolated.
    Ablation,
    /// Baselines that do not use kairos' scoring.
    Baseline,
}

/// Curves of the plot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    Kairos,
    Reference,
}

/// One configuration evaluated.
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    pub group: Group,
    pub method: Method,
    /// A point of a plotted curve (exponential decay, at this half-life).
    pub curve: Option<(Curve, f64)>,
}

impl Variant {
    pub(super) fn cost(&self) -> u32 {
        match self.method {
            Method::Kairos { sequence: true, .. } => 40,
            Method::Sequence => 10,
            Method::Kairos { learned: true, .. } => 30,
            Method::Kairos { .. } => 20,
            Method::Knn { .. } => 4,
            Method::Reference { .. } => 2,
            Method::Popularity { .. } => 1,
        }
    }
}

/// Half-lives (hours) swept for the plot.
pub const HALF_LIVES: [f64; 8] = [1.0, 3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 168.0];

/// Name of the shipped configuration's row.
pub const DEFAULT_ROW: &str = "kairos default (config/default.toml)";
/// Name of the hand-set blend's row (the shipped config without a model).
pub const HANDSET_ROW: &str = "kairos hand-set blend (no model)";
/// Name of the sequence model's row.
pub const SEQUENCE_ROW: &str = "sequence model alone (nearest items to the user's state)";
/// Name of the learned ranker's row with the sequence model flipped from the shipped setting.
pub const SEQUENCE_FLIP_ON: &str = "kairos learned ranker + sequence model (feature and candidates)";
pub const SEQUENCE_FLIP_OFF: &str = "kairos learned ranker without the sequence model";
/// Name of the item-kNN baseline's row.
pub const KNN_ROW: &str = "item-kNN: cosine with the last 10 distinct items, own items excluded";
/// Name of the yardstick's row.
pub const REFERENCE_ROW: &str = "reference: own items + popularity, exp 6h";
/// Name of the yardstick without decay.
pub const REFERENCE_NONE_ROW: &str = "reference, no decay";
/// Global popularity.
pub const POPULARITY_ROW: &str = "global popularity (all time)";

/// Every variant of the report, built from the configured tuning.
pub fn variants(tuning: &Tuning) -> Vec<Variant> {
    let base = tuning.scoring.clone();
    let kairos = |name: String, group: Group, decay: Decay, scoring: ScoringConfig| Variant {
        name,
        group,
        method: Method::Kairos { decay, scoring: Box::new(scoring), learned: false, sequence: false },
        curve: None,
    };
    let mut v = vec![
        Variant {
            name: DEFAULT_ROW.into(),
            group: Group::Headline,
            method: Method::Kairos { decay: tuning.decay.clone(), scoring: Box::new(base.clone()), learned: tuning.model.enabled, sequence: tuning.sequence.enabled },
            curve: None,
        },
        Variant {
            name: if tuning.sequence.enabled { SEQUENCE_FLIP_OFF } else { SEQUENCE_FLIP_ON }.into(),
            group: Group::Headline,
            method: Method::Kairos { decay: tuning.decay.clone(), scoring: Box::new(base.clone()), learned: true, sequence: !tuning.sequence.enabled },
            curve: None,
        },
        Variant { name: SEQUENCE_ROW.into(), group: Group::Headline, method: Method::Sequence, curve: None },
        kairos(HANDSET_ROW.into(), Group::Headline, tuning.decay.clone(), base.clone()),
        Variant { name: KNN_ROW.into(), group: Group::Headline, method: Method::Knn { sources: 10 }, curve: None },
        Variant {
            name: REFERENCE_ROW.into(),
            group: Group::Headline,
            method: Method::Reference { decay: Decay::Exponential { half_life_hours: 6.0 } },
            curve: None,
        },
        Variant {
            name: REFERENCE_NONE_ROW.into(),
            group: Group::Headline,
            method: Method::Reference { decay: Decay::None },
            curve: None,
        },
        Variant {
            name: POPULARITY_ROW.into(),
            group: Group::Headline,
            method: Method::Popularity { decay: Decay::None },
            curve: None,
        },
    ];
    // Decay functions for the user's own events.
    v.push(kairos("kairos, decay none".into(), Group::Decay, Decay::None, base.clone()));
    for h in HALF_LIVES {
        let decay = Decay::Exponential { half_life_hours: h };
        let mut k = kairos(format!("kairos, {}", decay.label()), Group::Decay, decay, base.clone());
        k.curve = Some((Curve::Kairos, h));
        v.push(k);
    }
    for decay in [
        Decay::Sigmoid { midpoint_hours: 24.0, steepness_per_hour: 0.25 },
        Decay::Sigmoid { midpoint_hours: 6.0, steepness_per_hour: 1.0 },
        Decay::Linear { window_hours: 72.0 },
        Decay::Linear { window_hours: 24.0 },
    ] {
        v.push(kairos(format!("kairos, {}", decay.label()), Group::Decay, decay, base.clone()));
    }
    // Components.
    let d = tuning.decay.clone();
    v.push(kairos(
        "kairos hand-set, context off (λ_c = 0)".into(),
        Group::Ablation,
        d.clone(),
        ScoringConfig { lambda_context: 0.0, ..base.clone() },
    ));
    v.push(kairos(
        "kairos hand-set, bought items count fully (bought_item_factor 1)".into(),
        Group::Ablation,
        d.clone(),
        ScoringConfig { bought_item_factor: 1.0, ..base.clone() },
    ));
    v.push(kairos(
        "kairos hand-set, purchased filter 7 days".into(),
        Group::Ablation,
        d.clone(),
        ScoringConfig { purchased_filter_days: 7.0, ..base.clone() },
    ));
    v.push(kairos(
        "kairos, co-occurrence only".into(),
        Group::Ablation,
        d.clone(),
        ScoringConfig { lambda_time: 0.0, lambda_context: 0.0, lambda_trending: 0.0, lambda_cooccurrence: 1.0, ..base.clone() },
    ));
    // Baselines.
    v.push(Variant {
        name: format!("recent popularity ({})", base.trending_decay.label()),
        group: Group::Baseline,
        method: Method::Popularity { decay: base.trending_decay.clone() },
        curve: None,
    });
    for h in HALF_LIVES {
        let decay = Decay::Exponential { half_life_hours: h };
        let name = if h == 6.0 { REFERENCE_ROW.to_string() } else { format!("reference, {}", decay.label()) };
        if let Some(existing) = v.iter_mut().find(|x| x.name == name) {
            existing.curve = Some((Curve::Reference, h));
            continue;
        }
        v.push(Variant {
            name,
            group: Group::Baseline,
            method: Method::Reference { decay },
            curve: Some((Curve::Reference, h)),
        });
    }
    // The configured decay is one of the sweep's points: mark the hand-set row, drop the copy.
    if let Decay::Exponential { half_life_hours } = tuning.decay {
        let dup = v.iter().position(|x| {
            x.group == Group::Decay && matches!(&x.method, Method::Kairos { decay, .. } if *decay == tuning.decay)
        });
        if let Some(i) = dup {
            v.remove(i);
            if let Some(handset) = v.iter_mut().find(|x| x.name == HANDSET_ROW) {
                handset.curve = Some((Curve::Kairos, half_life_hours));
            }
        }
    }
    v
}

