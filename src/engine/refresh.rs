//! Keeping one replica's caches current: the catalog and statistics refreshed from the
//! store's log, this replica's commits appended to its cached histories.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeDelta, Utc};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

use super::{CATALOG_OVERLAP, CATALOG_PAGE, Engine, REFRESH_EVERY, REFRESH_PAGE, SETTLE};
use crate::domain::Event;
use crate::ingest::CommitSink;
use crate::rank::context::event_keys;
use crate::rank::stats::Observation;
use crate::store::StoreResult;

impl Engine {
    /// Brings the catalog and the statistics up to date with the store. Returns how many
    /// events were folded in.
    pub async fn refresh(&self, settle: TimeDelta) -> StoreResult<usize> {
        // Catalog: items changed after the last one seen, paged by (change time, id). The
        // last few seconds are read again at the next refresh, for changes that commit
        // late; older ones are not (a bulk import is read once, not every second).
        let mut cursor = self.catalog_cursor.lock().expect("catalog cursor lock").clone();
        loop {
            let page = self.store.items_changed_after((cursor.0, &cursor.1), CATALOG_PAGE).await?;
            let n = page.len();
            if let Some((item, t)) = page.last() {
                cursor = (*t, item.item_id.clone());
            }
            {
                let mut catalog = self.catalog.write().expect("catalog lock");
                for (item, _) in page {
                    catalog.upsert(item);
                }
            }
            if (n as i64) < CATALOG_PAGE {
                break;
            }
        }
        let overlap = Utc::now() - CATALOG_OVERLAP;
        if cursor.0 > overlap {
            cursor = (overlap, String::new());
        }
        *self.catalog_cursor.lock().expect("catalog cursor lock") = cursor;

        // Statistics: events after the last seq, in log order.
        let tuning = self.tuning.get();
        let mut folded = 0;
        loop {
            let after = self.stats_seq.load(Ordering::Acquire);
            let page = self.store.events_after(after, REFRESH_PAGE, settle).await?;
            if page.is_empty() {
                break;
            }
            let n = page.len();
            {
                let mut catalog = self.catalog.write().expect("catalog lock");
                let mut stats = self.stats.write().expect("stats lock");
                let mut population = self.population.write().expect("population lock");
                for logged in &page {
                    let e = &logged.event;
                    let weight = tuning.kinds.get(&e.kind).map_or(0.0, |k| k.weight);
                    let tz: Tz = e.context.timezone.as_deref().and_then(|z| z.parse().ok()).unwrap_or(chrono_tz::UTC);
                    population.observe(e.ts, tz, 1.0, &tuning.frequency);
                    let Some(item_id) = &e.item_id else { continue };
                    let item = catalog.intern(item_id);
                    let keys = event_keys(e.ts, &tz, &e.context);
                    stats.observe(&Observation {
                        user: &e.user_id,
                        item,
                        categories: catalog.categories(item),
                        brand: catalog.brand(item),
                        weight,
                        ts: e.ts,
                        context: &keys,
                    });
                }
            }
            self.append_to_cached(page.iter().map(|logged| &logged.event));
            if let Some(last) = page.last() {
                self.stats_seq.store(last.seq, Ordering::Release);
            }
            folded += n;
            if (n as i64) < REFRESH_PAGE {
                break;
            }
        }
        self.load_model().await?;
        *self.refreshed.lock().expect("refresh time lock") = Some(Instant::now());
        Ok(folded)
    }

    /// Whether a refresh has completed: the catalogue and statistics were loaded from the
    /// store and the learned model in force was checked, so this replica ranks as its
    /// peers do (readiness).
    pub fn has_loaded(&self) -> bool {
        self.refreshed.lock().expect("refresh time lock").is_some()
    }

    /// Refreshes every `REFRESH_EVERY` until `stop`.
    pub async fn run_refresher(self: Arc<Self>, stop: CancellationToken) {
        loop {
            match self.refresh(SETTLE).await {
                Ok(n) if n > 0 => tracing::debug!(events = n, "statistics refreshed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = ?e, "statistics refresh failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(REFRESH_EVERY) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Refreshes gauges that are computed rather than counted (cache sizes, stats age).
    pub fn export_gauges(&self) {
        let n = self.users.lock().expect("user cache lock").len();
        metrics::gauge!("kairos_history_cache_users").set(n as f64);
        metrics::gauge!("kairos_catalog_items").set(self.catalog.read().expect("catalog lock").len() as f64);
        let age = self.refreshed.lock().expect("refresh time lock").map_or(f64::INFINITY, |t| t.elapsed().as_secs_f64());
        metrics::gauge!("kairos_stats_age_seconds").set(age);
        metrics::gauge!("kairos_stats_observed_events").set(self.stats.read().expect("stats lock").observed() as f64);
    }

    /// Adds `events` to the cached histories of their users (those cached), in time order,
    /// skipping any already there: this replica's commits arrive here twice, at commit time
    /// and again from the log.
    fn append_to_cached<'e>(&self, events: impl IntoIterator<Item = &'e Event>) {
        let mut cache = self.users.lock().expect("user cache lock");
        for e in events {
            let Some(c) = cache.get_mut(&e.user_id) else { continue };
            let v = &c.view.events;
            let from = v.partition_point(|x| x.ts < e.ts);
            let to = v.partition_point(|x| x.ts <= e.ts);
            if v[from..to].iter().any(|x| x.event_id == e.event_id) {
                continue;
            }
            // The touches were made of the events before this one.
            c.touches = None;
            Arc::make_mut(&mut c.view.events).insert(to, e.clone());
        }
    }
}

impl CommitSink for Engine {
    fn committed(&self, events: &[Event]) {
        self.append_to_cached(events);
    }
}
