//! Context ("scene") sensitivity.
//!
//! A context is described by a few discrete keys ([`ContextKey`]): the device class, the band
//! of the local hour ([`HourBand`]), weekday or weekend ([`DayType`]) and the country. Events
//! and requests carry them; [`lift`] counts events per category and key and estimates how
//! much each key lifts each category.

pub mod lift;

pub use lift::{CONTEXT_SCORE_CLAMP, ContextCounts, ContextLifts, ContextModel, ContextView};

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Device, EventContext};

/// Band of the local hour of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HourBand {
    /// 00:00–05:59
    Night,
    /// 06:00–11:59
    Morning,
    /// 12:00–17:59
    Afternoon,
    /// 18:00–23:59
    Evening,
}

impl HourBand {
    pub const ALL: [HourBand; 4] = [HourBand::Night, HourBand::Morning, HourBand::Afternoon, HourBand::Evening];

    /// The band of a local hour (0–23; larger values wrap).
    pub fn from_hour(hour: u32) -> Self {
        match hour % 24 {
            0..=5 => HourBand::Night,
            6..=11 => HourBand::Morning,
            12..=17 => HourBand::Afternoon,
            _ => HourBand::Evening,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HourBand::Night => "night",
            HourBand::Morning => "morning",
            HourBand::Afternoon => "afternoon",
            HourBand::Evening => "evening",
        }
    }
}

/// Weekday or weekend (Saturday and Sunday), in the user's local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DayType {
    Weekday,
    Weekend,
}

impl DayType {
    pub fn from_weekend(weekend: bool) -> Self {
        if weekend { DayType::Weekend } else { DayType::Weekday }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DayType::Weekday => "weekday",
            DayType::Weekend => "weekend",
        }
    }
}

/// An ISO 3166-1 alpha-2 country code, stored upper case in two bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    /// Parses two ASCII letters (any case); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        (b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic))
            .then(|| Country([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()]))
    }

    pub fn as_str(&self) -> &str {
        // Always two ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

/// One discrete context key that events and requests carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContextKey {
    Device(Device),
    HourBand(HourBand),
    DayType(DayType),
    Country(Country),
}

impl ContextKey {
    /// `device=mobile`, `hour=night`, `day=weekend`, `country=DE`.
    pub fn label(&self) -> String {
        match self {
            ContextKey::Device(d) => format!("device={}", d.as_str()),
            ContextKey::HourBand(h) => format!("hour={}", h.as_str()),
            ContextKey::DayType(d) => format!("day={}", d.as_str()),
            ContextKey::Country(c) => format!("country={}", c.as_str()),
        }
    }
}

/// The context of a recommendation request. Hour and weekday are already in the user's local
/// time (the caller converts with the user's time zone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestContext {
    pub device: Option<Device>,
    /// Local hour of day, 0–23.
    pub local_hour: u32,
    /// Saturday or Sunday in the user's local time.
    pub weekend: bool,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
}

impl RequestContext {
    /// The context at local time `local`.
    pub fn at<Tz: TimeZone>(local: &DateTime<Tz>, device: Option<Device>, country: Option<String>) -> Self {
        RequestContext {
            device,
            local_hour: local.hour(),
            weekend: matches!(local.weekday(), Weekday::Sat | Weekday::Sun),
            country,
        }
    }

    /// The keys of this context: device (if known), hour band, day type, country (if valid).
    pub fn keys(&self) -> Vec<ContextKey> {
        let mut keys = Vec::with_capacity(4);
        if let Some(d) = self.device {
            keys.push(ContextKey::Device(d));
        }
        keys.push(ContextKey::HourBand(HourBand::from_hour(self.local_hour)));
        keys.push(ContextKey::DayType(DayType::from_weekend(self.weekend)));
        if let Some(c) = self.country.as_deref().and_then(Country::parse) {
            keys.push(ContextKey::Country(c));
        }
        keys
    }
}

/// The context keys of an event at `ts`, in time zone `tz` (the user's, or the event's own
/// `context.timezone` if the caller prefers it).
pub fn event_keys<Tz: TimeZone>(ts: DateTime<Utc>, tz: &Tz, ctx: &EventContext) -> Vec<ContextKey> {
    RequestContext::at(&ts.with_timezone(tz), ctx.device, ctx.country.clone()).keys()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    #[test]
    fn hours_fall_into_four_bands() {
        assert_eq!(HourBand::from_hour(0), HourBand::Night);
        assert_eq!(HourBand::from_hour(5), HourBand::Night);
        assert_eq!(HourBand::from_hour(6), HourBand::Morning);
        assert_eq!(HourBand::from_hour(12), HourBand::Afternoon);
        assert_eq!(HourBand::from_hour(18), HourBand::Evening);
        assert_eq!(HourBand::from_hour(23), HourBand::Evening);
    }

    #[test]
    fn request_context_keys_come_from_local_time() {
        // 2017-12-02 (a Saturday) 15:30 UTC is 23:30 in UTC+8.
        let utc = Utc.with_ymd_and_hms(2017, 12, 2, 15, 30, 0).unwrap();
        let local = utc.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap());
        let ctx = RequestContext::at(&local, Some(Device::Mobile), Some("cn".into()));
        assert_eq!((ctx.local_hour, ctx.weekend), (23, true));
        assert_eq!(
            ctx.keys(),
            vec![
                ContextKey::Device(Device::Mobile),
                ContextKey::HourBand(HourBand::Evening),
                ContextKey::DayType(DayType::Weekend),
                ContextKey::Country(Country::parse("CN").unwrap()),
            ]
        );
        let bare = RequestContext { local_hour: 9, country: Some("nowhere".into()), ..Default::default() };
        assert_eq!(bare.keys().len(), 2, "no device, invalid country: hour and day only");
        assert_eq!(ContextKey::Country(Country::parse("de").unwrap()).label(), "country=DE");
    }
}
