//! Worlds: one arm's simulated users, their pushes and responses.

use super::*;

// ------------------------------------------------------------------------------------------
// Worlds
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Policy {
    Adaptive,
    /// The learned policy: the adaptive one with exploration during the push warm-up, then
    /// decisions by expected value with a push-response model trained on the warm-up's feedback.
    Learned,
    Fixed { hours: Vec<u32>, every_days: u32 },
    Holdout,
}

/// Counts of one world.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    pub pushes: u64,
    pub opens: u64,
    pub push_conversions: u64,
    pub unsubscribes: u64,
    pub users_reached: u64,
    pub item_relevant: u64,
    pub category_relevant: u64,
    pub hour_match_sum: f64,
}

pub(super) struct SimUser {
    /// The policy state (adaptive), or the bookkeeping of sent pushes (fixed arms).
    pub(super) state: Option<PushState>,
    /// The adaptive state's target frequency when it was created, pushes per day.
    pub(super) initial_frequency: Option<f64>,
    /// The model's truth: the user unsubscribed.
    pub(super) unsubscribed: bool,
    pub(super) rng: SmallRng,
    pub(super) sent: VecDeque<DateTime<Utc>>,
    pub(super) ignored: VecDeque<DateTime<Utc>>,
    /// Counted among the users reached (a push in the measured period).
    pub(super) reached: bool,
}

pub(super) struct World {
    pub(super) arm: usize,
    pub(super) variant: Option<usize>,
    pub(super) model: ResponseModel,
    /// Hour match per user and local hour under this world's model.
    pub(super) hour_match: Vec<[f64; 24]>,
    pub(super) users: Vec<SimUser>,
    pub(super) sent_last_minute: VecDeque<DateTime<Utc>>,
    pub(super) tally: Tally,
    pub(super) push_seq: u64,
    pub(super) skips: BTreeMap<&'static str, u64>,
    /// The learned arm: every push with what the policy saw and what came back (by push id).
    pub(super) examples: Vec<ResponseExample>,
    pub(super) example_of: HashMap<String, usize>,
    /// The learned arm's push-response model, once trained, or why there is none.
    pub(super) response: Option<PushResponseModel>,
    pub(super) response_note: Option<String>,
}

pub(super) enum Action {
    Decide,
    FixedSend,
    Feedback { push_id: String, item_id: String, kind: FeedbackKind },
    /// The learned arm trains its push-response model on the feedback so far.
    Train,
}

pub(super) struct Scheduled {
    pub(super) at: DateTime<Utc>,
    pub(super) seq: u64,
    pub(super) world: usize,
    pub(super) user: usize,
    pub(super) action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so `BinaryHeap` pops the earliest (then the first scheduled).
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Whose turn it is: a user of a world, at a time.
#[derive(Clone, Copy, Debug)]
pub(super) struct Turn {
    pub(super) world: usize,
    pub(super) user: usize,
    pub(super) at: DateTime<Utc>,
}

pub(super) struct Queue {
    pub(super) heap: BinaryHeap<Scheduled>,
    pub(super) seq: u64,
}

impl Queue {
    pub(super) fn push(&mut self, at: DateTime<Utc>, world: usize, user: usize, action: Action) {
        self.seq += 1;
        self.heap.push(Scheduled { at, seq: self.seq, world, user, action });
    }
}

/// What the response model knows about each user: their real future and active hours.
pub(super) struct Truth {
    /// Each user's rows (ts, item, category), in time order.
    pub(super) rows: Vec<Vec<(i64, u64, u64)>>,
    /// Events per user and local hour over the window.
    pub(super) hour_counts: Vec<[f64; 24]>,
    /// The population's share of events per local hour.
    pub(super) hour_share: [f64; 24],
}

impl Truth {
    pub(super) fn new(data: &Dataset, tz: Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> Truth {
        let n = data.user_ids.len();
        let mut rows = vec![Vec::new(); n];
        let mut counts = vec![[0.0f64; 24]; n];
        let mut pop = [0.0f64; 24];
        for r in &data.rows {
            rows[r.user as usize].push((r.ts, r.item, r.category));
            if (start.timestamp()..end.timestamp()).contains(&r.ts) {
                let h = Utc.timestamp_opt(r.ts, 0).single().map_or(0, |t| t.with_timezone(&tz).hour()) as usize;
                counts[r.user as usize][h] += 1.0;
                pop[h] += 1.0;
            }
        }
        let total: f64 = pop.iter().sum::<f64>().max(1.0);
        let hour_share: [f64; 24] = std::array::from_fn(|h| pop[h] / total);
        Truth { rows, hour_counts: counts, hour_share }
    }

    /// Hour match per user and local hour under `model`.
    pub(super) fn hour_match(&self, model: &ResponseModel) -> Vec<[f64; 24]> {
        self.hour_counts.iter().map(|c| model.hour_profile(c, &self.hour_share)).collect()
    }

    /// Relevance of `pick` pushed to `user` at `at`: their real behaviour in the next window.
    pub(super) fn relevance(&self, model: &ResponseModel, user: usize, pick: &Pick, at: DateTime<Utc>) -> f64 {
        let (from, to) = (at.timestamp(), at.timestamp() + (model.relevance.window_hours * 3600.0) as i64);
        let rows = &self.rows[user];
        let first = rows.partition_point(|r| r.0 <= from);
        let mut category = false;
        for r in rows[first..].iter().take_while(|r| r.0 <= to) {
            if r.1 == pick.item {
                return model.relevance.item;
            }
            category |= r.2 == pick.category;
        }
        if category { model.relevance.category } else { 0.0 }
    }
}

/// Everything the worlds share while the queue runs.
pub(super) struct Sim<'a> {
    pub(super) tz: Tz,
    pub(super) cfg: &'a FrequencyConfig,
    pub(super) truth: &'a Truth,
    pub(super) user_ids: &'a [String],
    pub(super) measured_from: DateTime<Utc>,
    pub(super) measured_to: DateTime<Utc>,
    pub(super) arms: &'a [(String, Policy)],
    /// The learned arm's exploration rate during the push warm-up.
    pub(super) warmup_exploration: f64,
}

pub(super) fn exp_delay(rng_u: f64, mean_minutes: f64) -> TimeDelta {
    // Capped at 12 h so every response lands within a policy's ignore window in practice.
    let minutes = (-(1.0 - rng_u).ln() * mean_minutes).min(12.0 * 60.0);
    TimeDelta::seconds((minutes * 60.0).round() as i64)
}

impl Sim<'_> {
    /// Next fixed send instant strictly after `after`, at one of `hours` local, on a local day
    /// whose distance from the first measured day is a multiple of `every_days`.
    pub(super) fn next_fixed(&self, hours: &[u32], every_days: u32, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz).date_naive();
        let first_day = self.measured_from.with_timezone(&self.tz).date_naive();
        (0..=u64::from(2 * every_days))
            .flat_map(|d| hours.iter().map(move |h| (d, *h)))
            .filter_map(|(d, h)| {
                let day = local + chrono::Days::new(d);
                if (day - first_day).num_days().rem_euclid(i64::from(every_days)) != 0 {
                    return None;
                }
                self.tz.from_local_datetime(&day.and_hms_opt(h, 0, 0)?).earliest().map(|t| t.with_timezone(&Utc))
            })
            .filter(|t| *t > after)
            .min()
    }

    /// Sends `pick` to `user` in world `w`: records it, draws the response, schedules feedback.
    #[allow(clippy::too_many_arguments)] // one push's whole context, from two call sites
    pub(super) fn push(&self, world: &mut World, w: usize, user: usize, pick: &Pick, features: Option<ResponseFeatures>, now: DateTime<Utc>, queue: &mut Queue) {
        let cfg = self.cfg;
        // Arms whose policy hears the feedback (the fixed arms do not).
        let adaptive = matches!(self.arms[world.arm].1, Policy::Adaptive | Policy::Learned);
        let counted = now >= self.measured_from;
        world.push_seq += 1;
        let push_id = format!("w{w}-u{user}-p{}", world.push_seq);
        if let Some(features) = features {
            world.example_of.insert(push_id.clone(), world.examples.len());
            world.examples.push(ResponseExample { at: now, features, opened: false, converted: false, unsubscribed: false });
        }
        let m = &world.model;
        let su = &mut world.users[user];
        let state = su.state.get_or_insert_with(|| PushState::new(0.0, now, cfg));
        state.record_sent(&push_id, &pick.item_id, now, self.tz, cfg);
        if counted && !su.reached {
            su.reached = true;
            world.tally.users_reached += 1;
        }
        world.tally.pushes += u64::from(counted);
        world.sent_last_minute.push_back(now);

        let recent_from = now - TimeDelta::seconds((m.open.recent_window_hours * 3600.0) as i64);
        let ignored_from = now - TimeDelta::seconds((m.unsubscribe.ignored_window_days * 86_400.0) as i64);
        while su.sent.front().is_some_and(|t| *t <= recent_from) {
            su.sent.pop_front();
        }
        while su.ignored.front().is_some_and(|t| *t <= ignored_from) {
            su.ignored.pop_front();
        }
        let recent = su.sent.len() as u32;
        su.sent.push_back(now);
        let r = self.truth.relevance(m, user, pick, now);
        let hour = now.with_timezone(&self.tz).hour() as usize;
        let hm = world.hour_match[user][hour];
        if counted {
            world.tally.item_relevant += u64::from(r > 0.0 && r == m.relevance.item);
            world.tally.category_relevant += u64::from(r > 0.0 && r != m.relevance.item);
            world.tally.hour_match_sum += hm;
        }

        // Always five draws per push, so a user's stream advances alike whatever happens.
        let u: [f64; 5] = std::array::from_fn(|_| su.rng.random::<f64>());
        if u[0] < m.open_probability(r, hm, recent) {
            world.tally.opens += u64::from(counted);
            let opened_at = now + exp_delay(u[1], m.open.delay_minutes);
            let converts = u[2] < m.conversion_probability(r);
            if adaptive {
                let item_id = pick.item_id.clone();
                queue.push(opened_at, w, user, Action::Feedback { push_id: push_id.clone(), item_id, kind: FeedbackKind::Opened });
            }
            if converts {
                world.tally.push_conversions += u64::from(counted);
                if adaptive {
                    let at = opened_at + exp_delay(u[3], m.convert.delay_minutes);
                    let item_id = pick.item_id.clone();
                    queue.push(at, w, user, Action::Feedback { push_id, item_id, kind: FeedbackKind::Converted });
                }
            }
        } else {
            su.ignored.push_back(now);
            if u[4] < m.unsubscribe_hazard(su.ignored.len() as u32) {
                world.tally.unsubscribes += u64::from(counted);
                su.unsubscribed = true;
                if adaptive {
                    let at = now + TimeDelta::seconds((m.unsubscribe.delay_minutes * 60.0) as i64);
                    let item_id = pick.item_id.clone();
                    queue.push(at, w, user, Action::Feedback { push_id, item_id, kind: FeedbackKind::Unsubscribed });
                }
            }
        }
    }

    /// One scheduler decision for `user` in an adaptive world, as `Scheduler::try_run_once`
    /// makes it (the item is ranked only where the decision reads it, `PushState::reads_item`).
    pub(super) fn decide(&self, world: &mut World, turn: Turn, replay: &Replay<'_>, ranker: &mut Ranker<'_>, queue: &mut Queue) {
        let Turn { world: w, user, at: now } = turn;
        if now >= self.measured_to {
            return;
        }
        let cfg = self.cfg;
        let user_id = self.user_ids[user].as_str();
        let recipient = Recipient { user_id, timezone: self.tz, push_consent: true, quiet_hours: None };
        if world.users[user].state.is_none() {
            let level = ranker.level(replay, user, now);
            let state = PushState::new(level, now, cfg);
            world.users[user].initial_frequency = Some(state.target_frequency(cfg));
            world.users[user].state = Some(state);
        }
        let state = world.users[user].state.as_mut().expect("created above");
        let blocked = state.blocked_items(now, cfg);
        state.catch_up(&replay.histories[user], self.tz, now, cfg, &|_| false);
        let learned = self.arms[world.arm].1 == Policy::Learned;
        // The item is ranked only where the decision reads it, as the scheduler does.
        let best = if state.reads_item(&recipient, learned && world.response.is_some(), now, cfg) {
            ranker
                .best(replay, user, now, &blocked)
                .filter(|b| !state.is_suppressed(&b.item_id, now) && !state.pushed_recently(&b.item_id, now, cfg))
        } else {
            None
        };
        while world.sent_last_minute.front().is_some_and(|t| *t <= now - TimeDelta::minutes(1)) {
            world.sent_last_minute.pop_front();
        }
        let budget = cfg.global_rate_per_minute.saturating_sub(world.sent_last_minute.len() as u32);
        let ctx = DecideContext {
            user: recipient,
            best_item_score: best.as_ref().map(|b| b.score),
            global_budget_left: budget,
            population: &replay.population,
            model: world.response.as_ref(),
            fallback: Some(world.response_note.as_deref().unwrap_or("no push-response model trained yet")),
            recent: RecentLog::of(&replay.histories[user], &replay.catalog, best.as_ref().map(|b| b.item_id.as_str()), now),
            draw: crate::push::frequency::exploration_draw(user_id, now),
        };
        // The learned arm explores more while it gathers its training data.
        let warmup_cfg;
        let decide_cfg = if learned && now < self.measured_from {
            warmup_cfg = FrequencyConfig { exploration_rate: self.warmup_exploration, ..cfg.clone() };
            &warmup_cfg
        } else {
            cfg
        };
        let decision = state.decide(&ctx, now, decide_cfg);
        if now >= self.measured_from {
            *world.skips.entry(decision.skip_reason().map_or("send", |r| r.as_str())).or_default() += 1;
        }
        if let (Decision::Send { .. }, Some(pick)) = (&decision, best) {
            let features = learned.then(|| decision.inputs().features.clone()).flatten();
            self.push(world, w, user, &pick, features, now, queue);
        }
        let next = decision.next_check_at().unwrap_or(now + TimeDelta::days(1)).max(now + TimeDelta::seconds(1));
        queue.push(next, w, user, Action::Decide);
    }

    pub(super) fn fixed_send(&self, world: &mut World, turn: Turn, replay: &Replay<'_>, ranker: &mut Ranker<'_>, queue: &mut Queue) {
        let Turn { world: w, user, at: now } = turn;
        if now >= self.measured_to || world.users[user].unsubscribed {
            return;
        }
        let blocked = world.users[user].state.as_ref().map(|s| s.blocked_items(now, self.cfg)).unwrap_or_default();
        if let Some(pick) = ranker.best(replay, user, now, &blocked) {
            self.push(world, w, user, &pick, None, now, queue);
        }
        if let Policy::Fixed { hours, every_days } = &self.arms[world.arm].1
            && let Some(next) = self.next_fixed(hours, *every_days, now)
        {
            queue.push(next, w, user, Action::FixedSend);
        }
    }
}
