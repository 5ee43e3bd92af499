//! The admin CLI as an operator runs it: the real `modelgate` binary, configured only through
//! `MODELGATE_ADMIN_URL` / `MODELGATE_ADMIN_TOKEN`, against a running gateway. What it creates
//! must work through the data plane; what the API refuses must come back on stderr.

use std::time::Duration;

use serde_json::Value;

use crate::support::upstream::MockUpstream;
use crate::support::{eventually, gateway_with_smart_route, request_id, Gateway};

/// What one `modelgate …` run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "modelgate failed.\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(self) -> Value {
        let run = self.ok();
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", run.stdout))
    }
}

/// Runs the binary with the gateway's admin URL and token in its environment (and `extra_env`).
async fn modelgate(gw: &Gateway, args: &[&str], extra_env: &[(&str, &str)]) -> Run {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"));
    command
        .args(args)
        .env("MODELGATE_ADMIN_URL", &gw.admin_url)
        .env("MODELGATE_ADMIN_TOKEN", &gw.admin_token)
        .env_remove("MODELGATE_OUTPUT")
        .env_remove("MODELGATE_PROVIDER_CREDENTIAL")
        .env("RUST_LOG", "warn");
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("running modelgate");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[tokio::test]
async fn cli_provisions_a_route_and_key_that_serve_traffic_and_are_metered() {
    let upstream = MockUpstream::start().await;
    let gw = Gateway::start().await;
    let cli = |args: &'static [&'static str]| modelgate(&gw, args, &[]);

    let team = modelgate(
        &gw,
        &["teams", "create", "--name", "cli-team", "--output", "json"],
        &[],
    )
    .await
    .json();
    let team_id = team["id"].as_str().unwrap().to_owned();
    assert_eq!(team["name"], "cli-team");

    // The provider credential comes from the environment, not the command line.
    let base_url = upstream.base_url();
    let provider = modelgate(
        &gw,
        &[
            "providers",
            "create",
            "--name",
            "cli-upstream",
            "--kind",
            "openai-compatible",
            "--base-url",
            &base_url,
            "--output",
            "json",
        ],
        &[("MODELGATE_PROVIDER_CREDENTIAL", "sk-from-env-9876")],
    )
    .await
    .json();
    let provider_id = provider["id"].as_str().unwrap().to_owned();
    assert_eq!(provider["credential_last4"], "9876");
    assert_eq!(provider["base_url"], base_url.as_str());

    let price = modelgate(
        &gw,
        &[
            "models",
            "set",
            "--model",
            "gpt-4o-2024",
            "--input-micros-per-mtok",
            "2500000",
            "--output-micros-per-mtok",
            "10000000",
            "--output",
            "json",
        ],
        &[],
    )
    .await
    .json();
    assert_eq!(price["input_micros_per_mtok"], 2_500_000);
    assert_eq!(price["output_micros_per_mtok"], 10_000_000);

    let deployment = format!("{provider_id}:gpt-4o-2024");
    let route = modelgate(
        &gw,
        &[
            "routes",
            "create",
            "--alias",
            "smart",
            "--deployment",
            &deployment,
            "--output",
            "json",
        ],
        &[],
    )
    .await
    .json();
    assert_eq!(route["deployments"][0]["provider_id"], provider_id.as_str());
    assert_eq!(route["deployments"][0]["model"], "gpt-4o-2024");

    let created = modelgate(
        &gw,
        &[
            "keys",
            "create",
            "--team-id",
            &team_id,
            "--name",
            "cli-app",
            "--environment",
            "prod",
            "--allowed-model",
            "smart",
            "--output",
            "json",
        ],
        &[],
    )
    .await;
    assert!(created.stderr.contains("shown once"), "{}", created.stderr);
    let key = created.json();
    let key_id = key["id"].as_str().unwrap().to_owned();
    let secret = key["key_secret"].as_str().unwrap().to_owned();
    assert_eq!(key["allowed_models"], serde_json::json!(["smart"]));

    gw.wait_for_config().await;
    let resp = gw.say_hi(&secret, "smart").await;
    assert_eq!(resp.status(), 200);
    let rid = request_id(&resp);
    assert_eq!(upstream.calls(), 1);
    let row = gw.usage_row(&rid).await;
    assert_eq!(row["key_id"], key_id.as_str());
    assert_eq!(row["team_id"], team_id.as_str());
    assert_eq!(row["provider_id"], provider_id.as_str());
    assert_eq!(row["served_model"], "gpt-4o-2024");

    // A rotated upstream key, again from the environment: the next request carries it.
    let replaced = modelgate(
        &gw,
        &[
            "providers",
            "set-credential",
            &provider_id,
            "--output",
            "json",
        ],
        &[("MODELGATE_PROVIDER_CREDENTIAL", "sk-rotated-upstream-4242")],
    )
    .await
    .json();
    assert_eq!(replaced["credential_last4"], "4242");
    eventually(
        Duration::from_secs(5),
        "the replaced credential upstream",
        || async {
            let calls = upstream.calls();
            let ok = gw.say_hi(&secret, "smart").await.status() == 200;
            (ok && upstream.calls() == calls + 1
                && upstream.last_target().authorization.as_deref()
                    == Some("Bearer sk-rotated-upstream-4242"))
            .then_some(())
        },
    )
    .await;

    // The human table names the key but never prints its secret.
    let table = cli(&["keys", "list"]).await.ok().stdout;
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("NAME") && header.contains("STATUS"),
        "{table}"
    );
    let line = table
        .lines()
        .find(|l| l.contains(&key_id))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains("cli-app") && line.contains("prod") && line.contains("active"),
        "{line}"
    );
    assert!(
        !table.contains(&secret),
        "the key table printed the secret:\n{table}"
    );

    // JSON lists are one array of every row, across pages.
    modelgate(&gw, &["teams", "create", "--name", "cli-team-2"], &[])
        .await
        .ok();
    let teams = cli(&["teams", "list", "--output", "json"]).await.json();
    let names: Vec<&str> = teams
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"cli-team") && names.contains(&"cli-team-2"),
        "{teams}"
    );
    assert!(teams
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == team_id.as_str()));
    let one = cli(&["teams", "list", "--limit", "1", "--output", "json"])
        .await
        .json();
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");

    gw.shutdown().await;
}

#[tokio::test]
async fn cli_prints_the_admin_api_error_on_stderr_and_exits_non_zero() {
    let gw = Gateway::start().await;

    let unknown_team = modelgate(
        &gw,
        &["keys", "create", "--team-id", "no-such-team", "--name", "k"],
        &[],
    )
    .await;
    assert_eq!(unknown_team.code, Some(1), "{}", unknown_team.stderr);
    assert_eq!(
        unknown_team.stderr.trim(),
        "error: no such team (param: team_id)"
    );
    assert_eq!(unknown_team.stdout, "");

    let team = modelgate(
        &gw,
        &["teams", "create", "--name", "t", "--output", "json"],
        &[],
    )
    .await
    .json();
    let team_id = team["id"].as_str().unwrap();
    let bad_env = modelgate(
        &gw,
        &[
            "keys",
            "create",
            "--team-id",
            team_id,
            "--name",
            "k",
            "--environment",
            "qa",
        ],
        &[],
    )
    .await;
    assert_eq!(bad_env.code, Some(1));
    assert_eq!(
        bad_env.stderr.trim(),
        "error: must be one of dev, staging, prod (param: environment)"
    );

    let wrong_token = modelgate(
        &gw,
        &["teams", "list"],
        &[("MODELGATE_ADMIN_TOKEN", "mgadm-wrong")],
    )
    .await;
    assert_eq!(wrong_token.code, Some(1));
    assert!(
        wrong_token
            .stderr
            .starts_with("error: a valid admin token is required"),
        "{}",
        wrong_token.stderr
    );

    // Nothing listens on a port we bound and closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}");
    let unreachable = modelgate(&gw, &["teams", "list"], &[("MODELGATE_ADMIN_URL", &url)]).await;
    assert_eq!(unreachable.code, Some(1));
    assert!(
        unreachable.stderr.starts_with(&format!(
            "error: could not connect to the admin API at {url}"
        )),
        "{}",
        unreachable.stderr
    );

    gw.shutdown().await;
}

#[tokio::test]
async fn cli_revoked_key_is_refused_by_the_data_plane() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 200);

    let revoked = modelgate(&gw, &["keys", "revoke", &p.key_id], &[])
        .await
        .ok();
    let status = revoked
        .stdout
        .lines()
        .find(|l| l.starts_with("STATUS"))
        .unwrap_or_else(|| panic!("{}", revoked.stdout));
    assert!(status.ends_with("revoked"), "{}", revoked.stdout);

    eventually(
        Duration::from_secs(5),
        "the revoked key to be refused",
        || async { (gw.say_hi(&p.key, "smart").await.status() == 401).then_some(()) },
    )
    .await;
    let got = modelgate(&gw, &["keys", "list", "--output", "json"], &[])
        .await
        .json();
    let key = got
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == p.key_id.as_str())
        .unwrap();
    assert!(!key["revoked_at"].is_null(), "{key}");

    gw.shutdown().await;
}

#[tokio::test]
async fn after_nodes_wait_a_revoked_key_is_refused_on_the_first_try() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 200);

    modelgate(&gw, &["keys", "revoke", &p.key_id], &[])
        .await
        .ok();
    let waited = modelgate(&gw, &["nodes", "wait", "--timeout-secs", "30"], &[])
        .await
        .ok();
    assert_eq!(
        waited.stdout, "1 connected node serves the current config\n",
        "{}",
        waited.stderr
    );
    // No polling: once `nodes wait` returned, the node serves the revocation.
    assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 401);

    let nodes = modelgate(&gw, &["nodes", "list", "--output", "json"], &[])
        .await
        .json();
    let node = &nodes.as_array().unwrap()[0];
    assert!(
        node["applied_version"].as_i64() >= node["target_version"].as_i64()
            && node["target_version"].as_i64() > Some(0),
        "{node}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn cli_rotates_disables_and_enables_a_key_and_reads_users_and_the_audit_log() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let user = modelgate(
        &gw,
        &[
            "users",
            "create",
            "--email",
            "cli@example.com",
            "--name",
            "Cli",
            "--output",
            "json",
        ],
        &[],
    )
    .await
    .json();
    assert_eq!(user["email"], "cli@example.com");
    let users = modelgate(&gw, &["users", "list", "--output", "json"], &[])
        .await
        .json();
    assert!(users
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["id"] == user["id"]));

    let got = modelgate(&gw, &["keys", "get", &p.key_id, "--output", "json"], &[])
        .await
        .json();
    assert_eq!(got["status"], "active");
    assert!(got.get("key_secret").is_none());

    let rotated = modelgate(
        &gw,
        &[
            "keys",
            "rotate",
            &p.key_id,
            "--grace-seconds",
            "0",
            "--output",
            "json",
        ],
        &[],
    )
    .await
    .json();
    let new_secret = rotated["key_secret"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(5), "the new secret to work", || async {
        (gw.say_hi(&new_secret, "smart").await.status() == 200).then_some(())
    })
    .await;
    assert_eq!(
        gw.say_hi(&p.key, "smart").await.status(),
        401,
        "no grace period: the old secret stops at once"
    );

    modelgate(&gw, &["keys", "disable", &p.key_id], &[])
        .await
        .ok();
    eventually(
        Duration::from_secs(2),
        "the disabled key to be refused",
        || async { (gw.say_hi(&new_secret, "smart").await.status() == 401).then_some(()) },
    )
    .await;
    modelgate(&gw, &["keys", "enable", &p.key_id], &[])
        .await
        .ok();
    eventually(
        Duration::from_secs(2),
        "the enabled key to work",
        || async { (gw.say_hi(&new_secret, "smart").await.status() == 200).then_some(()) },
    )
    .await;

    let audit = modelgate(
        &gw,
        &[
            "audit",
            "list",
            "--resource-type",
            "key",
            "--resource-id",
            &p.key_id,
            "--output",
            "json",
        ],
        &[],
    )
    .await
    .json();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["key.create", "key.rotate", "key.disable", "key.enable"]
    );
    let table = modelgate(&gw, &["audit", "list"], &[]).await.ok();
    assert!(table.stdout.contains("key.rotate"), "{}", table.stdout);
    assert!(!table.stdout.contains(&new_secret));
    gw.shutdown().await;
}

#[tokio::test]
async fn cli_imports_a_price_file_and_prints_the_diff() {
    use crate::pricing::{CSV_SAMPLE, LITELLM_SAMPLE};
    let gw = Gateway::start().await;

    // A dry run prints the diff as a table and changes nothing.
    let dry = modelgate(&gw, &["models", "import", LITELLM_SAMPLE, "--dry-run"], &[])
        .await
        .ok();
    assert!(
        dry.stdout
            .starts_with("dry run (nothing changed): 7 added, 0 changed, 0 unchanged, 2 skipped\n"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("ACTION"), "{}", dry.stdout);
    let chat_line = dry
        .stdout
        .lines()
        .find(|l| l.contains("sample-chat"))
        .unwrap();
    assert!(
        chat_line.starts_with("added") && chat_line.contains("input_micros_per_mtok=2500000"),
        "{chat_line}"
    );
    assert!(
        dry.stdout
            .lines()
            .any(|l| l.starts_with("skipped") && l.contains("sample-too-precise")),
        "{}",
        dry.stdout
    );
    let listed = modelgate(&gw, &["models", "list", "--output", "json"], &[])
        .await
        .json();
    assert_eq!(listed, serde_json::json!([]));

    // The real import, as JSON (the format comes from the file's extension).
    let diff = modelgate(
        &gw,
        &["models", "import", LITELLM_SAMPLE, "--output", "json"],
        &[],
    )
    .await
    .json();
    assert_eq!(diff["dry_run"], false);
    assert_eq!(diff["added"].as_array().unwrap().len(), 7, "{diff}");
    let listed = modelgate(&gw, &["models", "list", "--output", "json"], &[])
        .await
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 7);

    // The equivalent CSV (format given explicitly) changes nothing.
    let again = modelgate(
        &gw,
        &["models", "import", CSV_SAMPLE, "--format", "csv"],
        &[],
    )
    .await
    .ok();
    assert!(
        again
            .stdout
            .starts_with("0 added, 0 changed, 7 unchanged, 1 skipped\n"),
        "{}",
        again.stdout
    );

    // A file whose format cannot be told is refused before any call.
    let unknown = modelgate(&gw, &["models", "import", "prices.txt"], &[]).await;
    assert_eq!(unknown.code, Some(1));
    assert!(unknown.stderr.contains("--format"), "{}", unknown.stderr);
    gw.shutdown().await;
}

#[tokio::test]
async fn cli_creates_an_eval_key_and_explains_its_route() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let key = modelgate(
        &gw,
        &[
            "keys",
            "create",
            "--team-id",
            &p.team_id,
            "--name",
            "evals",
            "--traffic-class",
            "eval",
            "--allow-traffic-class",
            "eval",
            "--output",
            "json",
        ],
        &[],
    )
    .await
    .json();
    assert_eq!(key["traffic_class"], "eval");
    assert_eq!(key["allowed_traffic_classes"], serde_json::json!(["eval"]));
    let key_id = key["id"].as_str().unwrap().to_owned();
    gw.wait_for_config().await;

    let explained = modelgate(
        &gw,
        &[
            "routes", "explain", "--key-id", &key_id, "--model", "smart", "--output", "json",
        ],
        &[],
    )
    .await
    .json();
    assert_eq!(explained["allowed"], true, "{explained}");
    assert_eq!(explained["traffic_class"], "eval");
    assert_eq!(
        explained["candidates"][0]["deployment_id"],
        format!("{}/gpt-4o-2024", p.provider_id)
    );

    // As a table, a refusal reads as one: the class this key may not use.
    let table = modelgate(
        &gw,
        &[
            "routes",
            "explain",
            "--key-id",
            &key_id,
            "--model",
            "smart",
            "--traffic-class",
            "batch",
        ],
        &[],
    )
    .await
    .ok();
    assert!(
        table.stdout.contains("traffic_class_not_allowed"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("ALLOWED"), "{}", table.stdout);
    gw.shutdown().await;
}

#[tokio::test]
async fn budgets_are_created_listed_shown_updated_and_deleted_from_the_cli() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let created = modelgate(
        &gw,
        &[
            "budgets",
            "create",
            "--team-id",
            &p.team_id,
            "--amount-micros",
            "2000000",
            "--period",
            "month",
            "--enforcement",
            "hard",
            "--output",
            "json",
        ],
        &[],
    )
    .await
    .json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["scope"]["team_id"], p.team_id.as_str());

    let listed = modelgate(&gw, &["budgets", "list", "--team-id", &p.team_id], &[])
        .await
        .ok();
    assert!(listed.stdout.contains(&id), "{}", listed.stdout);
    assert!(listed.stdout.contains("AMOUNT_MICROS"), "{}", listed.stdout);

    let updated = modelgate(
        &gw,
        &[
            "budgets",
            "update",
            &id,
            "--amount-micros",
            "3000000",
            "--output",
            "json",
        ],
        &[],
    )
    .await
    .json();
    assert_eq!(updated["amount_micros"], 3_000_000);
    let shown = modelgate(&gw, &["budgets", "show", &id, "--output", "json"], &[])
        .await
        .json();
    assert_eq!(shown["amount_micros"], 3_000_000);

    modelgate(&gw, &["budgets", "delete", &id], &[]).await.ok();
    let gone = modelgate(&gw, &["budgets", "show", &id], &[]).await;
    assert_ne!(gone.code, Some(0));
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
    gw.shutdown().await;
}

#[tokio::test]
async fn cli_creates_a_rate_limit_that_the_data_plane_enforces_then_deletes_it() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let created = modelgate(
        &gw,
        &[
            "limits", "create", "--key-id", &p.key_id, "--rpm", "1", "--output", "json",
        ],
        &[],
    )
    .await
    .json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["rpm"], 1);
    gw.wait_for_config().await;
    let first = gw.say_hi(&p.key, "smart").await.status().as_u16();
    let second = gw.say_hi(&p.key, "smart").await.status().as_u16();
    // Two requests in a row fall in one minute, or the second in the next one.
    assert_eq!(first, 200);
    assert!(second == 429 || second == 200, "{second}");

    let table = modelgate(&gw, &["limits", "list"], &[]).await.ok();
    assert!(table.stdout.contains(&id), "{}", table.stdout);
    assert!(
        table.stdout.contains(&format!("key {}", p.key_id)),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("requests "), "{}", table.stdout);

    let refused = modelgate(&gw, &["limits", "create", "--team-id", &p.team_id], &[]).await;
    assert_eq!(refused.code, Some(1), "nothing limited is refused");
    assert!(refused.stderr.contains("rpm"), "{}", refused.stderr);

    modelgate(&gw, &["limits", "delete", &id], &[]).await.ok();
    let gone = modelgate(&gw, &["limits", "show", &id], &[]).await;
    assert_eq!(gone.code, Some(1));
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
    gw.wait_for_config().await;
    for _ in 0..3 {
        assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 200);
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn cli_lists_the_usage_quarantine_with_node_and_reason() {
    use crate::usage_ingest::{event_at, new_key, send};
    use modelgate_proto::usage::v1::UsageBatch;

    let gw = Gateway::start().await;
    let k = new_key(&gw, None).await;
    let now = chrono::Utc::now().timestamp_millis();
    let bad = event_at(&k, "cli-quarantine", -42, now - 1_000);
    let acks = send(
        &gw,
        vec![UsageBatch {
            batch_id: "b".into(),
            node_id: "node-cli".into(),
            resent: false,
            events: vec![bad.clone()],
        }],
    )
    .await;
    assert_eq!(acks[0].quarantined, 1);

    let rows = modelgate(&gw, &["usage", "quarantine", "--output", "json"], &[])
        .await
        .json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["event_id"], bad.id.as_str());
    let table = modelgate(&gw, &["usage", "quarantine"], &[]).await.ok();
    assert!(table.stdout.contains("node-cli"), "{}", table.stdout);
    assert!(
        table.stdout.contains("cost_micros -42 is negative"),
        "{}",
        table.stdout
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn cli_sets_the_rollout_policy_previews_and_rolls_back_a_rollout() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let dir = crate::support::temp_dir("cli-rollout");
    let plan = dir.join("plan.json");
    std::fs::write(
        &plan,
        r#"{"waves": [{"selector": "canary=true", "bake_s": 60}, {"selector": "*"}],
            "gates": {"min_requests": 1000000}}"#,
    )
    .unwrap();
    let path = plan.to_str().unwrap();
    let set = modelgate(
        &gw,
        &["rollouts", "set-policy", path, "--output", "json"],
        &[],
    )
    .await
    .json();
    assert_eq!(set["plan"]["waves"][0]["selector"], "canary=true");
    assert_eq!(set["plan"]["gates"]["window_s"], 300, "defaults filled in");
    let before = gw.dp().config_version();

    // A policy change: a new route. The gateway's node (no canary label) keeps its version.
    let (status, body) = gw
        .admin(
            reqwest::Method::POST,
            "/routes",
            Some(serde_json::json!({"alias": "fast", "deployments": [{"provider_id": p.provider_id, "model": "gpt-4o-mini"}]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let list = modelgate(&gw, &["rollouts", "list", "--output", "json"], &[])
        .await
        .json();
    assert_eq!(list[0]["status"], "running", "{list}");
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let diff = modelgate(&gw, &["rollouts", "diff", &id, "--output", "json"], &[])
        .await
        .json();
    assert_eq!(
        diff,
        serde_json::json!([{"kind": "route", "id": "fast", "change": "added"}])
    );
    let table = modelgate(&gw, &["rollouts", "show", &id], &[])
        .await
        .ok()
        .stdout;
    assert!(
        table.contains("running") && table.contains("1/2 (canary=true)"),
        "{table}"
    );
    assert_eq!(gw.dp().config_version(), before);
    let refused = modelgate(&gw, &["rollouts", "clear-policy"], &[]).await;
    assert_eq!(refused.code, Some(1));
    assert!(
        refused.stderr.contains("rollout is in progress"),
        "{}",
        refused.stderr
    );

    let back = modelgate(&gw, &["rollouts", "rollback", &id, "--output", "json"], &[])
        .await
        .json();
    assert_eq!(back["status"], "rolled_back");
    // With the rollout over, the policy can be removed (it cannot while one is in progress).
    let cleared = modelgate(&gw, &["rollouts", "clear-policy", "--output", "json"], &[])
        .await
        .json();
    assert!(cleared["plan"].is_null());
    let shown = modelgate(&gw, &["rollouts", "policy"], &[])
        .await
        .ok()
        .stdout;
    assert!(shown.contains("every change goes to every node"), "{shown}");
    let nodes = modelgate(&gw, &["nodes", "list", "--output", "json"], &[])
        .await
        .json();
    assert_eq!(nodes[0]["drifting"], false, "{nodes}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_balance_is_credited_and_shown_and_a_statement_printed_from_the_cli() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let top_up = modelgate(
        &gw,
        &[
            "balances",
            "adjust",
            &p.team_id,
            "--amount-micros",
            "2500000",
            "--reason",
            "prepaid order 7",
            "--output",
            "json",
        ],
        &[],
    )
    .await
    .json();
    assert_eq!(top_up["credited_micros"], 2_500_000, "{top_up}");
    assert_eq!(top_up["mode"], "refuse", "{top_up}");
    let debit = modelgate(
        &gw,
        &[
            "balances",
            "adjust",
            &p.team_id,
            "--kind",
            "adjustment",
            "--amount-micros",
            "-500000",
            "--reason",
            "correction",
            "--output",
            "json",
        ],
        &[],
    )
    .await
    .json();
    assert_eq!(debit["balance_micros"], 2_000_000, "{debit}");

    let shown = modelgate(&gw, &["balances", "show", &p.team_id], &[])
        .await
        .ok();
    assert!(shown.stdout.contains("2000000"), "{}", shown.stdout);
    assert!(shown.stdout.contains("prepaid order 7"), "{}", shown.stdout);
    assert!(shown.stdout.contains("correction"), "{}", shown.stdout);

    gw.wait_for_config().await;
    // Under a refusing balance a request needs an output bound, like under a hard budget.
    let served = gw
        .chat(
            &p.key,
            serde_json::json!({"model": "smart", "max_tokens": 10,
                               "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let month = modelgate_shared::clock::Clock::now(gw.clock.as_ref())
        .format("%Y-%m")
        .to_string();
    let statement = modelgate(
        &gw,
        &[
            "statements",
            "show",
            "--team-id",
            &p.team_id,
            "--month",
            &month,
            "--output",
            "json",
        ],
        &[],
    )
    .await
    .json();
    assert_eq!(statement["credits_micros"], 2_000_000, "{statement}");
    let csv = modelgate(
        &gw,
        &[
            "statements",
            "show",
            "--team-id",
            &p.team_id,
            "--month",
            &month,
            "--csv",
        ],
        &[],
    )
    .await
    .ok();
    assert!(
        csv.stdout.starts_with("record,team_id,month,model"),
        "{}",
        csv.stdout
    );
    assert!(csv.stdout.contains("prepaid order 7"), "{}", csv.stdout);

    // Bad input comes back on stderr, naming the field.
    let bad = modelgate(
        &gw,
        &[
            "balances",
            "adjust",
            &p.team_id,
            "--amount-micros",
            "-1",
            "--reason",
            "x",
        ],
        &[],
    )
    .await;
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("amount_micros"), "{}", bad.stderr);
    gw.shutdown().await;
}

#[tokio::test]
async fn cli_fields_feed_one_command_into_the_next_without_jq() {
    let (_upstream, gw, _p) = gateway_with_smart_route().await;

    let team = modelgate(
        &gw,
        &["teams", "create", "--name", "field-team", "--field", "id"],
        &[],
    )
    .await
    .ok();
    let team_id = team.stdout.strip_suffix('\n').unwrap().to_owned();
    assert!(
        !team_id.is_empty() && !team_id.contains(['\t', '\n', ' ']),
        "{:?}",
        team.stdout
    );

    // `read -r KEY_ID KEY < <(modelgate keys create … --field id --field key_secret)`.
    let created = modelgate(
        &gw,
        &[
            "keys",
            "create",
            "--team-id",
            &team_id,
            "--name",
            "field-app",
            "--allowed-model",
            "smart",
            "--field",
            "id",
            "--field",
            "key_secret",
        ],
        &[],
    )
    .await
    .ok();
    assert!(created.stderr.contains("shown once"), "{}", created.stderr);
    let (key_id, secret) = created
        .stdout
        .strip_suffix('\n')
        .and_then(|line| line.split_once('\t'))
        .unwrap_or_else(|| panic!("{:?}", created.stdout));
    assert!(!secret.contains('\t'), "{:?}", created.stdout);

    let shown = modelgate(
        &gw,
        &[
            "keys", "get", key_id, "--field", "team_id", "--field", "name",
        ],
        &[],
    )
    .await
    .ok();
    assert_eq!(shown.stdout, format!("{team_id}\tfield-app\n"));

    gw.wait_for_config().await;
    assert_eq!(gw.say_hi(secret, "smart").await.status(), 200);

    let teams = modelgate(
        &gw,
        &["teams", "list", "--field", "id", "--field", "name"],
        &[],
    )
    .await
    .ok();
    assert!(
        teams
            .stdout
            .lines()
            .any(|l| l == format!("{team_id}\tfield-team")),
        "{}",
        teams.stdout
    );

    let unknown = modelgate(&gw, &["teams", "list", "--field", "nmae"], &[]).await;
    assert_eq!(unknown.code, Some(1), "{}", unknown.stdout);
    assert!(unknown.stdout.is_empty(), "{}", unknown.stdout);
    assert!(
        unknown.stderr.starts_with("error: --field nmae:") && unknown.stderr.contains("name"),
        "{}",
        unknown.stderr
    );

    gw.shutdown().await;
}
