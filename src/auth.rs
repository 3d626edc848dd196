//! API keys with scopes. Keys are read from config, compared in constant time, and never
//! logged: only the key's `name` appears in spans.

use subtle::ConstantTimeEq;

use crate::config::{AuthSettings, DEV_KEY, Scope};

/// Who is calling: the name of the key and its scopes.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("an API key is required (Authorization: Bearer <key> or X-Api-Key)")]
    Missing,
    #[error("the API key is not valid")]
    Unknown,
    #[error("this API key lacks the {0:?} scope")]
    Forbidden(Scope),
}

struct Key {
    name: String,
    secret: Vec<u8>,
    scopes: Vec<Scope>,
}

/// The configured keys.
pub struct KeyRing {
    keys: Vec<Key>,
    pub dev_key_active: bool,
}

impl KeyRing {
    pub fn from_settings(settings: &AuthSettings) -> KeyRing {
        let mut keys: Vec<Key> = settings
            .keys
            .iter()
            .map(|k| Key { name: k.name.clone(), secret: k.key.expose().as_bytes().to_vec(), scopes: k.scopes.clone() })
            .collect();
        let dev_key_active = keys.is_empty() && settings.allow_dev_key;
        if dev_key_active {
            keys.push(Key {
                name: "development".into(),
                secret: DEV_KEY.as_bytes().to_vec(),
                scopes: vec![Scope::Ingest, Scope::Read, Scope::Gateway, Scope::Admin],
            });
        }
        KeyRing { keys, dev_key_active }
    }

    /// Finds the key and checks the scope. Every configured key is compared (in constant
    /// time), so the time taken does not tell which key came closest.
    pub fn authorize(&self, presented: Option<&str>, scope: Scope) -> Result<Caller, AuthError> {
        let presented = presented.ok_or(AuthError::Missing)?.as_bytes();
        let mut found: Option<&Key> = None;
        for key in &self.keys {
            let same = key.secret.len() == presented.len() && bool::from(key.secret.as_slice().ct_eq(presented));
            if same {
                found = Some(key);
            }
        }
        let key = found.ok_or(AuthError::Unknown)?;
        if !key.scopes.contains(&scope) {
            return Err(AuthError::Forbidden(scope));
        }
        Ok(Caller { name: key.name.clone(), scopes: key.scopes.clone() })
    }
}

/// Reads the key from `Authorization: Bearer <key>` (the scheme in any case, RFC 9110
/// §11.1) or `X-Api-Key: <key>`.
pub fn presented_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, key) = v.trim().split_once([' ', '\t'])?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| key.trim()).filter(|k| !k.is_empty());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKey, Secret};

    fn ring() -> KeyRing {
        KeyRing::from_settings(&AuthSettings {
            keys: vec![
                ApiKey { name: "backend".into(), key: Secret::new("ingest-key-0123456789"), scopes: vec![Scope::Ingest] },
                ApiKey { name: "gw".into(), key: Secret::new("gateway-key-0123456789"), scopes: vec![Scope::Gateway, Scope::Read] },
            ],
            allow_dev_key: true,
        })
    }

    #[test]
    fn a_missing_key_an_unknown_key_and_a_wrong_scope_are_told_apart() {
        let r = ring();
        assert_eq!(r.authorize(None, Scope::Ingest).unwrap_err(), AuthError::Missing);
        assert_eq!(r.authorize(Some("nope"), Scope::Ingest).unwrap_err(), AuthError::Unknown);
        assert_eq!(r.authorize(Some("ingest-key-0123456789"), Scope::Read).unwrap_err(), AuthError::Forbidden(Scope::Read));
        assert_eq!(r.authorize(Some("gateway-key-0123456789"), Scope::Read).unwrap().name, "gw");
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        let with = |v: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
            presented_key(&h).map(str::to_string)
        };
        for v in ["Bearer k-1", "bearer k-1", "BEARER  k-1 ", "BeArEr\tk-1"] {
            assert_eq!(with(v).as_deref(), Some("k-1"), "{v:?}");
        }
        assert_eq!(with("Basic k-1"), None);
        assert_eq!(with("Bearer"), None);
        assert_eq!(with("Bearerk-1"), None);
    }

    #[test]
    fn the_dev_key_exists_only_when_no_key_is_configured() {
        assert!(!ring().dev_key_active);
        assert!(ring().authorize(Some(DEV_KEY), Scope::Admin).is_err());
        let open = KeyRing::from_settings(&AuthSettings { keys: vec![], allow_dev_key: true });
        assert!(open.dev_key_active);
        assert!(open.authorize(Some(DEV_KEY), Scope::Admin).is_ok());
        let closed = KeyRing::from_settings(&AuthSettings { keys: vec![], allow_dev_key: false });
        assert!(closed.authorize(Some(DEV_KEY), Scope::Admin).is_err());
    }
}
