use super::*;
use serde_json::json;

fn tuning() -> Tuning {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml")).unwrap();
    crate::config::Settings::from_toml(&text).unwrap().tuning
}

fn limits() -> ParseLimits {
    ParseLimits { max_events: 1000, retention: chrono::Duration::days(90), max_future: chrono::Duration::minutes(5) }
}

fn errors(body: Value) -> Vec<FieldError> {
    match parse_events(&body, &tuning(), &limits(), Utc::now()) {
        Err(IngestError::Invalid(e)) => e,
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[test]
fn a_single_event_gets_an_id_and_the_current_time_when_absent() {
    let now = Utc::now();
    let ev = parse_events(&json!({"user_id": "u1", "item_id": "i1", "kind": "view"}), &tuning(), &limits(), now).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].ts, now);
    assert_eq!(ev[0].user_id, "u1");
}

#[test]
fn a_batch_names_the_index_of_each_bad_event() {
    let errs = errors(json!({"events": [
        {"user_id": "u", "item_id": "i", "kind": "view"},
        {"user_id": "u", "item_id": "i", "kind": "teleport"},
        {"user_id": "u", "kind": "cart"},
    ]}));
    assert_eq!(errs.len(), 2);
    assert_eq!((errs[0].field.as_str(), errs[0].index), ("events[1].kind", Some(1)));
    assert_eq!((errs[1].field.as_str(), errs[1].index), ("events[2].item_id", Some(2)));
}

#[test]
fn timestamps_too_far_ahead_or_behind_are_refused() {
    let ahead = (Utc::now() + chrono::Duration::minutes(6)).to_rfc3339();
    let old = (Utc::now() - chrono::Duration::days(91)).to_rfc3339();
    assert_eq!(errors(json!({"user_id": "u", "kind": "app_open", "ts": ahead}))[0].field, "ts");
    assert_eq!(errors(json!({"user_id": "u", "kind": "app_open", "ts": old}))[0].field, "ts");
}

#[test]
fn context_and_props_are_checked_field_by_field() {
    let errs = errors(json!({"user_id": "u", "item_id": "i", "kind": "purchase",
        "context": {"device": "toaster", "timezone": "Nowhere/Land"}, "props": {"price": -3}}));
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["context.device", "context.timezone", "props.price"]);
}

#[test]
fn an_oversized_batch_is_refused_before_parsing() {
    let events: Vec<Value> = (0..1001).map(|i| json!({"user_id": format!("u{i}"), "kind": "app_open"})).collect();
    assert!(matches!(
        parse_events(&json!({"events": events}), &tuning(), &limits(), Utc::now()),
        Err(IngestError::TooMany { max: 1000, got: 1001 })
    ));
}
