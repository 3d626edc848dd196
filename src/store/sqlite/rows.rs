//! Reading sqlite rows into the store's types.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::from_micros;
use crate::domain::{Device, Event, EventContext, EventProps, Item, QuietHours, User};
use crate::store::{Push, PushStateRow, PushStatus, StoreError, StoreResult, parse_tz, split_category};

pub(super) fn event_from_row(row: &SqliteRow) -> StoreResult<Event> {
    let id: String = row.try_get("event_id")?;
    let device: Option<String> = row.try_get("device")?;
    Ok(Event {
        event_id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(format!("event_id {id:?}: {e}")))?,
        user_id: row.try_get("user_id")?,
        item_id: row.try_get("item_id")?,
        kind: row.try_get("kind")?,
        ts: from_micros(row.try_get("ts")?)?,
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

pub(super) fn item_from_row(row: &SqliteRow) -> StoreResult<Item> {
    let category: String = row.try_get("category")?;
    let tags: String = row.try_get("tags")?;
    let created: Option<i64> = row.try_get("created_at")?;
    Ok(Item {
        item_id: row.try_get("item_id")?,
        category: split_category(&category),
        brand: row.try_get("brand")?,
        price: row.try_get("price")?,
        tags: serde_json::from_str(&tags).map_err(|e| StoreError::Corrupt(format!("tags: {e}")))?,
        available: row.try_get("available")?,
        title: row.try_get("title")?,
        created_at: created.map(from_micros).transpose()?,
    })
}

pub(super) fn user_from_row(row: &SqliteRow) -> StoreResult<User> {
    let tz: String = row.try_get("timezone")?;
    let qs: Option<i64> = row.try_get("quiet_start")?;
    let qe: Option<i64> = row.try_get("quiet_end")?;
    Ok(User {
        user_id: row.try_get("user_id")?,
        timezone: parse_tz(&tz)?,
        push_consent: row.try_get("push_consent")?,
        quiet_hours: qs.zip(qe).map(|(s, e)| QuietHours { start: s as u8, end: e as u8 }),
        locale: row.try_get("locale")?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
        unsubscribed_at: row.try_get::<Option<i64>, _>("unsubscribed_at")?.map(from_micros).transpose()?,
        resubscribed_at: row.try_get::<Option<i64>, _>("resubscribed_at")?.map(from_micros).transpose()?,
    })
}

pub(super) fn parse_uuid(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("uuid {s:?}: {e}")))
}

pub(super) fn parse_json(s: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("json: {e}")))
}

pub(super) fn push_from_row(row: &SqliteRow) -> StoreResult<Push> {
    let status: String = row.try_get("status")?;
    let id: String = row.try_get("push_id")?;
    let reasons: String = row.try_get("reasons")?;
    let leased: Option<i64> = row.try_get("leased_until")?;
    Ok(Push {
        push_id: parse_uuid(&id)?,
        user_id: row.try_get("user_id")?,
        item_id: row.try_get("item_id")?,
        send_at: from_micros(row.try_get("send_at")?)?,
        expires_at: from_micros(row.try_get("expires_at")?)?,
        score: row.try_get("score")?,
        reasons: parse_json(&reasons)?,
        status: PushStatus::parse(&status)?,
        leased_until: leased.map(from_micros).transpose()?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

pub(super) fn push_state_from_row(row: &SqliteRow) -> StoreResult<PushStateRow> {
    let state: Option<String> = row.try_get("state")?;
    Ok(PushStateRow {
        user_id: row.try_get("user_id")?,
        version: row.try_get("version")?,
        next_due_at: from_micros(row.try_get("next_due_at")?)?,
        state: state.as_deref().map(parse_json).transpose()?,
    })
}
