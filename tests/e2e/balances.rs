//! Prepaid balances (issue #18, R-4.7): credits are ledger entries with actor and reason, usage
//! deducts at ingest, and a team at zero in `refuse` mode is refused before going upstream —
//! fleet-wide, through the same leases and reservations as hard budgets — while `alert` mode
//! only alerts.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::budgets::{ask, extra_data_plane, setup, usage_rows};
use crate::support::{eventually, request_id, Gateway};

/// Credits `amount` to the team's balance (opening it) and waits until the data plane holds
/// the snapshot carrying it.
pub(crate) async fn credit(gw: &Gateway, team_id: &str, body: Value) -> Value {
    let v = gw
        .create(&format!("/teams/{team_id}/balance/adjustments"), body)
        .await;
    gw.wait_for_config().await;
    v
}

async fn balance(gw: &Gateway, team_id: &str) -> Value {
    let (status, v) = gw
        .admin(Method::GET, &format!("/teams/{team_id}/balance"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refusing_balance_holds_across_three_data_planes_under_300_concurrent_requests() {
    let (upstream, gw, p) = setup().await;
    let credited = 1_000_000_i64; // $1.00
    credit(
        &gw,
        &p.team_id,
        json!({"amount_micros": credited, "reason": "prepaid order 1", "mode": "refuse"}),
    )
    .await;
    let dp2 = extra_data_plane(&gw).await;
    let dp3 = extra_data_plane(&gw).await;
    let nodes = [gw.dp().addr, dp2.addr, dp3.addr];

    let mut tasks = Vec::new();
    for i in 0..300 {
        let req = ask(&gw.http, nodes[i % 3], &p.key);
        tasks.push(tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, body)
        }));
    }
    let (mut accepted, mut refused) = (0, 0);
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => accepted += 1,
            402 => {
                assert_eq!(body["error"]["code"], "insufficient_balance", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(accepted + refused, 300);
    assert!(accepted > 0, "the balance pays for what it can");
    assert!(refused > 0, "300 requests cost far more than the balance");
    assert_eq!(
        upstream.calls(),
        accepted,
        "a refused request never reaches upstream"
    );

    let rows = eventually(Duration::from_secs(30), "300 usage rows", || async {
        let rows = usage_rows(&gw, &p.key_id).await;
        (rows.len() == 300).then_some(rows)
    })
    .await;
    let refused_rows = rows
        .iter()
        .filter(|r| r["status"] == 402 && r["error_class"] == "insufficient_balance")
        .count();
    assert_eq!(refused_rows, refused, "every refusal has its usage event");
    let charged: i64 = rows
        .iter()
        .map(|r| r["cost_micros"].as_i64().unwrap())
        .sum();
    println!(
        "refusing balance {credited} µ$: accepted {accepted}, refused {refused}, charged \
         {charged} µ$, overspend {} µ$",
        (charged - credited).max(0)
    );
    assert!(
        charged <= credited,
        "charged {charged} µ$ past a balance of {credited} µ$"
    );

    // Ingest deducted exactly what the ledger charged, once.
    let b = balance(&gw, &p.team_id).await;
    assert_eq!(b["credited_micros"], credited, "{b}");
    assert_eq!(b["deducted_micros"].as_i64().unwrap(), charged, "{b}");
    assert_eq!(b["balance_micros"].as_i64().unwrap(), credited - charged);
    assert!(b["balance_micros"].as_i64().unwrap() >= 0);

    dp2.shutdown().await;
    dp3.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_team_at_zero_is_refused_with_402_in_every_surfaces_format_and_never_forwarded() {
    let (upstream, gw, p) = setup().await;
    credit(
        &gw,
        &p.team_id,
        json!({"amount_micros": 500_000, "reason": "trial credit"}),
    )
    .await;
    let b = credit(
        &gw,
        &p.team_id,
        json!({"kind": "adjustment", "amount_micros": -500_000, "reason": "trial withdrawn"}),
    )
    .await;
    assert_eq!(b["balance_micros"], 0, "{b}");
    assert_eq!(b["mode"], "refuse", "a new balance refuses by default: {b}");
    let root = gw.base_url().trim_end_matches("/v1").to_owned();
    let post = |path: &str, body: Value| {
        gw.http
            .post(format!("{root}{path}"))
            .bearer_auth(&p.key)
            .json(&body)
    };
    let mut ids = Vec::new();

    // OpenAI chat.
    let r = ask(&gw.http, gw.dp().addr, &p.key).send().await.unwrap();
    assert_eq!(r.status(), 402);
    ids.push(request_id(&r));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_balance", "{body}");
    assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&p.team_id), "{body}");
    assert!(
        !message.contains("  "),
        "one sentence, no run of spaces: {message}"
    );

    // Anthropic Messages.
    let r = gw
        .http
        .post(format!("{root}/v1/messages"))
        .header("x-api-key", &p.key)
        .json(&json!({"model": "smart", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
    ids.push(request_id(&r));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "billing_error", "{body}");

    // Gemini.
    let r = gw
        .http
        .post(format!("{root}/v1beta/models/smart:generateContent"))
        .header("x-goog-api-key", &p.key)
        .json(
            &json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                      "generationConfig": {"maxOutputTokens": 10}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
    ids.push(request_id(&r));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], 402, "{body}");
    assert!(body["error"]["status"].is_string(), "{body}");

    // Responses, embeddings, audio (speech): OpenAI's format.
    for (path, req) in [
        (
            "/v1/responses",
            json!({"model": "smart", "input": "hi", "max_output_tokens": 10}),
        ),
        ("/v1/embeddings", json!({"model": "smart", "input": "hi"})),
        (
            "/v1/audio/speech",
            json!({"model": "smart", "input": "say hi", "voice": "alloy"}),
        ),
    ] {
        let r = post(path, req).send().await.unwrap();
        assert_eq!(r.status(), 402, "{path}");
        ids.push(request_id(&r));
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "insufficient_balance",
            "{path}: {body}"
        );
    }

    assert_eq!(upstream.calls(), 0, "a refusal never reaches upstream");
    for id in &ids {
        let row = gw.usage_row(id).await;
        assert_eq!(row["status"], 402, "{row}");
        assert_eq!(row["error_class"], "insufficient_balance", "{row}");
        assert_eq!(row["cost_micros"], 0, "{row}");
    }

    // A top-up lets the team through again.
    credit(
        &gw,
        &p.team_id,
        json!({"amount_micros": 5_000_000, "reason": "prepaid order 2"}),
    )
    .await;
    let r = ask(&gw.http, gw.dp().addr, &p.key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.calls(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn explain_shows_the_balance_check_and_refuses_as_the_data_plane_would() {
    let (_upstream, gw, p) = setup().await;
    credit(
        &gw,
        &p.team_id,
        json!({"amount_micros": 1_000, "reason": "too little for one request"}),
    )
    .await;
    let request = json!({"key_id": p.key_id, "request": {"model": "smart", "max_tokens": 10,
        "messages": [{"role": "user", "content": "say something expensive"}]}});
    let (status, v) = gw
        .admin(Method::POST, "/explain", Some(request.clone()))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["status"], 402, "{v}");
    assert_eq!(v["reason"], "insufficient_balance", "{v}");
    assert_eq!(v["balance"]["team_id"], p.team_id.as_str(), "{v}");
    assert_eq!(v["balance"]["balance_micros"], 1_000, "{v}");
    assert_eq!(v["balance"]["mode"], "refuse", "{v}");
    assert!(
        v["budgets"].as_array().unwrap().is_empty(),
        "a balance is not listed as a spend budget: {v}"
    );
    // The data plane agrees.
    let r = ask(&gw.http, gw.dp().addr, &p.key).send().await.unwrap();
    assert_eq!(r.status(), 402);

    // In alert mode the same balance refuses nothing.
    credit(
        &gw,
        &p.team_id,
        json!({"kind": "adjustment", "amount_micros": 0, "reason": "switch to alerts", "mode": "alert"}),
    )
    .await;
    let (_, v) = gw.admin(Method::POST, "/explain", Some(request)).await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["balance"]["mode"], "alert", "{v}");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_alerting_balance_serves_past_zero_deducts_every_cost_and_alerts_its_webhook() {
    let (upstream, gw, p) = setup().await;
    let (hook, url) = crate::budget_alerts::start_hook(false).await;
    credit(
        &gw,
        &p.team_id,
        json!({"amount_micros": 100_000, "reason": "small prepaid", "mode": "alert",
               "alert_webhook_url": url}),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = ask(&gw.http, gw.dp().addr, &p.key).send().await.unwrap();
        assert_eq!(r.status(), 200, "alert mode never refuses");
        ids.push(request_id(&r));
    }
    assert_eq!(upstream.calls(), 3);
    let mut charged = 0;
    for id in &ids {
        charged += gw.usage_row(id).await["cost_micros"].as_i64().unwrap();
    }
    let b = eventually(Duration::from_secs(15), "the deductions", || async {
        let b = balance(&gw, &p.team_id).await;
        (b["deducted_micros"].as_i64() == Some(charged)).then_some(b)
    })
    .await;
    assert_eq!(b["balance_micros"].as_i64().unwrap(), 100_000 - charged);
    assert!(charged > 100_000, "the balance went below zero: {b}");
    eventually(Duration::from_secs(15), "the balance alerts", || async {
        let bodies = hook.accepted.lock().unwrap().clone();
        let kinds: Vec<i64> = bodies
            .iter()
            .filter(|b| b["kind"] == "balance.threshold_crossed")
            .filter_map(|b| b["threshold_percent"].as_i64())
            .collect();
        (kinds.contains(&100)).then_some(())
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn balances_are_read_by_the_teams_billing_role_and_credited_only_org_wide_once_per_key() {
    let (_upstream, gw, p) = setup().await;
    let other = gw.create("/teams", json!({"name": "other"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    credit(
        &gw,
        &p.team_id,
        json!({"amount_micros": 2_000_000, "reason": "opening"}),
    )
    .await;
    let token = |role: &str, team: Option<&str>| {
        let mut body = json!({"name": format!("{role}-{team:?}"), "role": role});
        if let Some(t) = team {
            body["team_id"] = json!(t);
        }
        let gw = &gw;
        async move {
            gw.create("/tokens", body).await["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let as_token = |t: &str, method: Method, path: String, body: Option<Value>| {
        let mut req = gw
            .http
            .request(method, format!("{}/admin/v1{path}", gw.admin_url))
            .bearer_auth(t);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.unwrap();
            r.status().as_u16()
        }
    };
    let team_billing = token("billing", Some(&p.team_id)).await;
    let member = token("member", Some(&p.team_id)).await;
    let org_billing = token("billing", None).await;
    let path = format!("/teams/{}/balance", p.team_id);
    assert_eq!(
        as_token(&team_billing, Method::GET, path.clone(), None).await,
        200
    );
    assert_eq!(
        as_token(
            &team_billing,
            Method::GET,
            format!("/teams/{other}/balance"),
            None
        )
        .await,
        404,
        "another team's balance does not exist for a scoped token"
    );
    assert_eq!(
        as_token(&member, Method::GET, path.clone(), None).await,
        403
    );
    let top_up = json!({"amount_micros": 1, "reason": "not mine to give"});
    assert_eq!(
        as_token(
            &team_billing,
            Method::POST,
            format!("{path}/adjustments"),
            Some(top_up.clone())
        )
        .await,
        403,
        "a team's billing role reads, it does not credit itself"
    );

    // Org-wide billing credits; a repeated Idempotency-Key is one entry.
    for _ in 0..2 {
        let r = gw
            .http
            .post(format!("{}/admin/v1{path}/adjustments", gw.admin_url))
            .bearer_auth(&org_billing)
            .header("idempotency-key", "order-42")
            .json(&json!({"amount_micros": 3_000_000, "reason": "order 42"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let b = balance(&gw, &p.team_id).await;
    assert_eq!(b["credited_micros"], 5_000_000, "{b}");
    let history = b["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{b}");
    assert_eq!(history[0]["reason"], "order 42");
    assert_eq!(history[0]["actor_type"], "token");
    assert_eq!(history[1]["reason"], "opening");

    // Bad input names the field.
    for (body, param) in [
        (json!({"amount_micros": -5, "reason": "x"}), "amount_micros"),
        (json!({"amount_micros": 5, "reason": " "}), "reason"),
        (
            json!({"amount_micros": 5, "reason": "x", "mode": "maybe"}),
            "mode",
        ),
    ] {
        let (status, v) = gw
            .admin(Method::POST, &format!("{path}/adjustments"), Some(body))
            .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }

    // Every credit is in the audit log with its actor.
    let (status, audit) = gw
        .admin(Method::GET, "/audit?resource_type=balance", None)
        .await;
    assert_eq!(status, 200, "{audit}");
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "balance.top_up").count(),
        2,
        "{audit}"
    );
    gw.shutdown().await;
}
