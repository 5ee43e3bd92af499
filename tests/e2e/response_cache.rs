//! The response cache (issue 19): a route's `policy.cache` makes identical requests — same
//! alias, same body in canonical form, same partition — answered from a stored answer without an
//! upstream call, through the real data plane, a real Redis (`support::services::redis_url`: the
//! configured one, the local one, or one the suite starts; each test under its own key prefix) and mock upstreams that are real HTTP servers counting their calls.

use std::time::Duration;

use modelgate_data_plane::cache::Settings as CacheSettings;
use modelgate_data_plane::RunningDataPlane;
use serde_json::{json, Value};

use crate::support::anthropic_upstream::{self, AnthropicUpstream};
use crate::support::gemini_upstream::{self, GeminiUpstream};
use crate::support::openai_upstream::{self, OpenAiUpstream};
use crate::support::services::{redis_addr, redis_url};
use crate::support::upstream::{self, MockUpstream};
use crate::support::{eventually, request_id, start_data_plane_custom, temp_dir, Gateway};

/// Cache settings on the shared Redis every cache test uses, under `prefix`.
async fn cache_settings(prefix: &str) -> CacheSettings {
    CacheSettings {
        redis_url: Some(redis_url().await),
        redis_prefix: prefix.into(),
        ..CacheSettings::default()
    }
}

fn unique_prefix() -> String {
    format!("mg-e2e-cache:{}:", uuid::Uuid::now_v7().simple())
}

/// A data plane of `gw`'s fleet with `cache`, serving the latest config.
async fn data_plane(gw: &Gateway, dir: &std::path::Path, cache: CacheSettings) -> RunningDataPlane {
    let clock = gw.clock.clone();
    let dp = start_data_plane_custom(gw.grpc_addr, dir, |s| {
        s.clock = clock;
        s.cache = cache;
    })
    .await;
    let want = gw
        .cp()
        .services
        .publisher
        .latest()
        .unwrap()
        .snapshot
        .version;
    eventually(
        Duration::from_secs(10),
        "the data plane's config",
        || async { (dp.config_version() >= want).then_some(()) },
    )
    .await;
    dp
}

struct Fixture {
    upstream: MockUpstream,
    gw: Gateway,
    team_id: String,
    key: String,
    key_id: String,
    provider_id: String,
}

/// A gateway whose data plane caches with `cache`, and the alias `cached` (policy `cache`)
/// routed to the mock upstream's priced `gpt-cache-1`, for a fresh team and key.
async fn fixture(policy_cache: Value, cache: CacheSettings) -> Fixture {
    let upstream = MockUpstream::start().await;
    let mut gw = Gateway::start().await;
    gw.stop_data_plane().await;
    let dir = gw.dp_dir.clone();
    let dp = data_plane(&gw, &dir, cache).await;
    gw.dp = Some(dp);
    let team = gw.create("/teams", json!({"name": "cache-team"})).await;
    let team_id = team["id"].as_str().unwrap().to_owned();
    let key = gw
        .create(
            "/keys",
            json!({"team_id": team_id, "name": "app", "environment": "prod"}),
        )
        .await;
    let provider = gw
        .create(
            "/providers",
            json!({"name": "up", "kind": "openai-compatible",
            "base_url": upstream.base_url(), "credential": "sk-upstream-secret-1234"}),
        )
        .await;
    let provider_id = provider["id"].as_str().unwrap().to_owned();
    gw.create(
        "/models",
        json!({"model": "gpt-cache-1", "input_micros_per_mtok": 2_500_000,
        "output_micros_per_mtok": 10_000_000}),
    )
    .await;
    gw.create(
        "/routes",
        json!({"alias": "cached",
        "deployments": [{"provider_id": provider_id, "model": "gpt-cache-1"}],
        "policy": {"cache": policy_cache}}),
    )
    .await;
    gw.wait_for_config().await;
    Fixture {
        upstream,
        team_id,
        key: key["key_secret"].as_str().unwrap().to_owned(),
        key_id: key["id"].as_str().unwrap().to_owned(),
        provider_id,
        gw,
    }
}

async fn cached_fixture() -> Fixture {
    fixture(
        json!({"enabled": true}),
        cache_settings(&unique_prefix()).await,
    )
    .await
}

fn ask(prompt: &str) -> Value {
    json!({"model": "cached", "temperature": 0,
        "messages": [{"role": "user", "content": prompt}]})
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn cache_header(resp: &reqwest::Response) -> Option<String> {
    header(resp, "x-modelgate-cache")
}

/// A counter of the data plane's `/metrics`.
async fn counter(dp: &RunningDataPlane, name: &str) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", dp.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Waits until the data plane has stored `n` answers (stores run after the answer is sent).
async fn stored(dp: &RunningDataPlane, n: u64) {
    eventually(
        Duration::from_secs(10),
        "the answer to be stored",
        || async { (counter(dp, "modelgate_cache_stored_total").await >= n).then_some(()) },
    )
    .await;
}

async fn post(
    http: &reqwest::Client,
    dp: &RunningDataPlane,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    http.post(format!("http://{}/v1/chat/completions", dp.addr))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

impl Fixture {
    async fn send(&self, body: &Value) -> reqwest::Response {
        post(&self.gw.http, self.gw.dp(), &self.key, body).await
    }

    async fn send_with(&self, body: &Value, cache: &str) -> reqwest::Response {
        self.gw
            .chat(&self.key, body.clone())
            .header("x-modelgate-cache", cache)
            .send()
            .await
            .unwrap()
    }
}

/// The text an OpenAI chat stream carried, its chunks' deltas joined; and whether it ended
/// with `[DONE]`.
fn chat_stream_text(sse: &str) -> (String, bool) {
    let mut text = String::new();
    let mut done = false;
    for data in sse.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk", "{v}");
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    }
    (text, done)
}

#[tokio::test]
async fn a_hit_is_answered_without_an_upstream_call_to_streaming_and_non_streaming_clients() {
    let f = cached_fixture().await;
    let body = ask("What is a cache?");
    let first = f.send(&body).await;
    assert_eq!(first.status(), 200);
    assert_eq!(cache_header(&first).as_deref(), Some("miss"));
    let first: Value = first.json().await.unwrap();
    assert_eq!(f.upstream.calls(), 1);
    stored(f.gw.dp(), 1).await;

    let again = f.send(&body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(cache_header(&again).as_deref(), Some("hit"));
    assert!(header(&again, "content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(f.upstream.calls(), 1, "a hit makes no upstream call");

    // The same request streamed: served from the same answer, as chat chunks.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let resp = f.send(&streamed).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(cache_header(&resp).as_deref(), Some("hit"));
    assert!(header(&resp, "content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let sse = resp.text().await.unwrap();
    let (text, done) = chat_stream_text(&sse);
    assert_eq!(text, upstream::REPLY);
    assert!(done, "{sse}");
    assert!(sse.contains("\"usage\""), "usage chunk asked for: {sse}");
    assert_eq!(f.upstream.calls(), 1);

    // A streamed miss (no usage chunk asked for) is stored as the whole answer its events
    // make: a non-streaming repeat gets that answer, a streaming one chunks made from it.
    let mut other = ask("And a stream?");
    other["stream"] = json!(true);
    let resp = f.send(&other).await;
    assert_eq!(cache_header(&resp).as_deref(), Some("miss"));
    let live = resp.text().await.unwrap();
    assert_eq!(chat_stream_text(&live), (upstream::REPLY.to_owned(), true));
    assert_eq!(f.upstream.calls(), 2);
    stored(f.gw.dp(), 2).await;
    let resp = f.send(&other).await;
    assert_eq!(cache_header(&resp).as_deref(), Some("hit"));
    let replay = resp.text().await.unwrap();
    assert_eq!(
        chat_stream_text(&replay),
        (upstream::REPLY.to_owned(), true)
    );
    assert!(
        !replay.contains("\"usage\""),
        "no usage chunk asked for: {replay}"
    );
    let mut whole = other.clone();
    whole.as_object_mut().unwrap().remove("stream");
    let resp = f.send(&whole).await;
    assert_eq!(cache_header(&resp).as_deref(), Some("hit"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], upstream::REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], upstream::PROMPT_TOKENS, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], upstream::COMPLETION_TOKENS);
    assert_eq!(f.upstream.calls(), 2);
    assert_eq!(counter(f.gw.dp(), "modelgate_cache_hits_total").await, 4);
}

/// The usage chunk of a streamed hit follows the current client's
/// `stream_options.include_usage`, whichever client's answer was stored.
#[tokio::test]
async fn a_streamed_hit_carries_the_usage_chunk_only_when_this_client_asks_for_it() {
    let f = cached_fixture().await;
    let usage_chunks = |sse: &str| {
        sse.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .filter(|c| c["usage"].is_object())
            .collect::<Vec<_>>()
    };
    let mut with = ask("usage, please");
    with["stream"] = json!(true);
    with["stream_options"] = json!({"include_usage": true});
    let mut without = with.clone();
    without.as_object_mut().unwrap().remove("stream_options");
    // Stored from a client that asked for usage.
    let live = f.send(&with).await.text().await.unwrap();
    assert_eq!(usage_chunks(&live).len(), 1, "{live}");
    stored(f.gw.dp(), 1).await;
    let resp = f.send(&without).await;
    assert_eq!(cache_header(&resp).as_deref(), Some("hit"));
    let sse = resp.text().await.unwrap();
    assert!(usage_chunks(&sse).is_empty(), "not asked for: {sse}");
    assert_eq!(chat_stream_text(&sse), (upstream::REPLY.to_owned(), true));
    let resp = f.send(&with).await;
    assert_eq!(cache_header(&resp).as_deref(), Some("hit"));
    let sse = resp.text().await.unwrap();
    let chunks = usage_chunks(&sse);
    assert_eq!(chunks.len(), 1, "{sse}");
    assert_eq!(chunks[0]["choices"], json!([]));
    assert_eq!(chunks[0]["usage"], usage_chunks(&live)[0]["usage"]);
    assert_eq!(f.upstream.calls(), 1);

    // Stored from a client that did not ask: a client that asks still gets the usage chunk,
    // with the tokens the provider reported.
    let mut with = ask("usage, later");
    with["stream"] = json!(true);
    let mut without = with.clone();
    with["stream_options"] = json!({"include_usage": true});
    without["stream_options"] = json!({"include_usage": false});
    let live = f.send(&without).await.text().await.unwrap();
    assert!(usage_chunks(&live).is_empty(), "{live}");
    stored(f.gw.dp(), 2).await;
    let sse = f.send(&with).await.text().await.unwrap();
    let chunks = usage_chunks(&sse);
    assert_eq!(chunks.len(), 1, "{sse}");
    assert_eq!(chunks[0]["usage"]["prompt_tokens"], upstream::PROMPT_TOKENS);
    assert_eq!(
        chunks[0]["usage"]["completion_tokens"],
        upstream::COMPLETION_TOKENS
    );
    assert_eq!(f.upstream.calls(), 2);
}

#[tokio::test]
async fn reordered_fields_and_other_whitespace_hit_the_same_answer() {
    let f = cached_fixture().await;
    let resp = f.send(&ask("canonical please")).await;
    assert_eq!(cache_header(&resp).as_deref(), Some("miss"));
    stored(f.gw.dp(), 1).await;
    let raw = "{\n  \"messages\" : [ { \"content\" : \"canonical please\" ,\"role\":\"user\" } ],\n\t\"temperature\": 0.0 ,  \"model\":\"cached\"\n}";
    let resp =
        f.gw.http
            .post(format!("{}/chat/completions", f.gw.base_url()))
            .bearer_auth(&f.key)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(cache_header(&resp).as_deref(), Some("hit"));
    assert_eq!(f.upstream.calls(), 1);
    // A different message is another request.
    let resp = f.send(&ask("canonical please!")).await;
    assert_eq!(cache_header(&resp).as_deref(), Some("miss"));
    assert_eq!(f.upstream.calls(), 2);
}

#[tokio::test]
async fn another_team_never_receives_a_teams_cached_answer() {
    let f = cached_fixture().await;
    let body = ask("team secret plan");
    f.send(&body).await;
    stored(f.gw.dp(), 1).await;
    // A second key of the same team shares the answer.
    let sibling =
        f.gw.create(
            "/keys",
            json!({"team_id": f.team_id, "name": "sibling", "environment": "prod"}),
        )
        .await;
    f.gw.wait_for_config().await;
    let resp = post(
        &f.gw.http,
        f.gw.dp(),
        sibling["key_secret"].as_str().unwrap(),
        &body,
    )
    .await;
    assert_eq!(cache_header(&resp).as_deref(), Some("hit"));
    assert_eq!(f.upstream.calls(), 1);
    // Another team's key misses, and goes upstream.
    let team = f.gw.create("/teams", json!({"name": "other-team"})).await;
    let other =
        f.gw.create(
            "/keys",
            json!({"team_id": team["id"], "name": "other", "environment": "prod"}),
        )
        .await;
    f.gw.wait_for_config().await;
    let resp = post(
        &f.gw.http,
        f.gw.dp(),
        other["key_secret"].as_str().unwrap(),
        &body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(cache_header(&resp).as_deref(), Some("miss"));
    assert_eq!(f.upstream.calls(), 2);
}

#[tokio::test]
async fn a_non_deterministic_request_is_not_cached_unless_the_route_allows_it() {
    let f = cached_fixture().await;
    let sampled = json!({"model": "cached", "messages": [{"role": "user", "content": "a poem"}]});
    for _ in 0..2 {
        let resp = f.send(&sampled).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(cache_header(&resp).as_deref(), Some("uncacheable"));
    }
    assert_eq!(f.upstream.calls(), 2);
    // A seed makes it deterministic.
    let seeded = json!({"model": "cached", "seed": 42, "temperature": 0.7,
        "messages": [{"role": "user", "content": "a poem"}]});
    f.send(&seeded).await;
    stored(f.gw.dp(), 1).await;
    assert_eq!(cache_header(&f.send(&seeded).await).as_deref(), Some("hit"));
    assert_eq!(f.upstream.calls(), 3);

    // A route that allows non-deterministic caching caches the sampled request too.
    let lenient = fixture(
        json!({"enabled": true, "allow_non_deterministic": true}),
        cache_settings(&unique_prefix()).await,
    )
    .await;
    lenient.send(&sampled).await;
    stored(lenient.gw.dp(), 1).await;
    assert_eq!(
        cache_header(&lenient.send(&sampled).await).as_deref(),
        Some("hit")
    );
    assert_eq!(lenient.upstream.calls(), 1);
}

#[tokio::test]
async fn bypass_skips_the_cache_and_refresh_replaces_the_answer() {
    let f = cached_fixture().await;
    let body = ask("fresh or not");
    f.send(&body).await;
    stored(f.gw.dp(), 1).await;
    // bypass: upstream, nothing stored.
    let resp = f.send_with(&body, "bypass").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(cache_header(&resp).as_deref(), Some("bypass"));
    assert_eq!(f.upstream.calls(), 2);
    // refresh: upstream, and the fresh answer is stored for the next request.
    let resp = f.send_with(&body, "REFRESH").await;
    assert_eq!(cache_header(&resp).as_deref(), Some("refresh"));
    assert_eq!(f.upstream.calls(), 3);
    stored(f.gw.dp(), 2).await;
    assert_eq!(cache_header(&f.send(&body).await).as_deref(), Some("hit"));
    assert_eq!(f.upstream.calls(), 3);
    // Anything else is a client error, in OpenAI's format, with no upstream call.
    let resp = f.send_with(&body, "sometimes").await;
    assert_eq!(resp.status(), 400);
    let rid = request_id(&resp);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "x-modelgate-cache", "{err}");
    assert_eq!(f.upstream.calls(), 3);
    let row = f.gw.usage_row(&rid).await;
    assert_eq!(row["status"], 400);

    // A key that opts out never reads nor writes; one set to refresh always goes upstream.
    let (status, _) =
        f.gw.admin(
            reqwest::Method::PATCH,
            &format!("/keys/{}", f.key_id),
            Some(json!({"cache": "off"})),
        )
        .await;
    assert_eq!(status, 200);
    f.gw.wait_for_config().await;
    let resp = f.send(&body).await;
    assert_eq!(cache_header(&resp).as_deref(), Some("bypass"));
    assert_eq!(f.upstream.calls(), 4);
    let (status, err) =
        f.gw.admin(
            reqwest::Method::PATCH,
            &format!("/keys/{}", f.key_id),
            Some(json!({"cache": "never"})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err.to_string().contains("cache"), "{err}");
}

#[tokio::test]
async fn a_hits_usage_event_is_flagged_with_the_original_tokens_and_costs_nothing() {
    let f = cached_fixture().await;
    let body = ask("meter me");
    let miss = f.send(&body).await;
    let miss_row = f.gw.usage_row(&request_id(&miss)).await;
    stored(f.gw.dp(), 1).await;
    let hit = f.send(&body).await;
    assert_eq!(cache_header(&hit).as_deref(), Some("hit"));
    let row = f.gw.usage_row(&request_id(&hit)).await;
    assert_eq!(miss_row["cache_hit"], false);
    assert!(miss_row["cost_micros"].as_i64().unwrap() > 0, "{miss_row}");
    assert_eq!(row["cache_hit"], true, "{row}");
    assert_eq!(row["status"], 200);
    assert_eq!(row["input_tokens"], upstream::PROMPT_TOKENS);
    assert_eq!(row["output_tokens"], upstream::COMPLETION_TOKENS);
    assert_eq!(row["cost_micros"], 0, "a hit is not upstream spend");
    assert_eq!(row["provider_id"], "", "no provider served it");
    assert_eq!(row["served_model"], "gpt-cache-1");
    assert!(row["attempts"].as_array().unwrap().is_empty(), "{row}");
    let _ = &f.provider_id;

    // A route that charges a fraction of the original cost for a hit.
    let paid = fixture(
        json!({"enabled": true, "hit_cost_ppm": 250_000}),
        cache_settings(&unique_prefix()).await,
    )
    .await;
    let miss = paid.send(&body).await;
    let original = paid.gw.usage_row(&request_id(&miss)).await["cost_micros"]
        .as_i64()
        .unwrap();
    stored(paid.gw.dp(), 1).await;
    let hit = paid.send(&body).await;
    let row = paid.gw.usage_row(&request_id(&hit)).await;
    assert_eq!(row["cache_hit"], true);
    assert_eq!(
        row["cost_micros"].as_i64().unwrap(),
        original * 250_000 / 1_000_000
    );
}

#[tokio::test]
async fn a_rate_limit_still_refuses_requests_the_cache_could_answer() {
    let f = cached_fixture().await;
    crate::rate_limits::fresh_window(20).await;
    crate::rate_limits::limit(&f.gw, json!({"scope": {"key_id": f.key_id}, "rpm": 2})).await;
    let body = ask("limited");
    assert_eq!(f.send(&body).await.status(), 200);
    stored(f.gw.dp(), 1).await;
    let hit = f.send(&body).await;
    assert_eq!(cache_header(&hit).as_deref(), Some("hit"));
    let refused = f.send(&body).await;
    assert_eq!(refused.status(), 429);
    let err: Value = refused.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limit_exceeded", "{err}");
    assert_eq!(f.upstream.calls(), 1);
}

#[tokio::test]
async fn with_redis_unreachable_the_node_serves_uncached_and_counts_it() {
    // Nothing listens on this port: bound, then released.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let settings = CacheSettings {
        redis_url: Some(format!("redis://{addr}")),
        redis_prefix: unique_prefix(),
        ..CacheSettings::default()
    };
    let f = fixture(json!({"enabled": true}), settings).await;
    for prompt in ["no redis 1", "no redis 2", "no redis 3"] {
        let resp = f.send(&ask(prompt)).await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], upstream::REPLY);
    }
    assert_eq!(f.upstream.calls(), 3);
    let errors = counter(f.gw.dp(), "modelgate_cache_store_errors_total").await;
    assert!(errors >= 1, "store errors counted: {errors}");
    // The node's own layer still answers what it stored.
    stored(f.gw.dp(), 1).await;
    let resp = f.send(&ask("no redis 1")).await;
    assert_eq!(cache_header(&resp).as_deref(), Some("hit"));
    assert_eq!(f.upstream.calls(), 3);
}

#[tokio::test]
async fn two_data_planes_share_answers_through_redis() {
    let prefix = unique_prefix();
    let f = fixture(json!({"enabled": true}), cache_settings(&prefix).await).await;
    let other = data_plane(
        &f.gw,
        &temp_dir("dp-cache-2"),
        cache_settings(&prefix).await,
    )
    .await;
    let body = ask("shared across the fleet");
    let resp = post(&f.gw.http, f.gw.dp(), &f.key, &body).await;
    assert_eq!(cache_header(&resp).as_deref(), Some("miss"));
    let first: Value = resp.json().await.unwrap();
    stored(f.gw.dp(), 1).await;
    // Stored in Redis by the first node (its write runs after the local one).
    let mut redis = entry_in_redis(&prefix).await;
    let resp = post(&f.gw.http, &other, &f.key, &body).await;
    assert_eq!(cache_header(&resp).as_deref(), Some("hit"));
    assert_eq!(resp.json::<Value>().await.unwrap(), first);
    assert_eq!(f.upstream.calls(), 1);
    // What Redis holds carries no secret: neither the gateway key nor the provider credential.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    for k in keys {
        let v: Vec<u8> = redis::cmd("GET")
            .arg(&k)
            .query_async(&mut redis)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&v);
        assert!(!text.contains(&f.key) && !text.contains("sk-upstream-secret-1234"));
    }
    other.shutdown().await;
}

#[tokio::test]
async fn an_answer_over_the_entry_bound_is_not_stored() {
    let settings = CacheSettings {
        max_entry_bytes: 200,
        ..cache_settings(&unique_prefix()).await
    };
    let f = fixture(json!({"enabled": true}), settings).await;
    let body = ask("too big to keep");
    for _ in 0..2 {
        let resp = f.send(&body).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(cache_header(&resp).as_deref(), Some("miss"));
    }
    assert_eq!(f.upstream.calls(), 2);
    assert_eq!(
        counter(f.gw.dp(), "modelgate_cache_too_large_total").await,
        2
    );
    assert_eq!(counter(f.gw.dp(), "modelgate_cache_stored_total").await, 0);
}

#[tokio::test]
async fn route_cache_policy_is_validated_naming_the_field() {
    let f = cached_fixture().await;
    for (cache, field) in [
        (json!({"enabled": true, "ttl_s": 0}), "policy.cache.ttl_s"),
        (
            json!({"enabled": true, "partition": "org"}),
            "policy.cache.partition",
        ),
        (
            json!({"enabled": true, "hit_cost_ppm": 1_000_001}),
            "policy.cache.hit_cost_ppm",
        ),
        (json!({"enabled": true, "colour": "red"}), "colour"),
    ] {
        let (status, err) = f
            .gw
            .admin(
                reqwest::Method::POST,
                "/routes",
                Some(json!({"alias": "bad", "deployments": [{"provider_id": f.provider_id, "model": "gpt-cache-1"}],
                    "policy": {"cache": cache}})),
            )
            .await;
        assert_eq!(status, 400, "{err}");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    let (status, routes) = f.gw.admin(reqwest::Method::GET, "/routes", None).await;
    assert_eq!(status, 200, "{routes}");
    let route = routes["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alias"] == "cached")
        .unwrap();
    assert_eq!(route["policy"]["cache"]["enabled"], true, "{route}");
}

/// A gateway whose data plane caches, with a cached alias per surface, each routed to a mock
/// upstream of that provider's wire format: `chat-c` (OpenAI chat), `an-c` (Anthropic), `gm-c`
/// (Gemini), `resp-c` (Responses) and `embed-c` (embeddings).
struct Surfaces {
    anthropic: AnthropicUpstream,
    gemini: GeminiUpstream,
    openai: OpenAiUpstream,
    chat: MockUpstream,
    gw: Gateway,
    key: String,
}

async fn surfaces() -> Surfaces {
    let anthropic = AnthropicUpstream::start().await;
    let gemini = GeminiUpstream::start().await;
    let openai = OpenAiUpstream::start().await;
    let chat = MockUpstream::start().await;
    let mut gw = Gateway::start().await;
    gw.stop_data_plane().await;
    let dir = gw.dp_dir.clone();
    let dp = data_plane(&gw, &dir, cache_settings(&unique_prefix()).await).await;
    gw.dp = Some(dp);
    let team = gw.create("/teams", json!({"name": "surfaces"})).await;
    let key = gw
        .create(
            "/keys",
            json!({"team_id": team["id"], "name": "app", "environment": "prod"}),
        )
        .await;
    let key = key["key_secret"].as_str().unwrap().to_owned();
    let an = gw
        .create("/providers", json!({"name": "an", "kind": "anthropic", "base_url": anthropic.base_url(), "credential": "sk-ant-1"}))
        .await;
    let gm = gw
        .create("/providers", json!({"name": "gm", "kind": "gemini", "base_url": gemini.base_url(), "credential": "AIza-1"}))
        .await;
    let oa = gw
        .create("/providers", json!({"name": "oa", "kind": "openai-compatible", "base_url": openai.base_url(), "credential": "sk-oa-1"}))
        .await;
    let ch = gw
        .create("/providers", json!({"name": "ch", "kind": "openai-compatible", "base_url": chat.base_url(), "credential": "sk-ch-1"}))
        .await;
    for model in ["chat-c", "claude-c", "gemini-c", "resp-c", "embed-c"] {
        gw.create("/models", json!({"model": model, "input_micros_per_mtok": 1_000_000, "output_micros_per_mtok": 2_000_000}))
            .await;
    }
    for (alias, provider, model) in [
        ("chat-c", &ch, "chat-c"),
        ("an-c", &an, "claude-c"),
        ("gm-c", &gm, "gemini-c"),
        ("resp-c", &oa, "resp-c"),
        ("embed-c", &oa, "embed-c"),
    ] {
        gw.create(
            "/routes",
            json!({"alias": alias,
            "deployments": [{"provider_id": provider["id"], "model": model}],
            "policy": {"cache": {"enabled": true}}}),
        )
        .await;
    }
    gw.wait_for_config().await;
    Surfaces {
        anthropic,
        gemini,
        openai,
        chat,
        gw,
        key,
    }
}

impl Surfaces {
    /// A request to `path` (Anthropic's paths with Anthropic's key header).
    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        let req = self
            .gw
            .http
            .post(format!("http://{}{path}", self.gw.dp().addr))
            .json(body);
        if path == "/v1/messages" {
            req.header("x-api-key", &self.key)
                .header("anthropic-version", "2023-06-01")
        } else {
            req.bearer_auth(&self.key)
        }
    }

    /// Sends, and returns the cache header and the body's text.
    async fn send(
        &self,
        path: &str,
        body: &Value,
        cache: Option<&str>,
    ) -> (Option<String>, String) {
        let mut req = self.post(path, body);
        if let Some(c) = cache {
            req = req.header("x-modelgate-cache", c);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        (cache_header(&resp), resp.text().await.unwrap())
    }

    /// Every upstream's calls so far, together.
    fn calls(&self) -> usize {
        self.anthropic.calls() + self.gemini.calls() + self.openai.calls() + self.chat.calls()
    }
}

/// Anthropic Messages, Gemini generateContent, Responses and embeddings: a second identical
/// request hits, and a streaming client of each streaming surface gets the surface's events.
#[tokio::test]
async fn every_cached_surface_answers_a_repeat_from_the_cache() {
    let s = surfaces().await;
    let (anthropic, gemini, openai, gw) = (&s.anthropic, &s.gemini, &s.openai, &s.gw);
    let mut n_stored = 0;
    let send = |path: &str, body: &Value, _anthropic_key: bool| s.post(path, body);

    // Anthropic Messages.
    let body = json!({"model": "an-c", "max_tokens": 50, "temperature": 0,
        "messages": [{"role": "user", "content": "hi"}]});
    let miss = send("/v1/messages", &body, true).send().await.unwrap();
    assert_eq!(cache_header(&miss).as_deref(), Some("miss"));
    let first: Value = miss.json().await.unwrap();
    n_stored += 1;
    stored(gw.dp(), n_stored).await;
    let hit = send("/v1/messages", &body, true).send().await.unwrap();
    assert_eq!(cache_header(&hit).as_deref(), Some("hit"));
    assert_eq!(hit.json::<Value>().await.unwrap(), first);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let hit = send("/v1/messages", &streamed, true).send().await.unwrap();
    assert_eq!(cache_header(&hit).as_deref(), Some("hit"));
    let sse = hit.text().await.unwrap();
    assert!(
        sse.contains("event: message_start") && sse.contains("event: message_stop"),
        "{sse}"
    );
    assert!(sse.contains(anthropic_upstream::REPLY), "{sse}");
    assert_eq!(anthropic.calls(), 1);

    // Gemini generateContent, and its stream (SSE and JSON array).
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"temperature": 0}});
    let miss = send("/v1beta/models/gm-c:generateContent", &body, false)
        .send()
        .await
        .unwrap();
    assert_eq!(cache_header(&miss).as_deref(), Some("miss"));
    let first: Value = miss.json().await.unwrap();
    n_stored += 1;
    stored(gw.dp(), n_stored).await;
    let hit = send("/v1beta/models/gm-c:generateContent", &body, false)
        .send()
        .await
        .unwrap();
    assert_eq!(cache_header(&hit).as_deref(), Some("hit"));
    assert_eq!(hit.json::<Value>().await.unwrap(), first);
    let hit = send(
        "/v1beta/models/gm-c:streamGenerateContent?alt=sse",
        &body,
        false,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(cache_header(&hit).as_deref(), Some("hit"));
    let sse = hit.text().await.unwrap();
    let data = sse.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    assert_eq!(serde_json::from_str::<Value>(data).unwrap(), first);
    let hit = send("/v1beta/models/gm-c:streamGenerateContent", &body, false)
        .send()
        .await
        .unwrap();
    assert_eq!(cache_header(&hit).as_deref(), Some("hit"));
    assert_eq!(hit.json::<Value>().await.unwrap(), json!([first]));
    assert!(first.to_string().contains(gemini_upstream::REPLY));
    assert_eq!(gemini.calls(), 1);

    // Responses, and its stream.
    let body = json!({"model": "resp-c", "input": "hi", "temperature": 0});
    let miss = send("/v1/responses", &body, false).send().await.unwrap();
    assert_eq!(cache_header(&miss).as_deref(), Some("miss"));
    let first: Value = miss.json().await.unwrap();
    n_stored += 1;
    stored(gw.dp(), n_stored).await;
    let hit = send("/v1/responses", &body, false).send().await.unwrap();
    assert_eq!(cache_header(&hit).as_deref(), Some("hit"));
    assert_eq!(hit.json::<Value>().await.unwrap(), first);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let hit = send("/v1/responses", &streamed, false)
        .send()
        .await
        .unwrap();
    assert_eq!(cache_header(&hit).as_deref(), Some("hit"));
    let sse = hit.text().await.unwrap();
    let completed = sse
        .split("\n\n")
        .find(|e| e.starts_with("event: response.completed"))
        .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(completed).unwrap()["response"],
        first
    );
    assert!(sse.contains(openai_upstream::RESP_TEXT), "{sse}");

    // Embeddings: always cacheable, no temperature needed.
    let body = json!({"model": "embed-c", "input": "embed me"});
    let miss = send("/v1/embeddings", &body, false).send().await.unwrap();
    assert_eq!(cache_header(&miss).as_deref(), Some("miss"));
    let first: Value = miss.json().await.unwrap();
    n_stored += 1;
    stored(gw.dp(), n_stored).await;
    let hit = send("/v1/embeddings", &body, false).send().await.unwrap();
    assert_eq!(cache_header(&hit).as_deref(), Some("hit"));
    assert_eq!(hit.json::<Value>().await.unwrap(), first);
    assert_eq!(openai.calls(), 2, "one responses call, one embeddings call");
}

/// Redis cut mid-run (a TCP proxy in front of it drops every connection and refuses new ones):
/// both nodes keep answering 200, count the store errors, and share answers again once it is
/// back.
#[tokio::test]
async fn a_redis_outage_mid_run_serves_uncached_and_sharing_resumes_after_it() {
    let proxy = crate::support::tcp_proxy::TcpProxy::start(redis_addr().await).await;
    let prefix = unique_prefix();
    let via_proxy = || CacheSettings {
        redis_url: Some(format!("redis://{}", proxy.addr)),
        redis_prefix: prefix.clone(),
        ..CacheSettings::default()
    };
    let f = fixture(json!({"enabled": true}), via_proxy()).await;
    let other = data_plane(&f.gw, &temp_dir("dp-cache-3"), via_proxy()).await;
    let (one, two) = (f.gw.dp(), &other);

    // Shared through Redis while it is there.
    let body = ask("before the outage");
    assert_eq!(post(&f.gw.http, one, &f.key, &body).await.status(), 200);
    stored(one, 1).await;
    let shared = eventually(
        Duration::from_secs(10),
        "a hit on the other node",
        || async {
            let resp = post(&f.gw.http, two, &f.key, &body).await;
            (cache_header(&resp).as_deref() == Some("hit")).then_some(())
        },
    );
    shared.await;
    let calls_before = f.upstream.calls();

    proxy.go_down();
    for (i, node) in [one, two, one, two].into_iter().enumerate() {
        let resp = post(
            &f.gw.http,
            node,
            &f.key,
            &ask(&format!("during the outage {i}")),
        )
        .await;
        assert_eq!(resp.status(), 200, "the node serves while Redis is away");
        assert_eq!(cache_header(&resp).as_deref(), Some("miss"));
    }
    assert_eq!(f.upstream.calls(), calls_before + 4);
    for node in [one, two] {
        eventually(Duration::from_secs(10), "store errors counted", || async {
            (counter(node, "modelgate_cache_store_errors_total").await > 0).then_some(())
        })
        .await;
    }

    proxy.come_back();
    // Sharing resumes: an answer one node stores reaches the other through Redis again.
    let mut round = 0;
    eventually(Duration::from_secs(20), "sharing to resume", || {
        round += 1;
        let body = ask(&format!("after the outage {round}"));
        let http = f.gw.http.clone();
        let key = f.key.clone();
        async move {
            let n = counter(one, "modelgate_cache_stored_total").await;
            assert_eq!(post(&http, one, &key, &body).await.status(), 200);
            stored(one, n + 1).await;
            let resp = post(&http, two, &key, &body).await;
            assert_eq!(resp.status(), 200);
            (cache_header(&resp).as_deref() == Some("hit")).then_some(())
        }
    })
    .await;
    other.shutdown().await;
}

/// What a client reads from a stream of `surface`, gathered independently of the gateway's
/// code: the text, the tool call's name and arguments, the stop reason and the usage; `None`
/// if the stream does not end as that surface's stream ends.
fn stream_digest(surface: &str, sse: &str) -> Option<Value> {
    let events: Vec<Value> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let (mut text, mut args, mut tool, mut stop, mut usage) = (
        String::new(),
        String::new(),
        Value::Null,
        Value::Null,
        Value::Null,
    );
    match surface {
        "chat" => {
            if !sse.trim_end().ends_with("data: [DONE]") {
                return None;
            }
            for e in &events {
                assert_eq!(e["object"], "chat.completion.chunk", "{e}");
                let c = &e["choices"][0];
                text += c["delta"]["content"].as_str().unwrap_or("");
                let call = &c["delta"]["tool_calls"][0]["function"];
                args += call["arguments"].as_str().unwrap_or("");
                if call["name"].is_string() {
                    tool = call["name"].clone();
                }
                if !c["finish_reason"].is_null() {
                    stop = c["finish_reason"].clone();
                }
                if e["usage"].is_object() {
                    usage = e["usage"].clone();
                }
            }
        }
        "messages" => {
            let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
            if types.first() != Some(&"message_start") || types.last() != Some(&"message_stop") {
                return None;
            }
            let mut input = Value::Null;
            for e in &events {
                match e["type"].as_str().unwrap() {
                    "message_start" => input = e["message"]["usage"]["input_tokens"].clone(),
                    "content_block_start" if e["content_block"]["type"] == "tool_use" => {
                        tool = e["content_block"]["name"].clone();
                    }
                    "content_block_delta" => {
                        text += e["delta"]["text"].as_str().unwrap_or("");
                        args += e["delta"]["partial_json"].as_str().unwrap_or("");
                    }
                    "message_delta" => {
                        stop = e["delta"]["stop_reason"].clone();
                        usage = json!({"input": input, "output": e["usage"]["output_tokens"]});
                    }
                    _ => {}
                }
            }
        }
        "gemini" => {
            for e in &events {
                for part in e["candidates"][0]["content"]["parts"].as_array().unwrap() {
                    text += part["text"].as_str().unwrap_or("");
                    if part["functionCall"].is_object() {
                        tool = part["functionCall"]["name"].clone();
                        args += &part["functionCall"]["args"].to_string();
                    }
                }
                if e["candidates"][0]["finishReason"].is_string() {
                    stop = e["candidates"][0]["finishReason"].clone();
                }
                usage = e["usageMetadata"].clone();
            }
            stop.as_str()?;
        }
        _ => {
            let completed = events.iter().find(|e| e["type"] == "response.completed")?;
            return Some(completed["response"].clone());
        }
    }
    let args = if args.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&args).unwrap()
    };
    Some(json!({"text": text, "tool": tool, "arguments": args, "stop": stop, "usage": usage}))
}

/// A surface (as `stream_digest` names it), its whole and streaming paths, a request, and the
/// change that makes the provider's whole answer the one its stream spells.
type SurfaceCase = (
    &'static str,
    &'static str,
    &'static str,
    Value,
    fn(&mut Value),
);

/// One cached answer serves both kinds of client on every surface. An answer stored from a
/// stream answers a non-streaming client with the whole answer the provider gives that request
/// (but for the identifiers the mock's stream spells differently), and a streaming client with
/// the same content; an answer stored whole answers a streaming client with what a live stream
/// of it carries. No hit makes an upstream call.
#[tokio::test]
async fn one_cached_answer_serves_streaming_and_whole_clients_on_every_surface() {
    let s = surfaces().await;
    let weather = json!({"type": "object", "properties": {"city": {"type": "string"},
        "unit": {"type": "string"}}});
    let cases: Vec<SurfaceCase> = vec![
        (
            "chat",
            "/v1/chat/completions",
            "/v1/chat/completions",
            json!({"model": "chat-c", "temperature": 0,
                "messages": [{"role": "user", "content": "weather in Paris?"}],
                "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": weather}}]}),
            |v: &mut Value| {
                v["id"] = json!("chatcmpl-upstream-2");
                v["choices"][0]["message"]["tool_calls"][0]["id"] = json!("call_mock_2");
                v["choices"][0]["logprobs"] = Value::Null;
            },
        ),
        (
            "messages",
            "/v1/messages",
            "/v1/messages",
            json!({"model": "an-c", "max_tokens": 50, "temperature": 0,
                "messages": [{"role": "user", "content": "weather in Paris?"}],
                "tools": [{"name": "get_weather", "input_schema": weather}]}),
            |v: &mut Value| {
                v["id"] = json!("msg_mock_2");
                v["content"][1]["id"] = json!("toolu_mock_2");
            },
        ),
        (
            "gemini",
            "/v1beta/models/gm-c:generateContent",
            "/v1beta/models/gm-c:streamGenerateContent?alt=sse",
            json!({"contents": [{"role": "user", "parts": [{"text": "hello?"}]}],
                "generationConfig": {"temperature": 0}}),
            |v: &mut Value| {
                v["responseId"] = json!("gemini-mock-2");
                v["candidates"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("avgLogprobs");
            },
        ),
        (
            "responses",
            "/v1/responses",
            "/v1/responses",
            json!({"model": "resp-c", "input": "hello?", "temperature": 0}),
            |_: &mut Value| {},
        ),
    ];
    let dp = s.gw.dp();
    for (surface, whole_path, stream_path, body, patch) in cases {
        let streamed = |mut b: Value| {
            if surface != "gemini" {
                b["stream"] = json!(true);
            }
            b
        };
        let other = |mut b: Value| {
            let t = b
                .to_string()
                .replace("Paris", "Lyon")
                .replace("hello", "hi");
            b = serde_json::from_str(&t).unwrap();
            b
        };
        // What the provider answers, whole and streamed (bypassing the cache).
        let (_, provider_whole) = s.send(whole_path, &body, Some("bypass")).await;
        let mut expected: Value = serde_json::from_str(&provider_whole).unwrap();
        patch(&mut expected);
        let (_, provider_stream) = s
            .send(stream_path, &streamed(body.clone()), Some("bypass"))
            .await;
        let live = stream_digest(surface, &provider_stream).expect(surface);

        // Stored from a stream.
        let calls = s.calls();
        let n = counter(dp, "modelgate_cache_stored_total").await;
        let (c, first) = s.send(stream_path, &streamed(body.clone()), None).await;
        assert_eq!(c.as_deref(), Some("miss"), "{surface}");
        assert_eq!(
            stream_digest(surface, &first).as_ref(),
            Some(&live),
            "{surface}"
        );
        stored(dp, n + 1).await;
        let (c, text) = s.send(whole_path, &body, None).await;
        assert_eq!(c.as_deref(), Some("hit"), "{surface}");
        let got: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            got, expected,
            "{surface}: the whole answer a stream was stored as"
        );
        let (c, again) = s.send(stream_path, &streamed(body.clone()), None).await;
        assert_eq!(c.as_deref(), Some("hit"), "{surface}");
        assert_eq!(
            stream_digest(surface, &again).as_ref(),
            Some(&live),
            "{surface}"
        );
        assert_eq!(
            s.calls(),
            calls + 1,
            "{surface}: hits make no upstream call"
        );

        // Stored whole, served as a stream: what a live stream of that answer carries.
        let body = other(body);
        let (_, provider_stream) = s
            .send(stream_path, &streamed(body.clone()), Some("bypass"))
            .await;
        let live = stream_digest(surface, &provider_stream).expect(surface);
        let calls = s.calls();
        let n = counter(dp, "modelgate_cache_stored_total").await;
        let (c, whole) = s.send(whole_path, &body, None).await;
        assert_eq!(c.as_deref(), Some("miss"), "{surface}");
        stored(dp, n + 1).await;
        let (c, sse) = s.send(stream_path, &streamed(body.clone()), None).await;
        assert_eq!(c.as_deref(), Some("hit"), "{surface}");
        let hit = stream_digest(surface, &sse).expect(surface);
        assert_eq!(hit, live, "{surface}: {sse}");
        if surface == "responses" {
            assert_eq!(hit, serde_json::from_str::<Value>(&whole).unwrap());
        }
        assert_eq!(
            s.calls(),
            calls + 1,
            "{surface}: the hit made no upstream call"
        );
    }
}

/// An invalid `x-modelgate-cache` is refused before admission takes anything: with one request
/// a minute allowed, the refused request leaves that request to the next one.
#[tokio::test]
async fn an_invalid_cache_directive_is_refused_before_any_limit_is_taken() {
    let f = cached_fixture().await;
    crate::rate_limits::fresh_window(20).await;
    crate::rate_limits::limit(&f.gw, json!({"scope": {"key_id": f.key_id}, "rpm": 1})).await;
    let body = ask("a directive");
    let resp = f.send_with(&body, "sometimes").await;
    assert_eq!(resp.status(), 400);
    let rid = request_id(&resp);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "x-modelgate-cache", "{err}");
    assert_eq!(err["error"]["type"], "invalid_request_error", "{err}");
    assert_eq!(f.gw.usage_row(&rid).await["status"], 400);
    let resp = f.send(&body).await;
    assert_eq!(
        resp.status(),
        200,
        "the refused request took no share of the limit"
    );
    assert_eq!(
        f.send(&body).await.status(),
        429,
        "the limit is one a minute"
    );
    assert_eq!(f.upstream.calls(), 1);
}

/// An answer is served for the route's `ttl_s` (here 2 s), then expires from both layers: the
/// next request goes upstream again.
#[tokio::test]
async fn an_answer_expires_after_the_routes_ttl() {
    let f = fixture(
        json!({"enabled": true, "ttl_s": 2}),
        cache_settings(&unique_prefix()).await,
    )
    .await;
    let body = ask("short-lived");
    assert_eq!(cache_header(&f.send(&body).await).as_deref(), Some("miss"));
    stored(f.gw.dp(), 1).await;
    assert_eq!(cache_header(&f.send(&body).await).as_deref(), Some("hit"));
    assert_eq!(f.upstream.calls(), 1);
    eventually(Duration::from_secs(20), "the answer to expire", || async {
        let resp = f.send(&body).await;
        assert_eq!(resp.status(), 200);
        (cache_header(&resp).as_deref() == Some("miss")).then_some(())
    })
    .await;
    assert_eq!(f.upstream.calls(), 2);
}

/// `partition: key` shares an answer only with the key that stored it, `user` with the keys of
/// the same owner, `none` with every key (another team's too).
#[tokio::test]
async fn the_key_user_and_none_partitions_share_answers_as_they_say() {
    let f = cached_fixture().await;
    for (alias, partition) in [("by-key", "key"), ("by-user", "user"), ("shared", "none")] {
        f.gw.create(
            "/routes",
            json!({"alias": alias,
            "deployments": [{"provider_id": f.provider_id, "model": "gpt-cache-1"}],
            "policy": {"cache": {"enabled": true, "partition": partition}}}),
        )
        .await;
    }
    let new_key = |team: String, owner: Option<String>| {
        let gw = &f.gw;
        async move {
            let mut body = json!({"team_id": team, "name": "k", "environment": "prod"});
            if let Some(o) = owner {
                body["owner_user_id"] = json!(o);
            }
            gw.create("/keys", body).await["key_secret"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let mut users = Vec::new();
    for email in ["ada@example.com", "bo@example.com"] {
        let u = f.gw.create("/users", json!({"email": email})).await;
        let id = u["id"].as_str().unwrap().to_owned();
        f.gw.create(
            &format!("/teams/{}/members", f.team_id),
            json!({"user_id": id, "role": "member"}),
        )
        .await;
        users.push(id);
    }
    let sibling = new_key(f.team_id.clone(), None).await;
    let ada_1 = new_key(f.team_id.clone(), Some(users[0].clone())).await;
    let ada_2 = new_key(f.team_id.clone(), Some(users[0].clone())).await;
    let bo = new_key(f.team_id.clone(), Some(users[1].clone())).await;
    let team = f.gw.create("/teams", json!({"name": "elsewhere"})).await;
    let stranger = new_key(team["id"].as_str().unwrap().to_owned(), None).await;
    f.gw.wait_for_config().await;

    /// `store` asks on `alias` (a miss, the `n`th answer stored; a miss below stores too), then
    /// each key asks the
    /// same and is told `want`.
    async fn check(f: &Fixture, n: u64, alias: &str, store: &str, cases: &[(&str, &str)]) {
        let dp = f.gw.dp();
        let mut body = ask("partitioned");
        body["model"] = json!(alias);
        let resp = post(&f.gw.http, dp, store, &body).await;
        assert_eq!(cache_header(&resp).as_deref(), Some("miss"), "{alias}");
        stored(dp, n).await;
        for (key, want) in cases {
            let resp = post(&f.gw.http, dp, key, &body).await;
            assert_eq!(resp.status(), 200);
            assert_eq!(cache_header(&resp).as_deref(), Some(*want), "{alias}");
        }
    }
    check(
        &f,
        1,
        "by-key",
        &f.key,
        &[(&f.key, "hit"), (&sibling, "miss")],
    )
    .await;
    check(&f, 3, "by-user", &ada_1, &[(&ada_2, "hit"), (&bo, "miss")]).await;
    check(&f, 5, "shared", &f.key, &[(&stranger, "hit"), (&bo, "hit")]).await;
    // One upstream call per store, one per miss.
    assert_eq!(f.upstream.calls(), 5);
}

/// A refresh on one node replaces the answer in Redis at once; another node that holds the
/// older answer in memory serves it for at most its local TTL (here 1 s), then the new one.
#[tokio::test]
async fn a_refresh_on_one_node_reaches_another_within_its_local_ttl() {
    let prefix = unique_prefix();
    let base = cache_settings(&prefix).await;
    let settings = || CacheSettings {
        local_ttl: Duration::from_secs(1),
        ..base.clone()
    };
    let f = fixture(json!({"enabled": true}), settings()).await;
    let other = data_plane(&f.gw, &temp_dir("dp-cache-4"), settings()).await;
    let body = ask("refreshed elsewhere");
    let first: Value = f.send(&body).await.json().await.unwrap();
    stored(f.gw.dp(), 1).await;
    entry_in_redis(&prefix).await;
    // The other node reads it from Redis and keeps it in memory.
    let resp = post(&f.gw.http, &other, &f.key, &body).await;
    assert_eq!(cache_header(&resp).as_deref(), Some("hit"));
    assert_eq!(resp.json::<Value>().await.unwrap(), first);
    // The provider's answer changes (it now reports cached and reasoning tokens); a refresh on
    // the first node stores it.
    f.upstream.report_details(3, 2);
    let resp = f.send_with(&body, "refresh").await;
    assert_eq!(cache_header(&resp).as_deref(), Some("refresh"));
    let fresh: Value = resp.json().await.unwrap();
    assert_ne!(fresh, first);
    stored(f.gw.dp(), 2).await;
    eventually(
        Duration::from_secs(10),
        "the fresh answer on the other node",
        || async {
            let resp = post(&f.gw.http, &other, &f.key, &body).await;
            assert_eq!(cache_header(&resp).as_deref(), Some("hit"));
            (resp.json::<Value>().await.unwrap() == fresh).then_some(())
        },
    )
    .await;
    assert_eq!(f.upstream.calls(), 2);
    other.shutdown().await;
}

/// Waits until some entry under `prefix` is in Redis (a node writes Redis after its local
/// layer) and returns the connection that saw it.
async fn entry_in_redis(prefix: &str) -> redis::aio::MultiplexedConnection {
    let redis = redis::Client::open(redis_url().await)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the entry in Redis", || {
        let mut redis = redis.clone();
        let pattern = format!("{prefix}*");
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut redis)
                .await
                .unwrap();
            (!keys.is_empty()).then_some(())
        }
    })
    .await;
    redis
}
