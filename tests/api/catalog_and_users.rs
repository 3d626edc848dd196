//! Catalog and users: writes, reads, validation, erasure.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, INGEST_KEY, READ_KEY, TestApp, expect_problem, problem_fields};
use crate::on_both_stores;

async fn an_item_is_written_and_read_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"category": "electronics/phones/android", "brand": "Acme", "price": 199.0,
                      "tags": ["5g", "dual-sim"], "available": true, "title": "Acme A1",
                      "created_at": "2026-01-02T03:04:05Z"});
    let r = app.put("/v1/items/phone-1", INGEST_KEY, &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let got: Value = app.get("/v1/items/phone-1", READ_KEY).await.json().await.unwrap();
    assert_eq!(got["category"], json!(["electronics", "phones", "android"]));
    assert_eq!(got["brand"], "Acme");
    assert_eq!(got["tags"], json!(["5g", "dual-sim"]));
    assert_eq!(got["created_at"], "2026-01-02T03:04:05Z");

    // Replace: price change and availability.
    let r = app.put("/v1/items/phone-1", INGEST_KEY, &json!({"category": "electronics/phones", "available": false})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let got: Value = app.get("/v1/items/phone-1", READ_KEY).await.json().await.unwrap();
    assert_eq!(got["available"], false);
    assert_eq!(got["brand"], Value::Null);
    expect_problem(app.get("/v1/items/nope", READ_KEY).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

async fn an_item_batch_is_all_or_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ok: Vec<Value> = (0..10).map(|i| json!({"item_id": format!("b{i}"), "category": "home/kitchen", "price": i})).collect();
    let r = app.post("/v1/items", INGEST_KEY, &json!({"items": ok})).await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"written": 10}));
    assert_eq!(app.store.count_items().await.unwrap(), 10);

    let bad = json!({"items": [{"item_id": "c1", "category": "a"}, {"item_id": "c2", "category": "a", "price": -5}]});
    let p = expect_problem(app.post("/v1/items", INGEST_KEY, &bad).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem_fields(&p), ["items[1].price"]);
    assert_eq!(p["errors"][0]["index"], 1);
    let p = expect_problem(app.post("/v1/items", INGEST_KEY, &json!({"items": [{"item_id": "c3"}]})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem_fields(&p), ["items[0].category"]);
    let p = expect_problem(app.put("/v1/items/x", INGEST_KEY, &json!({"category": "a//b"})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem_fields(&p), ["category"]);
    let many: Vec<Value> = (0..1001).map(|i| json!({"item_id": format!("m{i}"), "category": "a"})).collect();
    expect_problem(app.post("/v1/items", INGEST_KEY, &json!({"items": many})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.store.count_items().await.unwrap(), 10, "refused batches stored nothing");
    app.stop().await;
}

async fn a_user_is_written_read_and_erased_with_all_their_events(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"timezone": "America/New_York", "push_consent": true, "quiet_hours": {"start": 22, "end": 7}, "locale": "en-US"});
    assert_eq!(app.put("/v1/users/alice", INGEST_KEY, &body).await.status(), StatusCode::OK);
    let got: Value = app.get("/v1/users/alice", READ_KEY).await.json().await.unwrap();
    assert_eq!(got["timezone"], "America/New_York");
    assert_eq!(got["quiet_hours"], json!({"start": 22, "end": 7}));
    for (u, n) in [("alice", 3), ("bob", 2)] {
        for i in 0..n {
            app.post_events(&json!({"user_id": u, "item_id": format!("i{i}"), "kind": "view"})).await;
        }
    }
    let r = app.delete("/v1/users/alice", ADMIN_KEY).await;
    assert_eq!(r.status(), StatusCode::OK);
    let erased: Value = r.json().await.unwrap();
    assert_eq!(erased["users"], 1);
    assert_eq!(erased["events"], 3);
    assert_eq!(app.event_count().await, 2, "only bob's events remain");
    expect_problem(app.get("/v1/users/alice", READ_KEY).await, StatusCode::NOT_FOUND).await;
    expect_problem(app.delete("/v1/users/alice", ADMIN_KEY).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

async fn bad_user_settings_are_refused_and_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let good = json!({"timezone": "Europe/Paris", "push_consent": false});
    app.put("/v1/users/carol", INGEST_KEY, &good).await;
    let cases = [
        (json!({"timezone": "Europe/Atlantis", "push_consent": true}), "timezone"),
        (json!({"push_consent": true}), "timezone"),
        (json!({"timezone": "UTC"}), "push_consent"),
        (json!({"timezone": "UTC", "push_consent": "yes"}), "push_consent"),
        (json!({"timezone": "UTC", "push_consent": true, "quiet_hours": {"start": 25, "end": 7}}), "quiet_hours.start"),
        (json!({"timezone": "UTC", "push_consent": true, "quiet_hours": {"start": 22}}), "quiet_hours.end"),
    ];
    for (body, field) in cases {
        let p = expect_problem(app.put("/v1/users/carol", INGEST_KEY, &body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(problem_fields(&p).iter().any(|f| f == field), "{field} not in {p}");
    }
    let got: Value = app.get("/v1/users/carol", READ_KEY).await.json().await.unwrap();
    assert_eq!(got["timezone"], "Europe/Paris");
    assert_eq!(got["push_consent"], false);
    let long = "u".repeat(300);
    expect_problem(app.put(&format!("/v1/users/{long}"), INGEST_KEY, &good).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    expect_problem(app.delete("/v1/users/nobody", ADMIN_KEY).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

async fn an_item_batch_naming_an_item_twice_writes_its_last_occurrence(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let batch = json!({"items": [{"item_id": "d", "category": "a"}, {"item_id": "e", "category": "x"}, {"item_id": "d", "category": "b/c"}]});
    let r = app.post("/v1/items", INGEST_KEY, &batch).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let got: Value = app.get("/v1/items/d", READ_KEY).await.json().await.unwrap();
    assert_eq!(got["category"], json!(["b", "c"]));
    // A field beside `items` is refused, naming it, and nothing is written.
    let r = app.post("/v1/items", INGEST_KEY, &json!({"items": [{"item_id": "f", "category": "a"}], "extra": 1})).await;
    assert_eq!(problem_fields(&expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await), ["extra"]);
    expect_problem(app.get("/v1/items/f", READ_KEY).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

async fn ids_and_texts_are_bounded_in_characters_and_integral_numbers_are_integers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // 256 two-byte characters: 512 bytes, within the 256-character bound.
    let id = "é".repeat(256);
    let r = app.put(&format!("/v1/items/{id}"), INGEST_KEY, &json!({"category": "a", "brand": "ß".repeat(256)})).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = app.put(&format!("/v1/items/{id}é"), INGEST_KEY, &json!({"category": "a"})).await;
    assert_eq!(problem_fields(&expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await), ["item_id"]);
    // 22.0 is an integer, as JSON Schema counts; 22.5 is not.
    let user = |start: Value| json!({"timezone": "UTC", "push_consent": true, "quiet_hours": {"start": start, "end": 7}});
    assert_eq!(app.put("/v1/users/q", INGEST_KEY, &user(json!(22.0))).await.status(), StatusCode::OK);
    let r = app.put("/v1/users/q", INGEST_KEY, &user(json!(22.5))).await;
    assert_eq!(problem_fields(&expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await), ["quiet_hours.start"]);
    app.stop().await;
}

on_both_stores!(
    an_item_batch_naming_an_item_twice_writes_its_last_occurrence,
    ids_and_texts_are_bounded_in_characters_and_integral_numbers_are_integers,
    an_item_is_written_and_read_back,
    an_item_batch_is_all_or_nothing,
    a_user_is_written_read_and_erased_with_all_their_events,
    bad_user_settings_are_refused_and_change_nothing,
);
