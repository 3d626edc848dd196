//! The learned ranker: a linear score over standardised features, trained listwise (see
//! `learn`). A model is data: its parameters are a JSON document stored in the store's
//! `models` table, versioned, and refused at load when they do not fit the features this
//! build computes.
//!
//! `score(x) = Σ_k w_k · (x_k − μ_k) / σ_k`. Its terms are the reasons of an answer: the
//! largest `w_k · (x_k − μ_k) / σ_k` of an item say what lifted it above an average candidate.

use serde::{Deserialize, Serialize};

/// The format tag of the parameters this build reads and writes.
pub const FORMAT: &str = "kairos-linear-ranker/1";

/// Why stored parameters were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("the parameters are not valid JSON of a ranker: {0}")]
    Malformed(String),
    #[error("format {found:?} is not {FORMAT:?}")]
    Format { found: String },
    #[error("the model's features ({found}) are not the ones this build computes ({expected})")]
    Features { found: String, expected: String },
    #[error("parameter {0} has the wrong length or a value that is not finite")]
    Invalid(&'static str),
}

/// The stored parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankerParams {
    pub format: String,
    /// Feature names, in row order (`features::names`).
    pub features: Vec<String>,
    /// Per feature, the mean and spread over the training rows.
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// Per feature, the weight of the standardised value.
    pub weights: Vec<f32>,
}

/// A loaded ranker.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranker {
    /// The store's version of the model (0 for one not stored, e.g. in a replay).
    pub version: u64,
    params: RankerParams,
    /// `w_k / σ_k`: the score is `Σ effective_k · x_k` plus a constant.
    effective: Vec<f32>,
}

impl Ranker {
    /// Checks `params` against the feature names this build computes.
    pub fn new(version: u64, params: RankerParams, expected: &[String]) -> Result<Ranker, ModelError> {
        if params.format != FORMAT {
            return Err(ModelError::Format { found: params.format });
        }
        if params.features != expected {
            return Err(ModelError::Features { found: params.features.join(","), expected: expected.join(",") });
        }
        let n = expected.len();
        for (name, v) in [("mean", &params.mean), ("scale", &params.scale), ("weights", &params.weights)] {
            if v.len() != n || v.iter().any(|x| !x.is_finite()) {
                return Err(ModelError::Invalid(name));
            }
        }
        if params.scale.iter().any(|&s| s <= 0.0) {
            return Err(ModelError::Invalid("scale"));
        }
        let effective = params.weights.iter().zip(&params.scale).map(|(w, s)| w / s).collect();
        Ok(Ranker { version, params, effective })
    }

    /// Reads stored parameters (JSON), see [`Ranker::new`].
    pub fn from_json(version: u64, json: &str, expected: &[String]) -> Result<Ranker, ModelError> {
        let params: RankerParams = serde_json::from_str(json).map_err(|e| ModelError::Malformed(e.to_string()))?;
        Ranker::new(version, params, expected)
    }

    pub fn params(&self) -> &RankerParams {
        &self.params
    }

    /// The parameters as stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.params).expect("ranker parameters serialise")
    }

    /// The ranking score of a feature row (comparable between candidates of one request).
    #[inline]
    pub fn score(&self, row: &[f32]) -> f64 {
        // Four running sums: one chain of additions would wait on each in turn (the rows of
        // every candidate of every request pass here).
        let (xs, ws) = (row.chunks_exact(4), self.effective.chunks_exact(4));
        let tail: f64 = xs.remainder().iter().zip(ws.remainder()).map(|(x, w)| f64::from(*x) * f64::from(*w)).sum();
        let mut acc = [0.0f64; 4];
        for (x, w) in xs.zip(ws) {
            for k in 0..4 {
                acc[k] += f64::from(x[k]) * f64::from(w[k]);
            }
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
    }

    /// Each feature's term `w_k · (x_k − μ_k) / σ_k` of `row`, in row order.
    pub fn contributions<'a>(&'a self, row: &'a [f32]) -> impl Iterator<Item = f64> + 'a {
        let p = &self.params;
        row.iter().enumerate().map(move |(k, &x)| f64::from(p.weights[k]) * f64::from(x - p.mean[k]) / f64::from(p.scale[k]))
    }

    /// The feature names, in row order.
    pub fn features(&self) -> &[String] {
        &self.params.features
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    fn params() -> RankerParams {
        RankerParams { format: FORMAT.into(), features: names(), mean: vec![1.0, 0.0], scale: vec![2.0, 1.0], weights: vec![4.0, -1.0] }
    }

    #[test]
    fn the_score_is_the_sum_of_the_contributions_up_to_a_constant() {
        let r = Ranker::new(3, params(), &names()).unwrap();
        let (x, y) = ([3.0f32, 1.0], [1.0f32, 5.0]);
        let cx: f64 = r.contributions(&x).sum();
        let cy: f64 = r.contributions(&y).sum();
        assert!(((r.score(&x) - r.score(&y)) - (cx - cy)).abs() < 1e-9);
        assert_eq!(r.contributions(&x).collect::<Vec<_>>(), vec![4.0, -1.0]);
        assert_eq!(Ranker::from_json(3, &r.to_json(), &names()).unwrap(), r, "round trip");
    }

    #[test]
    fn incompatible_or_corrupt_parameters_are_refused_with_the_reason() {
        let other = vec!["a".to_string(), "c".to_string()];
        assert!(matches!(Ranker::new(1, params(), &other), Err(ModelError::Features { .. })));
        assert!(matches!(Ranker::new(1, RankerParams { format: "x/9".into(), ..params() }, &names()), Err(ModelError::Format { .. })));
        assert!(matches!(Ranker::new(1, RankerParams { weights: vec![f32::NAN, 1.0], ..params() }, &names()), Err(ModelError::Invalid("weights"))));
        assert!(matches!(Ranker::new(1, RankerParams { mean: vec![0.0], ..params() }, &names()), Err(ModelError::Invalid("mean"))));
        assert!(matches!(Ranker::new(1, RankerParams { scale: vec![0.0, 1.0], ..params() }, &names()), Err(ModelError::Invalid("scale"))));
        assert!(matches!(Ranker::from_json(1, "{\"format\":", &names()), Err(ModelError::Malformed(_))));
    }
}
