use super::*;

// --- send time -----------------------------------------------------------------------------------

#[test]
fn a_new_user_gets_the_populations_peak_hour() {
    let c = cfg();
    let t = utc(2026, 5, 4, 6, 0);
    let pop = daily_peak(19, t);
    let s = PushState::new(c.theta, t, &c);
    let slot = s.next_send_time(&user(chrono_tz::Europe::Berlin), &pop, t, &c).unwrap();
    assert_eq!(slot, utc(2026, 5, 4, 17, 0), "19:00 CEST");
}

#[test]
fn the_send_time_is_the_hour_the_user_is_usually_active() {
    let c = cfg();
    let tz = chrono_tz::Europe::Berlin;
    let t = utc(2026, 5, 4, 6, 0);
    let pop = daily_peak(19, t);
    let mut s = PushState::new(c.theta, t - TimeDelta::days(30), &c);
    // Thirty days of activity at 08:xx local.
    for d in 1..=30 {
        for m in [5, 20, 40] {
            s.observe_activity(utc(2026, 4, 4, 6, m) + TimeDelta::days(d), tz, &c);
        }
    }
    let slot = s.next_send_time(&user(tz), &pop, t, &c).unwrap();
    assert_eq!(slot.with_timezone(&tz).hour(), 8, "{slot}");
}

#[test]
fn asking_again_later_in_the_window_keeps_the_planned_hour() {
    let c = cfg();
    let t = utc(2026, 5, 4, 6, 0);
    let pop = daily_peak(19, t);
    let u = user(chrono_tz::UTC);
    let mut s = PushState::new(c.theta, t, &c);
    let d = s.decide(&ctx(u, &pop), t, &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::WaitingForActiveHour));
    let planned = d.next_check_at().unwrap();
    assert_eq!(planned, utc(2026, 5, 4, 19, 0));
    for h in [1, 5, 12] {
        assert_eq!(s.next_send_time(&u, &pop, t + TimeDelta::hours(h), &c), Some(planned));
    }
    let d = s.decide(&ctx(u, &pop), planned, &c);
    assert!(d.is_send(), "{d:?}");
    s.record_sent("p1", "item-1", planned, chrono_tz::UTC, &c);
    // At one push a day the next one goes out at the same hour the next day (asked after the
    // minimum gap, so pacing is what holds it back).
    let d = s.decide(&ctx(u, &pop), planned + TimeDelta::minutes(i64::from(c.min_gap_minutes) + 60), &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::Pacing));
    let next = s.next_send_time(&u, &pop, d.next_check_at().unwrap(), &c);
    assert_eq!(next, Some(planned + TimeDelta::days(1)));
}

#[test]
fn every_decision_records_its_inputs_and_repeated_skips_collapse_in_the_log() {
    let c = FrequencyConfig { decision_log_len: 3, ..cfg() };
    let t = utc(2026, 5, 4, 6, 0);
    let pop = daily_peak(19, t);
    let mut s = PushState::new(c.theta, t, &c);
    let u = Recipient { quiet_hours: Some(QuietHours { start: 22, end: 7 }), ..user(chrono_tz::UTC) };
    // Polled every ten minutes inside the quiet hours: repeated identical skips collapse into
    // one entry, the newest.
    let mut log: Vec<Decision> = (0..6).map(|i| s.decide(&ctx(u, &pop), t + TimeDelta::minutes(10 * i), &c)).collect();
    let shown = collapse_repeated_skips(log.iter().rev().cloned(), c.decision_log_len);
    assert_eq!(shown.len(), 1);
    let d = &shown[0];
    assert_eq!(d.inputs().now, t + TimeDelta::minutes(50));
    assert_eq!(d.inputs().timezone, "UTC");
    assert_eq!(d.inputs().quiet_hours, Some(QuietHours { start: 22, end: 7 }));
    assert!(d.summary().contains("quiet hours"), "{}", d.summary());
    for day in 1..6 {
        let now = utc(2026, 5, 4, 19, 0) + TimeDelta::days(day);
        let d = s.decide(&ctx(u, &pop), now, &c);
        if d.is_send() {
            s.record_sent(&format!("p{day}"), "x", now, chrono_tz::UTC, &c);
        }
        log.push(d);
    }
    let shown = collapse_repeated_skips(log.iter().rev().cloned(), c.decision_log_len);
    assert_eq!(shown.len(), 3, "bounded by decision_log_len");
    assert!(shown.iter().any(Decision::is_send));
    // A decision and the state survive a round trip through the store's JSON columns.
    let json = serde_json::to_string(&shown[0]).unwrap();
    assert_eq!(serde_json::from_str::<Decision>(&json).unwrap(), shown[0]);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<PushState>(&json).unwrap(), s);
}

#[test]
fn feedback_kinds_parse_from_their_wire_names() {
    for k in FeedbackKind::ALL {
        assert_eq!(FeedbackKind::parse(k.as_str()), Some(k));
        assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
    }
    assert_eq!(FeedbackKind::parse("liked"), None);
}
