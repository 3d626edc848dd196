//! Operations: health, readiness, metrics, the OpenAPI document, and admin config routes.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::STORE_RETRY_SECS;
use super::{ApiError, ApiResult, AppState};
use crate::config::ReloadOutcome;

pub fn open_router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
}

pub fn admin_router() -> Router<AppState> {
    Router::new().route("/v1/admin/config", get(get_config)).route("/v1/admin/config/reload", post(reload_config))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Liveness: answers while the process runs; checks nothing.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub status: &'static str,
    pub store: &'static str,
}

/// Readiness: not draining, the store answers, and this replica can rank (its first load
/// of the catalogue and statistics from the store, with the check for a learned model, has
/// completed).
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Readiness),
        (status = 503, response = super::openapi::Unavailable)))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Readiness>> {
    if state.is_draining() {
        return Err(ApiError::unavailable("draining", "The service is shutting down", 5));
    }
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = ?e, "readiness check: the store does not answer");
        return Err(ApiError::unavailable("store-unavailable", "The store is unavailable; retry shortly", STORE_RETRY_SECS)
            .detail("the store does not answer"));
    }
    if !state.engine.has_loaded() {
        return Err(ApiError::unavailable("not-ready", "Not ready yet", 1).detail(
            "statistics and catalogue not loaded yet: the first refresh from the store, with the check for a learned \
             model, has not completed",
        ));
    }
    Ok(Json(Readiness { status: "ready", store: state.store.backend() }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.engine.export_gauges();
    crate::telemetry::export_process_gauges();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.prometheus.render())
}

/// This document: built from the handlers' types, with the bounds of the configuration in
/// force (see `api::openapi`).
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(super::openapi::document(&state.settings, &state.tuning.get()))
}

#[derive(Serialize, ToSchema)]
pub struct EffectiveConfig {
    /// Version of the tuning in force (bumped by each applied reload).
    pub tuning_version: u64,
    /// The effective settings with secrets shown as `***`; `tuning` is the live value.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}

/// The effective configuration, secrets masked.
#[utoipa::path(get, path = "/v1/admin/config", tag = "admin",
    responses((status = 200, body = EffectiveConfig)), security(("api_key" = [])))]
pub async fn get_config(State(state): State<AppState>) -> ApiResult<Json<EffectiveConfig>> {
    let mut settings = serde_json::to_value(&state.settings).map_err(|e| ApiError::internal(&e))?;
    settings["tuning"] = serde_json::to_value(&*state.tuning.get()).map_err(|e| ApiError::internal(&e))?;
    Ok(Json(EffectiveConfig { tuning_version: state.tuning.version(), settings }))
}

#[derive(Serialize, ToSchema)]
pub struct Reloaded {
    pub outcome: ReloadOutcome,
    pub tuning_version: u64,
}

/// Re-reads the configuration files now (as SIGHUP does). An invalid file is refused (422)
/// and the old configuration stays.
#[utoipa::path(post, path = "/v1/admin/config/reload", tag = "admin",
    responses((status = 200, body = Reloaded),
        (status = 422, description = "the configuration was refused; the old one stays", body = super::Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn reload_config(State(state): State<AppState>) -> ApiResult<Json<Reloaded>> {
    match state.tuning.reload(&state.config_source, &state.settings) {
        Ok(outcome) => Ok(Json(Reloaded { outcome, tuning_version: state.tuning.version() })),
        Err(e) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-config", "The configuration was refused")
            .detail(e.to_string())),
    }
}
