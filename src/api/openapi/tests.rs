//! The document says what the service does: these tests hold it to the rules the
//! schemathesis run (scripts/schemathesis) would otherwise find broken one case at a time.

use serde_json::Value;

use super::*;
use crate::api::error::PROBLEM_JSON;
use crate::config::{ConfigSource, Settings};

fn shipped() -> Settings {
    let source = ConfigSource { dir: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"), env_name: None, use_env: false };
    Settings::load(&source).expect("the shipped config is valid")
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((path.clone(), method.clone(), op));
        }
    }
    out
}

/// Follows a `$ref` into the document.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("dangling {r}")),
        None => v,
    }
}

fn patterns<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(p)) = m.get("pattern") {
                out.push(p);
            }
            m.values().for_each(|x| patterns(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| patterns(x, out)),
        _ => {}
    }
}

#[test]
fn every_secured_operation_documents_401_and_403_and_every_operation_503() {
    let s = shipped();
    let doc = document(&s, &s.tuning);
    for (path, method, op) in operations(&doc) {
        let responses = &op["responses"];
        assert!(responses.get("503").is_some(), "{method} {path}: 503");
        if op.get("security").is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty())) {
            assert!(responses.get("401").is_some() && responses.get("403").is_some(), "{method} {path}: 401/403");
        }
        if op.get("requestBody").is_some() {
            for status in ["400", "413", "415", "422"] {
                assert!(responses.get(status).is_some(), "{method} {path}: {status}");
            }
        }
    }
}

#[test]
fn every_error_response_is_problem_json_and_every_body_is_a_typed_schema() {
    let s = shipped();
    let doc = document(&s, &s.tuning);
    for (path, method, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                let content = &resolve(&doc, response)["content"];
                let types: Vec<&String> = content.as_object().map(|c| c.keys().collect()).unwrap_or_default();
                assert_eq!(types, [PROBLEM_JSON], "{method} {path} {status}");
            }
        }
        if let Some(body) = op.get("requestBody") {
            let schema = resolve(&doc, &body["content"]["application/json"]["schema"]);
            assert!(schema.get("oneOf").is_some() || schema.get("properties").is_some(), "{method} {path}: a free-form body {schema}");
        }
    }
}

#[test]
fn the_bounds_of_the_configuration_are_in_the_document() {
    let mut s = shipped();
    s.server.max_page = 77;
    s.ingest.max_events_per_request = 33;
    let doc = document(&s, &s.tuning);
    let due = &doc["paths"]["/v1/pushes/due"]["get"]["parameters"][0];
    assert_eq!((due["name"].as_str(), due["schema"]["minimum"].as_u64(), due["schema"]["maximum"].as_u64()), (Some("limit"), Some(1), Some(77)));
    assert_eq!(doc["components"]["schemas"]["EventBatchIn"]["properties"]["events"]["maxItems"], 33);
    let n = doc["paths"]["/v1/users/{user_id}/recommendations"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "n")
        .unwrap();
    assert_eq!((n["schema"]["minimum"].as_u64(), n["schema"]["maximum"].as_u64()), (Some(1), Some(crate::api::recommendations::MAX_N as u64)));
    // Kinds that name an item require `item_id`; the others do not.
    let variants = doc["components"]["schemas"]["EventIn"]["oneOf"].as_array().unwrap();
    let with_item = variants.iter().find(|v| v["properties"]["kind"]["enum"].as_array().unwrap().contains(&"view".into())).unwrap();
    assert!(with_item["required"].as_array().unwrap().contains(&"item_id".into()));
    let plain = variants.iter().find(|v| v["properties"]["kind"]["enum"].as_array().unwrap().contains(&"search".into())).unwrap();
    assert!(!plain["required"].as_array().unwrap().contains(&"item_id".into()));
}

#[test]
fn every_pattern_in_the_document_is_one_of_the_declared_ones() {
    let s = shipped();
    let doc = document(&s, &s.tuning);
    let mut found = Vec::new();
    patterns(&doc, &mut found);
    assert!(found.len() > 10, "{found:?}");
    for p in found {
        assert!(PATTERNS.contains(&p), "undeclared pattern {p:?}");
    }
}
