//! HTTP API: the router, shared state, authentication, request ids, metrics and JSON bodies.

mod error;
mod events;
mod extract;
mod items;
mod models;
pub mod openapi;
mod ops;
mod pushes;
mod recommendations;
mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::{ApiError, ApiResult, Problem};

use crate::auth::KeyRing;
use crate::config::{ConfigSource, LiveTuning, Scope, Settings};
use crate::ingest::Ingestor;
use crate::engine::Engine;
use crate::push::scheduler::Scheduler;
use crate::store::Store;

/// Everything a handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    pub config_source: ConfigSource,
    pub tuning: Arc<LiveTuning>,
    pub keys: KeyRing,
    pub ingestor: Ingestor,
    pub engine: Arc<Engine>,
    pub scheduler: Arc<Scheduler>,
    pub trainer: Arc<crate::engine::trainer::Trainer>,
    pub clock: crate::clock::Clock,
    pub draining: AtomicBool,
    pub prometheus: PrometheusHandle,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole router with its middleware.
pub fn router(state: AppState) -> Router {
    let scoped = |scopes: &'static [Scope], r: Router<AppState>| {
        r.route_layer(middleware::from_fn_with_state((state.clone(), scopes), require_scope))
    };
    let api = Router::new()
        .merge(scoped(&[Scope::Ingest], events::router().merge(items::write_router()).merge(users::write_router())))
        .merge(scoped(&[Scope::Read, Scope::Gateway], items::read_router().merge(users::read_router()).merge(pushes::read_router()).merge(recommendations::router())))
        .merge(scoped(&[Scope::Gateway], pushes::gateway_router()))
        .merge(scoped(&[Scope::Admin], users::admin_router().merge(ops::admin_router()).merge(models::admin_router())))
        .merge(ops::open_router())
        .fallback(|| async { ApiError::not_found("this route") })
        .layer(DefaultBodyLimit::max(state.settings.server.body_limit_bytes));
    let timeout = Duration::from_secs(state.settings.server.request_timeout_secs);
    api.layer(middleware::from_fn(track_metrics))
        .layer(middleware::from_fn_with_state(timeout, error::time_limit))
        .layer(middleware::from_fn(error::problem_responses))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("unmatched");
                let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                tracing::info_span!("request", method = %req.method(), route, request_id = id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Rejects requests without a key holding one of `scopes`; the key name is put in the
/// request extensions for handlers.
async fn require_scope(
    State((state, scopes)): State<(AppState, &'static [Scope])>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = crate::auth::presented_key(req.headers());
    let mut last_err = None;
    for scope in scopes {
        match state.keys.authorize(presented, *scope) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                return next.run(req).await;
            }
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e) => ApiError::from(e).into_response(),
        None => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").into_response(),
    }
}

/// Counts requests and latency by route template (never the raw path).
async fn track_metrics(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("kairos_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("kairos_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Reads a JSON body: 413 over the size limit, 415 for another content type, 400 when it
/// does not parse.
pub fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> ApiResult<serde_json::Value> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime != "application/json" && !(mime.starts_with("application/") && mime.ends_with("+json")) {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            .detail(format!("expected Content-Type: application/json, got {content_type:?}")));
    }
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "The body is too large")
                .detail(rejection.body_text())
        } else {
            ApiError::malformed(rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::malformed(e.to_string()))
}
