//! The gateway protocol: `GET /v1/pushes/due` (claim with a lease), `POST /v1/feedback`
//! (idempotent), and `GET /v1/users/{user_id}/push-plan` (what the policy will do, and why).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::users::user_path_id;
use super::extract::{Params, Path};
use super::{ApiError, ApiResult, AppState, json_body};
use crate::domain::FieldError;
use crate::push::frequency::{
    Decision, Feedback, FeedbackEffect, FeedbackKind, PushState, Recipient, collapse_repeated_skips, PlanSummary, summarise,
};
use crate::parse::Fields;
use crate::store::{FeedbackOutcome, FeedbackWrite, Push, PushStatus};

pub fn gateway_router() -> Router<AppState> {
    Router::new().route("/v1/pushes/due", get(get_due)).route("/v1/feedback", post(post_feedback))
}

pub fn read_router() -> Router<AppState> {
    Router::new().route("/v1/users/{user_id}/push-plan", get(get_push_plan))
}

#[derive(Serialize, ToSchema)]
pub struct DuePushes {
    /// Leased to the caller until `lease_until`; acknowledge each with feedback before then.
    pub pushes: Vec<Push>,
    pub lease_until: DateTime<Utc>,
}

/// The query of `GET /v1/pushes/due` (for the OpenAPI document; the maximum is set from
/// `server.max_page` when the document is served).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DueQuery {
    /// Most pushes to claim, 1..=`server.max_page` (default 100).
    #[param(minimum = 1)]
    limit: Option<u32>,
}

/// Claims due pushes with a lease. A push not acknowledged (delivered/failed) before its lease
/// ends is offered again; a push past its expiry is dropped and recorded as expired.
#[utoipa::path(get, path = "/v1/pushes/due", tag = "gateway",
    params(DueQuery),
    responses((status = 200, body = DuePushes)),
    security(("api_key" = [])))]
pub async fn get_due(State(state): State<AppState>, q: Params) -> ApiResult<Json<DuePushes>> {
    let max = state.settings.server.max_page;
    let mut errors = Vec::new();
    q.refuse_unknown(&["limit"], &mut errors);
    let limit = match q.get("limit").map(String::as_str) {
        None => 100.min(max),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                errors.push(FieldError::new("limit", format!("must be an integer in 1..={max}")));
                0
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let now = state.clock.now();
    let expired = state.store.expire_pushes(now).await?;
    if !expired.is_empty() {
        metrics::counter!("kairos_pushes_total", "outcome" => "expired").increment(expired.len() as u64);
    }
    let lease_until = now + TimeDelta::seconds(state.tuning.get().scheduler.lease_secs);
    let pushes = state.store.claim_due_pushes(now, i64::from(limit), lease_until).await?;
    metrics::counter!("kairos_pushes_total", "outcome" => "leased").increment(pushes.len() as u64);
    Ok(Json(DuePushes { pushes, lease_until }))
}

/// What `POST /v1/feedback` accepts (a mirror of `post_feedback`'s reading, for the OpenAPI
/// document). `ts` (default: now) must not be later than `ingest.max_future_secs` ahead, nor
/// earlier than the push was planned.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct FeedbackIn {
    push_id: uuid::Uuid,
    /// delivered, opened, clicked, dismissed, converted, failed or unsubscribed.
    kind: String,
    ts: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct FeedbackReply {
    /// False when the same (push, kind) was reported before: nothing changed.
    pub applied: bool,
    pub duplicate: bool,
    pub target_frequency_before: Option<f64>,
    pub target_frequency_after: Option<f64>,
    /// Set when a dismissal suppressed the item.
    pub suppressed_until: Option<DateTime<Utc>>,
    /// True when the user unsubscribed: every open push was withdrawn.
    pub stopped: bool,
}

/// How many times a feedback write is retried when the state changed underneath it.
const FEEDBACK_RETRIES: usize = 5;

/// Reports what happened to a push. Idempotent per (push_id, kind).
///
/// Refused: an unknown push (404), a `ts` earlier than the push was planned or more than
/// `ingest.max_future_secs` ahead (422), feedback on a push that expired or was withdrawn
/// (409: it was never delivered as far as kairos knows).
#[utoipa::path(post, path = "/v1/feedback", tag = "gateway",
    request_body(content = FeedbackIn),
    responses((status = 200, body = FeedbackReply), (status = 404, description = "unknown push", body = super::Problem, content_type = "application/problem+json"),
        (status = 409, description = "the push expired or was withdrawn", body = super::Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn post_feedback(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<FeedbackReply>> {
    let body = json_body(&headers, body)?;
    let now = state.clock.now();
    let mut errors: Vec<FieldError> = Vec::new();
    let mut f = Fields::object(&body, "", None, &mut errors).ok_or_else(|| ApiError::field("body", "must be a JSON object"))?;
    f.deny_unknown(&["push_id", "kind", "ts"]);
    let push_id = f.opt_uuid("push_id");
    if !f.has("push_id") {
        f.error("push_id", "is required");
    }
    let kind = f.opt_str("kind", 32).and_then(|k| {
        FeedbackKind::parse(&k).or_else(|| {
            f.error("kind", "must be one of delivered, opened, clicked, dismissed, converted, failed, unsubscribed");
            None
        })
    });
    if !f.has("kind") {
        f.error("kind", "is required");
    }
    let ts = f.opt_time("ts").unwrap_or(now);
    if ts > now + TimeDelta::seconds(state.settings.ingest.max_future_secs) {
        f.error("ts", "is in the future");
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let (push_id, kind) = (push_id.expect("checked"), kind.expect("checked"));
    let push = state.store.get_push(push_id).await?.ok_or_else(|| ApiError::not_found("the push"))?;
    if ts < push.created_at {
        return Err(ApiError::field("ts", "is earlier than the push was planned"));
    }
    if matches!(push.status, PushStatus::Expired | PushStatus::Cancelled) {
        return Err(ApiError::new(StatusCode::CONFLICT, "push-closed", "The push is closed")
            .detail(format!("the push was {} and never delivered; feedback is not accepted", push.status.as_str())));
    }
    let tuning = state.tuning.get();
    let cfg = &tuning.frequency;
    let user = state.store.get_user(&push.user_id).await?.ok_or_else(|| ApiError::not_found("the push's user"))?;
    for _ in 0..FEEDBACK_RETRIES {
        let row = state.store.get_push_state(&push.user_id).await?.ok_or_else(|| ApiError::not_found("the push's user state"))?;
        let mut push_state: PushState = match row.state.clone().map(serde_json::from_value) {
            Some(Ok(s)) => s,
            _ => PushState::new(0.0, now, cfg),
        };
        let effect: FeedbackEffect = push_state.apply_feedback(
            &Feedback { push_id: &push_id.to_string(), item_id: &push.item_id, kind, ts },
            user.timezone,
            None,
            now,
            cfg,
        );
        let push_status = match kind {
            FeedbackKind::Failed => Some(PushStatus::Failed),
            FeedbackKind::Delivered | FeedbackKind::Opened | FeedbackKind::Clicked | FeedbackKind::Converted | FeedbackKind::Dismissed
                if matches!(push.status, PushStatus::Planned | PushStatus::Leased) =>
            {
                Some(PushStatus::Delivered)
            }
            _ => None,
        };
        let write = FeedbackWrite {
            push_id,
            kind: kind.as_str().to_string(),
            ts,
            user_id: push.user_id.clone(),
            expected_version: row.version,
            state: serde_json::to_value(&push_state).map_err(|e| ApiError::internal(&e))?,
            push_status,
            cancel_open_pushes: kind == FeedbackKind::Unsubscribed,
        };
        match state.store.record_feedback(&write, now).await? {
            FeedbackOutcome::Applied => {
                // The cached view holds the items pushed to or suppressed for the user.
                state.engine.forget_user(&push.user_id);
                metrics::counter!("kairos_feedback_total", "kind" => kind.as_str()).increment(1);
                return Ok(Json(FeedbackReply {
                    applied: true,
                    duplicate: false,
                    target_frequency_before: Some(effect.frequency_before),
                    target_frequency_after: Some(effect.frequency_after),
                    suppressed_until: effect.suppressed_until,
                    stopped: effect.stopped,
                }));
            }
            FeedbackOutcome::Duplicate => {
                metrics::counter!("kairos_feedback_total", "kind" => "duplicate").increment(1);
                return Ok(Json(FeedbackReply {
                    applied: false,
                    duplicate: true,
                    target_frequency_before: None,
                    target_frequency_after: None,
                    suppressed_until: None,
                    stopped: false,
                }));
            }
            FeedbackOutcome::Conflict => continue,
        }
    }
    Err(ApiError::unavailable("contended", "The user's state is changing; retry", 1))
}

#[derive(Serialize, ToSchema)]
pub struct PushPlan {
    pub user_id: String,
    pub push_consent: bool,
    pub timezone: String,
    /// When the user last unsubscribed, and last resubscribed (consent on again afterwards).
    pub unsubscribed_at: Option<DateTime<Utc>>,
    pub resubscribed_at: Option<DateTime<Utc>>,
    /// What the policy's state says (see `push::frequency::plan`): its fields agree with
    /// each other and with the decisions below.
    #[serde(flatten)]
    pub plan: PlanSummary,
    /// The most recent decisions, newest first, each with its reasons and inputs.
    #[schema(value_type = Vec<Object>)]
    pub decisions: Vec<Decision>,
    /// The most recent pushes in the outbox, newest first.
    pub recent_pushes: Vec<Push>,
}

/// What the push policy will do for this user, and the reasons for its last decisions.
#[utoipa::path(get, path = "/v1/users/{user_id}/push-plan", tag = "gateway",
    params(("user_id" = String, Path, description = "user id")),
    responses((status = 200, body = PushPlan), (status = 404, response = super::openapi::NotFound)),
    security(("api_key" = [])))]
pub async fn get_push_plan(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<PushPlan>> {
    user_path_id(&id)?;
    let user = state.store.get_user(&id).await?.ok_or_else(|| ApiError::not_found("the user"))?;
    let row = state.store.get_push_state(&id).await?;
    let recent_pushes = state.store.user_pushes(&id, 10).await?;
    let tuning = state.tuning.get();
    let cfg = &tuning.frequency;
    // Read a few more than shown, since repeats of one skip are collapsed.
    let logged = state.store.recent_decisions(&id, (cfg.decision_log_len as i64).saturating_mul(4)).await?;
    let decisions = collapse_repeated_skips(
        logged.into_iter().filter_map(|v| serde_json::from_value::<Decision>(v).ok()),
        cfg.decision_log_len,
    );
    let now = state.clock.now();
    let push_state: Option<PushState> = row.as_ref().and_then(|r| r.state.clone()).and_then(|v| serde_json::from_value(v).ok());
    let population = state.engine.population_activity();
    let recipient = Recipient::from(&user);
    let plan = PushPlan {
        user_id: user.user_id.clone(),
        push_consent: user.push_consent,
        timezone: user.timezone.name().to_string(),
        unsubscribed_at: user.unsubscribed_at,
        resubscribed_at: user.resubscribed_at,
        plan: summarise(push_state.as_ref(), row.as_ref().map(|r| r.next_due_at), &recipient, &population, now, cfg),
        decisions,
        recent_pushes,
    };
    Ok(Json(plan))
}
