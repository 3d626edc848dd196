//! Keeping one replica's caches current: the catalog and statistics refreshed from the
//! store's log, this replica's commits appended to its cached histories.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeDelta, Utc};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

use super::{CATALOG_OVERLAP, CATALOG_PAGE, Engine, REFRESH_EVERY, REFRESH_PAGE, SETTLE};
use crate::rank::catalog::{Catalog, ItemIdx};
use crate::store::{ChangeCursor, ChangeKind};

/// Changes read per query of the user change log.
const CHANGE_PAGE: i64 = 5_000;
/// The change log is read again this far back at every refresh (a change stamped at `t` may
/// commit a little later).
pub const CHANGE_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
use crate::domain::Event;
use crate::ingest::CommitSink;
use crate::rank::context::event_keys;
use crate::rank::history::Packed;
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
            let mut packed = Vec::with_capacity(n);
            {
                let mut catalog = self.catalog.write().expect("catalog lock");
                let mut stats = self.stats.write().expect("stats lock");
                let mut population = self.population.write().expect("population lock");
                for logged in &page {
                    let e = &logged.event;
                    let weight = tuning.kinds.get(&e.kind).map_or(0.0, |k| k.weight);
                    let zone: Option<Tz> = e.context.timezone.as_deref().and_then(|z| z.parse().ok());
                    let tz = zone.unwrap_or(chrono_tz::UTC);
                    population.observe(e.ts, tz, 1.0, &tuning.frequency);
                    let item = e.item_id.as_deref().and_then(|id| self.item_index(&mut catalog, id));
                    let kind = catalog.intern_kind(&e.kind);
                    packed.push((e.user_id.as_str(), Packed::new(e, item, kind), zone));
                    let Some(item) = item else { continue };
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
            self.users.append(packed);
            if let Some(last) = page.last() {
                self.stats_seq.store(last.seq, Ordering::Release);
            }
            folded += n;
            if (n as i64) < REFRESH_PAGE {
                break;
            }
        }
        self.apply_user_changes().await?;
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
        let n = self.users.len();
        metrics::gauge!("kairos_history_cache_users").set(n as f64);
        metrics::gauge!("kairos_catalog_items").set(self.catalog.read().expect("catalog lock").len() as f64);
        let age = self.refreshed.lock().expect("refresh time lock").map_or(f64::INFINITY, |t| t.elapsed().as_secs_f64());
        metrics::gauge!("kairos_stats_age_seconds").set(age);
        let (observed, sizes) = {
            let stats = self.stats.read().expect("stats lock");
            (stats.observed(), stats.sizes())
        };
        metrics::gauge!("kairos_stats_observed_events").set(observed as f64);
        for (kind, n) in [
            ("segment_items", sizes.segment_items),
            ("neighbour_pairs", sizes.neighbour_pairs),
            ("knn_pairs", sizes.knn_pairs),
            ("users", sizes.users),
            ("buckets", sizes.buckets),
        ] {
            metrics::gauge!("kairos_stats_entries", "kind" => kind).set(n as f64);
        }
    }

    /// The index of `item_id` for the statistics: interned as a placeholder when the
    /// catalogue has not sent it yet, unless `engine.max_unknown_items` placeholders exist.
    pub(super) fn item_index(&self, catalog: &mut Catalog, item_id: &str) -> Option<ItemIdx> {
        if let Some(idx) = catalog.idx(item_id) {
            return Some(idx);
        }
        if catalog.len() - catalog.known_items() >= self.max_unknown_items {
            metrics::counter!("kairos_unknown_items_dropped_total").increment(1);
            return None;
        }
        Some(catalog.intern(item_id))
    }

    /// Applies the user change log since the last read: every user another replica (or this
    /// one) changed is dropped from the cache, and an erased user's per-user state is removed
    /// from the statistics too. Changes are read again over [`CHANGE_OVERLAP`], so one
    /// committed late is not missed; each change is applied once (see below).
    async fn apply_user_changes(&self) -> StoreResult<usize> {
        self.apply_user_changes_in_pages(CHANGE_PAGE).await
    }

    /// [`Engine::apply_user_changes`] reading `page` changes per query (tests use small pages).
    /// Pages follow the log's (time, sequence) order, so a page of changes that share one
    /// time (one transaction's) is followed by the rest, and a page full of changes inside
    /// the overlap does not start the loop again.
    #[doc(hidden)]
    pub async fn apply_user_changes_in_pages(&self, page: i64) -> StoreResult<usize> {
        let read_to = *self.changes_read.lock().expect("change cursor lock");
        let mut cursor = read_to.map(|t| ChangeCursor::after(t - CHANGE_OVERLAP));
        let mut applied = 0;
        loop {
            let (changes, now) = self.store.user_changes_since(cursor, page).await?;
            let mut seen = self.changes_applied.lock().expect("applied changes lock");
            for c in &changes {
                if seen.insert(c.seq, c.changed_at).is_some() {
                    continue;
                }
                self.users.remove(&c.user_id);
                if c.kind == ChangeKind::Erased {
                    self.stats.write().expect("stats lock").forget_user(&c.user_id);
                }
                applied += 1;
            }
            match changes.last() {
                Some(last) if changes.len() as i64 == page => cursor = Some(ChangeCursor::at(last)),
                _ => {
                    // The next refresh reads from `now − overlap`: what is older is not read again.
                    seen.retain(|_, t| *t >= now - CHANGE_OVERLAP);
                    *self.changes_read.lock().expect("change cursor lock") = Some(now);
                    return Ok(applied);
                }
            }
        }
    }
}

impl CommitSink for Engine {
    fn committed(&self, events: &[Event]) {
        // An item the catalogue has not sent yet still counts for the user's next answer
        // (`pack` interns it).
        let packed = self.pack(events);
        let zone = |e: &Event| e.context.timezone.as_deref().and_then(|z| z.parse().ok());
        self.users.append(events.iter().zip(packed).map(|(e, p)| (e.user_id.as_str(), p, zone(e))));
    }
}
