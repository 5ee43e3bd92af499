//! The Anthropic Messages surface (`POST /v1/messages`), the `anthropic` provider, and
//! translation between OpenAI chat and Anthropic Messages in both directions, streaming and
//! tools included — each answer checked in the caller's format and by its usage row.

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::anthropic_upstream::{self, AnthropicUpstream};
use crate::support::upstream::{self, MockUpstream};
use crate::support::{request_id, Gateway};

/// Both providers price their model at $2.50/M input and $10.00/M output.
const PRICE: (i64, i64) = (2_500_000, 10_000_000);

struct Setup {
    gw: Gateway,
    openai: MockUpstream,
    anthropic: AnthropicUpstream,
    key: String,
    openai_provider: String,
    anthropic_provider: String,
    azure_provider: String,
}

/// A gateway with `oa` routed to an OpenAI-format upstream (`gpt-up`), `az` to the same model
/// as an Azure OpenAI deployment of that upstream, and `an` to an Anthropic upstream
/// (`claude-up`), and a key for all of them.
async fn setup() -> Setup {
    let openai = MockUpstream::start().await;
    let anthropic = AnthropicUpstream::start().await;
    let gw = Gateway::start().await;
    let team = gw.create("/teams", json!({"name": "anthropic-team"})).await;
    let key = gw
        .create(
            "/keys",
            json!({"team_id": team["id"], "name": "app", "environment": "prod"}),
        )
        .await;
    let oa = gw
        .create("/providers", json!({"name": "oa-up", "kind": "openai-compatible", "base_url": openai.base_url(), "credential": "sk-openai-1234"}))
        .await;
    let an = gw
        .create("/providers", json!({"name": "an-up", "kind": "anthropic", "base_url": anthropic.base_url(), "credential": "sk-ant-secret-5678"}))
        .await;
    let az = gw
        .create("/providers", json!({"name": "az-up", "kind": "azure-openai", "base_url": openai.azure_url(), "credential": upstream::AZURE_KEY}))
        .await;
    for model in ["gpt-up", "claude-up"] {
        gw.create("/models", json!({"model": model, "input_micros_per_mtok": PRICE.0, "output_micros_per_mtok": PRICE.1}))
            .await;
    }
    gw.create(
        "/routes",
        json!({"alias": "oa", "deployments": [{"provider_id": oa["id"], "model": "gpt-up"}]}),
    )
    .await;
    gw.create(
        "/routes",
        json!({"alias": "an", "deployments": [{"provider_id": an["id"], "model": "claude-up"}]}),
    )
    .await;
    gw.create(
        "/routes",
        json!({"alias": "az", "deployments": [{"provider_id": az["id"], "model": "gpt-up"}]}),
    )
    .await;
    gw.create("/routes", json!({"alias": "claude-up", "deployments": [{"provider_id": an["id"], "model": "claude-up"}]}))
        .await;
    gw.wait_for_config().await;
    Setup {
        openai,
        anthropic,
        key: key["key_secret"].as_str().unwrap().to_owned(),
        openai_provider: oa["id"].as_str().unwrap().to_owned(),
        anthropic_provider: an["id"].as_str().unwrap().to_owned(),
        azure_provider: az["id"].as_str().unwrap().to_owned(),
        gw,
    }
}

impl Setup {
    fn messages(&self, body: Value) -> reqwest::RequestBuilder {
        self.gw
            .http
            .post(format!("{}/messages", self.gw.base_url()))
            .header("x-api-key", &self.key)
            .json(&body)
    }

    fn chat(&self, body: Value) -> reqwest::RequestBuilder {
        self.gw.chat(&self.key, body)
    }
}

fn cost(input: u64, output: u64) -> i64 {
    let line = |t: u64, p: i64| (i64::try_from(t).unwrap() * p + 500_000) / 1_000_000;
    line(input, PRICE.0) + line(output, PRICE.1)
}

pub(crate) async fn sse_text(resp: reqwest::Response) -> String {
    let mut text = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    text
}

/// `(event name, data)` of each SSE event.
pub(crate) fn events(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn messages_pass_through_to_an_anthropic_deployment_byte_for_byte_with_cached_usage() {
    let s = setup().await;

    // Non-streamed, alias = provider model: forwarded untouched.
    let request = json!({"model": "claude-up", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], "vendor_field": 1});
    let resp = s
        .messages(request.clone())
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-modelgate-translated").is_none());
    let id = request_id(&resp);
    assert_eq!(
        resp.text().await.unwrap(),
        anthropic_upstream::message_body("claude-up", false),
        "the response body must be byte-faithful"
    );
    assert_eq!(s.anthropic.last_body(), request);
    assert_eq!(
        s.anthropic.last_header("x-api-key").as_deref(),
        Some("sk-ant-secret-5678")
    );
    assert_eq!(
        s.anthropic.last_header("anthropic-beta").as_deref(),
        Some("prompt-caching-2024-07-31")
    );
    assert!(s.anthropic.last_header("authorization").is_none());
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["status"], 200);
    assert_eq!(row["endpoint"], "messages");
    assert_eq!(row["provider_id"], s.anthropic_provider.as_str());
    assert_eq!(row["served_model"], "claude-up");
    assert_eq!(row["input_tokens"], 21);
    assert_eq!(row["cached_input_tokens"], 4);
    assert_eq!(row["output_tokens"], 9);
    assert_eq!(row["cost_micros"], cost(21, 9));
    assert_eq!(row["estimated"], false);

    // Streamed, through an alias: the model is renamed, the events are passed as they come.
    let resp = s
        .messages(json!({"model": "an", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let id = request_id(&resp);
    assert_eq!(
        sse_text(resp).await,
        anthropic_upstream::stream_body("claude-up", false)
    );
    assert_eq!(s.anthropic.last_body()["model"], "claude-up");
    assert_eq!(
        s.anthropic.last_header("anthropic-version").as_deref(),
        Some("2023-06-01"),
        "the default version is sent when the client names none"
    );
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["streamed"], true);
    assert_eq!(row["input_tokens"], 21);
    assert_eq!(row["cached_input_tokens"], 4);
    assert_eq!(row["output_tokens"], 9);
    assert_eq!(row["cost_micros"], cost(21, 9));
    assert_eq!(row["estimated"], false);
    s.gw.shutdown().await;
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Client {
    OpenAi,
    Anthropic,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Plain,
    Stream,
    Tools,
}

/// What the client understood of an answer: its text and its tool call (name, arguments).
#[derive(Debug, Default)]
pub(crate) struct Understood {
    pub text: String,
    pub tool: Option<(String, Value)>,
    pub finish: String,
}

pub(crate) fn understand(client: Client, stream: bool, body: &str) -> Understood {
    let mut u = Understood::default();
    match (client, stream) {
        (Client::OpenAi, false) => {
            let v: Value = serde_json::from_str(body).unwrap();
            let m = &v["choices"][0]["message"];
            u.text = m["content"].as_str().unwrap_or_default().to_owned();
            if let Some(c) = m["tool_calls"].as_array().and_then(|c| c.first()) {
                let args = c["function"]["arguments"].as_str().unwrap();
                u.tool = Some((
                    c["function"]["name"].as_str().unwrap().to_owned(),
                    serde_json::from_str(args).unwrap(),
                ));
            }
            v["choices"][0]["finish_reason"]
                .as_str()
                .unwrap()
                .clone_into(&mut u.finish);
        }
        (Client::Anthropic, false) => {
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["type"], "message");
            for b in v["content"].as_array().unwrap() {
                match b["type"].as_str().unwrap() {
                    "text" => u.text.push_str(b["text"].as_str().unwrap()),
                    "tool_use" => {
                        assert!(b["input"].is_object());
                        u.tool = Some((b["name"].as_str().unwrap().to_owned(), b["input"].clone()));
                    }
                    other => panic!("unexpected block {other}"),
                }
            }
            v["stop_reason"].as_str().unwrap().clone_into(&mut u.finish);
        }
        (Client::OpenAi, true) => {
            let evs = events(body);
            assert_eq!(evs.last().unwrap().1, "[DONE]", "{body}");
            let mut name = String::new();
            let mut args = String::new();
            for (_, d) in &evs[..evs.len() - 1] {
                let c: Value = serde_json::from_str(d).unwrap();
                assert!(c.get("error").is_none(), "{d}");
                let delta = &c["choices"][0]["delta"];
                if let Some(t) = delta["content"].as_str() {
                    u.text.push_str(t);
                }
                if let Some(tc) = delta["tool_calls"].as_array().and_then(|t| t.first()) {
                    if let Some(n) = tc["function"]["name"].as_str() {
                        name = n.to_owned();
                    }
                    args.push_str(tc["function"]["arguments"].as_str().unwrap_or_default());
                }
                if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
                    f.clone_into(&mut u.finish);
                }
            }
            if !name.is_empty() {
                u.tool = Some((name, serde_json::from_str(&args).unwrap()));
            }
        }
        (Client::Anthropic, true) => {
            let evs = events(body);
            let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
            assert_eq!(names.first(), Some(&"message_start"), "{body}");
            assert_eq!(names.last(), Some(&"message_stop"), "{body}");
            let mut name = String::new();
            let mut args = String::new();
            for (n, d) in &evs {
                let e: Value = serde_json::from_str(d).unwrap();
                assert_eq!(e["type"], n.as_deref().unwrap(), "event name = data type");
                match n.as_deref().unwrap() {
                    "content_block_start" if e["content_block"]["type"] == "tool_use" => {
                        e["content_block"]["name"]
                            .as_str()
                            .unwrap()
                            .clone_into(&mut name);
                    }
                    "content_block_delta" => {
                        if let Some(t) = e["delta"]["text"].as_str() {
                            u.text.push_str(t);
                        }
                        if let Some(p) = e["delta"]["partial_json"].as_str() {
                            args.push_str(p);
                        }
                    }
                    "message_delta" => {
                        e["delta"]["stop_reason"]
                            .as_str()
                            .unwrap()
                            .clone_into(&mut u.finish);
                        assert!(e["usage"]["output_tokens"].as_u64().unwrap() > 0);
                    }
                    "error" => panic!("error event: {d}"),
                    _ => {}
                }
            }
            if !name.is_empty() {
                u.tool = Some((name, serde_json::from_str(&args).unwrap()));
            }
        }
    }
    u
}

#[tokio::test]
async fn every_client_reaches_every_provider_plain_streamed_and_with_tools() {
    let s = setup().await;
    let weather_tool_openai = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"]}}}]);
    let weather_tool_anthropic = json!([{"name": "get_weather", "description": "Weather in a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"]}}]);
    let mut cells = 0;
    for client in [Client::OpenAi, Client::Anthropic] {
        for provider in ["openai", "anthropic", "azure-openai"] {
            // Azure OpenAI speaks OpenAI's format under its own paths and auth.
            let openai_format = provider != "anthropic";
            for mode in [Mode::Plain, Mode::Stream, Mode::Tools] {
                let alias = match provider {
                    "openai" => "oa",
                    "anthropic" => "an",
                    _ => "az",
                };
                let stream = mode == Mode::Stream;
                let tools = mode == Mode::Tools;
                let what = format!("{client:?} client → {provider} provider, {mode:?}");
                let mut body = json!({"model": alias, "messages": [{"role": "user", "content": "What's the weather in Paris?"}]});
                if stream {
                    body["stream"] = json!(true);
                }
                let resp = match client {
                    Client::OpenAi => {
                        body["messages"]
                            .as_array_mut()
                            .unwrap()
                            .insert(0, json!({"role": "system", "content": "Be brief."}));
                        if tools {
                            body["tools"] = weather_tool_openai.clone();
                        }
                        s.chat(body).send().await.unwrap()
                    }
                    Client::Anthropic => {
                        body["max_tokens"] = json!(128);
                        body["system"] = json!("Be brief.");
                        if tools {
                            body["tools"] = weather_tool_anthropic.clone();
                        }
                        s.messages(body).send().await.unwrap()
                    }
                };
                assert_eq!(resp.status(), 200, "{what}");
                let translated = (client == Client::OpenAi) != openai_format;
                assert_eq!(
                    resp.headers().get("x-modelgate-translated").is_some(),
                    translated,
                    "{what}"
                );
                if translated {
                    let want = if client == Client::OpenAi {
                        "anthropic-messages->openai-chat"
                    } else {
                        "openai-chat->anthropic-messages"
                    };
                    assert_eq!(resp.headers()["x-modelgate-translated"], want, "{what}");
                }
                let id = request_id(&resp);
                let text = if stream {
                    sse_text(resp).await
                } else {
                    resp.text().await.unwrap()
                };
                let u = understand(client, stream, &text);

                // What the upstream received is in its own format, at its own path.
                if openai_format {
                    let sent = s.openai.last_body();
                    let target = s.openai.last_target();
                    if provider == "openai" {
                        assert_eq!(sent["model"], "gpt-up", "{what}");
                        assert_eq!(target.path_and_query, "/v1/chat/completions", "{what}");
                        assert_eq!(
                            target.authorization.as_deref(),
                            Some("Bearer sk-openai-1234"),
                            "{what}"
                        );
                    } else {
                        target.assert_azure_chat("gpt-up", &what);
                    }
                    assert_eq!(sent["messages"][0]["role"], "system", "{what}");
                    if stream {
                        assert_eq!(sent["stream_options"]["include_usage"], true, "{what}");
                    }
                } else {
                    let sent = s.anthropic.last_body();
                    assert_eq!(sent["model"], "claude-up", "{what}");
                    assert_eq!(sent["system"], "Be brief.", "{what}");
                    assert!(sent["max_tokens"].as_u64().unwrap() > 0, "{what}");
                    if tools {
                        assert_eq!(sent["tools"][0]["name"], "get_weather", "{what}");
                        assert!(sent["tools"][0]["input_schema"].is_object(), "{what}");
                    }
                }

                let (reply, tool_args) = if openai_format {
                    (upstream::REPLY, upstream::TOOL_ARGUMENTS)
                } else {
                    (anthropic_upstream::REPLY, anthropic_upstream::TOOL_INPUT)
                };
                if tools {
                    let (name, args) = u
                        .tool
                        .as_ref()
                        .unwrap_or_else(|| panic!("{what}: no tool call in {text}"));
                    assert_eq!(name, "get_weather", "{what}");
                    assert_eq!(
                        *args,
                        serde_json::from_str::<Value>(tool_args).unwrap(),
                        "{what}"
                    );
                    let want = if client == Client::OpenAi {
                        "tool_calls"
                    } else {
                        "tool_use"
                    };
                    assert_eq!(u.finish, want, "{what}");
                } else {
                    assert_eq!(u.text, reply, "{what}");
                    let want = if client == Client::OpenAi {
                        "stop"
                    } else {
                        "end_turn"
                    };
                    assert_eq!(u.finish, want, "{what}");
                }

                let row = s.gw.usage_row(&id).await;
                let (input, output, cached, provider_id, model) = if openai_format {
                    let provider_id = if provider == "openai" {
                        &s.openai_provider
                    } else {
                        &s.azure_provider
                    };
                    (
                        upstream::PROMPT_TOKENS,
                        upstream::COMPLETION_TOKENS,
                        0,
                        provider_id,
                        "gpt-up",
                    )
                } else {
                    (
                        anthropic_upstream::INPUT_TOKENS + anthropic_upstream::CACHE_READ_TOKENS,
                        anthropic_upstream::OUTPUT_TOKENS,
                        anthropic_upstream::CACHE_READ_TOKENS,
                        &s.anthropic_provider,
                        "claude-up",
                    )
                };
                assert_eq!(row["status"], 200, "{what}");
                assert_eq!(row["input_tokens"], input, "{what}");
                assert_eq!(row["output_tokens"], output, "{what}");
                assert_eq!(row["cached_input_tokens"], cached, "{what}");
                assert_eq!(row["provider_id"], provider_id.as_str(), "{what}");
                assert_eq!(row["served_model"], model, "{what}");
                assert_eq!(row["cost_micros"], cost(input, output), "{what}");
                assert_eq!(row["estimated"], false, "{what}");
                assert_eq!(row["streamed"], stream, "{what}");
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 18);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn bad_input_on_messages_gets_anthropic_errors_usage_rows_or_security_records_and_no_upstream_call(
) {
    let s = setup().await;
    let url = format!("{}/messages", s.gw.base_url());
    // (name, key, body, status, Anthropic error type)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "malformed JSON",
            Some(s.key.as_str()),
            b"{\"model\": ".to_vec(),
            400,
            "invalid_request_error",
        ),
        (
            "missing model",
            Some(s.key.as_str()),
            br#"{"max_tokens": 5, "messages": []}"#.to_vec(),
            400,
            "invalid_request_error",
        ),
        (
            "missing max_tokens",
            Some(s.key.as_str()),
            br#"{"model": "an", "messages": []}"#.to_vec(),
            400,
            "invalid_request_error",
        ),
        (
            "wrong key",
            Some("mg-not-a-real-key"),
            br#"{"model": "an", "max_tokens": 5, "messages": []}"#.to_vec(),
            401,
            "authentication_error",
        ),
        (
            "missing key",
            None,
            br#"{"model": "an", "max_tokens": 5, "messages": []}"#.to_vec(),
            401,
            "authentication_error",
        ),
        (
            "unknown model",
            Some(s.key.as_str()),
            br#"{"model": "nope", "max_tokens": 5, "messages": []}"#.to_vec(),
            404,
            "not_found_error",
        ),
    ];
    let mut anonymous = Vec::new();
    for (name, key, body, status, kind) in cases {
        let mut req =
            s.gw.http
                .post(&url)
                .header("content-type", "application/json")
                .body(body);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{name}");
        let id = request_id(&resp);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "error", "{name}: {v}");
        assert_eq!(v["error"]["type"], kind, "{name}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 3, "{name}");
        if name.starts_with("missing max") {
            assert!(v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("max_tokens"));
        }
        if name == "missing model" {
            assert!(v["error"]["message"].as_str().unwrap().contains("model"));
        }
        match name {
            // Billable to no one: a security-log record instead of a usage row (R-5.1).
            "wrong key" => anonymous.push((id, "invalid_key")),
            "missing key" => anonymous.push((id, "missing_key")),
            _ => {
                let row = s.gw.usage_row(&id).await;
                assert_eq!(row["status"], status, "{name}");
                assert_eq!(row["endpoint"], "messages", "{name}");
            }
        }
    }
    crate::anonymous::assert_security_logged(&s.gw, &anonymous).await;
    assert_eq!(s.anthropic.calls(), 0);
    assert_eq!(s.openai.calls(), 0);

    // A parameter the OpenAI provider cannot carry: a 400 naming it, no upstream call.
    let resp = s
        .messages(json!({"model": "oa", "max_tokens": 5, "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("thinking"),
        "{v}"
    );
    // And from the OpenAI side: n > 1 to an Anthropic provider.
    let resp = s
        .chat(json!({"model": "an", "n": 2, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "n", "{v}");
    assert_eq!(s.anthropic.calls(), 0);
    assert_eq!(s.openai.calls(), 0);
    let ids: Vec<String> = anonymous.into_iter().map(|(id, _)| id).collect();
    crate::anonymous::assert_no_usage_rows(&s.gw, &s.key, "an", &ids).await;
    s.gw.shutdown().await;
}

#[tokio::test]
async fn upstream_client_errors_come_back_in_the_callers_format_after_one_call() {
    let s = setup().await;
    s.anthropic.fail_with(Some(400));
    let resp = s
        .chat(json!({"model": "an", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["message"], "mock anthropic failure", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(s.anthropic.calls(), 1, "a client error is never retried");

    s.openai.fail_with(Some(404));
    let resp = s
        .messages(json!({"model": "oa", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");
    assert_eq!(v["error"]["message"], "mock upstream failure", "{v}");
    assert_eq!(s.openai.calls(), 1);
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["status"], 404);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_the_translated_stream_with_an_error_event() {
    let s = setup().await;
    s.anthropic.cut_streams(true);

    // Anthropic upstream → OpenAI client: the last event is an OpenAI error, no [DONE].
    let resp = s
        .chat(
            json!({"model": "an", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let text = sse_text(resp).await;
    let evs = events(&text);
    let (_, last) = evs.last().unwrap();
    assert!(!text.contains("[DONE]"), "{text}");
    let last: Value = serde_json::from_str(last).unwrap();
    assert!(last["error"]["message"].is_string(), "{text}");
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["status"], 502);
    assert_eq!(
        s.anthropic.calls(),
        1,
        "a stream is never retried after its first byte"
    );

    // Anthropic upstream → Anthropic client: ends with `event: error`.
    let resp = s
        .messages(json!({"model": "an", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let text = sse_text(resp).await;
    let evs = events(&text);
    let (name, data) = evs.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"), "{text}");
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(data["type"], "error");
    assert_eq!(data["error"]["type"], "api_error");

    // OpenAI upstream cut → Anthropic client: ends with `event: error`, no message_stop.
    s.openai.behave(upstream::Behavior::TruncatedStream);
    let resp = s
        .messages(json!({"model": "oa", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let text = sse_text(resp).await;
    assert!(!text.contains("message_stop"), "{text}");
    let evs = events(&text);
    assert_eq!(evs.last().unwrap().0.as_deref(), Some("error"), "{text}");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_route_with_drop_unsupported_drops_what_the_target_cannot_carry() {
    let s = setup().await;
    let route = s
        .gw
        .create("/routes", json!({"alias": "an-lenient", "policy": {"drop_unsupported": true},
                                  "deployments": [{"provider_id": s.anthropic_provider, "model": "claude-up"}]}))
        .await;
    assert_eq!(route["policy"]["drop_unsupported"], true, "{route}");
    s.gw.create("/routes", json!({"alias": "oa-lenient", "policy": {"drop_unsupported": true},
                                  "deployments": [{"provider_id": s.openai_provider, "model": "gpt-up"}]}))
        .await;
    s.gw.wait_for_config().await;

    let resp = s
        .chat(json!({"model": "an-lenient", "seed": 7, "logprobs": true,
                     "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = s.anthropic.last_body();
    assert!(
        sent.get("seed").is_none() && sent.get("logprobs").is_none(),
        "{sent}"
    );

    let resp = s
        .messages(json!({"model": "oa-lenient", "max_tokens": 5, "top_k": 3,
                         "thinking": {"type": "enabled", "budget_tokens": 1024},
                         "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = s.openai.last_body();
    assert!(
        sent.get("thinking").is_none() && sent.get("top_k").is_none(),
        "{sent}"
    );
    s.gw.shutdown().await;
}

#[tokio::test]
async fn the_failure_ladder_moves_across_formats_and_translates_whatever_answers() {
    let s = setup().await;
    s.gw.create(
        "/routes",
        json!({"alias": "mixed", "policy": {"max_retries": 1},
        "deployments": [
            {"provider_id": s.openai_provider, "model": "gpt-up", "tier": 0},
            {"provider_id": s.anthropic_provider, "model": "claude-up", "tier": 1}]}),
    )
    .await;
    s.gw.wait_for_config().await;

    // The OpenAI deployment fails (500, retried once); the Anthropic one answers, translated.
    s.openai.fail_with(Some(500));
    let resp = s
        .chat(json!({"model": "mixed", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-modelgate-translated"],
        "anthropic-messages->openai-chat"
    );
    let id = request_id(&resp);
    let u = understand(Client::OpenAi, true, &sse_text(resp).await);
    assert_eq!(u.text, anthropic_upstream::REPLY);
    assert_eq!(s.openai.calls(), 2);
    assert_eq!(s.anthropic.calls(), 1);
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["provider_id"], s.anthropic_provider.as_str());
    assert_eq!(row["attempts"].as_array().unwrap().len(), 3, "{row}");
    assert_eq!(row["fallback_used"], true);
    assert_eq!(row["input_tokens"], 21);

    // Every deployment rate-limits: the last provider's 429 comes back in the caller's format.
    s.openai.fail_with(None);
    s.openai.behave(upstream::Behavior::RateLimited(1));
    s.anthropic.fail_with(Some(429));
    let resp = s
        .messages(json!({"model": "mixed", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    let resp = s
        .chat(json!({"model": "mixed", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    // Both deployments are now parked until their retry-after: the gateway's own 503, in the
    // OpenAI shape this time.
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_healthy_deployment", "{v}");
    assert!(v.get("type").is_none(), "OpenAI shape: {v}");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_providers_error_event_mid_stream_reaches_the_client_once_in_its_format() {
    let s = setup().await;
    s.anthropic.error_mid_stream(true);

    let resp = s
        .messages(json!({"model": "an", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let id = request_id(&resp);
    let text = sse_text(resp).await;
    let errors: Vec<_> = events(&text)
        .into_iter()
        .filter(|(n, _)| n.as_deref() == Some("error"))
        .collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(errors[0].1.contains("overloaded_error"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["status"], 502);
    assert!(
        row["error_message"]
            .as_str()
            .unwrap()
            .contains("Overloaded"),
        "{row}"
    );

    let resp = s
        .chat(
            json!({"model": "an", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    let text = sse_text(resp).await;
    let errors: Vec<_> = events(&text)
        .into_iter()
        .filter(|(_, d)| d.starts_with("{\"error\""))
        .collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(errors[0].1.contains("Overloaded"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_key_limited_to_chat_may_not_call_messages_and_vice_versa() {
    let s = setup().await;
    let team = s.gw.create("/teams", json!({"name": "families"})).await;
    let chat_only =
        s.gw.create(
            "/keys",
            json!({"team_id": team["id"], "name": "chat-only", "endpoint_families": ["chat"]}),
        )
        .await;
    let messages_only = s
        .gw
        .create("/keys", json!({"team_id": team["id"], "name": "messages-only", "endpoint_families": ["messages"]}))
        .await;
    s.gw.wait_for_config().await;

    let resp = s
        .gw
        .http
        .post(format!("{}/messages", s.gw.base_url()))
        .header("x-api-key", chat_only["key_secret"].as_str().unwrap())
        .json(&json!({"model": "an", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "permission_error", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("messages"),
        "{v}"
    );

    let key = messages_only["key_secret"].as_str().unwrap();
    let resp =
        s.gw.chat(
            key,
            json!({"model": "an", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = s
        .gw
        .http
        .post(format!("{}/messages", s.gw.base_url()))
        .bearer_auth(key)
        .json(&json!({"model": "an", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "a Bearer key works on /v1/messages too");
    assert_eq!(s.anthropic.calls(), 1);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_deployment_whose_format_cannot_carry_a_parameter_is_passed_over_for_one_that_can() {
    let s = setup().await;
    // Anthropic first: it cannot carry OpenAI's `seed`; the OpenAI deployment can.
    s.gw.create(
        "/routes",
        json!({"alias": "anthropic-first", "deployments": [
            {"provider_id": s.anthropic_provider, "model": "claude-up", "tier": 0},
            {"provider_id": s.openai_provider, "model": "gpt-up", "tier": 1}]}),
    )
    .await;
    s.gw.wait_for_config().await;
    let resp = s
        .chat(json!({"model": "anthropic-first", "seed": 1, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!((s.anthropic.calls(), s.openai.calls()), (0, 1));

    // Where no deployment can carry it, the client gets the 400 naming it, and no call is made.
    let resp = s
        .chat(json!({"model": "an", "seed": 1, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "seed", "{v}");
    assert_eq!((s.anthropic.calls(), s.openai.calls()), (0, 1));
    s.gw.shutdown().await;
}
