//! The learned ranker in force on this replica: the store says which version is in force
//! (pinned, else the latest deployed); every refresh checks, and a new version is loaded,
//! checked against the features this build computes, and swapped in atomically. A model
//! that does not load (corrupt, or for other features) is refused with a log line and a
//! metric, and the previous one keeps serving.

use std::sync::{Arc, Mutex, RwLock};

use crate::config::Tuning;
use crate::rank::features;
use crate::rank::profile::KindWeights;
use crate::rank::ranker::Ranker;
use crate::store::StoreResult;

use super::Engine;

/// The `kind` of the learned ranker's rows in the store.
pub const RANKER: &str = "ranker";

#[derive(Default)]
pub(super) struct Loaded {
    ranker: RwLock<Option<Arc<Ranker>>>,
    /// The last version refused, not tried again until another is in force.
    refused: Mutex<Option<i64>>,
}

impl Engine {
    /// The loaded model when `tuning` ranks with one and it fits `kinds`' features.
    pub(super) fn ranker(&self, tuning: &Tuning, kinds: &KindWeights) -> Option<Arc<Ranker>> {
        if !tuning.model.enabled {
            return None;
        }
        let model = self.models.ranker.read().expect("model lock").clone()?;
        features::matches(kinds, model.features()).then_some(model)
    }

    /// The version of the ranker this replica serves with (`None`: the hand-set blend).
    pub fn serving_model(&self) -> Option<u64> {
        self.models.ranker.read().expect("model lock").as_ref().map(|m| m.version)
    }

    /// Loads the version in force when it is not the one loaded. Returns the version now
    /// serving.
    pub async fn load_model(&self) -> StoreResult<Option<u64>> {
        let current = self.serving_model();
        let Some((version, _)) = self.store.model_in_force(RANKER).await? else {
            return Ok(current);
        };
        let wanted = u64::try_from(version).ok();
        if wanted == current || *self.models.refused.lock().expect("refused lock") == Some(version) {
            return Ok(current);
        }
        let tuning = self.tuning.get();
        let names = features::names(&self.kind_weights(&tuning));
        let loaded = match self.store.model_params(version).await? {
            Some(json) => Ranker::from_json(version as u64, &json, &names).map_err(|e| e.to_string()),
            None => Err("its row is gone".to_string()),
        };
        match loaded {
            Ok(model) => {
                *self.models.ranker.write().expect("model lock") = Some(Arc::new(model));
                *self.models.refused.lock().expect("refused lock") = None;
                metrics::counter!("kairos_model_loads_total", "outcome" => "loaded").increment(1);
                tracing::info!(version, "learned ranker loaded");
                Ok(wanted)
            }
            Err(reason) => {
                *self.models.refused.lock().expect("refused lock") = Some(version);
                metrics::counter!("kairos_model_loads_total", "outcome" => "refused").increment(1);
                tracing::error!(version, %reason, serving = ?current, "stored model refused; the previous one keeps serving");
                Ok(current)
            }
        }
    }
}
