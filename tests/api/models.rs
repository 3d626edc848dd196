//! The learned ranker's life over HTTP: the hand-set blend before any model, a training
//! skipped on a tiny log, a model trained on the shop's log, stored, deployed, loaded and
//! named by every answer; rollback and pin; a corrupt stored model refused while the previous
//! one keeps serving.

use std::collections::HashSet;

use chrono::{TimeDelta, Utc};
use kairos::tools::synth::{Regime, Shape, generate};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, INGEST_KEY, READ_KEY, TestApp, expect_problem, problem_fields, store_deployed_model};
use crate::on_both_stores;

/// Posts a generated log of `regime` (its items first), shifted to end an hour ago.
async fn load_log(app: &TestApp, regime: Regime) -> Vec<kairos::tools::eval::LogEvent> {
    let log = generate(regime, Shape { users: 120, items: 600, events: 7_000, days: 5, seed: 5 });
    let shift = (Utc::now() - TimeDelta::hours(1)).timestamp() - log.last().unwrap().ts;
    let mut seen = HashSet::new();
    let items: Vec<Value> = log
        .iter()
        .filter(|e| seen.insert(e.item.clone()))
        .map(|e| json!({"item_id": e.item, "category": e.category}))
        .collect();
    for chunk in items.chunks(500) {
        assert_eq!(app.post("/v1/items", INGEST_KEY, &json!({"items": chunk})).await.status(), StatusCode::OK);
    }
    let events: Vec<Value> = log
        .iter()
        .map(|e| {
            let ts = chrono::DateTime::from_timestamp(e.ts + shift, 0).unwrap();
            json!({"user_id": e.user, "item_id": e.item, "kind": e.behaviour.kind(), "ts": ts.to_rfc3339()})
        })
        .collect();
    for chunk in events.chunks(1000) {
        assert_eq!(app.post_events(&json!({"events": chunk})).await.status(), StatusCode::ACCEPTED);
    }
    log
}

async fn train(app: &TestApp) -> Value {
    let r = app.post("/v1/admin/models/train?wait=true", ADMIN_KEY, &json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn models(app: &TestApp) -> Value {
    let r = app.get("/v1/admin/models", ADMIN_KEY).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn recommend(app: &TestApp, user: &str) -> Value {
    let r = app.get(&format!("/v1/users/{user}/recommendations?n=5"), READ_KEY).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn a_tiny_log_is_ranked_by_the_hand_set_blend_and_its_training_is_skipped_with_a_reason(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let now = Utc::now();
    assert_eq!(app.post("/v1/items", INGEST_KEY, &json!({"items": [{"item_id": "a", "category": "x"}]})).await.status(), StatusCode::OK);
    let events = json!({"events": [{"user_id": "u", "item_id": "a", "kind": "cart", "ts": (now - TimeDelta::minutes(5)).to_rfc3339()}]});
    assert_eq!(app.post_events(&events).await.status(), StatusCode::ACCEPTED);
    let answer = recommend(&app, "u").await;
    assert_eq!(answer["model_version"], Value::Null, "no model yet: the hand-set blend ranks");
    let run = train(&app).await;
    assert_eq!(run["outcome"], "skipped", "{run}");
    assert!(run["reason"].as_str().unwrap().contains("training examples"), "{run}");
    let listed = models(&app).await;
    assert_eq!(listed["models"].as_array().unwrap().len(), 0, "nothing stored: {listed}");
    assert_eq!(listed["in_force"], Value::Null);
    assert_eq!(listed["last_run"]["outcome"], "skipped");
    app.stop().await;
}

async fn a_model_trained_on_the_shops_log_is_stored_deployed_and_names_every_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let log = load_log(&app, Regime::Sequential).await;
    let run = train(&app).await;
    assert_eq!(run["outcome"], "deployed", "{run}");
    let version = run["version"].as_i64().unwrap();
    let report = &run["report"];
    assert!(report["holdout_ndcg"].as_f64().unwrap() > report["holdout_ndcg_handset"].as_f64().unwrap(), "{report}");
    let listed = models(&app).await;
    assert_eq!(listed["in_force"], version);
    assert_eq!(listed["serving"], version, "the training replica loads it at once");
    let row = &listed["models"][0];
    assert_eq!(row["version"], version);
    assert!(row["params_bytes"].as_i64().unwrap() > 100);
    assert_eq!(row["metrics"]["outcome"], "deployed");

    let user = &log.last().unwrap().user;
    let answer = recommend(&app, user).await;
    assert_eq!(answer["model_version"], version);
    let first = &answer["items"][0]["reasons"];
    assert!(!first["contributions"].as_array().unwrap().is_empty(), "reasons name the largest feature contributions: {first}");

    // A second training is compared with the deployed model: stored either way.
    let again = train(&app).await;
    assert!(["deployed", "kept"].contains(&again["outcome"].as_str().unwrap()), "{again}");
    assert!(again["report"]["holdout_ndcg_deployed"].is_number(), "judged against the model in force: {again}");
    let second = again["version"].as_i64().unwrap();

    // Roll back to the first, pin it, and a later deployment does not displace the pin.
    let r: Value = app.post(&format!("/v1/admin/models/{version}/deploy"), ADMIN_KEY, &json!({})).await.json().await.unwrap();
    assert_eq!(r["in_force"], version);
    let r: Value = app.put("/v1/admin/models/pin", ADMIN_KEY, &json!({"version": version})).await.json().await.unwrap();
    assert_eq!((r["in_force"].as_i64(), r["pinned"].as_bool()), (Some(version), Some(true)));
    let r: Value = app.post(&format!("/v1/admin/models/{second}/deploy"), ADMIN_KEY, &json!({})).await.json().await.unwrap();
    assert_eq!(r["in_force"], version, "the pin wins");
    assert_eq!(recommend(&app, user).await["model_version"], version);
    let r: Value = app.put("/v1/admin/models/pin", ADMIN_KEY, &json!({"version": null})).await.json().await.unwrap();
    assert_eq!((r["in_force"].as_i64(), r["pinned"].as_bool()), (Some(second), Some(false)));

    // Refusals name the field and change nothing.
    expect_problem(app.post("/v1/admin/models/9999/deploy", ADMIN_KEY, &json!({})).await, StatusCode::NOT_FOUND).await;
    let bad = expect_problem(app.post("/v1/admin/models/abc/deploy", ADMIN_KEY, &json!({})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem_fields(&bad), ["version"]);
    let bad = expect_problem(app.put("/v1/admin/models/pin", ADMIN_KEY, &json!({"version": "x", "extra": 1})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem_fields(&bad).len(), 2, "{bad}");
    expect_problem(app.put("/v1/admin/models/pin", ADMIN_KEY, &json!({})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    expect_problem(app.put("/v1/admin/models/pin", ADMIN_KEY, &json!({"version": 9999})).await, StatusCode::NOT_FOUND).await;
    let bad = expect_problem(app.post("/v1/admin/models/train?wait=soon", ADMIN_KEY, &json!({})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem_fields(&bad), ["wait"]);
    expect_problem(app.get("/v1/admin/models", READ_KEY).await, StatusCode::FORBIDDEN).await;
    assert_eq!(models(&app).await["in_force"], second, "nothing refused changed what is in force");
    app.stop().await;
}

async fn a_corrupt_stored_model_is_refused_and_the_previous_one_keeps_serving(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let log = load_log(&app, Regime::Repeat).await;
    let good = train(&app).await["version"].as_i64().expect("a first model");
    for params in ["{\"format\":", r#"{"format":"kairos-linear-ranker/1","features":["a"],"mean":[0],"scale":[1],"weights":[1]}"#] {
        let version = store_deployed_model(&app, "ranker", params).await;
        assert_eq!(app.state.engine.load_model().await.unwrap(), Some(good as u64));
        let listed = models(&app).await;
        assert_eq!(listed["in_force"], version, "the store says the bad one is in force");
        assert_eq!(listed["serving"], good, "but this replica kept the good one");
        assert_eq!(recommend(&app, &log.last().unwrap().user).await["model_version"], good);
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    // The recorder is global to the test process (both stores run at once): at least these two.
    let refused = metrics.lines().find_map(|l| l.strip_prefix("kairos_model_loads_total{kind=\"ranker\",outcome=\"refused\"} ")).and_then(|n| n.parse::<u64>().ok());
    assert!(refused.is_some_and(|n| n >= 2), "{metrics}");
    app.stop().await;
}

async fn the_sequence_model_is_trained_stored_loaded_and_named_and_a_corrupt_one_is_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.tuning.sequence = kairos::rank::sequence::SequenceConfig { enabled: true, dim: 16, blocks: 1, epochs: 2, min_targets: 100, ..Default::default() };
    })
    .await;
    let log = load_log(&app, Regime::Sequential).await;
    let run = train(&app).await;
    assert_eq!(run["sequence"]["outcome"], "deployed", "{run}");
    let version = run["sequence"]["version"].as_i64().unwrap();
    app.state.engine.load_model().await.unwrap();
    assert_eq!(models(&app).await["sequence_serving"], version);
    let user = &log.last().unwrap().user;
    assert_eq!(recommend(&app, user).await["sequence_model_version"], version, "answers name the sequence model");
    // The next training reads the sequence model in force: the ranker has its feature.
    let again = train(&app).await;
    assert_eq!(again["sequence"]["outcome"], "deployed", "{again}");
    assert_eq!(models(&app).await["sequence_serving"], again["sequence"]["version"], "the training replica loads it at once");
    store_deployed_model(&app, "sequence", "{\"format\":\"kairos-sequence/1\"").await;
    app.state.engine.load_model().await.unwrap();
    let serving = models(&app).await["sequence_serving"].as_i64();
    assert_eq!(serving, again["sequence"]["version"].as_i64(), "the corrupt model is refused, the previous one keeps serving");
    assert_eq!(recommend(&app, user).await["sequence_model_version"].as_i64(), serving);
    app.stop().await;
}

on_both_stores!(
    the_sequence_model_is_trained_stored_loaded_and_named_and_a_corrupt_one_is_refused,
    a_tiny_log_is_ranked_by_the_hand_set_blend_and_its_training_is_skipped_with_a_reason,
    a_model_trained_on_the_shops_log_is_stored_deployed_and_names_every_answer,
    a_corrupt_stored_model_is_refused_and_the_previous_one_keeps_serving,
);
