//! A whole answer made from a stream: the JSON a non-streaming client of each surface expects,
//! assembled from the events a streaming client received — the inverse of [`super::synth`].
//! A streamed answer is stored in this form, so one entry serves both kinds of client (the
//! stream is made again from it for a streaming client, with or without the usage chunk as
//! that client asks).
//!
//! - OpenAI chat: the chunks' deltas merged per choice (strings joined, tool calls by their
//!   `index`, their `arguments` joined), the last `finish_reason`, the usage chunk's `usage`
//!   (or, when the client did not ask for it, `usage` from the tokens metered from the
//!   provider's report), `object: chat.completion`.
//! - Anthropic Messages: `message_start`'s message, its content blocks built from their starts
//!   and deltas (text, tool input JSON, thinking and signature, citations), `message_delta`'s
//!   stop reason and usage.
//! - Gemini: the chunks merged per candidate (adjacent text parts joined, other parts kept in
//!   order, the last finish reason, safety ratings and usage metadata).
//! - Responses: the `response` of its `response.completed` (or `response.incomplete`) event,
//!   which is the whole answer.
//!
//! A stream that does not end as its surface's stream ends yields `None` (and is not stored).

use std::collections::BTreeMap;

use bytes::Bytes;
use modelgate_shared::pricing::Tokens;
use serde_json::{json, Map, Value};

use crate::sse;
use crate::surfaces::Surface;

/// The whole answer of `events` (SSE, as the client received them), or `None`. `usage` is the
/// metered tokens, used only where the stream carried no usage of its own.
pub fn whole(surface: Surface, events: &[u8], usage: &Tokens) -> Option<Bytes> {
    let mut splitter = sse::SseSplitter::with_max_event(events.len().max(1));
    let mut all = splitter.push(events);
    all.extend(splitter.remainder());
    let mut done = false;
    let mut data = Vec::with_capacity(all.len());
    for e in &all {
        let Some(d) = sse::data_of(e) else { continue };
        if &*d == b"[DONE]" {
            done = true;
            continue;
        }
        // A stream with an event that is not JSON is not assembled.
        data.push(serde_json::from_slice::<Value>(&d).ok()?);
    }
    let answer = match surface {
        Surface::OpenAiChat if done => openai_chat(data, usage)?,
        Surface::AnthropicMessages => anthropic(data)?,
        Surface::Gemini => gemini(data)?,
        Surface::OpenAiResponses => responses(data)?,
        _ => return None,
    };
    serde_json::to_vec(&answer).ok().map(Bytes::from)
}

/// Merges an OpenAI delta into what is gathered so far: strings joined (except identity
/// fields), objects merged, arrays of indexed objects merged by `index`, anything else
/// replaced — the rule the official SDKs accumulate streams by.
fn merge(into: &mut Map<String, Value>, delta: &Map<String, Value>) {
    for (k, v) in delta {
        match (into.get_mut(k), v) {
            (Some(Value::String(have)), Value::String(more))
                if !matches!(k.as_str(), "role" | "type" | "id") =>
            {
                have.push_str(more)
            }
            (Some(Value::Object(have)), Value::Object(more)) => merge(have, more),
            (Some(Value::Array(have)), Value::Array(more)) => {
                for item in more {
                    let index = item.get("index").and_then(Value::as_u64);
                    let slot = index.and_then(|i| {
                        have.iter_mut()
                            .find(|h| h.get("index").and_then(Value::as_u64) == Some(i))
                    });
                    match (slot, item) {
                        (Some(Value::Object(h)), Value::Object(m)) => merge(h, m),
                        _ => have.push(item.clone()),
                    }
                }
            }
            (Some(_), Value::Null) => {}
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

#[derive(Default)]
struct Choice {
    message: Map<String, Value>,
    finish: Value,
    logprobs: Option<Map<String, Value>>,
}

fn openai_chat(chunks: Vec<Value>, tokens: &Tokens) -> Option<Value> {
    let mut head = Map::new();
    let mut choices: BTreeMap<u64, Choice> = BTreeMap::new();
    let mut usage = None;
    for chunk in chunks {
        let Value::Object(mut chunk) = chunk else {
            return None;
        };
        if chunk.contains_key("error") {
            return None;
        }
        for k in [
            "id",
            "created",
            "model",
            "system_fingerprint",
            "service_tier",
        ] {
            match chunk.remove(k) {
                Some(Value::Null) | None => {}
                Some(v) => {
                    head.entry(k).or_insert(v);
                }
            }
        }
        if let Some(u) = chunk.remove("usage").filter(|u| !u.is_null()) {
            usage = Some(u);
        }
        let Some(Value::Array(list)) = chunk.remove("choices") else {
            continue;
        };
        for (i, c) in list.into_iter().enumerate() {
            let Value::Object(mut c) = c else { return None };
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
            let slot = choices.entry(index).or_default();
            if let Some(Value::Object(delta)) = c.remove("delta") {
                merge(&mut slot.message, &delta);
            }
            if let Some(f) = c.remove("finish_reason").filter(|f| !f.is_null()) {
                slot.finish = f;
            }
            if let Some(Value::Object(lp)) = c.remove("logprobs") {
                merge(slot.logprobs.get_or_insert_with(Map::new), &lp);
            }
        }
    }
    let choices: Vec<Value> = choices
        .into_iter()
        .map(|(index, mut c)| {
            c.message
                .entry("role")
                .or_insert_with(|| json!("assistant"));
            // A message of tool calls streams `content: ""`; its whole answer says null.
            let empty = c.message.get("content").is_none_or(|t| t == "");
            if empty && c.message.contains_key("tool_calls") {
                c.message.insert("content".into(), Value::Null);
            }
            c.message.entry("content").or_insert(Value::Null);
            if let Some(Value::Array(calls)) = c.message.get_mut("tool_calls") {
                calls.sort_by_key(|call| call.get("index").and_then(Value::as_u64));
                for call in calls.iter_mut().filter_map(Value::as_object_mut) {
                    call.remove("index");
                }
            }
            json!({
                "index": index,
                "message": c.message,
                "logprobs": c.logprobs.map_or(Value::Null, Value::Object),
                "finish_reason": c.finish,
            })
        })
        .collect();
    let mut out = Map::new();
    out.insert("id".into(), head.remove("id").unwrap_or(Value::Null));
    out.insert("object".into(), json!("chat.completion"));
    out.insert("created".into(), head.remove("created").unwrap_or(json!(0)));
    out.insert("model".into(), head.remove("model").unwrap_or(json!("")));
    out.insert("choices".into(), Value::Array(choices));
    out.insert(
        "usage".into(),
        usage.unwrap_or_else(|| openai_usage_of(tokens)),
    );
    out.extend(head);
    Some(Value::Object(out))
}

/// OpenAI's `usage` of metered tokens (the provider's own report, read from the stream when
/// the client did not ask to be sent it).
fn openai_usage_of(t: &Tokens) -> Value {
    let mut u = json!({
        "prompt_tokens": t.input,
        "completion_tokens": t.output,
        "total_tokens": t.input + t.output,
    });
    if t.cached_input > 0 {
        u["prompt_tokens_details"] = json!({"cached_tokens": t.cached_input});
    }
    if t.reasoning > 0 {
        u["completion_tokens_details"] = json!({"reasoning_tokens": t.reasoning});
    }
    u
}

fn anthropic(events: Vec<Value>) -> Option<Value> {
    let mut message: Option<Map<String, Value>> = None;
    let mut blocks: BTreeMap<u64, Value> = BTreeMap::new();
    let mut inputs: BTreeMap<u64, String> = BTreeMap::new();
    let mut stopped = false;
    for e in events {
        let index = e.get("index").and_then(Value::as_u64);
        match e.get("type").and_then(Value::as_str)? {
            "message_start" => message = Some(e.get("message")?.as_object()?.clone()),
            "content_block_start" => {
                blocks.insert(index?, e.get("content_block")?.clone());
            }
            "content_block_delta" => {
                let i = index?;
                let block = blocks.get_mut(&i)?.as_object_mut()?;
                let delta = e.get("delta")?;
                let text = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or("");
                match delta.get("type").and_then(Value::as_str)? {
                    "text_delta" => append(block, "text", text("text")),
                    "thinking_delta" => append(block, "thinking", text("thinking")),
                    "signature_delta" => {
                        block.insert("signature".into(), json!(text("signature")));
                    }
                    "input_json_delta" => {
                        inputs.entry(i).or_default().push_str(text("partial_json"));
                    }
                    "citations_delta" => {
                        let citation = delta.get("citation")?.clone();
                        match block.get_mut("citations") {
                            Some(Value::Array(list)) => list.push(citation),
                            _ => {
                                block.insert("citations".into(), json!([citation]));
                            }
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let i = index?;
                if let Some(partial) = inputs.remove(&i) {
                    let input = if partial.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&partial).ok()?
                    };
                    blocks
                        .get_mut(&i)?
                        .as_object_mut()?
                        .insert("input".into(), input);
                }
            }
            "message_delta" => {
                let m = message.as_mut()?;
                if let Some(Value::Object(delta)) = e.get("delta") {
                    for (k, v) in delta {
                        m.insert(k.clone(), v.clone());
                    }
                }
                if let Some(Value::Object(u)) = e.get("usage") {
                    let usage = m.entry("usage").or_insert_with(|| json!({}));
                    if let Some(usage) = usage.as_object_mut() {
                        for (k, v) in u.iter().filter(|(_, v)| !v.is_null()) {
                            usage.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            "message_stop" => stopped = true,
            "error" => return None,
            _ => {}
        }
    }
    let mut m = message.filter(|_| stopped)?;
    m.insert(
        "content".into(),
        Value::Array(blocks.into_values().collect()),
    );
    Some(Value::Object(m))
}

fn append(block: &mut Map<String, Value>, k: &str, more: &str) {
    match block.get_mut(k) {
        Some(Value::String(s)) => s.push_str(more),
        _ => {
            block.insert(k.into(), json!(more));
        }
    }
}

fn gemini(chunks: Vec<Value>) -> Option<Value> {
    let mut out = Map::new();
    let mut candidates: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
    let mut any = false;
    for chunk in chunks {
        let Value::Object(mut chunk) = chunk else {
            return None;
        };
        if chunk.contains_key("error") {
            return None;
        }
        any = true;
        if let Some(Value::Array(list)) = chunk.remove("candidates") {
            for (i, c) in list.into_iter().enumerate() {
                let Value::Object(mut c) = c else { return None };
                let index = c.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
                let slot = candidates.entry(index).or_default();
                if let Some(Value::Object(content)) = c.remove("content") {
                    gemini_content(slot, content);
                }
                for (k, v) in c {
                    slot.insert(k, v);
                }
            }
        }
        for (k, v) in chunk {
            // The prompt's feedback comes first; everything else is the latest state.
            if k == "promptFeedback" && out.contains_key(&k) {
                continue;
            }
            out.insert(k, v);
        }
    }
    if !any {
        return None;
    }
    let mut answer = Map::new();
    answer.insert(
        "candidates".into(),
        Value::Array(candidates.into_values().map(Value::Object).collect()),
    );
    answer.extend(out);
    Some(Value::Object(answer))
}

/// Adds one chunk's `content` to a candidate's: its parts appended, a text part joined to the
/// text part before it when neither carries anything else (or both are thoughts).
fn gemini_content(candidate: &mut Map<String, Value>, content: Map<String, Value>) {
    let have = candidate
        .entry("content")
        .or_insert_with(|| json!({"parts": []}));
    let Some(have) = have.as_object_mut() else {
        return;
    };
    for (k, v) in content {
        if k != "parts" {
            have.insert(k, v);
            continue;
        }
        let Value::Array(parts) = v else { continue };
        let list = match have.get_mut("parts") {
            Some(Value::Array(list)) => list,
            _ => {
                have.insert("parts".into(), Value::Array(parts));
                continue;
            }
        };
        for part in parts {
            let joined = match (list.last_mut(), &part) {
                (Some(Value::Object(last)), Value::Object(p)) if plain_text(last, p) => {
                    if let (Some(Value::String(a)), Some(b)) =
                        (last.get_mut("text"), p.get("text").and_then(Value::as_str))
                    {
                        a.push_str(b);
                    }
                    true
                }
                _ => false,
            };
            if !joined {
                list.push(part);
            }
        }
    }
}

/// Both parts are text with nothing else but the same `thought` flag.
fn plain_text(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let text_only = |m: &Map<String, Value>| {
        m.get("text").is_some_and(Value::is_string)
            && m.keys().all(|k| k == "text" || k == "thought")
    };
    text_only(a) && text_only(b) && a.get("thought") == b.get("thought")
}

fn responses(events: Vec<Value>) -> Option<Value> {
    events
        .into_iter()
        .rev()
        .find_map(|mut e| match e.get("type").and_then(Value::as_str) {
            Some("response.completed" | "response.incomplete") => e
                .get_mut("response")
                .map(Value::take)
                .filter(Value::is_object),
            _ => None,
        })
}

#[cfg(test)]
mod tests;
