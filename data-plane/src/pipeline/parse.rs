//! Parse what is needed, and no more: the Gemini call in the URL (model, method, `?key=`), the
//! body read under the size limit, and the surface's peek of it (model, stream, usage wishes,
//! output bound) without building a JSON tree. The body itself goes upstream as received.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use http_body_util::BodyExt;
use modelgate_shared::admission::RequestedClass;

use crate::error::ProxyError;
use crate::providers;
use crate::routing::TrafficClass;
use crate::surfaces::gemini::PathCall;
use crate::surfaces::{self, Peeked, Surface};

/// The header a client names its traffic class in.
pub const TRAFFIC_CLASS_HEADER: &str = "x-modelgate-traffic-class";

/// Gemini names the model and the method in the URL, and may carry the key in the query: read
/// before the key is. `None` for every other surface.
pub fn gemini_call(surface: Surface, uri: &http::Uri) -> Result<Option<PathCall>, ProxyError> {
    match surface {
        Surface::Gemini => {
            let path = uri.path();
            let rest = path
                .strip_prefix("/v1beta/models/")
                .or_else(|| path.strip_prefix("/v1/models/"))
                .unwrap_or_default();
            Ok(Some(surfaces::gemini::parse_path(rest, uri.query())?))
        }
        _ => Ok(None),
    }
}

/// Reads the whole body, refusing one over `limit` bytes or one that does not arrive within the
/// listener's body timeout.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ProxyError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ProxyError::body_too_large(limit))
        }
        Err(e) if modelgate_listener::is_body_timeout(&*e) => Err(ProxyError::body_timeout()),
        Err(e) => Err(ProxyError::invalid_json(&format!(
            "could not read the body: {e}"
        ))),
    }
}

/// The fields of the body the gateway acts on, read in the surface's format.
pub fn peek(surface: Surface, raw: &[u8], call: Option<&PathCall>) -> Result<Peeked, ProxyError> {
    match (surface, call) {
        (Surface::Gemini, Some(call)) => surfaces::gemini::peek(raw, call),
        _ => surface.peek(raw),
    }
}

/// The fields of a transcription or translation upload (its boundary named by the request's
/// `content-type`), its file judged and its duration read.
///
/// Parsing a form of up to the audio cap and walking an MP3's frames is tens of milliseconds of
/// CPU (release, this 2-core machine, `openai_audio::tests::timing`: a 25 MiB MP3 upload is
/// parsed and its 62,864 frames walked in 48–51 ms, the walk alone 10–12 ms; re-encoding it
/// 9–10 ms; a WAV header 50–60 ns), so it runs on the blocking pool, not on a worker thread
/// other requests share. The body is already in memory: the reader completes without waiting.
pub async fn peek_upload(raw: Bytes, headers: &HeaderMap) -> Result<Peeked, ProxyError> {
    let content_type = headers.get(http::header::CONTENT_TYPE).cloned();
    tokio::task::spawn_blocking(move || {
        futures_util::FutureExt::now_or_never(surfaces::openai_audio::peek_upload(
            raw,
            content_type.as_ref(),
        ))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| Err(ProxyError::upload_unreadable()))
}

/// The traffic class the client asked for by header. One that names no class is refused by
/// the admission decision, in its place in the order.
pub fn traffic_class(headers: &HeaderMap) -> RequestedClass {
    match headers.get(TRAFFIC_CLASS_HEADER) {
        None => RequestedClass::KeyDefault,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(TrafficClass::parse)
            .map_or(RequestedClass::Invalid, RequestedClass::Named),
    }
}

/// An Anthropic client's `anthropic-version` and `anthropic-beta`, forwarded to Anthropic.
pub fn anthropic_headers(
    surface: Surface,
    headers: &HeaderMap,
) -> (Option<HeaderValue>, Option<HeaderValue>) {
    match surface {
        Surface::AnthropicMessages => (
            headers.get(&providers::anthropic::VERSION).cloned(),
            headers.get(&providers::anthropic::BETA).cloned(),
        ),
        _ => (None, None),
    }
}
