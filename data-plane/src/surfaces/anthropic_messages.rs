//! Anthropic Messages (`POST /v1/messages`).

use std::borrow::Cow;

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{check_model, parse_error, Peeked};
use crate::error::ProxyError;

/// The version sent upstream when the client names none.
pub const DEFAULT_VERSION: &str = "2023-06-01";

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
}

pub fn peek(raw: &[u8]) -> Result<Peeked, ProxyError> {
    let p: Peek<'_> = serde_json::from_slice(raw).map_err(|e| parse_error(&e))?;
    let model = check_model(p.model.as_deref())?;
    let max_output_tokens = match p.max_tokens {
        Some(n) if n > 0 => n,
        Some(_) => {
            return Err(ProxyError::invalid_param(
                "max_tokens",
                "max_tokens: must be at least 1",
            ))
        }
        None => {
            return Err(ProxyError::invalid_param(
                "max_tokens",
                "max_tokens: Field required",
            ))
        }
    };
    let stream = p.stream == Some(true);
    Ok(Peeked {
        model,
        stream,
        client_wants_usage: stream,
        max_output_tokens: Some(max_output_tokens),
        media: super::openai_audio::Media::None,
    })
}

/// Anthropic's `error.type` for a status.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        s if (400..500).contains(&s) => "invalid_request_error",
        _ => "api_error",
    }
}

pub fn error_body(e: &ProxyError) -> serde_json::Value {
    json!({"type": "error", "error": {"type": error_type(e.status), "message": e.message}})
}
