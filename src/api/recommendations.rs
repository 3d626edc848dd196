//! `GET /v1/users/{user_id}/recommendations` and `GET /v1/users/{user_id}/interests`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};

use super::users::user_path_id;
use super::extract::{Params, Path};
use super::{ApiError, ApiResult, AppState};
use crate::domain::{Device, FieldError, check_id};
use crate::engine::{InterestsResponse, RecommendationRequest, RecommendationResponse};

/// Most recommendations in one answer.
pub const MAX_N: usize = 200;
/// Most ids in `exclude`.
pub const MAX_EXCLUDE: usize = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users/{user_id}/recommendations", get(get_recommendations))
        .route("/v1/users/{user_id}/interests", get(get_interests))
}

fn parse_at(q: &Params, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    let s = q.get("at")?;
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(e) => {
            errors.push(FieldError::new("at", format!("must be an RFC 3339 timestamp ({e})")));
            None
        }
    }
}

/// Parses the query of a recommendation request; every bad parameter is named.
pub fn parse_request(q: &Params, now: DateTime<Utc>) -> Result<RecommendationRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    q.refuse_unknown(&["n", "device", "at", "country", "exclude"], &mut errors);
    let n = match q.get("n") {
        None => 10,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_N).contains(&n) => n,
            _ => {
                errors.push(FieldError::new("n", format!("must be an integer in 1..={MAX_N}")));
                0
            }
        },
    };
    let device = q.get("device").and_then(|d| {
        Device::parse(d).or_else(|| {
            errors.push(FieldError::new("device", format!("unknown device {d:?}; expected mobile, desktop or tablet")));
            None
        })
    });
    let country = q.get("country").and_then(|c| {
        if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()) {
            Some(c.to_ascii_uppercase())
        } else {
            errors.push(FieldError::new("country", "must be an ISO 3166-1 alpha-2 code"));
            None
        }
    });
    let at = parse_at(q, &mut errors).unwrap_or(now);
    let exclude: Vec<String> = q
        .get("exclude")
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    if exclude.len() > MAX_EXCLUDE {
        errors.push(FieldError::new("exclude", format!("must list at most {MAX_EXCLUDE} item ids")));
    } else if let Some(bad) = exclude.iter().find(|id| check_id(id).is_err()) {
        errors.push(FieldError::new("exclude", format!("{bad:?} is not a valid item id")));
    }
    if errors.is_empty() { Ok(RecommendationRequest { n, device, country, at, exclude }) } else { Err(errors) }
}

/// Ranked items for the user in the request's context, each with its reasons. A user with no
/// events gets context-aware trending, and `cold_start` says so (an unknown user is not an
/// error).
#[utoipa::path(get, path = "/v1/users/{user_id}/recommendations", tag = "recommendations",
    params(
        ("user_id" = String, Path, description = "user id"),
        ("n" = Option<u32>, Query, description = "how many items, 1..=200 (default 10)"),
        ("device" = Option<String>, Query, description = "mobile, desktop or tablet"),
        ("at" = Option<String>, Query, description = "RFC 3339 time of the request (default now)"),
        ("country" = Option<String>, Query, description = "ISO 3166-1 alpha-2"),
        ("exclude" = Option<String>, Query, description = "comma-separated item ids, at most 200"),
    ),
    responses((status = 200, body = RecommendationResponse), (status = 422, body = super::Problem)),
    security(("api_key" = [])))]
pub async fn get_recommendations(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Json<RecommendationResponse>> {
    user_path_id(&id)?;
    let req = parse_request(&q, state.clock.now()).map_err(ApiError::invalid)?;
    let answer = state.engine.recommend(&id, &req).await?;
    metrics::counter!("kairos_recommendations_total", "cold_start" => if answer.cold_start { "true" } else { "false" })
        .increment(1);
    Ok(Json(answer))
}

/// The user's top interest features (items, categories, brands) with their weights at `at`.
#[utoipa::path(get, path = "/v1/users/{user_id}/interests", tag = "recommendations",
    params(("user_id" = String, Path, description = "user id"),
        ("at" = Option<String>, Query, description = "RFC 3339 (default now)")),
    responses((status = 200, body = InterestsResponse), (status = 422, body = super::Problem)),
    security(("api_key" = [])))]
pub async fn get_interests(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Json<InterestsResponse>> {
    user_path_id(&id)?;
    let mut errors = Vec::new();
    q.refuse_unknown(&["at"], &mut errors);
    let at = parse_at(&q, &mut errors).unwrap_or_else(|| state.clock.now());
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(Json(state.engine.interests(&id, at).await?))
}
