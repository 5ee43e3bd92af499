//! The built-in mock's answers to OpenAI's other surfaces: Responses (JSON and SSE events),
//! embeddings (deterministic vectors, as floats or base64 like OpenAI's `encoding_format`) and
//! image generation (a 1×1 PNG, as base64 or a placeholder URL). Every answer is labelled as a
//! mock and reports usage the way OpenAI does.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::estimate_tokens;
use crate::providers::{Body, UpstreamResponse};

const LABEL: &str = "This is a ModelGate mock response";
/// A 1×1 transparent PNG.
pub const PNG_1X1_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
/// Dimensions of a mock embedding (unless the request asks for `dimensions`).
pub const EMBEDDING_DIMS: usize = 8;

fn json_response(body: &Value) -> UpstreamResponse {
    UpstreamResponse {
        status: StatusCode::OK,
        content_type: Some(HeaderValue::from_static("application/json")),
        retry_after_secs: None,
        body: Body::Full(Bytes::from(body.to_string())),
    }
}

/// The text of a Responses `input`: a string, or the text parts of its messages.
fn input_text(input: &Value) -> String {
    match input {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let mut out = String::new();
            for item in items {
                match &item["content"] {
                    Value::String(s) => out.push_str(s),
                    Value::Array(parts) => {
                        for p in parts {
                            if let Some(t) = p["text"].as_str() {
                                out.push_str(t);
                            }
                        }
                    }
                    _ => {}
                }
                out.push('\n');
            }
            out
        }
        _ => String::new(),
    }
}

/// Answers a Responses request body.
pub fn responses(body: &[u8], stream: bool) -> UpstreamResponse {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = request["model"].as_str().unwrap_or("mock").to_owned();
    let text_in = input_text(&request["input"]);
    let instructions = request["instructions"].as_str().unwrap_or_default();
    let input_tokens = 3 + estimate_tokens(text_in.len() + instructions.len());
    let echo: String = text_in.trim().chars().take(200).collect();
    let text = format!("{LABEL} (model {model}). You said: {echo}");
    let output_tokens = estimate_tokens(text.len());
    let id = format!("resp_mock_{}", modelgate_shared::new_id().simple());
    let msg_id = format!("msg_mock_{}", modelgate_shared::new_id().simple());
    let created = chrono::Utc::now().timestamp();
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    let item = json!({"type": "message", "id": msg_id, "status": "completed", "role": "assistant",
                      "content": [part]});
    let usage = json!({
        "input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    });
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": id, "object": "response", "created_at": created, "status": status,
            "error": null, "incomplete_details": null, "instructions": request["instructions"],
            "model": model, "output": output, "parallel_tool_calls": true,
            "temperature": 1.0, "tool_choice": "auto", "tools": [], "top_p": 1.0,
            "metadata": {}, "usage": usage,
        })
    };
    if !stream {
        return json_response(&response("completed", json!([item]), usage));
    }
    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut event = |mut data: Value| {
        data["sequence_number"] = json!(seq);
        seq += 1;
        let kind = data["type"].as_str().unwrap_or("unknown").to_owned();
        events.push(Bytes::from(format!("event: {kind}\ndata: {data}\n\n")));
    };
    let pending = response("in_progress", json!([]), Value::Null);
    event(json!({"type": "response.created", "response": pending}));
    event(json!({"type": "response.in_progress", "response": pending}));
    event(
        json!({"type": "response.output_item.added", "output_index": 0,
                 "item": {"type": "message", "id": msg_id, "status": "in_progress",
                          "role": "assistant", "content": []}}),
    );
    event(
        json!({"type": "response.content_part.added", "item_id": msg_id, "output_index": 0,
                 "content_index": 0,
                 "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    for piece in words.chunks(4) {
        event(
            json!({"type": "response.output_text.delta", "item_id": msg_id,
                     "output_index": 0, "content_index": 0, "delta": piece.concat()}),
        );
    }
    event(
        json!({"type": "response.output_text.done", "item_id": msg_id, "output_index": 0,
                 "content_index": 0, "text": text}),
    );
    event(
        json!({"type": "response.content_part.done", "item_id": msg_id, "output_index": 0,
                 "content_index": 0, "part": part}),
    );
    event(json!({"type": "response.output_item.done", "output_index": 0, "item": item}));
    event(json!({"type": "response.completed",
                 "response": response("completed", json!([item]), usage)}));
    UpstreamResponse {
        status: StatusCode::OK,
        content_type: Some(HeaderValue::from_static("text/event-stream")),
        retry_after_secs: None,
        body: Body::Stream(futures_util::stream::iter(events.into_iter().map(Ok)).boxed()),
    }
}

/// A deterministic unit-length vector for a text (FNV-1a seeded).
fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dims)
        .map(|i| {
            h ^= i as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
            ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    for x in &mut v {
        *x /= norm;
    }
    v
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Answers an embeddings request body: one vector per input, the same for the same text.
pub fn embeddings(body: &[u8]) -> UpstreamResponse {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = request["model"].as_str().unwrap_or("mock").to_owned();
    let inputs: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        other => vec![other.to_string()],
    };
    let dims = request["dimensions"]
        .as_u64()
        .map_or(EMBEDDING_DIMS, |d| d.clamp(1, 4096) as usize);
    let as_base64 = request["encoding_format"] == "base64";
    let mut prompt_tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            prompt_tokens += estimate_tokens(text.len()).max(1);
            let v = vector(text, dims);
            let embedding = if as_base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json_response(&json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
}

/// Answers an image generation request body: `n` (default 1) tiny PNGs labelled as mock.
pub fn images(body: &[u8]) -> UpstreamResponse {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let n = request["n"].as_u64().unwrap_or(1).clamp(1, 10);
    let prompt: String = request["prompt"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let as_url = request["response_format"] == "url";
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let revised = format!("ModelGate mock image {} of {n}: {prompt}", i + 1);
            if as_url {
                json!({"url": format!("data:image/png;base64,{PNG_1X1_B64}"), "revised_prompt": revised})
            } else {
                json!({"b64_json": PNG_1X1_B64, "revised_prompt": revised})
            }
        })
        .collect();
    json_response(&json!({"created": chrono::Utc::now().timestamp(), "data": data}))
}

/// How long a mock video job stays `queued`, then `in_progress`, in milliseconds.
pub const VIDEO_QUEUED_MS: i64 = 500;
pub const VIDEO_DONE_MS: i64 = 1_500;
/// What a finished mock video "contains".
pub const VIDEO_CONTENT: &[u8] = b"MODELGATE MOCK VIDEO - not a real MP4\n";

fn video_object(id: &str, model: &str, created_ms: i64, seconds: &str) -> Value {
    let elapsed = crate::time::now_ms() - created_ms;
    let (status, progress) = if elapsed < VIDEO_QUEUED_MS {
        ("queued", 0)
    } else if elapsed < VIDEO_DONE_MS {
        ("in_progress", (elapsed * 100 / VIDEO_DONE_MS).clamp(1, 99))
    } else {
        ("completed", 100)
    };
    let created = created_ms / 1000;
    json!({
        "id": id, "object": "video", "model": model, "status": status, "progress": progress,
        "created_at": created,
        "completed_at": if status == "completed" { json!(created + 2) } else { Value::Null },
        "size": "720x1280", "seconds": seconds, "quality": "standard",
        "error": null, "remixed_from_video_id": null,
    })
}

/// Starts a mock video job. Stateless: the job id carries its creation time and length, and
/// its status follows the clock (queued, in progress, completed after [`VIDEO_DONE_MS`]), so any
/// node answers its polls the same way.
pub fn create_video(body: &[u8], model: &str) -> UpstreamResponse {
    let seconds = if body.starts_with(b"--") {
        crate::surfaces::openai_videos::form_field(body, "seconds")
    } else {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| match &v["seconds"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    };
    let seconds: u32 = seconds
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4)
        .clamp(1, 60);
    let created_ms = crate::time::now_ms();
    let id = format!(
        "video_mock_{created_ms}_{seconds}_{}",
        &modelgate_shared::new_id().simple().to_string()[..8]
    );
    json_response(&video_object(&id, model, created_ms, &seconds.to_string()))
}

/// The mock job's creation time and seconds, from its id.
fn parse_video_id(id: &str) -> Option<(i64, String)> {
    let mut parts = id.strip_prefix("video_mock_")?.split('_');
    let created_ms = parts.next()?.parse().ok()?;
    let seconds = parts.next()?.to_owned();
    Some((created_ms, seconds))
}

fn not_found(what: &str) -> UpstreamResponse {
    UpstreamResponse {
        status: StatusCode::NOT_FOUND,
        content_type: Some(HeaderValue::from_static("application/json")),
        retry_after_secs: None,
        body: Body::Full(Bytes::from(
            json!({"error": {"message": what, "type": "invalid_request_error", "param": null, "code": null}})
                .to_string(),
        )),
    }
}

/// Polls a mock video job.
pub fn poll_video(id: &str, model: &str) -> UpstreamResponse {
    match parse_video_id(id) {
        Some((created_ms, seconds)) => {
            json_response(&video_object(id, model, created_ms, &seconds))
        }
        None => not_found("no such mock video"),
    }
}

/// A finished mock video's content (a few labelled bytes); 404 before it is completed.
pub fn video_content(id: &str) -> UpstreamResponse {
    match parse_video_id(id) {
        Some((created_ms, _)) if crate::time::now_ms() - created_ms >= VIDEO_DONE_MS => {
            UpstreamResponse {
                status: StatusCode::OK,
                content_type: Some(HeaderValue::from_static("video/mp4")),
                retry_after_secs: None,
                body: Body::Full(Bytes::from_static(VIDEO_CONTENT)),
            }
        }
        Some(_) => not_found("the mock video is not completed yet"),
        None => not_found("no such mock video"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(r: UpstreamResponse) -> Value {
        match r.body {
            Body::Full(b) => serde_json::from_slice(&b).unwrap(),
            Body::Stream(_) => panic!("expected a full body"),
        }
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"Man"), "TWFu");
    }

    #[test]
    fn mock_embeddings_are_deterministic_per_text() {
        let a = full(embeddings(br#"{"model":"m","input":["x","y","x"]}"#));
        assert_eq!(a["data"][0]["embedding"], a["data"][2]["embedding"]);
        assert_ne!(a["data"][0]["embedding"], a["data"][1]["embedding"]);
        assert_eq!(
            a["data"][0]["embedding"].as_array().unwrap().len(),
            EMBEDDING_DIMS
        );
        assert_eq!(a["usage"]["prompt_tokens"], 3);
    }

    #[test]
    fn mock_images_return_n_labelled_pngs() {
        let v = full(images(br#"{"model":"m","prompt":"cat","n":2}"#));
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert!(v["data"][1]["revised_prompt"]
            .as_str()
            .unwrap()
            .contains("mock"));
    }
}
