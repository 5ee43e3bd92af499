//! Provider adapters: the only code that knows a provider's wire format. Each adapter turns a
//! (possibly rewritten) request body into an [`UpstreamResponse`] whose body is passed to the
//! client byte for byte.

pub mod mock;
pub mod openai;
pub mod sse;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use http::{HeaderValue, StatusCode};
use modelgate_shared::pricing::Tokens;
use modelgate_shared::snapshot::{ProviderAccount, ProviderKind};
use serde::Deserialize;
use thiserror::Error;

/// A failure to get a response from upstream at all (as opposed to an upstream error status).
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("could not connect to the provider: {0}")]
    Connect(String),
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("reading the provider's response failed: {0}")]
    Read(String),
}

pub enum Body {
    Full(Bytes),
    Stream(BoxStream<'static, Result<Bytes, UpstreamError>>),
}

pub struct UpstreamResponse {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    /// `retry-after` in seconds, when the provider sent one (429, 503).
    pub retry_after_secs: Option<u64>,
    pub body: Body,
}

/// The upstream HTTP client: hyper's pooled client over rustls (HTTP/1.1 and HTTP/2).
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<Bytes>,
>;

/// Builds an upstream client: TCP_NODELAY, the given connect timeout, pooled keep-alive, TLS
/// with the webpki roots (plain HTTP allowed for local and compatible hosts).
pub fn http_client(connect_timeout: std::time::Duration) -> HttpClient {
    use std::time::Duration;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https)
}

/// One upstream client per distinct connect timeout, so each routing group gets its own
/// timeout while groups with the same timeout share a connection pool. Looked up when a
/// snapshot is indexed, never per request; carried from one runtime to the next so pools
/// survive config changes.
#[derive(Debug, Default)]
pub struct Clients {
    by_connect_timeout_ms: std::sync::Mutex<std::collections::HashMap<u32, HttpClient>>,
}

impl Clients {
    pub fn get(&self, connect_timeout_ms: u32) -> HttpClient {
        let timeout = std::time::Duration::from_millis(u64::from(connect_timeout_ms));
        match self.by_connect_timeout_ms.lock() {
            Ok(mut map) => map
                .entry(connect_timeout_ms)
                .or_insert_with(|| http_client(timeout))
                .clone(),
            Err(_) => http_client(timeout),
        }
    }
}

/// One call to a provider.
pub struct Call<'a> {
    pub provider: &'a ProviderAccount,
    /// Built once per snapshot for HTTP providers; `None` for the built-in mock.
    pub endpoint: Option<&'a openai::Endpoint>,
    pub body: Bytes,
    pub stream: bool,
    pub request_id: &'a str,
}

pub async fn send(client: &HttpClient, call: Call<'_>) -> Result<UpstreamResponse, UpstreamError> {
    match call.provider.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => match call.endpoint {
            Some(endpoint) => openai::send(client, endpoint, call).await,
            None => Err(UpstreamError::Connect(format!(
                "provider `{}` has an invalid base URL",
                call.provider.name
            ))),
        },
        ProviderKind::Mock => Ok(mock::chat_completions(&call.body, call.stream)),
    }
}

#[derive(Deserialize)]
struct UsagePeek {
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

/// The `usage` block of an OpenAI-format response or stream chunk, if it has a non-null one.
/// OpenAI counts `prompt_tokens_details.cached_tokens` inside `prompt_tokens` and
/// `completion_tokens_details.reasoning_tokens` inside `completion_tokens`, which is the
/// convention [`Tokens`] keeps.
pub fn openai_usage(json: &[u8]) -> Option<Tokens> {
    let peek: UsagePeek = serde_json::from_slice(json).ok()?;
    peek.usage.map(|u| Tokens {
        input: u.prompt_tokens,
        output: u.completion_tokens,
        cached_input: u
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0),
        reasoning: u
            .completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0),
        ..Tokens::default()
    })
}

/// A rough token estimate (about four characters a token) for when a provider reports nothing;
/// usage rows built from it are flagged `estimated`.
pub fn estimate_tokens(text_len: usize) -> u64 {
    (text_len as u64).div_ceil(4)
}

#[cfg(test)]
mod tests;
