//! The built-in `mock` provider, kept apart from the real ones: it calls nothing, answering in
//! the format it is called in (always the client's own, see `Surface::upstream_for`) with
//! deterministic, clearly labelled answers and realistic usage figures. For demos (`modelgate
//! up` works offline), tests and load tests.
//!
//! - `chat`: OpenAI chat completions, Anthropic Messages and Gemini `generateContent`, streamed
//!   or not, with tool calls.
//! - `openai`: OpenAI's other surfaces — Responses, embeddings, images and stateless video jobs.
//! - `audio`: transcriptions and translations (what it heard, in the format asked for) and
//!   speech (a short valid audio file, streamed).

pub mod audio;
pub mod chat;
pub mod openai;

use super::{Call, UpstreamResponse};
use crate::surfaces::Surface;

/// The mock's answer to one call, in the call's format.
pub fn answer(call: &Call<'_>) -> UpstreamResponse {
    match call.format {
        Surface::OpenAiChat => chat::chat_completions(&call.body, call.stream),
        Surface::AnthropicMessages => chat::messages(&call.body, call.stream),
        Surface::OpenAiResponses => openai::responses(&call.body, call.stream),
        Surface::OpenAiEmbeddings => openai::embeddings(&call.body),
        Surface::OpenAiImages => openai::images(&call.body),
        Surface::OpenAiVideos => openai::create_video(&call.body, call.model),
        Surface::Gemini => chat::generate_content(&call.body, call.model, call.stream),
        Surface::OpenAiTranscriptions => audio::transcription(call.upload, false),
        Surface::OpenAiTranslations => audio::transcription(call.upload, true),
        Surface::OpenAiSpeech => audio::speech(&call.body),
    }
}

/// The mock's own token figure (about four bytes a token) for the usage it reports. Answers a
/// real provider did not meter are counted by `crate::estimate` instead.
pub fn estimate_tokens(text_len: usize) -> u64 {
    (text_len as u64).div_ceil(4)
}
