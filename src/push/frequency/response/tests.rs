//! What the push-response model learns, and what it refuses.

use super::*;
use chrono::TimeZone;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn features(activity: f64, pushes_24h: u32) -> ResponseFeatures {
    ResponseFeatures {
        activity,
        hour_activity: None,
        hours_since_push: Some(30.0),
        pushes_24h,
        fatigue: 0.5,
        sent: 4,
        opens: 1,
        hours_since_open: None,
        ignored_streak: 1,
        ignored_7d: 1,
        item_score: Some(0.5),
        item_hours_since_touch: Some(5.0),
        item_touches: 2,
        hours_since_active: Some(4.0),
        events_24h: 6,
        weekend: false,
        mobile: true,
    }
}

/// Pushes whose opens follow a planted rule: active hours open, crowded days do not.
fn planted(n: usize, seed: u64) -> Vec<ResponseExample> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    (0..n)
        .map(|i| {
            let activity: f64 = rng.random();
            let pushes = rng.random_range(0..4u32);
            let p = sigmoid(-2.0 + 4.0 * activity - 0.8 * f64::from(pushes));
            let opened = rng.random::<f64>() < p;
            ResponseExample {
                at: t0 + TimeDelta::minutes(i as i64),
                features: features(activity, pushes),
                opened,
                converted: opened && rng.random::<f64>() < 0.3,
                unsubscribed: !opened && rng.random::<f64>() < 0.02,
            }
        })
        .collect()
}

#[test]
fn the_model_learns_the_planted_effects_and_beats_the_population_rate_on_held_out_pushes() {
    let data = planted(3000, 1);
    let holdout = data[2400].at;
    let m = fit(&data, holdout, FitSettings::default()).expect("trains and passes the held-out rule");
    let active = m.predict(&features(0.9, 0)).open;
    let idle = m.predict(&features(0.1, 0)).open;
    let crowded = m.predict(&features(0.9, 3)).open;
    assert!(active > 2.0 * idle, "active hours open more: {active} vs {idle}");
    assert!(crowded < active, "a crowded day opens less: {crowded} vs {active}");
    let p = m.predict(&features(0.5, 1));
    assert!(p.convert < p.open && p.unsubscribe < p.open);
    let again = ResponseModel::from_json(3, &m.to_json()).unwrap();
    assert_eq!(again.predict(&features(0.3, 1)), m.predict(&features(0.3, 1)), "a round trip predicts the same");
    assert_eq!(again.version, 3);
}

#[test]
fn a_new_user_is_predicted_like_the_population_and_a_known_one_by_their_own_record() {
    let m = fit(&planted(3000, 2), Utc::now(), FitSettings::default()).unwrap();
    let new = ResponseFeatures { sent: 0, opens: 0, ..features(0.5, 0) };
    let fan = ResponseFeatures { sent: 40, opens: 40, ..features(0.5, 0) };
    let z_new = new.vector(m.p0);
    let open_rate = INPUTS.iter().position(|n| *n == "open_rate").unwrap();
    assert!((z_new[open_rate] - m.p0).abs() < 1e-12, "no pushes yet: the population's open rate");
    assert!(fan.vector(m.p0)[open_rate] > 0.85, "forty opens of forty: near their own rate");
}

#[test]
fn too_little_data_or_a_useless_model_is_refused_with_the_reason() {
    let small = planted(50, 3);
    assert!(fit(&small, Utc::now(), FitSettings::default()).unwrap_err().contains("at least 200"));
    let mut none = planted(500, 4);
    none.iter_mut().for_each(|e| e.opened = false);
    assert!(fit(&none, Utc::now(), FitSettings::default()).unwrap_err().contains("nothing to learn"));
    // Opens at a constant 15 %, whatever the inputs: a model would value every push alike.
    let mut rng = SmallRng::seed_from_u64(6);
    let mut noise = planted(1500, 6);
    noise.iter_mut().for_each(|e| e.opened = rng.random::<f64>() < 0.15);
    let why = fit(&noise, noise[1200].at, FitSettings::default()).unwrap_err();
    assert!(why.contains("better than the constant rate"), "{why}");
}

#[test]
fn corrupt_or_incompatible_parameters_are_refused() {
    let m = fit(&planted(1000, 5), Utc::now(), FitSettings::default()).unwrap();
    assert!(matches!(ResponseModel::from_json(1, "{"), Err(ResponseModelError::Malformed(_))));
    let wrong = m.to_json().replace(FORMAT, "kairos-push-response/0");
    assert!(matches!(ResponseModel::from_json(1, &wrong), Err(ResponseModelError::Incompatible(_))));
    let mut v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
    v["scale"][0] = serde_json::json!(-1.0);
    assert!(matches!(ResponseModel::from_json(1, &v.to_string()), Err(ResponseModelError::Invalid)));
}

#[test]
fn the_recent_log_reads_only_the_past_the_last_day_and_the_pushed_item() {
    use crate::domain::{Device, Event, EventContext};
    let t0 = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
    let event = |hours_ago: i64, item: &str, device: Option<Device>| Event {
        event_id: uuid::Uuid::nil(),
        user_id: "u".into(),
        item_id: Some(item.into()),
        kind: "view".into(),
        ts: t0 - TimeDelta::hours(hours_ago),
        context: EventContext { device, ..EventContext::default() },
        props: Default::default(),
    };
    // In time order; the last one is after `t0` and must not be read.
    let history = vec![
        event(50, "a", None),
        event(30, "b", None),
        event(20, "a", None),
        event(5, "c", None),
        event(1, "b", Some(Device::Mobile)),
        event(-2, "a", Some(Device::Desktop)),
    ];
    let log = RecentLog::of(&history, &crate::rank::catalog::Catalog::new(), Some("a"), t0);
    assert_eq!(log.last_active, Some(t0 - TimeDelta::hours(1)));
    assert!(log.mobile, "the last event before now came from a phone");
    assert_eq!(log.item_touches, 2, "two past events name the item; the future one does not count");
    assert_eq!(log.item_last_touch, Some(t0 - TimeDelta::hours(20)));
    assert_eq!(log.events_before(t0), 3, "20 h, 5 h and 1 h ago are within the last day");
    // Later in the day, only what was known at `t0` and is still within 24 hours counts.
    assert_eq!(log.events_before(t0 + TimeDelta::hours(6)), 2);
    let none = RecentLog::of(&history, &crate::rank::catalog::Catalog::new(), None, t0);
    assert_eq!((none.item_touches, none.item_last_touch), (0, None));
    assert_eq!(RecentLog::of(&history, &crate::rank::catalog::Catalog::new(), Some("a"), t0 - TimeDelta::hours(60)), RecentLog::default());
}

#[test]
fn conversions_are_learned_among_the_opened_and_a_handful_of_unsubscribes_stays_a_constant_rate() {
    // Opens follow the send hour's activity; an opened push converts more often the more the
    // user touched the item; five ignored pushes of four thousand unsubscribe.
    let mut rng = SmallRng::seed_from_u64(7);
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let data: Vec<ResponseExample> = (0..4000)
        .map(|i| {
            let activity: f64 = rng.random();
            let touches = rng.random_range(0..6u32);
            let opened = rng.random::<f64>() < sigmoid(-1.5 + 3.0 * activity);
            let converted = opened && rng.random::<f64>() < sigmoid(-3.0 + 0.8 * f64::from(touches));
            ResponseExample {
                at: t0 + TimeDelta::minutes(i),
                features: ResponseFeatures { item_touches: touches, ..features(activity, 0) },
                opened,
                converted,
                unsubscribed: !opened && i % 800 == 0,
            }
        })
        .collect();
    let m = fit(&data, data[3200].at, FitSettings::default()).unwrap();
    let with = |touches: u32, activity: f64| m.predict(&ResponseFeatures { item_touches: touches, ..features(activity, 0) });
    let given_open = |p: Predicted| p.convert / p.open;
    assert!(given_open(with(5, 0.5)) > 3.0 * given_open(with(0, 0.5)), "{:?} {:?}", with(5, 0.5), with(0, 0.5));
    assert!((given_open(with(2, 0.1)) - given_open(with(2, 0.9))).abs() < 0.02, "the send hour does not change P(convert | open)");
    assert!(m.unsubscribe.weights.iter().all(|w| *w == 0.0), "five events cannot carry twenty weights: {:?}", m.unsubscribe.weights);
    let given_ignored = |p: Predicted| p.unsubscribe / (1.0 - p.open);
    assert!((given_ignored(with(0, 0.1)) - given_ignored(with(5, 0.9))).abs() < 1e-12);
    assert!(with(2, 0.9).open > with(2, 0.1).open);
}
