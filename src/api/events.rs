//! `POST /v1/events`: one event or a batch; 202 only after the commit.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use utoipa::ToSchema;

use super::{ApiResult, AppState, json_body};
use crate::ingest::{IngestOutcome, ParseLimits, parse_events};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/events", post(post_events))
}

// The bodies as the OpenAPI document shows them: mirrors of what `ingest::parse_events`
// accepts (its limits in characters, ids without control characters). The kinds and the
// batch size come from the configuration when the document is served (`api::openapi`).

/// One event, or `{"events": [...]}`.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)] // a schema only: never built
pub enum EventsIn {
    One(EventIn),
    Batch(EventBatchIn),
}

/// Up to `ingest.max_events_per_request` events, all stored or none.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct EventBatchIn {
    #[schema(min_items = 1)]
    events: Vec<EventIn>,
}

/// One behaviour event. `kind` is one of `[tuning.kinds]`; kinds with `item = true` need
/// `item_id`. `ts` (default: now) must lie within `ingest.retention_days` back and
/// `ingest.max_future_secs` ahead of the server's clock.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct EventIn {
    /// Idempotency key (default: a new UUIDv7); re-sending an event is a no-op.
    #[schema(value_type = Option<uuid::Uuid>)]
    event_id: Option<String>,
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    user_id: String,
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    item_id: Option<String>,
    #[schema(min_length = 1, max_length = 256)]
    kind: String,
    ts: Option<chrono::DateTime<chrono::Utc>>,
    context: Option<EventContextIn>,
    props: Option<EventPropsIn>,
}

/// Where the event happened.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct EventContextIn {
    /// mobile (or phone), desktop (or web), tablet; any case.
    #[schema(pattern = "^(?:[Mm][Oo][Bb][Ii][Ll][Ee]|[Pp][Hh][Oo][Nn][Ee]|[Dd][Ee][Ss][Kk][Tt][Oo][Pp]|[Ww][Ee][Bb]|[Tt][Aa][Bb][Ll][Ee][Tt])$")]
    device: Option<String>,
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    platform: Option<String>,
    /// ISO 3166-1 alpha-2, any case.
    #[schema(pattern = "^[A-Za-z]{2}$")]
    country: Option<String>,
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    region: Option<String>,
    /// An IANA time zone name.
    timezone: Option<String>,
    #[schema(max_length = 32, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    network: Option<String>,
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    session_id: Option<String>,
}

/// Optional properties of the event.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct EventPropsIn {
    #[schema(minimum = 0)]
    price: Option<f64>,
    #[schema(minimum = 0, maximum = 1000000)]
    quantity: Option<i32>,
    #[schema(max_length = 1024, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    query: Option<String>,
}

/// Ingest one event or `{"events": [...]}` (up to `ingest.max_events_per_request`, 1,000 by
/// default). 202 only once the events are committed; a refused body stores nothing.
#[utoipa::path(post, path = "/v1/events", tag = "ingest",
    request_body(content = EventsIn),
    responses(
        (status = 202, description = "committed", body = IngestOutcome),
        (status = 429, response = super::openapi::TooManyRequests),
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
