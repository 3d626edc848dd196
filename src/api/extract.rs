//! Extractors whose refusals are problem+json naming the field: path parameters (an id
//! that is not UTF-8 once percent-decoded names its parameter) and query parameters (a
//! parameter given twice is refused, never silently overwritten).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::ApiError;
use crate::domain::FieldError;

/// `axum::extract::Path` with refusals as `ApiError`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key } => ApiError::field(key, "must be valid UTF-8 once percent-decoded"),
                ErrorKind::ParseErrorAtKey { key, expected_type, .. } => {
                    ApiError::field(key, format!("must be a valid {expected_type}"))
                }
                _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid-path", "The path is invalid").detail(e.body_text()),
            },
            // The route and its extractor disagree: a bug of ours, not of the request.
            other => ApiError::internal(&other),
        }
    }
}

/// The query parameters by name; each may be given once.
#[derive(Debug, Default)]
pub struct Params(pub HashMap<String, String>);

impl std::ops::Deref for Params {
    type Target = HashMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Params {
    /// Names every parameter not in `allowed`.
    pub fn refuse_unknown(&self, allowed: &[&str], errors: &mut Vec<FieldError>) {
        let mut unknown: Vec<&String> = self.0.keys().filter(|k| !allowed.contains(&k.as_str())).collect();
        unknown.sort();
        errors.extend(unknown.into_iter().map(|k| FieldError::new(k.clone(), "unknown query parameter")));
    }

    /// Parses `query` (`a=1&b=2`, percent-decoded, invalid UTF-8 replaced); a repeated
    /// parameter is refused.
    pub fn parse(uri: &axum::http::Uri) -> Result<Params, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-query", "The query string is invalid").detail(e.body_text()))?;
        let mut map = HashMap::with_capacity(pairs.len());
        let mut errors: Vec<FieldError> = Vec::new();
        for (k, v) in pairs {
            match map.entry(k) {
                Entry::Vacant(slot) => {
                    slot.insert(v);
                }
                Entry::Occupied(seen) if !errors.iter().any(|e| &e.field == seen.key()) => {
                    errors.push(FieldError::new(seen.key().clone(), "is given more than once"));
                }
                Entry::Occupied(_) => {}
            }
        }
        if errors.is_empty() { Ok(Params(map)) } else { Err(ApiError::invalid(errors)) }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Params::parse(&parts.uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_query_parameter_is_refused_naming_it_once() {
        let uri: axum::http::Uri = "/x?n=1&at=2&n=2&n=3".parse().unwrap();
        let err = Params::parse(&uri).unwrap_err();
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["n"]);
        let ok = Params::parse(&"/x?n=1&exclude=a%2Cb".parse().unwrap()).unwrap();
        assert_eq!(ok.get("exclude").map(String::as_str), Some("a,b"));
    }
}
