//! Users: `PUT /v1/users/{user_id}` (settings), `GET /v1/users/{user_id}`, `DELETE /v1/users/{user_id}`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::Path;
use super::{ApiError, ApiResult, AppState, json_body};
use crate::domain::{QuietHours, User, check_id};
use crate::parse::Fields;
use crate::store::Erased;

pub fn write_router() -> Router<AppState> {
    Router::new().route("/v1/users/{user_id}", put(put_user))
}

pub fn read_router() -> Router<AppState> {
    Router::new().route("/v1/users/{user_id}", get(get_user))
}

pub fn admin_router() -> Router<AppState> {
    Router::new().route("/v1/users/{user_id}", delete(delete_user))
}

/// A user as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub user_id: String,
    /// IANA time zone name.
    pub timezone: String,
    pub push_consent: bool,
    pub quiet_hours: Option<QuietHours>,
    pub locale: Option<String>,
    pub updated_at: chrono::DateTime<Utc>,
    /// When the user last unsubscribed (the gateway's `unsubscribed` feedback turns
    /// `push_consent` off). Setting `push_consent: true` afterwards resubscribes them.
    pub unsubscribed_at: Option<chrono::DateTime<Utc>>,
    /// When consent was last turned on again after an unsubscribe.
    pub resubscribed_at: Option<chrono::DateTime<Utc>>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            user_id: u.user_id,
            timezone: u.timezone.name().to_string(),
            push_consent: u.push_consent,
            quiet_hours: u.quiet_hours,
            locale: u.locale,
            updated_at: u.updated_at,
            unsubscribed_at: u.unsubscribed_at,
            resubscribed_at: u.resubscribed_at,
        }
    }
}

pub(super) fn user_path_id(id: &str) -> ApiResult<()> {
    check_id(id).map_err(|e| ApiError::field("user_id", e.to_string()))
}

fn parse_user(id: &str, body: &Value, now: chrono::DateTime<Utc>) -> ApiResult<User> {
    let mut errors = Vec::new();
    let mut f = Fields::object(body, "", None, &mut errors).ok_or_else(|| ApiError::field("body", "must be a JSON object"))?;
    f.deny_unknown(&["timezone", "push_consent", "quiet_hours", "locale"]);
    let timezone = f.opt_tz("timezone");
    if !f.has("timezone") {
        f.error("timezone", "is required (an IANA name such as Europe/Berlin)");
    }
    let push_consent = f.opt_bool("push_consent");
    if !f.has("push_consent") {
        f.error("push_consent", "is required");
    }
    let locale = f.opt_str("locale", 35);
    let quiet = f.nested("quiet_hours");
    let quiet_hours = quiet.and_then(|q| {
        let mut qf = Fields::object(q, "quiet_hours", None, f.errors)?;
        qf.deny_unknown(&["start", "end"]);
        let start = qf.opt_i64("start", 0, 23);
        let end = qf.opt_i64("end", 0, 23);
        if !qf.has("start") {
            qf.error("start", "is required (local hour 0..=23)");
        }
        if !qf.has("end") {
            qf.error("end", "is required (local hour 0..=23)");
        }
        Some(QuietHours { start: start? as u8, end: end? as u8 })
    });
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(User {
        unsubscribed_at: None,
        resubscribed_at: None,
        user_id: id.to_string(),
        timezone: timezone.expect("checked above"),
        push_consent: push_consent.expect("checked above"),
        quiet_hours,
        locale,
        updated_at: now,
    })
}

/// A user's settings as `PUT /v1/users/{user_id}` accepts them (a mirror of `parse_user`,
/// for the OpenAPI document).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UserIn {
    /// An IANA time zone name, e.g. `Europe/Berlin`.
    timezone: String,
    push_consent: bool,
    quiet_hours: Option<QuietHoursIn>,
    #[schema(max_length = 35, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    locale: Option<String>,
}

/// No push from `start` (inclusive) to `end` (exclusive), local hours; `start > end` wraps
/// over midnight.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct QuietHoursIn {
    #[schema(minimum = 0, maximum = 23)]
    start: u8,
    #[schema(minimum = 0, maximum = 23)]
    end: u8,
}

/// Create or replace a user's settings.
#[utoipa::path(put, path = "/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "user id")),
    request_body(content = UserIn),
    responses((status = 200, body = UserView)),
    security(("api_key" = [])))]
pub async fn put_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<UserView>> {
    user_path_id(&id)?;
    let body = json_body(&headers, body)?;
    let user = parse_user(&id, &body, state.clock.now())?;
    let write = state.store.upsert_user(&user).await?;
    if write.cancelled_pushes > 0 {
        metrics::counter!("kairos_pushes_total", "outcome" => "cancelled").increment(write.cancelled_pushes);
    }
    // The cached view holds the user's time zone.
    state.engine.forget_user(&id);
    let stored = state.store.get_user(&id).await?.ok_or_else(|| ApiError::not_found("the user"))?;
    Ok(Json(stored.into()))
}

/// A user's settings.
#[utoipa::path(get, path = "/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "user id")),
    responses((status = 200, body = UserView), (status = 404, response = super::openapi::NotFound)),
    security(("api_key" = [])))]
pub async fn get_user(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<UserView>> {
    user_path_id(&id)?;
    state.store.get_user(&id).await?.map(|u| Json(u.into())).ok_or_else(|| ApiError::not_found("the user"))
}

/// Erase every row about the user (settings, events, push state, pushes) in one transaction.
#[utoipa::path(delete, path = "/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "user id")),
    responses((status = 200, body = Erased), (status = 404, description = "nothing is stored about the user", body = super::Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn delete_user(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Erased>> {
    user_path_id(&id)?;
    let erased = state.store.delete_user(&id).await?;
    state.engine.forget_user(&id);
    if !erased.anything() {
        return Err(ApiError::not_found("the user"));
    }
    tracing::info!(events = erased.events, "user erased");
    Ok(Json(erased))
}
