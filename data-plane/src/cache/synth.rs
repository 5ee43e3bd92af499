//! A stream made from a whole answer: the events a streaming client of each surface expects,
//! synthesised from a cached JSON answer in that surface's format (a hit is one write: the
//! answer is at hand).
//!
//! - OpenAI chat: a chunk per choice carrying its whole message as the delta (role, content,
//!   refusal, tool calls with their index), a chunk per choice with its `finish_reason`, the
//!   usage chunk when the client asked for it (`stream_options.include_usage`), `[DONE]`.
//! - Anthropic Messages: `message_start` (the message without content, input usage),
//!   `content_block_start` / one delta / `content_block_stop` per block (`text_delta`,
//!   `input_json_delta` with the tool input as JSON text, `thinking_delta` +
//!   `signature_delta`; any other block whole in its start), `message_delta` (stop reason,
//!   output tokens), `message_stop`.
//! - Gemini: the answer as the stream's one chunk (SSE, or the JSON array's one element).
//! - Responses: `response.created`, `response.in_progress`, per output item
//!   `output_item.added`, for a message's text parts `content_part.added`,
//!   `output_text.delta`, `output_text.done`, `content_part.done`, then `output_item.done`,
//!   and `response.completed` with the whole response; every event numbered
//!   (`sequence_number`).
//!
//! Embeddings have no stream. An answer that is not a JSON object yields `None` (never
//! stored: only successful answers are).

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use crate::sse;
use crate::surfaces::{gemini::ArrayFramer, Surface};

/// The client's stream of `answer`, or `None` if it cannot be made.
pub fn stream(
    surface: Surface,
    answer: &[u8],
    wants_usage: bool,
    json_array: bool,
) -> Option<Bytes> {
    let v: Value = serde_json::from_slice(answer).ok()?;
    let v = v.as_object()?;
    let mut out = Events::default();
    match surface {
        Surface::OpenAiChat => openai_chat(v, wants_usage, &mut out),
        Surface::AnthropicMessages => anthropic(v, &mut out),
        Surface::Gemini => out.data(&Value::Object(v.clone())),
        Surface::OpenAiResponses => responses(v, &mut out),
        _ => return None,
    }
    Some(if json_array {
        array(&out.0.freeze())
    } else {
        out.0.freeze()
    })
}

/// Stored SSE events as the JSON array a Gemini client without `alt=sse` reads.
pub fn array(events: &[u8]) -> Bytes {
    let mut splitter = sse::SseSplitter::default();
    let mut framer = ArrayFramer::default();
    let mut out = BytesMut::new();
    let mut all = splitter.push(events);
    all.extend(splitter.remainder());
    for e in all {
        if let Some(element) = framer.element(&e) {
            out.extend_from_slice(&element);
        }
    }
    out.extend_from_slice(&framer.close());
    out.freeze()
}

#[derive(Default)]
struct Events(BytesMut);

impl Events {
    fn data(&mut self, v: &Value) {
        self.0.extend_from_slice(b"data: ");
        self.0.extend_from_slice(v.to_string().as_bytes());
        self.0.extend_from_slice(b"\n\n");
    }

    fn named(&mut self, name: &str, v: &Value) {
        self.0.extend_from_slice(b"event: ");
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"\n");
        self.data(v);
    }
}

fn openai_chat(v: &Map<String, Value>, wants_usage: bool, out: &mut Events) {
    let mut head = Map::new();
    for k in [
        "id",
        "created",
        "model",
        "system_fingerprint",
        "service_tier",
    ] {
        if let Some(x) = v.get(k) {
            head.insert(k.to_owned(), x.clone());
        }
    }
    head.insert("object".into(), json!("chat.completion.chunk"));
    let chunk = |choices: Value, usage: Option<&Value>| {
        let mut c = head.clone();
        c.insert("choices".into(), choices);
        if let Some(u) = usage {
            c.insert("usage".into(), u.clone());
        }
        Value::Object(c)
    };
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, choice) in choices.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or(json!(i));
        let mut delta = choice
            .get("message")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
            for (j, call) in calls.iter_mut().enumerate() {
                if let Some(call) = call.as_object_mut() {
                    call.insert("index".into(), json!(j));
                }
            }
        }
        let mut c = Map::new();
        c.insert("index".into(), index.clone());
        c.insert("delta".into(), Value::Object(delta));
        if let Some(lp) = choice.get("logprobs") {
            c.insert("logprobs".into(), lp.clone());
        }
        c.insert("finish_reason".into(), Value::Null);
        out.data(&chunk(json!([Value::Object(c)]), None));
        let finish = choice
            .get("finish_reason")
            .cloned()
            .unwrap_or(json!("stop"));
        out.data(&chunk(
            json!([{"index": index, "delta": {}, "finish_reason": finish}]),
            None,
        ));
    }
    if wants_usage {
        if let Some(u) = v.get("usage") {
            out.data(&chunk(json!([]), Some(u)));
        }
    }
    out.0.extend_from_slice(b"data: [DONE]\n\n");
}

fn anthropic(v: &Map<String, Value>, out: &mut Events) {
    let usage = v.get("usage").cloned().unwrap_or(json!({}));
    let mut start = v.clone();
    start.insert("content".into(), json!([]));
    start.insert("stop_reason".into(), Value::Null);
    start.insert("stop_sequence".into(), Value::Null);
    let mut start_usage = usage.as_object().cloned().unwrap_or_default();
    start_usage.insert("output_tokens".into(), json!(0));
    start.insert("usage".into(), Value::Object(start_usage));
    out.named(
        "message_start",
        &json!({"type": "message_start", "message": start}),
    );
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (index, block) in blocks.iter().enumerate() {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        let (empty, deltas) = match kind {
            "text" => (
                json!({"type": "text", "text": ""}),
                vec![
                    json!({"type": "text_delta", "text": block.get("text").cloned().unwrap_or(json!(""))}),
                ],
            ),
            "tool_use" | "server_tool_use" => {
                let mut b = block.as_object().cloned().unwrap_or_default();
                let input = b.insert("input".into(), json!({})).unwrap_or(json!({}));
                (
                    Value::Object(b),
                    vec![json!({"type": "input_json_delta", "partial_json": input.to_string()})],
                )
            }
            "thinking" => (
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                vec![
                    json!({"type": "thinking_delta", "thinking": block.get("thinking").cloned().unwrap_or(json!(""))}),
                    json!({"type": "signature_delta", "signature": block.get("signature").cloned().unwrap_or(json!(""))}),
                ],
            ),
            _ => (block.clone(), vec![]),
        };
        out.named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": empty}),
        );
        for delta in deltas {
            out.named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            );
        }
        out.named(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
    }
    out.named(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {
                "stop_reason": v.get("stop_reason").cloned().unwrap_or(Value::Null),
                "stop_sequence": v.get("stop_sequence").cloned().unwrap_or(Value::Null),
            },
            "usage": {"output_tokens": usage.get("output_tokens").cloned().unwrap_or(json!(0))},
        }),
    );
    out.named("message_stop", &json!({"type": "message_stop"}));
}

fn responses(v: &Map<String, Value>, out: &mut Events) {
    let mut seq = 0u64;
    let mut emit = |out: &mut Events, name: &str, mut body: Map<String, Value>| {
        body.insert("type".into(), json!(name));
        body.insert("sequence_number".into(), json!(seq));
        seq += 1;
        out.named(name, &Value::Object(body));
    };
    let mut pending = v.clone();
    pending.insert("status".into(), json!("in_progress"));
    pending.insert("output".into(), json!([]));
    pending.insert("usage".into(), Value::Null);
    for name in ["response.created", "response.in_progress"] {
        let mut m = Map::new();
        m.insert("response".into(), Value::Object(pending.clone()));
        emit(out, name, m);
    }
    let items = v
        .get("output")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (oi, item) in items.iter().enumerate() {
        let item_id = item.get("id").cloned().unwrap_or(Value::Null);
        let is_message = item.get("type").and_then(Value::as_str) == Some("message");
        let mut added = item.clone();
        if is_message {
            if let Some(a) = added.as_object_mut() {
                a.insert("content".into(), json!([]));
                a.insert("status".into(), json!("in_progress"));
            }
        }
        let mut m = Map::new();
        m.insert("output_index".into(), json!(oi));
        m.insert("item".into(), added);
        emit(out, "response.output_item.added", m);
        if is_message {
            let parts = item
                .get("content")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (ci, part) in parts.iter().enumerate() {
                let head = |extra: &[(&str, Value)]| {
                    let mut m = Map::new();
                    m.insert("item_id".into(), item_id.clone());
                    m.insert("output_index".into(), json!(oi));
                    m.insert("content_index".into(), json!(ci));
                    for (k, x) in extra {
                        m.insert((*k).to_owned(), x.clone());
                    }
                    m
                };
                let text = part.get("text").cloned();
                let mut empty = part.clone();
                if let (Some(e), Some(_)) = (empty.as_object_mut(), &text) {
                    e.insert("text".into(), json!(""));
                }
                emit(out, "response.content_part.added", head(&[("part", empty)]));
                if let Some(text) = text {
                    emit(
                        out,
                        "response.output_text.delta",
                        head(&[("delta", text.clone())]),
                    );
                    emit(out, "response.output_text.done", head(&[("text", text)]));
                }
                emit(
                    out,
                    "response.content_part.done",
                    head(&[("part", part.clone())]),
                );
            }
        }
        let mut m = Map::new();
        m.insert("output_index".into(), json!(oi));
        m.insert("item".into(), item.clone());
        emit(out, "response.output_item.done", m);
    }
    let mut m = Map::new();
    m.insert("response".into(), Value::Object(v.clone()));
    emit(out, "response.completed", m);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(b: &Bytes) -> Vec<Value> {
        let text = std::str::from_utf8(b).unwrap();
        text.split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn an_openai_answer_becomes_chunks_whose_deltas_rebuild_it() {
        let answer = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}});
        let s = stream(
            Surface::OpenAiChat,
            answer.to_string().as_bytes(),
            true,
            false,
        )
        .unwrap();
        assert!(s.ends_with(b"data: [DONE]\n\n"));
        let ev = events(&s);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0]["object"], "chat.completion.chunk");
        assert_eq!(ev[0]["choices"][0]["delta"]["content"], "Hello");
        assert_eq!(ev[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(ev[2]["usage"]["completion_tokens"], 1);
        // Without include_usage, no usage chunk.
        let s = stream(
            Surface::OpenAiChat,
            answer.to_string().as_bytes(),
            false,
            false,
        )
        .unwrap();
        assert_eq!(events(&s).len(), 2);
    }

    #[test]
    fn an_anthropic_answer_becomes_its_event_sequence() {
        let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
            "content": [{"type": "text", "text": "Hi"},
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 5, "output_tokens": 7}});
        let s = stream(
            Surface::AnthropicMessages,
            answer.to_string().as_bytes(),
            false,
            false,
        )
        .unwrap();
        let types: Vec<String> = events(&s)
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let ev = events(&s);
        assert_eq!(ev[5]["delta"]["partial_json"], r#"{"a":1}"#);
        assert_eq!(ev[7]["usage"]["output_tokens"], 7);
        assert_eq!(ev[0]["message"]["usage"]["input_tokens"], 5);
    }

    #[test]
    fn a_responses_answer_ends_with_response_completed_carrying_it_whole() {
        let answer = json!({"id": "resp_1", "object": "response", "status": "completed",
            "output": [{"type": "message", "id": "m1", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Yo", "annotations": []}]}],
            "usage": {"input_tokens": 2, "output_tokens": 1, "total_tokens": 3}});
        let s = stream(
            Surface::OpenAiResponses,
            answer.to_string().as_bytes(),
            false,
            false,
        )
        .unwrap();
        let ev = events(&s);
        assert_eq!(ev.last().unwrap()["response"], answer);
        assert!(ev
            .iter()
            .any(|e| e["type"] == "response.output_text.delta" && e["delta"] == "Yo"));
        let seqs: Vec<u64> = ev
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..ev.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_gemini_answer_is_one_chunk_as_sse_or_as_a_json_array() {
        let answer = json!({"candidates": [{"content": {"parts": [{"text": "x"}]}}]});
        let sse = stream(Surface::Gemini, answer.to_string().as_bytes(), false, false).unwrap();
        assert_eq!(events(&sse), vec![answer.clone()]);
        let arr = stream(Surface::Gemini, answer.to_string().as_bytes(), false, true).unwrap();
        let parsed: Value = serde_json::from_slice(&arr).unwrap();
        assert_eq!(parsed, json!([answer]));
    }
}
