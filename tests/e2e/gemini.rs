//! The Gemini surface (`POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`), the `gemini` provider, and translation between Gemini and
//! OpenAI chat / Anthropic Messages in both directions, streaming and tools included — each
//! answer checked in the caller's format and by its usage row.

use modelgate_shared::pricing::{cost_micros, Price, Tokens};
use serde_json::{json, Value};

use crate::anthropic::{events, sse_text, understand, Client as OtherClient, Understood};
use crate::support::anthropic_upstream::{self, AnthropicUpstream};
use crate::support::gemini_upstream::{self, GeminiUpstream};
use crate::support::upstream::{self, MockUpstream};
use crate::support::{request_id, Gateway};

/// Every provider prices its model at $2.50/M input and $10.00/M output.
const PRICE: (i64, i64) = (2_500_000, 10_000_000);
const GEMINI_KEY: &str = "AIza-provider-secret-9012";

struct Setup {
    gw: Gateway,
    openai: MockUpstream,
    anthropic: AnthropicUpstream,
    gemini: GeminiUpstream,
    key: String,
    /// openai-compatible, anthropic, gemini, azure-openai.
    providers: [String; 4],
}

/// A gateway with `oa` → OpenAI-format upstream (`gpt-up`), `an` → Anthropic (`claude-up`),
/// `gm` and `gemini-up` → Gemini (`gemini-up`), `az` → the OpenAI-format upstream's `gpt-up` as an
/// Azure OpenAI deployment, and a key for all of them.
async fn setup() -> Setup {
    let openai = MockUpstream::start().await;
    let anthropic = AnthropicUpstream::start().await;
    let gemini = GeminiUpstream::start().await;
    let gw = Gateway::start().await;
    let team = gw.create("/teams", json!({"name": "gemini-team"})).await;
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
    let gm = gw
        .create("/providers", json!({"name": "gm-up", "kind": "gemini", "base_url": gemini.base_url(), "credential": GEMINI_KEY}))
        .await;
    let az = gw
        .create("/providers", json!({"name": "az-up", "kind": "azure-openai", "base_url": openai.azure_url(), "credential": upstream::AZURE_KEY}))
        .await;
    for model in ["gpt-up", "claude-up", "gemini-up"] {
        gw.create("/models", json!({"model": model, "input_micros_per_mtok": PRICE.0, "output_micros_per_mtok": PRICE.1}))
            .await;
    }
    for (alias, provider, model) in [
        ("oa", &oa, "gpt-up"),
        ("an", &an, "claude-up"),
        ("gm", &gm, "gemini-up"),
        ("gemini-up", &gm, "gemini-up"),
        ("az", &az, "gpt-up"),
    ] {
        gw.create(
            "/routes",
            json!({"alias": alias, "deployments": [{"provider_id": provider["id"], "model": model}]}),
        )
        .await;
    }
    gw.wait_for_config().await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    Setup {
        providers: [id(&oa), id(&an), id(&gm), id(&az)],
        openai,
        anthropic,
        gemini,
        key: key["key_secret"].as_str().unwrap().to_owned(),
        gw,
    }
}

impl Setup {
    fn generate(&self, alias: &str, stream: bool, body: &Value) -> reqwest::RequestBuilder {
        let method = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        self.gw
            .http
            .post(format!("{}/v1beta/models/{alias}:{method}", root(&self.gw)))
            .header("x-goog-api-key", &self.key)
            .json(body)
    }

    fn messages(&self, body: Value) -> reqwest::RequestBuilder {
        self.gw
            .http
            .post(format!("{}/messages", self.gw.base_url()))
            .header("x-api-key", &self.key)
            .json(&body)
    }
}

/// The data plane's address, without `/v1`.
fn root(gw: &Gateway) -> String {
    gw.base_url().trim_end_matches("/v1").to_owned()
}

fn cost(input: u64, output: u64, cached: u64, reasoning: u64) -> i64 {
    let price = Price {
        input_micros_per_mtok: PRICE.0,
        output_micros_per_mtok: PRICE.1,
        ..Price::default()
    };
    let tokens = Tokens {
        input,
        output,
        cached_input: cached,
        reasoning,
        ..Tokens::default()
    };
    cost_micros(tokens, &price)
}

/// Gemini's usage in the gateway's terms: (input, output, cached, reasoning).
const GEMINI_USAGE: (u64, u64, u64, u64) = (
    gemini_upstream::PROMPT_TOKENS,
    gemini_upstream::CANDIDATES_TOKENS + gemini_upstream::THOUGHTS_TOKENS,
    gemini_upstream::CACHED_TOKENS,
    gemini_upstream::THOUGHTS_TOKENS,
);

/// The `data:` payloads of a Gemini SSE body (events end in `\r\n\r\n` or `\n\n`).
fn gemini_chunks(text: &str) -> Vec<Value> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let data: String = e.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            serde_json::from_str(&data).unwrap_or_else(|_| panic!("not JSON: {e}"))
        })
        .collect()
}

/// What a Gemini client understood of an answer, and the usage it was told.
fn understand_gemini(stream: bool, body: &str) -> (Understood, Value) {
    let chunks = if stream {
        gemini_chunks(body)
    } else {
        vec![serde_json::from_str(body).unwrap()]
    };
    let mut u = Understood::default();
    let mut usage = Value::Null;
    for c in &chunks {
        assert!(c.get("error").is_none(), "{body}");
        let cand = &c["candidates"][0];
        for p in cand["content"]["parts"].as_array().unwrap() {
            if let Some(t) = p["text"].as_str() {
                u.text.push_str(t);
            }
            if let Some(fc) = p.get("functionCall") {
                assert!(fc["args"].is_object(), "{body}");
                u.tool = Some((fc["name"].as_str().unwrap().to_owned(), fc["args"].clone()));
            }
        }
        if let Some(f) = cand["finishReason"].as_str() {
            f.clone_into(&mut u.finish);
        }
        if !c["usageMetadata"].is_null() {
            usage = c["usageMetadata"].clone();
        }
    }
    if stream {
        assert!(
            chunks.last().unwrap()["candidates"][0]["finishReason"].is_string(),
            "the last chunk carries the finish reason: {body}"
        );
    }
    (u, usage)
}

#[tokio::test]
async fn generate_content_passes_through_to_a_gemini_deployment_byte_for_byte_with_cached_and_thought_usage(
) {
    let s = setup().await;
    let request = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                         "generationConfig": {"temperature": 0.2, "topK": 3}, "safetySettings": []});

    // Non-streamed: the body is forwarded untouched, the answer returned byte for byte.
    let resp = s
        .generate("gemini-up", false, &request)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-modelgate-translated").is_none());
    let id = request_id(&resp);
    assert_eq!(
        resp.text().await.unwrap(),
        gemini_upstream::response_body("gemini-up", false),
        "the response body must be byte-faithful"
    );
    let sent = s.gemini.last();
    assert_eq!(sent.body, request);
    assert_eq!(sent.path, "/v1beta/models/gemini-up:generateContent");
    assert_eq!(sent.api_key.as_deref(), Some(GEMINI_KEY));
    let row = s.gw.usage_row(&id).await;
    let (input, output, cached, reasoning) = GEMINI_USAGE;
    assert_eq!(row["status"], 200);
    assert_eq!(row["endpoint"], "generate_content");
    assert_eq!(row["provider_id"], s.providers[2].as_str());
    assert_eq!(row["served_model"], "gemini-up");
    assert_eq!(row["input_tokens"], input);
    assert_eq!(row["cached_input_tokens"], cached);
    assert_eq!(row["output_tokens"], output);
    assert_eq!(row["reasoning_tokens"], reasoning);
    assert_eq!(row["cost_micros"], cost(input, output, cached, reasoning));
    assert_eq!(row["estimated"], false);

    // Google's stable version path (the google-genai SDK's default) is served the same way.
    let resp =
        s.gw.http
            .post(format!("{}/v1/models/gm:generateContent", root(&s.gw)))
            .header("x-goog-api-key", &s.key)
            .json(&request)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        gemini_upstream::response_body("gemini-up", false)
    );

    // Streamed through an alias, the key in `?key=`: the deployment's model goes in the URL,
    // the chunks pass as they come, the last chunk's usage is the total.
    let resp =
        s.gw.http
            .post(format!(
                "{}/v1beta/models/gm:streamGenerateContent?alt=sse&key={}",
                root(&s.gw),
                s.key
            ))
            .json(&request)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let id = request_id(&resp);
    assert_eq!(
        sse_text(resp).await,
        gemini_upstream::stream_body("gemini-up", false)
    );
    let sent = s.gemini.last();
    assert_eq!(sent.path, "/v1beta/models/gemini-up:streamGenerateContent");
    assert_eq!(sent.query.as_deref(), Some("alt=sse"));
    assert_eq!(sent.body, request);
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["status"], 200);
    assert_eq!(row["streamed"], true);
    assert_eq!(row["input_tokens"], input);
    assert_eq!(row["cached_input_tokens"], cached);
    assert_eq!(row["output_tokens"], output);
    assert_eq!(row["reasoning_tokens"], reasoning);
    assert_eq!(row["cost_micros"], cost(input, output, cached, reasoning));
    assert_eq!(row["estimated"], false);
    s.gw.shutdown().await;
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Client {
    OpenAi,
    Anthropic,
    Gemini,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Plain,
    Stream,
    Tools,
}

#[tokio::test]
async fn every_client_reaches_every_provider_through_gemini_plain_streamed_and_with_tools() {
    let s = setup().await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"]});
    let gemini_schema = json!({"type": "OBJECT", "properties": {"city": {"type": "STRING"}, "unit": {"type": "STRING"}}, "required": ["city"]});
    let question = "What's the weather in Paris?";
    let mut cells = 0;
    for client in [Client::OpenAi, Client::Anthropic, Client::Gemini] {
        for provider in ["openai", "anthropic", "gemini", "azure-openai"] {
            if client != Client::Gemini && provider != "gemini" {
                continue; // covered by tests/e2e/anthropic.rs
            }
            for mode in [Mode::Plain, Mode::Stream, Mode::Tools] {
                let alias = match provider {
                    "openai" => "oa",
                    "anthropic" => "an",
                    "azure-openai" => "az",
                    _ => "gm",
                };
                let stream = mode == Mode::Stream;
                let tools = mode == Mode::Tools;
                let what = format!("{client:?} client → {provider} provider, {mode:?}");
                let resp = match client {
                    Client::OpenAi => {
                        let mut body = json!({"model": alias, "temperature": 0.3, "stop": ["END"], "messages": [
                            {"role": "system", "content": "Be brief."},
                            {"role": "user", "content": question}]});
                        if stream {
                            body["stream"] = json!(true);
                        }
                        if tools {
                            body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": schema}}]);
                        }
                        s.gw.chat(&s.key, body).send().await.unwrap()
                    }
                    Client::Anthropic => {
                        let mut body = json!({"model": alias, "max_tokens": 128, "system": "Be brief.",
                            "stop_sequences": ["END"], "messages": [{"role": "user", "content": question}]});
                        if stream {
                            body["stream"] = json!(true);
                        }
                        if tools {
                            body["tools"] = json!([{"name": "get_weather", "description": "Weather in a city", "input_schema": schema}]);
                        }
                        s.messages(body).send().await.unwrap()
                    }
                    Client::Gemini => {
                        let mut body = json!({
                            "systemInstruction": {"parts": [{"text": "Be brief."}]},
                            "contents": [{"role": "user", "parts": [{"text": question}]}],
                            "generationConfig": {"temperature": 0.3, "stopSequences": ["END"], "maxOutputTokens": 128},
                        });
                        if tools {
                            body["tools"] = json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather in a city", "parameters": gemini_schema}]}]);
                        }
                        s.generate(alias, stream, &body).send().await.unwrap()
                    }
                };
                assert_eq!(resp.status(), 200, "{what}");
                let client_format = match client {
                    Client::OpenAi => "openai-chat",
                    Client::Anthropic => "anthropic-messages",
                    Client::Gemini => "gemini",
                };
                let provider_format = match provider {
                    "openai" | "azure-openai" => "openai-chat",
                    "anthropic" => "anthropic-messages",
                    _ => "gemini",
                };
                let translated = resp
                    .headers()
                    .get("x-modelgate-translated")
                    .map(|v| v.to_str().unwrap().to_owned());
                if client_format == provider_format {
                    assert_eq!(translated, None, "{what}");
                } else {
                    assert_eq!(
                        translated,
                        Some(format!("{provider_format}->{client_format}")),
                        "{what}"
                    );
                }
                let id = request_id(&resp);
                let text = if stream {
                    sse_text(resp).await
                } else {
                    resp.text().await.unwrap()
                };
                let u = match client {
                    Client::OpenAi => understand(OtherClient::OpenAi, stream, &text),
                    Client::Anthropic => understand(OtherClient::Anthropic, stream, &text),
                    Client::Gemini => {
                        let (u, usage) = understand_gemini(stream, &text);
                        assert!(
                            usage["promptTokenCount"].as_u64().unwrap() > 0,
                            "{what}: {text}"
                        );
                        u
                    }
                };

                // What the upstream received is in its own format.
                match provider {
                    "openai" | "azure-openai" => {
                        let sent = s.openai.last_body();
                        let target = s.openai.last_target();
                        if provider == "openai" {
                            assert_eq!(sent["model"], "gpt-up", "{what}");
                            assert_eq!(target.path_and_query, "/v1/chat/completions", "{what}");
                        } else {
                            target.assert_azure_chat("gpt-up", &what);
                        }
                        assert_eq!(sent["messages"][0]["role"], "system", "{what}");
                        assert_eq!(sent["messages"][1]["content"], question, "{what}");
                        assert_eq!(sent["stop"], json!(["END"]), "{what}");
                        if stream {
                            assert_eq!(sent["stream_options"]["include_usage"], true, "{what}");
                        }
                        if tools {
                            assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
                            assert_eq!(
                                sent["tools"][0]["function"]["parameters"], schema,
                                "{what}: Gemini's upper-case types become JSON Schema's"
                            );
                        }
                    }
                    "anthropic" => {
                        let sent = s.anthropic.last_body();
                        assert_eq!(sent["model"], "claude-up", "{what}");
                        assert_eq!(sent["system"], "Be brief.", "{what}");
                        assert_eq!(sent["stop_sequences"], json!(["END"]), "{what}");
                        assert_eq!(sent["max_tokens"], 128, "{what}");
                        if tools {
                            assert_eq!(sent["tools"][0]["name"], "get_weather", "{what}");
                            assert!(sent["tools"][0]["input_schema"].is_object(), "{what}");
                        }
                    }
                    _ => {
                        let sent = s.gemini.last();
                        let method = if stream {
                            "streamGenerateContent"
                        } else {
                            "generateContent"
                        };
                        assert_eq!(sent.path, format!("/v1beta/models/gemini-up:{method}"));
                        assert_eq!(sent.api_key.as_deref(), Some(GEMINI_KEY), "{what}");
                        let b = &sent.body;
                        assert!(b.get("model").is_none(), "{what}: the model is in the URL");
                        assert_eq!(b["systemInstruction"]["parts"][0]["text"], "Be brief.");
                        assert_eq!(b["contents"][0]["role"], "user", "{what}");
                        assert_eq!(b["contents"][0]["parts"][0]["text"], question, "{what}");
                        assert_eq!(
                            b["generationConfig"]["stopSequences"],
                            json!(["END"]),
                            "{what}"
                        );
                        if tools {
                            let decl = &b["tools"][0]["functionDeclarations"][0];
                            assert_eq!(decl["name"], "get_weather", "{what}");
                        }
                    }
                }

                let (reply, tool_args) = match provider {
                    "openai" | "azure-openai" => (upstream::REPLY, upstream::TOOL_ARGUMENTS),
                    "anthropic" => (anthropic_upstream::REPLY, anthropic_upstream::TOOL_INPUT),
                    _ => (gemini_upstream::REPLY, gemini_upstream::TOOL_ARGS),
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
                    let want = match client {
                        Client::OpenAi => "tool_calls",
                        Client::Anthropic => "tool_use",
                        Client::Gemini => "STOP",
                    };
                    assert_eq!(u.finish, want, "{what}");
                } else {
                    assert_eq!(u.text, reply, "{what}");
                    let want = match client {
                        Client::OpenAi => "stop",
                        Client::Anthropic => "end_turn",
                        Client::Gemini => "STOP",
                    };
                    assert_eq!(u.finish, want, "{what}");
                }

                let row = s.gw.usage_row(&id).await;
                let (input, output, cached, reasoning, provider_id, model) = match provider {
                    "openai" | "azure-openai" => (
                        upstream::PROMPT_TOKENS,
                        upstream::COMPLETION_TOKENS,
                        0,
                        0,
                        &s.providers[if provider == "openai" { 0 } else { 3 }],
                        "gpt-up",
                    ),
                    "anthropic" => (
                        anthropic_upstream::INPUT_TOKENS + anthropic_upstream::CACHE_READ_TOKENS,
                        anthropic_upstream::OUTPUT_TOKENS,
                        anthropic_upstream::CACHE_READ_TOKENS,
                        0,
                        &s.providers[1],
                        "claude-up",
                    ),
                    _ => {
                        let (i, o, c, r) = GEMINI_USAGE;
                        (i, o, c, r, &s.providers[2], "gemini-up")
                    }
                };
                assert_eq!(row["status"], 200, "{what}");
                assert_eq!(row["input_tokens"], input, "{what}");
                assert_eq!(row["output_tokens"], output, "{what}");
                assert_eq!(row["cached_input_tokens"], cached, "{what}");
                assert_eq!(row["reasoning_tokens"], reasoning, "{what}");
                assert_eq!(row["provider_id"], provider_id.as_str(), "{what}");
                assert_eq!(row["served_model"], model, "{what}");
                assert_eq!(
                    row["cost_micros"],
                    cost(input, output, cached, reasoning),
                    "{what}"
                );
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
async fn bad_input_on_generate_content_gets_google_errors_usage_rows_or_security_records_and_no_upstream_call(
) {
    let s = setup().await;
    let base = root(&s.gw);
    let good = br#"{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}"#.to_vec();
    // (name, url, key header, body, status, Google status)
    type Case = (
        &'static str,
        String,
        Option<String>,
        Vec<u8>,
        u16,
        &'static str,
    );
    let url = format!("{base}/v1beta/models/gm:generateContent");
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            url.clone(),
            Some(s.key.clone()),
            b"{\"contents\": ".to_vec(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "missing contents",
            url.clone(),
            Some(s.key.clone()),
            br#"{"generationConfig": {}}"#.to_vec(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "wrong key",
            url.clone(),
            Some("mg-not-a-key".into()),
            good.clone(),
            401,
            "UNAUTHENTICATED",
        ),
        (
            "no key",
            url.clone(),
            None,
            good.clone(),
            401,
            "UNAUTHENTICATED",
        ),
        (
            "unknown model",
            format!("{base}/v1beta/models/no-such-model:generateContent"),
            Some(s.key.clone()),
            good.clone(),
            404,
            "NOT_FOUND",
        ),
        (
            "a parameter OpenAI cannot carry",
            format!("{base}/v1beta/models/oa:generateContent"),
            Some(s.key.clone()),
            br#"{"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"topK": 4}}"#.to_vec(),
            400,
            "INVALID_ARGUMENT",
        ),
    ];
    let mut anonymous = Vec::new();
    for (name, url, key, body, status, google) in cases {
        let mut req =
            s.gw.http
                .post(&url)
                .header("content-type", "application/json")
                .body(body);
        if let Some(k) = key {
            req = req.header("x-goog-api-key", k);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{name}");
        let id = request_id(&resp);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], status, "{name}: {v}");
        assert_eq!(v["error"]["status"], google, "{name}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 3, "{name}");
        if name == "a parameter OpenAI cannot carry" {
            assert!(
                v["error"]["message"].as_str().unwrap().contains("topK"),
                "the refusal names the parameter: {v}"
            );
        }
        match name {
            // Billable to no one: a security-log record instead of a usage row (R-5.1).
            "wrong key" => anonymous.push((id, "invalid_key")),
            "no key" => anonymous.push((id, "missing_key")),
            _ => {
                let row = s.gw.usage_row(&id).await;
                assert_eq!(row["status"], status, "{name}");
                assert_eq!(row["endpoint"], "generate_content", "{name}");
            }
        }
    }
    assert_eq!(s.gemini.calls(), 0, "no bad request reached the provider");
    assert_eq!(s.openai.calls(), 0, "no bad request reached the provider");
    crate::anonymous::assert_security_logged(&s.gw, &anonymous).await;
    let ids: Vec<String> = anonymous.into_iter().map(|(id, _)| id).collect();
    crate::anonymous::assert_no_usage_rows(&s.gw, &s.key, "oa", &ids).await;
    s.gw.shutdown().await;
}

#[tokio::test]
async fn upstream_errors_are_translated_to_and_from_googles_error_format() {
    let s = setup().await;
    s.gemini.fail_with(Some(400));
    s.openai.fail_with(Some(404));
    let hi = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});

    // A Gemini error for an OpenAI client.
    let resp =
        s.gw.chat(
            &s.key,
            json!({"model": "gm", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["message"], "mock gemini failure", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");

    // A Gemini error for an Anthropic client.
    let resp = s
        .messages(json!({"model": "gm", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(v["error"]["message"], "mock gemini failure", "{v}");

    // A Gemini error for a Gemini client: as Google sent it.
    let resp = s.generate("gm", false, &hi).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, gemini_upstream::error_body(400));

    // An OpenAI error for a Gemini client, in Google's shape.
    let resp = s.generate("oa", false, &hi).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.headers()["x-modelgate-translated"],
        "openai-chat->gemini"
    );
    let id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"error": {"code": 404, "message": "mock upstream failure", "status": "NOT_FOUND"}})
    );
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["status"], 404);
    assert_eq!(row["error_class"], "provider_error");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_gemini_stream_that_breaks_off_ends_with_an_error_in_the_callers_format() {
    let s = setup().await;
    s.gemini.cut_streams(true);
    let hi = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});

    // A Gemini client: the first chunk, then Google's error shape.
    let resp = s.generate("gm", true, &hi).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let chunks = gemini_chunks(&sse_text(resp).await);
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"][0]["text"],
        "Hello "
    );
    assert_eq!(chunks[1]["error"]["code"], 502, "{chunks:?}");
    assert_eq!(chunks[1]["error"]["status"], "UNAVAILABLE", "{chunks:?}");
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["status"], 502);
    assert_eq!(row["input_tokens"], gemini_upstream::PROMPT_TOKENS);

    // An Anthropic client: an Anthropic error event, no message_stop.
    let resp = s
        .messages(json!({"model": "gm", "max_tokens": 8, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let evs = events(&sse_text(resp).await);
    let names: Vec<_> = evs
        .iter()
        .map(|(n, _)| n.clone().unwrap_or_default())
        .collect();
    assert_eq!(names.last().unwrap(), "error", "{names:?}");
    assert!(!names.contains(&"message_stop".to_owned()), "{names:?}");
    s.gw.shutdown().await;
}

/// Reads Google's JSON-array stream as it arrives: `[`, then elements separated by commas,
/// then `]`; each element is parsed as soon as its bytes are in.
#[derive(Default)]
struct ArrayReader {
    buf: Vec<u8>,
    pos: usize,
    opened: bool,
    closed: bool,
    elements: Vec<Value>,
}

impl ArrayReader {
    fn feed(&mut self, bytes: &[u8]) {
        assert!(!self.closed, "bytes after the closing bracket");
        self.buf.extend_from_slice(bytes);
        loop {
            while self.pos < self.buf.len() && self.buf[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            let Some(&b) = self.buf.get(self.pos) else {
                break;
            };
            match b {
                b'[' if !self.opened => self.opened = true,
                b']' if self.opened => self.closed = true,
                b',' if !self.elements.is_empty() => {}
                b'{' if self.opened => {
                    let mut it = serde_json::Deserializer::from_slice(&self.buf[self.pos..])
                        .into_iter::<Value>();
                    match it.next() {
                        Some(Ok(v)) => {
                            self.elements.push(v);
                            self.pos += it.byte_offset();
                            continue;
                        }
                        Some(Err(e)) if e.is_eof() => break,
                        other => panic!("not a JSON array stream: {other:?}"),
                    }
                }
                other => panic!("unexpected byte {:?} in the array stream", other as char),
            }
            self.pos += 1;
            if self.closed {
                break;
            }
        }
    }
}

async fn read_array(resp: reqwest::Response) -> ArrayReader {
    use futures_util::StreamExt;
    let mut reader = ArrayReader::default();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        reader.feed(&chunk.unwrap());
    }
    assert!(reader.closed, "the array is closed");
    reader
}

#[tokio::test]
async fn stream_generate_content_without_alt_sse_is_written_as_a_json_array() {
    let s = setup().await;
    let hi = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    // (alias, reply, usage row (input, output, cached, reasoning))
    for (alias, reply, usage) in [
        ("gm", gemini_upstream::REPLY, GEMINI_USAGE),
        (
            "oa",
            upstream::REPLY,
            (upstream::PROMPT_TOKENS, upstream::COMPLETION_TOKENS, 0, 0),
        ),
    ] {
        let resp =
            s.gw.http
                .post(format!(
                    "{}/v1beta/models/{alias}:streamGenerateContent",
                    root(&s.gw)
                ))
                .header("x-goog-api-key", &s.key)
                .json(&hi)
                .send()
                .await
                .unwrap();
        assert_eq!(resp.status(), 200, "{alias}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/json; charset=UTF-8",
            "{alias}"
        );
        let id = request_id(&resp);
        let reader = read_array(resp).await;
        let chunks = &reader.elements;
        assert!(chunks.len() >= 2, "{alias}: {chunks:?}");
        // The same chunks an SSE client gets: text in pieces, the finish reason and the
        // usage in the last one.
        let text: String = chunks
            .iter()
            .flat_map(|c| {
                c["candidates"][0]["content"]["parts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|p| p["text"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(text, reply, "{alias}");
        let last = chunks.last().unwrap();
        assert_eq!(last["candidates"][0]["finishReason"], "STOP", "{alias}");
        assert_eq!(
            last["usageMetadata"]["promptTokenCount"], usage.0,
            "{alias}: {last}"
        );
        let row = s.gw.usage_row(&id).await;
        assert_eq!(row["streamed"], true, "{alias}");
        assert_eq!(row["status"], 200, "{alias}");
        assert_eq!(row["input_tokens"], usage.0, "{alias}");
        assert_eq!(row["output_tokens"], usage.1, "{alias}");
        assert_eq!(row["cached_input_tokens"], usage.2, "{alias}");
        assert_eq!(row["reasoning_tokens"], usage.3, "{alias}");
        assert_eq!(row["estimated"], false, "{alias}");
    }
    // The gateway still asked its Gemini upstream for server-sent events.
    assert_eq!(s.gemini.last().query.as_deref(), Some("alt=sse"));

    // Cut mid-way: the error is the array's last element, and the array is still closed.
    s.gemini.cut_streams(true);
    let resp =
        s.gw.http
            .post(format!(
                "{}/v1beta/models/gm:streamGenerateContent",
                root(&s.gw)
            ))
            .header("x-goog-api-key", &s.key)
            .json(&hi)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let reader = read_array(resp).await;
    let chunks = &reader.elements;
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"][0]["text"],
        "Hello "
    );
    assert_eq!(chunks[1]["error"]["code"], 502, "{chunks:?}");
    assert_eq!(chunks[1]["error"]["status"], "UNAVAILABLE", "{chunks:?}");
    s.gw.shutdown().await;
}
