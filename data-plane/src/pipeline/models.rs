//! `GET /v1/models`: the aliases the key may use. A short pipeline of its own: accept,
//! authenticate, the key's `models` endpoint family, answer, account.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use modelgate_shared::key_view::KeyView;

use super::account;
use super::admit;
use super::answer::{reject, with_request_id};
use super::context::App;
use crate::auth;
use crate::error::ProxyError;
use crate::surfaces::Surface;

pub async fn list(app: App, headers: &HeaderMap) -> Response {
    let request_id = modelgate_shared::new_id().to_string();
    let mut rec = account::open(&app, "models", &request_id, headers);
    if rec.refused() {
        return reject(Surface::OpenAiChat, rec, ProxyError::metering_unavailable()).await;
    }
    let runtime = app.runtime.load_full();
    let presented = auth::presented_key(headers);
    let key = match admit::authenticate(&mut rec, &runtime, presented, headers, "models") {
        Ok(k) => k.key(),
        Err(e) => return reject(Surface::OpenAiChat, rec, e).await,
    };
    rec.answered(200);
    let mut aliases: Vec<&str> = runtime
        .groups
        .keys()
        .map(String::as_str)
        .filter(|a| key.may_use(a))
        .collect();
    aliases.sort_unstable();
    let data: Vec<_> = aliases
        .into_iter()
        .map(|a| serde_json::json!({"id": a, "object": "model", "created": 0, "owned_by": "modelgate"}))
        .collect();
    account::write(rec).await;
    let body = serde_json::json!({"object": "list", "data": data});
    with_request_id(axum::Json(body).into_response(), &request_id)
}
