//! A mock upstream for OpenAI's other surfaces, in OpenAI's (and Azure OpenAI's) real wire
//! format: `/v1/responses` (JSON or SSE events), `/v1/embeddings`, `/v1/images/generations`,
//! the video jobs API (`/v1/videos`, a job completes on its second poll), and Azure's
//! `/openai/deployments/{deployment}/...` paths. It records each request's method, path, query,
//! auth headers and body.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::{json, Value};

/// Responses usage: 30 input (10 cached), 12 output (4 reasoning).
pub const RESP_INPUT: u64 = 30;
pub const RESP_CACHED: u64 = 10;
pub const RESP_OUTPUT: u64 = 12;
pub const RESP_REASONING: u64 = 4;
pub const RESP_TEXT: &str = "Hello from the responses upstream.";
pub const EMBED_TOKENS: u64 = 9;
/// The content of every finished video.
pub const VIDEO_BYTES: &[u8] = b"FAKE-MP4-FROM-UPSTREAM";

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub api_key: Option<String>,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct OpenAiUpstream {
    pub addr: Option<SocketAddr>,
    received: Arc<Mutex<Vec<Recorded>>>,
    /// Video job id → (seconds, polls so far).
    jobs: Arc<Mutex<HashMap<String, (String, u32)>>>,
}

impl OpenAiUpstream {
    pub async fn start() -> OpenAiUpstream {
        let mut up = OpenAiUpstream::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        up.addr = Some(listener.local_addr().unwrap());
        let app = Router::new()
            .route("/v1/responses", any(responses))
            .route("/v1/embeddings", any(embeddings))
            .route("/v1/images/generations", any(images))
            .route("/v1/videos", any(create_video))
            .route("/v1/videos/{id}", get(poll_video))
            .route("/v1/videos/{id}/content", get(video_content))
            .route("/openai/responses", any(responses))
            .route(
                "/openai/deployments/{deployment}/{*rest}",
                any(azure_deployment),
            )
            .with_state(up.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        up
    }

    /// Base URL for an openai / openai-compatible account.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr.unwrap())
    }

    /// Base URL for an azure-openai account (the resource root).
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    pub fn calls(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn last(&self) -> Recorded {
        self.received.lock().unwrap().last().cloned().unwrap()
    }

    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Value {
        let body: Value = serde_json::from_slice(body).unwrap_or_else(|_| {
            if body.is_empty() {
                Value::Null
            } else {
                Value::String(String::from_utf8_lossy(body).into_owned())
            }
        });
        let header = |n: &str| super::header_text(headers, n);
        self.received.lock().unwrap().push(Recorded {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            api_key: header("api-key"),
            authorization: header("authorization"),
            body: body.clone(),
        });
        body
    }
}

fn json_response(v: Value) -> Response {
    axum::Json(v).into_response()
}

pub fn response_object(model: &str, status: &str, with_usage: bool) -> Value {
    let usage = if with_usage {
        json!({"input_tokens": RESP_INPUT, "input_tokens_details": {"cached_tokens": RESP_CACHED},
               "output_tokens": RESP_OUTPUT, "output_tokens_details": {"reasoning_tokens": RESP_REASONING},
               "total_tokens": RESP_INPUT + RESP_OUTPUT})
    } else {
        Value::Null
    };
    let output = if status == "completed" {
        json!([{"type": "message", "id": "msg_up_1", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": RESP_TEXT, "annotations": []}]}])
    } else {
        json!([])
    };
    json!({"id": "resp_up_1", "object": "response", "created_at": 1_700_000_000, "status": status,
           "model": model, "output": output, "usage": usage, "vendor_extra": {"kept": true}})
}

async fn responses(
    State(up): State<OpenAiUpstream>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req = up.record(&method, &uri, &headers, &body);
    let model = req["model"].as_str().unwrap_or("unknown").to_owned();
    if req["stream"] != Value::Bool(true) {
        return json_response(response_object(&model, "completed", true));
    }
    let mut sse = String::new();
    let mut seq = 0;
    let mut ev = |data: Value| {
        let mut data = data;
        data["sequence_number"] = json!(seq);
        seq += 1;
        sse += &format!(
            "event: {}\ndata: {data}\n\n",
            data["type"].as_str().unwrap()
        );
    };
    ev(
        json!({"type": "response.created", "response": response_object(&model, "in_progress", false)}),
    );
    ev(
        json!({"type": "response.output_text.delta", "item_id": "msg_up_1", "output_index": 0, "content_index": 0, "delta": "Hello from "}),
    );
    ev(
        json!({"type": "response.output_text.delta", "item_id": "msg_up_1", "output_index": 0, "content_index": 0, "delta": "the responses upstream."}),
    );
    ev(
        json!({"type": "response.output_text.done", "item_id": "msg_up_1", "output_index": 0, "content_index": 0, "text": RESP_TEXT}),
    );
    ev(
        json!({"type": "response.completed", "response": response_object(&model, "completed", true)}),
    );
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        sse,
    )
        .into_response()
}

fn embeddings_body(model: &str) -> Value {
    json!({"object": "list", "model": model,
           "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}],
           "usage": {"prompt_tokens": EMBED_TOKENS, "total_tokens": EMBED_TOKENS}})
}

async fn embeddings(
    State(up): State<OpenAiUpstream>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req = up.record(&method, &uri, &headers, &body);
    json_response(embeddings_body(req["model"].as_str().unwrap_or("unknown")))
}

fn images_body(n: u64) -> Value {
    let data: Vec<Value> = (0..n)
        .map(|i| json!({"url": format!("https://images.example/{i}.png")}))
        .collect();
    json!({"created": 1_700_000_000, "data": data})
}

async fn images(
    State(up): State<OpenAiUpstream>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req = up.record(&method, &uri, &headers, &body);
    json_response(images_body(req["n"].as_u64().unwrap_or(1)))
}

async fn azure_deployment(
    State(up): State<OpenAiUpstream>,
    Path((deployment, rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req = up.record(&method, &uri, &headers, &body);
    match rest.as_str() {
        "chat/completions" => json_response(json!({
            "id": "chatcmpl-az", "object": "chat.completion", "created": 1_700_000_000, "model": deployment,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi from azure"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})),
        "embeddings" => json_response(embeddings_body(&deployment)),
        "images/generations" => json_response(images_body(req["n"].as_u64().unwrap_or(1))),
        _ => (axum::http::StatusCode::NOT_FOUND, "no such azure path").into_response(),
    }
}

fn video_object(id: &str, model: &str, status: &str, progress: u32, seconds: &str) -> Value {
    json!({"id": id, "object": "video", "model": model, "status": status, "progress": progress,
           "created_at": 1_700_000_000, "size": "720x1280", "seconds": seconds, "quality": "standard"})
}

async fn create_video(
    State(up): State<OpenAiUpstream>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req = up.record(&method, &uri, &headers, &body);
    let seconds = req["seconds"].as_str().unwrap_or("4").to_owned();
    let model = req["model"].as_str().unwrap_or("sora-2").to_owned();
    let id = {
        let mut jobs = up.jobs.lock().unwrap();
        let id = format!("video_up_{}", jobs.len() + 1);
        jobs.insert(id.clone(), (format!("{model}|{seconds}"), 0));
        id
    };
    json_response(video_object(&id, &model, "queued", 0, &seconds))
}

async fn poll_video(
    State(up): State<OpenAiUpstream>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    up.record(&method, &uri, &headers, b"");
    let mut jobs = up.jobs.lock().unwrap();
    let Some((meta, polls)) = jobs.get_mut(&id) else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"message": "no such video", "type": "invalid_request_error", "param": null, "code": null}})),
        )
            .into_response();
    };
    *polls += 1;
    let (model, seconds) = meta.split_once('|').unwrap();
    let (status, progress) = match *polls {
        1 => ("in_progress", 50),
        _ => ("completed", 100),
    };
    json_response(video_object(&id, model, status, progress, seconds))
}

async fn video_content(
    State(up): State<OpenAiUpstream>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    up.record(&method, &uri, &headers, b"");
    let done = up
        .jobs
        .lock()
        .unwrap()
        .get(&id)
        .is_some_and(|(_, polls)| *polls >= 2);
    if !done {
        return (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"message": "video not ready", "type": "invalid_request_error", "param": null, "code": null}})),
        )
            .into_response();
    }
    (
        [(axum::http::header::CONTENT_TYPE, "video/mp4")],
        VIDEO_BYTES,
    )
        .into_response()
}
