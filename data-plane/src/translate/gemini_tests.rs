use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use super::*;
use crate::sse::{data_of, SseSplitter};
use crate::surfaces::Surface;
use crate::translate::stream::StreamTranslator;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/gemini/",
            $name
        ))
    };
}

/// Runs a whole upstream SSE body through a translator, as the pump does; returns the client's
/// events (terminal included) and the usage read.
fn run_stream(
    upstream: Surface,
    client: Surface,
    wants_usage: bool,
    sse: &str,
) -> (Vec<Bytes>, Option<Usage>) {
    let mut t = StreamTranslator::new(upstream, client, wants_usage);
    let mut splitter = SseSplitter::default();
    let mut out = Vec::new();
    for e in splitter.push(sse.as_bytes()) {
        t.event(e, &mut out);
    }
    t.end(&mut out);
    if let Some(last) = t.terminal.take() {
        out.push(last);
    }
    (out, t.usage)
}

fn datas(events: &[Bytes]) -> Vec<Value> {
    let mut all = Vec::new();
    let mut splitter = SseSplitter::default();
    for e in events {
        for ev in splitter.push(e) {
            let d = data_of(&ev).unwrap();
            if *d != *b"[DONE]" {
                all.push(serde_json::from_slice(&d).unwrap());
            }
        }
    }
    all
}

#[test]
fn fixture_answer_usage_counts_thoughts_as_output_and_reasoning() {
    let u = gemini_usage(fixture!("response_text_and_function_call.json").as_bytes()).unwrap();
    assert_eq!(u.input, 71);
    assert_eq!(u.cached_input, 32);
    assert_eq!(u.output, 26 + 40);
    assert_eq!(u.reasoning, 40);
}

#[test]
fn fixture_answer_with_a_function_call_becomes_an_openai_tool_call() {
    let v = response_gemini_to_openai(fixture!("response_text_and_function_call.json").as_bytes())
        .unwrap();
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], "Let me check the weather in Boston.");
    let call = &m["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_current_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        args,
        json!({"location": "Boston, MA", "unit": "fahrenheit"})
    );
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["model"], "gemini-2.5-flash");
    assert_eq!(v["usage"]["prompt_tokens"], 71);
    assert_eq!(v["usage"]["completion_tokens"], 66);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 32);
}

#[test]
fn an_openai_answer_becomes_a_gemini_answer_and_back() {
    let openai = json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Hi",
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 6, "completion_tokens_details": {"reasoning_tokens": 2}}});
    let g = response_openai_to_gemini(openai.to_string().as_bytes()).unwrap();
    let c = &g["candidates"][0];
    assert_eq!(c["content"]["role"], "model");
    assert_eq!(c["content"]["parts"][0]["text"], "Hi");
    assert_eq!(
        c["content"]["parts"][1]["functionCall"]["args"],
        json!({"a": 1})
    );
    assert_eq!(c["finishReason"], "MAX_TOKENS");
    assert_eq!(g["usageMetadata"]["promptTokenCount"], 10);
    assert_eq!(g["usageMetadata"]["candidatesTokenCount"], 4);
    assert_eq!(g["usageMetadata"]["thoughtsTokenCount"], 2);
    assert_eq!(g["usageMetadata"]["totalTokenCount"], 16);
    let u = gemini_usage(g.to_string().as_bytes()).unwrap();
    assert_eq!((u.input, u.output, u.reasoning), (10, 6, 2));
}

#[test]
fn finish_reasons_map_both_ways() {
    assert_eq!(gemini_finish_to_openai("STOP", false), "stop");
    assert_eq!(gemini_finish_to_openai("STOP", true), "tool_calls");
    assert_eq!(gemini_finish_to_openai("MAX_TOKENS", true), "length");
    assert_eq!(gemini_finish_to_openai("SAFETY", false), "content_filter");
    assert_eq!(openai_finish_to_gemini("stop"), "STOP");
    assert_eq!(openai_finish_to_gemini("tool_calls"), "STOP");
    assert_eq!(openai_finish_to_gemini("length"), "MAX_TOKENS");
    assert_eq!(openai_finish_to_gemini("content_filter"), "SAFETY");
}

#[test]
fn fixture_error_keeps_its_message_in_every_format() {
    let body = fixture!("error.json").as_bytes();
    let msg = "API key not valid. Please pass a valid API key.";
    let o = crate::translate::response::error_to_openai(StatusCode::BAD_REQUEST, body);
    assert_eq!(o["error"]["message"], msg);
    assert_eq!(o["error"]["type"], "invalid_request_error");
    let a = crate::translate::response::error_to_anthropic(StatusCode::BAD_REQUEST, body);
    assert_eq!(a["error"]["message"], msg);
    let g = error_to_gemini(StatusCode::BAD_REQUEST, body);
    assert_eq!(
        g,
        json!({"error": {"code": 400, "message": msg, "status": "INVALID_ARGUMENT"}})
    );
    let from_openai = error_to_gemini(
        StatusCode::TOO_MANY_REQUESTS,
        br#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#,
    );
    assert_eq!(from_openai["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(from_openai["error"]["code"], 429);
}

#[test]
fn fixture_stream_passes_through_with_the_last_chunk_held_and_its_usage_as_total() {
    let sse = fixture!("stream.sse");
    let mut t = StreamTranslator::new(Surface::Gemini, Surface::Gemini, true);
    let mut splitter = SseSplitter::default();
    let mut out = Vec::new();
    for e in splitter.push(sse.as_bytes()) {
        t.event(e, &mut out);
    }
    assert_eq!(out.len(), 2, "the last chunk is held back");
    assert!(t.terminal.is_none());
    t.end(&mut out);
    let last = t
        .terminal
        .take()
        .expect("a finished stream has a terminal chunk");
    let mut all: Vec<u8> = out.iter().flat_map(|b| b.to_vec()).collect();
    all.extend_from_slice(&last);
    assert_eq!(all, sse.as_bytes(), "byte-faithful");
    let u = t.usage.unwrap();
    assert_eq!((u.input, u.output), (8, 11));
}

#[test]
fn a_gemini_stream_without_a_finish_reason_has_no_terminal_event() {
    let sse = fixture!("stream.sse");
    let first = &sse[..sse.find("\r\n\r\n").unwrap() + 4];
    for client in [
        Surface::Gemini,
        Surface::OpenAiChat,
        Surface::AnthropicMessages,
    ] {
        let mut t = StreamTranslator::new(Surface::Gemini, client, true);
        let mut out = Vec::new();
        for e in SseSplitter::default().push(first.as_bytes()) {
            t.event(e, &mut out);
        }
        t.end(&mut out);
        assert!(t.terminal.is_none(), "{client:?}");
    }
}

#[test]
fn fixture_stream_becomes_openai_chunks_with_usage_and_done() {
    let (events, usage) = run_stream(
        Surface::Gemini,
        Surface::OpenAiChat,
        true,
        fixture!("stream.sse"),
    );
    let last = events.last().unwrap();
    assert!(last.ends_with(b"data: [DONE]\n\n"));
    let chunks = datas(&events);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "The sky is blue because of Rayleigh scattering.");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finish: Vec<_> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["stop"]);
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 8);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 11);
    assert_eq!(usage.unwrap().output, 11);
}

#[test]
fn fixture_stream_becomes_anthropic_events() {
    let (events, _) = run_stream(
        Surface::Gemini,
        Surface::AnthropicMessages,
        true,
        fixture!("stream.sse"),
    );
    let evs = datas(&events);
    let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(
        &kinds[kinds.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let text: String = evs
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "The sky is blue because of Rayleigh scattering.");
    let delta = &evs[evs.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 11);
}

#[test]
fn a_streamed_gemini_function_call_becomes_a_streamed_openai_tool_call() {
    let sse = format!(
        "data: {}\r\n\r\n",
        json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"x": 1}}}]},
            "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}})
    );
    let (events, _) = run_stream(Surface::Gemini, Surface::OpenAiChat, false, &sse);
    let chunks = datas(&events);
    let call = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned())
        .unwrap();
    assert_eq!(call["function"]["name"], "f");
    assert_eq!(call["function"]["arguments"], "{\"x\":1}");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[test]
fn openai_stream_tool_call_pieces_become_one_gemini_function_call() {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c1", "model": "gpt-x", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut sse = chunk(
        json!({"role": "assistant", "content": "Checking"}),
        Value::Null,
    );
    sse += &chunk(
        json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"ci"}}]}),
        Value::Null,
    );
    sse += &chunk(
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\":\"Paris\"}"}}]}),
        Value::Null,
    );
    sse += &chunk(json!({}), json!("tool_calls"));
    sse += &format!(
        "data: {}\n\n",
        json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4}})
    );
    sse += "data: [DONE]\n\n";
    let (events, usage) = run_stream(Surface::OpenAiChat, Surface::Gemini, true, &sse);
    let chunks = datas(&events);
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"][0]["text"],
        "Checking"
    );
    let last = &chunks[1];
    let fc = &last["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(fc["name"], "get_weather");
    assert_eq!(fc["args"], json!({"city": "Paris"}));
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["promptTokenCount"], 5);
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 4);
    assert_eq!(usage.unwrap().input, 5);
}

#[test]
fn an_openai_request_becomes_a_gemini_request() {
    let req = json!({
        "model": "alias", "temperature": 0.5, "top_p": 0.9, "max_tokens": 100, "stop": "END",
        "seed": 7, "stream": true, "stream_options": {"include_usage": true},
        "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
    });
    let g = openai_to_gemini(req.to_string().as_bytes(), false).unwrap();
    assert_eq!(
        g["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    let c = g["contents"].as_array().unwrap();
    assert_eq!(
        c.len(),
        3,
        "the tool results and the next user text make one user turn"
    );
    assert_eq!(c[0]["role"], "user");
    assert_eq!(
        c[0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(c[1]["role"], "model");
    assert_eq!(
        c[1]["parts"][0]["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Paris"}})
    );
    assert_eq!(c[2]["role"], "user");
    assert_eq!(
        c[2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"temp": 21}})
    );
    assert_eq!(
        c[2]["parts"][1]["functionResponse"]["response"],
        json!({"result": "sunny"})
    );
    assert_eq!(c[2]["parts"][2]["text"], "Thanks");
    let cfg = &g["generationConfig"];
    assert_eq!(cfg["temperature"], 0.5);
    assert_eq!(cfg["topP"], 0.9);
    assert_eq!(cfg["maxOutputTokens"], 100);
    assert_eq!(cfg["stopSequences"], json!(["END"]));
    assert_eq!(cfg["seed"], 7);
    assert_eq!(cfg["responseMimeType"], "application/json");
    assert_eq!(
        g["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );
    assert!(g["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"].is_object());
    assert_eq!(
        g["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    assert!(g.get("model").is_none() && g.get("stream").is_none());
}

#[test]
fn tool_choice_modes_map_to_function_calling_modes() {
    for (choice, mode) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
        let req = json!({"model": "m", "tool_choice": choice, "messages": [{"role": "user", "content": "x"}]});
        let g = openai_to_gemini(req.to_string().as_bytes(), false).unwrap();
        assert_eq!(g["toolConfig"]["functionCallingConfig"]["mode"], mode);
    }
}

#[test]
fn parameters_gemini_cannot_carry_are_refused_by_name_or_dropped_by_policy() {
    for (param, value) in [
        ("logit_bias", json!({"1": 2})),
        ("n", json!(2)),
        ("parallel_tool_calls", json!(false)),
        ("user", json!("u1")),
    ] {
        let mut req = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        req[param] = value;
        let e = openai_to_gemini(req.to_string().as_bytes(), false).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some(param));
        assert!(e.message.contains(param));
        assert!(openai_to_gemini(req.to_string().as_bytes(), true).is_ok());
    }
    let req = json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"topK": 3}, "safetySettings": []});
    let e = gemini_to_openai(req.to_string().as_bytes(), "m", false, false).unwrap_err();
    assert!(e.param.is_some());
    let names: Vec<_> = ["generationConfig.topK", "safetySettings"].into();
    assert!(
        names.contains(&e.param.as_deref().unwrap()),
        "{:?}",
        e.param
    );
    let out = gemini_to_openai(req.to_string().as_bytes(), "m", false, true).unwrap();
    assert!(out.get("top_k").is_none());
    // A remote image cannot be inlined.
    let req = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]});
    let e = openai_to_gemini(req.to_string().as_bytes(), false).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
}

#[test]
fn a_gemini_request_becomes_an_openai_request_with_matched_tool_ids() {
    let req = json!({
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather?"}, {"inline_data": {"mime_type": "image/jpeg", "data": "AAAA"}}]},
            {"role": "model", "parts": [{"text": "thinking", "thought": true},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]}
        ],
        "generationConfig": {"temperature": 0.1, "maxOutputTokens": 50, "stopSequences": ["X"],
            "responseMimeType": "application/json", "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}},
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}
    });
    let o = gemini_to_openai(req.to_string().as_bytes(), "gpt-x", true, false).unwrap();
    assert_eq!(o["model"], "gpt-x");
    assert_eq!(o["stream"], true);
    assert_eq!(o["stream_options"]["include_usage"], true);
    assert_eq!(o["temperature"], 0.1);
    assert_eq!(o["max_tokens"], 50);
    assert_eq!(o["stop"], json!(["X"]));
    assert_eq!(o["tool_choice"], "required");
    assert_eq!(o["response_format"]["type"], "json_schema");
    assert_eq!(
        o["response_format"]["json_schema"]["schema"]["properties"]["a"]["type"],
        "string"
    );
    assert_eq!(
        o["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
        "string"
    );
    let m = o["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        "data:image/jpeg;base64,AAAA"
    );
    assert_eq!(m[2]["role"], "assistant");
    assert_eq!(
        m[2]["content"],
        Value::Null,
        "thought parts are not carried"
    );
    let calls = m[2]["tool_calls"].as_array().unwrap();
    assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    let weather_id = calls[0]["id"].as_str().unwrap();
    let time_id = calls[1]["id"].as_str().unwrap();
    assert_ne!(weather_id, time_id);
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": time_id, "content": "noon"})
    );
    assert_eq!(m[4]["tool_call_id"], weather_id);
    assert_eq!(m[4]["content"], "{\"temp\":21}");
}

#[test]
fn a_gemini_request_without_contents_is_refused() {
    let e = gemini_to_openai(br#"{"generationConfig": {}}"#, "m", false, false).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("contents"));
}
