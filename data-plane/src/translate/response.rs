//! Non-streamed answers and error bodies from one wire format to the other, and usage read
//! from either.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Usage;
use crate::surfaces::anthropic_messages::error_type;

#[derive(Deserialize)]
struct UsagePeek<T> {
    usage: Option<T>,
}

#[derive(Deserialize, Default)]
pub(crate) struct AnthropicUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// The whole prompt and its cached part. A sum past `u64` (no provider sends one, but the
    /// numbers are the provider's) is held at the maximum rather than overflowing.
    pub fn input(&self) -> Option<(u64, u64)> {
        let base = self.input_tokens?;
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let created = self.cache_creation_input_tokens.unwrap_or(0);
        Some((base.saturating_add(read).saturating_add(created), read))
    }
}

#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

/// The `usage` of an OpenAI-format response or stream chunk, if it has a non-null one. OpenAI
/// counts `prompt_tokens_details.cached_tokens` inside `prompt_tokens` and
/// `completion_tokens_details.reasoning_tokens` inside `completion_tokens`, which is the
/// convention [`Usage`] keeps.
pub fn openai_usage(json: &[u8]) -> Option<Usage> {
    if super::scan::every_member_null(json, &super::scan::QUOTED_USAGE) {
        // Most chunks of a stream that reports usage say `"usage":null`.
        return None;
    }
    let usage: Option<OpenAiUsage> = match super::scan::member(json, b"usage") {
        Some(raw) => serde_json::from_slice(raw).ok()?,
        None => {
            serde_json::from_slice::<UsagePeek<OpenAiUsage>>(json)
                .ok()?
                .usage
        }
    };
    usage.map(|u| Usage {
        input: u.prompt_tokens,
        output: u.completion_tokens,
        cached_input: u
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0),
        reasoning: u
            .completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0),
        ..Usage::default()
    })
}

/// The `usage` of an Anthropic Messages response.
pub fn anthropic_usage(json: &[u8]) -> Option<Usage> {
    let u: AnthropicUsage = match super::scan::member(json, b"usage") {
        Some(raw) => serde_json::from_slice::<Option<AnthropicUsage>>(raw).ok()??,
        None => {
            serde_json::from_slice::<UsagePeek<AnthropicUsage>>(json)
                .ok()?
                .usage?
        }
    };
    let (input, cached_input) = u.input()?;
    Some(Usage {
        input,
        output: u.output_tokens.unwrap_or(0),
        cached_input,
        ..Usage::default()
    })
}

pub fn anthropic_stop_to_openai(reason: &str) -> &'static str {
    match reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    }
}

pub fn openai_finish_to_anthropic(reason: &str) -> &'static str {
    match reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

pub fn openai_usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.input,
        "completion_tokens": u.output,
        "total_tokens": u.input.saturating_add(u.output),
        "prompt_tokens_details": {"cached_tokens": u.cached_input},
    })
}

pub fn anthropic_usage_json(u: Usage) -> Value {
    json!({
        "input_tokens": u.input.saturating_sub(u.cached_input),
        "output_tokens": u.output,
        "cache_read_input_tokens": u.cached_input,
        "cache_creation_input_tokens": 0,
    })
}

/// Anthropic Messages response → OpenAI chat completion. `None` if the body is not one.
pub fn anthropic_to_openai(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let blocks = v["content"].as_array()?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(json!({
                "id": b["id"], "type": "function",
                "function": {"name": b["name"], "arguments": b["input"].to_string()},
            })),
            // thinking and server-tool blocks have no chat-completions equivalent.
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let finish = anthropic_stop_to_openai(v["stop_reason"].as_str().unwrap_or("end_turn"));
    let usage = anthropic_usage(body).unwrap_or_default();
    Some(json!({
        "id": v["id"],
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": v["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": openai_usage_json(usage),
    }))
}

/// OpenAI chat completion → Anthropic Messages response. `None` if the body is not one.
pub fn openai_to_anthropic(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let choice = v["choices"].as_array()?.first()?;
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(t) = message["content"].as_str() {
        if !t.is_empty() {
            content.push(json!({"type": "text", "text": t}));
        }
    }
    if let Some(calls) = message["tool_calls"].as_array() {
        for c in calls {
            let args = c["function"]["arguments"].as_str().unwrap_or("{}");
            let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
            content.push(json!({"type": "tool_use", "id": c["id"], "name": c["function"]["name"], "input": input}));
        }
    }
    let stop = openai_finish_to_anthropic(choice["finish_reason"].as_str().unwrap_or("stop"));
    let usage = openai_usage(body).unwrap_or_default();
    Some(json!({
        "id": v["id"],
        "type": "message",
        "role": "assistant",
        "model": v["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": anthropic_usage_json(usage),
    }))
}

/// The human-readable message of an error body in either format.
pub fn error_message(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match v["error"]["message"].as_str() {
        Some(m) => m.to_owned(),
        None => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    }
}

/// An upstream error body re-rendered in the client's format, keeping the status.
pub fn error_to_anthropic(status: StatusCode, body: &[u8]) -> Value {
    json!({"type": "error", "error": {"type": error_type(status), "message": error_message(body)}})
}

pub fn error_to_openai(status: StatusCode, body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let kind = v["error"]["type"].as_str().map_or_else(
        || openai_error_type(status),
        |t| match t {
            // Anthropic's kinds, in OpenAI's vocabulary.
            "authentication_error" | "not_found_error" | "request_too_large" => {
                "invalid_request_error"
            }
            "rate_limit_error" => "rate_limit_error",
            "permission_error" => "permission_error",
            "api_error" | "overloaded_error" => "server_error",
            _ => openai_error_type(status),
        },
    );
    json!({"error": {"message": error_message(body), "type": kind, "param": null, "code": null}})
}

fn openai_error_type(status: StatusCode) -> &'static str {
    if status.is_server_error() {
        "server_error"
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        "rate_limit_error"
    } else {
        "invalid_request_error"
    }
}
