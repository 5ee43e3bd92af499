//! Anthropic: `POST {base_url}/v1/messages` with `x-api-key` and `anthropic-version` (the
//! client's, on `/v1/messages`, else `2023-06-01`); `anthropic-beta` is forwarded when the
//! client sent one.
//!
//! Endpoints (URI and key header) are built once per snapshot, not per request.

use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Request, Uri};
use modelgate_shared::snapshot::ProviderAccount;

use super::{execute, Call, HttpClient, UpstreamError, UpstreamResponse};
use crate::surfaces::anthropic_messages::DEFAULT_VERSION;

static API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub static VERSION: HeaderName = HeaderName::from_static("anthropic-version");
pub static BETA: HeaderName = HeaderName::from_static("anthropic-beta");

/// Where and how to call one Anthropic account's Messages API.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub messages: Uri,
    pub api_key: Option<HeaderValue>,
}

impl Endpoint {
    /// `None` when the account's base URL is not a valid URI.
    pub fn for_provider(p: &ProviderAccount) -> Option<Endpoint> {
        let base = p.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let messages = format!("{base}/v1/messages").parse().ok()?;
        let api_key = (!p.credential.is_empty())
            .then(|| HeaderValue::from_str(&p.credential).ok())
            .flatten()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Some(Endpoint { messages, api_key })
    }
}

pub async fn send(
    client: &HttpClient,
    endpoint: &Endpoint,
    call: Call<'_>,
) -> Result<UpstreamResponse, UpstreamError> {
    let mut req = Request::post(endpoint.messages.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(
            VERSION.clone(),
            call.anthropic_version
                .cloned()
                .unwrap_or(HeaderValue::from_static(DEFAULT_VERSION)),
        );
    if let Some(beta) = call.anthropic_beta {
        req = req.header(BETA.clone(), beta.clone());
    }
    if let Some(key) = &endpoint.api_key {
        req = req.header(API_KEY.clone(), key.clone());
    }
    execute(client, req, call).await
}
