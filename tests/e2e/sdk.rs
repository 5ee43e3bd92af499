//! `modelgate up` as a user runs it (the real binary, embedded SQLite, the built-in mock
//! provider), and the official OpenAI, Anthropic and Google GenAI Python SDKs against it
//! (`tests/sdk/`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::support::request_id;
use crate::support::temp_dir;

/// A `modelgate up` child process, killed on drop.
pub struct Up {
    child: Child,
    pub env: HashMap<String, String>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn modelgate_up() -> Up {
    let dir = temp_dir("up");
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["up", "--data-dir"])
        .arg(&dir)
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
        .env_remove("OPENAI_API_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning modelgate up");
    let stdout = child.stdout.take().unwrap();
    let mut env = HashMap::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some((k, v)) = line.split_once('=') {
            if k.starts_with("MODELGATE_") {
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        if line.starts_with("MODELGATE_ADMIN_TOKEN=") {
            break;
        }
    }
    for k in [
        "MODELGATE_BASE_URL",
        "MODELGATE_API_KEY",
        "MODELGATE_ADMIN_URL",
        "MODELGATE_GRPC_ADDR",
        "MODELGATE_ADMIN_TOKEN",
    ] {
        assert!(env.contains_key(k), "modelgate up did not print {k}");
    }
    // The planes talk mutual TLS with up's own fleet PKI: keys 0600 in a 0700 directory.
    env.remove("MODELGATE_GRPC_ADDR")
        .unwrap()
        .parse::<std::net::SocketAddr>()
        .expect("MODELGATE_GRPC_ADDR is host:port");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let certs = dir.join("certs");
        assert_eq!(mode(&certs), 0o700);
        for key in ["ca-key.pem", "control-plane-key.pem", "local-key.pem"] {
            assert_eq!(mode(&certs.join(key)), 0o600, "{key}");
        }
    }
    Up { child, env }
}

#[tokio::test]
async fn modelgate_up_serves_the_printed_demo_key_offline_through_the_mock_provider() {
    let up = tokio::task::spawn_blocking(modelgate_up).await.unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/chat/completions", up.env["MODELGATE_BASE_URL"]))
        .bearer_auth(&up.env["MODELGATE_API_KEY"])
        .json(&json!({"model": "mock-small", "messages": [{"role": "user", "content": "ping"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert!(body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("ModelGate mock"));

    // The same demo alias answers on the Anthropic surface, in Anthropic's format.
    let resp = http
        .post(format!("{}/messages", up.env["MODELGATE_BASE_URL"]))
        .header("x-api-key", &up.env["MODELGATE_API_KEY"])
        .json(&json!({"model": "mock-small", "max_tokens": 32, "messages": [{"role": "user", "content": "ping"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let message: Value = resp.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert!(message["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("ModelGate mock"));

    let row = crate::support::eventually(
        std::time::Duration::from_secs(15),
        "the demo usage row",
        || async {
            let v: Value = http
                .get(format!(
                    "{}/admin/v1/usage/events?request_id={request_id}",
                    up.env["MODELGATE_ADMIN_URL"]
                ))
                .bearer_auth(&up.env["MODELGATE_ADMIN_TOKEN"])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["data"].as_array().and_then(|r| r.first().cloned())
        },
    )
    .await;
    assert!(
        row["cost_micros"].as_i64().unwrap() > 0,
        "the demo model is priced, never free"
    );
    drop(up);
}

#[tokio::test]
async fn official_openai_anthropic_and_google_genai_python_sdks_work_against_the_gateway() {
    let up = tokio::task::spawn_blocking(modelgate_up).await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/run.sh");
    let env = up.env.clone();
    let status = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .envs(env)
            .env("MODELGATE_MODEL", "mock-small")
            .status()
            .expect("running tests/sdk/run.sh")
    })
    .await
    .unwrap();
    assert!(status.success(), "the SDK suite failed: {status}");
    drop(up);
}
