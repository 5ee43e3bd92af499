//! OpenAI's other surfaces through the gateway: Responses (JSON and SSE), embeddings, image
//! generation and video jobs, against an upstream speaking OpenAI's (and Azure OpenAI's) real
//! wire format — each answer checked byte for byte or by shape, and by its usage row and cost.

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::openai_upstream::{self as up, OpenAiUpstream};
use crate::support::{request_id, Gateway};

/// Catalog prices (micro-USD): tokens at 1000/500/2000/3000 per token (input, cached,
/// output, reasoning), 40 000 per image, 250 000 per video second.
const PER_IMAGE: i64 = 40_000;
const PER_SECOND: i64 = 250_000;

struct Setup {
    gw: Gateway,
    upstream: OpenAiUpstream,
    key: String,
    key_id: String,
    team_id: String,
    provider_id: String,
}

/// A gateway with aliases `resp`, `embed`, `img`, `vid` routed to an OpenAI-compatible
/// upstream (models `gpt-resp-up`, `embed-up`, `img-up`, `sora-up`), `az-*` aliases routed to
/// an azure-openai account on the same upstream, `claude` routed to an anthropic account, and
/// a key that may call everything.
async fn setup() -> Setup {
    let upstream = OpenAiUpstream::start().await;
    let gw = Gateway::start().await;
    let team = gw.create("/teams", json!({"name": "surfaces-team"})).await;
    let key = gw
        .create(
            "/keys",
            json!({"team_id": team["id"], "name": "app", "environment": "prod"}),
        )
        .await;
    let oa = gw
        .create("/providers", json!({"name": "oa-up", "kind": "openai-compatible", "base_url": upstream.base_url(), "credential": "sk-openai-1234"}))
        .await;
    let az = gw
        .create("/providers", json!({"name": "az-up", "kind": "azure-openai", "base_url": format!("{}?api-version=2025-01-01-preview", upstream.root_url()), "credential": "azure-secret-key-9876"}))
        .await;
    let an = gw
        .create("/providers", json!({"name": "an-up", "kind": "anthropic", "base_url": "http://127.0.0.1:9", "credential": "sk-ant-1"}))
        .await;
    for model in ["gpt-resp-up", "embed-up", "img-up", "sora-up", "claude-up"] {
        gw.create(
            "/models",
            json!({"model": model, "input_micros_per_mtok": 1_000_000_000i64,
                   "cached_input_micros_per_mtok": 500_000_000i64,
                   "output_micros_per_mtok": 2_000_000_000i64,
                   "reasoning_micros_per_mtok": 3_000_000_000i64,
                   "per_image_micros": PER_IMAGE, "per_second_micros": PER_SECOND}),
        )
        .await;
    }
    for (alias, provider, model) in [
        ("resp", &oa, "gpt-resp-up"),
        ("embed", &oa, "embed-up"),
        ("img", &oa, "img-up"),
        ("vid", &oa, "sora-up"),
        ("az-chat", &az, "gpt-resp-up"),
        ("az-embed", &az, "embed-up"),
        ("az-img", &az, "img-up"),
        ("claude", &an, "claude-up"),
    ] {
        gw.create(
            "/routes",
            json!({"alias": alias, "deployments": [{"provider_id": provider["id"], "model": model}]}),
        )
        .await;
    }
    gw.wait_for_config().await;
    Setup {
        upstream,
        key: key["key_secret"].as_str().unwrap().to_owned(),
        key_id: key["id"].as_str().unwrap().to_owned(),
        team_id: team["id"].as_str().unwrap().to_owned(),
        provider_id: oa["id"].as_str().unwrap().to_owned(),
        gw,
    }
}

impl Setup {
    fn post(&self, path: &str, body: Value) -> reqwest::RequestBuilder {
        self.gw
            .http
            .post(format!("{}{path}", self.gw.base_url()))
            .bearer_auth(&self.key)
            .json(&body)
    }
}

#[tokio::test]
async fn responses_pass_through_with_the_model_renamed_and_usage_by_token_type() {
    let s = setup().await;
    let resp = s
        .post(
            "/responses",
            json!({"model": "resp", "input": "hi", "instructions": "be brief"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let text = resp.text().await.unwrap();
    // Byte-faithful: exactly what the upstream sent, unknown fields included.
    assert_eq!(
        text,
        up::response_object("gpt-resp-up", "completed", true).to_string()
    );
    let sent = s.upstream.last();
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(sent.body["model"], "gpt-resp-up");
    assert_eq!(sent.body["instructions"], "be brief");
    assert_eq!(sent.authorization.as_deref(), Some("Bearer sk-openai-1234"));

    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["endpoint"], "responses");
    assert_eq!(row["status"], 200);
    assert_eq!(row["input_tokens"], up::RESP_INPUT);
    assert_eq!(row["cached_input_tokens"], up::RESP_CACHED);
    assert_eq!(row["output_tokens"], up::RESP_OUTPUT);
    assert_eq!(row["reasoning_tokens"], up::RESP_REASONING);
    assert_eq!(row["estimated"], false);
    assert_eq!(row["provider_id"], s.provider_id.as_str());
    // 20 × 1000 + 10 × 500 + 8 × 2000 + 4 × 3000
    assert_eq!(row["cost_micros"], 53_000);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_streamed_response_is_passed_through_and_metered_from_response_completed() {
    let s = setup().await;
    let resp = s
        .post(
            "/responses",
            json!({"model": "resp", "input": "hi", "stream": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let mut body = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let types: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.completed"
        ]
    );
    assert!(body.contains(up::RESP_TEXT));
    assert_eq!(s.upstream.last().body["stream"], true);
    // No `stream_options` is injected into a Responses request.
    assert!(s.upstream.last().body.get("stream_options").is_none());

    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["streamed"], true);
    assert_eq!(row["status"], 200);
    assert_eq!(row["input_tokens"], up::RESP_INPUT);
    assert_eq!(row["reasoning_tokens"], up::RESP_REASONING);
    assert_eq!(row["estimated"], false);
    assert_eq!(row["cost_micros"], 53_000);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn embeddings_pass_through_and_are_priced_as_input_tokens() {
    let s = setup().await;
    let resp = s
        .post(
            "/embeddings",
            json!({"model": "embed", "input": ["a", "b"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"][0]["embedding"], json!([0.25, -0.5, 0.125]));
    assert_eq!(v["model"], "embed-up");
    let sent = s.upstream.last();
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(sent.body["input"], json!(["a", "b"]));
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["endpoint"], "embeddings");
    assert_eq!(row["input_tokens"], up::EMBED_TOKENS);
    assert_eq!(row["output_tokens"], 0);
    assert_eq!(row["estimated"], false);
    assert_eq!(row["cost_micros"], up::EMBED_TOKENS as i64 * 1000);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn image_generation_is_metered_per_image_returned() {
    let s = setup().await;
    let resp = s
        .post(
            "/images/generations",
            json!({"model": "img", "prompt": "a red fox", "n": 3}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert_eq!(s.upstream.last().path, "/v1/images/generations");
    assert_eq!(s.upstream.last().body["model"], "img-up");
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["endpoint"], "images.generations");
    assert_eq!(row["images"], 3);
    assert_eq!(row["input_tokens"], 0);
    assert_eq!(row["cost_micros"], 3 * PER_IMAGE);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn azure_openai_calls_the_deployment_path_with_api_version_and_api_key() {
    let s = setup().await;
    let chat = s
        .post(
            "/chat/completions",
            json!({"model": "az-chat", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 200);
    let id = request_id(&chat);
    let v: Value = chat.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hi from azure");
    let sent = s.upstream.last();
    assert_eq!(sent.method, "POST");
    assert_eq!(
        sent.path,
        "/openai/deployments/gpt-resp-up/chat/completions"
    );
    assert_eq!(sent.query, "api-version=2025-01-01-preview");
    assert_eq!(sent.api_key.as_deref(), Some("azure-secret-key-9876"));
    assert_eq!(sent.authorization, None);
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["input_tokens"], 5);
    assert_eq!(row["output_tokens"], 3);

    let emb = s
        .post("/embeddings", json!({"model": "az-embed", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(emb.status(), 200);
    assert_eq!(
        s.upstream.last().path,
        "/openai/deployments/embed-up/embeddings"
    );
    let img = s
        .post(
            "/images/generations",
            json!({"model": "az-img", "prompt": "p", "n": 1}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(img.status(), 200);
    assert_eq!(
        s.upstream.last().path,
        "/openai/deployments/img-up/images/generations"
    );
    assert_eq!(s.upstream.last().query, "api-version=2025-01-01-preview");
    let resp = s
        .post("/responses", json!({"model": "az-chat", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = s.upstream.last();
    assert_eq!(sent.path, "/openai/responses");
    assert_eq!(sent.body["model"], "gpt-resp-up");
    assert_eq!(sent.api_key.as_deref(), Some("azure-secret-key-9876"));
    s.gw.shutdown().await;
}

#[tokio::test]
async fn each_surface_needs_its_endpoint_family_on_the_key() {
    let s = setup().await;
    let chat_only =
        s.gw.create(
            "/keys",
            json!({"team_id": s.team_id, "name": "chat-only", "endpoint_families": ["chat"]}),
        )
        .await;
    s.gw.wait_for_config().await;
    let secret = chat_only["key_secret"].as_str().unwrap();
    for (path, body, family) in [
        (
            "/responses",
            json!({"model": "resp", "input": "hi"}),
            "responses",
        ),
        (
            "/embeddings",
            json!({"model": "embed", "input": "hi"}),
            "embeddings",
        ),
        (
            "/images/generations",
            json!({"model": "img", "prompt": "hi"}),
            "images",
        ),
    ] {
        let resp =
            s.gw.http
                .post(format!("{}{path}", s.gw.base_url()))
                .bearer_auth(secret)
                .json(&body)
                .send()
                .await
                .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
        let id = request_id(&resp);
        let v: Value = resp.json().await.unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap().contains(family),
            "{path}: {v}"
        );
        let row = s.gw.usage_row(&id).await;
        assert_eq!(row["status"], 403);
    }
    assert_eq!(s.upstream.calls(), 0);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn bad_input_on_each_surface_gets_an_openai_error_a_usage_row_and_no_upstream_call() {
    let s = setup().await;
    let cases: [(&str, &[u8], &str); 7] = [
        ("/responses", b"{not json", "invalid_request_error"),
        ("/responses", br#"{"input":"hi"}"#, "model"),
        ("/embeddings", b"[1,", "invalid_request_error"),
        ("/embeddings", br#"{"input":"hi"}"#, "model"),
        ("/embeddings", br#"{"model":"embed"}"#, "input"),
        ("/images/generations", br#"{"prompt":"x"}"#, "model"),
        (
            "/images/generations",
            br#"{"model":"img","prompt":"x","stream":true}"#,
            "stream",
        ),
    ];
    for (path, body, expect) in cases {
        let resp =
            s.gw.http
                .post(format!("{}{path}", s.gw.base_url()))
                .bearer_auth(&s.key)
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
        assert_eq!(
            resp.status(),
            400,
            "{path} {}",
            String::from_utf8_lossy(body)
        );
        let id = request_id(&resp);
        let v: Value = resp.json().await.unwrap();
        let err = &v["error"];
        assert!(
            err["param"] == expect || err["type"] == expect,
            "{path}: {v}"
        );
        let row = s.gw.usage_row(&id).await;
        assert_eq!(row["status"], 400);
        assert_eq!(row["key_id"], s.key_id.as_str());
    }
    assert_eq!(s.upstream.calls(), 0);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn an_anthropic_deployment_refuses_pass_through_surfaces_with_a_400_naming_why() {
    let s = setup().await;
    for (path, body) in [
        ("/responses", json!({"model": "claude", "input": "hi"})),
        ("/embeddings", json!({"model": "claude", "input": "hi"})),
    ] {
        let resp = s.post(path, body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let v: Value = resp.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("`anthropic` provider"), "{msg}");
    }
    s.gw.shutdown().await;
}

impl Setup {
    async fn get(&self, path: &str) -> (u16, String, reqwest::Response) {
        let resp = self
            .gw
            .http
            .get(format!("{}{path}", self.gw.base_url()))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        let id = request_id(&resp);
        (resp.status().as_u16(), id, resp)
    }
}

#[tokio::test]
async fn a_video_job_is_created_polled_to_completion_fetched_and_metered_once_by_seconds() {
    let s = setup().await;
    let resp = s
        .post(
            "/videos",
            json!({"model": "vid", "prompt": "a cat on a skateboard", "seconds": "8"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let create_id = request_id(&resp);
    let job: Value = resp.json().await.unwrap();
    assert_eq!(job["object"], "video");
    assert_eq!(job["status"], "queued");
    let gid = job["id"].as_str().unwrap().to_owned();
    // The gateway's id names the provider, so any node can route the poll.
    assert!(gid.starts_with("mgv2."), "{gid}");
    assert!(gid.contains(&s.provider_id), "{gid}");
    assert!(gid.contains(".video_up_1."), "{gid}");
    let sent = s.upstream.last();
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/videos")
    );
    assert_eq!(sent.body["model"], "sora-up");
    let row = s.gw.usage_row(&create_id).await;
    assert_eq!(row["endpoint"], "videos");
    assert_eq!(row["status"], 200);
    assert_eq!(row["media_ms"], 0);
    assert_eq!(row["cost_micros"], 0);

    // First poll: in progress, nothing charged.
    let (status, poll1, resp) = s.get(&format!("/videos/{gid}")).await;
    assert_eq!(status, 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "in_progress");
    assert_eq!(v["id"], gid.as_str());
    assert_eq!(s.upstream.last().path, "/v1/videos/video_up_1");
    assert_eq!(
        s.upstream.last().authorization.as_deref(),
        Some("Bearer sk-openai-1234")
    );
    let row = s.gw.usage_row(&poll1).await;
    assert_eq!(row["cost_micros"], 0);
    assert_eq!(row["media_ms"], 0);

    // Second poll: completed, charged by seconds.
    let (status, poll2, resp) = s.get(&format!("/videos/{gid}")).await;
    assert_eq!(status, 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "completed");
    let row = s.gw.usage_row(&poll2).await;
    assert_eq!(row["endpoint"], "videos.retrieve");
    assert_eq!(row["media_ms"], 8_000);
    assert_eq!(row["served_model"], "sora-up");
    assert_eq!(row["cost_micros"], 8 * PER_SECOND);

    // Third poll: still completed, not charged again.
    let (status, poll3, resp) = s.get(&format!("/videos/{gid}")).await;
    assert_eq!(status, 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "completed");
    let row = s.gw.usage_row(&poll3).await;
    assert_eq!(row["media_ms"], 0);
    assert_eq!(row["cost_micros"], 0);

    // The content, streamed through.
    let (status, fetch, resp) = s.get(&format!("/videos/{gid}/content")).await;
    assert_eq!(status, 200);
    assert_eq!(resp.headers()["content-type"], "video/mp4");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), up::VIDEO_BYTES);
    assert_eq!(s.upstream.last().path, "/v1/videos/video_up_1/content");
    let row = s.gw.usage_row(&fetch).await;
    assert_eq!(row["endpoint"], "videos.content");
    assert_eq!(row["cost_micros"], 0);

    // Across every request of the key, the job was charged exactly once.
    let (st, all) =
        s.gw.admin(
            reqwest::Method::GET,
            &format!("/usage/events?key_id={}", s.key_id),
            None,
        )
        .await;
    assert_eq!(st, 200, "{all}");
    let rows = all["data"].as_array().unwrap();
    let charged: Vec<&Value> = rows.iter().filter(|r| r["media_ms"] != 0).collect();
    assert_eq!(charged.len(), 1, "{all}");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn video_ids_the_gateway_did_not_issue_are_not_found_and_polls_need_the_video_family() {
    let s = setup().await;
    let (status, id, resp) = s.get("/videos/video_up_1").await;
    assert_eq!(status, 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "video_not_found");
    assert_eq!(s.gw.usage_row(&id).await["status"], 404);
    let chat_only =
        s.gw.create(
            "/keys",
            json!({"team_id": s.team_id, "name": "chat-only", "endpoint_families": ["chat"]}),
        )
        .await;
    s.gw.wait_for_config().await;
    let resp =
        s.gw.http
            .post(format!("{}/videos", s.gw.base_url()))
            .bearer_auth(chat_only["key_secret"].as_str().unwrap())
            .json(&json!({"model": "vid", "prompt": "p"}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(s.upstream.calls(), 0);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_multipart_video_create_is_forwarded_with_only_the_model_rewritten() {
    let s = setup().await;
    let form = "--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na cat\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nvid\r\n--XyZ\r\nContent-Disposition: form-data; name=\"seconds\"\r\n\r\n4\r\n--XyZ--\r\n";
    let resp =
        s.gw.http
            .post(format!("{}/videos", s.gw.base_url()))
            .bearer_auth(&s.key)
            .header("content-type", "multipart/form-data; boundary=XyZ")
            .body(form)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let job: Value = resp.json().await.unwrap();
    assert!(job["id"].as_str().unwrap().starts_with("mgv2."));
    let sent = s.upstream.last().body;
    assert_eq!(
        sent,
        Value::String(form.replace("\r\n\r\nvid\r\n", "\r\n\r\nsora-up\r\n"))
    );
    s.gw.shutdown().await;
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_forged_or_foreign_video_id_is_not_found_and_costs_nothing_upstream() {
    let s = setup().await;
    // A model priced at nothing, on the same upstream: what a forger would switch to.
    s.gw.create("/models", json!({"model": "free-up", "input_micros_per_mtok": 0, "output_micros_per_mtok": 0, "per_second_micros": 0}))
        .await;
    s.gw.create(
        "/routes",
        json!({"alias": "free", "deployments": [{"provider_id": s.provider_id, "model": "free-up"}]}),
    )
    .await;
    let other_team = s.gw.create("/teams", json!({"name": "other-team"})).await;
    let outsider =
        s.gw.create(
            "/keys",
            json!({"team_id": other_team["id"], "name": "outsider"}),
        )
        .await;
    let chat_only =
        s.gw.create(
            "/keys",
            json!({"team_id": s.team_id, "name": "free-only", "allowed_models": ["free"]}),
        )
        .await;
    s.gw.wait_for_config().await;
    let resp = s
        .post(
            "/videos",
            json!({"model": "vid", "prompt": "a cat", "seconds": "8"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let gid = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = gid.split('.').collect();
    // Forgeries: the model switched to the free one, the upstream id switched, the unsigned
    // format of earlier versions.
    let mut free_model = parts.clone();
    let free = hex("free-up");
    free_model[2] = &free;
    let mut other_job = parts.clone();
    let other_upstream = parts[parts.len() - 2].replace("video_up_1", "video_up_2");
    let n = other_job.len();
    other_job[n - 2] = &other_upstream;
    let unsigned = format!("mgv.{}.{}.video_up_1", s.provider_id, hex("free-up"));
    let calls = s.upstream.calls();
    let as_key = |key: &str, path: String| {
        s.gw.http
            .get(format!("{}{path}", s.gw.base_url()))
            .bearer_auth(key.to_owned())
            .send()
    };
    for forged in [free_model.join("."), other_job.join("."), unsigned] {
        for path in [
            format!("/videos/{forged}"),
            format!("/videos/{forged}/content"),
        ] {
            let resp = as_key(&s.key, path.clone()).await.unwrap();
            let id = request_id(&resp);
            assert_eq!(resp.status(), 404, "{path}");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], "video_not_found", "{path}");
            assert_eq!(v["error"]["type"], "invalid_request_error", "{path}");
            let row = s.gw.usage_row(&id).await;
            assert_eq!(row["status"], 404, "{path}");
            assert_eq!(row["key_id"], s.key_id.as_str(), "{path}");
            assert_eq!(row["cost_micros"], 0, "{path}");
        }
    }
    // The genuine id, polled by another team's key: not found either.
    for path in [format!("/videos/{gid}"), format!("/videos/{gid}/content")] {
        let resp = as_key(outsider["key_secret"].as_str().unwrap(), path.clone())
            .await
            .unwrap();
        let id = request_id(&resp);
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(s.gw.usage_row(&id).await["status"], 404, "{path}");
    }
    // A key of the same team that may not use the job's alias is refused.
    let resp = as_key(
        chat_only["key_secret"].as_str().unwrap(),
        format!("/videos/{gid}"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_allowed");
    assert_eq!(
        s.upstream.calls(),
        calls,
        "no refused poll reached the upstream"
    );

    // The owner's polls work and are charged at the job's real price.
    let (status, _, _) = s.get(&format!("/videos/{gid}")).await;
    assert_eq!(status, 200);
    let (status, poll2, _) = s.get(&format!("/videos/{gid}")).await;
    assert_eq!(status, 200);
    assert_eq!(s.gw.usage_row(&poll2).await["cost_micros"], 8 * PER_SECOND);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_crafted_multipart_video_body_is_a_400_not_a_dropped_connection() {
    let s = setup().await;
    // The hand-written form reader sliced past the end of this body and panicked.
    for (content_type, body) in [
        ("multipart/form-data; boundary=B", "--B\r\nH\r\n\r\nv\r\n--B"),
        // A form whose boundary is not the one its Content-Type names.
        (
            "multipart/form-data; boundary=Other",
            "--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nvid\r\n--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\np\r\n--B--\r\n",
        ),
    ] {
        let resp =
            s.gw.http
                .post(format!("{}/videos", s.gw.base_url()))
                .bearer_auth(&s.key)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("an answer, not a dropped connection");
        let id = request_id(&resp);
        assert_eq!(resp.status(), 400, "{body:?}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(s.gw.usage_row(&id).await["status"], 400);
    }
    assert_eq!(s.upstream.calls(), 0);
    s.gw.shutdown().await;
}
