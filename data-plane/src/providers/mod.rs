//! Provider adapters: how to call each kind of provider (URI, auth and version headers). Each
//! adapter sends a body already in the provider's format (the client's own, rewritten, or
//! translated by `crate::translate`) and returns an [`UpstreamResponse`]; the pipeline passes it
//! to the client byte for byte when the client speaks the same format, and translates it back
//! otherwise. The built-in mock lives apart, in [`mock`], and is dispatched to by [`send`] like
//! any other kind.

pub mod anthropic;
pub mod azure;
pub mod gemini;
pub mod mock;
pub mod openai;
pub mod upstream;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use modelgate_shared::snapshot::{ProviderAccount, ProviderKind};
use thiserror::Error;

use crate::surfaces::Surface;

/// A failure to get a response from upstream at all (as opposed to an upstream error status).
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("could not connect to the provider: {0}")]
    Connect(String),
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("reading the provider's response failed: {0}")]
    Read(String),
    #[error("the provider's answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
}

/// The largest answer read whole from a provider (a JSON answer, an error body, a video job
/// object): 32 MiB. Streams are framed event by event instead (`crate::sse::MAX_EVENT_BYTES`), and a
/// video's content is passed through as it arrives, never held.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Reads a whole body, refusing one longer than `limit` bytes (without reading past it).
pub async fn read_capped<B>(body: B, limit: usize) -> Result<Bytes, UpstreamError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(UpstreamError::TooLarge { limit })
        }
        Err(e) => Err(UpstreamError::Read(e.to_string())),
    }
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

pub use upstream::{http_client, HttpClient};

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

/// A provider account's parsed endpoint, built once per snapshot.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// Boxed: it holds a URI per surface.
    OpenAi(Box<openai::Endpoint>),
    Anthropic(anthropic::Endpoint),
    Azure(azure::Endpoint),
    Gemini(gemini::Endpoint),
}

impl Endpoint {
    /// `None` for the built-in mock and for an account whose base URL is not a valid URI.
    pub fn for_provider(p: &ProviderAccount) -> Option<Endpoint> {
        match p.kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
                openai::Endpoint::for_provider(p).map(|e| Endpoint::OpenAi(Box::new(e)))
            }
            ProviderKind::Anthropic => {
                anthropic::Endpoint::for_provider(p).map(Endpoint::Anthropic)
            }
            ProviderKind::AzureOpenAi => azure::Endpoint::for_provider(p).map(Endpoint::Azure),
            ProviderKind::Gemini => gemini::Endpoint::for_provider(p).map(Endpoint::Gemini),
            ProviderKind::Mock => None,
        }
    }
}

/// One call to a provider.
pub struct Call<'a> {
    pub provider: &'a ProviderAccount,
    /// Built once per snapshot for HTTP providers; `None` for the built-in mock.
    pub endpoint: Option<&'a Endpoint>,
    /// The body, already in the provider's format.
    pub body: Bytes,
    /// The format of `body` (the mock answers in either).
    pub format: Surface,
    /// The deployment's model name (Azure's deployment name; Gemini puts it in the URL).
    pub model: &'a str,
    pub stream: bool,
    pub request_id: &'a str,
    /// The Anthropic client's `anthropic-version` and `anthropic-beta` headers, if any.
    pub anthropic_version: Option<&'a HeaderValue>,
    pub anthropic_beta: Option<&'a HeaderValue>,
    /// A transcription or translation upload: `body` is its multipart encoding, sent with its
    /// content type (the mock reads the parsed parts instead).
    pub upload: Option<&'a crate::surfaces::openai_audio::Upload>,
    /// The W3C trace context the call carries (`traceparent`, `tracestate`), if any.
    pub trace: crate::trace::UpstreamHeaders<'a>,
}

pub async fn send(client: &HttpClient, call: Call<'_>) -> Result<UpstreamResponse, UpstreamError> {
    match (call.provider.kind, call.endpoint) {
        (ProviderKind::Mock, _) => Ok(mock::answer(&call)),
        (_, Some(Endpoint::OpenAi(e))) => openai::send(client, e, call).await,
        (_, Some(Endpoint::Anthropic(e))) => anthropic::send(client, e, call).await,
        (_, Some(Endpoint::Azure(e))) => azure::send(client, e, call).await,
        (_, Some(Endpoint::Gemini(e))) => gemini::send(client, e, call).await,
        (_, None) => Err(UpstreamError::Connect(format!(
            "provider `{}` has an invalid base URL",
            call.provider.name
        ))),
    }
}

/// Sends a prepared request (URI, auth and format headers set) and reads the answer: a stream
/// for a successful streamed call, the whole body otherwise (at most [`MAX_ANSWER_BYTES`]).
pub(crate) async fn execute(
    client: &HttpClient,
    mut req: http::request::Builder,
    call: Call<'_>,
) -> Result<UpstreamResponse, UpstreamError> {
    if let Ok(id) = HeaderValue::from_str(call.request_id) {
        req = req.header("x-request-id", id);
    }
    let req = call.trace.apply(req);
    let req = req
        .body(Full::new(call.body))
        .map_err(|e| UpstreamError::Connect(e.to_string()))?;
    let resp = client.request(req).await?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp.headers().get(CONTENT_TYPE).cloned();
    let retry_after_secs = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = resp.into_body();
    let body = if call.stream && status.is_success() {
        Body::Stream(
            body.into_data_stream()
                .map_err(|e| UpstreamError::Read(e.to_string()))
                .boxed(),
        )
    } else {
        Body::Full(read_capped(body, MAX_ANSWER_BYTES).await?)
    };
    Ok(UpstreamResponse {
        status,
        content_type,
        retry_after_secs,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_over_the_cap_is_refused_and_one_at_the_cap_is_read() {
        let at_cap = Full::new(Bytes::from(vec![b'x'; 64]));
        assert_eq!(read_capped(at_cap, 64).await.unwrap().len(), 64);
        let over = Full::new(Bytes::from(vec![b'x'; 65]));
        let err = read_capped(over, 64).await.unwrap_err();
        assert!(
            matches!(err, UpstreamError::TooLarge { limit: 64 }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "the provider's answer is larger than 64 bytes"
        );
    }
}
