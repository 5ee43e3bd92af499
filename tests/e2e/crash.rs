//! A data plane process killed with SIGKILL under load loses no usage event of a request whose
//! response the client received, and counts none twice: events are in the spool before the last
//! byte of their response is sent, and the restarted process ships what is left.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::gateway_with_smart_route;
use crate::support::{eventually, temp_dir, Gateway};

pub struct DataPlaneProcess {
    pub child: Child,
    pub base_url: String,
}

impl Drop for DataPlaneProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--tls-ca`, `--tls-cert`, `--tls-key` for these files.
fn tls_args(files: &modelgate_shared::tls::TlsFiles) -> Vec<std::ffi::OsString> {
    vec![
        "--tls-ca".into(),
        files.ca.clone().into(),
        "--tls-cert".into(),
        files.cert.clone().into(),
        "--tls-key".into(),
        files.key.clone().into(),
    ]
}

fn spawn_data_plane(grpc: std::net::SocketAddr, dir: &Path) -> DataPlaneProcess {
    spawn_data_plane_node(grpc, dir, "crash-node")
}

/// The real `modelgate data-plane` process, node `node`, over mutual TLS to `grpc`.
pub fn spawn_data_plane_node(
    grpc: std::net::SocketAddr,
    dir: &Path,
    node: &str,
) -> DataPlaneProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args([
            "data-plane",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--node-id",
            node,
            "--data-dir",
        ])
        .arg(dir)
        .args(["--control-plane-url", &crate::support::pki::grpc_url(grpc)])
        .args(tls_args(
            &crate::support::pki::Pki::shared().node(node, &[]),
        ))
        // The same key across restarts, so the restarted process reads its last-known-good file.
        .env("MODELGATE_LKG_KEY", "5a".repeat(32))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning modelgate data-plane");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base_url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("MODELGATE_BASE_URL=").map(str::to_owned))
        .expect("the data plane printed its base URL");
    std::thread::spawn(move || lines.for_each(drop));
    DataPlaneProcess { child, base_url }
}

/// Every usage row of a node, counted by request id.
async fn rows_by_request(gw: &Gateway, node: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut after = String::new();
    loop {
        let (status, page) = gw
            .admin(
                reqwest::Method::GET,
                &format!("/usage/events?limit=1000{after}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        for row in page["data"].as_array().unwrap() {
            if row["node_id"] == node {
                *counts
                    .entry(row["request_id"].as_str().unwrap().to_owned())
                    .or_insert(0) += 1;
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => return counts,
        }
    }
}

#[tokio::test]
async fn kill_9_under_load_loses_no_usage_event_of_a_completed_request() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let dir = temp_dir("crash");
    let dp = tokio::task::spawn_blocking({
        let dir = dir.clone();
        let grpc = gw.grpc_addr;
        move || spawn_data_plane(grpc, &dir)
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/chat/completions", dp.base_url);
    let body = json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]});
    eventually(
        Duration::from_secs(10),
        "the data plane process to serve",
        || async {
            let r = http
                .post(&url)
                .bearer_auth(&p.key)
                .json(&body)
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;

    // Load from 16 clients; remember every request whose full response arrived.
    let completed = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (http, url, key, body, completed) = (
            http.clone(),
            url.clone(),
            p.key.clone(),
            body.clone(),
            completed.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let Ok(resp) = http.post(&url).bearer_auth(&key).json(&body).send().await else {
                    return;
                };
                let id = resp
                    .headers()
                    .get("x-request-id")
                    .map(|v| v.to_str().unwrap().to_owned());
                let status = resp.status();
                let Ok(full) = resp.bytes().await else { return };
                if status == 200 && serde_json::from_slice::<Value>(&full).is_ok() {
                    completed.lock().unwrap().push(id.unwrap());
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut dp = dp;
    dp.child.kill().unwrap(); // SIGKILL
    dp.child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let completed = completed.lock().unwrap().clone();
    assert!(
        completed.len() > 20,
        "the load produced too few requests to prove anything: {}",
        completed.len()
    );

    // Restart on the same data directory: the spool is recovered and shipped.
    let _restarted = tokio::task::spawn_blocking({
        let grpc = gw.grpc_addr;
        move || spawn_data_plane(grpc, &dir)
    })
    .await
    .unwrap();
    let counts = eventually(
        Duration::from_secs(30),
        "every completed request's usage row",
        || async {
            let counts = rows_by_request(&gw, "crash-node").await;
            completed
                .iter()
                .all(|id| counts.contains_key(id))
                .then_some(counts)
        },
    )
    .await;
    for id in &completed {
        assert_eq!(
            counts[id], 1,
            "request {id} must have exactly one usage row"
        );
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "no request may be counted twice"
    );
    gw.shutdown().await;
}
