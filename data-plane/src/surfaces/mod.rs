//! Client-facing surfaces: one module per wire format a client may speak to the gateway.
//! Each knows how to peek its request (model, stream, usage wishes) without building a JSON
//! tree, and how to render a [`ProxyError`] in its own error format. The classification of an
//! error (status, [`ErrorClass`](modelgate_shared::usage::ErrorClass)) is the same everywhere;
//! only the rendering differs.
//!
//! | surface            | route                      | error body                                   |
//! |--------------------|----------------------------|----------------------------------------------|
//! | `openai_chat`      | `POST /v1/chat/completions`| `{"error":{"message","type","param","code"}}`|
//! | `anthropic_messages` | `POST /v1/messages`      | `{"type":"error","error":{"type","message"}}`|
//! | `openai_responses` | `POST /v1/responses`       | OpenAI's (stream errors: `event: error`)     |
//! | `openai_embeddings`| `POST /v1/embeddings`      | OpenAI's                                     |
//! | `openai_images`    | `POST /v1/images/generations` | OpenAI's                                  |
//! | `openai_audio`     | `POST /v1/audio/transcriptions`, `/v1/audio/translations` (multipart), `/v1/audio/speech` | OpenAI's |
//!
//! Responses, embeddings, images, video and audio are pass-through surfaces: they are only
//! served by deployments that speak OpenAI's format (openai, openai-compatible, azure-openai —
//! not for audio —, mock); any other deployment refuses them with a 400 naming the reason (see
//! [`Surface::passthrough_only`]).
//! | `gemini`           | `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` | `{"error":{"code","message","status"}}` |

pub mod anthropic_messages;
pub mod gemini;
pub mod openai_audio;
pub mod openai_chat;
pub mod openai_embeddings;
pub mod openai_images;
pub mod openai_responses;
pub mod openai_videos;
pub mod rewrite;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use modelgate_shared::snapshot::ProviderKind;

use crate::error::ProxyError;

/// A wire format, as spoken by a client or by a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    OpenAiChat,
    AnthropicMessages,
    OpenAiResponses,
    OpenAiEmbeddings,
    OpenAiImages,
    /// `POST /v1/videos` (job creation; polls and downloads are handled in `pipeline::videos`).
    OpenAiVideos,
    /// Google Gemini `generateContent`.
    Gemini,
    /// `POST /v1/audio/transcriptions` (multipart upload).
    OpenAiTranscriptions,
    /// `POST /v1/audio/translations` (multipart upload).
    OpenAiTranslations,
    /// `POST /v1/audio/speech` (audio streamed back).
    OpenAiSpeech,
}

impl Surface {
    /// Name used in the `x-modelgate-translated` header (`from->to`).
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::OpenAiChat => "openai-chat",
            Surface::AnthropicMessages => "anthropic-messages",
            Surface::OpenAiResponses => "openai-responses",
            Surface::OpenAiEmbeddings => "openai-embeddings",
            Surface::OpenAiImages => "openai-images",
            Surface::OpenAiVideos => "openai-videos",
            Surface::Gemini => "gemini",
            Surface::OpenAiTranscriptions => "openai-audio-transcriptions",
            Surface::OpenAiTranslations => "openai-audio-translations",
            Surface::OpenAiSpeech => "openai-audio-speech",
        }
    }

    /// The usage event's `endpoint` and the key's endpoint family.
    pub fn endpoint(self) -> &'static str {
        match self {
            Surface::OpenAiChat => "chat.completions",
            Surface::AnthropicMessages => "messages",
            Surface::OpenAiResponses => "responses",
            Surface::OpenAiEmbeddings => "embeddings",
            Surface::OpenAiImages => "images.generations",
            Surface::OpenAiVideos => "videos",
            Surface::Gemini => "generate_content",
            Surface::OpenAiTranscriptions => "audio.transcriptions",
            Surface::OpenAiTranslations => "audio.translations",
            Surface::OpenAiSpeech => "audio.speech",
        }
    }

    pub fn family(self) -> &'static str {
        match self {
            Surface::OpenAiChat => "chat",
            Surface::AnthropicMessages => "messages",
            Surface::OpenAiResponses => "responses",
            Surface::OpenAiEmbeddings => "embeddings",
            Surface::OpenAiImages => "images",
            Surface::OpenAiVideos => "video",
            Surface::Gemini => "generate_content",
            Surface::OpenAiTranscriptions | Surface::OpenAiTranslations | Surface::OpenAiSpeech => {
                "audio"
            }
        }
    }

    /// A multipart upload (transcriptions, translations), peeked by
    /// [`openai_audio::peek_upload`] rather than [`Surface::peek`].
    pub fn is_upload(self) -> bool {
        matches!(
            self,
            Surface::OpenAiTranscriptions | Surface::OpenAiTranslations
        )
    }

    pub fn is_audio(self) -> bool {
        self.is_upload() || self == Surface::OpenAiSpeech
    }

    /// Surfaces served only by deployments speaking OpenAI's format, never translated.
    pub fn passthrough_only(self) -> bool {
        matches!(
            self,
            Surface::OpenAiResponses
                | Surface::OpenAiEmbeddings
                | Surface::OpenAiImages
                | Surface::OpenAiVideos
                | Surface::OpenAiTranscriptions
                | Surface::OpenAiTranslations
                | Surface::OpenAiSpeech
        )
    }

    /// The format a deployment of `kind` is called in, for a client speaking `self`. The
    /// built-in mock speaks every surface, so it is always called in the client's format.
    pub fn upstream_for(self, kind: ProviderKind) -> Surface {
        if self.passthrough_only() {
            // Never translated; a deployment that cannot take it refuses it before any call.
            return self;
        }
        match kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::AzureOpenAi => {
                Surface::OpenAiChat
            }
            ProviderKind::Anthropic => Surface::AnthropicMessages,
            ProviderKind::Gemini => Surface::Gemini,
            ProviderKind::Mock => self,
        }
    }

    /// The error's JSON body in this surface's format.
    pub fn error_body(self, e: &ProxyError) -> serde_json::Value {
        match self {
            Surface::OpenAiChat
            | Surface::OpenAiResponses
            | Surface::OpenAiEmbeddings
            | Surface::OpenAiImages
            | Surface::OpenAiVideos
            | Surface::OpenAiTranscriptions
            | Surface::OpenAiTranslations
            | Surface::OpenAiSpeech => openai_chat::error_body(e),
            Surface::AnthropicMessages => anthropic_messages::error_body(e),
            Surface::Gemini => gemini::error_body(e),
        }
    }

    /// The error as a response in this surface's format (same status everywhere).
    pub fn error_response(self, e: &ProxyError) -> Response {
        let mut r = (e.status, axum::Json(self.error_body(e))).into_response();
        if let Some(secs) = e.retry_after_secs {
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        r
    }

    /// The SSE event that ends a stream which failed after its first byte.
    pub fn error_event(self, e: &ProxyError) -> Bytes {
        match self {
            Surface::OpenAiChat
            | Surface::OpenAiEmbeddings
            | Surface::OpenAiImages
            | Surface::OpenAiVideos
            | Surface::OpenAiTranscriptions
            | Surface::OpenAiTranslations
            | Surface::OpenAiSpeech
            | Surface::Gemini => Bytes::from(format!("data: {}\n\n", self.error_body(e))),
            Surface::OpenAiResponses => openai_responses::error_event(e),
            Surface::AnthropicMessages => {
                Bytes::from(format!("event: error\ndata: {}\n\n", self.error_body(e)))
            }
        }
    }
}

/// What the gateway needs to know of a request before routing it.
#[derive(Debug)]
pub struct Peeked {
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`; Anthropic streams always carry usage.
    pub client_wants_usage: bool,
    /// The output bound the client set (`max_completion_tokens`, `max_tokens`), used to
    /// reserve a request's worst-case cost against a budget.
    pub max_output_tokens: Option<u64>,
    /// The audio surfaces' upload or speech input; `Media::None` elsewhere.
    pub media: openai_audio::Media,
}

impl Surface {
    /// Peeks a request body in this surface's format.
    pub fn peek(self, raw: &[u8]) -> Result<Peeked, ProxyError> {
        match self {
            Surface::OpenAiChat => openai_chat::peek(raw),
            Surface::AnthropicMessages => anthropic_messages::peek(raw),
            Surface::OpenAiResponses => openai_responses::peek(raw),
            Surface::OpenAiEmbeddings => openai_embeddings::peek(raw),
            Surface::OpenAiImages => openai_images::peek(raw),
            Surface::OpenAiVideos => openai_videos::peek(raw),
            Surface::OpenAiSpeech => openai_audio::peek_speech(raw),
            Surface::OpenAiTranscriptions | Surface::OpenAiTranslations => Err(
                ProxyError::invalid_param("file", "an upload is peeked from its multipart body"),
            ),
            // Gemini's model is in the URL: `gemini::peek` takes the parsed path.
            Surface::Gemini => Err(ProxyError::invalid_param(
                "model",
                "the Gemini surface names the model in its URL",
            )),
        }
    }
}

/// A JSON parse failure as the right error: a type error names the body, anything else is
/// malformed JSON.
pub(crate) fn parse_error(e: &serde_json::Error) -> ProxyError {
    match e.classify() {
        serde_json::error::Category::Data => ProxyError::invalid_param("body", e.to_string()),
        _ => ProxyError::invalid_json(&e.to_string()),
    }
}

/// Longest accepted model name: usage events carry it, so it is bounded.
pub const MAX_MODEL_LEN: usize = 256;

pub(crate) fn check_model(model: Option<&str>) -> Result<String, ProxyError> {
    match model {
        Some(m) if !m.is_empty() => {
            if m.len() > MAX_MODEL_LEN || m.contains('\0') {
                return Err(ProxyError::invalid_param(
                    "model",
                    format!("must be text of at most {MAX_MODEL_LEN} bytes"),
                ));
            }
            Ok(m.to_owned())
        }
        _ => Err(ProxyError::invalid_param(
            "model",
            "you must provide a model parameter",
        )),
    }
}

#[cfg(test)]
mod tests;
