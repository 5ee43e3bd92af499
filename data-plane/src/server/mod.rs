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

use std::future::Future;
use std::net::SocketAddr;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::request::Parts;
use http::{HeaderValue, Method};
use modelgate_listener::{Handler, TimedBody};

use crate::error::ProxyError;
use crate::pipeline::{self, account, answer, models, videos, App};
use crate::surfaces::gemini::percent_decode;
use crate::surfaces::Surface;

/// The proxy port's handler: the anonymous guard (`anonymous`) around [`route`]. It is called
/// by the listener directly, with no router, boxed service or extension map in between: the
/// routes are few and fixed, and a `match` on the path finds them.
#[derive(Clone)]
pub struct Proxy(App);

impl Proxy {
    pub fn new(app: App) -> Proxy {
        Proxy(app)
    }
}

impl Handler for Proxy {
    fn call(
        &self,
        req: http::Request<TimedBody>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send + use<> {
        anonymous::guard(self.0.clone(), req, peer)
    }
}

/// What a path and method are served by.
enum Route<'a> {
    /// A surface's `POST` route, served by the pipeline.
    Surface(Surface),
    ListModels,
    Health,
    VideoCreate,
    VideoRetrieve(&'a str),
    VideoContent(&'a str),
}

impl<'a> Route<'a> {
    /// The route `path` names, and the method it takes; `None` for a path the proxy does not
    /// serve.
    fn of(path: &'a str) -> Option<(Route<'a>, Method)> {
        let surface = match path {
            "/v1/chat/completions" => Some(Surface::OpenAiChat),
            "/v1/messages" => Some(Surface::AnthropicMessages),
            "/v1/responses" => Some(Surface::OpenAiResponses),
            "/v1/embeddings" => Some(Surface::OpenAiEmbeddings),
            "/v1/images/generations" => Some(Surface::OpenAiImages),
            "/v1/audio/transcriptions" => Some(Surface::OpenAiTranscriptions),
            "/v1/audio/translations" => Some(Surface::OpenAiTranslations),
            "/v1/audio/speech" => Some(Surface::OpenAiSpeech),
            // Google's stable version (the google-genai SDK's default) has the same wire
            // format as `v1beta`; the model and method follow in the path.
            _ if nonempty_after(path, "/v1beta/models/") || nonempty_after(path, "/v1/models/") => {
                Some(Surface::Gemini)
            }
            _ => None,
        };
        if let Some(surface) = surface {
            return Some((Route::Surface(surface), Method::POST));
        }
        match path {
            "/v1/models" => return Some((Route::ListModels, Method::GET)),
            "/healthz" => return Some((Route::Health, Method::GET)),
            "/v1/videos" => return Some((Route::VideoCreate, Method::POST)),
            _ => {}
        }
        let rest = path.strip_prefix("/v1/videos/")?;
        match rest.split_once('/') {
            None if !rest.is_empty() => Some((Route::VideoRetrieve(rest), Method::GET)),
            Some((id, "content")) if !id.is_empty() => Some((Route::VideoContent(id), Method::GET)),
            _ => None,
        }
    }
}

/// The `allow` header's value for a route taking `method`.
fn allow(method: &Method) -> &'static str {
    if *method == Method::GET {
        "GET, HEAD"
    } else {
        "POST"
    }
}

fn nonempty_after(path: &str, prefix: &str) -> bool {
    path.len() > prefix.len() && path.starts_with(prefix)
}

/// Serves one request on the route its path names.
async fn route(app: App, parts: &Parts, body: TimedBody) -> Response {
    let path = parts.uri.path();
    let Some((route, method)) = Route::of(path) else {
        return refuse(app, parts, ProxyError::not_found_route(path)).await;
    };
    // `HEAD` is served as `GET` (hyper sends no body for it).
    let allowed = parts.method == method || (method == Method::GET && parts.method == Method::HEAD);
    if !allowed {
        let mut resp = refuse(
            app,
            parts,
            ProxyError::method_not_allowed(&parts.method, path),
        )
        .await;
        resp.headers_mut().insert(
            http::header::ALLOW,
            HeaderValue::from_static(allow(&method)),
        );
        return resp;
    }
    let headers = &parts.headers;
    match route {
        Route::Surface(surface) => {
            pipeline::serve(app, surface, headers, &parts.uri, Body::new(body)).await
        }
        Route::ListModels => models::list(app, headers).await,
        Route::Health => "ok".into_response(),
        Route::VideoCreate => videos::create(app, &parts.uri, headers, Body::new(body)).await,
        Route::VideoRetrieve(id) => {
            videos::job_request(app, percent_decode(id), headers, None).await
        }
        Route::VideoContent(id) => {
            let query = parts.uri.query().unwrap_or_default().to_owned();
            videos::job_request(app, percent_decode(id), headers, Some(query)).await
        }
    }
}

/// A request the proxy has no route for (or not with its method), refused in OpenAI's format.
async fn refuse(app: App, parts: &Parts, e: ProxyError) -> Response {
    let request_id = modelgate_shared::new_id().to_string();
    let rec = account::open(&app, "unknown", &request_id, &parts.headers);
    answer::reject(Surface::OpenAiChat, rec, e).await
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The route and method a path names, as a comparable string.
    fn route(path: &str) -> Option<(String, Method)> {
        Route::of(path).map(|(r, m)| {
            let name = match r {
                Route::Surface(s) => format!("surface {}", s.endpoint()),
                Route::ListModels => "models".to_owned(),
                Route::Health => "health".to_owned(),
                Route::VideoCreate => "video create".to_owned(),
                Route::VideoRetrieve(id) => format!("video {id}"),
                Route::VideoContent(id) => format!("video content {id}"),
            };
            (name, m)
        })
    }

    #[test]
    fn each_proxy_path_names_its_route_and_method_and_near_misses_name_none() {
        let post = |name: &str| Some((name.to_owned(), Method::POST));
        let get = |name: &str| Some((name.to_owned(), Method::GET));
        for (path, surface) in [
            ("/v1/chat/completions", Surface::OpenAiChat),
            ("/v1/messages", Surface::AnthropicMessages),
            ("/v1/responses", Surface::OpenAiResponses),
            ("/v1/embeddings", Surface::OpenAiEmbeddings),
            ("/v1/images/generations", Surface::OpenAiImages),
            ("/v1/audio/transcriptions", Surface::OpenAiTranscriptions),
            ("/v1/audio/translations", Surface::OpenAiTranslations),
            ("/v1/audio/speech", Surface::OpenAiSpeech),
            (
                "/v1beta/models/gemini-2.0-flash:generateContent",
                Surface::Gemini,
            ),
            (
                "/v1/models/gemini-2.0-flash:streamGenerateContent",
                Surface::Gemini,
            ),
        ] {
            assert_eq!(
                route(path),
                post(&format!("surface {}", surface.endpoint())),
                "{path}"
            );
        }
        assert_eq!(route("/v1/models"), get("models"));
        assert_eq!(route("/healthz"), get("health"));
        assert_eq!(route("/v1/videos"), post("video create"));
        assert_eq!(route("/v1/videos/video_1"), get("video video_1"));
        assert_eq!(
            route("/v1/videos/video_1/content"),
            get("video content video_1")
        );
        for path in [
            "/",
            "/v1/chat/completions/",
            "/v1/chat",
            "/v1beta/models/",
            "/v1/models/",
            "/v1/videos/",
            "/v1/videos//content",
            "/v1/videos/video_1/other",
            "/v1/videos/video_1/content/x",
            "/metrics",
        ] {
            assert_eq!(route(path), None, "{path}");
        }
    }
}
