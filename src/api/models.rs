//! Admin routes of the learned models: list versions with their metrics, train now, deploy
//! (roll back or forward to) a version, pin one.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{Params, Path};
use super::{ApiError, ApiResult, AppState, json_body};
use crate::domain::FieldError;
use crate::engine::trainer::{RunOutcome, TrainingRun};
use crate::parse::Fields;
use crate::engine::{PUSH_RESPONSE, RANKER};
use crate::store::ModelRow;

/// Versions listed.
const LISTED: i64 = 50;

pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/models", get(list_models))
        .route("/v1/admin/models/train", post(train))
        .route("/v1/admin/models/{version}/deploy", post(deploy))
        .route("/v1/admin/models/pin", put(pin))
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// The version in force in the store (pinned, else the latest deployed); `null`: none yet,
    /// the hand-set blend ranks.
    pub in_force: Option<i64>,
    pub pinned: bool,
    /// The version this replica ranks with now (it loads the one in force within a second).
    pub serving: Option<u64>,
    /// The version of the sequence model this replica serves with (`null`: none, or
    /// `tuning.sequence.enabled = false`); its rows are the `models` table's of kind `sequence`.
    pub sequence_serving: Option<u64>,
    /// This replica's last training run.
    pub last_run: Option<TrainingRun>,
    /// The latest versions, newest first, with what their training measured.
    pub models: Vec<ModelRow>,
    /// The push-response model (what the learned push policy decides with).
    pub push_response: ResponseModels,
}

/// The push-response model's versions: the latest trained one is in force.
#[derive(Serialize, ToSchema)]
pub struct ResponseModels {
    /// The version in force in the store; `null`: none yet, the hand-set push policy decides.
    pub in_force: Option<i64>,
    /// The version this replica decides with now, or why it decides by the hand-set policy.
    pub serving: Option<u64>,
    pub fallback: Option<String>,
    pub models: Vec<ModelRow>,
}

/// The learned ranker's versions.
#[utoipa::path(get, path = "/v1/admin/models", tag = "admin",
    responses((status = 200, body = ModelList)), security(("api_key" = [])))]
pub async fn list_models(State(state): State<AppState>) -> ApiResult<Json<ModelList>> {
    let (models, in_force, response_models, response_in_force) = tokio::try_join!(
        state.store.list_models(RANKER, LISTED),
        state.store.model_in_force(RANKER),
        state.store.list_models(PUSH_RESPONSE, LISTED),
        state.store.model_in_force(PUSH_RESPONSE),
    )?;
    let (serving_response, fallback) = state.engine.response_model();
    Ok(Json(ModelList {
        in_force: in_force.map(|(v, _)| v),
        pinned: in_force.is_some_and(|(_, p)| p),
        serving: state.trainer.serving().map(|m| m.version),
        sequence_serving: state.trainer.serving_sequence(),
        last_run: state.trainer.last_run(),
        models,
        push_response: ResponseModels {
            in_force: response_in_force.map(|(v, _)| v),
            serving: serving_response.as_ref().map(|m| m.version),
            fallback: serving_response.is_none().then(|| fallback.to_string()),
            models: response_models,
        },
    }))
}

/// Trains now on the configured window. With `wait=true` the answer is the run (200);
/// otherwise the training goes on in the background (202). 409 when one is running.
#[utoipa::path(post, path = "/v1/admin/models/train", tag = "admin",
    params(("wait" = Option<bool>, Query, description = "answer when the training is done")),
    responses((status = 200, body = TrainingRun), (status = 202, body = TrainingRun),
        (status = 409, description = "a training is running", body = super::Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn train(State(state): State<AppState>, q: Params) -> ApiResult<(StatusCode, Json<TrainingRun>)> {
    let mut errors = Vec::new();
    q.refuse_unknown(&["wait"], &mut errors);
    let wait = match q.get("wait").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            errors.push(FieldError::new("wait", "must be true or false"));
            false
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let busy = |run: TrainingRun| {
        ApiError::new(StatusCode::CONFLICT, "training-running", "A training is running").detail(run.reason.unwrap_or_default())
    };
    if wait {
        let run = state.trainer.train_now().await?;
        return match run.outcome {
            RunOutcome::Busy => Err(busy(run)),
            _ => Ok((StatusCode::OK, Json(run))),
        };
    }
    let trainer = state.trainer.clone();
    let started = TrainingRun {
        started_at: state.clock.now(),
        outcome: RunOutcome::Busy,
        version: None,
        reason: Some("started in the background; GET /v1/admin/models shows its result".into()),
        events_read: 0,
        events_used: 0,
        report: None,
        sequence: None,
        secs: 0.0,
        push_response: None,
    };
    tokio::spawn(async move {
        if let Err(e) = trainer.train_now().await {
            tracing::error!(error = ?e, "training failed");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(started)))
}

#[derive(Serialize, ToSchema)]
pub struct Deployed {
    pub in_force: Option<i64>,
    pub pinned: bool,
}

/// Makes `version` the latest deployment (a rollback or roll-forward). A pin still wins.
#[utoipa::path(post, path = "/v1/admin/models/{version}/deploy", tag = "admin",
    params(("version" = i64, Path, description = "model version (1 or more)")),
    responses((status = 200, body = Deployed), (status = 404, description = "no such version", body = super::Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn deploy(State(state): State<AppState>, Path(version): Path<String>) -> ApiResult<Json<Deployed>> {
    let version = parse_version(&version)?;
    if !state.store.deploy_model(version, state.clock.now()).await? {
        return Err(ApiError::not_found(&format!("model version {version}")));
    }
    state.engine.load_model().await?;
    in_force(&state).await
}

/// What `PUT /v1/admin/models/pin` accepts: a version to pin, or `null` to unpin (the key
/// is required either way).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PinIn {
    #[schema(required = true, minimum = 1)]
    version: Option<i64>,
}

/// Pins a version (`{"version": 3}`) or unpins (`{"version": null}`).
#[utoipa::path(put, path = "/v1/admin/models/pin", tag = "admin",
    request_body(content = PinIn),
    responses((status = 200, body = Deployed), (status = 404, description = "no such version", body = super::Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn pin(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> ApiResult<Json<Deployed>> {
    let body = json_body(&headers, body)?;
    let mut errors = Vec::new();
    let version = {
        let Some(mut f) = Fields::object(&body, "", None, &mut errors) else { return Err(ApiError::invalid(errors)) };
        f.deny_unknown(&["version"]);
        if body.get("version").is_none() {
            f.error("version", "is required (a model version, or null to unpin)");
        }
        f.opt_i64("version", 1, i64::MAX)
    };
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    if !state.store.pin_model(RANKER, version).await? {
        return Err(ApiError::not_found(&format!("model version {}", version.unwrap_or_default())));
    }
    state.engine.load_model().await?;
    in_force(&state).await
}

async fn in_force(state: &AppState) -> ApiResult<Json<Deployed>> {
    let now = state.store.model_in_force(RANKER).await?;
    Ok(Json(Deployed { in_force: now.map(|(v, _)| v), pinned: now.is_some_and(|(_, p)| p) }))
}

fn parse_version(s: &str) -> ApiResult<i64> {
    s.parse::<i64>().ok().filter(|v| *v >= 1).ok_or_else(|| ApiError::field("version", "must be a positive integer"))
}
