//! The HTTP end of `crate::security`: a middleware that refuses a throttled source before any
//! handler runs, and, after a handler refused a request, counts failed authentications and
//! logs refusals not tied to a key. The pipeline says what it refused by putting a [`Refusal`]
//! on the response ([`Refusal::of`], in `pipeline::answer::reject`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ProxyError;
use crate::pipeline::answer::{with_request_id, REQUEST_ID_HEADER};
use crate::pipeline::App;
use crate::security::log::Record;
use crate::security::refusal::Refusal;
use crate::security::{Reason, Source};
use crate::surfaces::Surface;

/// The surface whose error format a path's client reads.
fn surface_of(path: &str) -> Surface {
    if path == "/v1/messages" {
        Surface::AnthropicMessages
    } else if path.starts_with("/v1beta/models/") || path.starts_with("/v1/models/") {
        Surface::Gemini
    } else {
        Surface::OpenAiChat
    }
}

/// Paths neither throttled nor logged.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/metrics")
}

pub(super) async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let bucket = Source::of(source);
    let method = req.method().clone();
    let uri = req.uri().clone();
    let user_agent = req.headers().get(http::header::USER_AGENT).cloned();
    let record = |reason: Reason, request_id: &str| {
        Record::new(
            app.clock.now(),
            &source.map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
            method.as_str(),
            uri.path(),
            reason.as_str(),
            user_agent
                .as_ref()
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
        return with_request_id(surface_of(uri.path()).error_response(&e), &request_id);
    }
    let resp = next.run(req).await;
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
