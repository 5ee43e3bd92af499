//! Translation between client surfaces and provider wire formats (OpenAI chat completions ⇄
//! Anthropic Messages): pure functions over bodies and stream events, no I/O.
//!
//! - `request`: request bodies, each parameter carried, translated, or rejected with a 400
//!   naming it (dropped instead when the route policy says `drop_unsupported`).
//! - `response`: non-streamed answers and error bodies.
//! - `stream`: SSE event by event, with a small state machine per direction.
//!
//! Defaults and choices worth knowing:
//! - OpenAI → Anthropic without `max_tokens`/`max_completion_tokens` sends
//!   [`DEFAULT_MAX_TOKENS`] (Anthropic requires the field).
//! - OpenAI `response_format` of type `json_object`/`json_schema` has no Anthropic equivalent and
//!   is rejected (400, `param: response_format`) unless dropped by policy.
//! - Token usage: the gateway's `input_tokens` is the whole prompt (OpenAI `prompt_tokens`;
//!   Anthropic `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`) and
//!   `cached_input_tokens` the part read from cache.

pub mod gemini;
pub mod request;
pub mod response;
pub mod stream;

use serde_json::{Map, Value};

use crate::server::error::ProxyError;

/// `max_tokens` sent to Anthropic when an OpenAI client set no limit.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Token usage in the gateway's terms: the pricing catalog's [`Tokens`]
/// (`input` is the whole prompt, cached part included; `output` includes reasoning).
///
/// [`Tokens`]: modelgate_shared::pricing::Tokens
pub use modelgate_shared::pricing::Tokens as Usage;

pub(crate) fn obj(raw: &[u8]) -> Result<Map<String, Value>, ProxyError> {
    serde_json::from_slice(raw).map_err(|e| crate::surfaces::parse_error(&e))
}

/// Rejects a parameter, or notes that it was dropped.
pub(crate) struct Unsupported {
    drop: bool,
}

impl Unsupported {
    pub fn new(drop: bool) -> Self {
        Unsupported { drop }
    }

    pub fn reject(&mut self, param: &str, why: &str) -> Result<(), ProxyError> {
        if self.drop {
            tracing::debug!(param, "dropped a parameter the target format cannot carry");
            return Ok(());
        }
        Err(ProxyError::unsupported_param(
            param.to_owned(),
            format!("`{param}` cannot be translated for this model's provider: {why}"),
        ))
    }
}

#[cfg(test)]
mod tests;
