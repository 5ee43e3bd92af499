//! A mock OpenAI upstream: a real HTTP server on loopback that answers chat completions in
//! OpenAI's wire format (JSON or SSE), at OpenAI's path and at Azure OpenAI's deployment path,
//! records every request body it receives (and where it was sent, with which auth header), and
//! can be told to fail.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

pub const PROMPT_TOKENS: u64 = 21;
pub const COMPLETION_TOKENS: u64 = 7;
pub const REPLY: &str = "Hello from the mock upstream.";

/// What the mock does with the next requests (beyond `fail_with`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behavior {
    #[default]
    Normal,
    /// 429 with `retry-after: secs`.
    RateLimited(u64),
    /// Wait this long before answering.
    SlowFirstByte(u64),
    /// A stream that stops after its first chunk, without `[DONE]`.
    TruncatedStream,
    /// A 200 JSON answer of this many bytes (padding in an extra field).
    HugeAnswer(usize),
}

#[derive(Clone, Default)]
pub struct MockUpstream {
    pub addr: Option<SocketAddr>,
    received: Arc<Mutex<Vec<Value>>>,
    /// Path and query, and the `api-key` / `authorization` header, of each request.
    targets: Arc<Mutex<Vec<Target>>>,
    fail_with: Arc<Mutex<Option<u16>>>,
    behavior: Arc<Mutex<Behavior>>,
    /// `(cached_tokens, reasoning_tokens)` to report in usage details, if any.
    details: Arc<Mutex<Option<(u64, u64)>>>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    peak: Arc<std::sync::atomic::AtomicUsize>,
}

/// Where a request was sent, and how it authenticated.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub path_and_query: String,
    pub api_key: Option<String>,
    pub authorization: Option<String>,
    /// The W3C trace context the request carried.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// The credential of the azure-openai accounts pointed at this mock ([`MockUpstream::azure_url`]).
pub const AZURE_KEY: &str = "azure-secret-4321";

impl Target {
    /// The request was an Azure OpenAI chat call to `deployment`: Azure's path with the account's
    /// `api-version`, the `api-key` header, and no bearer token.
    pub fn assert_azure_chat(&self, deployment: &str, what: &str) {
        assert_eq!(
            self.path_and_query,
            format!(
                "/openai/deployments/{deployment}/chat/completions?api-version=2025-01-01-preview"
            ),
            "{what}"
        );
        assert_eq!(self.api_key.as_deref(), Some(AZURE_KEY), "{what}");
        assert_eq!(self.authorization, None, "{what}");
    }
}

impl MockUpstream {
    pub async fn start() -> MockUpstream {
        let mut upstream = MockUpstream::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        upstream.addr = Some(listener.local_addr().unwrap());
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route(
                "/openai/deployments/{deployment}/chat/completions",
                post(chat),
            )
            .with_state(upstream.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        upstream
    }

    /// The base URL a provider account should use.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr.unwrap())
    }

    /// The resource root an azure-openai account should use (the API version in the query).
    pub fn azure_url(&self) -> String {
        format!(
            "http://{}?api-version=2025-01-01-preview",
            self.addr.unwrap()
        )
    }

    pub fn calls(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Where every request went, in order.
    pub fn targets(&self) -> Vec<Target> {
        self.targets.lock().unwrap().clone()
    }

    /// Where the last request went.
    pub fn last_target(&self) -> Target {
        self.targets
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    pub fn last_body(&self) -> Value {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or(Value::Null)
    }

    pub fn fail_with(&self, status: Option<u16>) {
        *self.fail_with.lock().unwrap() = status;
    }

    /// The most requests the mock was ever answering at once.
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn behave(&self, b: Behavior) {
        *self.behavior.lock().unwrap() = b;
    }

    /// From now on, usage blocks carry `prompt_tokens_details.cached_tokens` and
    /// `completion_tokens_details.reasoning_tokens` (parts of the prompt and completion totals,
    /// as OpenAI counts them).
    pub fn report_details(&self, cached_tokens: u64, reasoning_tokens: u64) {
        *self.details.lock().unwrap() = Some((cached_tokens, reasoning_tokens));
    }
}

/// The usage block the mock reports.
fn usage(details: Option<(u64, u64)>) -> Value {
    let mut u = json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS, "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS});
    if let Some((cached, reasoning)) = details {
        u["prompt_tokens_details"] = json!({"cached_tokens": cached, "audio_tokens": 0});
        u["completion_tokens_details"] = json!({"reasoning_tokens": reasoning, "audio_tokens": 0});
    }
    u
}

/// Arguments of the tool call the mock makes when a request has tools.
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Paris","unit":"celsius"}"#;

/// The exact JSON body of a non-streamed answer to a request with tools: a `get_weather` call.
pub fn tool_call_body(model: &str) -> String {
    json!({
        "id": "chatcmpl-upstream-3",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_mock_1", "type": "function", "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS, "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
    })
    .to_string()
}

/// The exact JSON body the mock answers a non-streamed request with.
pub fn completion_body(model: &str) -> String {
    completion_body_with(model, None)
}

fn completion_body_with(model: &str, details: Option<(u64, u64)>) -> String {
    json!({
        "id": "chatcmpl-upstream-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
        "usage": usage(details),
        "unknown_vendor_field": {"kept": true}
    })
    .to_string()
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn chat(
    State(up): State<MockUpstream>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use std::sync::atomic::Ordering::SeqCst;
    let header = |n: &str| super::header_text(&headers, n);
    up.targets.lock().unwrap().push(Target {
        path_and_query: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        api_key: header("api-key"),
        authorization: header("authorization"),
        traceparent: header("traceparent"),
        tracestate: header("tracestate"),
    });
    let now = up.in_flight.fetch_add(1, SeqCst) + 1;
    up.peak.fetch_max(now, SeqCst);
    let _in_flight = InFlight(up.in_flight.clone());
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    up.received.lock().unwrap().push(request.clone());
    if let Some(status) = *up.fail_with.lock().unwrap() {
        let code = StatusCode::from_u16(status).unwrap();
        let err = json!({"error": {"message": "mock upstream failure", "type": "server_error", "code": null, "param": null}});
        return (code, axum::Json(err)).into_response();
    }
    let behavior = *up.behavior.lock().unwrap();
    let details = *up.details.lock().unwrap();
    match behavior {
        Behavior::RateLimited(secs) => {
            let err = json!({"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded", "param": null}});
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(axum::http::header::RETRY_AFTER, secs.to_string())],
                axum::Json(err),
            )
                .into_response();
        }
        Behavior::SlowFirstByte(ms) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await
        }
        Behavior::HugeAnswer(len) => {
            let mut body = b"{\"pad\":\"".to_vec();
            body.resize(len.saturating_sub(2), b'x');
            body.extend_from_slice(b"\"}");
            return (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
        Behavior::Normal | Behavior::TruncatedStream => {}
    }
    let model = request["model"].as_str().unwrap_or("unknown").to_owned();
    if request["stream"] == Value::Bool(true) && behavior == Behavior::TruncatedStream {
        let first = format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-cut", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": null}]})
        );
        return (
            [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
            first,
        )
            .into_response();
    }
    let with_tool = request["tools"].is_array();
    if request["stream"] != Value::Bool(true) {
        let body = if with_tool {
            tool_call_body(&model)
        } else {
            completion_body_with(&model, details)
        };
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-upstream-2", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut sse = String::new();
    sse += &chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    if with_tool {
        sse += &chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_mock_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        );
        let (a, b) = TOOL_ARGUMENTS.split_at(10);
        for part in [a, b] {
            sse += &chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                Value::Null,
            );
        }
        sse += &chunk(json!({}), json!("tool_calls"));
    } else {
        for word in REPLY.split_inclusive(' ') {
            sse += &chunk(json!({"content": word}), Value::Null);
        }
        sse += &chunk(json!({}), json!("stop"));
    }
    if request["stream_options"]["include_usage"] == Value::Bool(true) {
        sse += &format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-upstream-2", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model, "choices": [],
                   "usage": usage(details)})
        );
    }
    sse += "data: [DONE]\n\n";
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        sse,
    )
        .into_response()
}
