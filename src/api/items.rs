//! Catalog: `PUT /v1/items/{item_id}`, batch `POST /v1/items`, `GET /v1/items/{item_id}`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::Path;
use super::{ApiError, ApiResult, AppState, json_body};
use crate::domain::{FieldError, Item, check_id};
use crate::parse::{Fields, MAX_TEXT_CHARS};

/// Most items in one `POST /v1/items`.
pub const MAX_ITEMS_PER_BATCH: usize = 1000;
const ITEM_FIELDS: [&str; 8] = ["item_id", "category", "brand", "price", "tags", "available", "title", "created_at"];

pub fn write_router() -> Router<AppState> {
    Router::new().route("/v1/items/{item_id}", axum::routing::put(put_item)).route("/v1/items", post(post_items))
}

pub fn read_router() -> Router<AppState> {
    Router::new().route("/v1/items/{item_id}", get(get_item))
}

/// Parses one item; `id_from_path` overrides (and must match) any `item_id` in the body.
fn parse_item(raw: &Value, prefix: &str, index: Option<usize>, id_from_path: Option<&str>, errors: &mut Vec<FieldError>) -> Option<Item> {
    let before = errors.len();
    let mut f = Fields::object(raw, prefix, index, errors)?;
    f.deny_unknown(&ITEM_FIELDS);
    let item_id = match id_from_path {
        Some(id) => {
            if let Some(body_id) = f.opt_id("item_id")
                && body_id != id
            {
                f.error("item_id", "does not match the id in the path");
            }
            Some(id.to_string())
        }
        None => f.req_id("item_id"),
    };
    let category = match f.opt_str("category", 512) {
        Some(path) => {
            let segments: Vec<String> = path.split('/').map(str::trim).map(str::to_string).collect();
            if segments.iter().any(String::is_empty) {
                f.error("category", "must be a path like electronics/phones/android with no empty segment");
            }
            segments
        }
        None => {
            f.error("category", "is required");
            Vec::new()
        }
    };
    let item = Item {
        item_id: item_id.unwrap_or_default(),
        category,
        brand: f.opt_str("brand", 256),
        price: f.opt_non_negative("price"),
        tags: f.opt_str_list("tags", 64, 64).unwrap_or_default(),
        available: f.opt_bool("available").unwrap_or(true),
        title: f.opt_str("title", MAX_TEXT_CHARS),
        created_at: f.opt_time("created_at"),
    };
    (errors.len() == before).then_some(item)
}

fn path_id(id: &str) -> ApiResult<()> {
    check_id(id).map_err(|e| ApiError::field("item_id", e.to_string()))
}

// The bodies as the OpenAPI document shows them: mirrors of what `parse_item` accepts.

/// One item of `PUT /v1/items/{item_id}` (the id is the path's; an `item_id` in the body
/// must equal it, so the document leaves it out).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ItemIn {
    /// Category path root first, `/`-separated, no empty (or blank) segment, e.g.
    /// `electronics/phones/android`.
    #[schema(max_length = 512, pattern = "^[^/\\u0000-\\u001F\\u007F-\\u009F]*[^/\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^/\\u0000-\\u001F\\u007F-\\u009F]*(?:/[^/\\u0000-\\u001F\\u007F-\\u009F]*[^/\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^/\\u0000-\\u001F\\u007F-\\u009F]*)*$")]
    category: String,
    #[schema(max_length = 256, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    brand: Option<String>,
    #[schema(minimum = 0)]
    price: Option<f64>,
    #[schema(max_items = 64, inline)]
    tags: Option<Vec<Tag>>,
    /// Default true.
    available: Option<bool>,
    #[schema(max_length = 1024, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    title: Option<String>,
    created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A tag: 1..=64 characters without control characters.
#[derive(ToSchema)]
#[schema(min_length = 1, max_length = 64, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
#[allow(dead_code)]
pub struct Tag(String);

/// One item of `POST /v1/items`: `ItemIn` with its `item_id`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ItemWithIdIn {
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    item_id: String,
    #[schema(max_length = 512, pattern = "^[^/\\u0000-\\u001F\\u007F-\\u009F]*[^/\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^/\\u0000-\\u001F\\u007F-\\u009F]*(?:/[^/\\u0000-\\u001F\\u007F-\\u009F]*[^/\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^/\\u0000-\\u001F\\u007F-\\u009F]*)*$")]
    category: String,
    #[schema(max_length = 256, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    brand: Option<String>,
    #[schema(minimum = 0)]
    price: Option<f64>,
    #[schema(max_items = 64, inline)]
    tags: Option<Vec<Tag>>,
    /// Default true.
    available: Option<bool>,
    #[schema(max_length = 1024, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    title: Option<String>,
    created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `{"items": [...]}`, 1..=1,000 items, all written or none.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ItemsIn {
    #[schema(min_items = 1, max_items = 1000)]
    items: Vec<ItemWithIdIn>,
}

/// Create or replace one item.
#[utoipa::path(put, path = "/v1/items/{item_id}", tag = "catalog",
    params(("item_id" = String, Path, description = "item id")),
    request_body(content = ItemIn),
    responses((status = 200, body = Item)),
    security(("api_key" = [])))]
pub async fn put_item(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Item>> {
    path_id(&id)?;
    let body = json_body(&headers, body)?;
    let mut errors = Vec::new();
    let item = parse_item(&body, "", None, Some(&id), &mut errors).ok_or_else(|| ApiError::invalid(errors))?;
    state.store.upsert_items(std::slice::from_ref(&item)).await?;
    state.engine.item_changed(item.clone());
    Ok(Json(item))
}

#[derive(Serialize, ToSchema)]
pub struct ItemsWritten {
    pub written: usize,
}

/// Create or replace up to 1,000 items: `{"items": [...]}`. All or nothing.
#[utoipa::path(post, path = "/v1/items", tag = "catalog",
    request_body(content = ItemsIn),
    responses((status = 200, body = ItemsWritten)),
    security(("api_key" = [])))]
pub async fn post_items(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<ItemsWritten>> {
    let body = json_body(&headers, body)?;
    let mut errors = Vec::new();
    let Some(mut f) = Fields::object(&body, "", None, &mut errors) else { return Err(ApiError::invalid(errors)) };
    f.deny_unknown(&["items"]);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let Some(Value::Array(raw)) = body.get("items") else {
        return Err(ApiError::field("items", "must be an array of items"));
    };
    if raw.is_empty() {
        return Err(ApiError::field("items", "must hold at least one item"));
    }
    if raw.len() > MAX_ITEMS_PER_BATCH {
        return Err(ApiError::field("items", format!("a batch holds at most {MAX_ITEMS_PER_BATCH} items, got {}", raw.len())));
    }
    let mut errors = Vec::new();
    let items: Vec<Item> = raw
        .iter()
        .enumerate()
        .filter_map(|(i, v)| parse_item(v, &format!("items[{i}]"), Some(i), None, &mut errors))
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    // An item named twice is written once, as its last occurrence (as PUTs in that order
    // would leave it): one statement cannot write one row twice.
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        last.insert(&item.item_id, i);
    }
    let items: Vec<Item> = if last.len() == items.len() {
        items
    } else {
        let keep: Vec<bool> = (0..items.len()).map(|i| last[items[i].item_id.as_str()] == i).collect();
        items.into_iter().zip(keep).filter_map(|(item, keep)| keep.then_some(item)).collect()
    };
    state.store.upsert_items(&items).await?;
    let written = items.len();
    for item in items {
        state.engine.item_changed(item);
    }
    Ok(Json(ItemsWritten { written }))
}

/// One item.
#[utoipa::path(get, path = "/v1/items/{item_id}", tag = "catalog",
    params(("item_id" = String, Path, description = "item id")),
    responses((status = 200, body = Item), (status = 404, response = super::openapi::NotFound)),
    security(("api_key" = [])))]
pub async fn get_item(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Item>> {
    path_id(&id)?;
    state.store.get_item(&id).await?.map(Json).ok_or_else(|| ApiError::not_found("the item"))
}

