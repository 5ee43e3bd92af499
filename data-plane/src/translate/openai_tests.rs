//! OpenAI's own payloads (fixtures written from OpenAI's API reference, in
//! `tests/fixtures/openai/`) through the real usage readers and translators.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use super::stream::StreamTranslator;
use super::{full, response, Usage};
use crate::sse::{data_of, SseSplitter};
use crate::surfaces::{self, Surface};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/openai/",
            $name
        ))
    };
}

const STREAM: &str = fixture!("chat_stream_tool_call.sse");

/// The whole fixture stream through a translator in 5-byte chunks, as the pump feeds it; the
/// client's events (terminal last) and the usage read.
fn run_stream(client: Surface, wants_usage: bool) -> (Vec<Bytes>, Option<Usage>) {
    let mut t = StreamTranslator::new(Surface::OpenAiChat, client, wants_usage);
    let mut splitter = SseSplitter::default();
    let mut out = Vec::new();
    for chunk in STREAM.as_bytes().chunks(5) {
        for e in splitter.push(chunk) {
            t.event(e, &mut out);
        }
    }
    t.end(&mut out);
    out.extend(t.terminal.take());
    (out, t.usage)
}

/// Each event's `data` as JSON (`[DONE]` as the string "[DONE]"), and its `event:` name.
fn events(out: &[Bytes]) -> Vec<(Option<String>, Value)> {
    let mut splitter = SseSplitter::default();
    let mut all = Vec::new();
    for b in out {
        for e in splitter.push(b) {
            let name = std::str::from_utf8(&e)
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_owned);
            let d = data_of(&e).unwrap();
            let v = serde_json::from_slice(&d).unwrap_or_else(|_| json!("[DONE]"));
            all.push((name, v));
        }
    }
    all
}

#[test]
fn chat_completion_usage_reads_cached_and_reasoning_tokens() {
    let u = response::openai_usage(fixture!("chat_completion_tool_calls.json").as_bytes()).unwrap();
    assert_eq!(
        u,
        Usage {
            input: 1117,
            cached_input: 1024,
            output: 219,
            reasoning: 192,
            ..Usage::default()
        }
    );
}

#[test]
fn chat_completion_with_a_tool_call_becomes_an_anthropic_message() {
    let body = fixture!("chat_completion_tool_calls.json").as_bytes();
    let (status, out) = full(
        Surface::OpenAiChat,
        Surface::AnthropicMessages,
        StatusCode::OK,
        body,
    );
    assert_eq!(status, 200);
    let m: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(m["id"], "chatcmpl-C2fWq8sLkVn3ZbT0aR7yEe1Hj9Dx4");
    assert_eq!(m["model"], "o4-mini-2025-04-16");
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(
        m["content"],
        json!([{"type": "tool_use", "id": "call_Wk2pQe7Rb1xYz0LmNa4sT8Uv", "name": "get_weather",
                "input": {"city": "Lisbon", "unit": "celsius"}}])
    );
    // Anthropic's input_tokens excludes the cache read.
    assert_eq!(
        m["usage"],
        json!({"input_tokens": 93, "output_tokens": 219, "cache_read_input_tokens": 1024,
               "cache_creation_input_tokens": 0})
    );
}

#[test]
fn chat_completion_with_a_tool_call_becomes_a_gemini_answer() {
    let body = fixture!("chat_completion_tool_calls.json").as_bytes();
    let (status, out) = full(Surface::OpenAiChat, Surface::Gemini, StatusCode::OK, body);
    assert_eq!(status, 200);
    let g: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        g["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"id": "call_Wk2pQe7Rb1xYz0LmNa4sT8Uv", "name": "get_weather",
                                 "args": {"city": "Lisbon", "unit": "celsius"}}}])
    );
    assert_eq!(g["candidates"][0]["finishReason"], "STOP");
    // Gemini counts thoughts apart from the candidates.
    assert_eq!(
        g["usageMetadata"],
        json!({"promptTokenCount": 1117, "candidatesTokenCount": 27,
               "cachedContentTokenCount": 1024, "thoughtsTokenCount": 192,
               "totalTokenCount": 1336})
    );
}

#[test]
fn chat_stream_passes_through_with_its_usage_read_and_the_usage_chunk_withheld() {
    let (out, usage) = run_stream(Surface::OpenAiChat, false);
    assert_eq!(
        usage,
        Some(Usage {
            input: 85,
            output: 24,
            ..Usage::default()
        })
    );
    let evs = events(&out);
    // 9 chunks (the usage chunk is dropped: the client did not ask for it) and [DONE].
    assert_eq!(evs.len(), 10);
    assert_eq!(evs[9].1, "[DONE]");
    assert!(evs[..9]
        .iter()
        .all(|(_, v)| v["choices"].as_array().unwrap().len() == 1));
    // Pass-through is byte for byte.
    let first_event = STREAM.split_inclusive("\n\n").next().unwrap();
    assert_eq!(out[0], first_event.as_bytes());

    let (out, _) = run_stream(Surface::OpenAiChat, true);
    let evs = events(&out);
    assert_eq!(evs.len(), 11);
    assert_eq!(evs[9].1["choices"], json!([]));
    assert_eq!(evs[9].1["usage"]["total_tokens"], 109);
}

#[test]
fn chat_stream_becomes_anthropic_events_with_the_split_tool_call_rejoined() {
    let (out, usage) = run_stream(Surface::AnthropicMessages, false);
    assert_eq!(usage.unwrap().output, 24);
    let evs = events(&out);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(
        evs[0].1["message"]["id"],
        "chatcmpl-C2fX1m9QdTy6Hc3uPb0oKz2Ws5Ri7"
    );
    let text: String = evs[2..5]
        .iter()
        .map(|(_, v)| v["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Let me check the weather.");
    assert_eq!(
        evs[6].1["content_block"],
        json!({"type": "tool_use", "id": "call_R3nVb8Kq1Zx7Lm0Pw2Yt5Hs", "name": "get_weather", "input": {}})
    );
    assert_eq!(evs[6].1["index"], 1);
    let args: String = evs[7..10]
        .iter()
        .map(|(_, v)| v["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(args, r#"{"city":"Lisbon"}"#);
    assert_eq!(evs[11].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        evs[11].1["usage"],
        json!({"input_tokens": 85, "output_tokens": 24, "cache_read_input_tokens": 0,
               "cache_creation_input_tokens": 0})
    );
}

#[test]
fn chat_stream_becomes_gemini_chunks_with_the_call_and_usage_in_the_last() {
    let (out, _) = run_stream(Surface::Gemini, false);
    let evs = events(&out);
    assert_eq!(evs.len(), 4, "three text chunks and the closing one");
    let text: String = evs[..3]
        .iter()
        .map(|(_, v)| {
            v["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(text, "Let me check the weather.");
    let last = &evs[3].1;
    assert_eq!(
        last["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"id": "call_R3nVb8Kq1Zx7Lm0Pw2Yt5Hs", "name": "get_weather",
                                 "args": {"city": "Lisbon"}}}])
    );
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        last["usageMetadata"],
        json!({"promptTokenCount": 85, "candidatesTokenCount": 24, "totalTokenCount": 109})
    );
    assert_eq!(last["responseId"], "chatcmpl-C2fX1m9QdTy6Hc3uPb0oKz2Ws5Ri7");
}

#[test]
fn responses_usage_reads_cached_and_reasoning_tokens() {
    let u = surfaces::openai_responses::usage(fixture!("responses_response.json").as_bytes());
    assert_eq!(
        u,
        Some(Usage {
            input: 2048,
            cached_input: 1536,
            output: 310,
            reasoning: 256,
            ..Usage::default()
        })
    );
}

#[test]
fn embeddings_usage_is_all_input() {
    let u = surfaces::openai_embeddings::usage(fixture!("embeddings_response.json").as_bytes());
    assert_eq!(
        u,
        Some(Usage {
            input: 12,
            ..Usage::default()
        })
    );
}

#[test]
fn images_usage_counts_the_images_and_their_tokens() {
    let u = surfaces::openai_images::usage(fixture!("images_response.json").as_bytes());
    assert_eq!(
        u,
        Some(Usage {
            input: 52,
            output: 2112,
            images: 2,
            ..Usage::default()
        })
    );
}

#[test]
fn invalid_request_error_keeps_its_status_in_anthropic_and_google_formats() {
    let body = fixture!("error_invalid_request.json").as_bytes();
    let message = "Invalid type for 'messages[0].content': expected one of a string or array of objects, but got an integer instead.";
    let (status, out) = full(
        Surface::OpenAiChat,
        Surface::AnthropicMessages,
        StatusCode::BAD_REQUEST,
        body,
    );
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
    );
    let (status, out) = full(
        Surface::OpenAiChat,
        Surface::Gemini,
        StatusCode::BAD_REQUEST,
        body,
    );
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}})
    );
    assert_eq!(response::error_message(body), message);
}

#[test]
fn rate_limit_error_keeps_its_status_in_anthropic_and_google_formats() {
    let body = fixture!("error_rate_limit.json").as_bytes();
    let (status, out) = full(
        Surface::OpenAiChat,
        Surface::AnthropicMessages,
        StatusCode::TOO_MANY_REQUESTS,
        body,
    );
    assert_eq!(status, 429);
    let a: Value = serde_json::from_slice(&out).unwrap();
    // OpenAI's `type` here is the limit hit ("tokens"); the class comes from the status.
    assert_eq!(a["error"]["type"], "rate_limit_error");
    assert!(a["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Rate limit reached for gpt-4o"));
    let (status, out) = full(
        Surface::OpenAiChat,
        Surface::Gemini,
        StatusCode::TOO_MANY_REQUESTS,
        body,
    );
    assert_eq!(status, 429);
    let g: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(g["error"]["code"], 429);
    assert_eq!(g["error"]["status"], "RESOURCE_EXHAUSTED");
}
