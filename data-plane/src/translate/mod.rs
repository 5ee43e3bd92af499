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
pub mod scan;
pub mod stream;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value};

use crate::surfaces::Surface;

use crate::error::ProxyError;

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

/// A whole answer (or error body) from the provider's format to the client's, with its status.
/// A successful answer that cannot be read becomes a 502 in the client's format.
pub fn full(from: Surface, to: Surface, status: StatusCode, bytes: &[u8]) -> (StatusCode, Bytes) {
    use gemini as g;
    use response as r;
    // Anthropic ⇄ Gemini answers pivot through the OpenAI chat form.
    let via_openai = |chat: Option<serde_json::Value>,
                      back: fn(&[u8]) -> Option<serde_json::Value>| {
        chat.and_then(|c| back(c.to_string().as_bytes()))
    };
    let v = match (status.is_success(), from, to) {
        (true, Surface::AnthropicMessages, Surface::OpenAiChat) => r::anthropic_to_openai(bytes),
        (true, Surface::OpenAiChat, Surface::AnthropicMessages) => r::openai_to_anthropic(bytes),
        (true, Surface::Gemini, Surface::OpenAiChat) => g::response_gemini_to_openai(bytes),
        (true, Surface::OpenAiChat, Surface::Gemini) => g::response_openai_to_gemini(bytes),
        (true, Surface::Gemini, Surface::AnthropicMessages) => {
            via_openai(g::response_gemini_to_openai(bytes), r::openai_to_anthropic)
        }
        (true, Surface::AnthropicMessages, Surface::Gemini) => {
            via_openai(r::anthropic_to_openai(bytes), g::response_openai_to_gemini)
        }
        (false, _, Surface::AnthropicMessages) => Some(r::error_to_anthropic(status, bytes)),
        (false, _, Surface::Gemini) => Some(g::error_to_gemini(status, bytes)),
        (false, _, _) => Some(r::error_to_openai(status, bytes)),
        (true, _, _) => None,
    };
    match v {
        Some(v) => (status, Bytes::from(v.to_string())),
        None => {
            let e = ProxyError::upstream("the provider's answer could not be translated", false);
            (e.status, Bytes::from(to.error_body(&e).to_string()))
        }
    }
}

#[cfg(test)]
mod openai_tests;
#[cfg(test)]
mod tests;
