//! The two middlewares every dashboard request passes: the security headers on the way out,
//! and, for a POST, the origin and CSRF checks on the way in — before any handler, so no
//! change can forget them.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::session::{self, COOKIE, LOGIN_COOKIE};
use super::{layout, Dash};

/// Nothing but this origin's own files; no inline script or style (charts use SVG attributes),
/// no plugins, no framing, forms post only here.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A dashboard form is a few fields; anything larger is not one of ours.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Adds the security headers to every dashboard response.
pub async fn headers(State(dash): State<Dash>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    // Pages show secrets once and data by role: keep them out of every cache.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if dash.secure {
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

/// Why a POST was refused before its handler.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `Origin` names another site (or is opaque).
    CrossOrigin,
    /// The form's `csrf` field is missing or is not the session's (or sign-in cookie's) token.
    Csrf,
    /// Not a form we could read.
    BadForm,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let message = match self {
            Refusal::CrossOrigin => "This form was sent from another site and was refused.",
            Refusal::Csrf => {
                "This form's security token is missing or stale (sign in again, or reload the \
                 page and resend)."
            }
            Refusal::BadForm => "This request is not a form the dashboard sends.",
        };
        let status = match self {
            Refusal::BadForm => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        };
        (status, layout::failure(status, message)).into_response()
    }
}

/// For a POST: the origin check, then the CSRF check against the session (for `/login`, the
/// sign-in cookie). The body is read here (bounded) and handed on unchanged.
pub async fn check_post(State(dash): State<Dash>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    if let Err(r) = same_origin(req.headers()) {
        return r.into_response();
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
        return Refusal::BadForm.into_response();
    };
    let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes) else {
        return Refusal::BadForm.into_response();
    };
    let presented = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let ok = if parts.uri.path() == "/login" {
        session::cookie(&parts.headers, LOGIN_COOKIE)
            .is_some_and(|expected| !presented.is_empty() && session::same(expected, presented))
    } else {
        match session::cookie(&parts.headers, COOKIE) {
            Some(id) => !presented.is_empty() && dash.sessions.csrf_matches(id, presented),
            // No session: the handler's extractor sends the browser to sign in.
            None => true,
        }
    };
    if !ok {
        return Refusal::Csrf.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// `Origin`, when the browser sends one, must be this host (over either scheme: the listener
/// knows whether it serves TLS, the browser's view through a proxy may differ). Without
/// `Origin`, a `Sec-Fetch-Site` other than same-origin or none (typed URL) is refused too;
/// without either, the CSRF token alone decides.
pub fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| Refusal::CrossOrigin)?;
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .ok_or(Refusal::CrossOrigin)?;
        return match host {
            Some(h) if h.eq_ignore_ascii_case(authority) => Ok(()),
            _ => Err(Refusal::CrossOrigin),
        };
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(_) => Err(Refusal::CrossOrigin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_this_hosts_origin_passes() {
        let host = ("host", "127.0.0.1:8080");
        assert_eq!(
            same_origin(&headers(&[host, ("origin", "http://127.0.0.1:8080")])),
            Ok(())
        );
        assert_eq!(
            same_origin(&headers(&[host, ("origin", "https://127.0.0.1:8080")])),
            Ok(())
        );
        for bad in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:8081",
            "127.0.0.1:8080",
        ] {
            let mut h = headers(&[host]);
            h.insert("origin", HeaderValue::from_static(bad));
            assert_eq!(same_origin(&h), Err(Refusal::CrossOrigin), "{bad}");
        }
        assert_eq!(same_origin(&headers(&[host])), Ok(()));
        assert_eq!(
            same_origin(&headers(&[host, ("sec-fetch-site", "cross-site")])),
            Err(Refusal::CrossOrigin)
        );
        assert_eq!(
            same_origin(&headers(&[host, ("sec-fetch-site", "same-origin")])),
            Ok(())
        );
    }
}
