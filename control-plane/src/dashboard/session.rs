//! Dashboard sessions, kept in this control plane's memory. The browser holds only a random
//! session id (256 bits, hex) in an `HttpOnly`, `SameSite=Strict` cookie; the admin token it
//! signed in with stays here and is re-checked on every request (a revoked or expired token
//! ends its sessions at once). The map is keyed by the SHA-256 of the id, so the table never
//! holds a cookie value. Each session has its own CSRF token, which every form carries.
//!
//! A session ends after [`IDLE`] without a request, after [`LIFETIME`] in any case, on sign-out,
//! and when the control plane restarts. At most [`MAX_SESSIONS`] are kept: signing in past that
//! drops the least recently used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A session unused for this long is over.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session is over this long after sign-in, used or not.
pub const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at most (each is a few hundred bytes).
pub const MAX_SESSIONS: usize = 10_000;

/// The session cookie's name.
pub const COOKIE: &str = "mg_session";
/// The sign-in form's own CSRF cookie (there is no session yet to hold its token).
pub const LOGIN_COOKIE: &str = "mg_login";

/// A message for the next page the session shows, then gone (post/redirect/get).
#[derive(Clone)]
pub struct Flash {
    pub ok: bool,
    pub message: String,
    /// A secret shown once (a new key's or a rotated key's): held only until that page.
    pub secret: Option<String>,
}

impl std::fmt::Debug for Flash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flash")
            .field("ok", &self.ok)
            .field("message", &self.message)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

struct Entry {
    token: SecretString,
    csrf: String,
    created: Instant,
    last_used: Instant,
    flash: Option<Flash>,
}

/// What a request learns from its session.
pub struct Current {
    /// The admin token the session signed in with (re-authenticated per request).
    pub token: SecretString,
    pub csrf: String,
    /// The flash left by the previous request, taken.
    pub flash: Option<Flash>,
}

/// Every live session of this control plane.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
}

/// 32 random bytes as 64 hex characters.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn key_of(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Equal in constant time (for CSRF tokens).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave a session half-written (every update is
        // one insert or field store), so a poisoned map is still sound to use.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session for `token`; returns the id for the cookie.
    pub fn open(&self, token: SecretString) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, e| live(e, now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            key_of(&id),
            Entry {
                token,
                csrf: random_token(),
                created: now,
                last_used: now,
                flash: None,
            },
        );
        id
    }

    /// The live session with this id (marking it used), taking its flash.
    pub fn current(&self, id: &str) -> Option<Current> {
        let now = Instant::now();
        let mut map = self.lock();
        let key = key_of(id);
        let entry = map.get_mut(&key)?;
        if !live(entry, now) {
            map.remove(&key);
            return None;
        }
        entry.last_used = now;
        Some(Current {
            token: entry.token.clone(),
            csrf: entry.csrf.clone(),
            flash: entry.flash.take(),
        })
    }

    /// Is `presented` this live session's CSRF token?
    pub fn csrf_matches(&self, id: &str, presented: &str) -> bool {
        let now = Instant::now();
        let map = self.lock();
        map.get(&key_of(id))
            .filter(|e| live(e, now))
            .is_some_and(|e| same(&e.csrf, presented))
    }

    /// Leaves a message for the session's next page.
    pub fn flash(&self, id: &str, flash: Flash) {
        if let Some(e) = self.lock().get_mut(&key_of(id)) {
            e.flash = Some(flash);
        }
    }

    pub fn close(&self, id: &str) {
        self.lock().remove(&key_of(id));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

fn live(e: &Entry, now: Instant) -> bool {
    now.duration_since(e.last_used) < IDLE && now.duration_since(e.created) < LIFETIME
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, `Path=path`, `Secure` when served over
/// TLS; `max_age` `None` makes a session cookie, `Some(0)` deletes it.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    secure: bool,
    max_age: Option<u64>,
) -> String {
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_its_token_and_csrf_and_is_keyed_by_a_hash_of_its_id() {
        let sessions = Sessions::default();
        let id = sessions.open(SecretString::from("mga-secret"));
        assert_eq!(id.len(), 64);
        let map = sessions.lock();
        assert!(
            !map.contains_key(&id),
            "the table must not hold the cookie value"
        );
        drop(map);
        let cur = sessions.current(&id).unwrap();
        assert!(sessions.csrf_matches(&id, &cur.csrf));
        assert!(!sessions.csrf_matches(&id, &random_token()));
        assert!(!sessions.csrf_matches(&random_token(), &cur.csrf));
        sessions.close(&id);
        assert!(sessions.current(&id).is_none());
        assert_eq!(sessions.len(), 0);
    }

    #[test]
    fn a_flash_is_shown_once() {
        let sessions = Sessions::default();
        let id = sessions.open(SecretString::from("t"));
        sessions.flash(
            &id,
            Flash {
                ok: true,
                message: "made".into(),
                secret: Some("mg-sk-123".into()),
            },
        );
        let first = sessions.current(&id).unwrap().flash.unwrap();
        assert_eq!(first.secret.as_deref(), Some("mg-sk-123"));
        assert!(!format!("{first:?}").contains("mg-sk-123"));
        assert!(sessions.current(&id).unwrap().flash.is_none());
    }

    #[test]
    fn cookies_are_read_by_name_and_set_with_their_attributes() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=1; mg_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "mg"), None);
        let c = set_cookie(COOKIE, "v", "/", true, None);
        assert_eq!(c, "mg_session=v; Path=/; HttpOnly; SameSite=Strict; Secure");
        assert!(set_cookie(COOKIE, "", "/", false, Some(0)).ends_with("Max-Age=0"));
    }
}
