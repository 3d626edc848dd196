//! `POST /v1/events`: one event or a batch; 202 only after the commit.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};

use super::{ApiResult, AppState, json_body};
use crate::ingest::{IngestOutcome, ParseLimits, parse_events};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/events", post(post_events))
}

/// Ingest one event or `{"events": [...]}` (up to the configured maximum, 1,000 by default).
#[utoipa::path(post, path = "/v1/events", tag = "ingest",
    request_body(content = serde_json::Value, description = "one event, or {\"events\": [...]}"),
    responses(
        (status = 202, description = "committed", body = IngestOutcome),
        (status = 400, description = "malformed JSON", body = super::Problem),
        (status = 413, description = "body too large", body = super::Problem),
        (status = 415, description = "not JSON", body = super::Problem),
        (status = 422, description = "a field is invalid; nothing was stored", body = super::Problem),
        (status = 429, description = "a user over the per-minute limit; nothing was stored (Retry-After)", body = super::Problem),
        (status = 503, description = "queue full or shutting down (Retry-After)", body = super::Problem),
    ),
    security(("api_key" = [])))]
pub async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<IngestOutcome>)> {
    let body = json_body(&headers, body)?;
    let tuning = state.tuning.get();
    let limits = ParseLimits::from_settings(&state.settings.ingest);
    let events = parse_events(&body, &tuning, &limits, state.clock.now())?;
    metrics::histogram!("kairos_ingest_request_events").record(events.len() as f64);
    let outcome = state.ingestor.submit(events, state.clock.now()).await?;
    Ok((StatusCode::ACCEPTED, Json(outcome)))
}
