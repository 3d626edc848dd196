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
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        ApiError { status, code, title, detail: None, errors: Vec::new(), retry_after: None }
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
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
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
            AuthError::Missing | AuthError::Unknown => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized").detail(detail)
            }
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
            IngestError::Overloaded => ApiError::unavailable("overloaded", "The ingest queue is full; retry shortly", 1),
            IngestError::ShuttingDown => ApiError::unavailable("shutting-down", "The service is shutting down", 5),
            IngestError::Store(cause) => ApiError::from_store(&cause),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
