//! Field-by-field reading of JSON request bodies, collecting one `FieldError` per bad field
//! (with its path and batch index) instead of stopping at the first.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::domain::{FieldError, check_id};

/// Longest free-text field (titles, queries), in characters.
pub const MAX_TEXT_CHARS: usize = 1024;

/// A JSON object being read, with the path prefix used in errors.
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    prefix: String,
    index: Option<usize>,
    pub errors: &'a mut Vec<FieldError>,
}

impl<'a> Fields<'a> {
    /// Reads `value` as an object; records an error and returns `None` if it is not one.
    pub fn object(value: &'a Value, prefix: &str, index: Option<usize>, errors: &'a mut Vec<FieldError>) -> Option<Self> {
        match value.as_object() {
            Some(obj) => Some(Fields { obj, prefix: prefix.to_string(), index, errors }),
            None => {
                let field = if prefix.is_empty() { "body".to_string() } else { prefix.to_string() };
                errors.push(FieldError { field, index, message: "must be a JSON object".into() });
                None
            }
        }
    }

    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    pub fn error(&mut self, name: &str, message: impl Into<String>) {
        let field = self.path(name);
        self.errors.push(FieldError { field, index: self.index, message: message.into() });
    }

    /// Refuses any key not in `allowed`.
    pub fn deny_unknown(&mut self, allowed: &[&str]) {
        let unknown: Vec<String> = self.obj.keys().filter(|k| !allowed.contains(&k.as_str())).cloned().collect();
        for k in unknown {
            self.error(&k, "unknown field");
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A sub-object, for nested reading.
    pub fn nested(&self, name: &str) -> Option<&'a Value> {
        self.get(name)
    }

    pub fn index(&self) -> Option<usize> {
        self.index
    }

    /// An optional string of at most `max_chars` characters (Unicode scalar values, as JSON
    /// Schema's `maxLength` counts), without control characters.
    pub fn opt_str(&mut self, name: &str, max_chars: usize) -> Option<String> {
        match self.get(name)? {
            Value::String(s) if s.chars().count() > max_chars => {
                self.error(name, format!("must be at most {max_chars} characters"));
                None
            }
            Value::String(s) if s.chars().any(char::is_control) => {
                self.error(name, "must not contain control characters");
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => {
                self.error(name, "must be a string");
                None
            }
        }
    }

    /// An optional id: 1..=256 characters, no control characters.
    pub fn opt_id(&mut self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(s) => match check_id(s) {
                Ok(()) => Some(s.clone()),
                Err(e) => {
                    self.error(name, e.to_string());
                    None
                }
            },
            _ => {
                self.error(name, "must be a string");
                None
            }
        }
    }

    /// An optional UUID in its hyphenated form, `8-4-4-4-12` hexadecimal digits (what JSON
    /// Schema's `format: uuid` accepts; the simple, braced and URN forms are refused).
    pub fn opt_uuid(&mut self, name: &str) -> Option<uuid::Uuid> {
        let parsed = match self.get(name)? {
            Value::String(s) => (s.len() == 36).then(|| uuid::Uuid::try_parse(s).ok()).flatten(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(name, "must be a UUID (8-4-4-4-12 hexadecimal digits)");
        }
        parsed
    }

    pub fn req_id(&mut self, name: &str) -> Option<String> {
        if !self.has(name) {
            self.error(name, "is required");
            return None;
        }
        self.opt_id(name)
    }

    pub fn opt_f64(&mut self, name: &str) -> Option<f64> {
        match self.get(name)? {
            Value::Number(n) => n.as_f64().filter(|f| f.is_finite()).or_else(|| {
                self.error(name, "must be a finite number");
                None
            }),
            _ => {
                self.error(name, "must be a number");
                None
            }
        }
    }

    /// A number that must be zero or more.
    pub fn opt_non_negative(&mut self, name: &str) -> Option<f64> {
        let v = self.opt_f64(name)?;
        if v < 0.0 {
            self.error(name, "must not be negative");
            return None;
        }
        Some(v)
    }

    /// An optional integer in `min..=max`. A number with no fractional part (`3.0`) is an
    /// integer, as JSON Schema counts.
    pub fn opt_i64(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        match self.get(name)? {
            Value::Number(n) => match n.as_i64().or_else(|| integral(n.as_f64()?)) {
                Some(v) if v >= min && v <= max => Some(v),
                _ => {
                    self.error(name, format!("must be an integer in {min}..={max}"));
                    None
                }
            },
            _ => {
                self.error(name, "must be an integer");
                None
            }
        }
    }

    pub fn opt_bool(&mut self, name: &str) -> Option<bool> {
        match self.get(name)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.error(name, "must be true or false");
                None
            }
        }
    }

    pub fn opt_time(&mut self, name: &str) -> Option<DateTime<Utc>> {
        let s = match self.get(name)? {
            Value::String(s) => s,
            _ => {
                self.error(name, "must be an RFC 3339 timestamp string");
                return None;
            }
        };
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                self.error(name, format!("must be an RFC 3339 timestamp ({e})"));
                None
            }
        }
    }

    /// An array of strings, each of 1..=`max_chars` characters, at most `max_len` of them.
    pub fn opt_str_list(&mut self, name: &str, max_len: usize, max_chars: usize) -> Option<Vec<String>> {
        let arr = match self.get(name)? {
            Value::Array(a) => a,
            _ => {
                self.error(name, "must be an array of strings");
                return None;
            }
        };
        if arr.len() > max_len {
            self.error(name, format!("must have at most {max_len} entries"));
            return None;
        }
        let mut out = Vec::with_capacity(arr.len());
        for (i, v) in arr.iter().enumerate() {
            match v.as_str() {
                Some(s) if !s.is_empty() && s.chars().count() <= max_chars && !s.chars().any(char::is_control) => {
                    out.push(s.to_string())
                }
                _ => {
                    self.error(&format!("{name}[{i}]"), format!("must be a non-empty string of at most {max_chars} characters, without control characters"));
                    return None;
                }
            }
        }
        Some(out)
    }

    /// An IANA time zone name.
    pub fn opt_tz(&mut self, name: &str) -> Option<chrono_tz::Tz> {
        let s = self.opt_str(name, 64)?;
        match s.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.error(name, format!("unknown IANA time zone {s:?}"));
                None
            }
        }
    }
}

/// `f` as an integer when it has no fractional part and fits.
fn integral(f: f64) -> Option<i64> {
    // 2^63 is exactly representable; every integral f64 in [-2^63, 2^63) converts exactly.
    (f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)).then_some(f as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_bad_field_is_named_with_its_path_and_index() {
        let v = json!({"a": 5, "b": "x\u{1}", "t": "yesterday", "p": -1.0, "z": 1});
        let mut errors = Vec::new();
        let mut f = Fields::object(&v, "events[2]", Some(2), &mut errors).unwrap();
        f.deny_unknown(&["a", "b", "t", "p"]);
        assert!(f.opt_str("a", 10).is_none());
        assert!(f.opt_str("b", 10).is_none());
        assert!(f.opt_time("t").is_none());
        assert!(f.opt_non_negative("p").is_none());
        assert!(f.req_id("missing").is_none());
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["events[2].z", "events[2].a", "events[2].b", "events[2].t", "events[2].p", "events[2].missing"]);
        assert!(errors.iter().all(|e| e.index == Some(2)));
    }

    #[test]
    fn an_integral_number_is_an_integer_as_json_schema_counts() {
        let v = json!({"a": 3.0, "b": 3.5, "c": 7, "d": 1e300, "e": -0.0});
        let mut errors = Vec::new();
        let mut f = Fields::object(&v, "", None, &mut errors).unwrap();
        assert_eq!(f.opt_i64("a", 0, 10), Some(3));
        assert_eq!(f.opt_i64("c", 0, 10), Some(7));
        assert_eq!(f.opt_i64("e", 0, 10), Some(0));
        assert_eq!(f.opt_i64("b", 0, 10), None);
        assert_eq!(f.opt_i64("d", 0, i64::MAX), None);
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn a_uuid_is_read_only_in_its_hyphenated_form() {
        let v = json!({"a": "67e55044-10b1-426f-9247-bb680e5fe0c8", "b": "67e5504410b1426f9247bb680e5fe0c8",
            "c": "{67e55044-10b1-426f-9247-bb680e5fe0c8}", "d": 7, "e": "67E55044-10B1-426F-9247-BB680E5FE0C8"});
        let mut errors = Vec::new();
        let mut f = Fields::object(&v, "", None, &mut errors).unwrap();
        assert!(f.opt_uuid("a").is_some() && f.opt_uuid("e").is_some());
        assert!(f.opt_uuid("b").is_none() && f.opt_uuid("c").is_none() && f.opt_uuid("d").is_none());
        assert!(f.opt_uuid("missing").is_none());
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["b", "c", "d"]);
    }

    #[test]
    fn a_time_zone_must_be_known_to_the_tz_database() {
        let v = json!({"tz": "Europe/Berlin", "bad": "Mars/Olympus"});
        let mut errors = Vec::new();
        let mut f = Fields::object(&v, "", None, &mut errors).unwrap();
        assert_eq!(f.opt_tz("tz"), Some(chrono_tz::Europe::Berlin));
        assert!(f.opt_tz("bad").is_none());
        assert_eq!(errors[0].field, "bad");
    }
}
