use super::*;

// --- properties ----------------------------------------------------------------------------------

const ZONES: [Tz; 6] = [
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Pacific::Chatham,
    chrono_tz::UTC,
];

fn feedback_kind() -> impl Strategy<Value = FeedbackKind> {
    prop::sample::select(FeedbackKind::ALL.to_vec())
}

proptest! {
    #[test]
    fn the_target_frequency_stays_within_f_min_and_f_max(
        interest in -10.0f64..1000.0,
        steps in prop::collection::vec((feedback_kind(), 0u32..3, prop::option::of(0.0f64..100.0)), 0..60),
    ) {
        let c = cfg();
        let t0 = utc(2026, 1, 1, 0, 0);
        let mut s = PushState::new(interest, t0, &c);
        for (i, (kind, which, interest)) in steps.into_iter().enumerate() {
            let now = t0 + TimeDelta::hours(i as i64 * 7);
            let id = format!("p{}", i as u32 / 3 * 3 + which);
            if which == 0 {
                s.record_sent(&id, "item", now, chrono_tz::UTC, &c);
            }
            if kind != FeedbackKind::Unsubscribed {
                s.apply_feedback(&fb(&id, kind, now), chrono_tz::UTC, interest, now, &c);
            }
            s.sweep_ignored(now, &c, &|_| false);
            let f = s.target_frequency(&c);
            prop_assert!(f >= c.f_min && f <= c.f_max, "{f}");
            prop_assert!(s.target_frequency >= c.f_min && s.target_frequency <= c.f_max);
            let p = s.pacing_frequency(&c);
            prop_assert!(p >= c.f_min && p <= c.f_max, "{p}");
        }
    }

    #[test]
    fn the_send_time_respects_every_time_limit_in_any_zone(
        zone in 0usize..ZONES.len(),
        offset_min in 0i64..(366 * 24 * 60),
        last_ago_min in prop::option::of(0i64..(3 * 24 * 60)),
        quiet in prop::option::of((0u8..24, 0u8..24)),
        interest in 0.0f64..100.0,
        min_gap in 0u32..600,
        max_per_day in 1u32..4,
        pushes in 0u32..4,
        peak in 0usize..HOURS_PER_WEEK,
    ) {
        let c = FrequencyConfig { min_gap_minutes: min_gap, max_per_day, max_per_week: max_per_day * 3, ..cfg() };
        let tz = ZONES[zone];
        let now = utc(2026, 1, 1, 0, 0) + TimeDelta::minutes(offset_min);
        let pop = population(&[(peak, 100.0)], now);
        let mut s = PushState::new(interest, now - TimeDelta::days(3), &c);
        if let Some(ago) = last_ago_min {
            for i in 0..pushes.max(1) {
                let at = now - TimeDelta::minutes(ago) - TimeDelta::minutes(i64::from(i));
                s.record_sent(&format!("p{i}"), "x", at, tz, &c);
            }
        }
        let u = Recipient {
            user_id: "u",
            timezone: tz,
            push_consent: true,
            quiet_hours: quiet.map(|(start, end)| QuietHours { start, end }),
        };
        let plan = s.plan(&u, &pop, now, &c);
        if let Some(slot) = plan.slot {
            let at = slot.at;
            prop_assert!(at >= now);
            prop_assert!(at < now + TimeDelta::hours(i64::from(c.lookahead_hours)) + TimeDelta::minutes((c.send_window_max_hours * 60.0) as i64));
            if let Some(q) = u.quiet_hours {
                prop_assert!(!q.contains(at.with_timezone(&tz).hour()), "slot {at} in quiet hours {q:?}");
            }
            if let Some(last) = s.last_push_at {
                prop_assert!(at >= last + c.min_gap(), "slot {at} before the min gap after {last}");
            }
            let day = local_date(at, tz);
            prop_assert!(s.pushes_on(day) < c.max_per_day);
            prop_assert!(s.pushes_in(LocalWeek::of(day)) < c.max_per_week);
            prop_assert_eq!(slot.bin, hour_of_week(at, tz));
            // Deciding at the slot sends, unless nothing changed but time... it must send.
            let mut s2 = s.clone();
            let d = s2.decide(&DecideContext::basic(u, Some(1.0), 1, &pop), at, &c);
            prop_assert!(d.is_send(), "{:?}", d);
        } else {
            // Only quiet hours covering the whole day can leave no slot in a week of look-ahead.
            prop_assert!(u.quiet_hours.is_some_and(|q| (0..24).all(|h| q.contains(h))));
        }
    }

    /// The scheduler ranks only where `reads_item` says the decision reads the item: there, a
    /// decision without one must take the same action as with one (the hand-set rule and
    /// exploration; the learned policy reads it wherever a push can go out at all).
    #[test]
    fn where_the_decision_does_not_read_the_item_it_acts_the_same_without_one(
        zone in 0usize..ZONES.len(),
        offset_min in 0i64..(366 * 24 * 60),
        last_ago_min in prop::option::of(0i64..(2 * 24 * 60)),
        quiet in prop::option::of((0u8..24, 0u8..24)),
        consent in prop::bool::weighted(0.8),
        unsubscribed in prop::bool::weighted(0.1),
        holdout in prop::bool::weighted(0.1),
        score in 0.0f64..1.0,
        draw in 0.0f64..1.0,
        peak in 0usize..HOURS_PER_WEEK,
    ) {
        let c = FrequencyConfig { min_gap_minutes: 240, exploration_rate: 0.2, holdout_share: if holdout { 1.0 } else { 0.0 }, ..cfg() };
        let tz = ZONES[zone];
        let now = utc(2026, 1, 1, 0, 0) + TimeDelta::minutes(offset_min);
        let pop = population(&[(peak, 100.0)], now);
        let mut s = PushState::new(c.theta, now - TimeDelta::days(3), &c);
        if let Some(ago) = last_ago_min {
            s.record_sent("p0", "x", now - TimeDelta::minutes(ago), tz, &c);
        }
        if unsubscribed {
            s.apply_feedback(&fb("p0", FeedbackKind::Unsubscribed, now - TimeDelta::minutes(1)), tz, None, now, &c);
        }
        let u = Recipient { user_id: "u", timezone: tz, push_consent: consent, quiet_hours: quiet.map(|(start, end)| QuietHours { start, end }) };
        prop_assume!(!s.reads_item(&u, false, now, &c));
        let with = |best: Option<f64>| {
            let ctx = DecideContext { draw, ..DecideContext::basic(u, best, 10, &pop) };
            let d = s.clone().decide(&ctx, now, &c);
            (d.is_send(), d.skip_reason(), d.next_check_at(), d.propensity())
        };
        prop_assert_eq!(with(Some(score)), with(None));
    }
}
