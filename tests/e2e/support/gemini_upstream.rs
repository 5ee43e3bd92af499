//! A mock Gemini upstream: a real HTTP server on loopback speaking the Gemini API's wire format
//! (`POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` with
//! `data: …\r\n\r\n` chunks, camelCase fields, `usageMetadata` with cached and thought tokens,
//! Google error bodies). It records each request's path, query, `x-goog-api-key` and body, can
//! answer with a `functionCall` part (when the request declares functions), fail with a Google
//! error body, or cut a stream before its finish reason.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

pub const PROMPT_TOKENS: u64 = 19;
pub const CACHED_TOKENS: u64 = 5;
pub const CANDIDATES_TOKENS: u64 = 8;
pub const THOUGHTS_TOKENS: u64 = 3;
pub const REPLY: &str = "Hello from the Gemini mock.";
pub const TOOL_ARGS: &str = r#"{"city":"Paris","unit":"celsius"}"#;

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub query: Option<String>,
    pub api_key: Option<String>,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct GeminiUpstream {
    pub addr: Option<SocketAddr>,
    received: Arc<Mutex<Vec<Received>>>,
    fail_with: Arc<Mutex<Option<u16>>>,
    cut_stream: Arc<Mutex<bool>>,
}

impl GeminiUpstream {
    pub async fn start() -> GeminiUpstream {
        let mut upstream = GeminiUpstream::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        upstream.addr = Some(listener.local_addr().unwrap());
        let app = Router::new()
            .route("/v1beta/models/{*rest}", post(generate))
            .with_state(upstream.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        upstream
    }

    /// The base URL a `gemini` provider account should use (the host root).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    pub fn calls(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn last(&self) -> Received {
        self.received.lock().unwrap().last().cloned().unwrap()
    }

    pub fn fail_with(&self, status: Option<u16>) {
        *self.fail_with.lock().unwrap() = status;
    }

    /// Streams end after their first chunk, without a finish reason.
    pub fn cut_streams(&self, cut: bool) {
        *self.cut_stream.lock().unwrap() = cut;
    }
}

pub fn usage_metadata() -> Value {
    json!({
        "promptTokenCount": PROMPT_TOKENS,
        "candidatesTokenCount": CANDIDATES_TOKENS,
        "thoughtsTokenCount": THOUGHTS_TOKENS,
        "cachedContentTokenCount": CACHED_TOKENS,
        "totalTokenCount": PROMPT_TOKENS + CANDIDATES_TOKENS + THOUGHTS_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}],
    })
}

/// The exact JSON body a non-streamed request is answered with.
pub fn response_body(model: &str, with_tool: bool) -> String {
    let mut parts = vec![json!({"text": REPLY})];
    if with_tool {
        parts = vec![json!({"functionCall": {"name": "get_weather",
            "args": serde_json::from_str::<Value>(TOOL_ARGS).unwrap()}})];
    }
    json!({
        "candidates": [{
            "content": {"parts": parts, "role": "model"},
            "finishReason": "STOP",
            "avgLogprobs": -0.12,
            "index": 0,
        }],
        "usageMetadata": usage_metadata(),
        "modelVersion": model,
        "responseId": "gemini-mock-1",
    })
    .to_string()
}

fn chunk(v: Value) -> String {
    format!("data: {v}\r\n\r\n")
}

/// The exact SSE text a streamed request is answered with: text in pieces (each chunk with the
/// prompt count so far), then the last chunk with `finishReason` and the totals.
pub fn stream_body(model: &str, with_tool: bool) -> String {
    let partial = json!({"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS});
    let mut sse = String::new();
    if with_tool {
        sse += &chunk(json!({
            "candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather",
                "args": serde_json::from_str::<Value>(TOOL_ARGS).unwrap()}}], "role": "model"},
                "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage_metadata(), "modelVersion": model, "responseId": "gemini-mock-2",
        }));
        return sse;
    }
    let words: Vec<&str> = REPLY.split_inclusive(' ').collect();
    for (i, word) in words.iter().enumerate() {
        let last = i + 1 == words.len();
        let mut candidate =
            json!({"content": {"parts": [{"text": word}], "role": "model"}, "index": 0});
        if last {
            candidate["finishReason"] = json!("STOP");
        }
        sse += &chunk(json!({
            "candidates": [candidate],
            "usageMetadata": if last { usage_metadata() } else { partial.clone() },
            "modelVersion": model, "responseId": "gemini-mock-2",
        }));
    }
    sse
}

/// Google's error body for a status.
pub fn error_body(status: u16) -> Value {
    let name = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    json!({"error": {"code": status, "message": "mock gemini failure", "status": name}})
}

async fn generate(
    State(up): State<GeminiUpstream>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    up.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        api_key: headers
            .get("x-goog-api-key")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: request.clone(),
    });
    if let Some(status) = *up.fail_with.lock().unwrap() {
        return (
            StatusCode::from_u16(status).unwrap(),
            axum::Json(error_body(status)),
        )
            .into_response();
    }
    let rest = uri.path().trim_start_matches("/v1beta/models/");
    let Some((model, method)) = rest.rsplit_once(':') else {
        return (StatusCode::NOT_FOUND, axum::Json(error_body(404))).into_response();
    };
    let with_tool = request["tools"][0]["functionDeclarations"].is_array();
    match method {
        "generateContent" => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            response_body(model, with_tool),
        )
            .into_response(),
        "streamGenerateContent" if uri.query() == Some("alt=sse") => {
            let mut sse = stream_body(model, with_tool);
            if *up.cut_stream.lock().unwrap() {
                let cut = sse.find("\r\n\r\n").map_or(sse.len(), |i| i + 4);
                sse.truncate(cut);
            }
            (
                [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                sse,
            )
                .into_response()
        }
        _ => (StatusCode::BAD_REQUEST, axum::Json(error_body(400))).into_response(),
    }
}
