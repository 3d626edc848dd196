//! `GET /v1/users/{user_id}/recommendations` and `GET /v1/users/{user_id}/interests`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::IntoParams;
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

/// Parses the query of a recommendation request, and whether its reasons are to be short;
/// every bad parameter is named.
pub fn parse_request(q: &Params, now: DateTime<Utc>) -> Result<(RecommendationRequest, bool), Vec<FieldError>> {
    let mut errors = Vec::new();
    let short = short_reasons(q, &mut errors);
    q.refuse_unknown(&["n", "device", "at", "country", "exclude", "reasons"], &mut errors);
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
    // Comma-separated ids; each is checked as given (1..=256 characters, not blank), then
    // trimmed. An empty value excludes nothing.
    let exclude: Vec<&str> = match q.get("exclude").map(String::as_str) {
        None | Some("") => Vec::new(),
        Some(s) => s.split(',').collect(),
    };
    if exclude.len() > MAX_EXCLUDE {
        errors.push(FieldError::new("exclude", format!("must list at most {MAX_EXCLUDE} item ids")));
    } else if let Some(bad) = exclude.iter().find(|id| check_id(id).is_err() || id.trim().is_empty()) {
        errors.push(FieldError::new("exclude", format!("{bad:?} is not a valid item id (1..=256 characters, not blank)")));
    }
    let exclude: Vec<String> = exclude.into_iter().map(|id| id.trim().to_string()).collect();
    if errors.is_empty() { Ok((RecommendationRequest { n, device, country, at, exclude }, short)) } else { Err(errors) }
}

/// `reasons`: `full` (the default) or `short`.
fn short_reasons(q: &Params, errors: &mut Vec<FieldError>) -> bool {
    match q.get("reasons").map(String::as_str) {
        None | Some("full") => false,
        Some("short") => true,
        Some(_) => {
            errors.push(FieldError::new("reasons", "must be short or full"));
            false
        }
    }
}

/// The query of a recommendation request (a mirror of `parse_request`, for the OpenAPI
/// document).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RecommendationsQuery {
    /// How many items, 1..=200 (default 10).
    #[param(minimum = 1, maximum = 200)]
    n: Option<u32>,
    /// mobile (or phone), desktop (or web), tablet; any case.
    #[param(pattern = "^(?:[Mm][Oo][Bb][Ii][Ll][Ee]|[Pp][Hh][Oo][Nn][Ee]|[Dd][Ee][Ss][Kk][Tt][Oo][Pp]|[Ww][Ee][Bb]|[Tt][Aa][Bb][Ll][Ee][Tt])$")]
    device: Option<String>,
    /// RFC 3339 time of the request (default now).
    at: Option<DateTime<Utc>>,
    /// ISO 3166-1 alpha-2, any case.
    #[param(pattern = "^[A-Za-z]{2}$")]
    country: Option<String>,
    /// Item ids never to return, comma-separated (at most 200; each 1..=256 characters, not
    /// blank, trimmed).
    #[param(max_items = 200, inline)]
    exclude: Option<Vec<ExcludedId>>,
    /// `full` (default): every reason list; `short`: each item's score parts and its three
    /// largest contributions, the evidence lists (`features`, `events`, `cooccurs_with`,
    /// `similar_to`, `context_lifts`) empty. Short answers are a fraction of the size.
    #[param(inline)]
    reasons: Option<ReasonsDetail>,
}

/// How much of each item's reasons an answer carries.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ReasonsDetail {
    Short,
    Full,
}

/// An item id in `exclude`: no comma, no control character, not blank.
#[derive(utoipa::ToSchema)]
#[schema(min_length = 1, max_length = 256, pattern = "^[^,\\u0000-\\u001F\\u007F-\\u009F]*[^,\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^,\\u0000-\\u001F\\u007F-\\u009F]*$")]
#[allow(dead_code)]
pub struct ExcludedId(String);

/// The query of `GET /v1/users/{user_id}/interests`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct InterestsQuery {
    /// RFC 3339 (default now).
    at: Option<DateTime<Utc>>,
}

/// Ranked items for the user in the request's context, each with its reasons. A user with no
/// events gets context-aware trending, and `cold_start` says so (an unknown user is not an
/// error).
#[utoipa::path(get, path = "/v1/users/{user_id}/recommendations", tag = "recommendations",
    params(("user_id" = String, Path, description = "user id"), RecommendationsQuery),
    responses((status = 200, body = RecommendationResponse)),
    security(("api_key" = [])))]
pub async fn get_recommendations(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Json<RecommendationResponse>> {
    user_path_id(&id)?;
    let (req, short) = parse_request(&q, state.clock.now()).map_err(ApiError::invalid)?;
    let mut answer = state.engine.recommend(&id, &req).await?;
    if short {
        answer.items.iter_mut().for_each(|item| item.reasons.shorten());
    }
    metrics::counter!("kairos_recommendations_total", "cold_start" => if answer.cold_start { "true" } else { "false" })
        .increment(1);
    Ok(Json(answer))
}

/// The user's top interest features (items, categories, brands) with their weights at `at`.
#[utoipa::path(get, path = "/v1/users/{user_id}/interests", tag = "recommendations",
    params(("user_id" = String, Path, description = "user id"), InterestsQuery),
    responses((status = 200, body = InterestsResponse)),
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
