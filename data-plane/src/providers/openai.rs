//! OpenAI and OpenAI-compatible providers: the request body is already in their format.

use futures_util::{StreamExt, TryStreamExt};
use http::header::CONTENT_TYPE;
use http::StatusCode;

use super::{Body, Call, UpstreamError, UpstreamResponse};

pub async fn send(
    client: &reqwest::Client,
    call: Call<'_>,
) -> Result<UpstreamResponse, UpstreamError> {
    let url = format!("{}{}", call.provider.base_url, call.path);
    let mut req = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header("x-request-id", call.request_id)
        .body(call.body);
    if !call.provider.credential.is_empty() {
        req = req.bearer_auth(&call.provider.credential);
    }
    let resp = req.send().await.map_err(classify)?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp.headers().get(CONTENT_TYPE).cloned();
    let body = if call.stream && status.is_success() {
        Body::Stream(
            resp.bytes_stream()
                .map_err(|e| UpstreamError::Read(e.to_string()))
                .boxed(),
        )
    } else {
        Body::Full(resp.bytes().await.map_err(classify)?)
    };
    Ok(UpstreamResponse {
        status,
        content_type,
        body,
    })
}

fn classify(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout
    } else if e.is_connect() {
        UpstreamError::Connect(e.to_string())
    } else {
        UpstreamError::Read(e.to_string())
    }
}
