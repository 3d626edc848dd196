//! Reading postgres rows into the store's types.

use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::domain::{Device, Event, EventContext, EventProps, Item, QuietHours, User};
use crate::store::{Push, PushStateRow, PushStatus, StoreResult, parse_tz, split_category};

pub(super) const EVENT_COLUMNS: &str = "seq, event_id, user_id, item_id, kind, ts, device, platform, country, region, timezone, network, session_id, price, quantity, query";

pub(super) fn event_from_row(row: &PgRow) -> StoreResult<Event> {
    let device: Option<String> = row.try_get("device")?;
    Ok(Event {
        event_id: row.try_get("event_id")?,
        user_id: row.try_get("user_id")?,
        item_id: row.try_get("item_id")?,
        kind: row.try_get("kind")?,
        ts: row.try_get("ts")?,
        context: EventContext {
            device: device.as_deref().and_then(Device::parse),
            platform: row.try_get("platform")?,
            country: row.try_get("country")?,
            region: row.try_get("region")?,
            timezone: row.try_get("timezone")?,
            network: row.try_get("network")?,
            session_id: row.try_get("session_id")?,
        },
        props: EventProps { price: row.try_get("price")?, quantity: row.try_get("quantity")?, query: row.try_get("query")? },
    })
}

pub(super) fn item_from_row(row: &PgRow) -> StoreResult<Item> {
    let category: String = row.try_get("category")?;
    Ok(Item {
        item_id: row.try_get("item_id")?,
        category: split_category(&category),
        brand: row.try_get("brand")?,
        price: row.try_get("price")?,
        tags: row.try_get("tags")?,
        available: row.try_get("available")?,
        title: row.try_get("title")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn user_from_row(row: &PgRow) -> StoreResult<User> {
    let tz: String = row.try_get("timezone")?;
    let qs: Option<i16> = row.try_get("quiet_start")?;
    let qe: Option<i16> = row.try_get("quiet_end")?;
    Ok(User {
        user_id: row.try_get("user_id")?,
        timezone: parse_tz(&tz)?,
        push_consent: row.try_get("push_consent")?,
        quiet_hours: qs.zip(qe).map(|(s, e)| QuietHours { start: s as u8, end: e as u8 }),
        locale: row.try_get("locale")?,
        updated_at: row.try_get("updated_at")?,
        unsubscribed_at: row.try_get("unsubscribed_at")?,
        resubscribed_at: row.try_get("resubscribed_at")?,
    })
}

pub(super) fn push_from_row(row: &PgRow) -> StoreResult<Push> {
    let status: String = row.try_get("status")?;
    Ok(Push {
        push_id: row.try_get("push_id")?,
        user_id: row.try_get("user_id")?,
        item_id: row.try_get("item_id")?,
        send_at: row.try_get("send_at")?,
        expires_at: row.try_get("expires_at")?,
        score: row.try_get("score")?,
        reasons: row.try_get("reasons")?,
        status: PushStatus::parse(&status)?,
        leased_until: row.try_get("leased_until")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn push_state_from_row(row: &PgRow) -> StoreResult<PushStateRow> {
    Ok(PushStateRow {
        user_id: row.try_get("user_id")?,
        version: row.try_get("version")?,
        next_due_at: row.try_get("next_due_at")?,
        state: row.try_get("state")?,
    })
}
