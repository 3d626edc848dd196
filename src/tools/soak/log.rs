//! What the soak's tasks saw: answers by action and status, latencies, and what the service
//! said it committed.

use std::collections::BTreeMap;
use std::time::Instant;

use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use super::Conn;

/// What one task saw: answers by (action, status), latencies by action, and what it was told
/// was committed.
#[derive(Default)]
pub(super) struct Log {
    pub(super) statuses: BTreeMap<(&'static str, u16), u64>,
    pub(super) transport_errors: BTreeMap<&'static str, u64>,
    pub(super) latency: BTreeMap<&'static str, Histogram<u64>>,
    /// Fresh events acknowledged (202).
    pub(super) acked: Vec<Uuid>,
    pub(super) duplicates_sent: u64,
    /// A re-sent acknowledged event answered anything but `duplicates: 1` (or a fresh batch
    /// was not all accepted).
    pub(super) ack_mismatches: u64,
    pub(super) pushes_leased: u64,
    pub(super) feedback_applied: u64,
    /// Erased users (200 on DELETE) and their events acknowledged before the erase.
    pub(super) erased: Vec<String>,
    pub(super) erased_events: Vec<Uuid>,
    /// Milliseconds until the other replica stopped serving an erased user.
    pub(super) erase_visible_ms: Vec<u64>,
    pub(super) erase_not_visible: u64,
}

impl Log {
    /// Sends one request, recording its status and latency under `action`.
    pub(super) async fn call(&mut self, conn: &mut Conn, action: &'static str, method: Method, path: &str, body: Option<Value>) -> Option<(StatusCode, Value)> {
        let t0 = Instant::now();
        let result = conn.exchange(method, path, body.map(|b| b.to_string().into_bytes())).await;
        let us = t0.elapsed().as_micros() as u64;
        match result {
            Ok((status, bytes)) => {
                *self.statuses.entry((action, status.as_u16())).or_default() += 1;
                self.latency
                    .entry(action)
                    .or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"))
                    .saturating_record(us.max(1));
                Some((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
            }
            Err(_) => {
                *self.transport_errors.entry(action).or_default() += 1;
                None
            }
        }
    }

    pub(super) fn merge(&mut self, other: Log) {
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.transport_errors {
            *self.transport_errors.entry(k).or_default() += v;
        }
        for (k, h) in other.latency {
            match self.latency.get_mut(k) {
                Some(mine) => mine.add(h).expect("same bounds"),
                None => {
                    self.latency.insert(k, h);
                }
            }
        }
        self.acked.extend(other.acked);
        self.duplicates_sent += other.duplicates_sent;
        self.ack_mismatches += other.ack_mismatches;
        self.pushes_leased += other.pushes_leased;
        self.feedback_applied += other.feedback_applied;
        self.erased.extend(other.erased);
        self.erased_events.extend(other.erased_events);
        self.erase_visible_ms.extend(other.erase_visible_ms);
        self.erase_not_visible += other.erase_not_visible;
    }
}

