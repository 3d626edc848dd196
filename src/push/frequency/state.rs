// Over 400 lines: one type and the transitions of its state machine, read together.
//! `PushState`: everything the policy remembers about one user, and the updates that feedback,
//! activity and sent pushes make to it. Stored as one JSON column by the store.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::config::{days, hours};
use super::histogram::{ActivityHistogram, decay_factor};
use super::{FeedbackKind, FrequencyConfig, initial_frequency};
use crate::rank::history::HistoryEvent;

/// Most pushes kept in [`PushState::recent_pushes`]; older ones are dropped first.
const MAX_RECENT_PUSHES: usize = 64;
/// Most entries kept in [`PushState::suppressed`]; the ones expiring soonest are dropped first.
const MAX_SUPPRESSED: usize = 256;

/// A local ISO week (Monday to Sunday) of the user, e.g. `2026-W13`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LocalWeek {
    pub iso_year: i32,
    pub week: u32,
}

impl LocalWeek {
    /// The ISO week a local date belongs to.
    pub fn of(date: NaiveDate) -> Self {
        let w = date.iso_week();
        Self { iso_year: w.year(), week: w.week() }
    }
}

impl std::fmt::Display for LocalWeek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-W{:02}", self.iso_year, self.week)
    }
}

/// The user's local calendar date at an instant.
pub fn local_date(ts: DateTime<Utc>, tz: Tz) -> NaiveDate {
    ts.with_timezone(&tz).date_naive()
}

/// Pushes counted in one local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    pub day: NaiveDate,
    pub count: u32,
}

/// Pushes counted in one local ISO week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeekCount {
    pub week: LocalWeek,
    pub count: u32,
}

/// What became of a sent push, strongest signal last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushOutcome {
    /// Sent, nothing heard yet.
    Pending,
    Delivered,
    Opened,
    Clicked,
    Converted,
    Dismissed,
    /// No open within `ignore_window_hours`.
    Ignored,
    /// The gateway could not deliver it.
    Failed,
    /// The gateway never fetched it (it expired in the outbox, or was withdrawn): the user
    /// never saw it, so it says nothing about them.
    NotDelivered,
}

impl PushOutcome {
    /// How many opens this outcome has been credited with.
    fn credit(self, cfg: &FrequencyConfig) -> f64 {
        match self {
            PushOutcome::Opened => 1.0,
            PushOutcome::Clicked => cfg.click_weight,
            PushOutcome::Converted => cfg.convert_weight,
            PushOutcome::Pending
            | PushOutcome::Delivered
            | PushOutcome::Dismissed
            | PushOutcome::Ignored
            | PushOutcome::Failed
            | PushOutcome::NotDelivered => 0.0,
        }
    }

    /// Still waiting for the user's reaction (may still become ignored).
    fn awaiting_response(self) -> bool {
        matches!(self, PushOutcome::Pending | PushOutcome::Delivered)
    }
}

/// One push sent to the user, kept for feedback matching, ignore detection and the repush window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentPush {
    pub push_id: String,
    pub item_id: String,
    pub sent_at: DateTime<Utc>,
    pub outcome: PushOutcome,
}

/// Lifetime counts per outcome, for the push-plan API and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PushTotals {
    pub sent: u64,
    pub opened: u64,
    pub clicked: u64,
    pub converted: u64,
    pub dismissed: u64,
    pub ignored: u64,
    pub failed: u64,
}

/// A feedback report from the gateway about one push.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feedback<'a> {
    pub push_id: &'a str,
    pub item_id: &'a str,
    pub kind: FeedbackKind,
    /// When it happened on the device (an open also feeds the activity histogram at this time).
    pub ts: DateTime<Utc>,
}

/// What a feedback report changed, for logs and the API response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackEffect {
    pub frequency_before: f64,
    pub frequency_after: f64,
    /// The item is not pushed again before this time (dismissals).
    pub suppressed_until: Option<DateTime<Utc>>,
    /// The user unsubscribed: no more pushes.
    pub stopped: bool,
    /// The report repeated one already applied and changed nothing.
    pub duplicate: bool,
}

/// The push frequency state of one user. Serialises to JSON for one store column; the store
/// also copies [`PushState::next_due_at`] into an indexed column for the scheduler's query.
///
/// Nothing here depends on a config constant for its meaning: fatigue and the histogram keep
/// the time they were last updated and decay lazily with the half-life in force when read;
/// the target frequency is re-clamped to the configured bounds whenever it is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushState {
    /// Learned target frequency, in pushes per day (read it through [`Self::target_frequency`]).
    pub target_frequency: f64,
    /// When the state was created; the pacing anchor of a user who never got a push.
    pub created_at: DateTime<Utc>,
    pub last_push_at: Option<DateTime<Utc>>,
    /// Pushes in the local day they count (a push on another local day starts a new count).
    pub day_count: Option<DayCount>,
    /// Pushes in the local ISO week they count.
    pub week_count: Option<WeekCount>,
    /// Pushes in a row with no positive response (ignored or dismissed).
    pub consecutive_ignored: u32,
    /// Fatigue as of `fatigue_at` (read it through [`Self::fatigue_at`]).
    pub fatigue: f64,
    pub fatigue_at: DateTime<Utc>,
    /// Hour-of-week activity from events and opens, in the user's local time.
    pub activity: ActivityHistogram,
    /// Set by an unsubscribe: no push until [`Self::resubscribe`].
    pub unsubscribed_at: Option<DateTime<Utc>>,
    /// Items not to push to this user before the given time (dismissed items).
    pub suppressed: BTreeMap<String, DateTime<Utc>>,
    /// Recent pushes, oldest first (bounded).
    pub recent_pushes: VecDeque<SentPush>,
    /// When the scheduler should next look at this user; `None`: not until something changes
    /// (consent given, resubscribed).
    pub next_due_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub totals: PushTotals,
    /// The learned policy's plan: a push at a later hour, decided by value when it was made
    /// (see `value.rs`), and kept unless a hard limit stands in its way at that hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<PlannedPush>,
}

/// A push the learned policy decided on for a later hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlannedPush {
    /// The planned hour, and when and with which expected value it was planned.
    pub at: DateTime<Utc>,
    pub planned_at: DateTime<Utc>,
    pub value: f64,
}

impl PushState {
    /// A new user's state: the initial frequency comes from their interest level.
    pub fn new(interest_level: f64, now: DateTime<Utc>, cfg: &FrequencyConfig) -> Self {
        Self {
            target_frequency: initial_frequency(interest_level, cfg),
            created_at: now,
            last_push_at: None,
            day_count: None,
            week_count: None,
            consecutive_ignored: 0,
            fatigue: 0.0,
            fatigue_at: now,
            activity: ActivityHistogram::new(),
            unsubscribed_at: None,
            suppressed: BTreeMap::new(),
            recent_pushes: VecDeque::new(),
            next_due_at: Some(now),
            totals: PushTotals::default(),
            planned: None,
        }
    }

    /// The target frequency within the configured bounds, in pushes per day.
    pub fn target_frequency(&self, cfg: &FrequencyConfig) -> f64 {
        clamp_frequency(self.target_frequency, cfg)
    }

    /// Fatigue at `now`, decayed with its half-life.
    pub fn fatigue_at(&self, now: DateTime<Utc>, cfg: &FrequencyConfig) -> f64 {
        self.fatigue * decay_factor(now - self.fatigue_at, hours(cfg.fatigue_half_life_hours))
    }

    /// The time pacing is measured from: the last push, or the state's creation.
    pub fn pacing_reference(&self) -> DateTime<Utc> {
        self.last_push_at.unwrap_or(self.created_at)
    }

    /// The frequency pacing works with: the target, slowed down while the fatigue at the last
    /// push was above its threshold, never below `f_min`. In pushes per day.
    ///
    /// Fatigue is read at [`Self::pacing_reference`], not at `now`, so the plan for the next push
    /// does not drift while fatigue decays: asking again later gives the same send window.
    pub fn pacing_frequency(&self, cfg: &FrequencyConfig) -> f64 {
        let excess = (self.fatigue_at(self.pacing_reference(), cfg) - cfg.fatigue_threshold).max(0.0);
        (self.target_frequency(cfg) / (1.0 + cfg.fatigue_penalty * excess)).max(cfg.f_min)
    }

    pub fn is_unsubscribed(&self) -> bool {
        self.unsubscribed_at.is_some()
    }

    /// Pushes already sent on the given local day.
    pub fn pushes_on(&self, day: NaiveDate) -> u32 {
        self.day_count.filter(|d| d.day == day).map_or(0, |d| d.count)
    }

    /// Pushes already sent in the given local ISO week.
    pub fn pushes_in(&self, week: LocalWeek) -> u32 {
        self.week_count.filter(|w| w.week == week).map_or(0, |w| w.count)
    }

    /// An event or an open of the user at `ts`: feeds the activity histogram.
    pub fn observe_activity(&mut self, ts: DateTime<Utc>, tz: Tz, cfg: &FrequencyConfig) {
        self.activity.observe(ts, tz, 1.0, cfg);
    }

    /// Brings the state up to `now` before a decision: the activity of the events of
    /// `history` (in time order) newer than the histogram's reference time, and the pushes
    /// whose ignore window has passed (see [`PushState::sweep_ignored`]).
    pub fn catch_up<E: HistoryEvent>(&mut self, history: &[E], tz: Tz, now: DateTime<Utc>, cfg: &FrequencyConfig, never_fetched: &dyn Fn(&str) -> bool) {
        let seen_until = self.activity.as_of();
        for ts in history.iter().map(HistoryEvent::ts).filter(|ts| seen_until.is_none_or(|t| *ts > t) && *ts <= now) {
            self.observe_activity(ts, tz, cfg);
        }
        self.sweep_ignored(now, cfg, never_fetched);
    }

    /// Is `item_id` suppressed for this user at `now` (dismissed within the suppression window)?
    pub fn is_suppressed(&self, item_id: &str, now: DateTime<Utc>) -> bool {
        self.suppressed.get(item_id).is_some_and(|until| *until > now)
    }

    /// Was `item_id` pushed to this user within `repush_window_days` before `now`?
    pub fn pushed_recently(&self, item_id: &str, now: DateTime<Utc>, cfg: &FrequencyConfig) -> bool {
        let since = now - days(cfg.repush_window_days);
        self.recent_pushes.iter().any(|p| p.item_id == item_id && p.sent_at > since && p.outcome != PushOutcome::Failed)
    }

    /// Items the scheduler must not push to this user now: suppressed or pushed recently.
    pub fn blocked_items(&self, now: DateTime<Utc>, cfg: &FrequencyConfig) -> Vec<String> {
        let mut out: Vec<String> =
            self.suppressed.iter().filter(|(_, until)| **until > now).map(|(item, _)| item.clone()).collect();
        for p in &self.recent_pushes {
            if self.pushed_recently(&p.item_id, now, cfg) && !out.contains(&p.item_id) {
                out.push(p.item_id.clone());
            }
        }
        out
    }

    /// A push was written to the outbox at `at`: counts it against the local day and week,
    /// adds fatigue and remembers it for feedback, ignore detection and the repush window.
    pub fn record_sent(&mut self, push_id: &str, item_id: &str, at: DateTime<Utc>, tz: Tz, cfg: &FrequencyConfig) {
        let day = local_date(at, tz);
        let week = LocalWeek::of(day);
        let day_count = self.pushes_on(day) + 1;
        self.day_count = match self.day_count {
            // A push recorded late for an earlier day does not reset today's count.
            Some(d) if d.day > day => Some(d),
            _ => Some(DayCount { day, count: day_count }),
        };
        let week_count = self.pushes_in(week) + 1;
        self.week_count = match self.week_count {
            Some(w) if w.week > week => Some(w),
            _ => Some(WeekCount { week, count: week_count }),
        };
        self.last_push_at = Some(self.last_push_at.map_or(at, |l| l.max(at)));
        self.add_fatigue(cfg.fatigue_per_push, at, cfg);
        self.recent_pushes.push_back(SentPush {
            push_id: push_id.to_owned(),
            item_id: item_id.to_owned(),
            sent_at: at,
            outcome: PushOutcome::Pending,
        });
        while self.recent_pushes.len() > MAX_RECENT_PUSHES {
            self.recent_pushes.pop_front();
        }
        self.totals.sent += 1;
    }

    fn add_fatigue(&mut self, delta: f64, at: DateTime<Utc>, cfg: &FrequencyConfig) {
        let at = at.max(self.fatigue_at);
        self.fatigue = (self.fatigue_at(at, cfg) + delta).max(0.0);
        self.fatigue_at = at;
    }

    fn set_frequency(&mut self, f: f64, cfg: &FrequencyConfig) {
        self.target_frequency = clamp_frequency(f, cfg);
    }

    /// Applies one feedback report from the gateway. `interest` is the user's current interest
    /// level when known (it scales how much an open raises the frequency).
    ///
    /// - opened / clicked / converted: raise the target frequency by `alpha · g · Δcredit`, where
    ///   the credit of a push is 1 for an open, `click_weight` for a click and `convert_weight` for
    ///   a conversion, and only the increase over what this push was already credited counts (an
    ///   open followed by a click counts as one click); the first positive response also takes the
    ///   push's fatigue back, resets the ignored streak and feeds the activity histogram;
    /// - dismissed: multiplies the frequency by `dismiss_factor` and suppresses the item for
    ///   `dismiss_suppression_days`;
    /// - unsubscribed: stops all pushes at once;
    /// - delivered / failed: only recorded (a failed push never counts as ignored).
    ///
    /// A report repeated for the same push changes nothing the second time, as long as the
    /// push is still in [`Self::recent_pushes`].
    pub fn apply_feedback(
        &mut self,
        fb: &Feedback<'_>,
        tz: Tz,
        interest: Option<f64>,
        now: DateTime<Utc>,
        cfg: &FrequencyConfig,
    ) -> FeedbackEffect {
        let before = self.target_frequency(cfg);
        let mut effect = FeedbackEffect {
            frequency_before: before,
            frequency_after: before,
            suppressed_until: None,
            stopped: false,
            duplicate: false,
        };
        let idx = self.recent_pushes.iter().position(|p| p.push_id == fb.push_id);
        let old = idx.map_or(PushOutcome::Pending, |i| self.recent_pushes[i].outcome);
        let set_outcome = |s: &mut Self, o: PushOutcome| {
            if let Some(i) = idx {
                s.recent_pushes[i].outcome = o;
            }
        };
        match fb.kind {
            FeedbackKind::Delivered => {
                if old == PushOutcome::Pending {
                    set_outcome(self, PushOutcome::Delivered);
                } else {
                    effect.duplicate = true;
                }
            }
            FeedbackKind::Failed => {
                if old.awaiting_response() {
                    set_outcome(self, PushOutcome::Failed);
                    self.totals.failed += 1;
                } else {
                    effect.duplicate = true;
                }
            }
            FeedbackKind::Opened | FeedbackKind::Clicked | FeedbackKind::Converted => {
                let new = match fb.kind {
                    FeedbackKind::Opened => PushOutcome::Opened,
                    FeedbackKind::Clicked => PushOutcome::Clicked,
                    _ => PushOutcome::Converted,
                };
                let (old_credit, new_credit) = (old.credit(cfg), new.credit(cfg));
                let first_positive = old_credit == 0.0 && old != PushOutcome::Dismissed;
                match fb.kind {
                    FeedbackKind::Opened => self.totals.opened += u64::from(old_credit < new_credit),
                    FeedbackKind::Clicked => self.totals.clicked += u64::from(old_credit < new_credit),
                    _ => self.totals.converted += u64::from(old_credit < new_credit),
                }
                if new_credit > old_credit {
                    let g = interest.filter(|i| i.is_finite()).map_or(1.0, |i| (i / cfg.theta).clamp(0.5, 2.0));
                    // The raise is for the push's total credit, so an open followed by a click
                    // ends where a click alone would: f · (1 + α·g·credit).
                    let raise = (1.0 + cfg.alpha * g * new_credit) / (1.0 + cfg.alpha * g * old_credit);
                    self.set_frequency(before * raise, cfg);
                    set_outcome(self, new);
                } else {
                    effect.duplicate = true;
                }
                if first_positive {
                    self.consecutive_ignored = 0;
                    self.add_fatigue(-cfg.fatigue_per_push, now, cfg);
                    self.activity.observe(fb.ts.min(now), tz, cfg.open_activity_weight, cfg);
                }
            }
            FeedbackKind::Dismissed => {
                if old == PushOutcome::Dismissed {
                    effect.duplicate = true;
                } else {
                    self.set_frequency(before * cfg.dismiss_factor, cfg);
                    if old != PushOutcome::Ignored {
                        self.consecutive_ignored += 1;
                    }
                    let until = now + days(cfg.dismiss_suppression_days);
                    self.suppress(fb.item_id, until, now);
                    effect.suppressed_until = Some(until);
                    set_outcome(self, PushOutcome::Dismissed);
                    self.totals.dismissed += 1;
                }
            }
            FeedbackKind::Unsubscribed => {
                if self.unsubscribed_at.is_none() {
                    self.unsubscribed_at = Some(now);
                } else {
                    effect.duplicate = true;
                }
                self.next_due_at = None;
                effect.stopped = true;
            }
        }
        effect.frequency_after = self.target_frequency(cfg);
        effect
    }

    fn suppress(&mut self, item_id: &str, until: DateTime<Utc>, now: DateTime<Utc>) {
        self.suppressed.retain(|_, u| *u > now);
        let entry = self.suppressed.entry(item_id.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
        while self.suppressed.len() > MAX_SUPPRESSED {
            let soonest = self.suppressed.iter().min_by_key(|(_, u)| **u).map(|(k, _)| k.clone());
            match soonest {
                Some(k) => self.suppressed.remove(&k),
                None => break,
            };
        }
    }

    fn apply_ignored(&mut self, cfg: &FrequencyConfig) {
        let f = self.target_frequency(cfg) * cfg.ignore_factor;
        self.set_frequency(f, cfg);
        self.consecutive_ignored += 1;
        self.totals.ignored += 1;
    }

    /// Counts every remembered push that got no response within `ignore_window_hours` as
    /// ignored (lowering the frequency once per push), except those `never_fetched` says the
    /// gateway never took (they become `NotDelivered`: the user never saw them). Returns how
    /// many were counted as ignored. Call it whenever the state is loaded for a decision; it
    /// is idempotent.
    pub fn sweep_ignored(&mut self, now: DateTime<Utc>, cfg: &FrequencyConfig, never_fetched: &dyn Fn(&str) -> bool) -> u32 {
        let window = hours(cfg.ignore_window_hours);
        let mut n = 0;
        for p in &mut self.recent_pushes {
            if p.outcome.awaiting_response() && p.sent_at + window <= now {
                if never_fetched(&p.push_id) {
                    p.outcome = PushOutcome::NotDelivered;
                } else {
                    p.outcome = PushOutcome::Ignored;
                    n += 1;
                }
            }
        }
        for _ in 0..n {
            self.apply_ignored(cfg);
        }
        n
    }

    /// Counts one push as ignored, for a caller that finds unanswered pushes in its outbox
    /// instead of relying on [`Self::sweep_ignored`]. A push this state remembers is counted at
    /// most once; returns whether it was counted now.
    pub fn record_ignored(&mut self, push_id: &str, cfg: &FrequencyConfig) -> bool {
        match self.recent_pushes.iter_mut().find(|p| p.push_id == push_id) {
            Some(p) if !p.outcome.awaiting_response() => false,
            Some(p) => {
                p.outcome = PushOutcome::Ignored;
                self.apply_ignored(cfg);
                true
            }
            None => {
                self.apply_ignored(cfg);
                true
            }
        }
    }

    /// The user subscribed again after an unsubscribe: pushes may resume, starting from a
    /// clean ignored streak. The target frequency keeps what was learned.
    pub fn resubscribe(&mut self, now: DateTime<Utc>) {
        self.unsubscribed_at = None;
        self.consecutive_ignored = 0;
        self.next_due_at = Some(now);
    }
}

/// Clamps a frequency to `[f_min, f_max]`; a non-finite value becomes `f_min`.
pub(crate) fn clamp_frequency(f: f64, cfg: &FrequencyConfig) -> f64 {
    if f.is_finite() { f.clamp(cfg.f_min, cfg.f_max) } else { cfg.f_min }
}
