//! Request bodies from one wire format to the other. Every top-level parameter is either
//! carried (as is or translated) or rejected with a 400 naming it; with the route policy's
//! `drop_unsupported`, rejected parameters are dropped instead.

use serde_json::{json, Map, Value};

use super::{obj, Unsupported, DEFAULT_MAX_TOKENS};
use crate::error::ProxyError;

type Obj = Map<String, Value>;

pub(crate) fn bad(param: impl Into<String>, message: impl Into<String>) -> ProxyError {
    let param = param.into();
    let message = message.into();
    ProxyError::unsupported_param(param.clone(), format!("`{param}`: {message}"))
}

/// The text of OpenAI-style content: a string, or text parts joined by newlines; any other
/// part cannot be carried.
pub(crate) fn text_of_parts(v: &Value, param: &str) -> Result<String, ProxyError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = String::new();
            for (i, p) in parts.iter().enumerate() {
                match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("text"), Some(t)) => {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(t);
                    }
                    _ => {
                        return Err(bad(
                            format!("{param}[{i}]"),
                            "only text content can be carried here",
                        ))
                    }
                }
            }
            Ok(out)
        }
        _ => Err(ProxyError::invalid_param_owned(
            param.to_owned(),
            "must be a string or an array of content parts",
        )),
    }
}

/// Appends a message, merging it into the previous one when the role repeats (Anthropic
/// expects user and assistant turns to alternate).
fn push_message(messages: &mut Vec<Value>, role: &str, mut blocks: Vec<Value>) {
    if let Some(last) = messages.last_mut() {
        if last["role"] == role {
            if let Some(content) = last["content"].as_array_mut() {
                content.append(&mut blocks);
                return;
            }
        }
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// An OpenAI `image_url` part as an Anthropic image block.
fn image_block(part: &Value, param: &str) -> Result<Value, ProxyError> {
    let url = part["image_url"]["url"]
        .as_str()
        .or_else(|| part["image_url"].as_str())
        .ok_or_else(|| bad(param, "an image_url part needs image_url.url"))?;
    if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest
            .split_once(";base64,")
            .ok_or_else(|| bad(param, "only base64 data URLs can be carried"))?;
        return Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
        );
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(bad(param, "must be an http(s) URL or a base64 data URL"))
}

fn user_blocks(content: &Value, param: &str) -> Result<Vec<Value>, ProxyError> {
    match content {
        // Anthropic refuses empty text blocks; an empty part carries nothing.
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .filter(|(_, p)| !(p["type"] == "text" && p["text"] == ""))
            .map(|(i, p)| {
                let here = format!("{param}[{i}]");
                match p["type"].as_str() {
                    Some("text") => Ok(json!({"type": "text", "text": p["text"]})),
                    Some("image_url") => image_block(p, &here),
                    _ => Err(bad(here, "this content part type cannot be carried")),
                }
            })
            .collect(),
        _ => Err(ProxyError::invalid_param_owned(
            param.to_owned(),
            "must be a string or an array of content parts",
        )),
    }
}

/// OpenAI chat completions request → Anthropic Messages request.
pub fn openai_to_anthropic(raw: &[u8], model: &str, drop: bool) -> Result<Value, ProxyError> {
    let req = obj(raw)?;
    let mut out = Obj::new();
    out.insert("model".into(), model.into());
    let mut unsupported = Unsupported::new(drop);
    let mut max_tokens: Option<Value> = None;
    let mut tool_choice: Option<Value> = None;
    let mut parallel: Option<bool> = None;
    for (k, v) in &req {
        match k.as_str() {
            "model" | "messages" => {}
            "stream" => {
                out.insert("stream".into(), v.clone());
            }
            // Anthropic streams always carry usage.
            "stream_options" => {}
            // OpenAI takes a temperature up to 2, Anthropic up to 1.
            "temperature" if v.as_f64().is_some_and(|t| t > 1.0) => {
                unsupported.reject("temperature", "Anthropic accepts a temperature from 0 to 1")?;
                out.insert(k.clone(), json!(1.0));
            }
            "temperature" | "top_p" => {
                if !v.is_null() {
                    out.insert(k.clone(), v.clone());
                }
            }
            "max_tokens" => {
                if !v.is_null() && max_tokens.is_none() {
                    max_tokens = Some(v.clone());
                }
            }
            "max_completion_tokens" => {
                if !v.is_null() {
                    max_tokens = Some(v.clone());
                }
            }
            "stop" => match v {
                Value::Null => {}
                Value::String(s) => {
                    out.insert("stop_sequences".into(), json!([s]));
                }
                Value::Array(_) => {
                    out.insert("stop_sequences".into(), v.clone());
                }
                _ => {
                    return Err(ProxyError::invalid_param(
                        "stop",
                        "must be a string or array",
                    ))
                }
            },
            "user" => {
                if !v.is_null() {
                    out.insert("metadata".into(), json!({"user_id": v}));
                }
            }
            "n" if v.is_null() || v.as_u64() == Some(1) => {}
            "logprobs" if v.is_null() || *v == Value::Bool(false) => {}
            "presence_penalty" | "frequency_penalty" if v.is_null() || v.as_f64() == Some(0.0) => {}
            "parallel_tool_calls" => parallel = v.as_bool(),
            "response_format" => match v["type"].as_str() {
                None | Some("text") => {}
                Some(_) => unsupported.reject(
                    k,
                    "Anthropic Messages has no JSON mode; use a tool with an input_schema instead",
                )?,
            },
            "tools" => {
                if let Some(tools) = v.as_array() {
                    let mut list = Vec::with_capacity(tools.len());
                    for (i, t) in tools.iter().enumerate() {
                        if t["type"] != "function" {
                            unsupported
                                .reject(&format!("tools[{i}].type"), "only function tools")?;
                            continue;
                        }
                        let f = &t["function"];
                        let mut tool = Obj::new();
                        tool.insert("name".into(), f["name"].clone());
                        if let Some(d) = f.get("description") {
                            tool.insert("description".into(), d.clone());
                        }
                        let schema = match f.get("parameters") {
                            Some(p) if p.is_object() => p.clone(),
                            _ => json!({"type": "object", "properties": {}}),
                        };
                        tool.insert("input_schema".into(), schema);
                        list.push(Value::Object(tool));
                    }
                    out.insert("tools".into(), Value::Array(list));
                }
            }
            "tool_choice" => {
                tool_choice = match v {
                    Value::Null => None,
                    Value::String(s) => match s.as_str() {
                        "auto" => Some(json!({"type": "auto"})),
                        "none" => Some(json!({"type": "none"})),
                        "required" => Some(json!({"type": "any"})),
                        _ => {
                            return Err(ProxyError::invalid_param(
                                "tool_choice",
                                "must be auto, none, required or a function",
                            ))
                        }
                    },
                    Value::Object(_) => match v["function"]["name"].as_str() {
                        Some(name) => Some(json!({"type": "tool", "name": name})),
                        None => {
                            return Err(ProxyError::invalid_param(
                                "tool_choice",
                                "a function tool_choice needs function.name",
                            ))
                        }
                    },
                    _ => {
                        return Err(ProxyError::invalid_param(
                            "tool_choice",
                            "must be a string or an object",
                        ))
                    }
                };
            }
            _ => unsupported.reject(k, "Anthropic Messages cannot carry this parameter")?,
        }
    }
    if parallel == Some(false) {
        let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        // `none` takes no options: with no tool to call there is nothing to parallelise.
        if let Some(c) = choice.as_object_mut().filter(|c| c["type"] != "none") {
            c.insert("disable_parallel_tool_use".into(), true.into());
        }
    }
    if let Some(c) = tool_choice {
        out.insert("tool_choice".into(), c);
    }
    out.insert(
        "max_tokens".into(),
        max_tokens.unwrap_or_else(|| DEFAULT_MAX_TOKENS.into()),
    );

    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return Err(ProxyError::invalid_param(
            "messages",
            "messages must be an array",
        ));
    };
    let mut system = String::new();
    let mut turns: Vec<Value> = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}].content");
        match m["role"].as_str() {
            Some("system" | "developer") => {
                if !system.is_empty() {
                    system.push_str("\n\n");
                }
                system.push_str(&text_of_parts(&m["content"], &param)?);
            }
            Some("user") => push_message(&mut turns, "user", user_blocks(&m["content"], &param)?),
            Some("assistant") => {
                let mut blocks = Vec::new();
                let text = text_of_parts(&m["content"], &param)?;
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                if let Some(calls) = m["tool_calls"].as_array() {
                    for (j, c) in calls.iter().enumerate() {
                        let args = c["function"]["arguments"].as_str().unwrap_or("{}");
                        let input: Value = if args.trim().is_empty() {
                            json!({})
                        } else {
                            serde_json::from_str(args).map_err(|_| {
                                ProxyError::invalid_param_owned(
                                    format!("messages[{i}].tool_calls[{j}].function.arguments"),
                                    "must be a JSON object encoded as a string",
                                )
                            })?
                        };
                        blocks.push(json!({"type": "tool_use", "id": c["id"], "name": c["function"]["name"], "input": input}));
                    }
                }
                push_message(&mut turns, "assistant", blocks);
            }
            Some("tool") => {
                let content = text_of_parts(&m["content"], &param)?;
                push_message(
                    &mut turns,
                    "user",
                    vec![
                        json!({"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": content}),
                    ],
                );
            }
            _ => {
                return Err(ProxyError::invalid_param_owned(
                    format!("messages[{i}].role"),
                    "must be system, developer, user, assistant or tool",
                ))
            }
        }
    }
    if !system.is_empty() {
        out.insert("system".into(), system.into());
    }
    out.insert("messages".into(), Value::Array(turns));
    Ok(Value::Object(out))
}

/// OpenAI's own API wants `max_completion_tokens` (its reasoning models refuse `max_tokens`);
/// OpenAI-compatible servers keep `max_tokens`.
pub fn use_max_completion_tokens(request: &mut Value) {
    if let Some(o) = request.as_object_mut() {
        if let Some(v) = o.remove("max_tokens") {
            o.insert("max_completion_tokens".into(), v);
        }
    }
}

/// Anthropic Messages request → OpenAI chat completions request. A stream always asks for usage
/// (`stream_options.include_usage`), which Anthropic clients get in `message_delta`.
pub fn anthropic_to_openai(raw: &[u8], model: &str, drop: bool) -> Result<Value, ProxyError> {
    let req = obj(raw)?;
    let mut out = Obj::new();
    out.insert("model".into(), model.into());
    let mut unsupported = Unsupported::new(drop);
    let mut messages: Vec<Value> = Vec::new();
    let mut parallel_off = false;
    for (k, v) in &req {
        match k.as_str() {
            "model" | "messages" | "system" => {}
            "max_tokens" | "temperature" | "top_p" => {
                out.insert(k.clone(), v.clone());
            }
            "stream" => {
                out.insert("stream".into(), v.clone());
                if *v == Value::Bool(true) {
                    out.insert("stream_options".into(), json!({"include_usage": true}));
                }
            }
            "stop_sequences" => {
                out.insert("stop".into(), v.clone());
            }
            "metadata" => {
                if let Some(u) = v.get("user_id") {
                    out.insert("user".into(), u.clone());
                }
            }
            "tools" => {
                if let Some(tools) = v.as_array() {
                    let mut list = Vec::with_capacity(tools.len());
                    for (i, t) in tools.iter().enumerate() {
                        if t.get("input_schema").is_none() {
                            unsupported.reject(
                                &format!("tools[{i}]"),
                                "only client tools with an input_schema can be carried",
                            )?;
                            continue;
                        }
                        let mut f = Obj::new();
                        f.insert("name".into(), t["name"].clone());
                        if let Some(d) = t.get("description") {
                            f.insert("description".into(), d.clone());
                        }
                        f.insert("parameters".into(), t["input_schema"].clone());
                        list.push(json!({"type": "function", "function": f}));
                    }
                    out.insert("tools".into(), Value::Array(list));
                }
            }
            "tool_choice" => {
                let choice = match v["type"].as_str() {
                    Some("auto") => json!("auto"),
                    Some("any") => json!("required"),
                    Some("none") => json!("none"),
                    Some("tool") => json!({"type": "function", "function": {"name": v["name"]}}),
                    _ => {
                        return Err(ProxyError::invalid_param(
                            "tool_choice",
                            "tool_choice.type must be auto, any, tool or none",
                        ))
                    }
                };
                parallel_off = v["disable_parallel_tool_use"] == Value::Bool(true);
                out.insert("tool_choice".into(), choice);
            }
            _ => unsupported.reject(k, "OpenAI chat completions cannot carry this parameter")?,
        }
    }
    if parallel_off {
        out.insert("parallel_tool_calls".into(), false.into());
    }
    match req.get("system") {
        None | Some(Value::Null) => {}
        Some(s) => {
            let text = text_of_parts(s, "system")?;
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let Some(turns) = req.get("messages").and_then(Value::as_array) else {
        return Err(ProxyError::invalid_param(
            "messages",
            "messages: Field required",
        ));
    };
    for (i, m) in turns.iter().enumerate() {
        let param = format!("messages[{i}].content");
        let role = m["role"].as_str();
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(b) => b.clone(),
            _ => {
                return Err(ProxyError::invalid_param_owned(
                    param,
                    "must be a string or an array of content blocks",
                ))
            }
        };
        match role {
            Some("user") => {
                let mut parts: Vec<Value> = Vec::new();
                for (j, b) in blocks.iter().enumerate() {
                    let here = format!("{param}[{j}]");
                    match b["type"].as_str() {
                        Some("text") => parts.push(json!({"type": "text", "text": b["text"]})),
                        Some("image") => {
                            let s = &b["source"];
                            let url = match s["type"].as_str() {
                                Some("base64") => format!(
                                    "data:{};base64,{}",
                                    s["media_type"].as_str().unwrap_or("image/png"),
                                    s["data"].as_str().unwrap_or_default()
                                ),
                                Some("url") => s["url"].as_str().unwrap_or_default().to_owned(),
                                _ => {
                                    unsupported
                                        .reject(&here, "this image source cannot be carried")?;
                                    continue;
                                }
                            };
                            parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                        }
                        Some("tool_result") => {
                            let content = text_of_parts(&b["content"], &format!("{here}.content"))?;
                            messages.push(json!({"role": "tool", "tool_call_id": b["tool_use_id"], "content": content}));
                        }
                        _ => unsupported
                            .reject(&here, "this content block type cannot be carried")?,
                    }
                }
                if !parts.is_empty() {
                    let only_text = parts.iter().all(|p| p["type"] == "text");
                    let content = if only_text {
                        let texts: Vec<&str> =
                            parts.iter().filter_map(|p| p["text"].as_str()).collect();
                        Value::String(texts.join("\n"))
                    } else {
                        Value::Array(parts)
                    };
                    messages.push(json!({"role": "user", "content": content}));
                }
            }
            Some("assistant") => {
                let mut text = String::new();
                let mut calls: Vec<Value> = Vec::new();
                for (j, b) in blocks.iter().enumerate() {
                    match b["type"].as_str() {
                        Some("text") => text.push_str(b["text"].as_str().unwrap_or_default()),
                        Some("tool_use") => calls.push(json!({
                            "id": b["id"], "type": "function",
                            "function": {"name": b["name"], "arguments": b["input"].to_string()},
                        })),
                        _ => unsupported.reject(
                            &format!("{param}[{j}]"),
                            "this content block type cannot be carried",
                        )?,
                    }
                }
                let mut msg = Obj::new();
                msg.insert("role".into(), "assistant".into());
                msg.insert(
                    "content".into(),
                    if text.is_empty() && !calls.is_empty() {
                        Value::Null
                    } else {
                        text.into()
                    },
                );
                if !calls.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                messages.push(Value::Object(msg));
            }
            _ => {
                return Err(ProxyError::invalid_param_owned(
                    format!("messages[{i}].role"),
                    "must be user or assistant",
                ))
            }
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    Ok(Value::Object(out))
}
