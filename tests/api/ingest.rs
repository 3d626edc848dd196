//! POST /v1/events: acceptance, idempotency, and every refusal leaving the store unchanged.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, INGEST_KEY, TestApp, expect_problem, problem_fields};
use crate::on_both_stores;

fn event(user: &str, item: &str, kind: &str) -> Value {
    json!({"event_id": uuid::Uuid::new_v4(), "user_id": user, "item_id": item, "kind": kind,
           "context": {"device": "mobile", "country": "de", "timezone": "Europe/Berlin"},
           "props": {"price": 9.99, "quantity": 1}})
}

async fn ingest_accepts_a_batch_and_counts_a_repeat_as_duplicate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let batch = json!({"events": [event("u1", "i1", "view"), event("u1", "i2", "cart"), event("u2", "i1", "purchase")]});
    let r = app.post_events(&batch).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"accepted": 3, "duplicates": 0}));
    assert_eq!(app.event_count().await, 3);

    let again = app.post_events(&batch).await;
    assert_eq!(again.json::<Value>().await.unwrap(), json!({"accepted": 0, "duplicates": 3}));
    assert_eq!(app.event_count().await, 3);

    // The same id twice in one batch: stored once, counted once as duplicate.
    let e = event("u3", "i9", "view");
    let r = app.post_events(&json!({"events": [e.clone(), e]})).await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"accepted": 1, "duplicates": 1}));
    assert_eq!(app.event_count().await, 4);
    app.stop().await;
}

async fn ingest_accepts_a_single_event_without_id_or_timestamp_and_stores_it_for_the_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app.post_events(&json!({"user_id": "solo", "kind": "app_open"})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let stored = app.store.user_events("solo", chrono::Utc::now() - chrono::Duration::hours(1), 100).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].kind, "app_open");
    assert!((chrono::Utc::now() - stored[0].ts).num_seconds() < 60);
    app.stop().await;
}

async fn concurrent_requests_share_group_commits_and_all_are_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut tasks = Vec::new();
    for c in 0..16 {
        let client = app.client.clone();
        let url = app.url("/v1/events");
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let body = event(&format!("c{c}"), &format!("i{i}"), "view");
                let r = client.post(&url).bearer_auth(INGEST_KEY).json(&body).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::ACCEPTED);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(app.event_count().await, 320);
    app.stop().await;
}

/// Each case: (body, expected status, a field the problem must name).
async fn every_bad_event_is_refused_with_its_field_and_nothing_is_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.post_events(&event("keep", "i1", "view")).await;
    let future = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let ancient = (chrono::Utc::now() - chrono::Duration::days(400)).to_rfc3339();
    let long = "x".repeat(257);
    let good = event("u", "i", "view");
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (json!({"events": [good.clone(), {"user_id": "u", "item_id": "i", "kind": "teleport"}]}), StatusCode::UNPROCESSABLE_ENTITY, "events[1].kind"),
        (json!({"events": [good.clone(), {"user_id": "u", "kind": "cart"}]}), StatusCode::UNPROCESSABLE_ENTITY, "events[1].item_id"),
        (json!({"user_id": "", "item_id": "i", "kind": "view"}), StatusCode::UNPROCESSABLE_ENTITY, "user_id"),
        (json!({"user_id": long, "item_id": "i", "kind": "view"}), StatusCode::UNPROCESSABLE_ENTITY, "user_id"),
        (json!({"user_id": "a\u{0001}b", "item_id": "i", "kind": "view"}), StatusCode::UNPROCESSABLE_ENTITY, "user_id"),
        (json!({"user_id": "u", "item_id": "i\n", "kind": "view"}), StatusCode::UNPROCESSABLE_ENTITY, "item_id"),
        (json!({"user_id": "u", "item_id": "i", "kind": "view", "ts": future}), StatusCode::UNPROCESSABLE_ENTITY, "ts"),
        (json!({"user_id": "u", "item_id": "i", "kind": "view", "ts": ancient}), StatusCode::UNPROCESSABLE_ENTITY, "ts"),
        (json!({"user_id": "u", "item_id": "i", "kind": "view", "ts": "yesterday"}), StatusCode::UNPROCESSABLE_ENTITY, "ts"),
        (json!({"user_id": "u", "item_id": "i", "kind": "purchase", "props": {"price": -1}}), StatusCode::UNPROCESSABLE_ENTITY, "props.price"),
        (json!({"user_id": "u", "item_id": "i", "kind": "view", "context": {"device": "fridge"}}), StatusCode::UNPROCESSABLE_ENTITY, "context.device"),
        (json!({"user_id": "u", "item_id": "i", "kind": "view", "context": {"timezone": "Mars/Base"}}), StatusCode::UNPROCESSABLE_ENTITY, "context.timezone"),
        (json!({"user_id": "u", "item_id": "i", "kind": "view", "event_id": "not-a-uuid"}), StatusCode::UNPROCESSABLE_ENTITY, "event_id"),
        (json!({"user_id": "u", "item_id": "i", "kind": "view", "colour": "red"}), StatusCode::UNPROCESSABLE_ENTITY, "colour"),
        (json!({"events": []}), StatusCode::UNPROCESSABLE_ENTITY, "events"),
        (json!({"events": "nope"}), StatusCode::UNPROCESSABLE_ENTITY, "events"),
    ];
    for (body, status, field) in cases {
        let problem = expect_problem(app.post_events(&body).await, status).await;
        assert!(problem_fields(&problem).iter().any(|f| f == field), "{field} not named in {problem}");
    }
    // The index of a bad event in a batch is given.
    let p = expect_problem(
        app.post_events(&json!({"events": [good.clone(), good.clone(), {"user_id": "u", "kind": "nope"}]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(p["errors"][0]["index"], 2);

    // A batch over 1,000 events.
    let many: Vec<Value> = (0..1001).map(|i| event(&format!("u{i}"), "i", "view")).collect();
    let p = expect_problem(app.post_events(&json!({"events": many})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem_fields(&p), ["events"]);

    // Malformed JSON, wrong content type.
    let r = app.client.post(app.url("/v1/events")).bearer_auth(INGEST_KEY).header("content-type", "application/json").body("{\"user_id\": ").send().await.unwrap();
    expect_problem(r, StatusCode::BAD_REQUEST).await;
    let r = app.client.post(app.url("/v1/events")).bearer_auth(INGEST_KEY).header("content-type", "text/plain").body("{}").send().await.unwrap();
    expect_problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    assert_eq!(app.event_count().await, 1, "no refused request stored anything");
    app.stop().await;
}

async fn a_body_over_the_configured_limit_is_refused_with_413(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.server.body_limit_bytes = 4096).await;
    let events: Vec<Value> = (0..100).map(|i| event(&format!("u{i}"), "i", "view")).collect();
    let r = app.post_events(&json!({"events": events})).await;
    expect_problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

async fn a_full_ingest_queue_answers_503_with_retry_after(backend: Backend) {
    // One writer committing one event at a time and a queue of one request: a burst of
    // concurrent requests overflows while the writer is inside a commit.
    let app = TestApp::spawn_with(backend, |s| {
        s.ingest.writers = 1;
        s.ingest.queue_capacity = 1;
        s.ingest.flush_interval_ms = 0;
        s.ingest.flush_max_events = 1;
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..48 {
        let client = app.client.clone();
        let url = app.url("/v1/events");
        let body = event(&format!("q{i}"), "i", "view");
        tasks.push(tokio::spawn(async move { client.post(&url).bearer_auth(INGEST_KEY).json(&body).send().await.unwrap() }));
    }
    let mut accepted = 0;
    let mut refused = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(r.headers().contains_key("retry-after"));
                expect_problem(r, StatusCode::SERVICE_UNAVAILABLE).await;
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0, "some requests must be refused with back-pressure");
    assert_eq!(app.event_count().await, accepted, "exactly the acknowledged events are stored");
    app.stop().await;
}

async fn graceful_shutdown_commits_what_was_acknowledged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let store = app.store.clone();
    for i in 0..5 {
        app.post_events(&event(&format!("s{i}"), "i", "view")).await;
    }
    let _stopped = app.stop().await;
    assert_eq!(store.count_events().await.unwrap(), 5);
}

on_both_stores!(
    ingest_accepts_a_batch_and_counts_a_repeat_as_duplicate,
    ingest_accepts_a_single_event_without_id_or_timestamp_and_stores_it_for_the_user,
    concurrent_requests_share_group_commits_and_all_are_stored,
    every_bad_event_is_refused_with_its_field_and_nothing_is_stored,
    a_body_over_the_configured_limit_is_refused_with_413,
    a_full_ingest_queue_answers_503_with_retry_after,
    graceful_shutdown_commits_what_was_acknowledged,
);

/// The statistics refresher reads `events_after`: it must return only the settled prefix of
/// the log, never a later-numbered row received earlier while an earlier-numbered one is
/// still settling (the cursor would then skip the earlier row for good).
#[tokio::test]
async fn events_after_stops_at_the_first_unsettled_row_on_postgres() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let body = json!({"events": [event("u1", "i1", "view")]});
    assert_eq!(app.post("/v1/events", INGEST_KEY, &body).await.status(), StatusCode::ACCEPTED);
    let body = json!({"events": [event("u2", "i2", "view")]});
    assert_eq!(app.post("/v1/events", INGEST_KEY, &body).await.status(), StatusCode::ACCEPTED);
    let url = app.state.settings.database.url.clone().expect("a PostgreSQL app");
    let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
    // The lower seq was received just now, the higher one an hour ago.
    sqlx::query(
        "update events set received_at = case when seq = (select min(seq) from events) \
         then now() else now() - interval '1 hour' end",
    )
    .execute(&pool)
    .await
    .unwrap();
    let settle = chrono::TimeDelta::seconds(60);
    assert!(app.store.events_after(0, 100, settle).await.unwrap().is_empty(), "nothing before the unsettled row");
    sqlx::query("update events set received_at = now() - interval '2 hours'").execute(&pool).await.unwrap();
    let users: Vec<String> =
        app.store.events_after(0, 100, settle).await.unwrap().into_iter().map(|l| l.event.user_id).collect();
    assert_eq!(users, ["u1", "u2"]);
    pool.close().await;
    app.stop().await;
}
