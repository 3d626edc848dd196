//! Scheduler and gateway protocol: planning, leases, expiry, feedback, hard limits, and two
//! schedulers sharing one PostgreSQL.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use kairos::config::LiveTuning;
use kairos::engine::Engine;
use kairos::push::scheduler::Scheduler;
use kairos::store::{Push, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, GATEWAY_KEY, INGEST_KEY, READ_KEY, TestApp, expect_problem, problem_fields};
use crate::on_both_stores;

/// A catalog, a consenting user in UTC without quiet hours, and some recent interest.
pub(crate) async fn shopper(app: &TestApp, user: &str, consent: bool) {
    let items: Vec<Value> = (0..6)
        .map(|i| json!({"item_id": format!("k{i}"), "category": "home/kitchen", "brand": "Cook", "price": 10 + i}))
        .collect();
    assert_eq!(app.post("/v1/items", INGEST_KEY, &json!({"items": items})).await.status(), StatusCode::OK);
    let settings = json!({"timezone": "UTC", "push_consent": consent});
    assert_eq!(app.put(&format!("/v1/users/{user}"), INGEST_KEY, &settings).await.status(), StatusCode::OK);
    let now = app.state.clock.now();
    let events: Vec<Value> = (0..4)
        .map(|i| json!({"user_id": user, "item_id": format!("k{i}"), "kind": if i == 0 { "cart" } else { "view" },
                        "ts": (now - TimeDelta::minutes(30 + i)).to_rfc3339()}))
        .collect();
    assert_eq!(app.post_events(&json!({"events": events})).await.status(), StatusCode::ACCEPTED);
}

/// Runs scheduler ticks, moving the frozen clock to each next due time, until the user has
/// a push or `steps` ticks have run. Returns the user's pushes.
pub(crate) async fn drive(app: &TestApp, user: &str, steps: usize) -> Vec<Push> {
    for _ in 0..steps {
        app.state.scheduler.try_run_once(app.state.clock.now()).await.unwrap();
        let pushes = app.store.user_pushes(user, 10).await.unwrap();
        if !pushes.is_empty() {
            return pushes;
        }
        let row = app.store.get_push_state(user).await.unwrap().expect("push state exists");
        let next = row.next_due_at.max(app.state.clock.now() + TimeDelta::minutes(1));
        app.state.clock.set(next);
    }
    app.store.user_pushes(user, 10).await.unwrap()
}

pub(crate) fn freeze(app: &TestApp) -> DateTime<Utc> {
    let t = Utc::now();
    app.state.clock.set(t);
    t
}

pub(crate) async fn plan(app: &TestApp, user: &str) -> Value {
    let r = app.get(&format!("/v1/users/{user}/push-plan"), READ_KEY).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

pub(crate) async fn feedback(app: &TestApp, push_id: &str, kind: &str) -> reqwest::Response {
    app.post("/v1/feedback", GATEWAY_KEY, &json!({"push_id": push_id, "kind": kind, "ts": app.state.clock.now().to_rfc3339()})).await
}

async fn a_push_is_planned_leased_and_offered_again_after_its_lease(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    freeze(&app);
    shopper(&app, "ann", true).await;
    let pushes = drive(&app, "ann", 60).await;
    assert_eq!(pushes.len(), 1, "one push planned");
    let push = &pushes[0];
    assert!(push.reasons.is_object() || push.reasons.is_array(), "the push carries its reasons");
    app.state.clock.set(push.send_at.max(app.state.clock.now()));

    let due: Value = app.get("/v1/pushes/due?limit=10", GATEWAY_KEY).await.json().await.unwrap();
    assert_eq!(due["pushes"].as_array().unwrap().len(), 1);
    assert_eq!(due["pushes"][0]["push_id"], push.push_id.to_string());
    // Leased: not offered again while the lease runs...
    let again: Value = app.get("/v1/pushes/due", GATEWAY_KEY).await.json().await.unwrap();
    assert_eq!(again["pushes"].as_array().unwrap().len(), 0);
    // ...but offered again once it ran out unacknowledged.
    app.state.clock.advance(TimeDelta::seconds(app.state.tuning.get().scheduler.lease_secs + 1));
    let again: Value = app.get("/v1/pushes/due", GATEWAY_KEY).await.json().await.unwrap();
    assert_eq!(again["pushes"].as_array().unwrap().len(), 1);
    // Acknowledged: never offered again.
    assert_eq!(feedback(&app, &push.push_id.to_string(), "delivered").await.status(), StatusCode::OK);
    app.state.clock.advance(TimeDelta::seconds(app.state.tuning.get().scheduler.lease_secs + 1));
    let again: Value = app.get("/v1/pushes/due", GATEWAY_KEY).await.json().await.unwrap();
    assert_eq!(again["pushes"].as_array().unwrap().len(), 0);
    let p = plan(&app, "ann").await;
    assert_eq!(p["recent_pushes"][0]["status"], "delivered");
    assert!(p["decisions"].as_array().unwrap().iter().any(|d| d["decision"] == "send"));
    app.stop().await;
}

async fn a_push_past_its_expiry_is_dropped_as_expired_and_refuses_feedback(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    freeze(&app);
    shopper(&app, "eve", true).await;
    let pushes = drive(&app, "eve", 60).await;
    let push = pushes.first().expect("a push").clone();
    app.state.clock.set(push.expires_at + TimeDelta::minutes(1));
    let due: Value = app.get("/v1/pushes/due", GATEWAY_KEY).await.json().await.unwrap();
    assert_eq!(due["pushes"].as_array().unwrap().len(), 0);
    assert_eq!(app.store.get_push(push.push_id).await.unwrap().unwrap().status.as_str(), "expired");
    expect_problem(feedback(&app, &push.push_id.to_string(), "opened").await, StatusCode::CONFLICT).await;
    app.stop().await;
}

async fn feedback_is_idempotent_and_moves_the_frequency(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    freeze(&app);
    shopper(&app, "bo", true).await;
    let push = drive(&app, "bo", 60).await.first().expect("a push").clone();
    app.state.clock.set(push.send_at.max(app.state.clock.now()) + TimeDelta::minutes(5));
    let id = push.push_id.to_string();
    let r: Value = feedback(&app, &id, "opened").await.json().await.unwrap();
    assert_eq!(r["applied"], true);
    let (before, after) = (r["target_frequency_before"].as_f64().unwrap(), r["target_frequency_after"].as_f64().unwrap());
    assert!(after > before, "an open raises the frequency ({before} -> {after})");
    let version = app.store.get_push_state("bo").await.unwrap().unwrap().version;
    let r: Value = feedback(&app, &id, "opened").await.json().await.unwrap();
    assert_eq!((r["applied"].clone(), r["duplicate"].clone()), (json!(false), json!(true)));
    assert_eq!(app.store.get_push_state("bo").await.unwrap().unwrap().version, version, "a duplicate changes nothing");

    // A dismissal lowers it and suppresses the item.
    let r: Value = feedback(&app, &id, "dismissed").await.json().await.unwrap();
    assert!(r["target_frequency_after"].as_f64().unwrap() < r["target_frequency_before"].as_f64().unwrap());
    assert!(r["suppressed_until"].is_string());
    app.stop().await;
}

async fn bad_feedback_is_refused_with_its_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    freeze(&app);
    shopper(&app, "cy", true).await;
    let push = drive(&app, "cy", 60).await.first().expect("a push").clone();
    let id = push.push_id.to_string();
    let unknown = uuid::Uuid::new_v4().to_string();
    expect_problem(feedback(&app, &unknown, "opened").await, StatusCode::NOT_FOUND).await;
    let cases = [
        (json!({"push_id": "nope", "kind": "opened"}), "push_id"),
        (json!({"kind": "opened"}), "push_id"),
        (json!({"push_id": id, "kind": "liked"}), "kind"),
        (json!({"push_id": id, "kind": "opened", "ts": (app.state.clock.now() + TimeDelta::hours(1)).to_rfc3339()}), "ts"),
        (json!({"push_id": id, "kind": "opened", "ts": (push.created_at - TimeDelta::hours(1)).to_rfc3339()}), "ts"),
    ];
    for (body, field) in cases {
        let p = expect_problem(app.post("/v1/feedback", GATEWAY_KEY, &body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(problem_fields(&p).iter().any(|f| f == field), "{field}: {p}");
    }
    expect_problem(app.get("/v1/pushes/due?limit=0", GATEWAY_KEY).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    expect_problem(app.get("/v1/pushes/due?limit=abc", GATEWAY_KEY).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    expect_problem(app.get("/v1/pushes/due", READ_KEY).await, StatusCode::FORBIDDEN).await;
    app.stop().await;
}

async fn an_unsubscribe_stops_every_push_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    freeze(&app);
    shopper(&app, "di", true).await;
    let push = drive(&app, "di", 60).await.first().expect("a push").clone();
    let r: Value = feedback(&app, &push.push_id.to_string(), "unsubscribed").await.json().await.unwrap();
    assert_eq!(r["stopped"], true);
    assert_eq!(app.store.get_push(push.push_id).await.unwrap().unwrap().status.as_str(), "cancelled");
    for _ in 0..5 {
        app.state.clock.advance(TimeDelta::days(1));
        app.state.scheduler.try_run_once(app.state.clock.now()).await.unwrap();
    }
    assert_eq!(app.store.user_pushes("di", 10).await.unwrap().len(), 1, "no push after the unsubscribe");
    let p = plan(&app, "di").await;
    assert_eq!(p["unsubscribed"], true);
    assert_eq!(p["next_send_at"], Value::Null);
    app.stop().await;
}

async fn a_user_without_consent_never_gets_a_push_and_the_plan_says_why(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    freeze(&app);
    shopper(&app, "nc", false).await;
    assert!(drive(&app, "nc", 5).await.is_empty());
    let p = plan(&app, "nc").await;
    assert_eq!(p["push_consent"], false);
    assert_eq!(p["decisions"][0]["reason"], "no_consent", "{p}");
    assert!(p["decisions"][0]["inputs"].is_object(), "a decision records its inputs");
    expect_problem(app.get("/v1/users/ghost/push-plan", READ_KEY).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

on_both_stores!(
    a_push_is_planned_leased_and_offered_again_after_its_lease,
    a_push_past_its_expiry_is_dropped_as_expired_and_refuses_feedback,
    feedback_is_idempotent_and_moves_the_frequency,
    bad_feedback_is_refused_with_its_field,
    an_unsubscribe_stops_every_push_at_once,
    a_user_without_consent_never_gets_a_push_and_the_plan_says_why,
);

/// Two replicas' schedulers run concurrently on one PostgreSQL for 30 simulated hours (every
/// user's most active hour falls inside): no user ever gets two pushes for one slot or
/// within the minimum gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_on_one_postgres_never_push_twice_for_one_slot() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let t0 = freeze(&app);
    let users: Vec<String> = (0..120).map(|i| format!("m{i}")).collect();
    for u in &users {
        shopper(&app, u, true).await;
    }
    // A second replica: its own pool, engine and scheduler over the same database.
    let url = app.state.settings.database.url.clone().unwrap();
    let second_store: Arc<dyn Store> = Arc::new(kairos::store::PgStore::connect(url.expose(), &app.state.settings.database).await.unwrap());
    let tuning = Arc::new(LiveTuning::new((*app.state.tuning.get()).clone()));
    let engine = Arc::new(Engine::new(second_store.clone(), tuning.clone(), &app.state.settings.engine, app.state.clock.clone()));
    engine.refresh(TimeDelta::zero()).await.unwrap();
    let second = Scheduler::new(second_store, engine, tuning, app.state.clock.clone());
    let first = &app.state.scheduler;
    let mut claimed_total = 0;
    for step in 0..60 {
        let now = t0 + TimeDelta::minutes(30 * step);
        app.state.clock.set(now);
        let (a, b) = tokio::join!(first.try_run_once(now), second.try_run_once(now));
        for o in [a.unwrap(), b.unwrap()] {
            if let kairos::push::scheduler::Outcome::Worked { claimed, .. } = o {
                claimed_total += claimed;
            }
        }
    }
    assert!(claimed_total >= users.len(), "both schedulers worked through the users");
    let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
    let dup: i64 = sqlx::query_scalar("select count(*) from (select user_id, send_at from pushes group by 1, 2 having count(*) > 1) t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(dup, 0);
    let min_gap = i64::from(app.state.tuning.get().frequency.min_gap_minutes);
    let too_close: i64 = sqlx::query_scalar(
        "select count(*) from pushes a join pushes b on a.user_id = b.user_id and a.push_id < b.push_id \
         and abs(extract(epoch from a.send_at - b.send_at)) < $1 * 60",
    )
    .bind(min_gap as f64)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(too_close, 0, "no user got two pushes closer than the minimum gap");
    let pushed_users: i64 = sqlx::query_scalar("select count(distinct user_id) from pushes").fetch_one(&pool).await.unwrap();
    let reasons: Vec<(String, i64)> = sqlx::query_as("select coalesce(decision->>'reason', 'send'), count(*) from decisions group by 1").fetch_all(&pool).await.unwrap();
    assert!(pushed_users > 0, "{reasons:?}");
    pool.close().await;
    app.stop().await;
}
