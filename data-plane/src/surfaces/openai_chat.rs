//! OpenAI chat completions (`POST /v1/chat/completions`).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::json;

use super::{check_model, parse_error, Peeked};
use crate::error::ProxyError;

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptionsPeek>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct StreamOptionsPeek {
    #[serde(default)]
    include_usage: Option<bool>,
}

pub fn peek(raw: &[u8]) -> Result<Peeked, ProxyError> {
    let p: Peek<'_> = serde_json::from_slice(raw).map_err(|e| parse_error(&e))?;
    Ok(Peeked {
        model: check_model(p.model.as_deref())?,
        stream: p.stream == Some(true),
        client_wants_usage: p.stream_options.and_then(|o| o.include_usage) == Some(true),
        max_output_tokens: p.max_completion_tokens.or(p.max_tokens),
        media: super::openai_audio::Media::None,
    })
}

pub fn error_body(e: &ProxyError) -> serde_json::Value {
    json!({"error": {"message": e.message, "type": e.kind, "code": e.code, "param": e.param}})
}
