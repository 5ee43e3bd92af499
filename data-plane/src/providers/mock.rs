//! The built-in `mock` provider: deterministic, clearly labelled OpenAI-format answers with
//! realistic usage figures, streamed or not. For demos (`modelgate up` works offline), tests
//! and load tests.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::{estimate_tokens, Body, UpstreamResponse};

const LABEL: &str = "This is a ModelGate mock response";

/// Answers a chat completion request body.
pub fn chat_completions(body: &[u8], stream: bool) -> UpstreamResponse {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = request["model"].as_str().unwrap_or("mock").to_owned();
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let mut prompt_tokens = 3u64;
    let mut last_user = String::new();
    for m in &messages {
        let text = content_text(&m["content"]);
        prompt_tokens += 4 + estimate_tokens(text.len());
        if m["role"] == "user" {
            last_user = text;
        }
    }
    let echo: String = last_user.chars().take(200).collect();
    let content = format!("{LABEL} (model {model}). You said: {echo}");
    let completion_tokens = estimate_tokens(content.len());
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let id = format!("chatcmpl-mock-{}", modelgate_shared::new_id().simple());
    let created = chrono::Utc::now().timestamp();

    if !stream {
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }],
            "usage": usage,
            "system_fingerprint": "modelgate-mock",
        });
        return UpstreamResponse {
            status: StatusCode::OK,
            content_type: Some(HeaderValue::from_static("application/json")),
            retry_after_secs: None,
            body: Body::Full(Bytes::from(body.to_string())),
        };
    }

    let include_usage = request["stream_options"]["include_usage"].as_bool() == Some(true);
    let chunk = |delta: Value, finish: Value| {
        let c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        Bytes::from(format!("data: {c}\n\n"))
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let words: Vec<&str> = content.split_inclusive(' ').collect();
    for piece in words.chunks(4) {
        events.push(chunk(json!({"content": piece.concat()}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        let c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage,
        });
        events.push(Bytes::from(format!("data: {c}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    UpstreamResponse {
        status: StatusCode::OK,
        content_type: Some(HeaderValue::from_static("text/event-stream")),
        retry_after_secs: None,
        body: Body::Stream(futures_util::stream::iter(events.into_iter().map(Ok)).boxed()),
    }
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_answer_is_labelled_and_reports_consistent_usage() {
        let r = chat_completions(
            br#"{"model":"m","messages":[{"role":"user","content":"hello there"}]}"#,
            false,
        );
        let Body::Full(bytes) = r.body else {
            panic!("expected a full body")
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(text.contains("ModelGate mock") && text.contains("hello there"));
        let u = &v["usage"];
        assert!(u["prompt_tokens"].as_u64().unwrap() > 0);
        assert_eq!(
            u["total_tokens"].as_u64().unwrap(),
            u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
        );
    }
}
