use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use super::stream::StreamTranslator;
use super::{request, response, Usage, DEFAULT_MAX_TOKENS};
use crate::sse::{data_of, SseSplitter};
use crate::surfaces::Surface;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/anthropic/",
            $name
        ))
    };
}

fn to_anthropic(body: Value) -> Value {
    request::openai_to_anthropic(body.to_string().as_bytes(), "claude-x", false).unwrap()
}

fn to_openai(body: Value) -> Value {
    request::anthropic_to_openai(body.to_string().as_bytes(), "gpt-x", false).unwrap()
}

#[test]
fn openai_request_becomes_an_anthropic_request() {
    let out = to_anthropic(json!({
        "model": "alias",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "stop": "END",
        "temperature": 0.5,
        "top_p": 0.9,
        "max_completion_tokens": 300,
        "stream": true,
        "stream_options": {"include_usage": true}
    }));
    assert_eq!(out["model"], "claude-x");
    assert_eq!(out["system"], "Be brief.");
    assert_eq!(out["max_tokens"], 300);
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(out["temperature"], 0.5);
    assert_eq!(out["stream"], true);
    assert!(out.get("stream_options").is_none());
    assert_eq!(out["tool_choice"], json!({"type": "any"}));
    assert_eq!(
        out["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    let m = out["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(
        m[0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
    );
    assert_eq!(
        m[0]["content"][2]["source"],
        json!({"type": "url", "url": "https://example.com/cat.jpg"})
    );
    assert_eq!(
        m[1]["content"][0],
        json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}})
    );
    // The tool result and the next user turn merge into one user message.
    assert_eq!(m[2]["role"], "user");
    assert_eq!(
        m[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "call_1", "content": "18C"})
    );
    assert_eq!(m[2]["content"][1]["text"], "Thanks");
}

#[test]
fn openai_request_without_a_limit_gets_the_documented_default() {
    let out = to_anthropic(json!({"model": "a", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
}

#[test]
fn tool_choice_maps_every_variant() {
    let check = |choice: Value, want: Value| {
        let out = to_anthropic(json!({"model": "a", "messages": [], "tool_choice": choice}));
        assert_eq!(out["tool_choice"], want);
    };
    check(json!("auto"), json!({"type": "auto"}));
    check(json!("none"), json!({"type": "none"}));
    check(json!("required"), json!({"type": "any"}));
    check(
        json!({"type": "function", "function": {"name": "f"}}),
        json!({"type": "tool", "name": "f"}),
    );
}

#[test]
fn parameters_that_cannot_be_carried_are_named_or_dropped_by_policy() {
    let cases = [
        (json!({"n": 2}), "n"),
        (json!({"logprobs": true}), "logprobs"),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (json!({"seed": 3}), "seed"),
    ];
    for (extra, param) in cases {
        let mut body = json!({"model": "a", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let raw = body.to_string();
        let e = request::openai_to_anthropic(raw.as_bytes(), "c", false).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some(param));
        assert!(e.message.contains(param), "{}", e.message);
        let dropped = request::openai_to_anthropic(raw.as_bytes(), "c", true).unwrap();
        assert!(dropped.get(param).is_none());
    }
    let raw = json!({"model": "a", "max_tokens": 5, "messages": [], "thinking": {"type": "enabled", "budget_tokens": 1024}}).to_string();
    let e = request::anthropic_to_openai(raw.as_bytes(), "g", false).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("thinking"));
    assert!(request::anthropic_to_openai(raw.as_bytes(), "g", true).is_ok());
}

#[test]
fn anthropic_request_becomes_an_openai_request() {
    let out = to_openai(json!({
        "model": "alias",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["END"],
        "stream": true,
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]}
        ],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}
    }));
    assert_eq!(out["model"], "gpt-x");
    assert_eq!(out["max_tokens"], 100);
    assert_eq!(out["stop"], json!(["END"]));
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    assert_eq!(out["parallel_tool_calls"], false);
    assert_eq!(
        out["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(
        out["tools"][0]["function"]["parameters"],
        json!({"type": "object"})
    );
    let m = out["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        "data:image/jpeg;base64,AAAA"
    );
    assert_eq!(
        m[2]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "toolu_1", "content": "18C"})
    );
}

#[test]
fn anthropic_response_fixture_becomes_an_openai_completion() {
    let body = fixture!("message_text_tool_use.json").as_bytes();
    assert_eq!(
        response::anthropic_usage(body),
        Some(Usage {
            input: 600,
            output: 91,
            cached_input: 128,
            ..Usage::default()
        })
    );
    let out = response::anthropic_to_openai(body).unwrap();
    let choice = &out["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(
        choice["message"]["content"],
        "I'll check the current weather in San Francisco for you."
    );
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01A09q90qw90lq917835lq9");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        args,
        json!({"location": "San Francisco, CA", "unit": "celsius"})
    );
    assert_eq!(out["usage"]["prompt_tokens"], 600);
    assert_eq!(out["usage"]["completion_tokens"], 91);
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 128);
}

#[test]
fn openai_completion_becomes_an_anthropic_message_and_back() {
    let openai =
        response::anthropic_to_openai(fixture!("message_text_tool_use.json").as_bytes()).unwrap();
    let back = response::openai_to_anthropic(openai.to_string().as_bytes()).unwrap();
    assert_eq!(back["type"], "message");
    assert_eq!(back["stop_reason"], "tool_use");
    assert_eq!(back["content"][1]["input"]["unit"], "celsius");
    assert_eq!(back["usage"]["input_tokens"], 472);
    assert_eq!(back["usage"]["cache_read_input_tokens"], 128);
    assert_eq!(back["usage"]["output_tokens"], 91);
}

#[test]
fn stop_reasons_map_both_ways() {
    for (a, o) in [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop"),
    ] {
        assert_eq!(response::anthropic_stop_to_openai(a), o);
    }
    assert_eq!(response::openai_finish_to_anthropic("length"), "max_tokens");
    assert_eq!(
        response::openai_finish_to_anthropic("tool_calls"),
        "tool_use"
    );
}

#[test]
fn anthropic_error_fixtures_become_openai_errors_and_back() {
    let body = fixture!("error_invalid_request.json").as_bytes();
    let o = response::error_to_openai(StatusCode::BAD_REQUEST, body);
    assert_eq!(o["error"]["message"], "max_tokens: Field required");
    assert_eq!(o["error"]["type"], "invalid_request_error");
    let o = response::error_to_openai(
        StatusCode::from_u16(529).unwrap(),
        fixture!("error_overloaded.json").as_bytes(),
    );
    assert_eq!(o["error"]["type"], "server_error");
    let a = response::error_to_anthropic(
        StatusCode::TOO_MANY_REQUESTS,
        br#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#,
    );
    assert_eq!(
        a,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    );
}

/// Runs a whole SSE text through a translator, in awkward chunk sizes.
fn run_stream(
    sse: &str,
    from: Surface,
    to: Surface,
    wants_usage: bool,
) -> (Vec<Bytes>, StreamTranslator) {
    let mut t = StreamTranslator::new(from, to, wants_usage);
    let mut splitter = SseSplitter::default();
    let mut out = Vec::new();
    for chunk in sse.as_bytes().chunks(7) {
        for e in splitter.push(chunk) {
            t.event(e, &mut out);
        }
    }
    if let Some(rest) = splitter.remainder() {
        t.event(rest, &mut out);
    }
    (out, t)
}

fn datas(events: &[Bytes]) -> Vec<Value> {
    events
        .iter()
        .map(|e| serde_json::from_slice(&data_of(e).unwrap()).unwrap())
        .collect()
}

#[test]
fn anthropic_stream_fixture_becomes_openai_chunks() {
    let (out, t) = run_stream(
        fixture!("stream_text_tool_use.sse"),
        Surface::AnthropicMessages,
        Surface::OpenAiChat,
        true,
    );
    assert_eq!(
        t.usage,
        Some(Usage {
            input: 600,
            output: 89,
            cached_input: 128,
            ..Usage::default()
        })
    );
    assert_eq!(t.terminal.as_deref(), Some(&b"data: [DONE]\n\n"[..]));
    let chunks = datas(&out);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Okay, let's check the weather.");
    let start = chunks
        .iter()
        .find(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"].is_string())
        .unwrap();
    assert_eq!(
        start["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(args, json!({"location": "San Francisco, CA"}));
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["tool_calls"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 600);
    assert_eq!(last["usage"]["completion_tokens"], 89);
}

#[test]
fn anthropic_stream_passes_through_untouched_with_usage_read() {
    let sse = fixture!("stream_text_tool_use.sse");
    let (out, t) = run_stream(
        sse,
        Surface::AnthropicMessages,
        Surface::AnthropicMessages,
        true,
    );
    let mut all: Vec<u8> = out.concat();
    all.extend_from_slice(t.terminal.as_deref().unwrap());
    assert_eq!(String::from_utf8(all).unwrap(), sse);
    assert_eq!(
        t.usage,
        Some(Usage {
            input: 600,
            output: 89,
            cached_input: 128,
            ..Usage::default()
        })
    );
}

#[test]
fn openai_stream_becomes_anthropic_events_and_back() {
    // Anthropic → OpenAI → Anthropic: the second leg is the OpenAI-chunk translator.
    let (first, t1) = run_stream(
        fixture!("stream_text_tool_use.sse"),
        Surface::AnthropicMessages,
        Surface::OpenAiChat,
        true,
    );
    let mut openai_sse: Vec<u8> = first.concat();
    openai_sse.extend_from_slice(t1.terminal.as_deref().unwrap());
    let (out, t) = run_stream(
        std::str::from_utf8(&openai_sse).unwrap(),
        Surface::OpenAiChat,
        Surface::AnthropicMessages,
        true,
    );
    assert_eq!(
        t.usage,
        Some(Usage {
            input: 600,
            output: 89,
            cached_input: 128,
            ..Usage::default()
        })
    );
    let terminal = t.terminal.unwrap();
    assert!(terminal.starts_with(b"event: message_stop\n"));
    let events = datas(&out);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "message_start");
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "content_block_start")
            .count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(*kinds.last().unwrap(), "message_delta");
    let delta = events.last().unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 89);
    let tool = events
        .iter()
        .find(|e| e["content_block"]["type"] == "tool_use")
        .unwrap();
    assert_eq!(tool["content_block"]["name"], "get_weather");
    assert_eq!(tool["index"], 1);
    let json: String = events
        .iter()
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        json!({"location": "San Francisco, CA"})
    );
    // Every event carries its type as the SSE event name.
    for e in &out {
        assert!(e.starts_with(b"event: "), "{e:?}");
    }
}

#[test]
fn a_stream_without_its_last_event_has_no_terminal() {
    let sse = fixture!("stream_text_tool_use.sse");
    let cut = &sse[..sse.find("event: content_block_stop").unwrap()];
    let (_, t) = run_stream(cut, Surface::AnthropicMessages, Surface::OpenAiChat, false);
    assert!(t.terminal.is_none());
}

#[test]
fn openai_chunks_with_null_ids_continue_the_open_tool_call_and_errors_become_error_events() {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c1", "model": "gpt", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut sse = chunk(json!({"role": "assistant", "content": "Hi"}), Value::Null);
    sse += &chunk(
        json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\""}}]}),
        Value::Null,
    );
    sse += &chunk(
        json!({"tool_calls": [{"index": 0, "id": null, "function": {"arguments": ":1}"}}]}),
        Value::Null,
    );
    sse += "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n";
    let (out, t) = run_stream(&sse, Surface::OpenAiChat, Surface::AnthropicMessages, true);
    assert!(t.terminal.is_none());
    assert_eq!(t.upstream_error.as_deref(), Some("boom"));
    let events = datas(&out);
    let starts = events
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .count();
    assert_eq!(starts, 2, "one text block, one tool block: {events:?}");
    let json: String = events
        .iter()
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(json, "{\"a\":1}");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error");
    assert_eq!(last["error"]["message"], "boom");
    assert!(out.last().unwrap().starts_with(b"event: error\n"));
}

#[test]
fn openai_client_without_include_usage_gets_no_usage_chunk_from_anthropic() {
    let (out, t) = run_stream(
        fixture!("stream_text_tool_use.sse"),
        Surface::AnthropicMessages,
        Surface::OpenAiChat,
        false,
    );
    assert!(datas(&out).iter().all(|c| c.get("usage").is_none()));
    assert!(t.usage.is_some(), "usage is still read for metering");
}

#[test]
fn openai_usage_reads_cached_and_reasoning_tokens_as_parts_of_the_totals() {
    let body = br#"{"usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
        "prompt_tokens_details": {"cached_tokens": 60, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 25, "audio_tokens": 0}}}"#;
    assert_eq!(
        crate::translate::response::openai_usage(body),
        Some(modelgate_shared::pricing::Tokens {
            input: 100,
            output: 40,
            cached_input: 60,
            reasoning: 25,
            ..modelgate_shared::pricing::Tokens::default()
        })
    );
}

#[test]
fn openai_usage_without_details_or_with_null_ones_has_no_parts() {
    for body in [
        &br#"{"usage": {"prompt_tokens": 3, "completion_tokens": 2}}"#[..],
        br#"{"usage": {"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": null,
            "completion_tokens_details": {"reasoning_tokens": null}}}"#,
    ] {
        let t = crate::translate::response::openai_usage(body).unwrap();
        assert_eq!(
            (t.input, t.output, t.cached_input, t.reasoning),
            (3, 2, 0, 0)
        );
    }
    assert_eq!(
        crate::translate::response::openai_usage(br#"{"usage": null}"#),
        None
    );
}

#[test]
fn provider_token_counts_adding_up_past_u64_are_held_at_the_maximum_instead_of_overflowing() {
    // The three input counts add up to the whole prompt; numbers this large are a provider's
    // mistake, and must not panic the request (debug) or wrap to a small charge (release).
    let body = format!(
        r#"{{"usage": {{"input_tokens": {}, "cache_read_input_tokens": 7,
            "cache_creation_input_tokens": 1, "output_tokens": 2}}}}"#,
        u64::MAX - 3
    );
    let t = crate::translate::response::anthropic_usage(body.as_bytes()).unwrap();
    assert_eq!((t.input, t.cached_input, t.output), (u64::MAX, 7, 2));
    // Translated to OpenAI's format, the total is held too.
    let json = crate::translate::response::openai_usage_json(t);
    assert_eq!(json["total_tokens"], u64::MAX);
    // Gemini's parts add up the same way.
    let body = format!(
        r#"{{"usageMetadata": {{"promptTokenCount": {max}, "toolUsePromptTokenCount": 5,
            "candidatesTokenCount": {max}, "thoughtsTokenCount": 9}}}}"#,
        max = u64::MAX
    );
    let t = crate::translate::gemini::gemini_usage(body.as_bytes()).unwrap();
    assert_eq!((t.input, t.output, t.reasoning), (u64::MAX, u64::MAX, 9));
}

#[test]
fn a_tool_call_whose_chunks_repeat_its_id_stays_one_block_and_an_error_ends_the_stream() {
    let chunk = |delta: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c1", "model": "gpt", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
        )
    };
    let mut sse = chunk(
        json!({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{\"a\""}}]}),
    );
    sse += &chunk(
        json!({"tool_calls": [{"index": 0, "id": "call_1", "function": {"arguments": ":1}"}}]}),
    );
    sse +=
        &chunk(json!({"tool_calls": [{"index": 1, "function": {"name": "g", "arguments": "{}"}}]}));
    sse += "data: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n";
    let (out, t) = run_stream(&sse, Surface::OpenAiChat, Surface::AnthropicMessages, false);
    let events = datas(&out);
    let blocks: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .map(|e| &e["content_block"])
        .collect();
    assert_eq!(blocks.len(), 2, "two calls, two blocks: {events:?}");
    assert_eq!(blocks[0]["id"], "call_1");
    assert!(
        blocks[1]["id"].as_str().is_some_and(|id| !id.is_empty()),
        "a call without an id gets one: {:?}",
        blocks[1]
    );
    let first: String = events
        .iter()
        .filter(|e| e["index"] == 0)
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(first, "{\"a\":1}");
    assert_eq!(
        events.last().unwrap()["type"],
        "error",
        "nothing after the error"
    );
    assert!(
        t.terminal.is_none(),
        "[DONE] after an error does not finish the message"
    );
}

#[test]
fn a_temperature_above_one_is_named_for_anthropic_or_clamped_by_policy() {
    let raw =
        json!({"model": "m", "temperature": 1.5, "messages": [{"role": "user", "content": "hi"}]})
            .to_string();
    let e = request::openai_to_anthropic(raw.as_bytes(), "c", false).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("temperature"));
    let v = request::openai_to_anthropic(raw.as_bytes(), "c", true).unwrap();
    assert_eq!(v["temperature"], 1.0);
    let ok =
        json!({"model": "m", "temperature": 0.7, "messages": [{"role": "user", "content": "hi"}]})
            .to_string();
    assert_eq!(
        request::openai_to_anthropic(ok.as_bytes(), "c", false).unwrap()["temperature"],
        0.7
    );
}

#[test]
fn openai_itself_gets_max_completion_tokens() {
    let mut v = to_openai(
        json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(v["max_tokens"], 9);
    request::use_max_completion_tokens(&mut v);
    assert_eq!(v["max_completion_tokens"], 9);
    assert!(v.get("max_tokens").is_none());
}
