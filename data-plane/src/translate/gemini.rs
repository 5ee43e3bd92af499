//! Google Gemini (`generateContent`) ⇄ OpenAI chat completions: requests, answers, error
//! bodies, usage and stream chunks. Anthropic Messages ⇄ Gemini pivots through the OpenAI chat
//! form (`request::anthropic_to_openai` then [`openai_to_gemini`], and back), so every parameter
//! is still either carried or rejected by the name the client used.
//!
//! Choices worth knowing:
//! - Field names are read in Gemini's camelCase and in the snake_case the REST API also accepts
//!   (`generation_config`, `max_output_tokens`); they are written in camelCase.
//! - OpenAI function parameters (JSON Schema) go to Gemini as `parametersJsonSchema`, which takes
//!   JSON Schema as is; both `parameters` and `parametersJsonSchema` are read.
//! - A tool result needs the function's name in Gemini (`functionResponse.name`) and an id in
//!   OpenAI (`tool_call_id`): names are looked up from the earlier call with that id, ids are the
//!   call's `id` when Gemini sent one, else made up (`call_<n>`) and matched to responses by name
//!   in call order. A tool result that is not a JSON object goes as `{"result": <text>}`.
//! - Usage: `promptTokenCount` (+ `toolUsePromptTokenCount`) is the input, with
//!   `cachedContentTokenCount` its cached part; output is `candidatesTokenCount +
//!   thoughtsTokenCount` (Gemini counts thoughts apart), of which `thoughtsTokenCount` is
//!   reasoning. In a stream every chunk may carry `usageMetadata`; the last one holds the totals.
//! - Finish reasons: `STOP`→`stop` (`tool_calls` when the answer calls a function), `MAX_TOKENS`
//!   →`length`, `SAFETY`/`RECITATION`/`BLOCKLIST`/`PROHIBITED_CONTENT`/`SPII`→`content_filter`.
//! - Thought parts (`"thought": true`) of earlier model turns and in answers are not carried
//!   (they are the model's own scratch text, not a parameter).

use std::borrow::Cow;
use std::sync::LazyLock;

use bytes::Bytes;
use http::StatusCode;
use memchr::memmem::Finder;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::request::{bad, text_of_parts};
use super::response::{error_message, openai_usage, openai_usage_json};
use super::{obj, Unsupported, Usage};
use crate::error::ProxyError;
use crate::surfaces::gemini::error_json;

type Obj = Map<String, Value>;

/// `max_output_tokens` → `maxOutputTokens`; camelCase names are returned as they are.
fn camel(k: &str) -> Cow<'_, str> {
    if !k.contains('_') {
        return Cow::Borrowed(k);
    }
    let mut out = String::with_capacity(k.len());
    let mut upper = false;
    for c in k.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A field read in either spelling.
fn field<'v>(v: &'v Value, camel_name: &str, snake_name: &str) -> &'v Value {
    match v.get(camel_name) {
        Some(x) => x,
        None => &v[snake_name],
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// Appends parts to the last content when the role repeats (Gemini expects turns to alternate
/// and all function responses for one model turn in one content).
fn push_content(contents: &mut Vec<Value>, role: &str, mut parts: Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    if let Some(last) = contents.last_mut() {
        if last["role"] == role {
            if let Some(p) = last["parts"].as_array_mut() {
                p.append(&mut parts);
                return;
            }
        }
    }
    contents.push(json!({"role": role, "parts": parts}));
}

fn openai_user_parts(content: &Value, param: &str) -> Result<Vec<Value>, ProxyError> {
    match content {
        Value::String(s) => Ok(vec![json!({"text": s})]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let here = format!("{param}[{i}]");
                match p["type"].as_str() {
                    Some("text") => Ok(json!({"text": p["text"]})),
                    Some("image_url") => {
                        let url = p["image_url"]["url"]
                            .as_str()
                            .or_else(|| p["image_url"].as_str())
                            .ok_or_else(|| bad(&here, "an image_url part needs image_url.url"))?;
                        let (mime, data) = url
                            .strip_prefix("data:")
                            .and_then(|rest| rest.split_once(";base64,"))
                            .ok_or_else(|| {
                                bad(
                                    &here,
                                    "Gemini takes images inline: only base64 data URLs can be carried",
                                )
                            })?;
                        Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
                    }
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

fn stop_sequences(v: &Value) -> Result<Option<Value>, ProxyError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(json!([s]))),
        Value::Array(_) => Ok(Some(v.clone())),
        _ => Err(ProxyError::invalid_param(
            "stop",
            "must be a string or array",
        )),
    }
}

/// OpenAI chat completions request → Gemini `generateContent` request (the model goes in the
/// URL, streaming is the URL's method, so neither is in the body).
pub fn openai_to_gemini(raw: &[u8], drop: bool) -> Result<Value, ProxyError> {
    openai_map_to_gemini(&obj(raw)?, drop)
}

pub(crate) fn openai_map_to_gemini(req: &Obj, drop: bool) -> Result<Value, ProxyError> {
    let mut out = Obj::new();
    let mut config = Obj::new();
    let mut unsupported = Unsupported::new(drop);
    for (k, v) in req {
        match k.as_str() {
            "model" | "messages" | "stream" | "stream_options" => {}
            "temperature" | "seed" | "presence_penalty" | "frequency_penalty" => {
                if !v.is_null() {
                    config.insert(camel(k).into_owned(), v.clone());
                }
            }
            "top_p" => {
                if !v.is_null() {
                    config.insert("topP".into(), v.clone());
                }
            }
            "max_tokens" => {
                if !v.is_null() && !config.contains_key("maxOutputTokens") {
                    config.insert("maxOutputTokens".into(), v.clone());
                }
            }
            "max_completion_tokens" => {
                if !v.is_null() {
                    config.insert("maxOutputTokens".into(), v.clone());
                }
            }
            "stop" => {
                if let Some(s) = stop_sequences(v)? {
                    config.insert("stopSequences".into(), s);
                }
            }
            "n" if v.is_null() || v.as_u64() == Some(1) => {}
            "logprobs" if v.is_null() || *v == Value::Bool(false) => {}
            "parallel_tool_calls" if v.is_null() || *v == Value::Bool(true) => {}
            "response_format" => match v["type"].as_str() {
                None | Some("text") => {}
                Some("json_object") => {
                    config.insert("responseMimeType".into(), "application/json".into());
                }
                Some("json_schema") => {
                    config.insert("responseMimeType".into(), "application/json".into());
                    let schema = &v["json_schema"]["schema"];
                    if !schema.is_null() {
                        config.insert("responseJsonSchema".into(), schema.clone());
                    }
                }
                Some(_) => {
                    return Err(ProxyError::invalid_param(
                        "response_format",
                        "response_format.type must be text, json_object or json_schema",
                    ))
                }
            },
            "tools" => {
                let Some(tools) = v.as_array() else { continue };
                let mut decls = Vec::with_capacity(tools.len());
                for (i, t) in tools.iter().enumerate() {
                    if t["type"] != "function" {
                        unsupported.reject(&format!("tools[{i}].type"), "only function tools")?;
                        continue;
                    }
                    let f = &t["function"];
                    let mut d = Obj::new();
                    d.insert("name".into(), f["name"].clone());
                    if let Some(desc) = f.get("description") {
                        d.insert("description".into(), desc.clone());
                    }
                    if let Some(p) = f.get("parameters").filter(|p| p.is_object()) {
                        d.insert("parametersJsonSchema".into(), p.clone());
                    }
                    decls.push(Value::Object(d));
                }
                if !decls.is_empty() {
                    out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
                }
            }
            "tool_choice" => {
                let cfg = match v {
                    Value::Null => continue,
                    Value::String(s) => match s.as_str() {
                        "auto" => json!({"mode": "AUTO"}),
                        "none" => json!({"mode": "NONE"}),
                        "required" => json!({"mode": "ANY"}),
                        _ => {
                            return Err(ProxyError::invalid_param(
                                "tool_choice",
                                "must be auto, none, required or a function",
                            ))
                        }
                    },
                    Value::Object(_) => match v["function"]["name"].as_str() {
                        Some(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
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
                out.insert("toolConfig".into(), json!({"functionCallingConfig": cfg}));
            }
            _ => unsupported.reject(k, "Gemini generateContent cannot carry this parameter")?,
        }
    }

    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return Err(ProxyError::invalid_param(
            "messages",
            "messages must be an array",
        ));
    };
    let mut system = String::new();
    let mut contents: Vec<Value> = Vec::with_capacity(messages.len());
    // Tool call id → function name, for the tool results that follow.
    let mut call_names: Vec<(String, String)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}].content");
        match m["role"].as_str() {
            Some("system" | "developer") => {
                if !system.is_empty() {
                    system.push_str("\n\n");
                }
                system.push_str(&text_of_parts(&m["content"], &param)?);
            }
            Some("user") => {
                push_content(
                    &mut contents,
                    "user",
                    openai_user_parts(&m["content"], &param)?,
                );
            }
            Some("assistant") => {
                let mut parts = Vec::new();
                let text = text_of_parts(&m["content"], &param)?;
                if !text.is_empty() {
                    parts.push(json!({"text": text}));
                }
                for (j, c) in m["tool_calls"]
                    .as_array()
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .enumerate()
                {
                    let args = c["function"]["arguments"].as_str().unwrap_or("{}");
                    let args: Value = if args.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(args).map_err(|_| {
                            ProxyError::invalid_param_owned(
                                format!("messages[{i}].tool_calls[{j}].function.arguments"),
                                "must be a JSON object encoded as a string",
                            )
                        })?
                    };
                    let name = c["function"]["name"].as_str().unwrap_or_default();
                    if let Some(id) = c["id"].as_str() {
                        call_names.push((id.to_owned(), name.to_owned()));
                    }
                    parts.push(json!({"functionCall": {"name": name, "args": args}}));
                }
                push_content(&mut contents, "model", parts);
            }
            Some("tool") => {
                let id = m["tool_call_id"].as_str().unwrap_or_default();
                let name = call_names
                    .iter()
                    .find(|(c, _)| c == id)
                    .map(|(_, n)| n.clone())
                    .ok_or_else(|| {
                        ProxyError::invalid_param_owned(
                            format!("messages[{i}].tool_call_id"),
                            "must name a tool call of an earlier assistant message",
                        )
                    })?;
                let text = text_of_parts(&m["content"], &param)?;
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({"result": text}),
                };
                push_content(
                    &mut contents,
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
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
        out.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system}]}),
        );
    }
    out.insert("contents".into(), Value::Array(contents));
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(out))
}

fn gemini_text(v: &Value, param: &str) -> Result<String, ProxyError> {
    let mut out = String::new();
    for (i, p) in v["parts"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .enumerate()
    {
        match p["text"].as_str() {
            Some(t) => {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(t);
            }
            None => {
                return Err(bad(
                    format!("{param}.parts[{i}]"),
                    "only text parts can be carried here",
                ))
            }
        }
    }
    Ok(out)
}

/// Gemini `generateContent` request → OpenAI chat completions request. A stream asks for usage
/// (`stream_options.include_usage`): Gemini clients get `usageMetadata` in every stream.
pub fn gemini_to_openai(
    raw: &[u8],
    model: &str,
    stream: bool,
    drop: bool,
) -> Result<Value, ProxyError> {
    let req = obj(raw)?;
    let mut out = Obj::new();
    out.insert("model".into(), model.into());
    if stream {
        out.insert("stream".into(), true.into());
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let mut unsupported = Unsupported::new(drop);
    let mut json_mode = false;
    let mut json_schema: Option<Value> = None;
    for (k, v) in &req {
        let key = camel(k);
        match key.as_ref() {
            "contents" | "systemInstruction" => {}
            "generationConfig" => {
                let Some(cfg) = v.as_object() else { continue };
                for (ck, cv) in cfg {
                    let name = camel(ck);
                    let param = format!("{k}.{ck}");
                    match name.as_ref() {
                        _ if cv.is_null() => {}
                        "temperature" | "seed" => {
                            out.insert(name.to_string(), cv.clone());
                        }
                        "topP" => {
                            out.insert("top_p".into(), cv.clone());
                        }
                        "maxOutputTokens" => {
                            out.insert("max_tokens".into(), cv.clone());
                        }
                        "presencePenalty" => {
                            out.insert("presence_penalty".into(), cv.clone());
                        }
                        "frequencyPenalty" => {
                            out.insert("frequency_penalty".into(), cv.clone());
                        }
                        "stopSequences" => {
                            out.insert("stop".into(), cv.clone());
                        }
                        "candidateCount" if cv.as_u64() == Some(1) => {}
                        "responseMimeType" => match cv.as_str() {
                            Some("text/plain") => {}
                            Some("application/json") => json_mode = true,
                            _ => unsupported.reject(
                                &param,
                                "only text/plain and application/json can be carried",
                            )?,
                        },
                        "responseJsonSchema" | "responseSchema" => {
                            json_schema = Some(cv.clone());
                        }
                        _ => unsupported
                            .reject(&param, "OpenAI chat completions has no equivalent")?,
                    }
                }
            }
            "tools" => {
                let Some(tools) = v.as_array() else { continue };
                let mut list = Vec::new();
                for (i, t) in tools.iter().enumerate() {
                    let Some(t) = t.as_object() else { continue };
                    for (tk, tv) in t {
                        if camel(tk) != "functionDeclarations" {
                            unsupported.reject(
                                &format!("tools[{i}].{tk}"),
                                "only function declarations can be carried",
                            )?;
                            continue;
                        }
                        for d in tv.as_array().map_or(&[][..], Vec::as_slice) {
                            let mut f = Obj::new();
                            f.insert("name".into(), d["name"].clone());
                            if let Some(desc) = d.get("description") {
                                f.insert("description".into(), desc.clone());
                            }
                            let schema = field(d, "parametersJsonSchema", "parameters_json_schema");
                            let schema = if schema.is_object() {
                                schema
                            } else {
                                &d["parameters"]
                            };
                            let schema = if schema.is_object() {
                                lower_types(schema)
                            } else {
                                json!({"type": "object", "properties": {}})
                            };
                            f.insert("parameters".into(), schema);
                            list.push(json!({"type": "function", "function": f}));
                        }
                    }
                }
                out.insert("tools".into(), Value::Array(list));
            }
            "toolConfig" => {
                let cfg = field(v, "functionCallingConfig", "function_calling_config");
                let names = field(cfg, "allowedFunctionNames", "allowed_function_names");
                let names = names.as_array().map_or(&[][..], Vec::as_slice);
                let choice = match cfg["mode"].as_str() {
                    None | Some("AUTO" | "MODE_UNSPECIFIED") => json!("auto"),
                    Some("NONE") => json!("none"),
                    Some("ANY") => match names {
                        [] => json!("required"),
                        [one] => json!({"type": "function", "function": {"name": one}}),
                        _ => {
                            unsupported.reject(
                                &format!("{k}.functionCallingConfig.allowedFunctionNames"),
                                "OpenAI can force one function or any, not a subset",
                            )?;
                            json!("required")
                        }
                    },
                    Some(_) => {
                        return Err(ProxyError::invalid_param(
                            "toolConfig.functionCallingConfig.mode",
                            "must be AUTO, ANY or NONE",
                        ))
                    }
                };
                out.insert("tool_choice".into(), choice);
            }
            _ => unsupported.reject(k, "OpenAI chat completions cannot carry this parameter")?,
        }
    }
    if json_mode || json_schema.is_some() {
        out.insert(
            "response_format".into(),
            match json_schema {
                Some(schema) => json!({"type": "json_schema",
                    "json_schema": {"name": "response", "schema": lower_types(&schema)}}),
                None => json!({"type": "json_object"}),
            },
        );
    }

    let mut messages: Vec<Value> = Vec::new();
    let system = req
        .get("systemInstruction")
        .or_else(|| req.get("system_instruction"));
    match system {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(s) => messages
            .push(json!({"role": "system", "content": gemini_text(s, "systemInstruction")?})),
    }
    let Some(contents) = req.get("contents").and_then(Value::as_array) else {
        return Err(ProxyError::invalid_param(
            "contents",
            "contents is not specified",
        ));
    };
    // Function calls not yet answered: (name, id).
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut next_call = 0usize;
    for (i, c) in contents.iter().enumerate() {
        let parts = c["parts"].as_array().map_or(&[][..], Vec::as_slice);
        match c["role"].as_str() {
            None | Some("user" | "function") => {
                let mut user: Vec<Value> = Vec::new();
                for (j, p) in parts.iter().enumerate() {
                    let here = format!("contents[{i}].parts[{j}]");
                    if let Some(t) = p.get("text") {
                        if p["thought"] != Value::Bool(true) {
                            user.push(json!({"type": "text", "text": t}));
                        }
                        continue;
                    }
                    let inline = field(p, "inlineData", "inline_data");
                    if inline.is_object() {
                        let mime = field(inline, "mimeType", "mime_type")
                            .as_str()
                            .unwrap_or_default();
                        if !mime.starts_with("image/") {
                            unsupported.reject(&here, "only inline images can be carried")?;
                            continue;
                        }
                        let data = inline["data"].as_str().unwrap_or_default();
                        user.push(json!({"type": "image_url",
                            "image_url": {"url": format!("data:{mime};base64,{data}")}}));
                        continue;
                    }
                    let fr = field(p, "functionResponse", "function_response");
                    if fr.is_object() {
                        let name = fr["name"].as_str().unwrap_or_default();
                        let id = match fr["id"].as_str() {
                            Some(id) => {
                                pending.retain(|(_, p)| p != id);
                                id.to_owned()
                            }
                            None => match pending.iter().position(|(n, _)| n == name) {
                                Some(at) => pending.remove(at).1,
                                None => format!("call_{name}"),
                            },
                        };
                        let response = &fr["response"];
                        let content = match response.as_object() {
                            Some(o) if o.len() == 1 && o.contains_key("result") => {
                                match &o["result"] {
                                    Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                }
                            }
                            _ => response.to_string(),
                        };
                        messages
                            .push(json!({"role": "tool", "tool_call_id": id, "content": content}));
                        continue;
                    }
                    unsupported.reject(&here, "this part type cannot be carried")?;
                }
                if !user.is_empty() {
                    let content = if user.iter().all(|p| p["type"] == "text") {
                        let texts: Vec<&str> =
                            user.iter().filter_map(|p| p["text"].as_str()).collect();
                        Value::String(texts.join("\n"))
                    } else {
                        Value::Array(user)
                    };
                    messages.push(json!({"role": "user", "content": content}));
                }
            }
            Some("model") => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for (j, p) in parts.iter().enumerate() {
                    if let Some(t) = p["text"].as_str() {
                        if p["thought"] != Value::Bool(true) {
                            text.push_str(t);
                        }
                        continue;
                    }
                    let fc = field(p, "functionCall", "function_call");
                    if fc.is_object() {
                        let name = fc["name"].as_str().unwrap_or_default();
                        let id = match fc["id"].as_str() {
                            Some(id) => id.to_owned(),
                            None => {
                                next_call += 1;
                                format!("call_{next_call}")
                            }
                        };
                        pending.push((name.to_owned(), id.clone()));
                        let args = match &fc["args"] {
                            Value::Null => "{}".to_owned(),
                            a => a.to_string(),
                        };
                        calls.push(json!({"id": id, "type": "function",
                            "function": {"name": name, "arguments": args}}));
                        continue;
                    }
                    unsupported.reject(
                        &format!("contents[{i}].parts[{j}]"),
                        "this part type cannot be carried",
                    )?;
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
            Some(_) => {
                return Err(ProxyError::invalid_param_owned(
                    format!("contents[{i}].role"),
                    "must be user or model",
                ))
            }
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    Ok(Value::Object(out))
}

/// Gemini's OpenAPI-style schemas spell types in capitals (`OBJECT`, `STRING`); JSON Schema
/// (OpenAI's) in lower case.
fn lower_types(schema: &Value) -> Value {
    match schema {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("type", Value::String(t)) => Value::String(t.to_lowercase()),
                        _ => lower_types(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(lower_types).collect()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers, usage, errors
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct UsagePeek {
    #[serde(default, rename = "usageMetadata", alias = "usage_metadata")]
    usage: Option<GeminiUsage>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GeminiUsage {
    #[serde(default, alias = "prompt_token_count")]
    prompt_token_count: u64,
    #[serde(default, alias = "candidates_token_count")]
    candidates_token_count: u64,
    #[serde(default, alias = "cached_content_token_count")]
    cached_content_token_count: u64,
    #[serde(default, alias = "thoughts_token_count")]
    thoughts_token_count: u64,
    #[serde(default, alias = "tool_use_prompt_token_count")]
    tool_use_prompt_token_count: u64,
}

/// The `usageMetadata` of a Gemini answer or stream chunk, if it has one.
pub fn gemini_usage(json: &[u8]) -> Option<Usage> {
    let peek: UsagePeek = serde_json::from_slice(json).ok()?;
    let u = peek.usage?;
    Some(Usage {
        input: u
            .prompt_token_count
            .saturating_add(u.tool_use_prompt_token_count),
        output: u
            .candidates_token_count
            .saturating_add(u.thoughts_token_count),
        cached_input: u.cached_content_token_count,
        reasoning: u.thoughts_token_count,
        ..Usage::default()
    })
}

/// Usage as Gemini's `usageMetadata`.
pub fn gemini_usage_json(u: Usage) -> Value {
    let mut m = Obj::new();
    m.insert("promptTokenCount".into(), u.input.into());
    m.insert(
        "candidatesTokenCount".into(),
        u.output.saturating_sub(u.reasoning).into(),
    );
    if u.cached_input > 0 {
        m.insert("cachedContentTokenCount".into(), u.cached_input.into());
    }
    if u.reasoning > 0 {
        m.insert("thoughtsTokenCount".into(), u.reasoning.into());
    }
    m.insert("totalTokenCount".into(), (u.input + u.output).into());
    Value::Object(m)
}

pub fn gemini_finish_to_openai(reason: &str, calls_function: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if calls_function => "tool_calls",
        _ => "stop",
    }
}

pub fn openai_finish_to_gemini(reason: &str) -> &'static str {
    match reason {
        "length" => "MAX_TOKENS",
        "content_filter" => "SAFETY",
        _ => "STOP",
    }
}

fn call_id(fc: &Value) -> String {
    match fc["id"].as_str() {
        Some(id) => id.to_owned(),
        None => format!("call_{}", modelgate_shared::new_id().simple()),
    }
}

/// Gemini answer → OpenAI chat completion. `None` if the body is not one.
pub fn response_gemini_to_openai(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let candidate = v["candidates"]
        .as_array()?
        .first()
        .cloned()
        .unwrap_or(Value::Null);
    let mut text = String::new();
    let mut calls = Vec::new();
    for p in candidate["content"]["parts"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
    {
        if let Some(t) = p["text"].as_str() {
            if p["thought"] != Value::Bool(true) {
                text.push_str(t);
            }
        }
        let fc = field(p, "functionCall", "function_call");
        if fc.is_object() {
            calls.push(json!({"id": call_id(fc), "type": "function",
                "function": {"name": fc["name"], "arguments": fc["args"].to_string()}}));
        }
    }
    let finish = gemini_finish_to_openai(
        field(&candidate, "finishReason", "finish_reason")
            .as_str()
            .unwrap_or("STOP"),
        !calls.is_empty(),
    );
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let usage = gemini_usage(body).unwrap_or_default();
    let id = match field(&v, "responseId", "response_id").as_str() {
        Some(id) => id.to_owned(),
        None => format!("chatcmpl-{}", modelgate_shared::new_id().simple()),
    };
    Some(json!({
        "id": id,
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": field(&v, "modelVersion", "model_version"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": openai_usage_json(usage),
    }))
}

/// OpenAI chat completion → Gemini answer. `None` if the body is not one.
pub fn response_openai_to_gemini(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let choice = v["choices"].as_array()?.first()?;
    let message = &choice["message"];
    let mut parts = Vec::new();
    if let Some(t) = message["content"].as_str().filter(|t| !t.is_empty()) {
        parts.push(json!({"text": t}));
    }
    for c in message["tool_calls"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
    {
        let args = c["function"]["arguments"].as_str().unwrap_or("{}");
        let args: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        parts.push(
            json!({"functionCall": {"id": c["id"], "name": c["function"]["name"], "args": args}}),
        );
    }
    let finish = openai_finish_to_gemini(choice["finish_reason"].as_str().unwrap_or("stop"));
    let usage = openai_usage(body).unwrap_or_default();
    Some(json!({
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
        "usageMetadata": gemini_usage_json(usage),
        "modelVersion": v["model"],
        "responseId": v["id"],
    }))
}

/// An upstream error body (any format) re-rendered for a Gemini client, keeping the status.
pub fn error_to_gemini(status: StatusCode, body: &[u8]) -> Value {
    error_json(status, &error_message(body))
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/// Gemini stream chunks → OpenAI chunks (as JSON values; the caller frames or re-translates
/// them). Gemini streams have no terminal event: the chunk with a `finishReason` is the last
/// one with content, and the connection's end ends the stream.
#[derive(Default)]
pub(crate) struct GeminiToOpenAi {
    started: bool,
    id: String,
    model: String,
    created: i64,
    next_call: usize,
    /// Set once a chunk carried a `finishReason`.
    pub finished: bool,
}

impl GeminiToOpenAi {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    }

    pub fn usage_chunk(&self, usage: Usage) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [], "usage": openai_usage_json(usage),
        })
    }

    /// One Gemini chunk in; OpenAI chunks out. An error chunk becomes an OpenAI error object
    /// and its message is returned.
    pub fn event(&mut self, v: &Value, out: &mut Vec<Value>) -> Option<String> {
        if let Some(e) = v.get("error") {
            let message = e["message"].as_str().unwrap_or("provider error").to_owned();
            out.push(json!({"error": {"message": message, "type": "server_error",
                "param": null, "code": null}}));
            return Some(message);
        }
        if !self.started {
            self.started = true;
            self.id = match field(v, "responseId", "response_id").as_str() {
                Some(id) => id.to_owned(),
                None => format!("chatcmpl-{}", modelgate_shared::new_id().simple()),
            };
            field(v, "modelVersion", "model_version")
                .as_str()
                .unwrap_or_default()
                .clone_into(&mut self.model);
            self.created = chrono::Utc::now().timestamp();
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        let candidate = v["candidates"].as_array().and_then(|c| c.first())?;
        for p in candidate["content"]["parts"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
        {
            if let Some(t) = p["text"].as_str().filter(|t| !t.is_empty()) {
                if p["thought"] != Value::Bool(true) {
                    out.push(self.chunk(json!({"content": t}), None));
                }
            }
            let fc = field(p, "functionCall", "function_call");
            if fc.is_object() {
                let index = self.next_call;
                self.next_call += 1;
                out.push(self.chunk(
                    json!({"tool_calls": [{"index": index, "id": call_id(fc), "type": "function",
                        "function": {"name": fc["name"], "arguments": fc["args"].to_string()}}]}),
                    None,
                ));
            }
        }
        if let Some(reason) = field(candidate, "finishReason", "finish_reason").as_str() {
            if !self.finished {
                self.finished = true;
                let finish = gemini_finish_to_openai(reason, self.next_call > 0);
                out.push(self.chunk(json!({}), Some(finish)));
            }
        }
        None
    }
}

/// OpenAI chunks → Gemini chunks. Text goes out as it comes; a tool call's arguments arrive in
/// pieces in OpenAI and whole in Gemini, so calls are collected and sent with the last chunk
/// (with `finishReason` and `usageMetadata`) when the OpenAI stream ends.
#[derive(Default)]
pub(crate) struct OpenAiToGemini {
    id: String,
    model: String,
    /// (OpenAI tool call index, id, name, arguments so far).
    calls: Vec<(u64, String, String, String)>,
    finish: Option<&'static str>,
}

pub(crate) fn gemini_event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\r\n\r\n"))
}

impl OpenAiToGemini {
    /// One OpenAI chunk in; Gemini events out. Returns the error message of an error chunk.
    pub fn chunk(&mut self, v: &Value, out: &mut Vec<Bytes>) -> Option<String> {
        if let Some(e) = v.get("error") {
            let message = e["message"].as_str().unwrap_or("provider error").to_owned();
            out.push(gemini_event(&error_json(StatusCode::BAD_GATEWAY, &message)));
            return Some(message);
        }
        if self.id.is_empty() {
            v["id"]
                .as_str()
                .unwrap_or_default()
                .clone_into(&mut self.id);
            v["model"]
                .as_str()
                .unwrap_or_default()
                .clone_into(&mut self.model);
        }
        let choice = v["choices"].as_array().and_then(|c| c.first())?;
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            out.push(gemini_event(&json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}],
                "modelVersion": self.model, "responseId": self.id,
            })));
        }
        for c in delta["tool_calls"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
        {
            let index = c["index"].as_u64().unwrap_or(0);
            let args = c["function"]["arguments"].as_str().unwrap_or_default();
            match self.calls.iter_mut().find(|(i, ..)| *i == index) {
                Some(call) => call.3.push_str(args),
                None => self.calls.push((
                    index,
                    c["id"].as_str().unwrap_or_default().to_owned(),
                    c["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    args.to_owned(),
                )),
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish = Some(openai_finish_to_gemini(f));
        }
        None
    }

    /// The stream's last chunk: collected function calls, the finish reason and the usage.
    pub fn finish(&mut self, usage: Option<Usage>) -> Bytes {
        let mut parts: Vec<Value> = self
            .calls
            .drain(..)
            .map(|(_, id, name, args)| {
                let args: Value = if args.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&args).unwrap_or_else(|_| json!({}))
                };
                let mut fc = json!({"name": name, "args": args});
                if !id.is_empty() {
                    fc["id"] = id.into();
                }
                json!({"functionCall": fc})
            })
            .collect();
        if parts.is_empty() {
            parts.push(json!({"text": ""}));
        }
        gemini_event(&json!({
            "candidates": [{"content": {"role": "model", "parts": parts},
                            "finishReason": self.finish.unwrap_or("STOP"), "index": 0}],
            "usageMetadata": gemini_usage_json(usage.unwrap_or_default()),
            "modelVersion": self.model, "responseId": self.id,
        }))
    }
}

/// Searchers for what a Gemini stream event is checked for, built once (building one costs more
/// than searching an event with it): `usageMetadata` (as its name ends, with its quote)...
pub static USAGE_METADATA: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"sageMetadata\""));
/// ... and a finish reason, in either spelling.
static FINISH_REASON: LazyLock<[Finder<'static>; 2]> = LazyLock::new(|| {
    [
        Finder::new(b"\"finishReason\""),
        Finder::new(b"\"finish_reason\""),
    ]
});

/// Whether a Gemini chunk carries a finish reason (cheap check on the raw bytes).
pub fn has_finish_reason(data: &[u8]) -> bool {
    FINISH_REASON.iter().any(|f| f.find(data).is_some())
}

#[cfg(test)]
#[path = "gemini_tests.rs"]
mod tests;
