//! Gateway key authentication: which key a presented secret belongs to — keyed-hash lookup in
//! the current snapshot (no database), then the rotation grace of a secret rotated away. The
//! key's own state (revoked, disabled, expired) and what it may call are the admission
//! decision's (`modelgate_shared::admission::admit_key`), which every caller asks next.

use axum::http::HeaderMap;

use crate::config::{Key, Runtime};
use crate::error::ProxyError;

/// The presented key: `Authorization: Bearer …` (OpenAI style), else `x-api-key` (Anthropic
/// style). Accepted on every route.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?
            .trim();
        return (!token.is_empty()).then_some(token);
    }
    let token = headers.get("x-api-key")?.to_str().ok()?.trim();
    (!token.is_empty()).then_some(token)
}

/// The key as Google's clients present it: `x-goog-api-key`, else `?key=` (passed in by the
/// Gemini surface), else the generic sources of [`presented_key`]. Only the Gemini surface
/// reads these.
pub fn presented_google_key<'h>(
    headers: &'h HeaderMap,
    query_key: Option<&'h str>,
) -> Option<&'h str> {
    if let Some(v) = headers.get("x-goog-api-key") {
        let token = v.to_str().ok()?.trim();
        return (!token.is_empty()).then_some(token);
    }
    match query_key.map(str::trim) {
        Some(k) if !k.is_empty() => Some(k),
        _ => presented_key(headers),
    }
}

/// A refused secret: why, and which key it is when it matched one (a secret rotated away past
/// its grace: the refusal is billable to that key's team).
#[derive(Debug)]
pub struct Refused<'r> {
    pub error: ProxyError,
    pub key: Option<&'r Key>,
}

impl Refused<'_> {
    fn anonymous(error: ProxyError) -> Self {
        Refused { error, key: None }
    }
}

/// The key a secret already read from the request belongs to (`None`: no key was presented).
pub fn find_key<'r>(
    runtime: &'r Runtime,
    presented: Option<&str>,
    now_unix: i64,
) -> Result<&'r Key, Refused<'r>> {
    let presented = presented.ok_or_else(|| Refused::anonymous(ProxyError::missing_key()))?;
    let hash = runtime.key_hasher.hash(presented);
    let entry = runtime
        .keys
        .get(&hash)
        .ok_or_else(|| Refused::anonymous(ProxyError::invalid_key()))?;
    let key: &Key = entry.key;
    let refused = |error| {
        Err(Refused {
            error,
            key: Some(key),
        })
    };
    // A rotated-away secret works to the second its grace period ends, then never again.
    if entry.valid_until.is_some_and(|t| t <= now_unix) {
        return refused(ProxyError::invalid_key());
    }
    Ok(key)
}
