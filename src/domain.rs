//! Domain types shared by every module: validated ids, events, items, users, request context.
//!
//! "Parse, don't validate": the API turns raw JSON into these types once (see `api`), so the
//! pure logic (`profile`, `scoring`, `frequency`) never sees an unchecked id or kind.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest id accepted for users, items, event kinds and sessions, in characters (Unicode
/// scalar values, as JSON Schema's `maxLength` counts them).
pub const MAX_ID_CHARS: usize = 256;

/// Why an id was refused; the API adds the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_ID_CHARS} characters")]
    TooLong,
    #[error("must not contain control characters")]
    ControlCharacter,
}

/// Checks the rules every external id follows: 1..=256 characters, no control characters.
pub fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.chars().count() > MAX_ID_CHARS {
        return Err(IdError::TooLong);
    }
    if s.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter);
    }
    Ok(())
}

/// The device class of a request or an event. Unknown strings are refused at the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Mobile,
    Desktop,
    Tablet,
}

impl Device {
    pub const ALL: [Device; 3] = [Device::Mobile, Device::Desktop, Device::Tablet];

    pub fn as_str(self) -> &'static str {
        match self {
            Device::Mobile => "mobile",
            Device::Desktop => "desktop",
            Device::Tablet => "tablet",
        }
    }

    pub fn parse(s: &str) -> Option<Device> {
        match s.to_ascii_lowercase().as_str() {
            "mobile" | "phone" => Some(Device::Mobile),
            "desktop" | "web" => Some(Device::Desktop),
            "tablet" => Some(Device::Tablet),
            _ => None,
        }
    }
}

/// Where an event happened or a request comes from. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventContext {
    pub device: Option<Device>,
    pub platform: Option<String>,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: Option<String>,
    pub region: Option<String>,
    /// IANA time zone name of the device, e.g. `Europe/Berlin`.
    pub timezone: Option<String>,
    pub network: Option<String>,
    pub session_id: Option<String>,
}

/// Optional numeric and text properties of an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventProps {
    pub price: Option<f64>,
    pub quantity: Option<i32>,
    pub query: Option<String>,
}

/// One validated behaviour event, as stored in the append-only log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: uuid::Uuid,
    pub user_id: String,
    pub item_id: Option<String>,
    /// An event kind known to the tuning config (`view`, `cart`, `purchase`, ...).
    pub kind: String,
    pub ts: DateTime<Utc>,
    pub context: EventContext,
    pub props: EventProps,
}

/// A catalog item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Item {
    pub item_id: String,
    /// Category path split on `/`, root first: `["electronics", "phones", "android"]`.
    pub category: Vec<String>,
    pub brand: Option<String>,
    pub price: Option<f64>,
    pub tags: Vec<String>,
    pub available: bool,
    pub title: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

impl Item {
    /// An available item with only an id and a category path (the logs' and tests' items).
    pub fn new(item_id: impl Into<String>, category: Vec<String>) -> Item {
        Item {
            item_id: item_id.into(),
            category,
            brand: None,
            price: None,
            tags: vec![],
            available: true,
            title: None,
            created_at: None,
        }
    }

    /// The category path joined with `/`.
    pub fn category_path(&self) -> String {
        self.category.join("/")
    }

    /// Every prefix of the category path, root first: `a`, `a/b`, `a/b/c`.
    pub fn category_ancestors(&self) -> impl Iterator<Item = String> + '_ {
        (1..=self.category.len()).map(|n| self.category[..n].join("/"))
    }

    /// The most specific category (the whole path), or `None` for an uncategorised item.
    pub fn leaf_category(&self) -> Option<String> {
        (!self.category.is_empty()).then(|| self.category_path())
    }
}

/// Quiet hours in the user's local time: no push from `start` (inclusive) to `end` (exclusive).
/// `start > end` wraps over midnight (22 → 7 means 22:00 to 07:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuietHours {
    pub start: u8,
    pub end: u8,
}

impl QuietHours {
    pub fn contains(&self, local_hour: u32) -> bool {
        let (s, e, h) = (u32::from(self.start), u32::from(self.end), local_hour);
        if s == e {
            false
        } else if s < e {
            h >= s && h < e
        } else {
            h >= s || h < e
        }
    }
}

/// A user's settings as the platform sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub user_id: String,
    /// IANA time zone, validated against the tz database.
    pub timezone: chrono_tz::Tz,
    pub push_consent: bool,
    pub quiet_hours: Option<QuietHours>,
    pub locale: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// When the user last unsubscribed (set by an `unsubscribed` feedback, which also turns
    /// `push_consent` off); kept by the store, never read from a request.
    pub unsubscribed_at: Option<DateTime<Utc>>,
    /// When consent was turned on again after an unsubscribe: an explicit resubscribe.
    pub resubscribed_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_refused_when_empty_long_or_with_control_characters() {
        assert_eq!(check_id(""), Err(IdError::Empty));
        assert_eq!(check_id(&"x".repeat(257)), Err(IdError::TooLong));
        assert_eq!(check_id("a\u{0007}b"), Err(IdError::ControlCharacter));
        assert!(check_id(&"x".repeat(256)).is_ok());
        assert!(check_id(&"é".repeat(256)).is_ok(), "characters are counted, not bytes");
        assert!(check_id("user-42").is_ok());
    }

    #[test]
    fn quiet_hours_wrap_over_midnight() {
        let q = QuietHours { start: 22, end: 7 };
        assert!(q.contains(23) && q.contains(0) && q.contains(6));
        assert!(!q.contains(7) && !q.contains(12) && !q.contains(21));
        let day = QuietHours { start: 9, end: 17 };
        assert!(day.contains(9) && !day.contains(17));
        assert!(!QuietHours { start: 5, end: 5 }.contains(5));
    }

    #[test]
    fn category_ancestors_run_root_first() {
        let item = Item::new("i", vec!["a".into(), "b".into(), "c".into()]);
        let got: Vec<String> = item.category_ancestors().collect();
        assert_eq!(got, vec!["a", "a/b", "a/b/c"]);
    }
}

/// One refused field of a request: where (`events[3].ts`), which batch index, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `events[3].context.device`.
    pub field: String,
    /// Index of the element in a batch, when the request was a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), index: None, message: message.into() }
    }
}
