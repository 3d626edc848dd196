//! A user's history as the ranking reads it: [`HistoryEvent`], implemented by the full
//! [`Event`] (the offline tools and tests replay logs of them) and by [`Packed`], the 12-byte
//! form one replica caches for every shopper it serves.
//!
//! An `Event` carries its ids and context as strings (a few hundred bytes with its heap
//! parts); a million shoppers with twenty events each would hold gigabytes of them. A cached
//! event needs only what ranking, explanations and the push policy read: when (to the
//! microsecond), which item (the catalogue's index, so also its id), which kind (the
//! catalogue's kind index) and the device. Everything that reads a history is generic over
//! the trait, so the service ranks straight from the packed form and the tools from their
//! logs, through the same code. (The device's time zone is kept per user, not per event: see
//! `engine::UserView`.)

use chrono::{DateTime, Utc};

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
}

/// Seconds from the Unix epoch to 2000-01-01 00:00 UTC, where a packed event's clock starts.
const EPOCH_2000: i64 = 946_684_800;
const MICROS_BITS: u32 = 20;
const DEVICE_BITS: u32 = 2;

/// An event in 12 bytes: its time (seconds since 2000 and the microseconds within the
/// second, so 2000 to 2136), its item's and kind's indices in the catalogue that packed it,
/// and its device. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packed {
    secs: u32,
    /// Microseconds within the second (20 bits), the device (2 bits: 0 none, then
    /// [`Device::ALL`]'s order plus one) and the kind (8 bits), from the lowest bit up.
    rest: u32,
    /// [`ItemIdx`], or [`Packed::NO_ITEM`].
    item: u32,
}

impl Packed {
    const NO_ITEM: u32 = u32::MAX;

    /// `event` with its item at `item` (`None`: no item, or one that could not be interned)
    /// and its kind at `kind`, both in the catalogue that will read it. A time outside 2000 to
    /// 2136 is held at the nearer end.
    pub fn new(event: &Event, item: Option<ItemIdx>, kind: KindIdx) -> Packed {
        let secs = event.ts.timestamp() - EPOCH_2000;
        let (secs, micros) = match u32::try_from(secs) {
            Ok(s) => (s, event.ts.timestamp_subsec_micros()),
            Err(_) if secs < 0 => (0, 0),
            Err(_) => (u32::MAX, 999_999),
        };
        let device = event.context.device.and_then(|d| Device::ALL.iter().position(|&x| x == d)).map_or(0, |n| n as u32 + 1);
        Packed {
            secs,
            rest: micros | device << MICROS_BITS | u32::from(kind.0) << (MICROS_BITS + DEVICE_BITS),
            item: item.map_or(Self::NO_ITEM, |i| i.0),
        }
    }

    fn kind_idx(&self) -> KindIdx {
        KindIdx((self.rest >> (MICROS_BITS + DEVICE_BITS)) as u8)
    }
}

impl HistoryEvent for Packed {
    #[inline]
    fn ts(&self) -> DateTime<Utc> {
        let micros = self.rest & ((1 << MICROS_BITS) - 1);
        DateTime::from_timestamp(EPOCH_2000 + i64::from(self.secs), micros * 1000).unwrap_or_default()
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
        catalog.kind_name(self.kind_idx())
    }

    #[inline]
    fn device(&self) -> Option<Device> {
        let n = (self.rest >> MICROS_BITS) & ((1 << DEVICE_BITS) - 1);
        n.checked_sub(1).and_then(|n| Device::ALL.get(n as usize).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventContext, EventProps, Item};
    use chrono::TimeZone;

    #[test]
    fn a_packed_event_takes_12_bytes_and_reads_as_the_event_it_packs() {
        assert_eq!(std::mem::size_of::<Packed>(), 12);
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
        }
        let late = Packed::new(&Event { ts: DateTime::from_timestamp(i64::from(u32::MAX) * 2, 0).unwrap(), ..event(None, None, None) }, None, KindIdx(7));
        assert_eq!((late.ts().timestamp(), late.kind_idx()), (EPOCH_2000 + i64::from(u32::MAX), KindIdx(7)), "held at the end");
        let p = Packed::new(&event(None, None, None), None, KindIdx::OTHER);
        assert_eq!((p.item(&catalog), p.item_id(&catalog), p.kind(&catalog)), (None, None, ""));
    }
}
