//! The learned push policy over HTTP: the gateway's feedback on fetched pushes becomes the push
//! log the trainer fits the push-response model on; too few settled pushes is a skipped
//! training with its reason and the hand-set policy keeps deciding; enough, with a planted
//! difference between users, is a model deployed, listed and decided with; a corrupt stored
//! model is refused at load and the hand-set policy decides, saying why.

use chrono::{Datelike, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, GATEWAY_KEY, TestApp, store_deployed_model};
use crate::on_both_stores;
use crate::pushes::{feedback, freeze, plan, shopper};

const USERS: usize = 32;

async fn train(app: &TestApp) -> Value {
    let r = app.post("/v1/admin/models/train?wait=true", ADMIN_KEY, &json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// One simulated day, an hour at a time: every user views an item in the morning, the scheduler
/// plans, the gateway fetches what is due, and the even users open every push they get (the odd
/// ones never do). Returns the pushes fetched.
async fn day(app: &TestApp) -> usize {
    let mut fetched = 0;
    for hour in 0..24 {
        if hour == 8 {
            let now = app.state.clock.now();
            let events: Vec<Value> = (0..USERS)
                .map(|u| json!({"user_id": format!("s{u}"), "item_id": format!("k{}", u % 6), "kind": "view", "ts": now.to_rfc3339()}))
                .collect();
            assert_eq!(app.post_events(&json!({"events": events})).await.status(), StatusCode::ACCEPTED);
        }
        app.state.scheduler.try_run_once(app.state.clock.now()).await.unwrap();
        let due: Value = app.get("/v1/pushes/due?limit=100", GATEWAY_KEY).await.json().await.unwrap();
        for push in due["pushes"].as_array().unwrap() {
            fetched += 1;
            let user: usize = push["user_id"].as_str().unwrap()[1..].parse().unwrap();
            if user.is_multiple_of(2) {
                assert_eq!(feedback(app, push["push_id"].as_str().unwrap(), "opened").await.status(), StatusCode::OK);
            }
        }
        app.state.clock.advance(TimeDelta::hours(1));
    }
    fetched
}

async fn the_push_policy_learns_from_the_gateways_feedback_once_enough_pushes_are_settled(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.tuning.frequency.response_min_pushes = 24).await;
    // The same week days and hours on every run (the weekend and send-hour features see them):
    // the clock starts on last week's Monday, 06:00 UTC (in the past, whatever the hour now).
    let today = Utc::now().date_naive();
    let monday = today - chrono::Days::new(7 + u64::from(today.weekday().num_days_from_monday()));
    app.state.clock.set(monday.and_hms_opt(6, 0, 0).unwrap().and_utc());
    for u in 0..USERS {
        shopper(&app, &format!("s{u}"), true).await;
    }
    let mut fetched = day(&app).await;
    assert!(fetched > 0, "the scheduler pushes on the first day");

    // One day in, nothing is settled yet: the training is skipped and says why.
    let run = train(&app).await;
    assert_eq!(run["push_response"]["outcome"], "skipped", "{run}");
    assert!(run["push_response"]["reason"].as_str().unwrap().contains("pushes with a known outcome"), "{run}");
    let listed: Value = app.get("/v1/admin/models", ADMIN_KEY).await.json().await.unwrap();
    assert_eq!(listed["push_response"]["in_force"], Value::Null, "{listed}");
    assert!(listed["push_response"]["fallback"].as_str().unwrap().contains("no push-response model"), "{listed}");
    assert_eq!(plan(&app, "s0").await["decisions"][0]["inputs"]["policy"], "hand-set");

    for _ in 0..6 {
        fetched += day(&app).await;
    }
    let run = train(&app).await;
    let response = &run["push_response"];
    assert_eq!(response["outcome"], "deployed", "{run}");
    assert!(response["pushes_used"].as_u64().unwrap() >= 24 && response["pushes_used"].as_u64().unwrap() <= fetched as u64, "{run}");
    let version = response["version"].as_i64().unwrap();
    let listed: Value = app.get("/v1/admin/models", ADMIN_KEY).await.json().await.unwrap();
    assert_eq!(listed["push_response"]["in_force"], version, "{listed}");
    assert_eq!(listed["push_response"]["serving"], version, "the training replica loads it at once: {listed}");
    assert_eq!(listed["push_response"]["models"][0]["kind"], "push_response");
    assert_eq!(listed["in_force"], Value::Null, "the ranker's versions are listed apart: {listed}");

    // The next decisions are by expected value, with the model's predictions: an opener is
    // predicted to open far more often than a user who never opens. (A user is next decided
    // on at the check the hand-set policy set; within three days every user has been.)
    for _ in 0..3 {
        day(&app).await;
    }
    let predicted_open = |p: &Value| {
        let d = p["decisions"].as_array().unwrap().iter().find(|d| d["inputs"]["policy"] == "learned").cloned();
        d.unwrap_or_else(|| panic!("a learned decision: {p}"))["inputs"]["predicted"]["open"].as_f64().unwrap()
    };
    let (opener, ignorer) = (predicted_open(&plan(&app, "s0").await), predicted_open(&plan(&app, "s1").await));
    assert!(opener > 1.5 * ignorer, "P(open) {opener:.3} for an opener vs {ignorer:.3} for an ignorer");
    app.stop().await;
}

async fn a_corrupt_stored_push_response_model_is_refused_and_the_hand_set_policy_decides_saying_why(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    freeze(&app);
    shopper(&app, "cz", true).await;
    // A format this build does not read, and a document that is not JSON.
    for params in [r#"{"format":"kairos-push-response/1","version":1}"#, "{\"format\":"] {
        let version = store_deployed_model(&app, "push_response", params).await;
        app.state.engine.load_model().await.unwrap();
        let listed: Value = app.get("/v1/admin/models", ADMIN_KEY).await.json().await.unwrap();
        assert_eq!(listed["push_response"]["in_force"], version, "{listed}");
        assert_eq!(listed["push_response"]["serving"], Value::Null, "refused: {listed}");
        assert!(listed["push_response"]["fallback"].as_str().unwrap().contains("refused"), "{listed}");
    }
    app.state.scheduler.try_run_once(app.state.clock.now()).await.unwrap();
    let inputs = &plan(&app, "cz").await["decisions"][0]["inputs"];
    assert_eq!(inputs["policy"], "hand-set", "{inputs}");
    assert!(inputs["fallback"].as_str().unwrap().contains("refused at load"), "{inputs}");
    app.stop().await;
}

on_both_stores!(
    the_push_policy_learns_from_the_gateways_feedback_once_enough_pushes_are_settled,
    a_corrupt_stored_push_response_model_is_refused_and_the_hand_set_policy_decides_saying_why,
);
