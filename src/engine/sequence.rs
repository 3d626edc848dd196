//! Serving the sequence model: the model in force (when `tuning.sequence.enabled`), and each
//! user's encoded history, kept between their events: the encoder runs once per new event of
//! a user (or per new model), and each request adds only the query part (the time since the
//! last event and the request's context), which is cheap.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Offset, Utc};
use chrono_tz::Tz;

use super::Engine;
use super::trainer::offset_at;
use crate::config::Tuning;
use crate::domain::Device;
use crate::rank::catalog::{Catalog, StrMap};
use crate::rank::history::{HistoryEvent, Packed};
use crate::rank::sequence::{Encoded, Moment, SequenceModel};

/// Users whose encoded history is kept; beyond it the cache starts again (the encoder is
/// cheap enough that a full refill costs one encoding per active user).
const MAX_USERS: usize = 100_000;

/// What an encoding was made from.
#[derive(Clone, PartialEq)]
struct Key {
    model: u64,
    events: usize,
    last: Option<Packed>,
}

/// A user's encoded history (`None`: nothing the model can read) and what it was made from.
type Entry = (Key, Option<Arc<Encoded>>);

/// Users' encoded histories, each with what it was made from.
#[derive(Default)]
pub(super) struct EncodedCache {
    users: Mutex<StrMap<String, Entry>>,
}

impl Engine {
    /// The sequence model in force, when `tuning` uses one.
    pub fn sequence_model(&self, tuning: &Tuning) -> Option<Arc<SequenceModel>> {
        if !tuning.sequence.enabled {
            return None;
        }
        self.models.sequence.get()
    }

    /// The version of the sequence model this replica serves with.
    pub fn serving_sequence_model(&self) -> Option<u64> {
        self.sequence_model(&self.tuning.get()).map(|m| m.version)
    }

    /// The user's state for a request at `at` (in `zone`, on `device`): their encoded history
    /// (from the cache when it was made from these events by this model) plus the query. The
    /// events' local hours are read in `event_zone`, the zone their device last named (UTC
    /// when none did), as the trainer reads each event's own.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sequence_state(&self, model: &SequenceModel, user_id: &str, history: &[Packed], event_zone: Option<Tz>, catalog: &Catalog, zone: Tz, device: Option<Device>, at: DateTime<Utc>) -> Option<Vec<f32>> {
        let key = Key { model: model.version, events: history.len(), last: history.last().copied() };
        let cached = {
            let users = self.models.encoded.users.lock().expect("sequence cache lock");
            users.get(user_id).filter(|(k, _)| *k == key).map(|(_, e)| e.clone())
        };
        let encoded = match cached {
            Some(e) => e,
            None => {
                let offset = |e: &Packed| event_zone.map_or(0, |tz| offset_at(tz, e.ts()));
                let e = model.encode(history, catalog, &offset).map(Arc::new);
                let mut users = self.models.encoded.users.lock().expect("sequence cache lock");
                if users.len() >= MAX_USERS {
                    users.clear();
                }
                users.insert(user_id.to_string(), (key, e.clone()));
                e
            }
        };
        let offset = at.with_timezone(&zone).offset().fix().local_minus_utc();
        encoded.map(|e| model.state(&e, at, Moment::at(at, offset, device)))
    }

    /// Drops a user's encoded history (erasure).
    pub(super) fn forget_sequence_state(&self, user_id: &str) {
        self.models.encoded.users.lock().expect("sequence cache lock").remove(user_id);
    }
}
