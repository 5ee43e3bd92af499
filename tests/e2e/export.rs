//! Usage export to billing: a webhook that fails its first deliveries still ends up with every
//! event (signed, as CloudEvents, deduplicable by id); a NATS JetStream consumer sees every event
//! once, and a redelivery is dropped by JetStream's message-id dedupe.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::services::nats_url;
use crate::support::{eventually, gateway_with_smart_route, Gateway, Provisioned};

const SECRET: &str = "whsec-test-secret-0123456789";

#[derive(Clone, Default)]
struct Receiver {
    fail_first: Arc<Mutex<usize>>,
    attempts: Arc<Mutex<usize>>,
    events: Arc<Mutex<Vec<Value>>>,
}

fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(sig) = headers
        .get("x-modelgate-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((t, v1)) = sig
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes()) == v1
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    *r.attempts.lock().unwrap() += 1;
    {
        let mut fail = r.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    if !verify(&headers, &body) {
        return StatusCode::UNAUTHORIZED;
    }
    assert_eq!(
        headers["content-type"],
        "application/cloudevents-batch+json"
    );
    let batch: Vec<Value> = serde_json::from_slice(&body).unwrap();
    r.events.lock().unwrap().extend(batch);
    StatusCode::NO_CONTENT
}

async fn start_receiver(fail_first: usize) -> (Receiver, String) {
    let r = Receiver {
        fail_first: Arc::new(Mutex::new(fail_first)),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

/// Sends `n` requests and returns the usage event ids they produced.
async fn traffic(gw: &Gateway, p: &Provisioned, n: usize) -> HashSet<String> {
    for _ in 0..n {
        assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 200);
    }
    let rows = eventually(Duration::from_secs(15), "every usage row", || async {
        let (_, page) = gw
            .admin(
                reqwest::Method::GET,
                &format!("/usage/events?key_id={}&limit=1000", p.key_id),
                None,
            )
            .await;
        let rows = page["data"].as_array().unwrap().clone();
        (rows.len() == n).then_some(rows)
    })
    .await;
    rows.iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_webhook_that_fails_its_first_deliveries_still_gets_every_event() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let (receiver, url) = start_receiver(3).await;
    let sink = gw
        .create(
            "/usage/sinks",
            json!({"name": "billing", "kind": "webhook", "url": url, "secret": SECRET}),
        )
        .await;
    assert!(sink.get("secret_ciphertext").is_none());
    let ids = traffic(&gw, &p, 25).await;

    let received = eventually(
        Duration::from_secs(30),
        "every event at the webhook",
        || {
            let receiver = receiver.clone();
            let ids = ids.clone();
            async move {
                let events = receiver.events.lock().unwrap().clone();
                let got: HashSet<String> = events
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_owned())
                    .collect();
                (got == ids).then_some(events)
            }
        },
    )
    .await;
    assert!(
        *receiver.attempts.lock().unwrap() > 3,
        "failed deliveries were retried"
    );
    for e in &received {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["type"], "dev.modelgate.usage.v1");
        assert_eq!(e["subject"], p.team_id.as_str(), "subject is the team");
        assert_eq!(e["data"]["id"], e["id"]);
        assert_eq!(e["data"]["key_id"], p.key_id.as_str());
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
    }
    let unique: HashSet<&str> = received.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "deduplicated by id: every event exactly once"
    );

    let sink_id = sink["id"].as_str().unwrap();
    let state = eventually(Duration::from_secs(10), "the sink's cursor", || async {
        let (_, s) = gw
            .admin(
                reqwest::Method::GET,
                &format!("/usage/sinks/{sink_id}"),
                None,
            )
            .await;
        (s["delivered"].as_u64() == Some(ids.len() as u64)).then_some(s)
    })
    .await;
    assert_eq!(state["failures"], 0);
    assert!(state["last_error"].is_null());
    gw.shutdown().await;
}

#[tokio::test]
async fn sinks_are_validated_and_never_show_their_secret() {
    let gw = Gateway::start().await;
    let (status, e) = gw
        .admin(
            reqwest::Method::POST,
            "/usage/sinks",
            Some(json!({"name": "x", "kind": "kafka", "url": "http://h"})),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["param"], "kind");
    let (status, e) = gw
        .admin(
            reqwest::Method::POST,
            "/usage/sinks",
            Some(json!({"name": "x", "kind": "nats", "url": "nats://127.0.0.1:4222", "subject": "usage.>"})),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["param"], "subject");
    let created = gw
        .create(
            "/usage/sinks",
            json!({"name": "generated", "kind": "webhook", "url": "http://127.0.0.1:9/none"}),
        )
        .await;
    let secret = created["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec-"),
        "a secret is generated and shown once"
    );
    let (_, list) = gw.admin(reqwest::Method::GET, "/usage/sinks", None).await;
    let text = list.to_string();
    assert!(!text.contains(secret), "the secret is never listed");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_jetstream_consumer_sees_every_event_once_even_after_a_redelivery() {
    let nats = nats_url().await;
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let subject = format!("modelgate.test.{tag}.usage");
    let stream_name = format!("MGTEST_{tag}");
    let sink = gw
        .create(
            "/usage/sinks",
            json!({"name": "nats", "kind": "nats", "url": nats, "subject": subject, "stream": stream_name}),
        )
        .await;
    let ids = traffic(&gw, &p, 20).await;

    let client = async_nats::connect(&nats).await.unwrap_or_else(|e| {
        panic!("this test needs NATS at {nats} (MODELGATE_TEST_NATS_URL): {e}")
    });
    let js = async_nats::jetstream::new(client);
    let stream = eventually(Duration::from_secs(30), "every event in the stream", || {
        let js = js.clone();
        let stream_name = stream_name.clone();
        async move {
            let mut stream = js.get_stream(&stream_name).await.ok()?;
            let info = stream.info().await.ok()?;
            (info.state.messages == 20).then_some(stream)
        }
    })
    .await;

    // Re-export everything: JetStream drops each message as a duplicate by its Nats-Msg-Id.
    let sink_id = sink["id"].as_str().unwrap();
    let (status, _) = gw
        .admin(
            reqwest::Method::POST,
            &format!("/usage/sinks/{sink_id}/rewind"),
            Some(json!({"after": 0})),
        )
        .await;
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(30),
        "the redelivery to finish",
        || async {
            let (_, s) = gw
                .admin(
                    reqwest::Method::GET,
                    &format!("/usage/sinks/{sink_id}"),
                    None,
                )
                .await;
            (s["delivered"].as_u64() == Some(40)).then_some(())
        },
    )
    .await;

    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(100)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(m) = messages.next().await {
        let m = m.unwrap();
        let msg_id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap();
        let event: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(event["id"].as_str().unwrap(), msg_id);
        assert_eq!(event["subject"], p.team_id.as_str());
        seen.push(msg_id);
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(
        seen.len(),
        20,
        "each event once, the redelivery deduplicated"
    );
    assert_eq!(unique, ids);
    js.delete_stream(&stream_name).await.unwrap();
    gw.shutdown().await;
}
