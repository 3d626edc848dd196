use super::*;
use crate::rank::catalog::tests::item;
use crate::domain::{Event, EventContext, EventProps};
use crate::rank::history::Packed;
use chrono::Duration;


pub(crate) fn ev(item: &str, kind: &str, ts: DateTime<Utc>) -> Event {
    Event {
        event_id: uuid::Uuid::new_v4(),
        user_id: "u".into(),
        item_id: Some(item.into()),
        kind: kind.into(),
        ts,
        context: EventContext::default(),
        props: EventProps::default(),
    }
}

fn weights() -> KindWeights {
    [("view", 1.0), ("cart", 3.0), ("dismiss", -1.0)].into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[test]
fn every_ancestor_category_the_brand_and_the_item_get_the_decayed_kind_weight() {
    let catalog = Catalog::from_items([item("p1", "electronics/phones/android", Some("acme"))]);
    let now = Utc::now();
    let decay = Decay::Exponential { half_life_hours: 1.0 };
    let w = weights();
    let params = ProfileParams { decay: &decay, kind_weights: &w, horizon_secs: 86_400.0 };
    let events = [ev("p1", "cart", now - Duration::hours(1))];
    let v = InterestVector::build(&events, &catalog, &params, now);
    let p1 = catalog.idx("p1").unwrap();
    assert!((v.weight(Feature::Item(p1)) - 1.5).abs() < 1e-9, "3 x 0.5");
    for path in ["electronics", "electronics/phones", "electronics/phones/android"] {
        let c = catalog.category_idx(path).unwrap();
        assert!((v.weight(Feature::Category(c)) - 1.5).abs() < 1e-9, "{path}");
    }
    assert!((v.weight(Feature::Brand(catalog.brand_idx("acme").unwrap())) - 1.5).abs() < 1e-9);
    assert!((v.level() - 1.5).abs() < 1e-9);
    assert_eq!(v.evidence(Feature::Item(p1), &events, &catalog)[0].kind, "cart");
}

#[test]
fn a_packed_history_gives_the_vector_and_evidence_of_its_events() {
    let mut catalog = Catalog::from_items([item("p1", "toys", None), item("p2", "garden/tools", Some("acme"))]);
    // Packed events keep microseconds, as the stores do.
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let decay = Decay::Exponential { half_life_hours: 1.0 };
    let w = weights();
    let params = ProfileParams { decay: &decay, kind_weights: &w, horizon_secs: 86_400.0 };
    let h = Duration::hours;
    let events = [ev("p1", "view", now - h(2)), ev("p2", "cart", now - h(1)), ev("p1", "dismiss", now - h(1)), ev("p2", "view", now)];
    let packed: Vec<Packed> = events
        .iter()
        .map(|e| {
            let kind = catalog.intern_kind(&e.kind);
            Packed::new(e, e.item(&catalog), kind)
        })
        .collect();
    let (full, compact) = (InterestVector::build(&events, &catalog, &params, now), InterestVector::build(&packed, &catalog, &params, now));
    assert_eq!(full.top(10), compact.top(10));
    assert_eq!(full.level(), compact.level());
    assert_eq!(full.recent_items(), compact.recent_items());
    let p2 = Feature::Item(catalog.idx("p2").unwrap());
    assert_eq!(full.evidence(p2, &events, &catalog), compact.evidence(p2, &packed, &catalog));
    assert_eq!(compact.evidence(p2, &packed, &catalog)[0].item_id, "p2");
}

#[test]
fn evidence_is_the_three_largest_positive_contributions_largest_first() {
    let catalog = Catalog::from_items([item("p1", "toys", None)]);
    let now = Utc::now();
    let decay = Decay::Exponential { half_life_hours: 1.0 };
    let w = weights();
    let params = ProfileParams { decay: &decay, kind_weights: &w, horizon_secs: 86_400.0 };
    let h = Duration::hours;
    // Contributions: view 0.25, cart 0.75, dismiss -0.5, view 0.5, cart 1.5, view 1.0.
    let events = [
        ev("p1", "view", now - h(2)),
        ev("p1", "cart", now - h(2)),
        ev("p1", "dismiss", now - h(1)),
        ev("p1", "view", now - h(1)),
        ev("p1", "cart", now - h(1)),
        ev("p1", "view", now),
    ];
    let v = InterestVector::build(&events, &catalog, &params, now);
    let shown: Vec<(String, f64)> =
        v.evidence(Feature::Item(catalog.idx("p1").unwrap()), &events, &catalog).into_iter().map(|e| (e.kind, e.contribution)).collect();
    assert_eq!(shown, vec![("cart".to_string(), 1.5), ("view".to_string(), 1.0), ("cart".to_string(), 0.75)]);
}

#[test]
fn negative_kinds_subtract_and_future_or_old_events_are_ignored() {
    let catalog = Catalog::from_items([item("a", "x", None)]);
    let now = Utc::now();
    let w = weights();
    let params = ProfileParams { decay: &Decay::None, kind_weights: &w, horizon_secs: 3600.0 };
    let events = [
        ev("a", "cart", now - Duration::minutes(5)),
        ev("a", "dismiss", now - Duration::minutes(1)),
        ev("a", "cart", now + Duration::minutes(5)),
        ev("a", "cart", now - Duration::hours(2)),
    ];
    let v = InterestVector::build(&events, &catalog, &params, now);
    assert!((v.weight(Feature::Item(catalog.idx("a").unwrap())) - 2.0).abs() < 1e-9);
}

#[test]
fn top_orders_features_by_weight() {
    let catalog = Catalog::from_items([item("a", "x", None), item("b", "y", None)]);
    let now = Utc::now();
    let w = weights();
    let params = ProfileParams { decay: &Decay::None, kind_weights: &w, horizon_secs: 1e9 };
    let v = InterestVector::build(&[ev("a", "view", now), ev("b", "cart", now)], &catalog, &params, now);
    let top = v.top_categories(2);
    assert_eq!(catalog.category_name(top[0].0), "y");
    assert_eq!(v.top(10).len(), 4);
    assert!(!v.is_empty());
}
