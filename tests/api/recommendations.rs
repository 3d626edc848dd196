//! Recommendations over HTTP: time sensitivity, context sensitivity, fresh reads, cold
//! start, and refused parameters.

use chrono::{TimeDelta, TimeZone, Utc};
use kairos::rank::decay::Decay;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, INGEST_KEY, READ_KEY, TestApp, expect_problem, problem_fields};
use crate::on_both_stores;

async fn catalog(app: &TestApp, category: &str, prefix: &str, n: usize) {
    let items: Vec<Value> = (0..n).map(|i| json!({"item_id": format!("{prefix}{i}"), "category": category})).collect();
    assert_eq!(app.post("/v1/items", INGEST_KEY, &json!({"items": items})).await.status(), StatusCode::OK);
}

async fn recommend(app: &TestApp, user: &str, query: &str) -> Value {
    let r = app.get(&format!("/v1/users/{user}/recommendations?{query}"), READ_KEY).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn ids(answer: &Value) -> Vec<String> {
    answer["items"].as_array().unwrap().iter().map(|i| i["item_id"].as_str().unwrap().to_string()).collect()
}

/// The share of the top `k` items whose id starts with `prefix`.
fn share(answer: &Value, prefix: &str, k: usize) -> f64 {
    let ids = ids(answer);
    let top: Vec<&String> = ids.iter().take(k).collect();
    top.iter().filter(|id| id.starts_with(prefix)).count() as f64 / top.len().max(1) as f64
}

async fn recent_interest_wins_under_decay_and_the_larger_old_one_without(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let now = Utc::now();
    app.state.clock.set(now);
    catalog(&app, "garden/tools", "old", 10).await;
    catalog(&app, "toys/lego", "new", 10).await;
    // Many old events on garden tools (three days ago), a few recent ones on lego.
    let mut events: Vec<Value> = (0..12)
        .map(|i| json!({"user_id": "t", "item_id": format!("old{}", i % 4), "kind": "view", "ts": (now - TimeDelta::hours(72 + i)).to_rfc3339()}))
        .collect();
    events.extend((0..3).map(|i| json!({"user_id": "t", "item_id": format!("new{i}"), "kind": "view", "ts": (now - TimeDelta::minutes(20 + i)).to_rfc3339()})));
    assert_eq!(app.post_events(&json!({"events": events})).await.status(), StatusCode::ACCEPTED);

    let decayed = recommend(&app, "t", "n=5").await;
    assert_eq!(decayed["cold_start"], false);
    assert_eq!(decayed["decay"]["kind"], "exponential");
    assert!(share(&decayed, "new", 5) > 0.5, "recent interest first under exponential decay: {:?}", ids(&decayed));
    let first = &decayed["items"][0];
    assert!(first["score"].is_number());
    assert!(first["reasons"].is_object(), "every item carries its reasons: {first}");

    let mut tuning = (*app.state.tuning.get()).clone();
    tuning.decay = Decay::None;
    app.state.tuning.apply(tuning);
    let flat = recommend(&app, "t", "n=5").await;
    assert_eq!(flat["decay"]["kind"], "none");
    assert!(flat["config_version"].as_u64().unwrap() > decayed["config_version"].as_u64().unwrap());
    assert!(share(&flat, "old", 5) > 0.5, "without decay the larger old interest wins: {:?}", ids(&flat));
    app.stop().await;
}

/// A user's resolved history is cached between requests: a reloaded kind weight must still
/// reach the next answer.
async fn a_reloaded_kind_weight_changes_the_next_answer_for_a_cached_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, "garden/tools", "tool", 6).await;
    catalog(&app, "toys/lego", "lego", 6).await;
    let mut events: Vec<Value> = (0..6).map(|i| json!({"user_id": "w", "item_id": format!("tool{i}"), "kind": "view"})).collect();
    events.extend((0..2).map(|i| json!({"user_id": "w", "item_id": format!("lego{i}"), "kind": "cart"})));
    assert_eq!(app.post_events(&json!({"events": events})).await.status(), StatusCode::ACCEPTED);
    let set_cart_weight = |w: f64| {
        let mut tuning = (*app.state.tuning.get()).clone();
        tuning.kinds.get_mut("cart").expect("cart is configured").weight = w;
        app.state.tuning.apply(tuning);
    };
    set_cart_weight(50.0);
    let carts_count = recommend(&app, "w", "n=4").await;
    assert!(share(&carts_count, "lego", 2) > 0.5, "{:?}", ids(&carts_count));
    set_cart_weight(0.0);
    let carts_ignored = recommend(&app, "w", "n=4").await;
    assert!(share(&carts_ignored, "tool", 4) > 0.5, "{:?}", ids(&carts_ignored));
    let interests: Value = app.get("/v1/users/w/interests", READ_KEY).await.json().await.unwrap();
    assert!(
        !interests["features"].as_array().unwrap().iter().any(|f| f["feature"].as_str().unwrap_or("").contains("lego")),
        "a weight of 0 leaves lego out: {interests}"
    );
    app.stop().await;
}

async fn the_request_context_changes_the_top_for_a_new_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let now = Utc::now();
    app.state.clock.set(now);
    catalog(&app, "night/snacks", "nite", 8).await;
    catalog(&app, "office/supplies", "desk", 8).await;
    // The population: night snacks on mobile late at night, office supplies on desktop in
    // the morning (UTC users), over the last days.
    let mut events = Vec::new();
    for day in 1..4 {
        let base = (now - TimeDelta::days(day)).date_naive();
        let night = Utc.from_utc_datetime(&base.and_hms_opt(23, 10, 0).unwrap());
        let morning = Utc.from_utc_datetime(&base.and_hms_opt(9, 10, 0).unwrap());
        for u in 0..10 {
            events.push(json!({"user_id": format!("p{u}"), "item_id": format!("nite{}", u % 8), "kind": "view",
                "ts": night.to_rfc3339(), "context": {"device": "mobile", "timezone": "UTC"}}));
            events.push(json!({"user_id": format!("q{u}"), "item_id": format!("desk{}", u % 8), "kind": "view",
                "ts": morning.to_rfc3339(), "context": {"device": "desktop", "timezone": "UTC"}}));
        }
    }
    assert_eq!(app.post_events(&json!({"events": events})).await.status(), StatusCode::ACCEPTED);
    app.state.engine.refresh(TimeDelta::zero()).await.unwrap();

    let night_at = Utc.from_utc_datetime(&now.date_naive().and_hms_opt(23, 30, 0).unwrap()).to_rfc3339();
    let morning_at = Utc.from_utc_datetime(&now.date_naive().and_hms_opt(9, 30, 0).unwrap()).to_rfc3339();
    let enc = |s: &str| s.replace('+', "%2B");
    let mobile_night = recommend(&app, "newcomer", &format!("n=4&device=mobile&at={}", enc(&night_at))).await;
    let desktop_morning = recommend(&app, "newcomer", &format!("n=4&device=desktop&at={}", enc(&morning_at))).await;
    assert_eq!(mobile_night["cold_start"], true, "a user with no events is a cold start, not an error");
    assert!(ids(&mobile_night)[0].starts_with("nite"), "mobile at night: {:?}", ids(&mobile_night));
    assert!(ids(&desktop_morning)[0].starts_with("desk"), "desktop in the morning: {:?}", ids(&desktop_morning));
    app.stop().await;
}

async fn an_accepted_event_shows_in_the_next_answer_and_excluded_items_never_do(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, "books/scifi", "book", 6).await;
    catalog(&app, "music/jazz", "jazz", 6).await;
    app.post_events(&json!({"user_id": "f", "item_id": "book0", "kind": "view"})).await;
    let before = recommend(&app, "f", "n=6").await;
    assert!(share(&before, "book", 6) > 0.5);
    // Interest shifts: the very next answer reflects the new events (no refresh needed).
    let events: Vec<Value> = (0..5).map(|i| json!({"user_id": "f", "item_id": format!("jazz{i}"), "kind": "cart"})).collect();
    app.post_events(&json!({"events": events})).await;
    let after = recommend(&app, "f", "n=6").await;
    assert!(share(&after, "jazz", 3) > 0.5, "{:?}", ids(&after));
    let excluded = recommend(&app, "f", "n=12&exclude=jazz0,jazz1,jazz2").await;
    for id in ["jazz0", "jazz1", "jazz2"] {
        assert!(!ids(&excluded).contains(&id.to_string()));
    }
    // Unavailable items are never recommended.
    app.put("/v1/items/jazz3", INGEST_KEY, &json!({"category": "music/jazz", "available": false})).await;
    assert!(!ids(&recommend(&app, "f", "n=12").await).contains(&"jazz3".to_string()));
    let interests: Value = app.get("/v1/users/f/interests", READ_KEY).await.json().await.unwrap();
    assert!(interests["features"].as_array().unwrap().iter().any(|f| f["feature"].as_str().unwrap_or("").contains("music/jazz")), "{interests}");
    app.stop().await;
}

async fn bad_recommendation_parameters_are_refused_with_their_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let long: Vec<String> = (0..201).map(|i| format!("x{i}")).collect();
    let cases = [
        ("n=0".to_string(), "n"),
        ("n=201".to_string(), "n"),
        ("n=ten".to_string(), "n"),
        ("at=yesterday".to_string(), "at"),
        ("device=toaster".to_string(), "device"),
        ("country=Germany".to_string(), "country"),
        (format!("exclude={}", long.join(",")), "exclude"),
        ("colour=red".to_string(), "colour"),
        ("reasons=brief".to_string(), "reasons"),
    ];
    for (q, field) in cases {
        let r = app.get(&format!("/v1/users/u/recommendations?{q}"), READ_KEY).await;
        let p = expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem_fields(&p), [field], "{q}");
    }
    expect_problem(app.get("/v1/users/u/interests?at=never", READ_KEY).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    expect_problem(app.get("/v1/users/u/recommendations", INGEST_KEY).await, StatusCode::FORBIDDEN).await;
    let cold = recommend(&app, "nobody-at-all", "").await;
    assert_eq!(cold["cold_start"], true);
    app.stop().await;
}

/// `reasons=short` answers the same items with the same scores as the full answer, each with
/// its score parts and largest three contributions, and without the evidence lists.
async fn short_reasons_keep_the_ranking_and_drop_the_evidence(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, "books/scifi", "book", 6).await;
    let events: Vec<Value> = (0..4).map(|i| json!({"user_id": "s", "item_id": format!("book{i}"), "kind": "cart"})).collect();
    app.post_events(&json!({"events": events})).await;
    // One `at` for all three, so their decay is the same.
    let at = format!("n=6&device=mobile&at={}", app.state.clock.now().format("%Y-%m-%dT%H:%M:%S%.6fZ"));
    let full = recommend(&app, "s", &at).await;
    let explicit = recommend(&app, "s", &format!("{at}&reasons=full")).await;
    let short = recommend(&app, "s", &format!("{at}&reasons=short")).await;
    assert_eq!(full["items"], explicit["items"], "full is the default");
    assert_eq!(ids(&full), ids(&short));
    let lists = ["features", "events", "cooccurs_with", "similar_to", "context_lifts"];
    assert!(full["items"].as_array().unwrap().iter().any(|i| !i["reasons"]["events"].as_array().unwrap().is_empty()), "{full}");
    for (f, s) in full["items"].as_array().unwrap().iter().zip(short["items"].as_array().unwrap()) {
        assert_eq!(f["score"], s["score"]);
        for part in ["time", "cooccurrence", "trending", "context", "knn"] {
            assert_eq!(f["reasons"][part], s["reasons"][part], "{part}");
        }
        let (fc, sc) = (f["reasons"]["contributions"].as_array().unwrap(), s["reasons"]["contributions"].as_array().unwrap());
        assert_eq!(sc[..], fc[..fc.len().min(3)]);
        for list in lists {
            assert_eq!(s["reasons"][list], json!([]), "{list}");
        }
    }
    assert!(short.to_string().len() < full.to_string().len());
    app.stop().await;
}

on_both_stores!(
    short_reasons_keep_the_ranking_and_drop_the_evidence,
    recent_interest_wins_under_decay_and_the_larger_old_one_without,
    a_reloaded_kind_weight_changes_the_next_answer_for_a_cached_user,
    the_request_context_changes_the_top_for_a_new_user,
    an_accepted_event_shows_in_the_next_answer_and_excluded_items_never_do,
    bad_recommendation_parameters_are_refused_with_their_name,
);

/// Another replica (its own pool and engine over the same PostgreSQL) that has a user's
/// history cached sees the events this replica accepts at its next log refresh, once each,
/// without waiting for the cache entry to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replicas_cached_history_takes_new_events_at_its_next_refresh() {
    use std::sync::Arc;
    let app = TestApp::spawn(Backend::Postgres).await;
    catalog(&app, "books/scifi", "book", 3).await;
    app.post_events(&json!({"user_id": "r", "item_id": "book0", "kind": "view"})).await;
    let url = app.state.settings.database.url.clone().unwrap();
    let store: Arc<dyn kairos::store::Store> =
        Arc::new(kairos::store::PgStore::connect(url.expose(), &app.state.settings.database).await.unwrap());
    let tuning = Arc::new(kairos::config::LiveTuning::new((*app.state.tuning.get()).clone()));
    let second = kairos::engine::Engine::new(store, tuning, &app.state.settings.engine, app.state.clock.clone());
    second.refresh(TimeDelta::zero()).await.unwrap();
    assert_eq!(second.user_view("r", Utc::now()).await.unwrap().events.len(), 1, "cached with one event");
    app.post_events(&json!({"user_id": "r", "item_id": "book1", "kind": "cart"})).await;
    assert_eq!(second.user_view("r", Utc::now()).await.unwrap().events.len(), 1, "still the cached view");
    second.refresh(TimeDelta::zero()).await.unwrap();
    second.refresh(TimeDelta::zero()).await.unwrap();
    let view = second.user_view("r", Utc::now()).await.unwrap();
    let items = second.item_ids(&view.events);
    assert_eq!(items, ["book0", "book1"], "the new event, once, in time order");
    app.stop().await;
}
