//! OpenAI Responses (`POST /v1/responses`): passed through to deployments that speak OpenAI's
//! format, the model renamed when the deployment's differs. Usage is read from the answer's
//! `usage` (`input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`,
//! `output_tokens_details.reasoning_tokens`), in a stream from the `response.completed` event.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::{check_model, parse_error, Peeked};
use crate::error::ProxyError;
use modelgate_shared::pricing::Tokens as Usage;

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
}

pub fn peek(raw: &[u8]) -> Result<Peeked, ProxyError> {
    let p: Peek<'_> = serde_json::from_slice(raw).map_err(|e| parse_error(&e))?;
    let stream = p.stream == Some(true);
    Ok(Peeked {
        model: check_model(p.model.as_deref())?,
        stream,
        // A Responses stream always ends with `response.completed`, which carries usage.
        client_wants_usage: stream,
        max_output_tokens: p.max_output_tokens,
        media: super::openai_audio::Media::None,
    })
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<Details>,
    #[serde(default)]
    output_tokens_details: Option<Details>,
}

impl From<ResponsesUsage> for Usage {
    fn from(u: ResponsesUsage) -> Usage {
        Usage {
            input: u.input_tokens,
            output: u.output_tokens,
            cached_input: u
                .input_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            reasoning: u
                .output_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            ..Usage::default()
        }
    }
}

#[derive(Deserialize)]
struct UsagePeek {
    #[serde(default)]
    usage: Option<ResponsesUsage>,
}

/// The `usage` of a Responses answer (a `response` object).
pub fn usage(json: &[u8]) -> Option<Usage> {
    let peek: UsagePeek = serde_json::from_slice(json).ok()?;
    peek.usage.map(Usage::from)
}

#[derive(Deserialize)]
struct EventPeek<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Cow<'a, str>,
    #[serde(default)]
    response: Option<UsagePeek>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

/// What one event of a Responses stream means to the gateway.
#[derive(Debug, PartialEq)]
pub enum StreamEvent {
    /// Any event that neither ends the stream nor reports an error.
    Other,
    /// `response.completed`, `response.incomplete` or `response.failed`: the last event, with
    /// the usage it reports.
    Terminal(Option<Usage>),
    /// An `error` event, with its message.
    Error(String),
}

/// Classifies one event's `data`.
pub fn stream_event(data: &[u8]) -> StreamEvent {
    let Ok(e) = serde_json::from_slice::<EventPeek<'_>>(data) else {
        return StreamEvent::Other;
    };
    match e.kind.as_ref() {
        "response.completed" | "response.incomplete" | "response.failed" => {
            StreamEvent::Terminal(e.response.and_then(|r| r.usage).map(Usage::from))
        }
        "error" => StreamEvent::Error(e.message.unwrap_or_default().into_owned()),
        _ => StreamEvent::Other,
    }
}

/// The event that ends a Responses stream which failed after its first byte, as OpenAI sends it.
pub fn error_event(e: &ProxyError) -> Bytes {
    let data = json!({"type": "error", "code": e.code, "message": e.message, "param": e.param});
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}
