//! One error type for every handler, rendered as RFC 9457 `application/problem+json`.
//! 5xx bodies are opaque; their cause chain is logged.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::domain::FieldError;
use crate::ingest::IngestError;
use crate::store::StoreError;

/// The JSON body of every refusal.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable code, e.g. `urn:kairos:problem:invalid-field`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every refused field, with its path and (in a batch) index.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: Option<String>,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate` of a 401.
    pub challenge: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        ApiError { status, code, title, detail: None, errors: Vec::new(), retry_after: None, challenge: None }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 422: the request parsed but broke a rule; `errors` names each field.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        ApiError { errors, ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-field", "A field is invalid") }
            .detail(detail)
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(field, message)])
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed-body", "The body is not valid JSON").detail(detail)
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(format!("{what} does not exist"))
    }

    pub fn unavailable(code: &'static str, title: &'static str, retry_after: u64) -> Self {
        ApiError { retry_after: Some(retry_after), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, title) }
    }

    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %error_chain(cause), "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error")
    }
}

/// `cause: its source: …`, for the log (never for a response body).
fn error_chain(cause: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = cause.to_string();
    let mut source = cause.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    chain
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            metrics::counter!("kairos_refusals_total", "code" => self.code).increment(1);
        }
        let body = Problem {
            type_: format!("urn:kairos:problem:{}", self.code),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::from_store(&e)
    }
}

impl ApiError {
    /// A store fault: 503 with Retry-After when the store is unreachable, busy or closed
    /// (wherever it surfaced: a handler, the ingest writers, readiness), else an opaque 500.
    /// Never a 4xx.
    pub fn from_store(e: &StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %error_chain(e), "the store is unavailable");
            ApiError::unavailable("store-unavailable", "The store is unavailable; retry shortly", STORE_RETRY_SECS)
        } else {
            ApiError::internal(e)
        }
    }
}

/// Seconds a client is asked to wait when the store is unavailable.
pub const STORE_RETRY_SECS: u64 = 2;

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let detail = e.to_string();
        match e {
            AuthError::Missing => ApiError {
                challenge: Some("Bearer realm=\"kairos\""),
                ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized").detail(detail)
            },
            AuthError::Unknown => ApiError {
                challenge: Some("Bearer realm=\"kairos\", error=\"invalid_token\""),
                ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized").detail(detail)
            },
            AuthError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(detail),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Invalid(errors) => {
                metrics::counter!("kairos_events_refused_total").increment(1);
                ApiError::invalid(errors)
            }
            IngestError::TooMany { max, got } => {
                metrics::counter!("kairos_events_refused_total").increment(1);
                ApiError::field("events", format!("a batch holds at most {max} events, got {got}"))
            }
            IngestError::RateLimited { errors, retry_after_secs } => {
                metrics::counter!("kairos_events_refused_total").increment(1);
                let detail = errors.first().map(|e| e.message.clone()).unwrap_or_default();
                ApiError { errors, retry_after: Some(retry_after_secs), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many events for one user") }
                    .detail(detail)
            }
            IngestError::Overloaded => ApiError::unavailable("overloaded", "The ingest queue is full; retry shortly", 1),
            IngestError::ShuttingDown => ApiError::unavailable("shutting-down", "The service is shutting down", 5),
            IngestError::Store(cause) => ApiError::from_store(&cause),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The problem+json media type of every refusal.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every refusal leaves as problem+json, whoever made it: a handler's `ApiError` passes
/// untouched; anything else with a 4xx/5xx status (the router's 405, a framework rejection
/// with a plain-text body) is rewritten here, at one place, keeping its headers (`Allow`,
/// `Retry-After`). A 4xx keeps its text as `detail`; a 5xx stays opaque.
pub async fn problem_responses(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = if status.is_client_error() {
        let bytes = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
        Some(String::from_utf8_lossy(&bytes).trim().to_string()).filter(|t| !t.is_empty())
    } else {
        None
    };
    let problem = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            ApiError::new(status, "method-not-allowed", "Method not allowed").detail(format!("this route answers {allowed}"))
        }
        StatusCode::NOT_FOUND => ApiError::not_found("this route"),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(status, "body-too-large", "The body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(status, "unsupported-media-type", "Unsupported media type"),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::unavailable("unavailable", "The service is unavailable; retry shortly", 1),
        s if s.is_client_error() => ApiError::new(s, "bad-request", "The request is invalid"),
        s => {
            tracing::error!(status = s.as_u16(), "a response without a problem body was made opaque");
            ApiError::new(s, "internal", "Internal error")
        }
    };
    let problem = match text {
        Some(t) if problem.detail.is_none() => problem.detail(t),
        _ => problem,
    };
    let mut out = problem.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH && !out.headers().contains_key(name) {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// Answers 503 `timeout` (with Retry-After) for a request not answered within `limit`
/// (`server.request_timeout_secs`); reading a trickled body counts.
pub async fn time_limit(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable("timeout", "The request took too long", 1)
            .detail(format!("not answered within server.request_timeout_secs ({} s)", limit.as_secs()))
            .into_response(),
    }
}
