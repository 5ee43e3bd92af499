//! What `deploy/` ships works: the Kubernetes manifests are valid against the Kubernetes API's
//! schemas (checked offline by `deploy/k8s/validate.sh`, which installs the PyPI package
//! `kubernetes-validate`; without it the test fails), the compose file's commands, variables
//! and certificate paths are ones the binary accepts (no container engine needed), and
//! `deploy/local-topology.sh` starts the topology as plain processes — a control plane and data
//! planes in two regions over mutual TLS — that serves a request through each region.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{eventually, request_id, temp_dir, TestDb};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `deploy/k8s/validate.sh` with `files` (none: the shipped manifests).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let output = Command::new("bash")
        .arg(repo().join("deploy/k8s/validate.sh"))
        .args(files)
        .output()
        .expect("running deploy/k8s/validate.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schemas_offline() {
    let (ok, out) = validate(&[]);
    assert!(ok, "the manifests do not validate:\n{out}");
    for resource in [
        "namespace/modelgate",
        "secret/modelgate-keys",
        "secret/modelgate-fleet-ca",
        "secret/modelgate-control-plane-grpc",
        "secret/modelgate-http-tls",
        "deployment/modelgate-control-plane",
        "service/modelgate-control-plane",
        "poddisruptionbudget/modelgate-control-plane",
    ] {
        assert!(
            out.contains(&format!("passed for resource {resource} ")),
            "{resource}:\n{out}"
        );
    }
    for region in ["eu-west", "us-east"] {
        for kind in [
            "secret/modelgate-node-",
            "deployment/modelgate-data-plane-",
            "service/modelgate-data-plane-",
            "horizontalpodautoscaler/modelgate-data-plane-",
            "poddisruptionbudget/modelgate-data-plane-",
        ] {
            let resource = format!("{kind}{region}");
            assert!(
                out.contains(&format!("passed for resource {resource} ")),
                "{resource}:\n{out}"
            );
        }
    }
    let cp = std::fs::read_to_string(repo().join("deploy/k8s/20-control-plane.yaml")).unwrap();
    assert!(cp.contains("replicas: 2"));
    for probe in ["readinessProbe:", "livenessProbe:"] {
        assert!(cp.contains(probe), "{probe}");
    }
    // TLS on the admin API and the proxy: the probes speak HTTPS, the certificates are mounted.
    for file in [
        "20-control-plane.yaml",
        "30-data-plane-eu-west.yaml",
        "30-data-plane-us-east.yaml",
    ] {
        let text = std::fs::read_to_string(repo().join("deploy/k8s").join(file)).unwrap();
        assert!(text.contains("scheme: HTTPS"), "{file}");
        assert!(text.contains("MODELGATE_HTTP_TLS_CERT"), "{file}");
        assert!(text.contains("MODELGATE_TLS_CA"), "{file}");
    }

    // The checker is strict: a misspelt field fails it.
    let broken = temp_dir("k8s").join("broken.yaml");
    std::fs::write(
        &broken,
        cp.replace("failureThreshold: 2", "failureThreshhold: 2"),
    )
    .unwrap();
    let (ok, out) = validate(&[broken]);
    assert!(!ok, "a misspelt field passed:\n{out}");
    assert!(out.contains("failureThreshhold"), "{out}");
}

/// A base port with the 22 ports the topology uses free (bound and released at once).
fn free_port_base() -> u16 {
    for attempt in 0..200u16 {
        let slot = (std::process::id() as u16).wrapping_add(attempt.wrapping_mul(37)) % 400;
        let base = 20_000 + slot * 50;
        let ports = [0, 1, 2, 3, 4, 5, 10, 11, 20, 21];
        let all_free = ports
            .iter()
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no free port range for the topology")
}

/// Stops the topology's processes when the test ends, whatever happened.
struct Topology {
    dir: PathBuf,
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("deploy/local-topology.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

#[tokio::test]
async fn local_topology_serves_a_request_through_each_region_over_mutual_tls() {
    let db = TestDb::new().await;
    let dir = temp_dir("topology");
    let base = free_port_base();
    let output = tokio::task::spawn_blocking({
        let (dir, url) = (dir.clone(), db.url.clone());
        move || {
            Command::new("bash")
                .arg(repo().join("deploy/local-topology.sh"))
                .arg("start")
                .arg(&dir)
                .env("MODELGATE_DATABASE_URL", url)
                .env("MODELGATE_BIN", env!("CARGO_BIN_EXE_modelgate"))
                .env("MODELGATE_TOPOLOGY_PORT_BASE", base.to_string())
                .env("RUST_LOG", "warn")
                .output()
                .expect("running deploy/local-topology.sh")
        }
    })
    .await
    .unwrap();
    let _topology = Topology { dir: dir.clone() };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "local-topology.sh start failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let env: HashMap<&str, &str> = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("MODELGATE_"))
        .collect();
    let admin_url = env["MODELGATE_ADMIN_URL"];
    let token = std::fs::read_to_string(env["MODELGATE_ADMIN_TOKEN_FILE"]).unwrap();
    let token = token.trim();
    let http = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut r = http
            .request(method, format!("{admin_url}/admin/v1{path}"))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Provision through the admin API: a team, a key, the mock provider, a priced route.
    let (s, team) = admin(
        reqwest::Method::POST,
        "/teams",
        Some(json!({"name": "topology"})),
    )
    .await;
    assert_eq!(s, 201, "{team}");
    let (s, key) = admin(
        reqwest::Method::POST,
        "/keys",
        Some(json!({"team_id": team["id"], "name": "topology-key"})),
    )
    .await;
    assert_eq!(s, 201, "{key}");
    let (s, provider) = admin(
        reqwest::Method::POST,
        "/providers",
        Some(json!({"name": "mock", "kind": "mock"})),
    )
    .await;
    assert_eq!(s, 201, "{provider}");
    let (s, price) = admin(
        reqwest::Method::POST,
        "/models",
        Some(json!({"model": "mock-small", "input_micros_per_mtok": 150_000, "output_micros_per_mtok": 600_000})),
    )
    .await;
    assert!(s == 200 || s == 201, "{price}");
    let (s, route) = admin(
        reqwest::Method::POST,
        "/routes",
        Some(json!({"alias": "mock-small", "deployments": [{"provider_id": provider["id"], "model": "mock-small"}]})),
    )
    .await;
    assert_eq!(s, 201, "{route}");

    // Both regions' nodes apply the latest published config (read from the control plane's
    // metrics), so the new key is known everywhere before it is used.
    let metrics_url = format!("http://127.0.0.1:{}/metrics", base + 2);
    let published = http
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let published: i64 = published
        .lines()
        .find_map(|l| l.strip_prefix("modelgate_cp_snapshot_version "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "both regions to apply the config",
        || async {
            let (_, nodes) = admin(reqwest::Method::GET, "/nodes", None).await;
            let nodes = nodes["data"].as_array()?.clone();
            let applied: Vec<(String, i64)> = nodes
                .iter()
                .filter(|n| n["connected"] == true)
                .map(|n| {
                    (
                        n["labels"]["region"].as_str().unwrap_or("").to_owned(),
                        n["applied_version"].as_i64().unwrap_or(0),
                    )
                })
                .collect();
            let ready = |region: &str| applied.iter().any(|(r, v)| r == region && *v >= published);
            (ready("eu-west") && ready("us-east")).then_some(())
        },
    )
    .await;

    // One request through each region, metered with the region of the node that served it.
    let secret = key["key_secret"].as_str().unwrap();
    for (region, base_url) in [
        ("eu-west", env["MODELGATE_BASE_URL_EU_WEST"]),
        ("us-east", env["MODELGATE_BASE_URL_US_EAST"]),
    ] {
        let resp = http
            .post(format!("{base_url}/chat/completions"))
            .bearer_auth(secret)
            .json(
                &json!({"model": "mock-small", "messages": [{"role": "user", "content": "hello"}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{region}");
        let id = request_id(&resp);
        let row = eventually(
            Duration::from_secs(20),
            "the request's ledger row",
            || async {
                let (s, row) = admin(reqwest::Method::GET, &format!("/requests/{id}"), None).await;
                (s == 200).then_some(row)
            },
        )
        .await;
        assert_eq!(row["node_id"], format!("{region}-1"), "{row:#}");
        assert_eq!(row["region"], region, "{row:#}");
        assert!(row["cost_micros"].as_i64().unwrap() > 0, "{row:#}");
    }
    drop(_topology);
    db.drop_database().await;
}

/// `deploy/compose.yaml` as JSON, read with PyYAML from the manifest checker's virtualenv
/// (`validate.sh --install` makes it; it follows YAML anchors and merge keys as compose does).
fn compose_file() -> Value {
    let install = Command::new("bash")
        .arg(repo().join("deploy/k8s/validate.sh"))
        .arg("--install")
        .output()
        .expect("running deploy/k8s/validate.sh --install");
    assert!(
        install.status.success(),
        "installing the checker's virtualenv failed:\n{}",
        String::from_utf8_lossy(&install.stderr)
    );
    let venv = std::env::var_os("MODELGATE_K8S_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/k8s-venv"));
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(repo().join("deploy/compose.yaml"))
        .output()
        .expect("running the virtualenv's python");
    assert!(
        out.status.success(),
        "deploy/compose.yaml does not parse:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The compose file without a container engine: the `certs` service's script runs as written
/// against the real binary (with a temporary directory for the `/certs` volume) and makes every
/// certificate file the other services name; each plane's command line and `MODELGATE_*`
/// variable is one the binary accepts (an unknown flag makes `--help` after it fail, and
/// `--help` lists every variable the plane reads).
#[test]
fn the_compose_files_commands_variables_and_certificate_paths_are_ones_the_binary_accepts() {
    let compose = compose_file();
    let services = compose["services"].as_object().unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_modelgate"));

    let certs = temp_dir("compose-certs");
    let script = services["certs"]["command"][0]
        .as_str()
        .unwrap()
        .replace("/certs", &certs.display().to_string());
    let path_dir = temp_dir("compose-path");
    std::os::unix::fs::symlink(&bin, path_dir.join("modelgate")).unwrap();
    let path = format!(
        "{}:{}",
        path_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for run in ["first start", "restart (the CA is kept)"] {
        let out = Command::new("sh")
            .args(["-ec", &script])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the certs service's script fails on its {run}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        !certs.join("http/ca-key.pem").exists(),
        "the CA key is not left beside the HTTP certificate"
    );

    let mut planes = 0;
    for (name, service) in services {
        let Some(command) = service["command"].as_array() else {
            continue;
        };
        let args: Vec<&str> = command.iter().map(|a| a.as_str().unwrap()).collect();
        if !matches!(args.first(), Some(&"control-plane" | &"data-plane")) {
            continue;
        }
        planes += 1;
        let out = Command::new(&bin)
            .args(&args)
            .arg("--help")
            .env_clear()
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: `modelgate {}` is refused:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = service["environment"].as_object().unwrap();
        for (key, value) in env.iter().filter(|(k, _)| k.starts_with("MODELGATE_")) {
            assert!(
                help.contains(&format!("[env: {key}=")) || help.contains(&format!("[env: {key}]")),
                "{name}: `modelgate {}` does not read {key}",
                args[0]
            );
            if let Some(file) = value.as_str().and_then(|v| v.strip_prefix("/certs/")) {
                assert!(
                    certs.join(file).is_file(),
                    "{name}: {key} names /certs/{file}, which the certs service does not make"
                );
            }
        }
    }
    assert_eq!(planes, 3, "a control plane and two data planes");
}
