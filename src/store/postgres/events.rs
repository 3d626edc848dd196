//! Writing the behaviour log: a batch as one UNNEST statement into the day-partitioned
//! `events` and the idempotency keys of `event_ids` (migration 0008).

use sqlx::Row;
use uuid::Uuid;

use super::{PgStore, partitions};
use crate::domain::{Device, Event};
use crate::store::{StoreError, StoreResult};

impl PgStore {
    /// The batch in one statement (its implicit transaction makes it atomic); returns the ids
    /// of the events stored, those not stored before.
    pub(super) async fn write_events(&self, events: &[Event]) -> StoreResult<Vec<Uuid>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let n = events.len();
        let mut ids = Vec::with_capacity(n);
        let mut users = Vec::with_capacity(n);
        let mut items = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut ts = Vec::with_capacity(n);
        let mut device = Vec::with_capacity(n);
        let mut platform = Vec::with_capacity(n);
        let mut country = Vec::with_capacity(n);
        let mut region = Vec::with_capacity(n);
        let mut timezone = Vec::with_capacity(n);
        let mut network = Vec::with_capacity(n);
        let mut session = Vec::with_capacity(n);
        let mut price = Vec::with_capacity(n);
        let mut quantity = Vec::with_capacity(n);
        let mut query = Vec::with_capacity(n);
        for e in events {
            ids.push(e.event_id);
            users.push(e.user_id.as_str());
            items.push(e.item_id.as_deref());
            kinds.push(e.kind.as_str());
            ts.push(e.ts);
            device.push(e.context.device.map(Device::as_str));
            platform.push(e.context.platform.as_deref());
            country.push(e.context.country.as_deref());
            region.push(e.context.region.as_deref());
            timezone.push(e.context.timezone.as_deref());
            network.push(e.context.network.as_deref());
            session.push(e.context.session_id.as_deref());
            price.push(e.props.price);
            quantity.push(e.props.quantity);
            query.push(e.props.query.as_deref());
        }
        self.partitions.ensure(&self.pool, &ts, false).await?;
        // One statement for the whole batch; the implicit transaction makes it atomic. The ids
        // new to `event_ids` (the first of each within the batch) are the events stored, in
        // the batch's order.
        let insert = || {
            sqlx::query(
                "with batch as (select distinct on (event_id) * from unnest($1::uuid[], $2::text[], $3::text[], \
                 $4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
                 $11::text[], $12::text[], $13::float8[], $14::int4[], $15::text[]) with ordinality \
                 as b(event_id, user_id, item_id, kind, ts, device, platform, country, region, timezone, network, \
                 session_id, price, quantity, query, ord) order by event_id, ord), \
                 new as (insert into event_ids (event_id, ts) select event_id, ts from batch \
                 on conflict (event_id) do nothing returning event_id) \
                 insert into events (event_id, user_id, item_id, kind, ts, device, platform, country, region, \
                 timezone, network, session_id, price, quantity, query) \
                 select b.event_id, b.user_id, b.item_id, b.kind, b.ts, b.device, b.platform, b.country, b.region, \
                 b.timezone, b.network, b.session_id, b.price, b.quantity, b.query \
                 from batch b join new using (event_id) order by b.ord returning event_id",
            )
            .bind(&ids)
            .bind(&users)
            .bind(&items)
            .bind(&kinds)
            .bind(&ts)
            .bind(&device)
            .bind(&platform)
            .bind(&country)
            .bind(&region)
            .bind(&timezone)
            .bind(&network)
            .bind(&session)
            .bind(&price)
            .bind(&quantity)
            .bind(&query)
        };
        let rows = match insert().fetch_all(&self.pool).await {
            // A day another replica's retention dropped meanwhile: make sure of it, once more.
            Err(e) if partitions::is_missing_partition(&e) => {
                self.partitions.ensure(&self.pool, &ts, true).await?;
                insert().fetch_all(&self.pool).await?
            }
            other => other?,
        };
        rows.iter().map(|r| r.try_get::<Uuid, _>(0).map_err(StoreError::from)).collect()
    }
}
