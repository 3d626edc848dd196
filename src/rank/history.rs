//! A user's history as the ranking reads it: [`HistoryEvent`], implemented by the full
//! [`Event`] (the offline tools and tests replay logs of them) and by [`Packed`], the 16-byte
//! form one replica caches for every shopper it serves.
//!
//! An `Event` carries its ids and context as strings (a few hundred bytes with its heap
//! parts); a million shoppers with twenty events each would hold gigabytes of them. A cached
//! event needs only what ranking, explanations and the push policy read: when, which item
//! (the catalogue's index, so also its id), which kind (the catalogue's kind index), the
//! device and the device's time zone. Everything that reads a history is generic over the
//! trait, so the service ranks straight from the packed form and the tools from their logs,
//! through the same code.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::domain::{Device, Event};
use crate::rank::catalog::{Catalog, ItemIdx, KindIdx};

/// One event of a user's history, as the ranking, its explanations and the push policy read it.
/// Names (item id, kind) are resolved through the catalogue the history was made with.
pub trait HistoryEvent {
    fn ts(&self) -> DateTime<Utc>;
    /// The event's item in `catalog` (`None`: no item, or one `catalog` does not know).
    fn item(&self, catalog: &Catalog) -> Option<ItemIdx>;
    /// The event's item id.
    fn item_id<'a>(&'a self, catalog: &'a Catalog) -> Option<&'a str>;
    /// The event's kind.
    fn kind<'a>(&'a self, catalog: &'a Catalog) -> &'a str;
    fn device(&self) -> Option<Device>;
    /// The time zone of the device that sent it, when it said.
    fn zone(&self) -> Option<Tz>;
}

impl HistoryEvent for Event {
    #[inline]
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }

    #[inline]
    fn item(&self, catalog: &Catalog) -> Option<ItemIdx> {
        self.item_id.as_deref().and_then(|id| catalog.idx(id))
    }

    #[inline]
    fn item_id<'a>(&'a self, _: &'a Catalog) -> Option<&'a str> {
        self.item_id.as_deref()
    }

    #[inline]
    fn kind<'a>(&'a self, _: &'a Catalog) -> &'a str {
        &self.kind
    }

    #[inline]
    fn device(&self) -> Option<Device> {
        self.context.device
    }

    fn zone(&self) -> Option<Tz> {
        self.context.timezone.as_deref().and_then(|z| z.parse().ok())
    }
}

/// An event in 16 bytes: its time in microseconds, its item's and kind's indices in the
/// catalogue that packed it, its device and its time zone. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packed {
    ts_micros: i64,
    /// [`ItemIdx`], or [`Packed::NO_ITEM`].
    item: u32,
    zone: Option<Tz>,
    kind: KindIdx,
    /// 0: none, then [`Device::ALL`]'s order plus one.
    device: u8,
}

impl Packed {
    const NO_ITEM: u32 = u32::MAX;

    /// `event` with its item at `item` (`None`: no item, or one that could not be interned)
    /// and its kind at `kind`, both in the catalogue that will read it.
    pub fn new(event: &Event, item: Option<ItemIdx>, kind: KindIdx) -> Packed {
        Packed {
            ts_micros: event.ts.timestamp_micros(),
            item: item.map_or(Self::NO_ITEM, |i| i.0),
            zone: event.zone(),
            kind,
            device: event.context.device.and_then(|d| Device::ALL.iter().position(|&x| x == d)).map_or(0, |n| n as u8 + 1),
        }
    }
}

impl HistoryEvent for Packed {
    #[inline]
    fn ts(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.ts_micros).unwrap_or_default()
    }

    #[inline]
    fn item(&self, _: &Catalog) -> Option<ItemIdx> {
        (self.item != Self::NO_ITEM).then_some(ItemIdx(self.item))
    }

    #[inline]
    fn item_id<'a>(&'a self, catalog: &'a Catalog) -> Option<&'a str> {
        self.item(catalog).map(|i| catalog.id(i))
    }

    #[inline]
    fn kind<'a>(&'a self, catalog: &'a Catalog) -> &'a str {
        catalog.kind_name(self.kind)
    }

    #[inline]
    fn device(&self) -> Option<Device> {
        self.device.checked_sub(1).and_then(|n| Device::ALL.get(usize::from(n)).copied())
    }

    #[inline]
    fn zone(&self) -> Option<Tz> {
        self.zone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventContext, EventProps, Item};
    use chrono::TimeZone;

    #[test]
    fn a_packed_event_takes_16_bytes_and_reads_as_the_event_it_packs() {
        assert_eq!(std::mem::size_of::<Packed>(), 16);
        let mut catalog = Catalog::from_items([Item::new("sku-1", vec!["a".into()])]);
        let ts = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + chrono::TimeDelta::microseconds(123_456);
        let event = |item: Option<&str>, device: Option<Device>, zone: Option<&str>| Event {
            event_id: uuid::Uuid::new_v4(),
            user_id: "u".into(),
            item_id: item.map(str::to_string),
            kind: "cart".into(),
            ts,
            context: EventContext { device, timezone: zone.map(str::to_string), ..EventContext::default() },
            props: EventProps::default(),
        };
        for (device, zone) in [(Some(Device::Tablet), Some("Asia/Shanghai")), (None, None), (Some(Device::Mobile), Some("not/a-zone"))] {
            let e = event(Some("sku-1"), device, zone);
            let kind = catalog.intern_kind(&e.kind);
            let p = Packed::new(&e, e.item(&catalog), kind);
            assert_eq!(p.ts(), e.ts, "to the microsecond");
            assert_eq!(p.item(&catalog), e.item(&catalog));
            assert_eq!(p.item_id(&catalog), Some("sku-1"));
            assert_eq!(p.kind(&catalog), "cart");
            assert_eq!(p.device(), e.device());
            assert_eq!(p.zone(), e.zone(), "an unknown zone reads as none in both");
        }
        let p = Packed::new(&event(None, None, None), None, KindIdx::OTHER);
        assert_eq!((p.item(&catalog), p.item_id(&catalog), p.kind(&catalog)), (None, None, ""));
    }
}
