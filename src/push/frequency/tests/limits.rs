use super::*;

// --- hard limits -----------------------------------------------------------------------------------

#[test]
fn no_consent_means_no_push() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0);
    let pop = daily_peak(10, t);
    let mut s = PushState::new(c.theta, t, &c);
    let u = Recipient { push_consent: false, ..user(chrono_tz::UTC) };
    let d = s.decide(&ctx(u, &pop), t, &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::NoConsent));
    assert!(!d.inputs().push_consent);
}

#[test]
fn the_daily_cap_counts_pushes_in_the_users_local_day() {
    let c = FrequencyConfig { max_per_day: 1, min_gap_minutes: 0, f_max: 24.0, ..cfg() };
    let tz = chrono_tz::America::New_York;
    // 2026-01-10 23:10 EST = 2026-01-11 04:10 UTC.
    let sent = utc(2026, 1, 11, 4, 10);
    let mut s = PushState::new(c.theta * 24.0, sent - TimeDelta::days(1), &c);
    s.record_sent("p1", "item-1", sent, tz, &c);
    assert_eq!(s.pushes_on(local_date(sent, tz)), 1);
    let pop = ActivityHistogram::new();
    // 23:40 EST the same local day: capped (a UTC day count would already have reset).
    let d = s.decide(&ctx(user(tz), &pop), utc(2026, 1, 11, 4, 40), &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::DailyCap));
    // The plan moves to the next local day, which starts at 05:00 UTC.
    assert_eq!(d.next_check_at(), Some(utc(2026, 1, 11, 5, 0)));
    // 00:40 EST on the next local day: allowed.
    let d = s.decide(&ctx(user(tz), &pop), utc(2026, 1, 11, 5, 40), &c);
    assert!(d.is_send(), "{d:?}");
}

#[test]
fn the_weekly_cap_counts_pushes_in_the_users_local_iso_week() {
    let c = FrequencyConfig { max_per_day: 1, max_per_week: 2, min_gap_minutes: 0, f_max: 24.0, ..cfg() };
    let tz = chrono_tz::Asia::Tokyo; // UTC+9: the local week starts on Sunday 15:00 UTC.
    let t = utc(2026, 6, 1, 3, 0); // Monday 12:00 JST.
    let mut s = PushState::new(c.theta * 24.0, t, &c);
    s.record_sent("p1", "a", t, tz, &c);
    s.record_sent("p2", "b", t + TimeDelta::days(1), tz, &c);
    let pop = ActivityHistogram::new();
    let now = t + TimeDelta::days(2); // Wednesday
    let d = s.decide(&ctx(user(tz), &pop), now, &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::WeeklyCap));
    let next_week = utc(2026, 6, 7, 15, 0); // Monday 2026-06-08 00:00 JST.
    assert_eq!(s.next_send_time(&user(tz), &pop, now, &c), Some(next_week));
}

#[test]
fn the_minimum_gap_between_two_pushes_holds() {
    let c = FrequencyConfig { f_max: 24.0, max_per_day: 24, max_per_week: 100, min_gap_minutes: 240, ..cfg() };
    let t = utc(2026, 5, 4, 10, 0);
    let mut s = PushState::new(1e9, t, &c);
    s.record_sent("p1", "item-1", t, chrono_tz::UTC, &c);
    let pop = ActivityHistogram::new();
    let d = s.decide(&ctx(user(chrono_tz::UTC), &pop), t + TimeDelta::hours(1), &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::MinGap));
    assert_eq!(d.next_check_at(), Some(t + TimeDelta::hours(4)));
}

#[test]
fn quiet_hours_over_midnight_are_never_used_even_at_the_populations_peak() {
    let c = cfg();
    let t = utc(2026, 5, 4, 12, 0);
    let pop = daily_peak(23, t);
    let u = Recipient { quiet_hours: Some(QuietHours { start: 22, end: 7 }), ..user(chrono_tz::UTC) };
    let mut s = PushState::new(c.theta, t, &c);
    let slot = s.next_send_time(&u, &pop, t, &c).unwrap();
    assert!(!(22..24).contains(&slot.hour()) && slot.hour() >= 7, "{slot}");
    let d = s.decide(&ctx(u, &pop), utc(2026, 5, 4, 23, 30), &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::QuietHours));
    let d = s.decide(&ctx(u, &pop), utc(2026, 5, 5, 3, 0), &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::QuietHours));
}

#[test]
fn quiet_hours_follow_local_time_across_the_new_york_spring_forward() {
    // 2026-03-08: New York jumps from 02:00 EST to 03:00 EDT. Quiet until 08:00 local means
    // until 12:00 UTC that day (13:00 UTC the day before).
    let c = FrequencyConfig { hour_of_day_pooling: 0.0, ..cfg() };
    let tz = chrono_tz::America::New_York;
    let now = utc(2026, 3, 8, 5, 0); // 00:00 EST, Sunday.
    let pop = population(&[(6 * 24 + 8, 100.0), (6 * 24 + 9, 50.0)], now);
    let u = Recipient { quiet_hours: Some(QuietHours { start: 0, end: 8 }), ..user(tz) };
    let s = PushState::new(c.theta, now, &c);
    assert_eq!(s.next_send_time(&u, &pop, now, &c), Some(utc(2026, 3, 8, 12, 0)));
}

#[test]
fn a_local_hour_skipped_by_spring_forward_is_never_chosen() {
    // Berlin, Sunday 2026-03-29: 02:00 CET does not exist (01:59 CET -> 03:00 CEST).
    let c = FrequencyConfig { hour_of_day_pooling: 0.0, ..cfg() };
    let tz = chrono_tz::Europe::Berlin;
    let now = utc(2026, 3, 28, 12, 0);
    let pop = population(&[(6 * 24 + 1, 10.0), (6 * 24 + 2, 100.0), (6 * 24 + 3, 50.0)], now);
    let s = PushState::new(c.theta, now, &c);
    let slot = s.next_send_time(&user(tz), &pop, now, &c).unwrap();
    assert_eq!(slot, utc(2026, 3, 29, 1, 0), "03:00 CEST, the best hour that exists");
    assert_eq!(slot.with_timezone(&tz).hour(), 3);
}

#[test]
fn a_local_hour_repeated_by_fall_back_is_offered_twice() {
    // Berlin, Sunday 2026-10-25: 02:00-03:00 happens in CEST (00:00 UTC) and again in CET (01:00 UTC).
    let c = FrequencyConfig {
        hour_of_day_pooling: 0.0,
        f_max: 24.0,
        max_per_day: 24,
        max_per_week: 100,
        min_gap_minutes: 60,
        ..cfg()
    };
    let tz = chrono_tz::Europe::Berlin;
    let now = utc(2026, 10, 24, 12, 0);
    let pop = population(&[(6 * 24 + 2, 100.0), (6 * 24 + 3, 50.0)], now);
    let mut s = PushState::new(c.theta, now, &c);
    let first = s.next_send_time(&user(tz), &pop, now, &c).unwrap();
    assert_eq!(first, utc(2026, 10, 25, 0, 0));
    assert_eq!(first.with_timezone(&tz).hour(), 2);
    // Pushed at the first 02:00; at 24 pushes a day the second 02:00 (CET) is the next best slot.
    s.target_frequency = 24.0;
    s.record_sent("p1", "item-1", first, tz, &c);
    let second = s.next_send_time(&user(tz), &pop, first, &c).unwrap();
    assert_eq!(second, utc(2026, 10, 25, 1, 0));
    assert_eq!(second.with_timezone(&tz).hour(), 2);
    // Both count against the same 25-hour local day.
    s.record_sent("p2", "item-2", second, tz, &c);
    assert_eq!(s.pushes_on(local_date(second, tz)), 2);
}

#[test]
fn the_global_rate_limit_defers_to_the_next_minute() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0) + TimeDelta::seconds(17);
    let pop = daily_peak(10, t);
    let mut s = PushState::new(c.theta, t, &c);
    let mut x = ctx(user(chrono_tz::UTC), &pop);
    x.global_budget_left = 0;
    let d = s.decide(&x, t, &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::GlobalRateLimit));
    assert_eq!(d.next_check_at(), Some(utc(2026, 5, 4, 10, 1)));
}

#[test]
fn no_push_goes_out_when_the_best_item_is_under_the_content_threshold() {
    let c = cfg();
    let t = utc(2026, 5, 4, 10, 0);
    let pop = daily_peak(10, t);
    let mut s = PushState::new(c.theta, t, &c);
    let mut x = ctx(user(chrono_tz::UTC), &pop);
    x.best_item_score = Some(c.min_item_score / 2.0);
    let d = s.decide(&x, t, &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::BelowContentThreshold));
    assert_eq!(d.next_check_at(), Some(t + TimeDelta::minutes(i64::from(c.content_retry_minutes))));
    x.best_item_score = None;
    assert_eq!(s.decide(&x, t, &c).skip_reason(), Some(SkipReason::NoItem));
    x.best_item_score = Some(f64::NAN);
    assert_eq!(s.decide(&x, t, &c).skip_reason(), Some(SkipReason::BelowContentThreshold));
    x.best_item_score = Some(c.min_item_score);
    assert!(s.decide(&x, t, &c).is_send());
}

#[test]
fn holdout_users_never_get_a_push_and_membership_is_stable() {
    let c = FrequencyConfig { holdout_share: 1.0, ..cfg() };
    let t = utc(2026, 5, 4, 10, 0);
    let pop = daily_peak(10, t);
    let mut s = PushState::new(c.theta, t, &c);
    let d = s.decide(&ctx(user(chrono_tz::UTC), &pop), t, &c);
    assert_eq!(d.skip_reason(), Some(SkipReason::Holdout));
    assert!(d.inputs().in_holdout);

    // A fixed point: the hash must not change between releases, or the groups would reshuffle.
    assert_eq!(fnv1a64(b"kairos"), 0x0a6b_f46c_4943_30c0);
    assert_eq!(holdout_point("user-42"), holdout_point("user-42"));
    let n = 20_000;
    let held = (0..n).filter(|i| is_in_holdout(&format!("{i}"), 0.1)).count();
    assert!((1_700..2_300).contains(&held), "{held} of {n} held out at 10%");
    // Raising the share only adds users.
    assert!((0..n).all(|i| !is_in_holdout(&format!("{i}"), 0.1) || is_in_holdout(&format!("{i}"), 0.2)));
    assert!(!is_in_holdout("anyone", 0.0));
    assert!(is_in_holdout("anyone", 1.0));
}

#[test]
fn the_learned_policy_reads_the_item_wherever_a_push_can_go_out_at_all() {
    let c = FrequencyConfig { min_gap_minutes: 240, ..cfg() };
    let t = utc(2026, 5, 4, 10, 0);
    let mut s = PushState::new(c.theta, t, &c);
    s.record_sent("p1", "a", t, chrono_tz::UTC, &c);
    let (u, later) = (user(chrono_tz::UTC), t + TimeDelta::hours(1));
    assert!(!s.reads_item(&u, false, later, &c), "the hand-set rule waits out the gap without the item");
    assert!(s.reads_item(&u, true, later, &c), "the learned policy values the hours after the gap with the item");
    assert!(s.reads_item(&u, false, t + TimeDelta::hours(5), &c), "after the gap both read it");
    let without_consent = Recipient { push_consent: false, ..u };
    assert!(!s.reads_item(&without_consent, true, later, &c));
}
