//! Dashboard sessions, kept in the database (`dashboard_sessions`) so that every control-plane
//! replica accepts a session another one opened. The browser holds only a random session id
//! (256 bits, hex) in an `HttpOnly`, `SameSite=Strict` cookie. A row is keyed by the SHA-256
//! of that id (the table never holds a cookie value) and names the admin token the session
//! signed in with by its SHA-256, as `admin_tokens` stores it (never the token): each request
//! authenticates that hash again, so a revoked or expired token ends its sessions at once.
//! Each session's CSRF token, which every form carries, is derived from its id
//! ([`csrf_of`]): only the holder of the cookie knows it, and no replica needs to store it.
//! The message for a session's next page (which may carry a new key's secret, shown once) is
//! sealed with the master key, bound to the row.
//!
//! A session ends after [`IDLE`] without a request (its last use is written at most every
//! [`TOUCH_EVERY`]), after [`LIFETIME`] in any case, and on sign-out (the row is deleted). At
//! most [`MAX_SESSIONS`] are kept: signing in past that drops the least recently used.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::service::{ServiceError, Services};
use crate::store::dashboard_session as row;

/// A session unused for this long is over.
pub const IDLE: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// A session is over this long after sign-in, used or not.
pub const LIFETIME: std::time::Duration = std::time::Duration::from_secs(12 * 60 * 60);
/// How stale a session's stored last use may get before a request writes it again (so a page
/// view is a read, and at most one write a minute per session).
pub const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Sessions kept at most.
pub const MAX_SESSIONS: u64 = 10_000;

/// The session cookie's name.
pub const COOKIE: &str = "mg_session";
/// The sign-in form's own CSRF cookie (there is no session yet to hold its token).
pub const LOGIN_COOKIE: &str = "mg_login";

/// A message for the next page the session shows, then gone (post/redirect/get).
#[derive(Clone, Serialize, Deserialize)]
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

/// What a request learns from its session.
pub struct Current {
    /// The SHA-256 (hex) of the admin token the session signed in with (re-authenticated per
    /// request).
    pub token_hash: String,
    pub csrf: String,
    /// The flash left by the previous request, taken.
    pub flash: Option<Flash>,
}

/// The sessions of every replica, in the database.
#[derive(Clone)]
pub struct Sessions {
    services: Services,
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

/// The CSRF token of the session with this id: a hash of the id under its own label, so it
/// differs from the row's key and reveals nothing of the id.
pub fn csrf_of(id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"modelgate/dashboard-csrf\0");
    h.update(id.as_bytes());
    hex::encode(h.finalize())
}

/// Equal in constant time (for CSRF tokens).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn flash_binding(key: &str) -> crate::crypto::Binding {
    crate::crypto::Binding::cell("dashboard_sessions", "flash", &[key])
}

impl Sessions {
    pub fn new(services: Services) -> Sessions {
        Sessions { services }
    }

    fn now_ms(&self) -> i64 {
        let now: DateTime<Utc> = self.services.clock.now();
        now.timestamp_millis()
    }

    /// Opens a session for the admin token whose SHA-256 is `token_hash`; returns the id for
    /// the cookie. Sessions past their end are deleted first.
    pub async fn open(&self, token_hash: String) -> Result<String, ServiceError> {
        let db = &self.services.db;
        let now = self.now_ms();
        row::Entity::delete_many()
            .filter(
                row::Column::LastUsedAtMs
                    .lte(now - ms(IDLE))
                    .or(row::Column::CreatedAtMs.lte(now - ms(LIFETIME))),
            )
            .exec(db)
            .await?;
        if row::Entity::find().count(db).await? >= MAX_SESSIONS {
            if let Some(oldest) = row::Entity::find()
                .order_by_asc(row::Column::LastUsedAtMs)
                .one(db)
                .await?
            {
                row::Entity::delete_by_id(oldest.id_hash).exec(db).await?;
            }
        }
        let id = random_token();
        row::Entity::insert(row::ActiveModel {
            id_hash: Set(key_of(&id)),
            token_hash: Set(token_hash),
            created_at_ms: Set(now),
            last_used_at_ms: Set(now),
            flash: Set(None),
        })
        .exec_without_returning(db)
        .await?;
        Ok(id)
    }

    /// The live session with this id (marking it used), taking its flash.
    pub async fn current(&self, id: &str) -> Result<Option<Current>, ServiceError> {
        let db = &self.services.db;
        let now = self.now_ms();
        let key = key_of(id);
        let Some(found) = row::Entity::find_by_id(key.as_str()).one(db).await? else {
            return Ok(None);
        };
        if now - found.last_used_at_ms >= ms(IDLE) || now - found.created_at_ms >= ms(LIFETIME) {
            row::Entity::delete_by_id(key.as_str()).exec(db).await?;
            return Ok(None);
        }
        let mut flash = None;
        if let Some(sealed) = &found.flash {
            // Taken by whichever request clears it first (a flash is shown once).
            let taken = row::Entity::update_many()
                .col_expr(row::Column::Flash, Expr::value(Option::<String>::None))
                .filter(row::Column::IdHash.eq(key.as_str()))
                .filter(row::Column::Flash.eq(sealed.as_str()))
                .exec(db)
                .await?;
            if taken.rows_affected == 1 {
                let plain = self
                    .services
                    .sealer
                    .open_bound(sealed, &flash_binding(&key))?;
                flash = serde_json::from_slice(&plain).ok();
            }
        }
        if now - found.last_used_at_ms >= ms(TOUCH_EVERY) {
            row::Entity::update_many()
                .col_expr(row::Column::LastUsedAtMs, Expr::value(now))
                .filter(row::Column::IdHash.eq(key.as_str()))
                .exec(db)
                .await?;
        }
        Ok(Some(Current {
            token_hash: found.token_hash,
            csrf: csrf_of(id),
            flash,
        }))
    }

    /// Is `presented` the CSRF token of the session with this id? (Whether that session is
    /// live, the handler's extractor decides.)
    pub fn csrf_matches(&self, id: &str, presented: &str) -> bool {
        same(&csrf_of(id), presented)
    }

    /// Leaves a message for the session's next page.
    pub async fn flash(&self, id: &str, flash: Flash) -> Result<(), ServiceError> {
        let key = key_of(id);
        let plain = serde_json::to_vec(&flash).unwrap_or_default();
        let sealed = self
            .services
            .sealer
            .seal_bound(&plain, &flash_binding(&key));
        row::Entity::update_many()
            .col_expr(row::Column::Flash, Expr::value(Some(sealed)))
            .filter(row::Column::IdHash.eq(key.as_str()))
            .exec(&self.services.db)
            .await?;
        Ok(())
    }

    /// Ends the session (on every replica).
    pub async fn close(&self, id: &str) -> Result<(), ServiceError> {
        row::Entity::delete_by_id(key_of(id).as_str())
            .exec(&self.services.db)
            .await?;
        Ok(())
    }
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

    async fn sessions() -> Sessions {
        let db = crate::store::connect("sqlite::memory:").await.unwrap();
        Sessions::new(Services::new(
            db,
            crate::crypto::Sealer::from_hex(&crate::crypto::Sealer::generate_master_key_hex())
                .unwrap(),
            modelgate_shared::clock::system(),
        ))
    }

    #[tokio::test]
    async fn a_session_is_stored_by_hashes_only_and_ends_on_close() {
        let sessions = sessions().await;
        let token_hash = hex::encode(Sha256::digest(b"mga-secret"));
        let id = sessions.open(token_hash.clone()).await.unwrap();
        assert_eq!(id.len(), 64);
        let rows = row::Entity::find()
            .all(&sessions.services.db)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id_hash, key_of(&id));
        assert_ne!(
            rows[0].id_hash, id,
            "the table must not hold the cookie value"
        );
        let cur = sessions.current(&id).await.unwrap().unwrap();
        assert_eq!(cur.token_hash, token_hash);
        assert_ne!(cur.csrf, rows[0].id_hash);
        assert!(sessions.csrf_matches(&id, &cur.csrf));
        assert!(!sessions.csrf_matches(&id, &random_token()));
        assert!(!sessions.csrf_matches(&random_token(), &cur.csrf));
        sessions.close(&id).await.unwrap();
        assert!(sessions.current(&id).await.unwrap().is_none());
        assert_eq!(
            row::Entity::find()
                .count(&sessions.services.db)
                .await
                .unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn a_flash_is_sealed_and_shown_once() {
        let sessions = sessions().await;
        let id = sessions.open("h".into()).await.unwrap();
        sessions
            .flash(
                &id,
                Flash {
                    ok: true,
                    message: "made".into(),
                    secret: Some("mg-sk-123".into()),
                },
            )
            .await
            .unwrap();
        let stored = row::Entity::find()
            .one(&sessions.services.db)
            .await
            .unwrap()
            .unwrap();
        assert!(!stored.flash.unwrap().contains("mg-sk-123"));
        let first = sessions.current(&id).await.unwrap().unwrap().flash.unwrap();
        assert_eq!(first.secret.as_deref(), Some("mg-sk-123"));
        assert!(!format!("{first:?}").contains("mg-sk-123"));
        assert!(sessions
            .current(&id)
            .await
            .unwrap()
            .unwrap()
            .flash
            .is_none());
    }

    #[tokio::test]
    async fn a_session_unused_past_the_idle_bound_is_over_and_deleted() {
        let clock = modelgate_shared::clock::SettableClock::new();
        let db = crate::store::connect("sqlite::memory:").await.unwrap();
        let sessions = Sessions::new(Services::new(
            db,
            crate::crypto::Sealer::from_hex(&crate::crypto::Sealer::generate_master_key_hex())
                .unwrap(),
            clock.clone(),
        ));
        let id = sessions.open("h".into()).await.unwrap();
        let start = Utc::now();
        // Used within the idle bound: still live, and its last use moves on.
        clock.set(start + chrono::Duration::minutes(29));
        assert!(sessions.current(&id).await.unwrap().is_some());
        clock.set(start + chrono::Duration::minutes(58));
        assert!(sessions.current(&id).await.unwrap().is_some());
        // Then idle for longer than the bound.
        clock.set(start + chrono::Duration::minutes(89));
        assert!(sessions.current(&id).await.unwrap().is_none());
        assert_eq!(
            row::Entity::find()
                .count(&sessions.services.db)
                .await
                .unwrap(),
            0
        );
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
