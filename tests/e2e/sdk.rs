//! `modelgate up` as a user runs it (the real binary, embedded SQLite, the built-in mock
//! provider), and the official OpenAI, Anthropic and Google GenAI Python SDKs against it
//! (`tests/sdk/`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::support::request_id;
use crate::support::temp_dir;

/// A `modelgate up` child process, killed on drop.
pub struct Up {
    child: Child,
    /// The `MODELGATE_…` variables it printed, except `MODELGATE_GRPC_ADDR`.
    pub env: HashMap<String, String>,
    /// Its standard output up to and including the curl example (two lines).
    pub printed: Vec<String>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Up {
    /// Stops it as Ctrl-C would (SIGTERM: a graceful shutdown that gives up its claim on the
    /// SQLite database) and waits until it has exited successfully.
    pub fn stop(mut self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success(), "kill -TERM: {term}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "modelgate up did not stop on SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(status.success(), "modelgate up exited with {status}");
    }
}

/// A variable `modelgate up` prints, `export MODELGATE_NAME=value`: its name and value (a value
/// in single quotes, as `up` writes one a shell would otherwise split, unquoted).
pub fn up_var(line: &str) -> Option<(&str, String)> {
    let (name, value) = line.strip_prefix("export ")?.split_once('=')?;
    if !name.starts_with("MODELGATE_") {
        return None;
    }
    let value = match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Some(quoted) => quoted.replace(r"'\''", "'"),
        None => value.to_owned(),
    };
    Some((name, value))
}

/// `modelgate up` on a new data directory, all ports chosen by the system, no real provider.
pub fn modelgate_up() -> Up {
    modelgate_up_in(&temp_dir("up"), |_| {})
}

/// `modelgate up` on `dir` (new or used before), all ports chosen by the system, with none of
/// the real providers' keys or base URLs from the test's environment; `configure` adds to the
/// command (arguments, variables, where standard error goes) before it is spawned. Returns once
/// up has printed its banner.
pub fn modelgate_up_in(dir: &Path, configure: impl FnOnce(&mut Command)) -> Up {
    let mut command = Command::new(env!("CARGO_BIN_EXE_modelgate"));
    command
        .args(["up", "--data-dir"])
        .arg(dir)
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
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for var in [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "MODELGATE_OPENAI_BASE_URL",
        "MODELGATE_ANTHROPIC_BASE_URL",
        "MODELGATE_GEMINI_BASE_URL",
        "MODELGATE_MASTER_KEY",
    ] {
        command.env_remove(var);
    }
    configure(&mut command);
    let mut child = command.spawn().expect("spawning modelgate up");
    let stdout = child.stdout.take().unwrap();
    let mut env = HashMap::new();
    let mut printed = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some((k, v)) = up_var(&line) {
            env.insert(k.to_owned(), v);
        }
        // The curl example is the banner's last part: two lines.
        let done = printed
            .last()
            .is_some_and(|l: &String| l.starts_with("curl "));
        printed.push(line);
        if done {
            break;
        }
    }
    // Keep reading what follows: a closed pipe must not be what the test observes.
    std::thread::spawn(move || lines.for_each(drop));
    for k in [
        "MODELGATE_BASE_URL",
        "MODELGATE_API_KEY",
        "MODELGATE_ADMIN_URL",
        "MODELGATE_GRPC_ADDR",
        "MODELGATE_ADMIN_TOKEN",
    ] {
        assert!(
            env.contains_key(k),
            "modelgate up did not print {k}: {printed:#?}"
        );
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
    Up {
        child,
        env,
        printed,
    }
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
