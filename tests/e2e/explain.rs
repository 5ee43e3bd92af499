//! `POST /admin/v1/explain` answers "what would happen to this request with this key" without
//! calling upstream, and its verdict agrees with what the data plane then does; traffic classes
//! set on the key; the fleet's health view fed by data-plane reports; the per-group connect
//! timeout.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::routing::{key, price, provider};
use crate::support::upstream::MockUpstream;
use crate::support::{eventually, request_id, Gateway, Provisioned};

/// A gateway with `smart` (two tiers on upstreams `a` and `b`, backup group `premium` on `c`,
/// priced higher than the primary) and `cheap` (on `c`).
struct Fixture {
    gw: Gateway,
    a: MockUpstream,
    b: MockUpstream,
    c: MockUpstream,
    pa: String,
    pb: String,
    pc: String,
}

async fn fixture() -> Fixture {
    let (a, b, c) = (
        MockUpstream::start().await,
        MockUpstream::start().await,
        MockUpstream::start().await,
    );
    let gw = Gateway::start().await;
    let (pa, pb, pc) = (
        provider(&gw, &a.base_url()).await,
        provider(&gw, &b.base_url()).await,
        provider(&gw, &c.base_url()).await,
    );
    price(&gw, "gpt-x", 1_000_000, 2_000_000).await;
    price(&gw, "gpt-premium", 5_000_000, 9_000_000).await;
    price(&gw, "gpt-y", 500_000, 1_000_000).await;
    gw.create(
        "/routes",
        json!({"alias": "premium", "deployments": [{"provider_id": pc, "model": "gpt-premium"}]}),
    )
    .await;
    gw.create(
        "/routes",
        json!({"alias": "cheap", "deployments": [{"provider_id": pc, "model": "gpt-y"}]}),
    )
    .await;
    gw.create(
        "/routes",
        json!({"alias": "smart", "fallbacks": ["premium", "cheap"],
               "policy": {"eject_after": 1, "base_cooldown_ms": 60000, "max_retries": 0},
               "deployments": [
                   {"provider_id": pa, "model": "gpt-x", "tier": 0, "weight": 3},
                   {"provider_id": pb, "model": "gpt-x", "tier": 0, "weight": 1},
                   {"provider_id": pc, "model": "gpt-y", "tier": 1}]}),
    )
    .await;
    Fixture {
        gw,
        a,
        b,
        c,
        pa,
        pb,
        pc,
    }
}

async fn explain(gw: &Gateway, body: Value) -> Value {
    let (status, v) = gw.admin(Method::POST, "/explain", Some(body)).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn deployment_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["deployment_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn key_with(gw: &Gateway, extra: Value) -> Provisioned {
    let mut k = key(gw).await;
    let (status, v) = gw
        .admin(Method::PATCH, &format!("/keys/{}", k.key_id), Some(extra))
        .await;
    assert_eq!(status, 200, "{v}");
    k.team_id = v["team_id"].as_str().unwrap().to_owned();
    k
}

#[tokio::test]
async fn explain_lists_the_plan_in_order_with_prices_and_calls_no_upstream() {
    let f = fixture().await;
    let k = key(&f.gw).await;
    f.gw.wait_for_config().await;
    let v = explain(
        &f.gw,
        json!({"key_id": k.key_id, "request": {"model": "smart", "messages": []}}),
    )
    .await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["traffic_class"], "interactive");
    assert_eq!(v["group"]["alias"], "smart");
    // Tier 0 by weight (a is 3 of 4), tier 1, then the backups; `premium` costs more than the
    // primary and is skipped by the cost guardrail; `cheap` is within it.
    assert_eq!(
        deployment_ids(&v["candidates"]),
        vec![
            format!("{}/gpt-x", f.pa),
            format!("{}/gpt-x", f.pb),
            format!("{}/gpt-y", f.pc),
            format!("{}/gpt-y", f.pc),
        ]
    );
    let c = &v["candidates"];
    assert_eq!(c[0]["weight_share_milli"], 750);
    assert_eq!(c[1]["weight_share_milli"], 250);
    assert_eq!(c[2]["tier"], 1);
    assert_eq!(c[3]["backup"], true);
    assert_eq!(c[3]["group"], "cheap");
    assert_eq!(c[0]["price"]["input_micros_per_mtok"], 1_000_000);
    assert_eq!(
        v["skipped"],
        json!([{"group": "premium", "deployment_id": format!("{}/gpt-premium", f.pc),
                "reason": "cost_guardrail"}])
    );
    assert_eq!((f.a.calls(), f.b.calls(), f.c.calls()), (0, 0, 0));
    f.gw.shutdown().await;
}

/// One row of the verdict table: the key's settings, the request, and what both explain and the
/// data plane must answer.
struct Case {
    name: &'static str,
    key: Value,
    model: &'static str,
    class: Option<&'static str>,
    status: u16,
    reason: Option<&'static str>,
}

#[tokio::test]
async fn explain_agrees_with_the_data_plane_on_every_verdict() {
    let f = fixture().await;
    f.gw.create(
        "/routes",
        json!({"alias": "internal-only", "policy": {"max_data_class": "internal"},
               "deployments": [{"provider_id": f.pa, "model": "gpt-x"}]}),
    )
    .await;
    let cases = [
        Case {
            name: "allowed",
            key: json!({}),
            model: "smart",
            class: None,
            status: 200,
            reason: None,
        },
        Case {
            name: "model not on the key's list",
            key: json!({"allowed_models": ["cheap"]}),
            model: "smart",
            class: None,
            status: 403,
            reason: Some("model_not_allowed"),
        },
        Case {
            name: "no such alias",
            key: json!({}),
            model: "nope",
            class: None,
            status: 404,
            reason: Some("model_not_found"),
        },
        Case {
            name: "endpoint family not allowed",
            key: json!({"endpoint_families": ["embeddings"]}),
            model: "smart",
            class: None,
            status: 403,
            reason: Some("endpoint_not_allowed"),
        },
        Case {
            name: "traffic class the key does not allow",
            key: json!({"traffic_class": "batch", "allowed_traffic_classes": ["batch"]}),
            model: "smart",
            class: Some("interactive"),
            status: 403,
            reason: Some("traffic_class_not_allowed"),
        },
        Case {
            name: "data class above the group's",
            key: json!({"data_class": "confidential"}),
            model: "internal-only",
            class: None,
            status: 403,
            reason: Some("data_class_not_allowed"),
        },
    ];
    let mut keys = Vec::new();
    for case in &cases {
        keys.push(key_with(&f.gw, case.key.clone()).await);
    }
    f.gw.wait_for_config().await;
    for (case, k) in cases.iter().zip(&keys) {
        let mut body = json!({"key_id": k.key_id, "request": {"model": case.model}});
        if let Some(c) = case.class {
            body["traffic_class"] = json!(c);
        }
        let v = explain(&f.gw, body).await;
        assert_eq!(v["allowed"], case.status == 200, "{}: {v}", case.name);
        assert_eq!(
            v["reason"].as_str(),
            case.reason,
            "{}: explain's reason",
            case.name
        );
        if case.status != 200 {
            assert_eq!(v["status"], case.status, "{}: {v}", case.name);
        }
        let mut req = f.gw.chat(
            &k.key,
            json!({"model": case.model, "messages": [{"role": "user", "content": "hi"}]}),
        );
        if let Some(c) = case.class {
            req = req.header("x-modelgate-traffic-class", c);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            case.status,
            "{}: the data plane disagrees with explain",
            case.name
        );
        let body: Value = resp.json().await.unwrap();
        if let Some(reason) = case.reason {
            assert_eq!(body["error"]["code"], reason, "{}: {body}", case.name);
        }
    }
    f.gw.shutdown().await;
}

#[tokio::test]
async fn explain_refuses_a_revoked_key_and_names_the_reason() {
    let f = fixture().await;
    let k = key(&f.gw).await;
    let (status, _) =
        f.gw.admin(Method::POST, &format!("/keys/{}/revoke", k.key_id), None)
            .await;
    assert_eq!(status, 200);
    f.gw.wait_for_config().await;
    let v = explain(
        &f.gw,
        json!({"key_id": k.key_id, "request": {"model": "smart"}}),
    )
    .await;
    assert_eq!(v["allowed"], false);
    assert_eq!(v["reason"], "invalid_api_key");
    assert_eq!(v["status"], 401);
    assert!(v["message"].as_str().unwrap().contains("revoked"), "{v}");
    assert_eq!(f.gw.say_hi(&k.key, "smart").await.status(), 401);

    let (status, v) =
        f.gw.admin(
            Method::POST,
            "/explain",
            Some(json!({"key_id": "no-such-key", "request": {"model": "smart"}})),
        )
        .await;
    assert_eq!(status, 404, "{v}");
    let (status, v) =
        f.gw.admin(
            Method::POST,
            "/explain",
            Some(json!({"key_id": k.key_id, "request": {}, "surface": "telepathy"})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "surface", "{v}");
    f.gw.shutdown().await;
}

#[tokio::test]
async fn eval_traffic_set_on_the_key_is_pinned_to_one_model_in_explain_and_in_routing() {
    let f = fixture().await;
    let k = key_with(
        &f.gw,
        json!({"traffic_class": "eval", "allowed_traffic_classes": ["eval"]}),
    )
    .await;
    f.gw.wait_for_config().await;
    let v = explain(
        &f.gw,
        json!({"key_id": k.key_id, "request": {"model": "smart"}}),
    )
    .await;
    assert_eq!(v["traffic_class"], "eval");
    assert_eq!(
        deployment_ids(&v["candidates"]),
        vec![format!("{}/gpt-x", f.pa), format!("{}/gpt-x", f.pb)],
        "eval keeps the model and leaves no group: {v}"
    );
    assert_eq!(v["skipped"][0]["reason"], "class_forbids_model_change");

    // Through the data plane: both gpt-x deployments fail; eval never reaches gpt-y.
    f.a.fail_with(Some(500));
    f.b.fail_with(Some(500));
    let resp = f.gw.say_hi(&k.key, "smart").await;
    assert_eq!(resp.status(), 502);
    let row = f.gw.usage_row(&request_id(&resp)).await;
    assert_eq!(row["traffic_class"], "eval", "the key's class applies");
    assert_eq!(f.c.calls(), 0, "no other model was tried");

    // The key allows only eval: asking for interactive by header is refused before routing.
    let resp =
        f.gw.chat(
            &k.key,
            json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .header("x-modelgate-traffic-class", "interactive")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "traffic_class_not_allowed");
    f.gw.shutdown().await;
}

#[tokio::test]
async fn an_ejected_deployment_shows_in_the_fleet_view_and_in_explain() {
    let f = fixture().await;
    let k = key(&f.gw).await;
    f.gw.wait_for_config().await;
    // Ejection after one failure: fail `a` until a request lands on it (weighted random).
    f.a.fail_with(Some(500));
    for _ in 0..40 {
        let resp = f.gw.say_hi(&k.key, "smart").await;
        assert_eq!(resp.status(), 200, "b or the next tier serves");
        if f.a.calls() > 0 {
            break;
        }
    }
    assert_eq!(f.a.calls(), 1, "a was tried once, then ejected");
    let a_id = format!("{}/gpt-x", f.pa);
    let fleet = eventually(
        Duration::from_secs(10),
        "the ejection in the fleet view",
        || async {
            let (status, v) = f.gw.admin(Method::GET, "/health/deployments", None).await;
            assert_eq!(status, 200, "{v}");
            let a = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["deployment_id"] == a_id.as_str())
                .cloned()?;
            (a["nodes_ejected"] == 1).then_some(a)
        },
    )
    .await;
    assert_eq!(fleet["nodes_reporting"], 1);
    assert_eq!(fleet["nodes"][0]["ejected"], true);

    let v = explain(
        &f.gw,
        json!({"key_id": k.key_id, "request": {"model": "smart"}}),
    )
    .await;
    let a = &v["candidates"][0];
    assert_eq!(a["deployment_id"], a_id.as_str());
    assert_eq!(a["health"]["available"], false, "{v}");
    assert_eq!(a["health"]["nodes_ejected"], 1);
    assert_eq!(v["candidates"][1]["health"]["available"], true);
    assert_eq!(v["allowed"], true);
    f.gw.shutdown().await;
}

/// A listener whose accept queue is full: connecting to it hangs until the caller gives up.
async fn unanswered_address() -> (
    std::net::SocketAddr,
    tokio::net::TcpListener,
    std::net::TcpStream,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let filler = std::net::TcpStream::connect(addr).unwrap();
    (addr, listener, filler)
}

#[tokio::test]
async fn the_groups_connect_timeout_gives_up_on_a_silent_host_before_the_total_timeout() {
    let b = MockUpstream::start().await;
    let (addr, _listener, _filler) = unanswered_address().await;
    let gw = Gateway::start().await;
    let silent = provider(&gw, &format!("http://{addr}/v1")).await;
    let pb = provider(&gw, &b.base_url()).await;
    // Priced: an unpriced group is refused under the default missing_price policy.
    gw.create(
        "/models",
        json!({"model": "m", "input_micros_per_mtok": 1_000_000, "output_micros_per_mtok": 2_000_000}),
    )
    .await;
    // If the 200 ms connect timeout did not apply, the 3 s total timeout would end the attempt
    // instead (the default connect timeout is 5 s), and its class would be `timeout`.
    gw.create(
        "/routes",
        json!({"alias": "smart",
               "policy": {"connect_timeout_ms": 200, "total_timeout_ms": 3000, "max_retries": 0},
               "deployments": [{"provider_id": silent, "model": "m", "tier": 0},
                               {"provider_id": pb, "model": "m", "tier": 1}]}),
    )
    .await;
    let k = key(&gw).await;
    gw.wait_for_config().await;
    let resp = gw.say_hi(&k.key, "smart").await;
    assert_eq!(resp.status(), 200);
    let row = gw.usage_row(&request_id(&resp)).await;
    let first = &row["attempts"][0];
    assert_eq!(first["deployment_id"], format!("{silent}/m"), "{row}");
    // A connect failure, not the first-byte timeout.
    assert_eq!(first["error_class"], "provider_error", "{row}");
    assert_eq!(first["status"], 0, "{row}");
    assert_eq!(b.calls(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn explain_shows_the_keys_budgets_with_what_is_spent_and_refuses_when_one_is_used_up() {
    let f = fixture().await;
    let k = key(&f.gw).await;
    // $1 a day for the team: explain lists it, and after one answer (21 prompt tokens at 1 µ$,
    // 7 completion tokens at 2 µ$) shows the spend.
    f.gw.create(
        "/budgets",
        json!({"scope": {"team_id": k.team_id}, "amount_micros": 1_000_000, "period": "day",
               "enforcement": "hard"}),
    )
    .await;
    f.gw.wait_for_config().await;
    // Under a hard budget the request needs an output bound (as on the data plane).
    let v = explain(
        &f.gw,
        json!({"key_id": k.key_id, "request": {"model": "smart", "max_tokens": 7}}),
    )
    .await;
    assert_eq!(v["allowed"], true, "{v}");
    let b = &v["budgets"][0];
    assert_eq!(b["amount_micros"], 1_000_000, "{v}");
    assert_eq!(b["spent_micros"], 0);

    let resp = f
        .gw
        .chat(
            &k.key,
            json!({"model": "smart", "max_tokens": 7, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let row = f.gw.usage_row(&request_id(&resp)).await;
    let cost = row["cost_micros"].as_i64().unwrap();
    assert!(cost > 0);
    let v = explain(
        &f.gw,
        json!({"key_id": k.key_id, "request": {"model": "smart"}}),
    )
    .await;
    assert_eq!(v["budgets"][0]["spent_micros"], cost, "{v}");

    // A budget with nothing left: explain refuses as the data plane does. With no input price
    // the worst case (7 output tokens at 2 µ$) is the actual cost, so a 14 µ$ budget pays for
    // exactly one answer.
    price(&f.gw, "gpt-z", 0, 2_000_000).await;
    f.gw.create(
        "/routes",
        json!({"alias": "exact", "deployments": [{"provider_id": f.pa, "model": "gpt-z"}]}),
    )
    .await;
    let k2 = key(&f.gw).await;
    f.gw.create(
        "/budgets",
        json!({"scope": {"key_id": k2.key_id}, "amount_micros": 14, "period": "total",
               "enforcement": "hard"}),
    )
    .await;
    f.gw.wait_for_config().await;
    let ask = || {
        f.gw.chat(
            &k2.key,
            json!({"model": "exact", "max_tokens": 7, "messages": [{"role": "user", "content": "hi"}]}),
        )
    };
    let resp = ask().send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let row = f.gw.usage_row(&request_id(&resp)).await;
    assert_eq!(row["cost_micros"], 14, "{row}");
    // The request the data plane is sent (bounded: unbounded, it would be refused
    // `cost_not_estimable` before any budget is looked at).
    let v = explain(
        &f.gw,
        json!({"key_id": k2.key_id, "request": {"model": "exact", "max_tokens": 7}}),
    )
    .await;
    assert_eq!(v["budgets"][0]["spent_micros"], 14, "{v}");
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reason"], "budget_exceeded");
    assert_eq!(v["status"], 429);
    let resp = ask().send().await.unwrap();
    assert_eq!(resp.status(), 429, "the data plane agrees");
    f.gw.shutdown().await;
}
