//! One machine, many shoppers: what serving a cold user reads from the store.

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, INGEST_KEY, TestApp};
use crate::on_both_stores;
use crate::pushes::{drive, freeze, shopper};

/// `user_view_rows` (one query on PostgreSQL) reads what the three separate reads do: the
/// newest events inside the window (oldest first, at most `limit`), the settings' time zone
/// and the push state; and nothing for a user the store has never seen.
async fn a_cold_users_rows_in_one_read_match_the_separate_reads(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    freeze(&app);
    shopper(&app, "vera", true).await;
    assert_eq!(app.put("/v1/users/vera", INGEST_KEY, &json!({"timezone": "Asia/Tokyo", "push_consent": true})).await.status(), StatusCode::OK);
    assert!(!drive(&app, "vera", 60).await.is_empty(), "vera has a planned push, so a push state");
    let since = app.state.clock.now() - TimeDelta::days(2);
    for limit in [2, 1000] {
        let rows = app.store.user_view_rows("vera", since, limit).await.unwrap();
        let events = app.store.user_events("vera", since, limit).await.unwrap();
        assert_eq!(rows.events, events, "limit {limit}");
        assert_eq!(rows.events.len(), (limit as usize).min(4));
        assert_eq!(rows.timezone, Some(chrono_tz::Asia::Tokyo));
        let state = app.store.get_push_state("vera").await.unwrap().and_then(|p| p.state);
        assert!(state.is_some());
        assert_eq!(rows.push_state, state);
    }
    // Events but no settings and no push state.
    let now = app.state.clock.now();
    let event = json!({"user_id": "walk-in", "item_id": "k1", "kind": "view", "ts": (now - TimeDelta::minutes(5)).to_rfc3339()});
    assert_eq!(app.post_events(&event).await.status(), StatusCode::ACCEPTED);
    let rows = app.store.user_view_rows("walk-in", since, 1000).await.unwrap();
    assert_eq!((rows.events.len(), rows.timezone, rows.push_state), (1, None, None));
    let rows = app.store.user_view_rows("nobody", since, 1000).await.unwrap();
    assert_eq!((rows.events.len(), rows.timezone, rows.push_state), (0, None, None));
    app.stop().await;
}

on_both_stores!(a_cold_users_rows_in_one_read_match_the_separate_reads);
