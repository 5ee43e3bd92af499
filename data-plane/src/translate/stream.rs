//! Streams, event by event: a [`StreamTranslator`] takes each upstream SSE event and yields the
//! events the client gets, in the client's format, while reading usage in the provider's format.
//! Nothing is buffered beyond the event at hand and a few fields of state. The terminal event
//! (OpenAI `data: [DONE]`, Anthropic `message_stop`) is held back in [`StreamTranslator::terminal`]
//! so the caller can write the usage event before the client sees the end.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::gemini::{self, GeminiToOpenAi, OpenAiToGemini};
use super::response::{
    anthropic_stop_to_openai, anthropic_usage_json, openai_finish_to_anthropic, openai_usage,
    openai_usage_json, AnthropicUsage,
};
use super::Usage;
use crate::estimate::Streamed;
use crate::sse;
use crate::surfaces::Surface;

pub struct StreamTranslator {
    mode: Mode,
    /// Usage as the provider reported it, once it has.
    pub usage: Option<Usage>,
    /// The upstream's payloads, for an estimate when the provider reports no usage.
    pub streamed: Streamed,
    /// The stream's last event, held back until the usage event is written.
    pub terminal: Option<Bytes>,
    /// Set when the provider reported an error inside the stream (already forwarded).
    pub upstream_error: Option<String>,
}

enum Mode {
    OpenAiPass {
        client_wants_usage: bool,
    },
    AnthropicPass,
    /// OpenAI Responses, passed through; usage from its terminal event.
    ResponsesPass,
    AnthropicToOpenAi(AnthropicToOpenAi),
    OpenAiToAnthropic(OpenAiToAnthropic),
    /// Gemini to a Gemini client: each chunk is held until the next arrives, so the last one
    /// (Gemini streams have no terminal event) can wait for the usage event.
    GeminiPass {
        held: Option<Bytes>,
        finished: bool,
    },
    GeminiToOpenAi {
        t: GeminiToOpenAi,
        include_usage: bool,
    },
    /// Through the OpenAI chunk form.
    GeminiToAnthropic {
        g: GeminiToOpenAi,
        a: OpenAiToAnthropic,
    },
    OpenAiToGemini(OpenAiToGemini),
    /// Through the OpenAI chunk form.
    AnthropicToGemini {
        a: AnthropicToOpenAi,
        g: OpenAiToGemini,
    },
}

impl StreamTranslator {
    pub fn new(upstream: Surface, client: Surface, client_wants_usage: bool) -> Self {
        let mode = match (upstream, client) {
            (Surface::OpenAiChat, Surface::OpenAiChat) => Mode::OpenAiPass { client_wants_usage },
            (Surface::AnthropicMessages, Surface::AnthropicMessages) => Mode::AnthropicPass,
            (Surface::AnthropicMessages, Surface::OpenAiChat) => {
                Mode::AnthropicToOpenAi(AnthropicToOpenAi {
                    include_usage: client_wants_usage,
                    ..AnthropicToOpenAi::default()
                })
            }
            (Surface::OpenAiChat, Surface::AnthropicMessages) => {
                Mode::OpenAiToAnthropic(OpenAiToAnthropic::default())
            }
            (Surface::Gemini, Surface::Gemini) => Mode::GeminiPass {
                held: None,
                finished: false,
            },
            (Surface::Gemini, Surface::OpenAiChat) => Mode::GeminiToOpenAi {
                t: GeminiToOpenAi::default(),
                include_usage: client_wants_usage,
            },
            (Surface::Gemini, Surface::AnthropicMessages) => Mode::GeminiToAnthropic {
                g: GeminiToOpenAi::default(),
                a: OpenAiToAnthropic::default(),
            },
            (Surface::OpenAiChat, Surface::Gemini) => {
                Mode::OpenAiToGemini(OpenAiToGemini::default())
            }
            (Surface::AnthropicMessages, Surface::Gemini) => Mode::AnthropicToGemini {
                a: AnthropicToOpenAi::default(),
                g: OpenAiToGemini::default(),
            },
            (Surface::OpenAiResponses, _) => Mode::ResponsesPass,
            // Embeddings and images are never streamed; pass anything through as OpenAI.
            _ => Mode::OpenAiPass { client_wants_usage },
        };
        StreamTranslator {
            mode,
            usage: None,
            streamed: Streamed::default(),
            terminal: None,
            upstream_error: None,
        }
    }

    /// One upstream event in; the client's events appended to `out`.
    pub fn event(&mut self, event: Bytes, out: &mut Vec<Bytes>) {
        let Some(data) = sse::data_of(&event) else {
            return;
        };
        match &mut self.mode {
            Mode::OpenAiPass { client_wants_usage } => {
                if &*data == b"[DONE]" {
                    self.terminal = Some(event);
                    return;
                }
                self.streamed.push(&data);
                let mut forward = true;
                // `openai_usage` searches for the name first: a chunk without it, or with
                // `"usage":null`, costs one search.
                if let Some(u) = openai_usage(&data) {
                    self.usage = Some(u);
                    forward = *client_wants_usage || !usage_only(&data);
                }
                if is_openai_error(&data) {
                    self.upstream_error = Some(super::response::error_message(&data));
                }
                if forward {
                    out.push(event);
                }
            }
            Mode::ResponsesPass => {
                use crate::surfaces::openai_responses::{stream_event, StreamEvent};
                self.streamed.push(&data);
                match stream_event(&data) {
                    StreamEvent::Terminal(usage) => {
                        self.usage = usage;
                        self.terminal = Some(event);
                    }
                    StreamEvent::Error(message) => {
                        self.upstream_error = Some(message);
                        out.push(event);
                    }
                    StreamEvent::Other => out.push(event),
                }
            }
            Mode::AnthropicPass => {
                self.streamed.push(&data);
                let Ok(peek) = serde_json::from_slice::<AnthropicEventPeek>(&data) else {
                    out.push(event);
                    return;
                };
                track_anthropic_usage(&mut self.usage, &peek);
                match peek.kind.as_str() {
                    "message_stop" => self.terminal = Some(event),
                    "error" => {
                        self.upstream_error = Some(super::response::error_message(&data));
                        out.push(event);
                    }
                    _ => out.push(event),
                }
            }
            Mode::AnthropicToOpenAi(t) => {
                self.streamed.push(&data);
                let Ok(v) = serde_json::from_slice::<Value>(&data) else {
                    return;
                };
                if let Ok(peek) = serde_json::from_slice::<AnthropicEventPeek>(&data) {
                    track_anthropic_usage(&mut self.usage, &peek);
                }
                t.event(
                    &v,
                    self.usage,
                    out,
                    &mut self.terminal,
                    &mut self.upstream_error,
                );
            }
            Mode::OpenAiToAnthropic(t) => {
                if &*data == b"[DONE]" {
                    // After an error event nothing follows it: the stream ends there.
                    if self.upstream_error.is_none() {
                        t.finish(self.usage, out, &mut self.terminal);
                    }
                    return;
                }
                self.streamed.push(&data);
                if let Some(u) = openai_usage(&data) {
                    self.usage = Some(u);
                }
                let Ok(v) = serde_json::from_slice::<Value>(&data) else {
                    return;
                };
                t.chunk(&v, out, &mut self.upstream_error);
            }
            Mode::GeminiPass { held, finished } => {
                self.streamed.push(&data);
                if gemini::USAGE_METADATA.find(&data).is_some() {
                    if let Some(u) = gemini::gemini_usage(&data) {
                        self.usage = Some(u);
                    }
                }
                if is_openai_error(&data) {
                    self.upstream_error = Some(super::response::error_message(&data));
                }
                if gemini::has_finish_reason(&data) {
                    *finished = true;
                }
                if let Some(prev) = held.replace(event) {
                    out.push(prev);
                }
            }
            Mode::GeminiToOpenAi { t, .. } => {
                self.streamed.push(&data);
                if let Some(u) = gemini::gemini_usage(&data) {
                    self.usage = Some(u);
                }
                let Ok(v) = serde_json::from_slice::<Value>(&data) else {
                    return;
                };
                let mut chunks = Vec::with_capacity(2);
                if let Some(e) = t.event(&v, &mut chunks) {
                    self.upstream_error = Some(e);
                }
                out.extend(chunks.iter().map(openai_event));
            }
            Mode::GeminiToAnthropic { g, a } => {
                self.streamed.push(&data);
                if let Some(u) = gemini::gemini_usage(&data) {
                    self.usage = Some(u);
                }
                let Ok(v) = serde_json::from_slice::<Value>(&data) else {
                    return;
                };
                let mut chunks = Vec::with_capacity(2);
                // An error is reported by the Anthropic translator below.
                let _ = g.event(&v, &mut chunks);
                for c in &chunks {
                    a.chunk(c, out, &mut self.upstream_error);
                }
            }
            Mode::OpenAiToGemini(g) => {
                if &*data == b"[DONE]" {
                    self.terminal = Some(g.finish(self.usage));
                    return;
                }
                self.streamed.push(&data);
                if let Some(u) = openai_usage(&data) {
                    self.usage = Some(u);
                }
                let Ok(v) = serde_json::from_slice::<Value>(&data) else {
                    return;
                };
                if let Some(e) = g.chunk(&v, out) {
                    self.upstream_error = Some(e);
                }
            }
            Mode::AnthropicToGemini { a, g } => {
                self.streamed.push(&data);
                let Ok(v) = serde_json::from_slice::<Value>(&data) else {
                    return;
                };
                if let Ok(peek) = serde_json::from_slice::<AnthropicEventPeek>(&data) {
                    track_anthropic_usage(&mut self.usage, &peek);
                }
                let mut chunks = Vec::with_capacity(2);
                let mut done = None;
                a.event(
                    &v,
                    self.usage,
                    &mut chunks,
                    &mut done,
                    &mut self.upstream_error,
                );
                for c in chunks {
                    let Some(d) = sse::data_of(&c) else { continue };
                    if let Ok(cv) = serde_json::from_slice::<Value>(&d) {
                        let _ = g.chunk(&cv, out);
                    }
                }
                if done.is_some() {
                    self.terminal = Some(g.finish(self.usage));
                }
            }
        }
    }

    /// The upstream stream ended without breaking off. Gemini streams have no terminal event:
    /// a Gemini stream that gave a finish reason is complete, and its closing events are
    /// made here (held back like a terminal event).
    pub fn end(&mut self, out: &mut Vec<Bytes>) {
        match &mut self.mode {
            Mode::GeminiPass { held, finished } => {
                if *finished {
                    self.terminal = held.take();
                } else if let Some(h) = held.take() {
                    out.push(h);
                }
            }
            Mode::GeminiToOpenAi { t, include_usage } if t.finished => {
                let mut last = Vec::new();
                if *include_usage {
                    last.extend_from_slice(&openai_event(
                        &t.usage_chunk(self.usage.unwrap_or_default()),
                    ));
                }
                last.extend_from_slice(b"data: [DONE]\n\n");
                self.terminal = Some(Bytes::from(last));
            }
            Mode::GeminiToAnthropic { g, a } if g.finished => {
                let mut events = Vec::with_capacity(3);
                let mut stop = None;
                a.finish(self.usage, &mut events, &mut stop);
                let mut last = Vec::new();
                for e in events.iter().chain(stop.iter()) {
                    last.extend_from_slice(e);
                }
                self.terminal = Some(Bytes::from(last));
            }
            _ => {}
        }
    }
}

fn is_openai_error(data: &[u8]) -> bool {
    data.starts_with(b"{\"error\"")
}

#[derive(Deserialize)]
struct ChunkPeek {
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

fn usage_only(data: &[u8]) -> bool {
    serde_json::from_slice::<ChunkPeek>(data)
        .ok()
        .and_then(|c| c.choices)
        .is_some_and(|c| c.is_empty())
}

#[derive(Deserialize)]
struct AnthropicEventPeek {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<MessagePeek>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct MessagePeek {
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

/// `message_start.message.usage` gives the input, `message_delta.usage` the output (and, on
/// newer API versions, the input again).
fn track_anthropic_usage(usage: &mut Option<Usage>, peek: &AnthropicEventPeek) {
    let u = match peek.kind.as_str() {
        "message_start" => peek.message.as_ref().and_then(|m| m.usage.as_ref()),
        "message_delta" => peek.usage.as_ref(),
        _ => None,
    };
    let Some(u) = u else { return };
    let acc = usage.get_or_insert_with(Usage::default);
    if let Some((input, cached)) = u.input() {
        acc.input = input;
        acc.cached_input = cached;
    }
    if let Some(o) = u.output_tokens {
        acc.output = o;
    }
}

fn anthropic_event(kind: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

fn openai_event(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// Anthropic events → OpenAI chunks.
#[derive(Default)]
struct AnthropicToOpenAi {
    include_usage: bool,
    id: String,
    model: String,
    created: i64,
    /// Anthropic content block index → OpenAI tool call index.
    tool_blocks: Vec<(u64, usize)>,
    finish: Option<&'static str>,
}

impl AnthropicToOpenAi {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        openai_event(&json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
    }

    fn event(
        &mut self,
        v: &Value,
        usage: Option<Usage>,
        out: &mut Vec<Bytes>,
        terminal: &mut Option<Bytes>,
        upstream_error: &mut Option<String>,
    ) {
        match v["type"].as_str() {
            Some("message_start") => {
                let m = &v["message"];
                m["id"]
                    .as_str()
                    .unwrap_or_default()
                    .clone_into(&mut self.id);
                m["model"]
                    .as_str()
                    .unwrap_or_default()
                    .clone_into(&mut self.model);
                self.created = chrono::Utc::now().timestamp();
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            Some("content_block_start") => {
                let b = &v["content_block"];
                match b["type"].as_str() {
                    Some("tool_use") => {
                        let index = self.tool_blocks.len();
                        self.tool_blocks
                            .push((v["index"].as_u64().unwrap_or(0), index));
                        out.push(self.chunk(
                            json!({"tool_calls": [{"index": index, "id": b["id"], "type": "function",
                                    "function": {"name": b["name"], "arguments": ""}}]}),
                            None,
                        ));
                    }
                    Some("text") => {
                        if let Some(t) = b["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(self.chunk(json!({"content": t}), None));
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        out.push(self.chunk(json!({"content": d["text"]}), None));
                    }
                    Some("input_json_delta") => {
                        let block = v["index"].as_u64().unwrap_or(0);
                        let Some(&(_, index)) = self.tool_blocks.iter().find(|(b, _)| *b == block)
                        else {
                            return;
                        };
                        out.push(self.chunk(
                            json!({"tool_calls": [{"index": index, "function": {"arguments": d["partial_json"]}}]}),
                            None,
                        ));
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                let finish =
                    anthropic_stop_to_openai(v["delta"]["stop_reason"].as_str().unwrap_or(""));
                self.finish = Some(finish);
                out.push(self.chunk(json!({}), Some(finish)));
            }
            Some("message_stop") => {
                if self.include_usage {
                    out.push(openai_event(&json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [],
                        "usage": openai_usage_json(usage.unwrap_or_default()),
                    })));
                }
                *terminal = Some(Bytes::from_static(b"data: [DONE]\n\n"));
            }
            Some("error") => {
                let message = v["error"]["message"].as_str().unwrap_or("provider error");
                *upstream_error = Some(message.to_owned());
                out.push(openai_event(&json!({"error": {
                    "message": message, "type": "server_error", "param": null, "code": null,
                }})));
            }
            // ping, content_block_stop, thinking deltas: nothing to say.
            _ => {}
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    /// An OpenAI tool call index.
    Tool(u64),
}

/// OpenAI chunks → Anthropic events.
#[derive(Default)]
struct OpenAiToAnthropic {
    started: bool,
    /// Index of the open content block, and what it is.
    open: Option<(usize, Open)>,
    next_block: usize,
    finish: Option<&'static str>,
    id: String,
    model: String,
}

impl OpenAiToAnthropic {
    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(anthropic_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        ));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open.take() {
            out.push(anthropic_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn open(&mut self, what: Open, block: Value, out: &mut Vec<Bytes>) -> usize {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, what));
        out.push(anthropic_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    fn chunk(&mut self, v: &Value, out: &mut Vec<Bytes>, upstream_error: &mut Option<String>) {
        if let Some(e) = v.get("error") {
            let message = e["message"].as_str().unwrap_or("provider error");
            *upstream_error = Some(message.to_owned());
            out.push(anthropic_event(
                "error",
                &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
            ));
            return;
        }
        if !self.started {
            v["id"]
                .as_str()
                .unwrap_or_default()
                .clone_into(&mut self.id);
            v["model"]
                .as_str()
                .unwrap_or_default()
                .clone_into(&mut self.model);
            self.start(out);
        }
        let Some(choice) = v["choices"].as_array().and_then(|c| c.first()) else {
            return;
        };
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            let index = match self.open {
                Some((i, Open::Text)) => i,
                _ => self.open(Open::Text, json!({"type": "text", "text": ""}), out),
            };
            out.push(anthropic_event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        if let Some(calls) = delta["tool_calls"].as_array() {
            for c in calls {
                // A call is its `index`: later chunks of it may repeat the id (some
                // OpenAI-compatible servers do) and still continue the same block.
                let call = c["index"].as_u64().unwrap_or(0);
                let index = match self.open {
                    Some((i, Open::Tool(t))) if t == call => i,
                    _ => {
                        let id = match c["id"].as_str().filter(|id| !id.is_empty()) {
                            Some(id) => id.to_owned(),
                            None => format!("toolu_{}_{call}", self.id),
                        };
                        self.open(
                            Open::Tool(call),
                            json!({"type": "tool_use", "id": id, "name": c["function"]["name"], "input": {}}),
                            out,
                        )
                    }
                };
                if let Some(args) = c["function"]["arguments"]
                    .as_str()
                    .filter(|a| !a.is_empty())
                {
                    out.push(anthropic_event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": args}}),
                    ));
                }
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish = Some(openai_finish_to_anthropic(f));
        }
    }

    fn finish(&mut self, usage: Option<Usage>, out: &mut Vec<Bytes>, terminal: &mut Option<Bytes>) {
        self.start(out);
        self.close(out);
        let usage = anthropic_usage_json(usage.unwrap_or_default());
        out.push(anthropic_event(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": self.finish.unwrap_or("end_turn"), "stop_sequence": null},
                    "usage": usage}),
        ));
        *terminal = Some(anthropic_event(
            "message_stop",
            &json!({"type": "message_stop"}),
        ));
    }
}
