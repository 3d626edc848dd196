//! The soak's report: what was answered, what the store holds, what the memory did, and
//! each check with its verdict.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Audit, ERASE_VISIBLE_WITHIN, Log, RSS_GROWTH_SHARE, RSS_GROWTH_SLACK, Sample, SoakOptions};

fn mib(bytes: f64) -> String {
    format!("{:.0} MiB", bytes / (1024.0 * 1024.0))
}

pub(super) fn report(opts: &SoakOptions, log: &Log, samples: &[Sample], audit: &Audit, elapsed: Duration) -> (String, bool) {
    use std::fmt::Write;
    let mut checks: Vec<(bool, String)> = Vec::new();
    let mut out = String::new();
    let _ = writeln!(out, "### Soak: {} replicas on one PostgreSQL, {:.0} s\n", opts.urls.len(), elapsed.as_secs_f64());
    let _ = writeln!(
        out,
        "{}, on {}. `kairos soak --duration {} --rate {} --connections {} --users {} --items {} --erase-every {}` \
         (paced mixed load; memory compared from the end of a {} s warm-up).\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        crate::tools::machine(),
        opts.duration,
        opts.rate,
        opts.connections,
        opts.users,
        opts.items,
        opts.erase_every,
        opts.warmup
    );
    let _ = writeln!(out, "| action | requests | answers | p50 ms | p99 ms | max ms |\n|---|---:|---|---:|---:|---:|");
    let mut by_action: BTreeMap<&str, Vec<(u16, u64)>> = BTreeMap::new();
    for (&(action, status), &n) in &log.statuses {
        by_action.entry(action).or_default().push((status, n));
    }
    let (mut fivexx, mut deliberate_503, mut unexpected_4xx) = (0u64, 0u64, 0u64);
    for (action, statuses) in &by_action {
        let total: u64 = statuses.iter().map(|s| s.1).sum();
        let answers: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        let h = &log.latency[action];
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let _ = writeln!(out, "| {action} | {total} | {} | {:.1} | {:.1} | {:.1} |", answers.join(", "), ms(0.5), ms(0.99), h.max() as f64 / 1000.0);
        for &(s, n) in statuses {
            match s {
                503 => deliberate_503 += n,
                500..=599 => fivexx += n,
                // A push withdrawn by an unsubscribe between its lease and its feedback.
                409 if *action == "feedback" => {}
                // Over the per-user ingest limit: refused with Retry-After by design.
                429 if *action == "events" => {}
                400..=499 => unexpected_4xx += n,
                _ => {}
            }
        }
    }
    let transport: u64 = log.transport_errors.values().sum();
    let requests: u64 = log.statuses.values().sum();
    let _ = writeln!(out, "\n{requests} answers in all ({:.0}/s); {transport} requests got no answer (connection error).", requests as f64 / elapsed.as_secs_f64());
    checks.push((fivexx == 0, format!("no 5xx except deliberate 503s: {fivexx} other 5xx, {deliberate_503} answers 503 (Retry-After)")));
    checks.push((transport == 0, format!("every request answered: {transport} connection errors")));
    checks.push((unexpected_4xx == 0, format!("no refusal of a valid request: {unexpected_4xx} unexpected 4xx")));
    checks.push((
        audit.acked_stored == log.acked.len() as i64 && log.ack_mismatches == 0,
        format!(
            "every acknowledged event stored once: {} of {} acknowledged events in the store; {} re-sent acknowledged events, {} answers that miscounted",
            audit.acked_stored,
            log.acked.len(),
            log.duplicates_sent,
            log.ack_mismatches
        ),
    ));
    let rows: i64 = audit.erased_rows.iter().map(|r| r.1).sum::<i64>() + audit.erased_stored;
    let visible: Vec<u64> = log.erase_visible_ms.iter().copied().filter(|&ms| ms != u64::MAX).collect();
    let late = log.erase_visible_ms.len() - visible.len();
    let (p50, max) = {
        let mut v = visible.clone();
        v.sort_unstable();
        (v.get(v.len() / 2).copied().unwrap_or(0), v.last().copied().unwrap_or(0))
    };
    checks.push((
        rows == 0 && !log.erased.is_empty(),
        format!(
            "every acknowledged erasure complete: {} users erased, rows left naming them {} ({}), {} of their {} acknowledged events left",
            log.erased.len(),
            rows,
            audit.erased_rows.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", "),
            audit.erased_stored,
            log.erased_events.len()
        ),
    ));
    checks.push((
        late == 0 && log.erase_not_visible == 0,
        format!(
            "each erasure reached the other replica within {} s: {} late, gone there after p50 {p50} ms, max {max} ms; \
             {} times the other replica did not serve the user's just-acknowledged events before the erase",
            ERASE_VISIBLE_WITHIN.as_secs(),
            late,
            log.erase_not_visible
        ),
    ));
    let _ = writeln!(
        out,
        "Gateway: {} pushes leased, {} feedback reports applied.\n",
        log.pushes_leased, log.feedback_applied
    );
    let _ = writeln!(out, "| replica | RSS after warm-up | RSS at the end | peak after warm-up | cached users at the end |\n|---|---:|---:|---:|---:|");
    for replica in 0..opts.urls.len() {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.replica == replica && s.at >= Duration::from_secs(opts.warmup)).collect();
        let (Some(first), Some(last)) = (mine.first(), mine.last()) else {
            checks.push((false, format!("replica {replica}: no memory sample after warm-up")));
            continue;
        };
        let peak = mine.iter().map(|s| s.rss_bytes).fold(0.0, f64::max);
        let _ = writeln!(out, "| {replica} ({}) | {} | {} | {} | {:.0} |", opts.urls[replica], mib(first.rss_bytes), mib(last.rss_bytes), mib(peak), last.cached_users);
        let allowed = first.rss_bytes * (1.0 + RSS_GROWTH_SHARE) + RSS_GROWTH_SLACK;
        checks.push((
            peak <= allowed,
            format!(
                "replica {replica} memory flat after warm-up: peak {} against {} at the end of warm-up (allowed {} = +{:.0} % + {})",
                mib(peak),
                mib(first.rss_bytes),
                mib(allowed),
                RSS_GROWTH_SHARE * 100.0,
                mib(RSS_GROWTH_SLACK)
            ),
        ));
    }
    for replica in 0..opts.urls.len() {
        // The last sample of each minute.
        let mut by_minute: BTreeMap<u64, f64> = BTreeMap::new();
        for s in samples.iter().filter(|s| s.replica == replica) {
            by_minute.insert(s.at.as_secs() / 60, s.rss_bytes);
        }
        let series: Vec<String> = by_minute.values().map(|b| format!("{:.0}", b / (1024.0 * 1024.0))).collect();
        let _ = writeln!(out, "\nReplica {replica} RSS at the end of each minute, MiB: {}.", series.join(", "));
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.replica == replica).collect();
        let warm = mine.iter().find(|s| s.at >= Duration::from_secs(opts.warmup));
        if let (Some(warm), Some(last)) = (warm, mine.last()) {
            let entries: Vec<String> = last.stats.iter().map(|(k, n)| format!("{k} {:.0} → {n:.0}", warm.stats.get(k).copied().unwrap_or(0.0))).collect();
            let _ = writeln!(out, "Its statistics' entries, end of warm-up → end: {}.", entries.join(", "));
        }
    }
    let passed = checks.iter().all(|c| c.0);
    let _ = writeln!(out);
    for (ok, what) in &checks {
        let _ = writeln!(out, "- {} {what}", if *ok { "PASS" } else { "FAIL" });
    }
    (out, passed)
}

