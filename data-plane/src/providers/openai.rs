//! OpenAI and OpenAI-compatible providers: the request body is already in their format.
//!
//! Endpoints (URI and `Authorization` header) are built once per snapshot, not per request.

use futures_util::{StreamExt, TryStreamExt};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use modelgate_shared::snapshot::ProviderAccount;

use super::{Body, Call, HttpClient, UpstreamError, UpstreamResponse};

/// Where and how to call one provider account's chat completions.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub chat_completions: Uri,
    pub authorization: Option<HeaderValue>,
}

impl Endpoint {
    /// `None` when the account's base URL is not a valid URI.
    pub fn for_provider(p: &ProviderAccount) -> Option<Endpoint> {
        let chat_completions = format!("{}/chat/completions", p.base_url).parse().ok()?;
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
    if let Ok(id) = HeaderValue::from_str(call.request_id) {
        req = req.header("x-request-id", id);
    }
    let req = req
        .body(Full::new(call.body))
        .map_err(|e| UpstreamError::Connect(e.to_string()))?;
    let resp = client.request(req).await.map_err(|e| {
        if e.is_connect() {
            UpstreamError::Connect(e.to_string())
        } else {
            UpstreamError::Read(e.to_string())
        }
    })?;
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
        Body::Full(
            body.collect()
                .await
                .map_err(|e| UpstreamError::Read(e.to_string()))?
                .to_bytes(),
        )
    };
    Ok(UpstreamResponse {
        status,
        content_type,
        retry_after_secs,
        body,
    })
}
