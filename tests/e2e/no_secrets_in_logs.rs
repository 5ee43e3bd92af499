//! No secret reaches the logs: the real `modelgate up` binary runs at debug log level with
//! OpenAI, Anthropic and Gemini keys while a gateway key, an admin token and a provider
//! credential are used, created, rotated and presented wrongly, and export sinks whose URLs
//! carry a password fail their deliveries; afterwards none of them appears in what it logged.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::temp_dir;

const OPENAI_KEY: &str = "sk-openai-marker-must-not-leak-4242";
const ANTHROPIC_KEY: &str = "sk-ant-marker-must-not-leak-5353";
const GEMINI_KEY: &str = "gemini-marker-must-not-leak-6464";
const CREDENTIAL: &str = "sk-provider-marker-must-not-leak-7777";
const SINK_PASSWORD: &str = "sink-password-marker-must-not-leak-3131";

#[tokio::test]
async fn debug_logs_contain_no_key_token_or_credential() {
    let dir = temp_dir("logs");
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["up", "--data-dir"])
        .arg(dir.join("data"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--cp-metrics-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .env("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
        .env("GEMINI_API_KEY", GEMINI_KEY)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let env = tokio::task::spawn_blocking(move || {
        let mut env = std::collections::HashMap::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some((k, v)) = crate::sdk::up_var(&line) {
                env.insert(k.to_owned(), v);
            }
            if line.starts_with("export MODELGATE_ADMIN_TOKEN=") {
                break;
            }
        }
        env
    })
    .await
    .unwrap();
    let (base, key, admin, token) = (
        env["MODELGATE_BASE_URL"].clone(),
        env["MODELGATE_API_KEY"].clone(),
        env["MODELGATE_ADMIN_URL"].clone(),
        env["MODELGATE_ADMIN_TOKEN"].clone(),
    );
    let http = reqwest::Client::new();
    let chat = |k: String| {
        http.post(format!("{base}/chat/completions"))
            .bearer_auth(k)
            .json(&json!({"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(chat(key.clone()).await.unwrap().status(), 200);
    // `up` prints where its metrics are served.
    let metrics = http
        .get(&env["MODELGATE_METRICS_URL"])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("modelgate_config_version "), "{metrics}");
    assert_eq!(
        chat("mg-not-a-real-key-000000000000000000000000000".into())
            .await
            .unwrap()
            .status(),
        401
    );
    let admin_post = |path: &str, body: serde_json::Value| {
        http.post(format!("{admin}/admin/v1{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let provider = admin_post(
        "/providers",
        json!({"name": "leaky?", "kind": "openai-compatible", "base_url": "http://127.0.0.1:9/v1", "credential": CREDENTIAL}),
    )
    .await
    .unwrap();
    assert_eq!(provider.status(), 201);
    let teams: serde_json::Value = http
        .get(format!("{admin}/admin/v1/teams"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let team = teams["data"][0]["id"].as_str().unwrap().to_owned();
    let created: serde_json::Value = admin_post("/keys", json!({"team_id": team, "name": "fresh"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh = created["key_secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let rotated: serde_json::Value = admin_post(&format!("/keys/{id}/rotate"), json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rotated = rotated["key_secret"].as_str().unwrap().to_owned();
    // Export sinks whose URLs carry a password, on a port nothing listens on: every delivery of
    // the usage above fails, and each failure is logged.
    for sink in [
        json!({"name": "hook", "kind": "webhook", "url": format!("http://billing:{SINK_PASSWORD}@127.0.0.1:9/in")}),
        json!({"name": "nats", "kind": "nats", "url": format!("nats://billing:{SINK_PASSWORD}@127.0.0.1:9"), "subject": "usage"}),
    ] {
        let created: serde_json::Value = admin_post("/usage/sinks", sink)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let sink: serde_json::Value = http
                .get(format!("{admin}/admin/v1/usage/sinks/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if sink["last_error"].is_string() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no delivery failure: {sink}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // Let the snapshot reach the data plane and its last-known-good file be written.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let _ = child.kill();
    let _ = child.wait();

    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("snapshot applied"),
        "debug logging ran:\n{logged}"
    );
    for (what, secret) in [
        ("the demo gateway key", key.as_str()),
        ("the admin token", token.as_str()),
        ("the OpenAI key", OPENAI_KEY),
        ("the Anthropic key", ANTHROPIC_KEY),
        ("the Gemini key", GEMINI_KEY),
        ("the provider credential", CREDENTIAL),
        ("a created key", fresh.as_str()),
        ("a rotated key", rotated.as_str()),
        ("a wrongly presented key", "mg-not-a-real-key"),
        ("a sink URL's password", SINK_PASSWORD),
    ] {
        assert!(!logged.contains(secret), "{what} appears in the logs");
    }
}
