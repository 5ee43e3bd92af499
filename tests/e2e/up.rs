//! `modelgate up` as a newcomer pastes from it: `export` lines, the env file `source` reads, logs
//! without colour codes in a file, the real providers registered from their keys, and the
//! binary installed with `cargo install`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::sdk::{modelgate_up_in, Up};
use crate::support::anthropic_upstream::AnthropicUpstream;
use crate::support::gemini_upstream::GeminiUpstream;
use crate::support::temp_dir;

/// The `MODELGATE_…` variables bash has after `source FILE`, in an otherwise empty environment.
fn sourced(file: &Path) -> std::collections::HashMap<String, String> {
    let out = Command::new("bash")
        .args(["-c", r#"source "$1" && env -0"#, "bash"])
        .arg(file)
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| k.starts_with("MODELGATE_"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn chat_status(base_url: &str, key: &str, model: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{base_url}/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "ping"}]}))
        .send()
        .await
        .unwrap()
        .status()
}

/// `up` with its standard error in `log` (info level) on `data`.
async fn up_logging_to(data: PathBuf, log: PathBuf) -> Up {
    tokio::task::spawn_blocking(move || {
        modelgate_up_in(&data, |c| {
            c.env("RUST_LOG", "info")
                .stderr(std::fs::File::create(&log).unwrap());
        })
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn up_prints_export_lines_writes_them_to_a_private_env_file_and_rewrites_it_on_restart() {
    let dir = temp_dir("up-env");
    let data = dir.join("data");
    let up = up_logging_to(data.clone(), dir.join("first.log")).await;

    // Every variable is printed as an `export` line.
    let exports: Vec<&String> = up
        .printed
        .iter()
        .filter(|l| l.contains("MODELGATE_"))
        .collect();
    assert_eq!(exports.len(), 7, "{:#?}", up.printed);
    for line in &exports {
        assert!(line.starts_with("export MODELGATE_"), "{line}");
    }

    // The env file: 0600, named in the banner, and bash's `source` gets the printed values.
    let env_file = data.join("modelgate.env");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let source_line = format!("source {}", env_file.canonicalize().unwrap().display());
    assert!(up.printed.contains(&source_line), "{:#?}", up.printed);
    let from_file = sourced(&env_file);
    for (name, value) in &up.env {
        assert_eq!(from_file.get(name), Some(value), "{name}");
    }
    assert_eq!(
        chat_status(
            &from_file["MODELGATE_BASE_URL"],
            &from_file["MODELGATE_API_KEY"],
            "mock-small"
        )
        .await,
        200
    );
    let admin = reqwest::Client::new()
        .get(format!(
            "{}/admin/v1/teams",
            from_file["MODELGATE_ADMIN_URL"]
        ))
        .bearer_auth(&from_file["MODELGATE_ADMIN_TOKEN"])
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200, "the sourced admin token works");

    // The printed "Try it" command, pasted into bash as it stands.
    let at = up
        .printed
        .iter()
        .position(|l| l.starts_with("curl "))
        .unwrap();
    let pasted = up.printed[at..].join("\n");
    assert!(pasted.contains("\n  -d "), "{pasted}");
    let out = Command::new("bash").args(["-c", &pasted]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("ModelGate mock"),
        "{answer}"
    );

    // Standard error is a file: log lines, no colour codes.
    let old_key = up.env["MODELGATE_API_KEY"].clone();
    tokio::task::spawn_blocking(move || up.stop())
        .await
        .unwrap();
    let logged = std::fs::read(dir.join("first.log")).unwrap();
    assert!(
        String::from_utf8_lossy(&logged).contains("INFO"),
        "up logged at info level"
    );
    assert!(!logged.contains(&0x1b), "an ESC byte in the log file");

    // A restart on the same data directory issues a new key and rewrites the file; the old key
    // stops working.
    let again = up_logging_to(data.clone(), dir.join("second.log")).await;
    let from_file = sourced(&env_file);
    let new_key = &again.env["MODELGATE_API_KEY"];
    assert_ne!(new_key, &old_key);
    assert_eq!(&from_file["MODELGATE_API_KEY"], new_key);
    let base_url = &again.env["MODELGATE_BASE_URL"];
    assert_eq!(chat_status(base_url, new_key, "mock-small").await, 200);
    assert_eq!(chat_status(base_url, &old_key, "mock-small").await, 401);
    tokio::task::spawn_blocking(move || again.stop())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

const ANTHROPIC_KEY: &str = "sk-ant-up-test-1111";
const GEMINI_KEY: &str = "gemini-up-test-2222";
const OPENAI_KEY: &str = "sk-openai-up-test-3333";

#[tokio::test]
async fn up_routes_claude_and_gemini_aliases_to_the_providers_whose_keys_are_set() {
    let anthropic = AnthropicUpstream::start().await;
    let gemini = GeminiUpstream::start().await;
    let (anthropic_url, gemini_url) = (anthropic.base_url(), gemini.base_url());
    let data = temp_dir("up-providers");
    let dir = data.clone();
    let up = tokio::task::spawn_blocking(move || {
        modelgate_up_in(&dir, |c| {
            c.env("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
                .env("GEMINI_API_KEY", GEMINI_KEY)
                .env("OPENAI_API_KEY", OPENAI_KEY)
                .args(["--anthropic-base-url", &anthropic_url])
                .env("MODELGATE_GEMINI_BASE_URL", &gemini_url)
                // The SDKs' own variables, which often point at the gateway itself: not read.
                .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
                .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9");
        })
    })
    .await
    .unwrap();
    for line in [
        "  mock: alias mock-small -> mock-small",
        "  openai: alias gpt-4o-mini -> gpt-4o-mini",
        "  anthropic: alias claude-haiku-4-5 -> claude-haiku-4-5",
        "  gemini: alias gemini-2.5-flash -> gemini-2.5-flash",
    ] {
        assert!(
            up.printed.iter().any(|l| l == line),
            "{line} in {:#?}",
            up.printed
        );
    }

    let (base, key) = (&up.env["MODELGATE_BASE_URL"], &up.env["MODELGATE_API_KEY"]);
    assert_eq!(chat_status(base, key, "claude-haiku-4-5").await, 200);
    assert_eq!(anthropic.calls(), 1);
    assert_eq!(anthropic.last_body()["model"], "claude-haiku-4-5");
    assert_eq!(
        anthropic.last_header("x-api-key").as_deref(),
        Some(ANTHROPIC_KEY)
    );
    assert_eq!(chat_status(base, key, "gemini-2.5-flash").await, 200);
    assert_eq!(gemini.calls(), 1);
    let received = gemini.last();
    assert!(
        received.path.contains("/models/gemini-2.5-flash:"),
        "{received:?}"
    );
    assert_eq!(received.api_key.as_deref(), Some(GEMINI_KEY));

    // Each alias is priced at its list price (micro-USD per 1M input and output tokens), and
    // OpenAI kept its public URL although OPENAI_BASE_URL was set.
    let admin = |path: &'static str| {
        let (url, token) = (
            up.env["MODELGATE_ADMIN_URL"].clone(),
            up.env["MODELGATE_ADMIN_TOKEN"].clone(),
        );
        async move {
            let page: Value = reqwest::Client::new()
                .get(format!("{url}/admin/v1{path}?limit=100"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            page["data"].as_array().unwrap().clone()
        }
    };
    let models = admin("/models").await;
    for (model, input, output) in [
        ("claude-haiku-4-5", 1_000_000, 5_000_000),
        ("gemini-2.5-flash", 300_000, 2_500_000),
        ("gpt-4o-mini", 150_000, 600_000),
    ] {
        let row = models
            .iter()
            .find(|m| m["model"] == model)
            .unwrap_or_else(|| panic!("{model} in {models:#?}"));
        assert_eq!(row["input_micros_per_mtok"], input, "{row}");
        assert_eq!(row["output_micros_per_mtok"], output, "{row}");
    }
    let providers = admin("/providers").await;
    let base_url_of = |name: &str| {
        providers
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {providers:#?}"))["base_url"]
            .clone()
    };
    assert_eq!(base_url_of("openai"), "https://api.openai.com/v1");
    assert_eq!(base_url_of("anthropic"), anthropic.base_url().as_str());
    assert_eq!(base_url_of("gemini"), gemini.base_url().as_str());
    tokio::task::spawn_blocking(move || up.stop())
        .await
        .unwrap();

    // A restart with another Anthropic key: the account now sends that one.
    let anthropic_url = anthropic.base_url();
    let again = tokio::task::spawn_blocking(move || {
        modelgate_up_in(&data, |c| {
            c.env("ANTHROPIC_API_KEY", "sk-ant-up-test-rotated")
                .args(["--anthropic-base-url", &anthropic_url]);
        })
    })
    .await
    .unwrap();
    let (base, key) = (
        &again.env["MODELGATE_BASE_URL"],
        &again.env["MODELGATE_API_KEY"],
    );
    assert_eq!(chat_status(base, key, "claude-haiku-4-5").await, 200);
    assert_eq!(anthropic.calls(), 2);
    assert_eq!(
        anthropic.last_header("x-api-key").as_deref(),
        Some("sk-ant-up-test-rotated")
    );
    tokio::task::spawn_blocking(move || again.stop())
        .await
        .unwrap();
}

#[test]
fn up_help_names_the_base_url_flags_and_shows_no_provider_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["up", "--help"])
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .env("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
        .env("GEMINI_API_KEY", GEMINI_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--anthropic-api-key",
        "--gemini-api-key",
        "--openai-base-url",
        "MODELGATE_ANTHROPIC_BASE_URL",
        "MODELGATE_GEMINI_BASE_URL",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
    for key in [OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY] {
        assert!(!help.contains(key), "a key in --help: {help}");
    }
}
