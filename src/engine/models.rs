//! The learned models in force on this replica: the learned ranker, the sequence model and
//! the push-response model. The store says which version of each kind is in force (pinned, else the latest
//! deployed); every refresh checks, and a new version is loaded, checked against what this
//! build computes, and swapped in atomically. A model that does not load (corrupt, or made
//! for other features) is refused with a log line and a metric, and the previous one keeps
//! serving.

use std::sync::{Arc, Mutex, RwLock};

use crate::config::Tuning;
use crate::push::frequency::response::ResponseModel;
use crate::rank::features;
use crate::rank::profile::KindWeights;
use crate::rank::ranker::Ranker;
use crate::rank::sequence::SequenceModel;
use crate::store::StoreResult;

use super::Engine;

/// The `kind` of the learned ranker's rows in the store.
pub const RANKER: &str = "ranker";
/// The `kind` of the sequence model's rows.
pub const SEQUENCE: &str = "sequence";
/// The `kind` of the push-response model's rows.
pub const PUSH_RESPONSE: &str = "push_response";

/// One kind's model in force, and the last version refused (not tried again until another
/// version is in force).
pub(super) struct Slot<T> {
    model: RwLock<Option<Arc<T>>>,
    refused: Mutex<Option<i64>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot { model: RwLock::new(None), refused: Mutex::new(None) }
    }
}

impl<T> Slot<T> {
    pub(super) fn get(&self) -> Option<Arc<T>> {
        self.model.read().expect("model lock").clone()
    }
}

#[derive(Default)]
pub(super) struct Loaded {
    ranker: Slot<Ranker>,
    response: Slot<ResponseModel>,
    pub(super) sequence: Slot<SequenceModel>,
    /// Users' encoded histories, see `engine::sequence`.
    pub(super) encoded: super::sequence::EncodedCache,
}

impl Engine {
    /// The loaded ranker when `tuning` ranks with one and it fits `kinds`' features.
    pub(super) fn ranker(&self, tuning: &Tuning, kinds: &KindWeights) -> Option<Arc<Ranker>> {
        if !tuning.model.enabled {
            return None;
        }
        let model = self.models.ranker.get()?;
        features::matches(kinds, model.features()).then_some(model)
    }

    /// The version of the ranker this replica serves with (`None`: the hand-set blend).
    pub fn serving_model(&self) -> Option<u64> {
        self.models.ranker.get().map(|m| m.version)
    }

    /// The push-response model in force, or why the hand-set push policy decides.
    pub fn response_model(&self) -> (Option<Arc<ResponseModel>>, &'static str) {
        match self.models.response.get() {
            Some(m) => (Some(m), ""),
            None if self.models.response.refused.lock().expect("refused lock").is_some() => {
                (None, "the stored push-response model was refused at load")
            }
            None => (None, "no push-response model trained yet"),
        }
    }

    /// Loads the versions in force that are not the ones loaded. Returns the ranker's version
    /// now serving.
    pub async fn load_model(&self) -> StoreResult<Option<u64>> {
        let tuning = self.tuning.get();
        let kinds = self.kind_weights(&tuning);
        let (names, with_sequence) = (features::names(&kinds), features::names_with(&kinds, true));
        // A ranker trained with the sequence model's score has it as its last feature.
        let parse_ranker = |v, json: &str| {
            Ranker::from_json(v, json, &names).or_else(|e| Ranker::from_json(v, json, &with_sequence).map_err(|_| e)).map_err(|e| e.to_string())
        };
        let ranker = self.load_kind(RANKER, &self.models.ranker, parse_ranker, |m| m.version).await?;
        if tuning.sequence.enabled {
            let parse = |v, json: &str| {
                let model = SequenceModel::from_json(v, json).map_err(|e| e.to_string())?;
                let catalog = self.catalog.read().expect("catalog lock");
                model.check_catalogue(&|id| catalog.idx(id).is_some()).map_err(|e| e.to_string())?;
                Ok(model)
            };
            self.load_kind(SEQUENCE, &self.models.sequence, parse, |m| m.version).await?;
        }
        self.load_kind(PUSH_RESPONSE, &self.models.response, |v, json| ResponseModel::from_json(v, json).map_err(|e| e.to_string()), |m| m.version)
            .await?;
        Ok(ranker)
    }

    async fn load_kind<T>(
        &self,
        kind: &'static str,
        slot: &Slot<T>,
        parse: impl Fn(u64, &str) -> Result<T, String>,
        version_of: fn(&T) -> u64,
    ) -> StoreResult<Option<u64>> {
        let current = slot.get().map(|m| version_of(&m));
        let Some((version, _)) = self.store.model_in_force(kind).await? else {
            return Ok(current);
        };
        let wanted = u64::try_from(version).ok();
        if wanted == current || *slot.refused.lock().expect("refused lock") == Some(version) {
            return Ok(current);
        }
        let loaded = match self.store.model_params(version).await? {
            Some(json) => parse(version as u64, &json),
            None => Err("its row is gone".to_string()),
        };
        match loaded {
            Ok(model) => {
                *slot.model.write().expect("model lock") = Some(Arc::new(model));
                *slot.refused.lock().expect("refused lock") = None;
                metrics::counter!("kairos_model_loads_total", "kind" => kind, "outcome" => "loaded").increment(1);
                tracing::info!(kind, version, "model loaded");
                Ok(wanted)
            }
            Err(reason) => {
                *slot.refused.lock().expect("refused lock") = Some(version);
                metrics::counter!("kairos_model_loads_total", "kind" => kind, "outcome" => "refused").increment(1);
                tracing::error!(kind, version, %reason, serving = ?current, "stored model refused; the previous one keeps serving");
                Ok(current)
            }
        }
    }
}
