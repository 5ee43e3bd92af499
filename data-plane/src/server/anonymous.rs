//! The HTTP end of `crate::security`: a guard around the proxy's routes that refuses a
//! throttled source before any route runs, and, after a route refused a request, counts failed
//! authentications and logs refusals not tied to a key. The pipeline says what it refused by putting a [`Refusal`]
//! on the response ([`Refusal::of`], in `pipeline::answer::reject`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::Response;
use http::Request;
use modelgate_listener::TimedBody;

use crate::error::ProxyError;
use crate::pipeline::answer::{with_request_id, REQUEST_ID_HEADER};
use crate::pipeline::App;
use crate::security::log::Record;
use crate::security::refusal::Refusal;
use crate::security::{Reason, Source};
use crate::surfaces::Surface;

use super::{route, Route};

/// The surface whose error format a path's client reads: the surface its route serves, else
/// OpenAI's.
fn surface_of(path: &str) -> Surface {
    match Route::of(path) {
        Some((Route::Surface(surface), _)) => surface,
        _ => Surface::OpenAiChat,
    }
}

/// Paths neither throttled nor logged.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/metrics")
}

/// Refuses a throttled source before the request is routed; after it was served, counts a
/// failed authentication and logs a refusal not tied to a key. The request's head stays here,
/// lent to the route, so that a refusal's record is built from it only when there is one.
pub(super) async fn guard(app: App, req: Request<TimedBody>, peer: SocketAddr) -> Response {
    let (parts, body) = req.into_parts();
    if exempt(parts.uri.path()) {
        return route(app, &parts, body).await;
    }
    let bucket = Source::of(Some(peer.ip()));
    let record = |reason: Reason, request_id: &str| {
        Record::new(
            app.clock.now(),
            &peer.ip().to_string(),
            parts.method.as_str(),
            parts.uri.path(),
            reason.as_str(),
            parts
                .headers
                .get(http::header::USER_AGENT)
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .as_deref()
                .unwrap_or_default(),
            request_id,
        )
    };
    if let Some(wait) = app.security.throttled(bucket) {
        let request_id = modelgate_shared::new_id().to_string();
        app.security.refused(bucket, Reason::Throttled, || {
            record(Reason::Throttled, &request_id)
        });
        let e = ProxyError::auth_throttled(whole_seconds(wait));
        let surface = surface_of(parts.uri.path());
        return with_request_id(surface.error_response(&e), &request_id);
    }
    let resp = route(app.clone(), &parts, body).await;
    if let Some(refusal) = resp.extensions().get::<Refusal>() {
        if refusal.auth_failed {
            app.security.auth_failed(bucket);
        }
        if let Some(reason) = refusal.anonymous {
            let request_id = resp
                .headers()
                .get(&REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            app.security
                .refused(bucket, reason, || record(reason, request_id));
        }
    }
    resp
}

/// A wait as `retry-after` seconds, rounded up (never 0).
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_clients_read_the_error_in_their_own_format() {
        assert_eq!(surface_of("/v1/messages"), Surface::AnthropicMessages);
        assert_eq!(
            surface_of("/v1beta/models/gm:generateContent"),
            Surface::Gemini
        );
        assert_eq!(surface_of("/v1/models/gm:generateContent"), Surface::Gemini);
        assert_eq!(surface_of("/v1/chat/completions"), Surface::OpenAiChat);
        assert_eq!(surface_of("/v1/models"), Surface::OpenAiChat);
        assert_eq!(whole_seconds(Duration::from_millis(1_200)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
    }
}
