//! OpenAI and OpenAI-compatible providers: `POST {base_url}/chat/completions` with
//! `Authorization: Bearer`.
//!
//! Endpoints (URI and `Authorization` header) are built once per snapshot, not per request.

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Uri};
use modelgate_shared::snapshot::ProviderAccount;

use super::{execute, Call, HttpClient, UpstreamError, UpstreamResponse};

/// Where and how to call one provider account's chat completions.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub chat_completions: Uri,
    pub authorization: Option<HeaderValue>,
}

impl Endpoint {
    /// `None` when the account's base URL is not a valid URI.
    pub fn for_provider(p: &ProviderAccount) -> Option<Endpoint> {
        let chat_completions = format!("{}/chat/completions", p.base_url.trim_end_matches('/'))
            .parse()
            .ok()?;
        let authorization = (!p.credential.is_empty())
            .then(|| HeaderValue::from_str(&format!("Bearer {}", p.credential)).ok())
            .flatten()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Some(Endpoint {
            chat_completions,
            authorization,
        })
    }
}

pub async fn send(
    client: &HttpClient,
    endpoint: &Endpoint,
    call: Call<'_>,
) -> Result<UpstreamResponse, UpstreamError> {
    let mut req = Request::post(endpoint.chat_completions.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(auth) = &endpoint.authorization {
        req = req.header(AUTHORIZATION, auth.clone());
    }
    execute(client, req, call).await
}
