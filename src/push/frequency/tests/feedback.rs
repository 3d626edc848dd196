use super::*;

// --- target frequency and feedback -------------------------------------------------------------

#[test]
fn initial_frequency_is_f0_at_theta_and_clamped_to_f_min_and_f_max() {
    let c = cfg();
    assert_eq!(initial_frequency(c.theta, &c), c.f0);
    assert_eq!(initial_frequency(0.0, &c), c.f_min);
    assert_eq!(initial_frequency(-5.0, &c), c.f_min);
    assert_eq!(initial_frequency(f64::NAN, &c), c.f_min);
    assert_eq!(initial_frequency(1e9, &c), c.f_max);
    assert!((initial_frequency(c.theta * 1.5, &c) - c.f0 * 1.5).abs() < 1e-12);
}

#[test]
fn opens_raise_the_frequency_and_ignores_and_dismissals_lower_it_dismissals_more() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0);
    let tz = chrono_tz::UTC;
    let base = PushState::new(c.theta, t, &c);
    let f0 = base.target_frequency(&c);

    let mut opened = base.clone();
    opened.record_sent("p1", "item-1", t, tz, &c);
    opened.apply_feedback(&fb("p1", FeedbackKind::Opened, t), tz, None, t, &c);
    assert!((opened.target_frequency(&c) - f0 * (1.0 + c.alpha)).abs() < 1e-12);

    let mut ignored = base.clone();
    ignored.record_sent("p1", "item-1", t, tz, &c);
    assert_eq!(ignored.sweep_ignored(t + TimeDelta::hours(25), &c, &|_| false), 1);
    assert!((ignored.target_frequency(&c) - f0 * c.ignore_factor).abs() < 1e-12);

    let mut dismissed = base.clone();
    dismissed.record_sent("p1", "item-1", t, tz, &c);
    dismissed.apply_feedback(&fb("p1", FeedbackKind::Dismissed, t), tz, None, t, &c);
    assert!(dismissed.target_frequency(&c) < ignored.target_frequency(&c));
    assert!(ignored.target_frequency(&c) < f0 && f0 < opened.target_frequency(&c));

    // Interest scales the raise: a keen user's open raises it more.
    let mut keen = base.clone();
    keen.record_sent("p1", "item-1", t, tz, &c);
    keen.apply_feedback(&fb("p1", FeedbackKind::Opened, t), tz, Some(c.theta * 2.0), t, &c);
    assert!(keen.target_frequency(&c) > opened.target_frequency(&c));
}

#[test]
fn an_open_then_a_click_counts_as_one_click_and_a_repeated_report_changes_nothing() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0);
    let tz = chrono_tz::UTC;
    let mut a = PushState::new(c.theta, t, &c);
    a.record_sent("p1", "item-1", t, tz, &c);
    let mut b = a.clone();
    a.apply_feedback(&fb("p1", FeedbackKind::Opened, t), tz, None, t, &c);
    a.apply_feedback(&fb("p1", FeedbackKind::Clicked, t), tz, None, t, &c);
    b.apply_feedback(&fb("p1", FeedbackKind::Clicked, t), tz, None, t, &c);
    assert!((a.target_frequency(&c) - b.target_frequency(&c)).abs() < 1e-12);
    let before = a.clone();
    let effect = a.apply_feedback(&fb("p1", FeedbackKind::Clicked, t), tz, None, t, &c);
    assert!(effect.duplicate);
    assert_eq!(a, before);
    // An opened push is never counted as ignored afterwards.
    assert_eq!(a.sweep_ignored(t + TimeDelta::days(3), &c, &|_| false), 0);
    assert_eq!(a.totals.opened, 1);
    assert_eq!(a.totals.clicked, 1);
}

#[test]
fn a_push_is_counted_ignored_once_and_only_after_the_ignore_window() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0);
    let mut s = PushState::new(c.theta, t, &c);
    s.record_sent("p1", "item-1", t, chrono_tz::UTC, &c);
    assert_eq!(s.sweep_ignored(t + TimeDelta::hours(23), &c, &|_| false), 0);
    assert_eq!(s.sweep_ignored(t + TimeDelta::hours(24), &c, &|_| false), 1);
    assert_eq!(s.sweep_ignored(t + TimeDelta::hours(48), &c, &|_| false), 0);
    assert!(!s.record_ignored("p1", &c));
    assert_eq!(s.consecutive_ignored, 1);
    assert_eq!(s.totals.ignored, 1);
}

#[test]
fn a_push_the_gateway_never_fetched_is_not_counted_as_ignored() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0);
    let mut s = PushState::new(c.theta, t, &c);
    s.record_sent("fetched", "item-1", t, chrono_tz::UTC, &c);
    s.record_sent("never", "item-2", t + TimeDelta::hours(4), chrono_tz::UTC, &c);
    let before = s.target_frequency(&c);
    assert_eq!(s.sweep_ignored(t + TimeDelta::days(2), &c, &|id| id == "never"), 1, "only the fetched one");
    assert!((s.target_frequency(&c) - before * c.ignore_factor).abs() < 1e-9, "lowered once");
    assert_eq!(s.totals.ignored, 1);
    assert_eq!(s.consecutive_ignored, 1);
    assert_eq!(s.sweep_ignored(t + TimeDelta::days(3), &c, &|_| false), 0, "settled: not counted later either");
}

#[test]
fn a_failed_push_is_never_counted_as_ignored() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0);
    let mut s = PushState::new(c.theta, t, &c);
    s.record_sent("p1", "item-1", t, chrono_tz::UTC, &c);
    s.apply_feedback(&fb("p1", FeedbackKind::Failed, t), chrono_tz::UTC, None, t, &c);
    assert_eq!(s.sweep_ignored(t + TimeDelta::days(2), &c, &|_| false), 0);
    assert_eq!(s.target_frequency(&c), c.f0);
}

#[test]
fn unsubscribe_stops_all_pushes_at_once() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0);
    let pop = daily_peak(10, t);
    let mut s = PushState::new(c.theta, t, &c);
    let u = user(chrono_tz::UTC);
    assert!(s.decide(&ctx(u, &pop), t, &c).is_send());
    s.record_sent("p1", "item-1", t, chrono_tz::UTC, &c);
    let effect = s.apply_feedback(&fb("p1", FeedbackKind::Unsubscribed, t), chrono_tz::UTC, None, t, &c);
    assert!(effect.stopped);
    assert_eq!(s.next_due_at, None);
    for days in [0, 1, 7, 60] {
        let d = s.decide(&ctx(u, &pop), t + TimeDelta::days(days), &c);
        assert_eq!(d.skip_reason(), Some(SkipReason::Unsubscribed));
        assert_eq!(d.next_check_at(), None);
    }
    s.resubscribe(t + TimeDelta::days(61));
    assert!(!s.is_unsubscribed());
}

#[test]
fn fatigue_decays_with_its_half_life_and_an_open_takes_a_push_back() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0);
    let mut s = PushState::new(c.theta, t, &c);
    s.record_sent("p1", "item-1", t, chrono_tz::UTC, &c);
    s.record_sent("p2", "item-2", t, chrono_tz::UTC, &c);
    let hl = TimeDelta::seconds((c.fatigue_half_life_hours * 3600.0) as i64);
    assert!((s.fatigue_at(t, &c) - 2.0).abs() < 1e-9);
    assert!((s.fatigue_at(t + hl, &c) - 1.0).abs() < 1e-9);
    assert!((s.fatigue_at(t + hl * 2, &c) - 0.5).abs() < 1e-9);
    s.apply_feedback(&fb("p1", FeedbackKind::Opened, t + hl), chrono_tz::UTC, None, t + hl, &c);
    assert!(s.fatigue_at(t + hl, &c).abs() < 1e-9);
}

#[test]
fn fatigue_above_its_threshold_slows_pacing_but_not_below_f_min() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0);
    let mut s = PushState::new(c.theta * 2.0, t, &c);
    assert_eq!(s.pacing_frequency(&c), s.target_frequency(&c));
    for i in 0..6 {
        s.record_sent(&format!("p{i}"), "item", t, chrono_tz::UTC, &c);
    }
    let slowed = s.pacing_frequency(&c);
    assert!(slowed < s.target_frequency(&c));
    assert!(slowed >= c.f_min);
    assert_eq!(s.target_frequency(&c), c.f0 * 2.0, "fatigue does not change the learned target");
}

#[test]
fn a_dismissed_item_is_suppressed_for_the_configured_days() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0);
    let mut s = PushState::new(c.theta, t, &c);
    s.record_sent("p1", "item-1", t, chrono_tz::UTC, &c);
    let e = s.apply_feedback(&fb("p1", FeedbackKind::Dismissed, t), chrono_tz::UTC, None, t, &c);
    let n = TimeDelta::days(c.dismiss_suppression_days as i64);
    assert_eq!(e.suppressed_until, Some(t + n));
    assert!(s.is_suppressed("item-1", t + n - TimeDelta::minutes(1)));
    assert!(!s.is_suppressed("item-1", t + n));
    assert!(!s.is_suppressed("item-2", t));
    assert!(s.blocked_items(t + TimeDelta::days(10), &c).contains(&"item-1".to_owned()));
    assert!(!s.blocked_items(t + n, &c).contains(&"item-1".to_owned()));
}

#[test]
fn an_item_pushed_within_the_repush_window_is_blocked() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0);
    let mut s = PushState::new(c.theta, t, &c);
    s.record_sent("p1", "item-9", t, chrono_tz::UTC, &c);
    assert!(s.pushed_recently("item-9", t + TimeDelta::days(6), &c));
    assert!(!s.pushed_recently("item-9", t + TimeDelta::days(8), &c));
    assert_eq!(s.blocked_items(t + TimeDelta::days(1), &c), vec!["item-9".to_owned()]);
}
