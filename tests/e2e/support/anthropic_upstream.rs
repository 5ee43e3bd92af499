//! A mock Anthropic upstream: a real HTTP server on loopback speaking Anthropic's Messages wire
//! format (JSON, or SSE with `event:` names), with prompt-cache usage figures. It records every
//! request body and the `x-api-key` / `anthropic-version` headers it received, can answer with a
//! tool_use block (when the request has tools), fail with an Anthropic error body, or cut a
//! stream after its first events.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// Uncached input, cache-read input and output tokens of every answer.
pub const INPUT_TOKENS: u64 = 17;
pub const CACHE_READ_TOKENS: u64 = 4;
pub const OUTPUT_TOKENS: u64 = 9;
pub const REPLY: &str = "Hello from the Anthropic mock.";
pub const TOOL_INPUT: &str = r#"{"city":"Paris","unit":"celsius"}"#;

#[derive(Clone, Default)]
pub struct AnthropicUpstream {
    pub addr: Option<SocketAddr>,
    received: Arc<Mutex<Vec<(Value, HeaderMap)>>>,
    fail_with: Arc<Mutex<Option<u16>>>,
    cut_stream: Arc<Mutex<bool>>,
    error_mid_stream: Arc<Mutex<bool>>,
}

impl AnthropicUpstream {
    pub async fn start() -> AnthropicUpstream {
        let mut upstream = AnthropicUpstream::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        upstream.addr = Some(listener.local_addr().unwrap());
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(upstream.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        upstream
    }

    /// The base URL an `anthropic` provider account should use (the adapter adds `/v1/messages`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    pub fn calls(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn last_body(&self) -> Value {
        self.received
            .lock()
            .unwrap()
            .last()
            .map(|(b, _)| b.clone())
            .unwrap_or(Value::Null)
    }

    pub fn last_header(&self, name: &str) -> Option<String> {
        self.received
            .lock()
            .unwrap()
            .last()
            .and_then(|(_, h)| h.get(name).map(|v| v.to_str().unwrap().to_owned()))
    }

    pub fn fail_with(&self, status: Option<u16>) {
        *self.fail_with.lock().unwrap() = status;
    }

    pub fn cut_streams(&self, cut: bool) {
        *self.cut_stream.lock().unwrap() = cut;
    }

    /// Streams send an `overloaded_error` event after their first delta, then end.
    pub fn error_mid_stream(&self, on: bool) {
        *self.error_mid_stream.lock().unwrap() = on;
    }
}

fn usage(output: u64) -> Value {
    json!({"input_tokens": INPUT_TOKENS, "cache_creation_input_tokens": 0,
           "cache_read_input_tokens": CACHE_READ_TOKENS, "output_tokens": output})
}

/// The exact JSON body a non-streamed request is answered with.
pub fn message_body(model: &str, with_tool: bool) -> String {
    let mut content = vec![json!({"type": "text", "text": REPLY})];
    if with_tool {
        content.push(
            json!({"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather",
                            "input": serde_json::from_str::<Value>(TOOL_INPUT).unwrap()}),
        );
    }
    json!({
        "id": "msg_mock_1", "type": "message", "role": "assistant", "model": model,
        "content": content,
        "stop_reason": if with_tool { "tool_use" } else { "end_turn" },
        "stop_sequence": null,
        "usage": usage(OUTPUT_TOKENS),
    })
    .to_string()
}

fn event(data: Value) -> String {
    format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap()
    )
}

/// The exact SSE text a streamed request is answered with.
pub fn stream_body(model: &str, with_tool: bool) -> String {
    let mut sse = event(json!({"type": "message_start", "message": {
        "id": "msg_mock_2", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": usage(1)}}));
    sse += &event(
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    sse += &event(json!({"type": "ping"}));
    for word in REPLY.split_inclusive(' ') {
        sse += &event(json!({"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": word}}));
    }
    sse += &event(json!({"type": "content_block_stop", "index": 0}));
    if with_tool {
        sse += &event(json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_mock_2", "name": "get_weather", "input": {}}}));
        let (a, b) = TOOL_INPUT.split_at(10);
        for part in [a, b] {
            sse += &event(json!({"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "input_json_delta", "partial_json": part}}));
        }
        sse += &event(json!({"type": "content_block_stop", "index": 1}));
    }
    sse += &event(json!({"type": "message_delta",
        "delta": {"stop_reason": if with_tool { "tool_use" } else { "end_turn" }, "stop_sequence": null},
        "usage": {"output_tokens": OUTPUT_TOKENS}}));
    sse += &event(json!({"type": "message_stop"}));
    sse
}

async fn messages(
    State(up): State<AnthropicUpstream>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    up.received
        .lock()
        .unwrap()
        .push((request.clone(), headers.clone()));
    if let Some(status) = *up.fail_with.lock().unwrap() {
        let kind = match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        let err =
            json!({"type": "error", "error": {"type": kind, "message": "mock anthropic failure"}});
        return (StatusCode::from_u16(status).unwrap(), axum::Json(err)).into_response();
    }
    let model = request["model"].as_str().unwrap_or("unknown").to_owned();
    let with_tool = request["tools"].is_array();
    if request["stream"] != Value::Bool(true) {
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            message_body(&model, with_tool),
        )
            .into_response();
    }
    let mut sse = stream_body(&model, with_tool);
    let error_mid_stream = *up.error_mid_stream.lock().unwrap();
    if *up.cut_stream.lock().unwrap() || error_mid_stream {
        // Keep message_start, the first block's start and ping, one delta; drop the rest.
        let cut = sse
            .match_indices("\n\n")
            .nth(3)
            .map_or(sse.len(), |(i, _)| i + 2);
        sse.truncate(cut);
    }
    if error_mid_stream {
        sse += &event(
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        );
    }
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        sse,
    )
        .into_response()
}
