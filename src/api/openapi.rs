//! The OpenAPI document served at `/openapi.json`, built from the types the handlers use:
//! responses from the response types, request bodies and queries from mirrors of what the
//! parsers accept (`EventIn`, `ItemIn`, `RecommendationsQuery`, …, next to their handlers),
//! then completed in two steps:
//!
//! - `refusals`: the refusals every operation of a shape can give, as the middleware and
//!   extractors give them (401/403 where a key is needed, 400/413/415/422 where a JSON body is
//!   read, 422 where parameters are, 404 where the path names something, 503 everywhere),
//!   all `application/problem+json`;
//! - `configured`: what the configuration decides when the document is served (the event
//!   kinds and which need an item, the batch size, `server.max_page`) and what Rust data
//!   decides (time zone names, feedback kinds).
//!
//! `scripts/schemathesis` checks the served document against the running service.

use serde_json::{Value, json};
use utoipa::{OpenApi, ToResponse};

use super::error::Problem;
use super::{events, items, models, ops, pushes, recommendations, users};
use crate::config::{Settings, Tuning};
use crate::domain::MAX_ID_CHARS;

/// No control character (`char::is_control`: U+0000–U+001F, U+007F–U+009F), as ids and text
/// fields require.
pub const NO_CONTROL: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// Every pattern the request schemas use (the derive attributes need literals; a test checks
/// they are among these).
pub const PATTERNS: [&str; 5] = [
    NO_CONTROL,
    // a category path: `/`-separated segments, none blank, no control character
    "^[^/\\u0000-\\u001F\\u007F-\\u009F]*[^/\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^/\\u0000-\\u001F\\u007F-\\u009F]*(?:/[^/\\u0000-\\u001F\\u007F-\\u009F]*[^/\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^/\\u0000-\\u001F\\u007F-\\u009F]*)*$",
    // a device class, any case (`Device::parse`)
    "^(?:[Mm][Oo][Bb][Ii][Ll][Ee]|[Pp][Hh][Oo][Nn][Ee]|[Dd][Ee][Ss][Kk][Tt][Oo][Pp]|[Ww][Ee][Bb]|[Tt][Aa][Bb][Ll][Ee][Tt])$",
    // an ISO 3166-1 alpha-2 code, any case
    "^[A-Za-z]{2}$",
    // an id in a comma-separated list: no comma, not blank, no control character
    "^[^,\\u0000-\\u001F\\u007F-\\u009F]*[^,\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^,\\u0000-\\u001F\\u007F-\\u009F]*$",
];

/// The body is not JSON.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct BadRequest(Problem);

/// No API key, or an unknown one.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "Bearer")))]
#[allow(dead_code)]
pub struct Unauthorized(Problem);

/// The key lacks the route's scope.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct Forbidden(Problem);

/// Nothing is stored under this path, or no route matches it.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct NotFound(Problem);

/// The request conflicts with the state of what it names.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct Conflict(Problem);

/// The body is larger than `server.body_limit_bytes`.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct PayloadTooLarge(Problem);

/// The body is not `application/json`.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct UnsupportedMediaType(Problem);

/// A field or parameter breaks a rule; `errors` names each one. Nothing was stored.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct Unprocessable(Problem);

/// Not now: the store is unavailable, the request took longer than
/// `server.request_timeout_secs`, the ingest queue is full or the service is shutting down.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "seconds to wait before retrying"))
)]
#[allow(dead_code)]
pub struct Unavailable(Problem);

/// A user sent more than `ingest.max_events_per_user_per_minute` events; `errors` names
/// `events`. Nothing was stored.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "seconds to wait before retrying"))
)]
#[allow(dead_code)]
pub struct TooManyRequests(Problem);

#[derive(OpenApi)]
#[openapi(
    info(title = "kairos", description = "What to push to each shopper, and when."),
    paths(
        events::post_events,
        items::put_item, items::post_items, items::get_item,
        users::put_user, users::get_user, users::delete_user,
        recommendations::get_recommendations, recommendations::get_interests,
        pushes::get_due, pushes::post_feedback, pushes::get_push_plan,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi_json, ops::get_config, ops::reload_config,
        models::list_models, models::train, models::deploy, models::pin,
    ),
    components(
        schemas(Problem, crate::domain::FieldError),
        responses(BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, UnsupportedMediaType, Unprocessable, TooManyRequests, Unavailable),
    ),
    modifiers(&BearerAuth)
)]
struct Doc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer <key>` (or `X-Api-Key: <key>`)"))
                    .build(),
            ),
        );
    }
}

/// The document for this configuration and tuning.
pub fn document(settings: &Settings, tuning: &Tuning) -> Value {
    let mut doc = serde_json::to_value(Doc::openapi()).expect("the OpenAPI document serialises");
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    refusals(&mut doc);
    configured(&mut doc, settings, tuning);
    doc
}

fn response_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

/// Adds the refusals each operation can give by its shape (see the module comment); a
/// response an operation documents itself is kept.
fn refusals(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let Some(methods) = item.as_object_mut() else { continue };
        for op in methods.values_mut() {
            let secured = op.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
            let has_body = op.get("requestBody").is_some();
            let has_params = op.get("parameters").and_then(Value::as_array).is_some_and(|p| !p.is_empty());
            let mut add: Vec<(&str, &str)> = Vec::new();
            if has_body {
                add.extend([("400", "BadRequest"), ("413", "PayloadTooLarge"), ("415", "UnsupportedMediaType")]);
            }
            if has_body || has_params {
                add.push(("422", "Unprocessable"));
            }
            if path.contains('{') {
                add.push(("404", "NotFound"));
            }
            if secured {
                add.extend([("401", "Unauthorized"), ("403", "Forbidden")]);
            }
            add.push(("503", "Unavailable"));
            let responses = op["responses"].as_object_mut().expect("every operation has responses");
            for (status, name) in add {
                responses.entry(status).or_insert_with(|| response_ref(name));
            }
        }
    }
}

/// Fills in what the configuration and the Rust data decide (see the module comment).
fn configured(doc: &mut Value, settings: &Settings, tuning: &Tuning) {
    let id = json!({"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": NO_CONTROL});
    let paths = doc["paths"].as_object_mut().expect("paths");
    for (path, item) in paths.iter_mut() {
        for op in item.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
            for param in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
                match (param["in"].as_str(), param["name"].as_str()) {
                    (Some("path"), Some("user_id" | "item_id")) => param["schema"] = id.clone(),
                    (Some("path"), Some("version")) => param["schema"]["minimum"] = json!(1),
                    (Some("query"), Some("limit")) if path == "/v1/pushes/due" => {
                        param["schema"]["maximum"] = json!(settings.server.max_page);
                    }
                    // `exclude=a,b,c`: one comma-separated value (a repeated parameter is refused).
                    (Some("query"), Some("exclude")) => {
                        param["style"] = json!("form");
                        param["explode"] = json!(false);
                    }
                    _ => {}
                }
            }
        }
    }
    let schemas = doc["components"]["schemas"].as_object_mut().expect("schemas");
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    schemas["UserIn"]["properties"]["timezone"]["enum"] = json!(zones);
    let mut nullable_zones = json!(zones);
    nullable_zones.as_array_mut().expect("an array").push(Value::Null);
    schemas["EventContextIn"]["properties"]["timezone"]["enum"] = nullable_zones;
    let feedback: Vec<&str> = crate::push::frequency::FeedbackKind::ALL.iter().map(|k| k.as_str()).collect();
    schemas["FeedbackIn"]["properties"]["kind"]["enum"] = json!(feedback);
    schemas["EventBatchIn"]["properties"]["events"]["maxItems"] = json!(settings.ingest.max_events_per_request);

    // An event of a kind that names an item needs `item_id`; the others may carry one.
    let event = schemas["EventIn"].clone();
    let item_kinds: Vec<&str> = tuning.kinds.iter().filter(|(_, k)| k.item).map(|(n, _)| n.as_str()).collect();
    let plain_kinds: Vec<&str> = tuning.kinds.iter().filter(|(_, k)| !k.item).map(|(n, _)| n.as_str()).collect();
    let mut variants = Vec::new();
    if !item_kinds.is_empty() {
        let mut v = event.clone();
        v["properties"]["kind"]["enum"] = json!(item_kinds);
        v["properties"]["item_id"]["type"] = json!("string");
        v["required"].as_array_mut().expect("required fields").push(json!("item_id"));
        v["description"] = json!(format!("{} This kind names an item.", event["description"].as_str().unwrap_or("")));
        variants.push(v);
    }
    if !plain_kinds.is_empty() {
        let mut v = event.clone();
        v["properties"]["kind"]["enum"] = json!(plain_kinds);
        variants.push(v);
    }
    schemas["EventIn"] = json!({"oneOf": variants, "description": event["description"]});
}

#[cfg(test)]
mod tests;
