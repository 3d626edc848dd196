//! From events to token ids: the bounded item table, event kinds, time-interval buckets and
//! the context of an event or a request.

use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc};

use crate::domain::{Device, Event};
use crate::rank::catalog::{Catalog, StrMap};
use crate::rank::history::HistoryEvent;

/// Item id of padding.
pub const PAD: u32 = 0;
/// Item id of an item outside the table (not among the `max_items` most recently active,
/// or newer than the model).
pub const OOV: u32 = 1;
/// Rows of the first table item.
pub const FIRST_ITEM: u32 = 2;
/// Time-interval buckets: 0 is "no previous event"; then `1 + ⌊log2(1 + minutes)⌋`, capped.
pub const BUCKETS: usize = 16;
/// Device ids: 0 unknown, then mobile, desktop, tablet.
pub const DEVICES: usize = 4;
/// Local hour bands of four hours.
pub const HOUR_BANDS: usize = 6;
pub const WEEKDAYS: usize = 7;

/// The bucket of an interval of `secs` seconds (negative intervals count as 0).
pub fn bucket(secs: i64) -> u32 {
    let minutes = secs.max(0) as f64 / 60.0;
    1 + ((1.0 + minutes).log2().floor() as u32).min(BUCKETS as u32 - 2)
}

/// The context of an event or a request: device, local hour band, weekday.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moment {
    pub device: u32,
    pub hour: u32,
    pub weekday: u32,
}

impl Moment {
    /// At `ts` with the local UTC offset `offset_secs`, on `device`.
    pub fn at(ts: DateTime<Utc>, offset_secs: i32, device: Option<Device>) -> Moment {
        let zone = FixedOffset::east_opt(offset_secs).unwrap_or(FixedOffset::east_opt(0).expect("UTC"));
        let local = ts.with_timezone(&zone);
        Moment {
            device: match device {
                None => 0,
                Some(Device::Mobile) => 1,
                Some(Device::Desktop) => 2,
                Some(Device::Tablet) => 3,
            },
            hour: local.hour() / 4,
            weekday: local.weekday().num_days_from_monday(),
        }
    }
}

/// One event as the encoder reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub item: u32,
    pub kind: u32,
    pub ts: i64,
    pub moment: Moment,
}

/// The vocabularies of a model: its items (the table, in row order from [`FIRST_ITEM`]) and
/// its event kinds (row order from 1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vocab {
    pub items: Vec<String>,
    pub kinds: Vec<String>,
    item_row: StrMap<String, u32>,
}

impl Vocab {
    pub fn new(items: Vec<String>, kinds: Vec<String>) -> Vocab {
        let item_row = items.iter().enumerate().map(|(n, id)| (id.clone(), FIRST_ITEM + n as u32)).collect();
        Vocab { items, kinds, item_row }
    }

    /// The table row of an item id ([`OOV`] outside the table).
    pub fn item(&self, id: &str) -> u32 {
        self.item_row.get(id).copied().unwrap_or(OOV)
    }

    /// The row of an event kind (0 for a kind the model does not know).
    pub fn kind(&self, kind: &str) -> u32 {
        self.kinds.iter().position(|k| k == kind).map_or(0, |n| n as u32 + 1)
    }

    /// Whether item ids are unique (the table's rows are what they say).
    pub fn unique_items(&self) -> bool {
        self.item_row.len() == self.items.len()
    }

    /// The tokens of `events` (in the order given; events without an item are skipped), named
    /// through `catalog` (full events name themselves: any catalogue will do).
    pub fn tokens<E: HistoryEvent>(&self, events: &[&E], catalog: &Catalog, zone: &dyn Fn(&E) -> i32) -> Vec<Token> {
        events
            .iter()
            .filter_map(|e| {
                let id = e.item_id(catalog)?;
                let ts = e.ts();
                Some(Token { item: self.item(id), kind: self.kind(e.kind(catalog)), ts: ts.timestamp(), moment: Moment::at(ts, zone(e), e.device()) })
            })
            .collect()
    }
}

/// The item table of a log: at most `max_items` items, the most recently active first (ties
/// by id), and the event kinds seen, sorted.
pub fn vocab_of(events: &[&Event], max_items: usize) -> Vocab {
    let mut last: StrMap<&str, i64> = StrMap::default();
    let mut kinds: Vec<String> = Vec::new();
    for e in events {
        if let Some(id) = e.item_id.as_deref() {
            let t = last.entry(id).or_insert(i64::MIN);
            *t = (*t).max(e.ts.timestamp_micros());
            if !kinds.contains(&e.kind) {
                kinds.push(e.kind.clone());
            }
        }
    }
    let mut items: Vec<(&str, i64)> = last.into_iter().collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    items.truncate(max_items);
    kinds.sort();
    Vocab::new(items.into_iter().map(|(id, _)| id.to_string()).collect(), kinds)
}
