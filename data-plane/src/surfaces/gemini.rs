//! Google Gemini (`POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`; the same under `/v1/models/`, Google's stable version and
//! the `google-genai` SDK's default). The model alias and whether to stream come from the URL,
//! not the body. The gateway key may be sent as `x-goog-api-key` or `?key=` (as Google's SDKs
//! do), besides the generic `Authorization: Bearer` / `x-api-key`.
//!
//! `:streamGenerateContent?alt=sse` streams server-sent events; without `alt=sse` the same
//! chunks are written as Google's JSON array, element by element as they come
//! ([`ArrayFramer`]: `[{…}` then `\n,\r\n{…}` per chunk, then `\n]`). The gateway still asks
//! its upstream for SSE. An error after the first byte becomes the array's last element (a
//! Google error object, `{"error": {"code", "message", "status"}}`) and the array is closed, so
//! the body stays valid JSON; an error before it is a plain error body with its status.

use bytes::{Bytes, BytesMut};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{check_model, parse_error, Peeked};
use crate::error::ProxyError;
use crate::sse;
use http::StatusCode;
use serde_json::{json, Value};

/// What the URL says: `{model}:{method}` and the query.
#[derive(Debug)]
pub struct PathCall {
    pub model: String,
    pub stream: bool,
    /// A stream asked for without `alt=sse`: written as a JSON array.
    pub array: bool,
    /// `?key=`, the gateway key as Google's clients may send it.
    pub key: Option<String>,
}

/// Reads `{model}:generateContent` / `{model}:streamGenerateContent` (the part of the path
/// after `/v1beta/models/`) and the query string.
pub fn parse_path(rest: &str, query: Option<&str>) -> Result<PathCall, ProxyError> {
    let (model, method) = rest
        .rsplit_once(':')
        .ok_or_else(|| ProxyError::not_found_route(&format!("/v1beta/models/{rest}")))?;
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => {
            return Err(ProxyError::not_found_route(&format!(
                "/v1beta/models/{rest}"
            )))
        }
    };
    let model = percent_decode(model);
    let mut alt_sse = false;
    let mut key = None;
    for pair in query.unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("alt", v)) => alt_sse = v == "sse",
            Some(("key", v)) if !v.is_empty() => key = Some(percent_decode(v)),
            _ => {}
        }
    }
    Ok(PathCall {
        model: check_model(Some(&model))?,
        stream,
        array: stream && !alt_sse,
        key,
    })
}

/// Turns the client's Gemini SSE events into the elements of Google's JSON-array stream.
#[derive(Debug, Default)]
pub struct ArrayFramer {
    started: bool,
}

impl ArrayFramer {
    /// One SSE event (`data: {…}`) as the array's next element; `None` for an event without
    /// data.
    pub fn element(&mut self, event: &[u8]) -> Option<Bytes> {
        let data = sse::data_of(event)?;
        let sep: &[u8] = if self.started { b"\n,\r\n" } else { b"[" };
        self.started = true;
        let mut out = BytesMut::with_capacity(sep.len() + data.len());
        out.extend_from_slice(sep);
        out.extend_from_slice(&data);
        Some(out.freeze())
    }

    /// What closes the array (an empty one if no element was written).
    pub fn close(&self) -> Bytes {
        Bytes::from_static(if self.started { b"\n]" } else { b"[]" })
    }
}

/// `%xx` escapes decoded (model names and keys are ASCII in practice); a malformed escape is
/// kept as is.
pub(crate) fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    contents: Option<Vec<IgnoredAny>>,
    #[serde(default, rename = "generationConfig")]
    generation_config: Option<GenerationConfigPeek>,
}

#[derive(Deserialize)]
struct GenerationConfigPeek {
    #[serde(default, rename = "maxOutputTokens")]
    max_output_tokens: Option<u64>,
}

/// Checks the body is a JSON object with a `contents` array; model and stream are the URL's.
pub fn peek(raw: &[u8], call: &PathCall) -> Result<Peeked, ProxyError> {
    let p: Peek = serde_json::from_slice(raw).map_err(|e| parse_error(&e))?;
    match p.contents {
        Some(c) if !c.is_empty() => {}
        _ => {
            return Err(ProxyError::invalid_param(
                "contents",
                "* GenerateContentRequest.contents: contents is not specified",
            ))
        }
    }
    Ok(Peeked {
        model: call.model.clone(),
        stream: call.stream,
        // Gemini streams carry `usageMetadata` in every chunk.
        client_wants_usage: true,
        max_output_tokens: p.generation_config.and_then(|g| g.max_output_tokens),
        media: super::openai_audio::Media::None,
    })
}

pub fn error_body(e: &ProxyError) -> serde_json::Value {
    error_json(e.status, &e.message)
}

/// Google's canonical status name for an HTTP status.
pub fn google_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        502 | 503 | 529 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if (400..500).contains(&s) => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

/// A Google-style error body.
pub fn error_json(status: StatusCode, message: &str) -> Value {
    json!({"error": {"code": status.as_u16(), "message": message, "status": google_status(status)}})
}
