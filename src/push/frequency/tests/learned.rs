//! The learned policy's timing: a later hour is valued with what the log says now, and a push
//! planned for that hour is kept when it comes.

use super::*;
use crate::push::frequency::response::{FORMAT, INPUTS, RecentLog, ResponseModel};

/// A model whose open probability rises with the activity of the send hour of the day and
/// falls with the hours since the user's last event; conversions and unsubscribes never happen.
fn timing_model() -> ResponseModel {
    let weight = |name: &str| match name {
        "hour_activity" => 3.0,
        "log_hours_since_active" => -1.5,
        _ => 0.0,
    };
    let head = |bias: f64, weights: Vec<f64>| serde_json::json!({ "bias": bias, "weights": weights });
    let json = serde_json::json!({
        "format": FORMAT,
        "inputs": INPUTS,
        "p0": 0.1,
        "mean": vec![0.0; INPUTS.len()],
        "scale": vec![1.0; INPUTS.len()],
        "open": head(-1.0, INPUTS.iter().map(|n| weight(n)).collect()),
        "convert": head(-30.0, vec![0.0; INPUTS.len()]),
        "unsubscribe": head(-30.0, vec![0.0; INPUTS.len()]),
    });
    ResponseModel::from_json(1, &json.to_string()).unwrap()
}

/// A user active at 20:00 UTC on each of the ten days before `now`.
fn evening_user(now: DateTime<Utc>, c: &FrequencyConfig) -> PushState {
    let mut s = PushState::new(0.5, now - TimeDelta::days(10), c);
    for d in 1..=10 {
        let day = now - TimeDelta::days(d);
        for _ in 0..6 {
            s.observe_activity(day.with_hour(20).unwrap(), chrono_tz::UTC, c);
        }
    }
    s
}

fn learned_ctx<'a>(model: &'a ResponseModel, pop: &'a ActivityHistogram, last_active: DateTime<Utc>, quiet: Option<QuietHours>) -> DecideContext<'a> {
    let recent = RecentLog { last_active: Some(last_active), ..RecentLog::default() };
    let u = Recipient { quiet_hours: quiet, ..user(chrono_tz::UTC) };
    DecideContext { model: Some(model), recent, ..DecideContext::basic(u, Some(0.5), 100, pop) }
}

#[test]
fn a_push_planned_for_a_more_active_hour_goes_out_at_that_hour_though_the_activity_behind_it_is_older() {
    let c = FrequencyConfig { value_threshold: 0.5, exploration_rate: 0.0, ..cfg() };
    let model = timing_model();
    let pop = ActivityHistogram::new();
    let morning = utc(2026, 3, 10, 10, 0);
    let mut s = evening_user(morning, &c);
    // Active an hour ago: 20:00 is worth a push (valued with the hour since the last event that
    // holds now), 10:00 is not.
    let active = morning - TimeDelta::hours(1);
    let d = s.decide(&learned_ctx(&model, &pop, active, None), morning, &c);
    let evening = utc(2026, 3, 10, 20, 0);
    assert_eq!(d.skip_reason(), Some(SkipReason::WaitingForBetterSlot), "{d:?}");
    assert_eq!(d.next_check_at(), Some(evening));
    assert_eq!(s.planned.map(|p| p.at), Some(evening));
    // At 20:00 the user's last event is eleven hours old and a fresh valuation would fall short
    // of the threshold; the plan made with it is kept.
    let fresh = model.predict(&s.response_features(&learned_ctx(&model, &pop, active, None), evening, Some(0.5), &c));
    assert!(c.push_value(&fresh) < c.value_threshold, "{fresh:?}");
    let mut kept = s.clone();
    let d = kept.decide(&learned_ctx(&model, &pop, active, None), evening, &c);
    assert!(matches!(d, Decision::Send { .. }), "{d:?}");
    assert!(d.summary().contains("planned at 2026-03-10 10:00 UTC"), "{}", d.summary());
    assert_eq!(kept.planned, None, "a plan is used once");
    // A hard limit at the planned hour still wins: the plan is dropped, and the hours left are
    // valued afresh.
    let quiet = QuietHours { start: 19, end: 22 };
    let d = s.decide(&learned_ctx(&model, &pop, active, Some(quiet)), evening, &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::LowValue), "{d:?}");
    assert_eq!(s.planned, None);
}

#[test]
fn without_a_plan_the_hour_that_comes_is_valued_afresh() {
    let c = FrequencyConfig { value_threshold: 0.5, exploration_rate: 0.0, ..cfg() };
    let model = timing_model();
    let pop = ActivityHistogram::new();
    let evening = utc(2026, 3, 10, 20, 0);
    let mut s = evening_user(evening, &c);
    // The last event is eleven hours old and nothing was planned: no push.
    let d = s.decide(&learned_ctx(&model, &pop, evening - TimeDelta::hours(11), None), evening, &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::LowValue), "{d:?}");
    // Active a moment ago, at the most active hour: a push now.
    let d = s.decide(&learned_ctx(&model, &pop, evening - TimeDelta::minutes(5), None), evening, &c);
    assert!(matches!(d, Decision::Send { .. }), "{d:?}");
}
