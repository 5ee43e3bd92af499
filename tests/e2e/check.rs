//! `modelgate check` as an operator runs it before going to production: the real binary,
//! configured only by the four variables `modelgate up` prints, against a real `modelgate up`
//! (embedded SQLite, the mock provider). A gateway that works passes every step and leaves no
//! temporary key or budget behind; a wrong key fails the run with a non-zero exit.

use std::collections::HashMap;

use serde_json::Value;

use crate::sdk::modelgate_up;

/// Runs `modelgate check --output json` with `env` (the `MODELGATE_…` variables).
async fn check(env: &HashMap<String, String>) -> (Option<i32>, Value, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"));
    command
        .args(["check", "--output", "json", "--wait-secs", "30"])
        .env("RUST_LOG", "warn");
    for k in [
        "MODELGATE_BASE_URL",
        "MODELGATE_API_KEY",
        "MODELGATE_ADMIN_URL",
        "MODELGATE_ADMIN_TOKEN",
    ] {
        command.env(k, &env[k]);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("running modelgate check");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the report is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (output.status.code(), report, stderr)
}

fn step<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step `{name}` in {report:#}"))
}

async fn admin_get(env: &HashMap<String, String>, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/admin/v1/{path}", env["MODELGATE_ADMIN_URL"]))
        .bearer_auth(&env["MODELGATE_ADMIN_TOKEN"])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn check_passes_against_modelgate_up_and_reads_back_every_ledger_row() {
    let up = tokio::task::spawn_blocking(modelgate_up).await.unwrap();
    let (code, report, stderr) = check(&up.env).await;
    assert_eq!(code, Some(0), "check failed: {report:#}\nstderr: {stderr}");
    assert_eq!(report["passed"], true);

    // One success per endpoint family the demo key may use and the demo routes serve.
    for family in [
        "models",
        "chat",
        "messages",
        "responses",
        "generate_content",
        "audio",
    ] {
        let s = step(&report, &format!("family {family}"));
        assert_eq!(s["result"], "pass", "{s:#}");
        assert_eq!(s["status"], 200, "{s:#}");
        assert_eq!(s["ledger"]["application"], "modelgate-check", "{s:#}");
    }
    // Metered and charged: tokens for the chat surfaces, characters for speech, cost for each.
    for family in ["chat", "messages", "responses", "generate_content"] {
        let l = &step(&report, &format!("family {family}"))["ledger"];
        assert!(l["input_tokens"].as_i64().unwrap() > 0, "{l:#}");
        assert!(l["output_tokens"].as_i64().unwrap() > 0, "{l:#}");
        assert!(l["cost_micros"].as_i64().unwrap() > 0, "{l:#}");
    }
    assert!(
        step(&report, "family audio")["ledger"]["cost_micros"]
            .as_i64()
            .unwrap()
            > 0
    );
    // Families with no model to try are reported as such, not as passes.
    for family in ["embeddings", "images", "video"] {
        assert_eq!(step(&report, &format!("family {family}"))["result"], "skip");
    }

    let invalid = step(&report, "invalid request");
    assert_eq!(invalid["result"], "pass", "{invalid:#}");
    assert_eq!(invalid["status"], 400);
    assert_eq!(invalid["ledger"]["attempts"], 0);
    assert_eq!(invalid["ledger"]["fallback_used"], false);
    assert_eq!(invalid["ledger"]["cost_micros"], 0);

    let failure = step(&report, "upstream failure");
    assert_eq!(failure["result"], "pass", "{failure:#}");
    assert!(failure["status"].as_u64().unwrap() >= 500, "{failure:#}");
    assert!(failure["ledger"]["attempts"].as_u64().unwrap() >= 1);

    let budget = step(&report, "budget");
    assert_eq!(budget["result"], "pass", "{budget:#}");
    assert_eq!(budget["status"], 429);
    assert_eq!(budget["ledger"]["error_class"], "budget_exceeded");
    assert_eq!(budget["ledger"]["attempts"], 0);

    // What the check created for its scenarios is gone: its key revoked, its budget deleted.
    let temp_key = budget["ledger"]["key_id"].as_str().unwrap().to_owned();
    let key = admin_get(&up.env, &format!("keys/{temp_key}")).await;
    assert_eq!(key["status"], "revoked", "{key:#}");
    let budgets = admin_get(&up.env, "budgets").await;
    assert!(
        budgets["data"].as_array().unwrap().is_empty(),
        "the temporary budget was left behind: {budgets:#}"
    );

    // Every check request is marked, so the request log (and dashboards) can leave them out.
    let marked = admin_get(&up.env, "requests?application=modelgate-check&limit=100").await;
    let marked: Vec<&str> = marked["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    for s in report["steps"].as_array().unwrap() {
        if let Some(id) = s["request_id"].as_str() {
            assert!(
                marked.contains(&id),
                "request {id} ({}) is not marked",
                s["name"]
            );
        }
    }

    // A second run reuses the unreachable route and passes again.
    let (code, report, stderr) = check(&up.env).await;
    assert_eq!(
        code,
        Some(0),
        "second run failed: {report:#}\nstderr: {stderr}"
    );
}

#[tokio::test]
async fn check_with_a_wrong_key_fails_with_a_non_zero_exit() {
    let up = tokio::task::spawn_blocking(modelgate_up).await.unwrap();
    let mut env = up.env.clone();
    env.insert(
        "MODELGATE_API_KEY".into(),
        "mg-not-a-key-of-this-gateway-0000000000".into(),
    );
    let (code, report, _) = check(&env).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["passed"], false);
    let identify = step(&report, "identify key");
    assert_eq!(identify["result"], "fail");
    assert_eq!(identify["status"], 401);
    assert!(
        identify["detail"]
            .as_str()
            .unwrap()
            .contains("did not recognise the key"),
        "{identify:#}"
    );
}

#[tokio::test]
async fn check_passes_against_a_gateway_on_the_test_database_with_an_openai_compatible_upstream() {
    let (upstream, gw, p) = crate::support::gateway_with_smart_route().await;
    // This key may call chat and messages only (the mock upstream speaks OpenAI chat).
    let (status, key) = gw
        .admin(
            reqwest::Method::PATCH,
            &format!("/keys/{}", p.key_id),
            Some(serde_json::json!({"endpoint_families": ["chat", "messages", "models"]})),
        )
        .await;
    assert_eq!(status, 200, "{key}");
    gw.wait_for_config().await;
    let env = HashMap::from([
        (
            "MODELGATE_BASE_URL".to_owned(),
            format!("http://{}/v1", gw.dp().addr),
        ),
        ("MODELGATE_API_KEY".to_owned(), p.key.clone()),
        ("MODELGATE_ADMIN_URL".to_owned(), gw.admin_url.clone()),
        ("MODELGATE_ADMIN_TOKEN".to_owned(), gw.admin_token.clone()),
    ]);
    let calls_before = upstream.calls();
    let (code, report, stderr) = check(&env).await;
    assert_eq!(code, Some(0), "check failed: {report:#}\nstderr: {stderr}");
    let names: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"family chat") && names.contains(&"family messages"));
    assert!(
        !names.contains(&"family responses"),
        "a family the key may not call is not tried: {names:?}"
    );
    // Served through the upstream: one call per chat-family success, none for the refusals.
    assert_eq!(upstream.calls() - calls_before, 2);
    let chat = step(&report, "family chat");
    assert_eq!(chat["ledger"]["model"], "smart");
    assert_eq!(chat["ledger"]["application"], "modelgate-check");
    gw.shutdown().await;
}
