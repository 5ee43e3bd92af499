//! The HTTP edge: the proxy's routes, each a thin handler over the pipeline (`crate::pipeline`),
//! the anonymous guard in front of them (`anonymous`), the metrics listener's `/metrics`
//! (`metrics`), and the worker threads that serve the proxy listener (`workers`). Routes: `POST /v1/chat/completions` (OpenAI), `POST /v1/messages` (Anthropic),
//! `POST /v1/responses`, `POST /v1/embeddings`, `POST /v1/images/generations`,
//! `POST /v1/audio/transcriptions`, `/v1/audio/translations`, `/v1/audio/speech` (OpenAI,
//! pass-through), video jobs under `/v1/videos`, Gemini's `generateContent` and
//! `streamGenerateContent` under `/v1beta/models/` and `/v1/models/`, `GET /v1/models`.

mod anonymous;
mod metrics;
pub mod workers;

use axum::extract::{Path, RawQuery, Request, State};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use crate::error::ProxyError;
use crate::pipeline::{self, account, answer, models, videos, App};
use crate::surfaces::Surface;

pub fn router(app: App) -> Router {
    Router::new()
        .route("/v1/chat/completions", serving(Surface::OpenAiChat))
        .route("/v1/messages", serving(Surface::AnthropicMessages))
        .route("/v1/responses", serving(Surface::OpenAiResponses))
        .route("/v1/embeddings", serving(Surface::OpenAiEmbeddings))
        .route("/v1/images/generations", serving(Surface::OpenAiImages))
        .route(
            "/v1/audio/transcriptions",
            serving(Surface::OpenAiTranscriptions),
        )
        .route(
            "/v1/audio/translations",
            serving(Surface::OpenAiTranslations),
        )
        .route("/v1/audio/speech", serving(Surface::OpenAiSpeech))
        .route("/v1/videos", post(videos_create))
        .route("/v1/videos/{id}", get(videos_retrieve))
        .route("/v1/videos/{id}/content", get(videos_content))
        .route("/v1beta/models/{*rest}", serving(Surface::Gemini))
        // Google's stable version (the google-genai SDK's default) has the same wire format.
        .route("/v1/models/{*rest}", serving(Surface::Gemini))
        .route("/v1/models", get(list_models))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(unknown_route)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            anonymous::guard,
        ))
        .with_state(app)
}

/// The metrics listener's routes (`--metrics-listen`, loopback by default): `/metrics` is not
/// served on the proxy port.
/// `certificates`: the files whose expiry the scrape reports (the node's client certificate
/// and the fleet CA), when the channel uses TLS.
pub fn metrics_router(app: App, certificates: Option<modelgate_shared::tls::TlsFiles>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .with_state((app, certificates.map(std::sync::Arc::new)))
}

/// A request of `surface`, its head taken apart from its body by value: axum's `HeaderMap` and
/// `Uri` extractors would copy them for every request. The URI matters to Gemini only (it
/// names the model there); the other surfaces read the model from the body.
async fn serve(app: App, surface: Surface, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    pipeline::serve(app, surface, parts.headers, &parts.uri, body).await
}

/// The `POST` route of a surface served by the pipeline as it is.
fn serving(surface: Surface) -> MethodRouter<App> {
    post(move |State(app): State<App>, req: Request| serve(app, surface, req))
}

async fn videos_create(State(app): State<App>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    videos::create(app, parts.uri, parts.headers, body).await
}

async fn videos_retrieve(State(app): State<App>, Path(id): Path<String>, req: Request) -> Response {
    videos::job_request(app, id, req.into_parts().0.headers, None).await
}

async fn videos_content(
    State(app): State<App>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let headers = req.into_parts().0.headers;
    videos::job_request(app, id, headers, Some(query.unwrap_or_default())).await
}

async fn list_models(State(app): State<App>, req: Request) -> Response {
    models::list(app, req.into_parts().0.headers).await
}

async fn unknown_route(State(app): State<App>, req: Request) -> Response {
    let request_id = modelgate_shared::new_id().to_string();
    let rec = account::open(&app, "unknown", &request_id, req.headers());
    answer::reject(
        Surface::OpenAiChat,
        rec,
        ProxyError::not_found_route(req.uri().path()),
    )
    .await
}
