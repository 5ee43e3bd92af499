//! OpenAI embeddings (`POST /v1/embeddings`): passed through; usage is `usage.prompt_tokens`,
//! priced as input tokens.

use std::borrow::Cow;

use serde::Deserialize;

use super::{check_model, parse_error, Peeked};
use crate::error::ProxyError;
use modelgate_shared::pricing::Tokens as Usage;

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    input: Option<serde::de::IgnoredAny>,
}

pub fn peek(raw: &[u8]) -> Result<Peeked, ProxyError> {
    let p: Peek<'_> = serde_json::from_slice(raw).map_err(|e| parse_error(&e))?;
    let model = check_model(p.model.as_deref())?;
    if p.input.is_none() {
        return Err(ProxyError::invalid_param(
            "input",
            "you must provide an input parameter",
        ));
    }
    Ok(Peeked {
        model,
        stream: false,
        client_wants_usage: false,
        // Embeddings produce no output tokens.
        max_output_tokens: Some(0),
        media: super::openai_audio::Media::None,
    })
}

#[derive(Deserialize)]
struct EmbeddingsUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

#[derive(Deserialize)]
struct UsagePeek {
    #[serde(default)]
    usage: Option<EmbeddingsUsage>,
}

/// The usage of an embeddings answer: its prompt tokens, all input.
pub fn usage(json: &[u8]) -> Option<Usage> {
    let peek: UsagePeek = serde_json::from_slice(json).ok()?;
    peek.usage.map(|u| Usage {
        input: u.prompt_tokens,
        ..Usage::default()
    })
}
