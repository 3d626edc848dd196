//! A store outage under a running service: every route family answers 503 problem+json with
//! `Retry-After` (never a 500, never a 4xx), on both stores, whether the pool is closed or
//! the database stops answering.

use std::net::SocketAddr;

use kairos::config::Secret;
use reqwest::{Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::helpers::{ADMIN_KEY, Backend, GATEWAY_KEY, INGEST_KEY, READ_KEY, TestApp, expect_problem};
use crate::on_both_stores;

/// One request of every route family that reads or writes the store.
async fn every_store_route(app: &TestApp) -> Vec<(&'static str, Response)> {
    let event = json!({"user_id": "u", "item_id": "i", "kind": "view"});
    let items = json!({"items": [{"item_id": "i2", "category": "a"}]});
    let item = json!({"category": "a/b"});
    let user = json!({"timezone": "Europe/Berlin", "push_consent": true});
    let feedback = json!({"push_id": uuid::Uuid::new_v4(), "kind": "opened"});
    let (empty, unpin) = (json!({}), json!({"version": null}));
    let (events, items, put_item, get_item, put_user, get_user, delete_user) = tokio::join!(
        app.post_events(&event),
        app.post("/v1/items", INGEST_KEY, &items),
        app.put("/v1/items/i", INGEST_KEY, &item),
        app.get("/v1/items/i", READ_KEY),
        app.put("/v1/users/u", INGEST_KEY, &user),
        app.get("/v1/users/u", READ_KEY),
        app.delete("/v1/users/u", ADMIN_KEY),
    );
    let (recommendations, interests, plan, due, feedback) = tokio::join!(
        app.get("/v1/users/u/recommendations", READ_KEY),
        app.get("/v1/users/u/interests", READ_KEY),
        app.get("/v1/users/u/push-plan", READ_KEY),
        app.get("/v1/pushes/due", GATEWAY_KEY),
        app.post("/v1/feedback", GATEWAY_KEY, &feedback),
    );
    let (models, train, deploy, pin, ready) = tokio::join!(
        app.get("/v1/admin/models", ADMIN_KEY),
        app.post("/v1/admin/models/train?wait=true", ADMIN_KEY, &empty),
        app.post("/v1/admin/models/1/deploy", ADMIN_KEY, &empty),
        app.put("/v1/admin/models/pin", ADMIN_KEY, &unpin),
        app.client.get(app.url("/readyz")).send(),
    );
    vec![
        ("POST /v1/events", events),
        ("POST /v1/items", items),
        ("PUT /v1/items/{item_id}", put_item),
        ("GET /v1/items/{item_id}", get_item),
        ("PUT /v1/users/{user_id}", put_user),
        ("GET /v1/users/{user_id}", get_user),
        ("DELETE /v1/users/{user_id}", delete_user),
        ("GET /v1/users/{user_id}/recommendations", recommendations),
        ("GET /v1/users/{user_id}/interests", interests),
        ("GET /v1/users/{user_id}/push-plan", plan),
        ("GET /v1/pushes/due", due),
        ("POST /v1/feedback", feedback),
        ("GET /v1/admin/models", models),
        ("POST /v1/admin/models/train", train),
        ("POST /v1/admin/models/{version}/deploy", deploy),
        ("PUT /v1/admin/models/pin", pin),
        ("GET /readyz", ready.unwrap()),
    ]
}

async fn expect_store_unavailable(routes: Vec<(&'static str, Response)>) {
    for (route, r) in routes {
        let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{route}");
        let body = expect_problem(r, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(body["type"], "urn:kairos:problem:store-unavailable", "{route}: {body}");
        assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok()), "{route} carries Retry-After");
    }
}

async fn every_route_answers_503_with_retry_after_once_the_store_pool_is_closed(backend: Backend) {
    let (app, pool) = TestApp::spawn_on(backend, |_| {}).await;
    app.wait_ready().await;
    pool.close().await;
    expect_store_unavailable(every_store_route(&app).await).await;
    app.stop().await;
}

on_both_stores!(every_route_answers_503_with_retry_after_once_the_store_pool_is_closed);

/// A TCP relay to PostgreSQL that can be stopped: then every relayed connection is cut and
/// new ones are refused, as when the database host goes away.
struct Relay {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap(),
                    () = token.cancelled() => return, // the listener is dropped: refused
                };
                let (target, token) = (target.clone(), token.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = token.cancelled() => {}
                    }
                });
            }
        });
        Relay { addr, stop }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_503_with_retry_after_when_postgresql_stops_answering() {
    let admin = crate::helpers::admin_url();
    let host_port = admin.split_once('@').map_or(admin.as_str(), |(_, rest)| rest).split('/').next().unwrap().to_string();
    let relay = Relay::start(host_port.clone()).await;
    let relayed = relay.addr.to_string();
    let (app, _pool) = TestApp::spawn_on(Backend::Postgres, |s| {
        let url = s.database.url.as_ref().unwrap().expose().replacen(&host_port, &relayed, 1);
        s.database.url = Some(Secret::new(url));
        s.database.acquire_timeout_secs = 1;
    })
    .await;
    app.wait_ready().await;
    let r = app.post_events(&json!({"user_id": "u", "item_id": "i", "kind": "view"})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "the relay works before it stops");

    relay.stop.cancel();
    expect_store_unavailable(every_store_route(&app).await).await;
    app.stop().await;
}
