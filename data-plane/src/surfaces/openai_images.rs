//! OpenAI image generation (`POST /v1/images/generations`): passed through; metered by the
//! number of images returned (`data`), priced per image, plus tokens when the provider reports
//! `usage` (`input_tokens`, `output_tokens`, as gpt-image models do).
//!
//! The gateway routes by `model`, so unlike OpenAI (which defaults it) the field is required.
//! Streamed image generation (partial images) is not supported and refused with a 400.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{check_model, parse_error, Peeked};
use crate::error::ProxyError;
use modelgate_shared::pricing::Tokens as Usage;

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    prompt: Option<Cow<'a, str>>,
}

pub fn peek(raw: &[u8]) -> Result<Peeked, ProxyError> {
    let p: Peek<'_> = serde_json::from_slice(raw).map_err(|e| parse_error(&e))?;
    let model = check_model(p.model.as_deref())?;
    if p.prompt.as_deref().is_none_or(str::is_empty) {
        return Err(ProxyError::invalid_param(
            "prompt",
            "you must provide a prompt parameter",
        ));
    }
    if p.stream == Some(true) {
        return Err(ProxyError::invalid_param(
            "stream",
            "streamed image generation is not supported by the gateway",
        ));
    }
    Ok(Peeked {
        model,
        stream: false,
        client_wants_usage: false,
        // Priced per image, not per output token: a budget cannot bound it from tokens.
        max_output_tokens: None,
        media: super::openai_audio::Media::None,
    })
}

#[derive(Deserialize)]
struct ImagesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(Deserialize)]
struct UsagePeek {
    #[serde(default)]
    data: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Option<ImagesUsage>,
}

/// The usage of an images answer: images returned, and tokens if reported. `None` if the body
/// has no `data` array.
pub fn usage(json: &[u8]) -> Option<Usage> {
    let peek: UsagePeek = serde_json::from_slice(json).ok()?;
    let images = peek.data?.len() as u64;
    let (input, output) = peek
        .usage
        .map_or((0, 0), |u| (u.input_tokens, u.output_tokens));
    Some(Usage {
        input,
        output,
        images,
        ..Usage::default()
    })
}
