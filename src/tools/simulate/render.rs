//! The Markdown report.

use super::*;

// ------------------------------------------------------------------------------------------
// Rendering
// ------------------------------------------------------------------------------------------

pub(super) fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "∞ (no unsubscribes)".to_string(), |r| format!("{r:.1}"))
}

pub(super) fn pm(x: f64, ci: f64) -> String {
    if ci > 0.0 { format!("{x:.1} ± {ci:.1}") } else { format!("{x:.1}") }
}

impl SimReport {
    pub(super) fn days(&self) -> f64 {
        (self.measured_to - self.measured_from).num_seconds() as f64 / 86_400.0
    }

    /// The headline table (also printed by the command).
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str("| policy | pushes | opens | conversions (total) | of which from pushes (lift) | unsubscribes | opens per unsubscribe |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        for a in &self.arms {
            let r = &a.per_1000;
            s.push_str(&format!(
                "| {} | {} | {} | {:.1} | {} | {} | {} |\n",
                a.name,
                pm(r.pushes, a.ci95.pushes),
                pm(r.opens, a.ci95.opens),
                r.conversions,
                pm(r.push_conversions, a.ci95.push_conversions),
                pm(r.unsubscribes, a.ci95.unsubscribes),
                fmt_ratio(a.opens_per_unsubscribe),
            ));
        }
        s
    }

    /// Which model parameters move the comparison most, from the sensitivity runs: for each
    /// variant, how far the adaptive arm's opens per unsubscribe moves relative to the best
    /// fixed arm's.
    pub(super) fn drivers(&self) -> Vec<(String, f64, bool)> {
        let advantage = |arms: &[(String, f64, f64, Option<f64>)]| -> Option<(f64, bool)> {
            let adaptive = arms.first()?.3.unwrap_or(f64::INFINITY);
            let best_fixed = arms[1..].iter().map(|a| a.3.unwrap_or(f64::INFINITY)).fold(0.0, f64::max);
            let ratio = if best_fixed.is_finite() && adaptive.is_finite() { adaptive / best_fixed } else { f64::NAN };
            Some((ratio, adaptive >= best_fixed))
        };
        let Some((base_adv, _)) = advantage(&self.sensitivity_base) else { return Vec::new() };
        let mut out: Vec<(String, f64, bool)> = self
            .sensitivity
            .iter()
            .filter_map(|v| {
                let (adv, wins) = advantage(&v.arms)?;
                Some((format!("model.{} = {} (base {})", v.key, v.value, v.base_value), (adv.ln() - base_adv.ln()).abs(), wins))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// The headline in words: the adaptive arm against each fixed arm.
    pub(super) fn reading(&self) -> String {
        let mut s = String::new();
        let per_day = |a: &ArmSummary| a.per_1000.pushes / 1000.0 / self.days();
        let pct = |a: f64, b: f64| if b > 0.0 { format!("{:.0} %", 100.0 * a / b) } else { "n/a".into() };
        let is_fixed = |a: &ArmSummary| self.params.fixed.iter().any(|f| f.name == a.name);
        let pushing = |a: &&ArmSummary| a.per_1000.pushes > 0.0;
        s.push_str(&format!(
            "\n**Reading.** Pushes per user per day: {}. Against each fixed arm, kairos's policies send:\n\n",
            self.arms.iter().filter(pushing).map(|a| format!("{} {:.2}", a.name, per_day(a))).collect::<Vec<_>>().join(", ")
        ));
        for policy in self.arms.iter().filter(pushing).filter(|a| !is_fixed(a)) {
            for f in self.arms.iter().filter(pushing).filter(|a| is_fixed(a)) {
                let (a, b) = (&policy.per_1000, &f.per_1000);
                s.push_str(&format!(
                    "- {} vs {}: {} of the pushes, for {} of the opens, {} of the push conversions and {} of the unsubscribes \
                     ({} against {} opens per unsubscribe).\n",
                    policy.name,
                    f.name,
                    pct(a.pushes, b.pushes),
                    pct(a.opens, b.opens),
                    pct(a.push_conversions, b.push_conversions),
                    pct(a.unsubscribes, b.unsubscribes),
                    fmt_ratio(policy.opens_per_unsubscribe),
                    fmt_ratio(f.opens_per_unsubscribe),
                ));
            }
        }
        s
    }

    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let local = |t: DateTime<Utc>| -> String {
            self.timezone.parse::<Tz>().map_or_else(|_| t.to_rfc3339(), |tz| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string())
        };
        s.push_str("# Push policy simulation\n\n");
        s.push_str(
            "> **This is a simulation.** The users, their behaviour and the items pushed are real (the Taobao\n\
             > sample replayed in time order; items chosen by kairos's own scoring), but **how users respond to a\n\
             > push is a model** with made-up parameters (`config/simulate.toml`), not measured behaviour. The\n\
             > figures compare policies *under that model*; they are not a forecast of real opens or unsubscribes.\n\n",
        );
        s.push_str(&format!(
            "Generated by `{}` in {:.0} s on this machine. {} users, {} events; pushes from {} to {} ({:.0} days, \
             after {:.0} day(s) of history warm-up and {:.0} day(s) of push warm-up, in which every arm pushes \
             uncounted and the learned arm gathers its training feedback), time zone {}; seed {}, {} replications \
             of the random draws (± is the 95 % interval over replications).\n\n",
            self.command,
            self.runtime.as_secs_f64(),
            self.users,
            self.events,
            local(self.measured_from),
            local(self.measured_to),
            self.days(),
            self.params.replay.warmup_days,
            self.params.replay.push_warmup_days,
            self.timezone,
            self.seed,
            self.replications,
        ));
        s.push_str(&format!("## Results per 1,000 users over the {:.0} measured days\n\n", self.days()));
        s.push_str(&self.table());
        s.push_str(
            "\nConversions = the organic purchases of the log in the measured period (the same in every arm, since the\n\
             replayed behaviour does not change) + purchases the model attributes to an opened push; the holdout's\n\
             column is the organic baseline, so each arm's lift is its push-attributed conversions. The model\n\
             counts every push conversion as incremental, which makes it an upper bound on the lift.\n\n",
        );
        s.push_str("| policy | open rate | users reached | pushed item touched within the window | its category touched | mean hour match |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|\n");
        for a in self.arms.iter().filter(|a| a.per_1000.pushes > 0.0) {
            s.push_str(&format!(
                "| {} | {:.1} % | {:.0} % | {:.1} % | {:.1} % | {:.2} |\n",
                a.name,
                100.0 * a.open_rate,
                100.0 * a.users_reached_share,
                100.0 * a.item_relevant_share,
                100.0 * a.category_relevant_share,
                a.mean_hour_match
            ));
        }
        if let Some(f) = &self.adaptive_frequency {
            s.push_str(&format!(
                "\nThe adaptive arm's target frequency (first replication, {} users outside the holdout), pushes per day: \
                 at the start mean {:.2} (quartiles {:.2} / {:.2} / {:.2}); at the end mean {:.2} (quartiles {:.2} / {:.2} / {:.2}), \
                 {:.0} % of users at `f_min` = {} and {:.0} % at `f_max` = {}.\n",
                f.users,
                f.initial_mean,
                f.initial_quartiles[0],
                f.initial_quartiles[1],
                f.initial_quartiles[2],
                f.final_mean,
                f.final_quartiles[0],
                f.final_quartiles[1],
                f.final_quartiles[2],
                100.0 * f.final_at_min,
                self.frequency.f_min,
                100.0 * f.final_at_max,
                self.frequency.f_max,
            ));
        }
        for (arm, decisions) in [("adaptive", &self.adaptive_decisions), ("learned", &self.learned_decisions)] {
            if !decisions.is_empty() {
                let parts: Vec<String> = decisions.iter().map(|(k, n)| format!("{k} {n}")).collect();
                s.push_str(&format!("\nThe {arm} arm's decisions (first replication), by outcome: {}.\n", parts.join(", ")));
            }
        }
        if let Some(note) = &self.learned_model {
            s.push_str(&format!("The learned arm's push-response model (first replication, last retrain): {note}.\n"));
        }

        s.push_str(&self.reading());
        s.push_str("\n## What drives the result\n\n");
        s.push_str(
            "The arms push the same kind of items (kairos's top-ranked item for the user at the send time, no item\n\
             twice within the repush window), so what differs is **how many pushes, to whom, and at what hour**.\n\
             Under the model every ignored push has a cost: it raises the\n\
             unsubscribe hazard (`unsubscribe.per_ignored`), each recent push lowers the next one's open\n\
             probability (`open.recent_push`), and the base open probability (`open.bias`) decides how many pushes are\n\
             ignored at all. The send-hour effect (`open.hour_match`) is where the adaptive policy's timing can win.\n\
             Relevance (`open.relevance`) rewards every arm, though not equally: the items come from the same ranking,\n\
             but an item pushed while the user is active is more often touched in the next 24 hours, and the more\n\
             pushes an arm sends, the further down the ranking the repush window pushes it.\n\n",
        );
        let drivers = self.drivers();
        if !drivers.is_empty() {
            s.push_str(
                "Measured: each variant below changes one parameter and reruns every pushing arm with the same random\n\
                 draws as the base row of the table further down. Ranked by how much the change moves the adaptive\n\
                 arm's opens per unsubscribe relative to the best fixed arm's (with 2–5 replications, moves of a few\n\
                 per cent are within the noise):\n\n",
            );
            for (label, moved, wins) in &drivers {
                s.push_str(&format!(
                    "- `{label}`: moves the ratio by a factor {:.2}; the adaptive arm then has {} opens per unsubscribe than the best fixed arm\n",
                    moved.exp(),
                    if *wins { "more" } else { "fewer" }
                ));
            }
            s.push_str(&format!(
                "\nSensitivity runs ({} replication(s) each, the same draws as the base row; opens / unsubscribes per \
                 1,000 users → opens per unsubscribe):\n\n",
                self.params.replay.sensitivity_replications
            ));
            let names: Vec<&str> = self.sensitivity.first().map(|v| v.arms.iter().map(|a| a.0.as_str()).collect()).unwrap_or_default();
            s.push_str("| parameter | value (base) |");
            for n in &names {
                s.push_str(&format!(" {n} |"));
            }
            s.push_str("\n|---|---|");
            s.push_str(&"---|".repeat(names.len()));
            s.push('\n');
            s.push_str("| (base) | |");
            for (_, o, u, r) in &self.sensitivity_base {
                s.push_str(&format!(" {o:.0} / {u:.1} → {} |", fmt_ratio(*r)));
            }
            s.push('\n');
            for v in &self.sensitivity {
                s.push_str(&format!("| `model.{}` | {} ({}) |", v.key, v.value, v.base_value));
                for (_, o, u, r) in &v.arms {
                    s.push_str(&format!(" {o:.0} / {u:.1} → {} |", fmt_ratio(*r)));
                }
                s.push('\n');
            }
        }

        s.push_str("\n## The response model\n\n");
        let m = &self.params.model;
        s.push_str(&format!(
            "For a push sent at time `t` to user `u`:\n\n\
             - **relevance** `r` = {item} if `u` touches the pushed item (any behaviour) in `(t, t + {w} h]` of their real\n\
               history, {cat} if they touch another item of its category, else 0;\n\
             - **hour match** `m` = the user's share of activity in the local send hour (their real history over the\n\
               window, hour of day, smoothed ¼·½·¼ over neighbouring hours, plus {prior} events spread like the\n\
               population), divided by the share of their most active hour (1 at their peak hour);\n\
             - `n` = pushes `u` received in the {rw} h before; `k` = pushes `u` ignored in the last {iw} days, this one included;\n\
             - **P(open)** = σ({ob} + {or}·r + {oh}·m − {on}·n); an open comes after an exponential delay (mean {od} min);\n\
             - **P(convert | open)** = σ({cb} + {cr}·r), after a further delay (mean {cd} min);\n\
             - **P(unsubscribe | ignored)** = σ({ub} + {uk}·k), reported {ud} min after the push;\n\
             - no dismissals or clicks are modelled; the user's real behaviour (the log) does not change with pushes.\n\n\
             For the adaptive arm every open, conversion and unsubscribe goes back into the policy through\n\
             `PushState::apply_feedback` at the time it happens (as the gateway's `POST /v1/feedback` does, with no\n\
             interest level), and unanswered pushes are counted by `PushState::sweep_ignored` at the next decision.\n",
            item = m.relevance.item,
            w = m.relevance.window_hours,
            cat = m.relevance.category,
            prior = m.hour_match.prior_events,
            rw = m.open.recent_window_hours,
            iw = m.unsubscribe.ignored_window_days,
            ob = m.open.bias,
            or = m.open.relevance,
            oh = m.open.hour_match,
            on = m.open.recent_push,
            od = m.open.delay_minutes,
            cb = m.convert.bias,
            cr = m.convert.relevance,
            cd = m.convert.delay_minutes,
            ub = m.unsubscribe.bias,
            uk = m.unsubscribe.per_ignored,
            ud = m.unsubscribe.delay_minutes,
        ));
        s.push_str("\n## The arms\n\n");
        s.push_str(&format!(
            "- **adaptive**: kairos's own push policy (`PushState::decide` etc., `[tuning.frequency]` of the service's\n\
             config, below). Every user gives consent in time zone {tz} at the start of the measured period, which makes them due\n\
             at once (as `PUT /v1/users` does); the state starts from the user's interest level at that moment; later\n\
             decisions run at the time the policy asked to be called back, as the scheduler does. Items: kairos's\n\
             `profile` + `scoring::rank` (top 1, recently pushed items excluded) with a catalogue and statistics fed with\n\
             the past of the log only. The service's own holdout ({h:.0} % of users, by hash) stays in force.\n",
            tz = self.timezone,
            h = 100.0 * self.frequency.holdout_share
        ));
        for f in &self.params.fixed {
            let hours: Vec<String> = f.hours.iter().map(|h| format!("{h:02}:00")).collect();
            let days = if f.every_days == 1 { "every day".to_string() } else { format!("every {} days", f.every_days) };
            s.push_str(&format!(
                "- **{}**: every subscribed user gets kairos's top-ranked item at {} local time {}, whatever its\n  \
                 score (no item twice within {} days); pushes stop at an unsubscribe.\n",
                f.name,
                hours.join(", "),
                days,
                self.frequency.repush_window_days
            ));
        }
        s.push_str("- **holdout**: no pushes; its conversions are the organic purchases.\n");
        s.push_str(&format!(
            "\nRandom draws: one `SmallRng` per (seed, replication, user), the same for every arm (common random\n\
             numbers). {} rankings were asked for, {} of them answered from the memo (the same user at the same instant\n\
             with the same excluded items, shared between arms and variants).\n",
            self.rankings, self.rankings_memoised
        ));

        s.push_str("\n## Parameters\n\nSimulation (`config/simulate.toml`, with the seed in force):\n\n```toml\n");
        s.push_str(&toml::to_string(&self.params).unwrap_or_default());
        s.push_str("```\n\nThe adaptive policy (`[tuning.frequency]` of the service's configuration, defaults included):\n\n```toml\n");
        s.push_str(&toml::to_string(&self.frequency).unwrap_or_default());
        s.push_str("```\n");
        s.push_str(
            "\n## Limitations\n\n\
             - The response model is invented; only its shape (what rises and falls with what) is argued for. Read the\n\
               sensitivity table before the headline.\n\
             - 814 users from one ID block of one marketplace over 9 days; the behaviour log does not react to pushes.\n\
             - Relevance looks at the user's real next 24 hours, so a push of an item the user was about to revisit\n\
               counts as relevant (and its conversion as incremental) although it changed nothing.\n\
             - Everyone is assumed to consent, to live in one time zone and to have no quiet hours.\n",
        );
        s
    }
}
