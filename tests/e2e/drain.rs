//! A data plane process told to stop (SIGTERM, as Kubernetes and systemd do) drains: it refuses
//! new connections at once, lets the streamed requests already in flight finish, hands their
//! usage events to the control plane — one while the other is still streaming, the last before
//! it exits — and exits 0.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::crash::spawn_data_plane_node;
use crate::support::{eventually, gateway_with_smart_route, request_id, temp_dir};

/// An OpenAI-style upstream whose streamed answers are written by the test: each stream's
/// sender is handed over, so the test decides when the rest of the answer arrives.
#[derive(Clone, Default)]
struct HeldStreams {
    senders: Arc<Mutex<Vec<Chunks>>>,
}

/// Where the test writes the rest of one held stream.
type Chunks = mpsc::Sender<Result<Bytes, std::io::Error>>;

async fn held_chat(State(held): State<HeldStreams>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap();
    if request["stream"] != true {
        let answer = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ready"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}});
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(answer.to_string()))
            .unwrap();
    }
    let (tx, rx) = mpsc::channel(16);
    tx.send(Ok(sse(&chunk("Draining ")))).await.unwrap();
    held.senders.lock().unwrap().push(tx);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap()
}

fn chunk(text: &str) -> Value {
    json!({"id": "c2", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024",
           "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

async fn start_held_upstream() -> (String, HeldStreams) {
    let held = HeldStreams::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(held_chat))
        .with_state(held.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), held)
}

#[tokio::test]
async fn sigterm_drains_in_flight_streams_ships_their_usage_and_exits_zero() {
    let (_smart, gw, _) = gateway_with_smart_route().await;
    let (upstream, held) = start_held_upstream().await;
    let p = gw.provision(&upstream, "slow", "gpt-4o-2024").await;
    let dir = temp_dir("drain");
    let mut dp = tokio::task::spawn_blocking({
        let (dir, grpc) = (dir.clone(), gw.grpc_addr);
        move || spawn_data_plane_node(grpc, &dir, "drain-node")
    })
    .await
    .unwrap();
    let proxy: SocketAddr = dp
        .base_url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .parse()
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/chat/completions", dp.base_url);
    eventually(
        Duration::from_secs(15),
        "the data plane process to serve",
        || async {
            let r = http
                .post(&url)
                .bearer_auth(&p.key)
                .json(&json!({"model": "slow", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;

    // Two streamed requests are in flight: each one's first event has reached its client.
    let (mut first, first_id) = open_stream(&http, &url, &p.key).await;
    let (mut second, second_id) = open_stream(&http, &url, &p.key).await;

    // SIGTERM.
    let pid = dp.child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());

    // New connections are refused while the streams drain.
    eventually(
        Duration::from_secs(5),
        "new connections to be refused",
        || async {
            match tokio::net::TcpStream::connect(proxy).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
                _ => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    None
                }
            }
        },
    )
    .await;
    assert!(
        dp.child.try_wait().unwrap().is_none(),
        "the process must not exit while streams are in flight"
    );

    // The first upstream answer finishes; its client gets all of it, and its usage reaches the
    // control plane while the other stream is still held (the shipper runs through the drain).
    let rest = finish(&held, &mut first, 11).await;
    assert!(rest.contains("done."), "{rest}");
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");
    let row = eventually(
        Duration::from_secs(5),
        "the first stream's usage row during the drain",
        || async {
            let (code, row) = gw
                .admin(reqwest::Method::GET, &format!("/requests/{first_id}"), None)
                .await;
            (code == 200).then_some(row)
        },
    )
    .await;
    assert_eq!(row["input_tokens"], 11);
    assert!(dp.child.try_wait().unwrap().is_none());

    // Then the second.
    let rest = finish(&held, &mut second, 12).await;
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");

    // The process exits 0 on its own.
    let status = eventually(Duration::from_secs(40), "the data plane to exit", || {
        let status = dp.child.try_wait().unwrap();
        async move {
            if status.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            status
        }
    })
    .await;
    assert_eq!(status.code(), Some(0), "{status:?}");

    // The second stream's usage event was acknowledged before the process exited: the row is
    // in the ledger now, with the stream's tokens.
    let (code, row) = gw
        .admin(
            reqwest::Method::GET,
            &format!("/requests/{second_id}"),
            None,
        )
        .await;
    assert_eq!(
        code, 200,
        "the drained stream's usage row is missing: {row}"
    );
    assert_eq!(row["node_id"], "drain-node");
    assert_eq!(row["status"], 200);
    assert_eq!(row["streamed"], true);
    assert_eq!(row["input_tokens"], 12);
    assert_eq!(row["output_tokens"], 2);
    assert!(row["cost_micros"].as_i64().unwrap() > 0);
    gw.shutdown().await;
}

/// Starts a streamed request to the held upstream and reads its first event.
async fn open_stream(http: &reqwest::Client, url: &str, key: &str) -> (reqwest::Response, String) {
    let mut stream = http
        .post(url)
        .bearer_auth(key)
        .json(&json!({"model": "slow", "stream": true,
                      "messages": [{"role": "user", "content": "take your time"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let id = request_id(&stream);
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("Draining"));
    (stream, id)
}

/// Lets the oldest held upstream stream finish (reporting `prompt_tokens`) and reads the rest
/// of its client's answer.
async fn finish(held: &HeldStreams, stream: &mut reqwest::Response, prompt_tokens: u64) -> String {
    let tx = held.senders.lock().unwrap().remove(0);
    tx.send(Ok(sse(&chunk("done.")))).await.unwrap();
    let usage = json!({"id": "c2", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2,
                  "total_tokens": prompt_tokens + 2}});
    tx.send(Ok(sse(&usage))).await.unwrap();
    tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n")))
        .await
        .unwrap();
    drop(tx);
    let mut rest = String::new();
    while let Some(bytes) = stream.chunk().await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&bytes));
    }
    rest
}
