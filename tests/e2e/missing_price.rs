//! Missing price and non-estimable cost: the routing group's `missing_price` policy
//! decides — `reject` (the default) refuses in the client's own format with a usage event and
//! no upstream call; `allow_and_flag` serves and flags the usage row.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{request_id, upstream::MockUpstream, Gateway};

struct Fixture {
    upstream: MockUpstream,
    gw: Gateway,
    key: String,
    key_id: String,
}

/// Routes: `free` and `free-ok` to an unpriced model (default policy / allow_and_flag);
/// `capped` to a priced model with a catalog output limit; `open` to a priced model without
/// one (allow_and_flag).
async fn fixture() -> Fixture {
    let upstream = MockUpstream::start().await;
    let gw = Gateway::start().await;
    let team = gw.create("/teams", json!({"name": "pricing-policy"})).await;
    let key = gw
        .create(
            "/keys",
            json!({"team_id": team["id"], "name": "app", "environment": "prod",
                   "allowed_models": ["free", "free-ok", "capped", "open"]}),
        )
        .await;
    let provider = gw
        .create(
            "/providers",
            json!({"name": "up", "kind": "openai-compatible", "base_url": upstream.base_url(),
                   "credential": "sk-upstream-secret-1234"}),
        )
        .await;
    let pid = provider["id"].as_str().unwrap();
    gw.create(
        "/models",
        json!({"model": "capped-1", "input_micros_per_mtok": 1_000_000, "output_micros_per_mtok": 2_000_000, "max_output_tokens": 20}),
    )
    .await;
    gw.create(
        "/models",
        json!({"model": "open-1", "input_micros_per_mtok": 1_000_000, "output_micros_per_mtok": 2_000_000}),
    )
    .await;
    let route = |alias: &str, model: &str, policy: Value| json!({"alias": alias, "deployments": [{"provider_id": pid, "model": model}], "policy": policy});
    gw.create("/routes", route("free", "unpriced-1", json!({})))
        .await;
    gw.create(
        "/routes",
        route(
            "free-ok",
            "unpriced-1",
            json!({"missing_price": "allow_and_flag"}),
        ),
    )
    .await;
    gw.create("/routes", route("capped", "capped-1", json!({})))
        .await;
    gw.create(
        "/routes",
        route("open", "open-1", json!({"missing_price": "allow_and_flag"})),
    )
    .await;
    gw.wait_for_config().await;
    Fixture {
        upstream,
        key: key["key_secret"].as_str().unwrap().to_owned(),
        key_id: key["id"].as_str().unwrap().to_owned(),
        gw,
    }
}

fn hi(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn an_unpriced_model_under_reject_is_refused_in_each_surfaces_format_and_never_forwarded() {
    let f = fixture().await;
    let root = f.gw.base_url().trim_end_matches("/v1").to_owned();

    let openai = f.gw.chat(&f.key, hi("free")).send().await.unwrap();
    assert_eq!(openai.status(), 403);
    let openai_id = request_id(&openai);
    let body: Value = openai.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_price_missing", "{body}");
    assert_eq!(body["error"]["param"], "model", "{body}");

    let anthropic = f
        .gw
        .http
        .post(format!("{root}/v1/messages"))
        .header("x-api-key", &f.key)
        .json(&json!({"model": "free", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 403);
    let body: Value = anthropic.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no price"),
        "{body}"
    );

    let gemini =
        f.gw.http
            .post(format!("{root}/v1beta/models/free:generateContent"))
            .header("x-goog-api-key", &f.key)
            .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
            .send()
            .await
            .unwrap();
    assert_eq!(gemini.status(), 403);
    let body: Value = gemini.json().await.unwrap();
    assert_eq!(body["error"]["code"], 403, "{body}");
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED", "{body}");

    assert_eq!(f.upstream.calls(), 0, "a refusal never reaches upstream");
    let row = f.gw.usage_row(&openai_id).await;
    assert_eq!(row["status"], 403, "{row}");
    assert_eq!(row["error_class"], "permission", "{row}");
    assert_eq!(row["cost_micros"], 0, "{row}");
    let rows = f.gw.usage_counts_by_request(&f.key_id).await;
    assert_eq!(rows.len(), 3, "one usage event per refusal: {rows:?}");
    f.gw.shutdown().await;
}

#[tokio::test]
async fn an_unpriced_model_under_allow_and_flag_is_served_and_its_usage_row_flagged() {
    let f = fixture().await;
    let r = f.gw.chat(&f.key, hi("free-ok")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let row = f.gw.usage_row(&request_id(&r)).await;
    assert_eq!(row["cost_flag"], "price_missing", "{row}");
    assert_eq!(row["cost_micros"], 0, "{row}");
    assert_eq!(f.upstream.calls(), 1);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn under_a_hard_budget_the_catalog_output_limit_bounds_a_request_without_max_tokens() {
    let f = fixture().await;
    f.gw.create(
        "/budgets",
        json!({"scope": {"key_id": f.key_id}, "amount_micros": 10_000_000, "period": "total", "enforcement": "hard"}),
    )
    .await;
    f.gw.wait_for_config().await;
    // `capped` has a catalog output limit: reserved and served under the default policy.
    let r = f.gw.chat(&f.key, hi("capped")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-modelgate-budget-remaining"));
    let row = f.gw.usage_row(&request_id(&r)).await;
    assert_eq!(row["cost_flag"], "", "{row}");
    assert!(row["cost_micros"].as_i64().unwrap() > 0, "{row}");

    // `open` has none, and allow_and_flag: served without a reservation, flagged, charged.
    let r = f.gw.chat(&f.key, hi("open")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let row = f.gw.usage_row(&request_id(&r)).await;
    assert_eq!(row["cost_flag"], "cost_unbounded", "{row}");
    assert!(row["cost_micros"].as_i64().unwrap() > 0, "{row}");
    assert_eq!(f.upstream.calls(), 2);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn explain_names_the_missing_price_policy_and_refuses_as_the_data_plane_would() {
    let f = fixture().await;
    let explain = |model: &str| {
        let gw = &f.gw;
        let body = json!({"key_id": f.key_id, "request": hi(model)});
        async move {
            let (status, v) = gw.admin(Method::POST, "/explain", Some(body)).await;
            assert_eq!(status, 200, "{v}");
            v
        }
    };
    let v = explain("free").await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reason"], "model_price_missing", "{v}");
    assert_eq!(v["status"], 403, "{v}");
    assert_eq!(v["group"]["missing_price"], "reject", "{v}");
    let v = explain("free-ok").await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["group"]["missing_price"], "allow_and_flag", "{v}");
    assert_eq!(
        v["group"]["unpriced_deployments"].as_array().unwrap().len(),
        1,
        "{v}"
    );
    let v = explain("capped").await;
    assert_eq!(v["group"]["unpriced_deployments"], json!([]), "{v}");
    f.gw.shutdown().await;
}

#[tokio::test]
async fn an_unknown_missing_price_policy_is_refused_naming_the_field() {
    let f = fixture().await;
    let (_, routes) = f.gw.admin(Method::GET, "/routes", None).await;
    let deployments = routes["data"][0]["deployments"].clone();
    let (status, v) = f
        .gw
        .admin(
            Method::POST,
            "/routes",
            Some(json!({"alias": "x", "deployments": deployments, "policy": {"missing_price": "maybe"}})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("policy.missing_price"), "{v}");
    f.gw.shutdown().await;
}

/// Under a hard budget, explain refuses a request without an output bound exactly when the data
/// plane would: no max_tokens and no catalog output limit, under the reject policy.
#[tokio::test]
async fn explain_refuses_an_unbounded_request_under_a_hard_budget_as_the_data_plane_does() {
    let f = fixture().await;
    f.gw.create(
        "/budgets",
        json!({"scope": {"key_id": f.key_id}, "amount_micros": 10_000_000, "period": "total", "enforcement": "hard"}),
    )
    .await;
    // A priced route with no output limit under the default policy.
    let (_, routes) = f.gw.admin(Method::GET, "/routes", None).await;
    let pid = routes["data"][0]["deployments"][0]["provider_id"].clone();
    f.gw.create(
        "/routes",
        json!({"alias": "strict", "deployments": [{"provider_id": pid, "model": "open-1"}]}),
    )
    .await;
    let (status, _) =
        f.gw.admin(
            Method::PATCH,
            &format!("/keys/{}", f.key_id),
            Some(json!({"allowed_models": ["free", "free-ok", "capped", "open", "strict"]})),
        )
        .await;
    assert_eq!(status, 200);
    f.gw.wait_for_config().await;
    let explain = |body: Value| {
        let gw = &f.gw;
        async move {
            let (status, v) = gw.admin(Method::POST, "/explain", Some(body)).await;
            assert_eq!(status, 200, "{v}");
            v
        }
    };
    let v = explain(json!({"key_id": f.key_id, "request": hi("strict")})).await;
    assert_eq!(v["reason"], "cost_not_estimable", "{v}");
    assert_eq!(v["status"], 400, "{v}");
    let served = f.gw.chat(&f.key, hi("strict")).send().await.unwrap();
    assert_eq!(served.status(), 400, "the data plane agrees");
    let body: Value = served.json().await.unwrap();
    assert_eq!(body["error"]["code"], "cost_not_estimable", "{body}");
    let mut bounded = hi("strict");
    bounded["max_tokens"] = json!(10);
    let v = explain(json!({"key_id": f.key_id, "request": bounded})).await;
    assert_eq!(v["allowed"], true, "{v}");
    let v = explain(json!({"key_id": f.key_id, "request": hi("capped")})).await;
    assert_eq!(v["allowed"], true, "the catalog limit bounds it: {v}");
    let v = explain(json!({"key_id": f.key_id, "request": hi("open")})).await;
    assert_eq!(v["allowed"], true, "allow_and_flag serves it: {v}");
    f.gw.shutdown().await;
}
