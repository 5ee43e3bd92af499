//! The text a model saw and produced, read out of each wire format's bodies and stream events:
//! message contents, tool calls' arguments and tool results; never the JSON around them.
//! Structured values (Anthropic `tool_use.input`, Gemini `functionCall.args`) count as their
//! compact JSON text, which is what the model reads and writes.

use serde_json::Value;

use super::Encoding;
use crate::surfaces::Surface;

/// A prompt's text, piece by piece (each counted on its own), and its shape.
#[derive(Debug, Default)]
pub struct Prompt {
    pub pieces: Vec<String>,
    /// Chat messages (each costs [`super::PER_MESSAGE`]); 0 for embeddings and image prompts.
    pub messages: u64,
    /// Inputs given as token ids already (embeddings): counted as they are.
    pub token_ids: u64,
}

impl Prompt {
    fn push(&mut self, s: &str) {
        if !s.is_empty() {
            self.pieces.push(s.to_owned());
        }
    }

    fn message(&mut self, role: &str) {
        self.messages += 1;
        self.push(role);
    }

    /// A string, or an array of content parts with `text` (OpenAI, Anthropic), or JSON.
    fn content(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.push(s),
            Value::Array(parts) => parts.iter().for_each(|p| self.part(p)),
            Value::Null => {}
            other => self.push(&other.to_string()),
        }
    }

    /// One content part or block of any of the chat formats.
    fn part(&mut self, p: &Value) {
        if let Some(s) = p.as_str() {
            return self.push(s);
        }
        if let Some(t) = p["text"].as_str() {
            return self.push(t);
        }
        match p["type"].as_str() {
            // Anthropic.
            Some("tool_use") => self.push(&p["input"].to_string()),
            Some("tool_result") => self.content(&p["content"]),
            // Images and files are not text: their tokens are the provider's business.
            _ => {}
        }
    }
}

/// Reads a request body in the client's `format`. A body that is not JSON gives an empty prompt.
pub fn prompt_pieces(format: Surface, body: &[u8]) -> Prompt {
    let mut p = Prompt::default();
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return p;
    };
    match format {
        Surface::OpenAiChat => {
            for m in v["messages"].as_array().into_iter().flatten() {
                p.message(m["role"].as_str().unwrap_or_default());
                p.content(&m["content"]);
                if let Some(name) = m["name"].as_str() {
                    p.push(name);
                }
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    p.push(call["function"]["name"].as_str().unwrap_or_default());
                    p.push(call["function"]["arguments"].as_str().unwrap_or_default());
                }
            }
        }
        Surface::AnthropicMessages => {
            if !v["system"].is_null() {
                p.message("system");
                p.content(&v["system"]);
            }
            for m in v["messages"].as_array().into_iter().flatten() {
                p.message(m["role"].as_str().unwrap_or_default());
                p.content(&m["content"]);
            }
        }
        Surface::Gemini => {
            let instruction = v
                .get("systemInstruction")
                .or_else(|| v.get("system_instruction"));
            if let Some(s) = instruction {
                p.message("system");
                gemini_parts(&mut p, s);
            }
            for c in v["contents"].as_array().into_iter().flatten() {
                p.message(c["role"].as_str().unwrap_or("user"));
                gemini_parts(&mut p, c);
            }
        }
        Surface::OpenAiResponses => {
            if let Some(s) = v["instructions"].as_str() {
                p.message("system");
                p.push(s);
            }
            match &v["input"] {
                Value::String(s) => {
                    p.message("user");
                    p.push(s);
                }
                Value::Array(items) => {
                    for item in items {
                        match item["type"].as_str() {
                            Some("function_call") => {
                                p.push(item["arguments"].as_str().unwrap_or_default())
                            }
                            Some("function_call_output") => p.content(&item["output"]),
                            _ => {
                                p.message(item["role"].as_str().unwrap_or("user"));
                                p.content(&item["content"]);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Surface::OpenAiEmbeddings => embedding_input(&mut p, &v["input"]),
        Surface::OpenAiImages
        | Surface::OpenAiVideos
        | Surface::OpenAiTranscriptions
        | Surface::OpenAiTranslations
        | Surface::OpenAiSpeech => {
            p.push(v["prompt"].as_str().unwrap_or_default());
        }
    }
    p
}

/// Embedding input: a string, strings, token ids, or arrays of token ids.
fn embedding_input(p: &mut Prompt, v: &Value) {
    match v {
        Value::String(s) => p.push(s),
        Value::Number(_) => p.token_ids += 1,
        Value::Array(items) => items.iter().for_each(|i| embedding_input(p, i)),
        _ => {}
    }
}

fn gemini_parts(p: &mut Prompt, content: &Value) {
    for part in content["parts"].as_array().into_iter().flatten() {
        if let Some(t) = part["text"].as_str() {
            p.push(t);
        } else if let Some(call) = part.get("functionCall") {
            p.push(call["name"].as_str().unwrap_or_default());
            p.push(&call["args"].to_string());
        } else if let Some(r) = part.get("functionResponse") {
            p.push(&r["response"].to_string());
        }
    }
}

/// An answer's text: the content, and the tool calls' arguments (each concatenated in order, so
/// streamed deltas rejoin before counting).
#[derive(Debug, Default)]
pub struct Output {
    pub content: String,
    pub arguments: String,
}

impl Output {
    pub fn count(&self, encoding: Encoding) -> u64 {
        encoding.count(&self.content) + encoding.count(&self.arguments)
    }
}

/// Reads a whole answer body in the provider's `format`.
pub fn answer_text(format: Surface, body: &[u8], out: &mut Output) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    match format {
        Surface::OpenAiChat => {
            for choice in v["choices"].as_array().into_iter().flatten() {
                let m = &choice["message"];
                out.content
                    .push_str(m["content"].as_str().unwrap_or_default());
                out.content
                    .push_str(m["refusal"].as_str().unwrap_or_default());
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    out.arguments
                        .push_str(call["function"]["arguments"].as_str().unwrap_or_default());
                }
            }
        }
        Surface::AnthropicMessages => {
            for block in v["content"].as_array().into_iter().flatten() {
                anthropic_block(block, out);
            }
        }
        Surface::Gemini => gemini_candidates(&v, out),
        Surface::OpenAiResponses => {
            for item in v["output"].as_array().into_iter().flatten() {
                match item["type"].as_str() {
                    Some("function_call") => out
                        .arguments
                        .push_str(item["arguments"].as_str().unwrap_or_default()),
                    _ => {
                        for c in item["content"].as_array().into_iter().flatten() {
                            out.content.push_str(c["text"].as_str().unwrap_or_default());
                        }
                    }
                }
            }
        }
        // Audio is metered by seconds or characters (`pipeline::answer`), never estimated from
        // text.
        Surface::OpenAiEmbeddings
        | Surface::OpenAiImages
        | Surface::OpenAiVideos
        | Surface::OpenAiTranscriptions
        | Surface::OpenAiTranslations
        | Surface::OpenAiSpeech => {}
    }
}

/// Reads one stream event's payload in the provider's `format`.
pub fn chunk_text(format: Surface, v: &Value, out: &mut Output) {
    match format {
        Surface::OpenAiChat => {
            for choice in v["choices"].as_array().into_iter().flatten() {
                let d = &choice["delta"];
                out.content
                    .push_str(d["content"].as_str().unwrap_or_default());
                out.content
                    .push_str(d["refusal"].as_str().unwrap_or_default());
                for call in d["tool_calls"].as_array().into_iter().flatten() {
                    out.arguments
                        .push_str(call["function"]["arguments"].as_str().unwrap_or_default());
                }
            }
        }
        Surface::AnthropicMessages => match v["type"].as_str() {
            Some("content_block_start") => {
                let b = &v["content_block"];
                out.content.push_str(b["text"].as_str().unwrap_or_default());
            }
            Some("content_block_delta") => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("input_json_delta") => out
                        .arguments
                        .push_str(d["partial_json"].as_str().unwrap_or_default()),
                    Some("thinking_delta") => out
                        .content
                        .push_str(d["thinking"].as_str().unwrap_or_default()),
                    _ => out.content.push_str(d["text"].as_str().unwrap_or_default()),
                }
            }
            _ => {}
        },
        Surface::Gemini => gemini_candidates(v, out),
        Surface::OpenAiResponses => match v["type"].as_str() {
            Some("response.output_text.delta") => {
                out.content
                    .push_str(v["delta"].as_str().unwrap_or_default());
            }
            Some("response.function_call_arguments.delta") => {
                out.arguments
                    .push_str(v["delta"].as_str().unwrap_or_default());
            }
            _ => {}
        },
        // Audio is metered by seconds or characters (`pipeline::answer`), never estimated from
        // text.
        Surface::OpenAiEmbeddings
        | Surface::OpenAiImages
        | Surface::OpenAiVideos
        | Surface::OpenAiTranscriptions
        | Surface::OpenAiTranslations
        | Surface::OpenAiSpeech => {}
    }
}

fn anthropic_block(block: &Value, out: &mut Output) {
    match block["type"].as_str() {
        Some("tool_use") => out.arguments.push_str(&block["input"].to_string()),
        Some("thinking") => out
            .content
            .push_str(block["thinking"].as_str().unwrap_or_default()),
        _ => out
            .content
            .push_str(block["text"].as_str().unwrap_or_default()),
    }
}

fn gemini_candidates(v: &Value, out: &mut Output) {
    for cand in v["candidates"].as_array().into_iter().flatten() {
        for part in cand["content"]["parts"].as_array().into_iter().flatten() {
            if let Some(t) = part["text"].as_str() {
                out.content.push_str(t);
            } else if let Some(call) = part.get("functionCall") {
                out.arguments.push_str(&call["args"].to_string());
            }
        }
    }
}
