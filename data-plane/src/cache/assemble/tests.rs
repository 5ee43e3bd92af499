use serde_json::{json, Value};

use super::*;
use crate::cache::synth;

fn tokens(input: u64, output: u64) -> Tokens {
    Tokens {
        input,
        output,
        ..Tokens::default()
    }
}

fn whole_of(surface: Surface, sse: &str, t: &Tokens) -> Value {
    let b = whole(surface, sse.as_bytes(), t).expect("assembled");
    serde_json::from_slice(&b).unwrap()
}

fn data(v: Value) -> String {
    format!("data: {v}\n\n")
}

fn named(v: Value) -> String {
    format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap())
}

/// The stream made from each answer and assembled again is the answer.
#[test]
fn every_surface_assembles_its_synthesised_stream_back_to_the_answer() {
    let cases = [
        (
            Surface::OpenAiChat,
            json!({"id": "c1", "object": "chat.completion", "created": 7, "model": "m",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "Hi there"},
                     "logprobs": null, "finish_reason": "stop"},
                    {"index": 1, "message": {"role": "assistant", "content": null,
                        "tool_calls": [{"id": "t1", "type": "function",
                            "function": {"name": "f", "arguments": "{\"a\":1}"}},
                                       {"id": "t2", "type": "function",
                            "function": {"name": "g", "arguments": "{}"}}]},
                     "logprobs": null, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12},
                "system_fingerprint": "fp"}),
        ),
        (
            Surface::AnthropicMessages,
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
                "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                            {"type": "text", "text": "Hi"},
                            {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, 2]}}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 7}}),
        ),
        (
            Surface::Gemini,
            json!({"candidates": [{"content": {"parts": [{"text": "x"},
                        {"functionCall": {"name": "f", "args": {"a": 1}}}], "role": "model"},
                    "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2},
                "modelVersion": "g", "responseId": "r1"}),
        ),
        (
            Surface::OpenAiResponses,
            json!({"id": "resp_1", "object": "response", "status": "completed",
                "output": [{"type": "message", "id": "m1", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "Yo", "annotations": []}]}],
                "usage": {"input_tokens": 2, "output_tokens": 1, "total_tokens": 3}}),
        ),
    ];
    for (surface, answer) in cases {
        for wants_usage in [true, false] {
            let stream =
                synth::stream(surface, answer.to_string().as_bytes(), wants_usage, false).unwrap();
            let back = whole(surface, &stream, &tokens(3, 9)).unwrap();
            let back: Value = serde_json::from_slice(&back).unwrap();
            assert_eq!(back, answer, "{surface:?}, usage chunk: {wants_usage}");
        }
    }
}

#[test]
fn openai_chunks_join_their_content_and_tool_call_arguments_by_index() {
    let head = json!({"id": "c2", "object": "chat.completion.chunk", "created": 1, "model": "m"});
    let chunk = |choice: Value| {
        let mut c = head.clone();
        c["choices"] = json!([choice]);
        data(c)
    };
    let mut sse = chunk(
        json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
    );
    sse += &chunk(
        json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": ""}}]}, "finish_reason": null}),
    );
    for part in [r#"{"city":"#, r#""Paris"}"#] {
        sse += &chunk(json!({"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"arguments": part}}]}, "finish_reason": null}));
    }
    sse += &chunk(json!({"index": 0, "delta": {}, "finish_reason": "tool_calls"}));
    sse += "data: [DONE]\n\n";
    let t = Tokens {
        input: 21,
        output: 7,
        cached_input: 4,
        ..Tokens::default()
    };
    let v = whole_of(Surface::OpenAiChat, &sse, &t);
    assert_eq!(
        v,
        json!({"id": "c2", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": r#"{"city":"Paris"}"#}}]},
                "logprobs": null, "finish_reason": "tool_calls"}],
            // No usage chunk was asked for: the metered tokens stand in.
            "usage": {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28,
                      "prompt_tokens_details": {"cached_tokens": 4}}})
    );
}

#[test]
fn an_anthropic_stream_with_pings_and_split_tool_input_becomes_its_message() {
    let mut sse = named(
        json!({"type": "message_start", "message": {"id": "msg_2", "type": "message",
        "role": "assistant", "model": "c", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 17, "output_tokens": 1}}}),
    );
    sse += &named(
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    sse += &named(json!({"type": "ping"}));
    for w in ["Hello ", "world."] {
        sse += &named(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": w}}));
    }
    sse += &named(json!({"type": "content_block_stop", "index": 0}));
    sse += &named(json!({"type": "content_block_start", "index": 1,
        "content_block": {"type": "tool_use", "id": "tu", "name": "f", "input": {}}}));
    for p in [r#"{"city":"#, r#""Paris"}"#] {
        sse += &named(json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": p}}));
    }
    sse += &named(json!({"type": "content_block_stop", "index": 1}));
    sse += &named(
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use",
        "stop_sequence": null}, "usage": {"output_tokens": 9}}),
    );
    let unfinished = sse.clone();
    sse += &named(json!({"type": "message_stop"}));
    let v = whole_of(Surface::AnthropicMessages, &sse, &Tokens::default());
    assert_eq!(
        v,
        json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "c",
            "content": [{"type": "text", "text": "Hello world."},
                        {"type": "tool_use", "id": "tu", "name": "f", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 17, "output_tokens": 9}})
    );
    assert_eq!(
        whole(
            Surface::AnthropicMessages,
            unfinished.as_bytes(),
            &Tokens::default()
        ),
        None,
        "a stream without message_stop is not a whole answer"
    );
}

#[test]
fn gemini_chunks_join_their_text_and_keep_the_last_finish_reason_and_usage() {
    let mut sse = String::new();
    for (i, w) in ["Hello ", "from ", "Gemini."].iter().enumerate() {
        let mut cand = json!({"content": {"parts": [{"text": w}], "role": "model"}, "index": 0});
        let mut usage = json!({"promptTokenCount": 19, "totalTokenCount": 19});
        if i == 2 {
            cand["finishReason"] = json!("STOP");
            usage =
                json!({"promptTokenCount": 19, "candidatesTokenCount": 8, "totalTokenCount": 27});
        }
        // Google's own framing ends events with CRLF.
        sse += &format!(
            "data: {}\r\n\r\n",
            json!({"candidates": [cand], "usageMetadata": usage, "modelVersion": "g", "responseId": "r2"})
        );
    }
    let v = whole_of(Surface::Gemini, &sse, &Tokens::default());
    assert_eq!(
        v,
        json!({"candidates": [{"content": {"parts": [{"text": "Hello from Gemini."}], "role": "model"},
                "index": 0, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 19, "candidatesTokenCount": 8, "totalTokenCount": 27},
            "modelVersion": "g", "responseId": "r2"})
    );
}

#[test]
fn a_stream_that_did_not_end_or_failed_is_not_assembled() {
    let chunk = data(
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]}),
    );
    assert_eq!(
        whole(Surface::OpenAiChat, chunk.as_bytes(), &Tokens::default()),
        None,
        "no [DONE]"
    );
    let failed =
        named(json!({"type": "response.failed", "response": {"id": "r", "status": "failed"}}));
    assert_eq!(
        whole(
            Surface::OpenAiResponses,
            failed.as_bytes(),
            &Tokens::default()
        ),
        None
    );
    assert_eq!(
        whole(Surface::OpenAiEmbeddings, b"", &Tokens::default()),
        None
    );
}
