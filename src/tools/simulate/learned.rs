//! The learned arm: its push-response training, and what the report says of its decisions.

use super::*;
use super::world::{Policy, World};

/// The learned arm's training: the service's push-response trainer on the pushes of the warm-up
/// whose outcome is known by `now` (an unanswered push counts once its ignore window is over),
/// the last settled day held out for the deployment rule. Never the simulator's parameters.
pub(super) fn train_response(world: &mut World, now: DateTime<Utc>, cfg: &FrequencyConfig) {
    let window = TimeDelta::seconds((cfg.ignore_window_hours * 3600.0) as i64);
    let known = push_response::settled(&world.examples, now, window);
    let holdout_from = now - window - TimeDelta::days(1);
    let settings = push_response::FitSettings { min_pushes: cfg.response_min_pushes, ..push_response::FitSettings::default() };
    match push_response::fit(&known, holdout_from, settings) {
        Ok(model) => {
            let opened = known.iter().filter(|e| e.opened).count();
            world.response_note = Some(format!("trained on {} settled pushes ({opened} opened)", known.len()));
            world.response = Some(model);
        }
        // A refused retrain keeps the model in force, as the service does.
        Err(why) if world.response.is_none() => world.response_note = Some(format!("no model: {why}")),
        Err(_) => {}
    }
}

/// The decisions of the first replication's world of `policy`, most frequent first.
pub(super) fn decisions(worlds: &[World], arms: &[(String, Policy)], policy: Policy) -> Vec<(String, u64)> {
    worlds
        .iter()
        .find(|w| w.variant.is_none() && arms[w.arm].1 == policy)
        .map(|w| {
            let mut v: Vec<(String, u64)> = w.skips.iter().map(|(k, n)| (k.to_string(), *n)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v
        })
        .unwrap_or_default()
}
