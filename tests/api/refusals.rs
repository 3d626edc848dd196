//! Every refusal is problem+json naming what was wrong, whoever refused: the router (405,
//! 404), the extractors (a path that is not UTF-8, a repeated query parameter), the time
//! limit, authentication.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Backend, GATEWAY_KEY, INGEST_KEY, READ_KEY, TestApp, expect_problem, problem_fields};
use crate::on_both_stores;

/// Sends `raw` on a new connection and reads until the server closes it (a hang guard of a
/// minute, not a speed check).
pub async fn raw_exchange(app: &TestApp, raw: &[u8]) -> String {
    let mut conn = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    conn.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

async fn a_path_that_is_not_utf8_is_refused_naming_its_parameter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (path, field) in [
        ("/v1/users/%FF/recommendations", "user_id"),
        ("/v1/users/%C3%28", "user_id"),
        ("/v1/items/%FF", "item_id"),
        ("/v1/users/%FF/push-plan", "user_id"),
    ] {
        let body = expect_problem(app.get(path, READ_KEY).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem_fields(&body), [field], "{path}: {body}");
    }
    app.stop().await;
}

async fn a_repeated_or_unknown_query_parameter_is_refused_naming_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = expect_problem(app.get("/v1/users/u/recommendations?n=1&n=2", READ_KEY).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem_fields(&body), ["n"], "{body}");
    let body = expect_problem(app.get("/v1/pushes/due?limit=1&limit=2", GATEWAY_KEY).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem_fields(&body), ["limit"], "{body}");
    let body = expect_problem(app.get("/v1/pushes/due?limt=5", GATEWAY_KEY).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem_fields(&body), ["limt"], "{body}");
    assert_eq!(app.get("/v1/pushes/due?limit=5", GATEWAY_KEY).await.status(), StatusCode::OK);
    app.stop().await;
}

async fn a_method_the_route_does_not_answer_is_405_problem_json_with_allow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app.client.patch(app.url("/v1/events")).bearer_auth(INGEST_KEY).json(&json!({})).send().await.unwrap();
    let allow = r.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = expect_problem(r, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(body["type"], "urn:kairos:problem:method-not-allowed");
    assert!(allow.contains("POST"), "Allow: {allow:?}");
    expect_problem(app.get("/v1/nothing-here", READ_KEY).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

async fn a_request_past_the_time_limit_is_503_problem_json_with_retry_after(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.server.request_timeout_secs = 1).await;
    // The body is announced but never finished: the handler waits for it past the limit.
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {INGEST_KEY}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"user_id\":"
    );
    let reply = raw_exchange(&app, head.as_bytes()).await.to_ascii_lowercase();
    assert!(reply.starts_with("http/1.1 503"), "{reply}");
    assert!(reply.contains("content-type: application/problem+json"), "{reply}");
    assert!(reply.contains("retry-after:"), "{reply}");
    assert!(reply.contains("urn:kairos:problem:timeout"), "{reply}");
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

async fn a_401_challenges_for_a_bearer_key_whose_scheme_is_read_in_any_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app.client.get(app.url("/v1/items/i")).send().await.unwrap();
    let challenge = r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    expect_problem(r, StatusCode::UNAUTHORIZED).await;
    assert!(challenge.starts_with("Bearer"), "WWW-Authenticate: {challenge:?}");
    let r = app.client.get(app.url("/v1/items/i")).bearer_auth("not-a-key-not-a-key").send().await.unwrap();
    assert!(r.headers().get("www-authenticate").is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")));
    expect_problem(r, StatusCode::UNAUTHORIZED).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = app.client.get(app.url("/v1/items/i")).header("authorization", format!("{scheme} {READ_KEY}")).send().await.unwrap();
        expect_problem(r, StatusCode::NOT_FOUND).await; // authorised: the item does not exist
    }
    app.stop().await;
}

on_both_stores!(
    a_path_that_is_not_utf8_is_refused_naming_its_parameter,
    a_repeated_or_unknown_query_parameter_is_refused_naming_it,
    a_method_the_route_does_not_answer_is_405_problem_json_with_allow,
    a_request_past_the_time_limit_is_503_problem_json_with_retry_after,
    a_401_challenges_for_a_bearer_key_whose_scheme_is_read_in_any_case,
);
