//! The mock's chat answers: deterministic, clearly labelled answers with realistic usage
//! figures, streamed or not, in OpenAI chat format ([`chat_completions`]) and Anthropic Messages
//! format ([`messages`]) — it is always called in the client's own format.
//!
//! Gemini requests ([`generate_content`]) are answered in Gemini's format.
//!
//! Tools (any format): when `tool_choice` names a tool (or is `any`/`required`), or tools are
//! given and the last user message mentions one by name, the answer calls that tool (a
//! `tool_use` block, or `tool_calls`) with an input that fills the schema's required properties
//! with placeholder values.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::estimate_tokens;
use crate::providers::{Body, UpstreamResponse};

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
    let tool = chosen_tool(&openai_tools_as_anthropic(&request), &last_user);
    let content = match &tool {
        Some((name, _)) => format!("{LABEL} (model {model}). Calling the tool `{name}`."),
        None => format!("{LABEL} (model {model}). You said: {echo}"),
    };
    let call_id = format!("call_mock_{}", modelgate_shared::new_id().simple());
    let arguments = tool.as_ref().map(|(_, input)| input.to_string());
    let completion_tokens = estimate_tokens(content.len())
        + arguments
            .as_ref()
            .map_or(0, |a| estimate_tokens(a.len()) + 5);
    let finish = if tool.is_some() { "tool_calls" } else { "stop" };
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
                "message": match (&tool, &arguments) {
                    (Some((name, _)), Some(args)) => json!({"role": "assistant", "content": content,
                        "tool_calls": [{"id": call_id, "type": "function",
                                        "function": {"name": name, "arguments": args}}]}),
                    _ => json!({"role": "assistant", "content": content}),
                },
                "finish_reason": finish,
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
    if let (Some((name, _)), Some(args)) = (&tool, &arguments) {
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                   "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        let (a, b) = args.split_at(args.len() / 2);
        for part in [a, b] {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                Value::Null,
            ));
        }
    }
    events.push(chunk(json!({}), json!(finish)));
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

/// Answers an Anthropic Messages request body.
pub fn messages(body: &[u8], stream: bool) -> UpstreamResponse {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = request["model"].as_str().unwrap_or("mock").to_owned();
    let mut input_tokens = 3u64 + estimate_tokens(content_text(&request["system"]).len());
    let mut last_user = String::new();
    for m in request["messages"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
    {
        let text = content_text(&m["content"]);
        input_tokens += 4 + estimate_tokens(text.len());
        if m["role"] == "user" {
            last_user = text;
        }
    }
    let id = format!("msg_mock_{}", modelgate_shared::new_id().simple());
    let tool = chosen_tool(&request, &last_user);
    let echo: String = last_user.chars().take(200).collect();
    let text = match &tool {
        Some((name, _)) => format!("{LABEL} (model {model}). Calling the tool `{name}`."),
        None => format!("{LABEL} (model {model}). You said: {echo}"),
    };
    let mut output_tokens = estimate_tokens(text.len());
    let tool_id = format!("toolu_mock_{}", modelgate_shared::new_id().simple());
    if let Some((_, input)) = &tool {
        output_tokens += estimate_tokens(input.to_string().len()) + 5;
    }
    let stop_reason = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };

    if !stream {
        let mut content = vec![json!({"type": "text", "text": text})];
        if let Some((name, input)) = &tool {
            content.push(json!({"type": "tool_use", "id": tool_id, "name": name, "input": input}));
        }
        let body = json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        });
        return UpstreamResponse {
            status: StatusCode::OK,
            content_type: Some(HeaderValue::from_static("application/json")),
            retry_after_secs: None,
            body: Body::Full(Bytes::from(body.to_string())),
        };
    }

    let event = |data: Value| {
        let kind = data["type"].as_str().unwrap_or("ping").to_owned();
        Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
    };
    let mut events = vec![
        event(json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}})),
        event(
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        event(json!({"type": "ping"})),
    ];
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    for piece in words.chunks(4) {
        events.push(event(json!({"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": piece.concat()}})));
    }
    events.push(event(json!({"type": "content_block_stop", "index": 0})));
    if let Some((name, input)) = &tool {
        events.push(event(json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}})));
        let json_text = input.to_string();
        let (a, b) = json_text.split_at(json_text.len() / 2);
        for part in [a, b] {
            events.push(event(json!({"type": "content_block_delta", "index": 1,
                                     "delta": {"type": "input_json_delta", "partial_json": part}})));
        }
        events.push(event(json!({"type": "content_block_stop", "index": 1})));
    }
    events.push(event(json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": output_tokens}})));
    events.push(event(json!({"type": "message_stop"})));
    UpstreamResponse {
        status: StatusCode::OK,
        content_type: Some(HeaderValue::from_static("text/event-stream")),
        retry_after_secs: None,
        body: Body::Stream(futures_util::stream::iter(events.into_iter().map(Ok)).boxed()),
    }
}

/// Answers a Gemini `generateContent` request body: the request is read through the OpenAI
/// chat translation (so tools, `toolConfig` mode `ANY` and a function named in the last user
/// text work as in the other formats), and the answer is written in Gemini's format — streamed
/// as `alt=sse` chunks (text in pieces, then the function call with `finishReason` and the
/// totals in `usageMetadata`).
pub fn generate_content(body: &[u8], model: &str, stream: bool) -> UpstreamResponse {
    use crate::translate::gemini as g;
    let chat = match g::gemini_to_openai(body, model, false, true) {
        Ok(v) => v.to_string(),
        Err(e) => {
            let body = crate::surfaces::gemini::error_json(e.status, &e.message);
            return UpstreamResponse {
                status: e.status,
                content_type: Some(HeaderValue::from_static("application/json")),
                retry_after_secs: None,
                body: Body::Full(Bytes::from(body.to_string())),
            };
        }
    };
    let answer = match chat_completions(chat.as_bytes(), false).body {
        Body::Full(b) => g::response_openai_to_gemini(&b).unwrap_or(Value::Null),
        Body::Stream(_) => Value::Null,
    };
    if !stream {
        return UpstreamResponse {
            status: StatusCode::OK,
            content_type: Some(HeaderValue::from_static("application/json")),
            retry_after_secs: None,
            body: Body::Full(Bytes::from(answer.to_string())),
        };
    }
    let candidate = &answer["candidates"][0];
    let parts = candidate["content"]["parts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let usage = &answer["usageMetadata"];
    let prompt_only = json!({"promptTokenCount": usage["promptTokenCount"],
        "totalTokenCount": usage["promptTokenCount"]});
    let chunk = |parts: Value, finish: Option<&Value>, usage: &Value| {
        let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            c["finishReason"] = f.clone();
        }
        let v = json!({"candidates": [c], "usageMetadata": usage,
            "modelVersion": answer["modelVersion"], "responseId": answer["responseId"]});
        Bytes::from(format!("data: {v}\r\n\r\n"))
    };
    let mut events = Vec::new();
    let text = parts
        .iter()
        .find_map(|p| p["text"].as_str())
        .unwrap_or_default();
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    for piece in words.chunks(4) {
        events.push(chunk(json!([{"text": piece.concat()}]), None, &prompt_only));
    }
    let calls: Vec<Value> = parts
        .iter()
        .filter(|p| p.get("functionCall").is_some())
        .cloned()
        .collect();
    let last = if calls.is_empty() {
        json!([{"text": ""}])
    } else {
        Value::Array(calls)
    };
    events.push(chunk(last, Some(&candidate["finishReason"]), usage));
    UpstreamResponse {
        status: StatusCode::OK,
        content_type: Some(HeaderValue::from_static("text/event-stream")),
        retry_after_secs: None,
        body: Body::Stream(futures_util::stream::iter(events.into_iter().map(Ok)).boxed()),
    }
}

/// An OpenAI request's `tools` and `tool_choice` in Anthropic's shape, for [`chosen_tool`].
fn openai_tools_as_anthropic(request: &Value) -> Value {
    let Some(tools) = request["tools"].as_array() else {
        return Value::Null;
    };
    let tools: Vec<Value> = tools
        .iter()
        .map(
            |t| json!({"name": t["function"]["name"], "input_schema": t["function"]["parameters"]}),
        )
        .collect();
    let choice = match &request["tool_choice"] {
        Value::String(s) if s == "required" => json!({"type": "any"}),
        Value::String(s) if s == "none" => json!({"type": "none"}),
        Value::Object(o) => {
            json!({"type": "tool", "name": o.get("function").map_or(Value::Null, |f| f["name"].clone())})
        }
        _ => json!({"type": "auto"}),
    };
    json!({"tools": tools, "tool_choice": choice})
}

/// The tool an Anthropic request asks the mock to call, with a placeholder input.
fn chosen_tool(request: &Value, last_user: &str) -> Option<(String, Value)> {
    let tools = request["tools"].as_array()?;
    let choice = &request["tool_choice"];
    let tool = match choice["type"].as_str() {
        Some("none") => None,
        Some("tool") => tools.iter().find(|t| t["name"] == choice["name"]),
        Some("any") => tools.first(),
        _ => {
            let asked = last_user.to_lowercase();
            tools.iter().find(|t| {
                t["name"]
                    .as_str()
                    .is_some_and(|n| asked.contains(&n.to_lowercase()))
            })
        }
    }?;
    let name = tool["name"].as_str()?.to_owned();
    let schema = &tool["input_schema"];
    let mut input = serde_json::Map::new();
    for key in schema["required"].as_array().map_or(&[][..], Vec::as_slice) {
        let Some(key) = key.as_str() else { continue };
        let placeholder = match schema["properties"][key]["type"].as_str() {
            Some("number") => json!(1.5),
            Some("integer") => json!(1),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => match schema["properties"][key]["enum"]
                .as_array()
                .and_then(|e| e.first())
            {
                Some(first) => first.clone(),
                None => json!("mock"),
            },
        };
        input.insert(key.to_owned(), placeholder);
    }
    Some((name, Value::Object(input)))
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str().or_else(|| p["content"].as_str()))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_mock_calls_the_named_tool_with_an_object_input() {
        let r = messages(
            br#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"weather?"}],
                 "tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city","days"]}}],
                 "tool_choice":{"type":"tool","name":"get_weather"}}"#,
            false,
        );
        let Body::Full(bytes) = r.body else {
            panic!("expected a full body")
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["content"][1]["type"], "tool_use");
        assert_eq!(v["content"][1]["input"], json!({"city": "mock", "days": 1}));
        assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    }

    #[test]
    fn openai_mock_calls_a_tool_the_user_names() {
        let r = chat_completions(
            br#"{"model":"m","messages":[{"role":"user","content":"use get_time please"}],
                 "tools":[{"type":"function","function":{"name":"get_time","parameters":{"type":"object"}}}]}"#,
            false,
        );
        let Body::Full(bytes) = r.body else {
            panic!("expected a full body")
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_time");
        assert_eq!(call["function"]["arguments"], "{}");
    }

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
