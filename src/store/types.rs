//! The rows and values the store hands out and takes in.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{StoreError, StoreResult};
use crate::domain::{Event, User};

/// What `DELETE /v1/users/{id}` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Erased {
    pub users: u64,
    pub events: u64,
    pub push_states: u64,
    pub pushes: u64,
}

impl Erased {
    pub fn anything(&self) -> bool {
        self.users + self.events + self.push_states + self.pushes > 0
    }
}

/// An event with its position in the log, for incremental consumers.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: i64,
    pub event: Event,
}

/// Where a push is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PushStatus {
    /// In the outbox, waiting for its send time.
    Planned,
    /// Handed to the gateway; offered again when the lease ends unacknowledged.
    Leased,
    Delivered,
    Failed,
    /// Not delivered before `expires_at`.
    Expired,
    /// Withdrawn (the user unsubscribed or lost consent).
    Cancelled,
}

impl PushStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PushStatus::Planned => "planned",
            PushStatus::Leased => "leased",
            PushStatus::Delivered => "delivered",
            PushStatus::Failed => "failed",
            PushStatus::Expired => "expired",
            PushStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "planned" => PushStatus::Planned,
            "leased" => PushStatus::Leased,
            "delivered" => PushStatus::Delivered,
            "failed" => PushStatus::Failed,
            "expired" => PushStatus::Expired,
            "cancelled" => PushStatus::Cancelled,
            other => return Err(StoreError::Corrupt(format!("push status {other:?}"))),
        })
    }
}

/// A push in the outbox.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Push {
    pub push_id: Uuid,
    pub user_id: String,
    pub item_id: String,
    pub send_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub score: f64,
    /// Why this item, from scoring.
    #[schema(value_type = Object)]
    pub reasons: serde_json::Value,
    pub status: PushStatus,
    pub leased_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One user's rows for serving them (`Store::user_view_rows`).
#[derive(Debug, Clone)]
pub struct UserViewRows {
    /// Newest events inside the window, oldest first.
    pub events: Vec<Event>,
    /// From their settings, when they have any.
    pub timezone: Option<chrono_tz::Tz>,
    /// The frequency policy's `PushState` as JSON, when planned at least once.
    pub push_state: Option<serde_json::Value>,
}

/// A user's stored push state row.
#[derive(Debug, Clone)]
pub struct PushStateRow {
    pub user_id: String,
    /// Guards read-modify-write: a write names the version it read.
    pub version: i64,
    pub next_due_at: DateTime<Utc>,
    /// The frequency policy's `PushState` as JSON; `None` before the first plan.
    pub state: Option<serde_json::Value>,
}

/// What one scheduler decision writes for one claimed user.
#[derive(Debug, Clone)]
pub struct UserPlan {
    pub user_id: String,
    /// The version read at claim time.
    pub version: i64,
    /// The new `PushState`, serialised to JSON.
    pub state: String,
    pub next_due_at: DateTime<Utc>,
    pub push: Option<Push>,
    /// What the push-response model saw of the push (JSON), stored with it for training.
    pub push_features: Option<String>,
    /// The `Decision`, serialised to JSON.
    pub decision: String,
}

/// What committing a batch of plans did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanCommit {
    pub pushes: u64,
    /// Plans dropped because the row changed since the claim (feedback) or the claim was lost.
    pub conflicts: u64,
    /// Pushes not written because the user already has one at that slot.
    pub slot_taken: u64,
}

/// Feedback to record together with the new state it produced.
#[derive(Debug, Clone)]
pub struct FeedbackWrite {
    pub push_id: Uuid,
    pub kind: String,
    pub ts: DateTime<Utc>,
    pub user_id: String,
    pub expected_version: i64,
    pub state: serde_json::Value,
    /// New status of the push, when the feedback changes it (delivered, failed).
    pub push_status: Option<PushStatus>,
    /// Withdraw the user's planned pushes (unsubscribe).
    pub cancel_open_pushes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackOutcome {
    Applied,
    /// The same (push, kind) was recorded before: nothing changed.
    Duplicate,
    /// The state changed since it was read: read again and retry.
    Conflict,
}

/// What changed about a user, for the caches of every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Erased (`DELETE /v1/users/{id}`): drop everything cached, scrub the statistics.
    Erased,
    /// Settings written (time zone, consent, quiet hours).
    Settings,
    /// Push state or outbox changed (a push planned, feedback applied).
    Push,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Erased => "erased",
            ChangeKind::Settings => "settings",
            ChangeKind::Push => "push",
        }
    }

    pub fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "erased" => ChangeKind::Erased,
            "settings" => ChangeKind::Settings,
            "push" => ChangeKind::Push,
            other => return Err(StoreError::Corrupt(format!("user change kind {other:?}"))),
        })
    }
}

/// One row of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    /// The log's own number (unique; not in commit order).
    pub seq: i64,
    pub user_id: String,
    pub kind: ChangeKind,
    pub changed_at: DateTime<Utc>,
}

/// A place in the change log: changes after it in (time, sequence) order are read. Many
/// changes share one time (one transaction's), so the time alone cannot page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeCursor {
    pub changed_at: DateTime<Utc>,
    pub seq: i64,
}

impl ChangeCursor {
    /// Every change logged after `t`.
    pub fn after(t: DateTime<Utc>) -> ChangeCursor {
        ChangeCursor { changed_at: t, seq: i64::MAX }
    }

    /// Just after `change`.
    pub fn at(change: &UserChange) -> ChangeCursor {
        ChangeCursor { changed_at: change.changed_at, seq: change.seq }
    }
}

/// What writing a user's settings did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserWrite {
    /// Planned and leased pushes withdrawn because consent is off.
    pub cancelled_pushes: u64,
    /// Consent turned on after an unsubscribe: recorded as a resubscribe.
    pub resubscribed: bool,
}


/// A model to store.
#[derive(Debug, Clone)]
pub struct NewModel {
    /// `ranker` (the learned ranker).
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    /// Make it the model in force now (it passed the deployment rule).
    pub deploy: bool,
    /// What the training measured, as JSON.
    pub metrics: serde_json::Value,
    /// The model's parameters (its JSON document).
    pub params: String,
}

/// One fetched push of the push log, with what the policy saw and what came of it.
#[derive(Debug, Clone, PartialEq)]
pub struct PushOutcomeRow {
    pub send_at: DateTime<Utc>,
    /// The push-response features recorded when it was planned.
    pub features: serde_json::Value,
    /// Any feedback at all (a push without any may still be answered, until the ignore window ends).
    pub answered: bool,
    pub opened: bool,
    pub converted: bool,
    pub unsubscribed: bool,
}

/// A stored model, without its parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ModelRow {
    pub version: i64,
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    /// When it was last made the model in force (never: `null`).
    pub deployed_at: Option<DateTime<Utc>>,
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
    /// Size of the stored parameters, bytes.
    pub params_bytes: i64,
}


/// (consent, unsubscribed at, resubscribed at) as stored.
pub(crate) type StoredSubscription = (bool, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A user's subscription columns after a settings write: consent on after an unsubscribe
/// is a resubscribe (recorded at the write's time); otherwise they stay as they were.
pub(crate) struct Subscription {
    pub unsubscribed_at: Option<DateTime<Utc>>,
    pub resubscribed_at: Option<DateTime<Utc>>,
    pub resubscribed: bool,
}

impl Subscription {
    /// From the stored (consent, unsubscribed at, resubscribed at), if any, and the new settings.
    pub(crate) fn after_write(old: Option<StoredSubscription>, user: &User) -> Self {
        let (unsubscribed_at, resubscribed_at) = old.map_or((None, None), |(_, u, r)| (u, r));
        let resubscribed = user.push_consent && unsubscribed_at.is_some();
        Subscription {
            unsubscribed_at: if resubscribed { None } else { unsubscribed_at },
            resubscribed_at: if resubscribed { Some(user.updated_at) } else { resubscribed_at },
            resubscribed,
        }
    }
}
