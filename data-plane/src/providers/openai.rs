//! OpenAI and OpenAI-compatible providers: `POST {base_url}/chat/completions` (and
//! `/responses`, `/embeddings`, `/images/generations`, `/audio/transcriptions`,
//! `/audio/translations`, `/audio/speech` for those surfaces) with `Authorization: Bearer`.
//! Uploads go as `multipart/form-data`, everything else as JSON.
//!
//! Endpoints (URIs and `Authorization` header) are built once per snapshot, not per request.

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Uri};
use modelgate_shared::snapshot::ProviderAccount;

use super::{execute, Call, HttpClient, UpstreamError, UpstreamResponse};
use crate::surfaces::Surface;

/// Where and how to call one provider account.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub chat_completions: Uri,
    pub responses: Uri,
    pub embeddings: Uri,
    pub images_generations: Uri,
    pub videos: Uri,
    pub audio_transcriptions: Uri,
    pub audio_translations: Uri,
    pub audio_speech: Uri,
    /// `{base_url}` without a trailing slash, for per-job video URIs.
    pub base_url: String,
    pub authorization: Option<HeaderValue>,
}

impl Endpoint {
    /// `None` when the account's base URL is not a valid URI.
    pub fn for_provider(p: &ProviderAccount) -> Option<Endpoint> {
        let base = p.base_url.trim_end_matches('/');
        let uri = |path: &str| format!("{base}/{path}").parse::<Uri>().ok();
        let authorization = (!p.credential.is_empty())
            .then(|| HeaderValue::from_str(&format!("Bearer {}", p.credential)).ok())
            .flatten()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Some(Endpoint {
            chat_completions: uri("chat/completions")?,
            responses: uri("responses")?,
            embeddings: uri("embeddings")?,
            images_generations: uri("images/generations")?,
            videos: uri("videos")?,
            audio_transcriptions: uri("audio/transcriptions")?,
            audio_translations: uri("audio/translations")?,
            audio_speech: uri("audio/speech")?,
            base_url: p.base_url.trim_end_matches('/').to_owned(),
            authorization,
        })
    }

    /// The URI a body in `format` is posted to.
    pub fn uri(&self, format: Surface) -> &Uri {
        match format {
            Surface::OpenAiResponses => &self.responses,
            Surface::OpenAiEmbeddings => &self.embeddings,
            Surface::OpenAiImages => &self.images_generations,
            Surface::OpenAiVideos => &self.videos,
            Surface::OpenAiTranscriptions => &self.audio_transcriptions,
            Surface::OpenAiTranslations => &self.audio_translations,
            Surface::OpenAiSpeech => &self.audio_speech,
            // A Gemini-format body never reaches an OpenAI endpoint (`upstream_for`); chat is
            // the safe default.
            Surface::OpenAiChat | Surface::AnthropicMessages | Surface::Gemini => {
                &self.chat_completions
            }
        }
    }
}

pub async fn send(
    client: &HttpClient,
    endpoint: &Endpoint,
    call: Call<'_>,
) -> Result<UpstreamResponse, UpstreamError> {
    let content_type = call.upload.map_or_else(
        || HeaderValue::from_static("application/json"),
        |u| u.content_type(),
    );
    let mut req =
        Request::post(endpoint.uri(call.format).clone()).header(CONTENT_TYPE, content_type);
    if let Some(auth) = &endpoint.authorization {
        req = req.header(AUTHORIZATION, auth.clone());
    }
    execute(client, req, call).await
}
