//! The failure ladder through a real data plane and mock upstreams that fail on command: retries
//! on transient failures, the next deployment and tier, approved backup groups, the "never"
//! rules (client errors, streams after their first byte), traffic classes, the cost guardrail,
//! outlier ejection with half-open probing, 429 parking, timeouts and the retry budget.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::upstream::{Behavior, MockUpstream};
use crate::support::{eventually, request_id, Gateway, Provisioned};

/// A provider account for an upstream (or any base URL).
pub(crate) async fn provider(gw: &Gateway, base_url: &str) -> String {
    gw.create(
        "/providers",
        json!({"name": format!("p-{}", uuid::Uuid::now_v7().simple()), "kind": "openai-compatible",
               "base_url": base_url, "credential": "sk-x"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) async fn price(gw: &Gateway, model: &str, input: i64, output: i64) {
    gw.create(
        "/models",
        json!({"model": model, "input_micros_per_mtok": input, "output_micros_per_mtok": output}),
    )
    .await;
}

/// A team and a key allowed every alias.
pub(crate) async fn key(gw: &Gateway) -> Provisioned {
    let team = gw
        .create(
            "/teams",
            json!({"name": format!("t-{}", uuid::Uuid::now_v7().simple())}),
        )
        .await;
    let team_id = team["id"].as_str().unwrap().to_owned();
    let key = gw
        .create("/keys", json!({"team_id": team_id, "name": "k"}))
        .await;
    Provisioned {
        team_id,
        key_id: key["id"].as_str().unwrap().to_owned(),
        key: key["key_secret"].as_str().unwrap().to_owned(),
        provider_id: String::new(),
    }
}

/// Two upstreams: `a` in tier 0 and `b` in tier 1 of the alias `smart`.
async fn two_tiers(policy: Value) -> (Gateway, MockUpstream, MockUpstream, Provisioned) {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gateway::start().await;
    let (pa, pb) = (
        provider(&gw, &a.base_url()).await,
        provider(&gw, &b.base_url()).await,
    );
    price(&gw, "gpt-x", 1_000_000, 2_000_000).await;
    gw.create(
        "/routes",
        json!({"alias": "smart", "policy": policy, "deployments": [
            {"provider_id": pa, "model": "gpt-x", "tier": 0},
            {"provider_id": pb, "model": "gpt-x", "tier": 1}]}),
    )
    .await;
    let k = key(&gw).await;
    gw.wait_for_config().await;
    (gw, a, b, k)
}

fn route(resp: &reqwest::Response) -> String {
    resp.headers()["x-modelgate-route"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_500_is_retried_on_the_same_deployment_then_the_next_tier_serves() {
    let (gw, a, b, k) = two_tiers(json!({"max_retries": 1})).await;
    a.fail_with(Some(500));
    let resp = gw.say_hi(&k.key, "smart").await;
    assert_eq!(resp.status(), 200);
    assert!(route(&resp).ends_with("attempts=3"), "{}", route(&resp));
    let id = request_id(&resp);
    assert_eq!((a.calls(), b.calls()), (2, 1), "one retry on a, then b");
    let row = gw.usage_row(&id).await;
    let statuses: Vec<i64> = row["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![500, 500, 200]);
    assert_eq!(row["fallback_used"], true);
    assert_eq!(row["status"], 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_client_error_from_upstream_is_returned_as_is_with_exactly_one_call() {
    let (gw, a, b, k) = two_tiers(json!({"max_retries": 2})).await;
    a.fail_with(Some(400));
    let resp = gw.say_hi(&k.key, "smart").await;
    assert_eq!(resp.status(), 400);
    assert_eq!((a.calls(), b.calls()), (1, 0), "never retried, never moved");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_refused_connection_moves_to_the_next_deployment() {
    let b = MockUpstream::start().await;
    let gw = Gateway::start().await;
    // Nothing listens on the discard port.
    let dead = provider(&gw, "http://127.0.0.1:9/v1").await;
    let pb = provider(&gw, &b.base_url()).await;
    // Priced: an unpriced group is refused under the default missing_price policy.
    price(&gw, "gpt-x", 1_000_000, 2_000_000).await;
    gw.create(
        "/routes",
        json!({"alias": "smart", "policy": {"max_retries": 0}, "deployments": [
            {"provider_id": dead, "model": "gpt-x", "tier": 0},
            {"provider_id": pb, "model": "gpt-x", "tier": 1}]}),
    )
    .await;
    let k = key(&gw).await;
    gw.wait_for_config().await;
    let resp = gw.say_hi(&k.key, "smart").await;
    assert_eq!(resp.status(), 200);
    assert!(route(&resp).ends_with("attempts=2"));
    assert_eq!(b.calls(), 1);
    gw.shutdown().await;
}

/// `smart` (upstream a) with the approved backup group `backup` (upstream b, model `model`).
async fn with_backup(
    model: &str,
    backup_price: (i64, i64),
) -> (Gateway, MockUpstream, MockUpstream, Provisioned) {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gateway::start().await;
    let (pa, pb) = (
        provider(&gw, &a.base_url()).await,
        provider(&gw, &b.base_url()).await,
    );
    price(&gw, "gpt-x", 1_000_000, 2_000_000).await;
    if model != "gpt-x" {
        price(&gw, model, backup_price.0, backup_price.1).await;
    }
    gw.create(
        "/routes",
        json!({"alias": "backup", "deployments": [{"provider_id": pb, "model": model}]}),
    )
    .await;
    gw.create(
        "/routes",
        json!({"alias": "smart", "fallbacks": ["backup"], "policy": {"max_retries": 0},
               "deployments": [{"provider_id": pa, "model": "gpt-x"}]}),
    )
    .await;
    let k = key(&gw).await;
    gw.wait_for_config().await;
    (gw, a, b, k)
}

#[tokio::test]
async fn an_approved_backup_group_serves_when_every_tier_failed_and_says_so() {
    let (gw, a, b, k) = with_backup("cheap-y", (500_000, 1_000_000)).await;
    a.fail_with(Some(503));
    let resp = gw.say_hi(&k.key, "smart").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-modelgate-fallback"], "backup");
    let row = gw.usage_row(&request_id(&resp)).await;
    assert_eq!(row["served_model"], "cheap-y");
    assert_eq!(row["fallback_used"], true);
    assert_eq!((a.calls(), b.calls()), (1, 1));
    gw.shutdown().await;
}

#[tokio::test]
async fn eval_traffic_never_falls_back_to_another_model() {
    let (gw, a, b, k) = with_backup("cheap-y", (500_000, 1_000_000)).await;
    a.fail_with(Some(503));
    let resp = gw
        .chat(
            &k.key,
            json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .header("x-modelgate-traffic-class", "eval")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("503"),
        "{body}"
    );
    assert_eq!(b.calls(), 0, "no hidden fallback for eval");
    let bad = gw
        .chat(&k.key, json!({"model": "smart", "messages": []}))
        .header("x-modelgate-traffic-class", "vip")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(a.calls(), 1, "an invalid class never reaches upstream");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_cost_guardrail_skips_a_pricier_backup() {
    let (gw, a, b, k) = with_backup("pricey-z", (5_000_000, 9_000_000)).await;
    a.fail_with(Some(503));
    let resp = gw.say_hi(&k.key, "smart").await;
    assert_eq!(resp.status(), 502);
    assert_eq!(b.calls(), 0, "the pricier fallback is skipped");
    gw.shutdown().await;
}

#[tokio::test]
async fn consecutive_failures_eject_a_deployment_until_a_probe_succeeds() {
    let policy = json!({"max_retries": 0, "eject_after": 2, "base_cooldown_ms": 400});
    let (gw, a, b, k) = two_tiers(policy).await;
    a.fail_with(Some(500));
    for _ in 0..2 {
        assert_eq!(gw.say_hi(&k.key, "smart").await.status(), 200);
    }
    assert_eq!(a.calls(), 2);
    for _ in 0..3 {
        assert_eq!(gw.say_hi(&k.key, "smart").await.status(), 200);
    }
    assert_eq!(a.calls(), 2, "ejected: no more traffic to a");
    a.fail_with(None);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let probe = gw.say_hi(&k.key, "smart").await;
    assert_eq!(probe.status(), 200);
    assert!(
        route(&probe).ends_with("attempts=1"),
        "the probe went to a and succeeded"
    );
    assert_eq!(a.calls(), 3);
    assert_eq!(gw.say_hi(&k.key, "smart").await.status(), 200);
    assert_eq!(a.calls(), 4, "back in rotation");
    let b_calls = b.calls();
    assert_eq!(b_calls, 5);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_429_moves_traffic_to_a_sibling_and_parks_the_account_for_its_retry_after() {
    let (gw, a, b, k) = two_tiers(json!({"max_retries": 1})).await;
    a.behave(Behavior::RateLimited(2));
    assert_eq!(gw.say_hi(&k.key, "smart").await.status(), 200);
    assert_eq!(
        (a.calls(), b.calls()),
        (1, 1),
        "no same-deployment retry on 429"
    );
    assert_eq!(gw.say_hi(&k.key, "smart").await.status(), 200);
    assert_eq!(a.calls(), 1, "parked until its retry-after");
    a.behave(Behavior::Normal);
    eventually(
        Duration::from_secs(5),
        "a to take traffic again",
        || async {
            gw.say_hi(&k.key, "smart").await;
            (a.calls() > 1).then_some(())
        },
    )
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn when_every_deployment_is_rate_limited_the_client_gets_the_429_with_retry_after() {
    let (gw, a, b, k) = two_tiers(json!({})).await;
    a.behave(Behavior::RateLimited(7));
    b.behave(Behavior::RateLimited(7));
    let resp = gw.say_hi(&k.key, "smart").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_stream_cut_after_its_first_byte_is_not_retried() {
    let (gw, a, b, k) = two_tiers(json!({"max_retries": 2})).await;
    a.behave(Behavior::TruncatedStream);
    let resp = gw
        .chat(&k.key, json!({"model": "smart", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("Hel"), "{text}");
    assert!(
        text.contains("\"error\""),
        "ends with an error event: {text}"
    );
    assert_eq!((a.calls(), b.calls()), (1, 0));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_slow_first_byte_times_out_and_the_next_tier_serves() {
    let policy = json!({"max_retries": 0, "first_byte_timeout_ms": 300});
    let (gw, a, b, k) = two_tiers(policy).await;
    a.behave(Behavior::SlowFirstByte(3000));
    let resp = gw
        .chat(&k.key, json!({"model": "smart", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    resp.text().await.unwrap();
    assert_eq!(b.calls(), 1);
    let row = gw.usage_row(&id).await;
    assert_eq!(row["attempts"][0]["error_class"], "timeout");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_retry_budget_caps_upstream_calls_during_a_total_outage() {
    // Two retries per deployment and two deployments would be 6 calls a request without a budget.
    let policy = json!({"max_retries": 2, "eject_after": 1000});
    let (gw, a, b, k) = two_tiers(policy).await;
    a.fail_with(Some(500));
    b.fail_with(Some(500));
    let requests = 60;
    for _ in 0..requests {
        assert_eq!(gw.say_hi(&k.key, "smart").await.status(), 502);
    }
    let calls = a.calls() + b.calls();
    // One call per request, plus retries up to 10 + 20% of requests.
    assert!(calls >= requests, "{calls}");
    assert!(
        calls <= requests + 10 + requests / 5,
        "{calls} upstream calls for {requests} requests"
    );
    gw.shutdown().await;
}

/// `smart` over upstreams a and b in one tier, with a policy.
async fn one_tier(
    policy: Value,
    model_a: &str,
    model_b: &str,
) -> (Gateway, MockUpstream, MockUpstream, Provisioned) {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gateway::start().await;
    let (pa, pb) = (
        provider(&gw, &a.base_url()).await,
        provider(&gw, &b.base_url()).await,
    );
    price(&gw, model_a, 3_000_000, 6_000_000).await;
    if model_b != model_a {
        price(&gw, model_b, 1_000_000, 2_000_000).await;
    }
    gw.create(
        "/routes",
        json!({"alias": "smart", "policy": policy, "deployments": [
            {"provider_id": pa, "model": model_a}, {"provider_id": pb, "model": model_b}]}),
    )
    .await;
    let k = key(&gw).await;
    gw.wait_for_config().await;
    (gw, a, b, k)
}

#[tokio::test]
async fn lowest_cost_balancing_sends_every_request_to_the_cheaper_deployment() {
    let (gw, a, b, k) = one_tier(json!({"lb": "lowest_cost"}), "dear", "cheap").await;
    for _ in 0..10 {
        assert_eq!(gw.say_hi(&k.key, "smart").await.status(), 200);
    }
    assert_eq!((a.calls(), b.calls()), (0, 10));
    gw.shutdown().await;
}

#[tokio::test]
async fn lowest_latency_balancing_prefers_the_faster_deployment_once_measured() {
    let (gw, a, b, k) = one_tier(json!({"lb": "lowest_latency"}), "m", "m").await;
    a.behave(Behavior::SlowFirstByte(150));
    for _ in 0..12 {
        assert_eq!(gw.say_hi(&k.key, "smart").await.status(), 200);
    }
    // Each is measured once; after that the fast one takes everything.
    assert_eq!(
        a.calls(),
        1,
        "the slow deployment is used only to measure it"
    );
    assert_eq!(b.calls(), 11);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_keys_data_class_bounds_the_groups_it_may_reach() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gateway::start().await;
    let (pa, pb) = (
        provider(&gw, &a.base_url()).await,
        provider(&gw, &b.base_url()).await,
    );
    // Priced: an unpriced group is refused under the default missing_price policy.
    price(&gw, "m", 1_000_000, 2_000_000).await;
    gw.create(
        "/routes",
        json!({"alias": "public-only", "policy": {"max_data_class": "internal"},
               "deployments": [{"provider_id": pb, "model": "m"}]}),
    )
    .await;
    gw.create(
        "/routes",
        json!({"alias": "smart", "fallbacks": ["public-only"], "policy": {"max_retries": 0},
               "deployments": [{"provider_id": pa, "model": "m"}]}),
    )
    .await;
    let k = key(&gw).await;
    let secret = gw
        .create(
            "/keys",
            json!({"team_id": k.team_id, "name": "secret", "data_class": "confidential"}),
        )
        .await["key_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    gw.wait_for_config().await;
    let direct = gw.say_hi(&secret, "public-only").await;
    assert_eq!(direct.status(), 403);
    let body: Value = direct.json().await.unwrap();
    assert_eq!(body["error"]["code"], "data_class_not_allowed");
    a.fail_with(Some(500));
    assert_eq!(
        gw.say_hi(&secret, "smart").await.status(),
        502,
        "no fallback across the boundary"
    );
    assert_eq!(b.calls(), 0);
    assert_eq!(
        gw.say_hi(&k.key, "smart").await.status(),
        200,
        "an internal key may fall back"
    );
    assert_eq!(b.calls(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn deployment_health_is_exported_as_metrics() {
    let policy = json!({"max_retries": 0, "eject_after": 1, "base_cooldown_ms": 60000});
    let (gw, a, _b, k) = two_tiers(policy).await;
    a.fail_with(Some(500));
    assert_eq!(gw.say_hi(&k.key, "smart").await.status(), 200);
    let text = reqwest::get(format!("http://{}/metrics", gw.dp().metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ejected: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("modelgate_deployment_ejected{"))
        .collect();
    assert_eq!(ejected.len(), 2, "{text}");
    assert_eq!(
        ejected.iter().filter(|l| l.ends_with(" 1")).count(),
        1,
        "{text}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_deployment_at_its_own_rpm_passes_traffic_to_the_next_without_an_upstream_call() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gateway::start().await;
    let (pa, pb) = (
        provider(&gw, &a.base_url()).await,
        provider(&gw, &b.base_url()).await,
    );
    // Priced: an unpriced group is refused under the default missing_price policy.
    price(&gw, "m", 1_000_000, 2_000_000).await;
    gw.create(
        "/routes",
        json!({"alias": "smart", "deployments": [
            {"provider_id": pa, "model": "m", "tier": 0, "rpm": 2},
            {"provider_id": pb, "model": "m", "tier": 1}]}),
    )
    .await;
    let k = key(&gw).await;
    gw.wait_for_config().await;
    for _ in 0..3 {
        assert_eq!(gw.say_hi(&k.key, "smart").await.status(), 200);
    }
    assert_eq!(
        (a.calls(), b.calls()),
        (2, 1),
        "a's bucket holds 2 a minute"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn when_every_deployment_is_at_its_limit_the_request_fails_closed_with_503() {
    let a = MockUpstream::start().await;
    let gw = Gateway::start().await;
    let pa = provider(&gw, &a.base_url()).await;
    // Priced: an unpriced group is refused under the default missing_price policy.
    price(&gw, "m", 1_000_000, 2_000_000).await;
    gw.create(
        "/routes",
        json!({"alias": "smart", "deployments": [{"provider_id": pa, "model": "m", "rpm": 1}]}),
    )
    .await;
    let k = key(&gw).await;
    gw.wait_for_config().await;
    assert_eq!(gw.say_hi(&k.key, "smart").await.status(), 200);
    let resp = gw.say_hi(&k.key, "smart").await;
    assert_eq!(resp.status(), 503);
    let id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_healthy_deployment");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deployment_limit"),
        "{body}"
    );
    assert_eq!(a.calls(), 1);
    let row = gw.usage_row(&id).await;
    assert_eq!(row["status"], 503);
    gw.shutdown().await;
}
