//! Regressions of the hardening round: erasure on every replica, bounded histories and
//! ingest, parameters that must not reach the cache, consent and unsubscribe, one global
//! push budget, unfetched pushes, items the catalogue does not know yet.

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, GATEWAY_KEY, INGEST_KEY, READ_KEY, TestApp, expect_problem, problem_fields};
use crate::on_both_stores;
use crate::pushes::{drive, feedback, freeze, plan, shopper};

async fn get_json(app: &TestApp, path: &str) -> Value {
    let r = app.get(path, READ_KEY).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

async fn views(app: &TestApp, user: &str, items: &[&str]) {
    let now = app.state.clock.now();
    let events: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(n, i)| json!({"user_id": user, "item_id": i, "kind": "view", "ts": (now - TimeDelta::minutes(10 + n as i64)).to_rfc3339()}))
        .collect();
    assert_eq!(app.post_events(&json!({"events": events})).await.status(), StatusCode::ACCEPTED);
}

async fn an_erase_reaches_another_replicas_caches_and_statistics_at_its_next_refresh(backend: Backend) {
    let a = TestApp::spawn(backend).await;
    let b = a.replica().await;
    let items = json!({"items": [{"item_id": "x1", "category": "toys"}, {"item_id": "x2", "category": "toys"}]});
    assert_eq!(a.post("/v1/items", INGEST_KEY, &items).await.status(), StatusCode::OK);
    views(&a, "erin", &["x1", "x2"]).await;
    b.state.engine.refresh(TimeDelta::zero()).await.unwrap();
    let warm = get_json(&b, "/v1/users/erin/interests").await;
    assert!(!warm["features"].as_array().unwrap().is_empty(), "B serves erin's interests: {warm}");
    assert!(b.state.engine.stats_remember("erin"), "B's statistics remember erin's recent items");

    assert_eq!(a.delete("/v1/users/erin", ADMIN_KEY).await.status(), StatusCode::OK);
    b.state.engine.refresh(TimeDelta::zero()).await.unwrap();
    let after = get_json(&b, "/v1/users/erin/interests").await;
    assert!(after["features"].as_array().unwrap().is_empty(), "B forgot erin at its next refresh: {after}");
    assert_eq!(get_json(&b, "/v1/users/erin/recommendations").await["cold_start"], true);
    assert!(!b.state.engine.stats_remember("erin"), "and so did its statistics");
    b.stop().await;
    a.stop().await;
}

/// More changes inside the overlap than one page holds: the refresh pages on through them
/// (it used to read the same full page again forever, so no later erase was ever applied),
/// applies each change once, and a second refresh applies none of them again.
async fn a_refresh_pages_through_more_changes_than_a_page_and_applies_each_once(backend: Backend) {
    let a = TestApp::spawn(backend).await;
    let b = a.replica().await;
    let items = json!({"items": [{"item_id": "p1", "category": "toys"}]});
    assert_eq!(a.post("/v1/items", INGEST_KEY, &items).await.status(), StatusCode::OK);
    views(&a, "paula", &["p1"]).await;
    b.state.engine.refresh(TimeDelta::zero()).await.unwrap();
    assert!(!get_json(&b, "/v1/users/paula/interests").await["features"].as_array().unwrap().is_empty());
    for i in 0..25 {
        let r = a.put(&format!("/v1/users/settings-{i}"), INGEST_KEY, &json!({"timezone": "UTC", "push_consent": false})).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(a.delete("/v1/users/paula", ADMIN_KEY).await.status(), StatusCode::OK);
    // A guard against the old endless loop, not a speed threshold.
    let pages = tokio::time::timeout(std::time::Duration::from_secs(60), b.state.engine.apply_user_changes_in_pages(10));
    // (The replica's own refresher runs too and may have applied some of them first.)
    let applied = pages.await.expect("the refresh ends").unwrap();
    assert!(applied <= 26, "25 settings changes and one erase, each once: {applied}");
    assert!(get_json(&b, "/v1/users/paula/interests").await["features"].as_array().unwrap().is_empty(), "paula is forgotten");
    assert_eq!(b.state.engine.apply_user_changes_in_pages(10).await.unwrap(), 0, "the overlap read again applies nothing twice");
    b.stop().await;
    a.stop().await;
}

async fn one_users_history_is_bounded_to_their_newest_events_at_read_and_in_memory(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.engine.max_events_per_user = 5).await;
    let names: Vec<String> = (0..12).map(|i| format!("h{i}")).collect();
    let items: Vec<Value> = names.iter().map(|i| json!({"item_id": i, "category": "c"})).collect();
    assert_eq!(app.post("/v1/items", INGEST_KEY, &json!({"items": items})).await.status(), StatusCode::OK);
    let ids: Vec<&str> = names.iter().map(String::as_str).collect();
    views(&app, "long", &ids).await; // h0 newest (10 min ago), h11 oldest
    let view = app.state.engine.user_view("long", app.state.clock.now()).await.unwrap();
    let kept = app.state.engine.item_ids(&view.events);
    assert_eq!(kept, ["h4", "h3", "h2", "h1", "h0"], "the newest five, oldest first");
    views(&app, "long", &["h9"]).await; // appended to the cached view at commit
    let view = app.state.engine.user_view("long", app.state.clock.now()).await.unwrap();
    assert_eq!(view.events.len(), 5, "still five in memory");
    app.stop().await;
}

async fn a_user_over_the_per_minute_limit_is_refused_with_429_and_nothing_is_stored(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.ingest.max_events_per_user_per_minute = 10).await;
    let batch = |n: usize, user: &str| json!({"events": (0..n).map(|_| json!({"user_id": user, "item_id": "i", "kind": "view"})).collect::<Vec<_>>()});
    assert_eq!(app.post_events(&batch(8, "fast")).await.status(), StatusCode::ACCEPTED);
    let r = app.post_events(&batch(5, "fast")).await;
    assert!(r.headers().get("retry-after").is_some(), "Retry-After on 429");
    let body = expect_problem(r, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(problem_fields(&body).len(), 5, "each event over the limit is named: {body}");
    assert_eq!(problem_fields(&body)[0], "events[0].user_id");
    assert_eq!(app.event_count().await, 8, "nothing of the refused batch was stored");
    assert_eq!(app.post_events(&batch(5, "other")).await.status(), StatusCode::ACCEPTED, "another user is not limited");
    app.stop().await;
}

async fn a_request_at_another_time_never_changes_the_next_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    freeze(&app);
    let items = json!({"items": [{"item_id": "q1", "category": "books"}]});
    assert_eq!(app.post("/v1/items", INGEST_KEY, &items).await.status(), StatusCode::OK);
    views(&app, "tim", &["q1"]).await;
    for at in ["9999-12-31T23:59:59Z", "2001-01-01T00:00:00Z"] {
        let odd = get_json(&app, &format!("/v1/users/tim/recommendations?at={at}")).await;
        if at.starts_with("2001") {
            assert_eq!(odd["cold_start"], true, "nothing was known in 2001");
        }
        let normal = get_json(&app, "/v1/users/tim/recommendations").await;
        assert_eq!(normal["cold_start"], false, "after at={at} the normal answer still knows tim: {normal}");
    }
    app.stop().await;
}

async fn consent_off_withdraws_planned_and_leased_pushes_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    freeze(&app);
    let off = json!({"timezone": "UTC", "push_consent": false});
    // A planned push.
    shopper(&app, "cora", true).await;
    assert_eq!(drive(&app, "cora", 60).await.len(), 1, "cora has a planned push");
    assert_eq!(app.put("/v1/users/cora", INGEST_KEY, &off).await.status(), StatusCode::OK);
    let cora = app.store.user_pushes("cora", 10).await.unwrap();
    assert!(cora.iter().all(|p| p.status == kairos::store::PushStatus::Cancelled), "{cora:?}");
    // A leased push.
    shopper(&app, "carl", true).await;
    let carl = drive(&app, "carl", 60).await.remove(0);
    app.state.clock.set(carl.send_at.max(app.state.clock.now()));
    let due: Value = app.get("/v1/pushes/due?limit=100", GATEWAY_KEY).await.json().await.unwrap();
    assert!(due["pushes"].as_array().unwrap().iter().any(|p| p["push_id"] == carl.push_id.to_string()), "{due}");
    assert_eq!(app.put("/v1/users/carl", INGEST_KEY, &off).await.status(), StatusCode::OK);
    let leased = app.store.get_push(carl.push_id).await.unwrap().unwrap();
    assert_eq!(leased.status, kairos::store::PushStatus::Cancelled);
    app.state.clock.advance(TimeDelta::minutes(10)); // carl's lease has run out
    let due: Value = app.get("/v1/pushes/due?limit=100", GATEWAY_KEY).await.json().await.unwrap();
    assert_eq!(due["pushes"].as_array().unwrap().len(), 0, "nothing is offered again: {due}");
    app.stop().await;
}

async fn an_unsubscribe_turns_consent_off_and_consent_on_is_an_explicit_resubscribe(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    freeze(&app);
    shopper(&app, "una", true).await;
    let push = drive(&app, "una", 60).await.remove(0);
    assert_eq!(feedback(&app, &push.push_id.to_string(), "unsubscribed").await.status(), StatusCode::OK);
    let user = get_json(&app, "/v1/users/una").await;
    assert_eq!(user["push_consent"], false, "{user}");
    assert!(user["unsubscribed_at"].is_string());
    assert!(user["resubscribed_at"].is_null());
    app.state.clock.advance(TimeDelta::hours(1));
    let on = json!({"timezone": "UTC", "push_consent": true});
    let r: Value = app.put("/v1/users/una", INGEST_KEY, &on).await.json().await.unwrap();
    assert_eq!((r["push_consent"].as_bool(), r["unsubscribed_at"].is_null()), (Some(true), true), "{r}");
    assert!(r["resubscribed_at"].is_string(), "recorded with its time: {r}");
    // The scheduler resumes: the state is resubscribed and a push can be planned again.
    let mut resumed = false;
    for _ in 0..80 {
        app.state.scheduler.try_run_once(app.state.clock.now()).await.unwrap();
        if app.store.user_pushes("una", 10).await.unwrap().iter().any(|p| p.status == kairos::store::PushStatus::Planned) {
            resumed = true;
            break;
        }
        let due = app.store.get_push_state("una").await.unwrap().unwrap().next_due_at;
        app.state.clock.set(due.max(app.state.clock.now() + TimeDelta::minutes(1)));
    }
    assert!(resumed, "pushes resume after the resubscribe");
    assert_eq!(plan(&app, "una").await["unsubscribed"], false);
    app.stop().await;
}

async fn one_push_budget_per_minute_is_shared_by_every_worker_and_replica(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.tuning.frequency.global_rate_per_minute = 5).await;
    let mut t = freeze(&app);
    let users: Vec<String> = (0..30).map(|i| format!("g{i}")).collect();
    for u in &users {
        shopper(&app, u, true).await;
    }
    let second = app.replica().await;
    // Three workers here and three on the other replica at each instant, following the due times.
    for _ in 0..40 {
        let ticks = app.state.scheduler.clone().run_ticks(3, t);
        let other = second.state.scheduler.clone().run_ticks(3, t);
        let (a, b) = tokio::join!(ticks, other);
        for outcome in a.into_iter().chain(b) {
            outcome.unwrap();
        }
        let mut next = t + TimeDelta::hours(24);
        for u in &users {
            next = next.min(app.store.get_push_state(u).await.unwrap().unwrap().next_due_at);
        }
        t = next.max(t + TimeDelta::minutes(1));
    }
    let mut per_minute = std::collections::HashMap::<i64, usize>::new();
    for u in &users {
        for p in app.store.user_pushes(u, 100).await.unwrap() {
            *per_minute.entry(p.created_at.timestamp().div_euclid(60)).or_default() += 1;
        }
    }
    let busiest = per_minute.values().copied().max().unwrap_or(0);
    assert!(busiest <= 5, "{busiest} pushes planned in one minute with a budget of 5: {per_minute:?}");
    assert_eq!(busiest, 5, "the budget was contended and used up: {per_minute:?}");
    second.stop().await;
    app.stop().await;
}

async fn a_push_the_gateway_never_fetched_does_not_lower_the_users_frequency(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    freeze(&app);
    shopper(&app, "nora", true).await;
    let push = drive(&app, "nora", 60).await.remove(0);
    let before = plan(&app, "nora").await["target_frequency"].as_f64().unwrap();
    // Never fetched: it expires in the outbox, and the ignore window passes.
    app.state.clock.set(push.send_at + TimeDelta::hours(30));
    app.state.scheduler.try_run_once(app.state.clock.now()).await.unwrap();
    let p = plan(&app, "nora").await;
    assert_eq!(p["consecutive_ignored"], 0, "{p}");
    assert_eq!(p["target_frequency"].as_f64().unwrap(), before, "the frequency is unchanged");
    app.stop().await;
}

async fn an_event_on_an_item_the_catalogue_does_not_know_yet_counts_in_the_next_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let event = json!({"user_id": "early", "item_id": "not-in-catalogue", "kind": "cart"});
    assert_eq!(app.post_events(&event).await.status(), StatusCode::ACCEPTED);
    let interests = get_json(&app, "/v1/users/early/interests").await;
    assert!(interests["level"].as_f64().unwrap() > 0.0, "counted right after the 202: {interests}");
    assert_eq!(get_json(&app, "/v1/users/early/recommendations").await["cold_start"], false);
    app.stop().await;
}

/// The days of the PostgreSQL log's partitions (`events_pYYYYMMDD`), `None` on SQLite.
async fn partition_days(app: &TestApp) -> Option<Vec<chrono::NaiveDate>> {
    let pool = sqlx::PgPool::connect(app.postgres_url()?).await.unwrap();
    let names: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'events'::regclass",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    let mut days: Vec<_> = names.iter().map(|n| chrono::NaiveDate::parse_from_str(&n["events_p".len()..], "%Y%m%d").unwrap()).collect();
    days.sort();
    Some(days)
}

async fn events_past_the_retention_leave_the_log(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let now = app.state.clock.now();
    let cutoff = now - TimeDelta::days(i64::from(app.state.settings.ingest.retention_days));
    let event = |user: &str, ts| kairos::domain::Event {
        event_id: uuid::Uuid::new_v4(),
        user_id: user.into(),
        item_id: Some("i".into()),
        kind: "view".into(),
        ts,
        context: Default::default(),
        props: Default::default(),
    };
    // A whole expired day, the last minute before the cut, the first minute after it.
    let (long_ago, just_before, just_after) = (cutoff - TimeDelta::days(3), cutoff - TimeDelta::minutes(1), cutoff + TimeDelta::minutes(1));
    app.store
        .insert_events(&[event("old", long_ago), event("old", just_before), event("kept", just_after)])
        .await
        .unwrap();
    assert_eq!(app.post_events(&json!({"user_id": "new", "item_id": "i", "kind": "view"})).await.status(), StatusCode::ACCEPTED);
    if let Some(days) = partition_days(&app).await {
        assert!(days.contains(&long_ago.date_naive()) && days.contains(&now.date_naive()), "a partition per day of events: {days:?}");
    }
    // (The background task may prune first: either way the old events go, the others stay.)
    assert!(kairos::startup::prune_once(&app.state).await.unwrap() <= 2);
    assert_eq!(app.event_count().await, 2, "the events before the cut are gone, the later ones stay");
    if let Some(days) = partition_days(&app).await {
        // PostgreSQL drops an expired day's partition whole; the straddling day lost rows only.
        assert!(days.iter().all(|d| *d >= just_before.date_naive()), "no partition of an expired day is left: {days:?}");
        assert!(days.contains(&just_after.date_naive()) && days.contains(&now.date_naive()), "{days:?}");
    }
    app.stop().await;
}

async fn an_event_sent_again_with_another_time_is_still_a_repeat(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = uuid::Uuid::new_v4().to_string();
    let two_days_ago = (app.state.clock.now() - TimeDelta::days(2)).to_rfc3339();
    let first = json!({"event_id": id, "user_id": "u", "item_id": "i", "kind": "view", "ts": two_days_ago});
    assert_eq!(app.post_events(&first).await.json::<Value>().await.unwrap(), json!({"accepted": 1, "duplicates": 0}));
    // Re-sent without its time (so stamped now, on another day, in another partition).
    let again = json!({"event_id": id, "user_id": "u", "item_id": "i", "kind": "view"});
    assert_eq!(app.post_events(&again).await.json::<Value>().await.unwrap(), json!({"accepted": 0, "duplicates": 1}));
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}

on_both_stores!(
    events_past_the_retention_leave_the_log,
    an_event_sent_again_with_another_time_is_still_a_repeat,
    an_erase_reaches_another_replicas_caches_and_statistics_at_its_next_refresh,
    a_refresh_pages_through_more_changes_than_a_page_and_applies_each_once,
    one_users_history_is_bounded_to_their_newest_events_at_read_and_in_memory,
    a_user_over_the_per_minute_limit_is_refused_with_429_and_nothing_is_stored,
    a_request_at_another_time_never_changes_the_next_answer,
    consent_off_withdraws_planned_and_leased_pushes_at_once,
    an_unsubscribe_turns_consent_off_and_consent_on_is_an_explicit_resubscribe,
    one_push_budget_per_minute_is_shared_by_every_worker_and_replica,
    a_push_the_gateway_never_fetched_does_not_lower_the_users_frequency,
    an_event_on_an_item_the_catalogue_does_not_know_yet_counts_in_the_next_answer,
);
