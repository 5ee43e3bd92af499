//! The HTTP listeners: slow clients are cut off by the header and body timeouts, HTTPS on the
//! proxy and the admin API, `/metrics` on its own listener, and a video download forwarding
//! only the query parameter the provider needs.

use std::path::Path;
use std::time::{Duration, Instant};

use modelgate_listener::TlsFiles;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::openai_upstream::OpenAiUpstream;
use crate::support::upstream::MockUpstream;
use crate::support::{
    start_control_plane_custom, start_data_plane_custom, temp_dir, Gateway, Provisioned,
};

/// A gateway whose data plane is replaced by one that `customize` adjusts, provisioned with the
/// alias `smart` routed to a mock upstream.
async fn gateway_with(
    customize: impl FnOnce(&mut modelgate_data_plane::Settings),
) -> (MockUpstream, Gateway, Provisioned) {
    let upstream = MockUpstream::start().await;
    let mut gw = Gateway::start().await;
    gw.stop_data_plane().await;
    gw.dp = Some(start_data_plane_custom(gw.grpc_addr, &gw.dp_dir, customize).await);
    let p = gw
        .provision(&upstream.base_url(), "smart", "gpt-4o-2024")
        .await;
    (upstream, gw, p)
}

/// Reads until the server closes `s`; how long that took.
async fn time_to_close(s: &mut TcpStream) -> Duration {
    let t = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept the connection open for 10 s"),
        }
    }
}

#[tokio::test]
async fn a_stalled_request_head_is_closed_after_the_header_timeout_while_others_are_served() {
    let (_upstream, gw, p) = gateway_with(|s| {
        s.http.header_timeout = Duration::from_millis(500);
    })
    .await;
    let mut stalled = TcpStream::connect(gw.dp().addr).await.unwrap();
    stalled
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nAuthoriz")
        .await
        .unwrap();
    let closed = tokio::spawn(async move { time_to_close(&mut stalled).await });
    // Meanwhile another connection is served.
    assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 200);
    let took = closed.await.unwrap();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408_in_the_openai_format() {
    let (upstream, gw, p) = gateway_with(|s| {
        s.http.body_timeout = Duration::from_millis(300);
    })
    .await;
    let mut s = TcpStream::connect(gw.dp().addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{{\"model\"",
        p.key
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    let body: Value = serde_json::from_str(&out[out.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert_eq!(upstream.calls(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn an_admin_body_that_does_not_arrive_in_time_is_answered_408() {
    let mut gw = Gateway::start().await;
    gw.stop_control_plane().await;
    let cp = start_control_plane_custom(&gw.cp_db_url, &gw.master_key, gw.grpc_addr, |s| {
        s.admin_http.body_timeout = Duration::from_millis(300);
    })
    .await;
    let mut s = TcpStream::connect(cp.admin_addr).await.unwrap();
    gw.cp = Some(cp);
    let head = format!(
        "POST /admin/v1/teams HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{{\"name\"",
        gw.admin_token
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    let body: Value = serde_json::from_str(&out[out.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["error"]["type"], "request_timeout", "{body}");
    gw.shutdown().await;
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_not_on_the_proxy_port() {
    let (_upstream, gw, _p) = gateway_with(|_| {}).await;
    let on_proxy = reqwest::get(format!("http://{}/metrics", gw.dp().addr))
        .await
        .unwrap();
    assert_eq!(on_proxy.status(), 404);
    let body: Value = on_proxy.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_url", "{body}");
    let text = reqwest::get(format!("http://{}/metrics", gw.dp().metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("modelgate_config_version "), "{text}");
    gw.shutdown().await;
}

/// A CA and a server certificate for 127.0.0.1 / localhost, written as PEM files by the same
/// issuer `modelgate certs` uses.
fn make_certs(dir: &Path) -> (TlsFiles, String) {
    use modelgate_shared::tls::issue;
    let now = modelgate_shared::clock::system().now();
    let pki = dir.join("pki");
    issue::init_ca(&pki, now).unwrap();
    let server = issue::issue_control_plane(
        &pki,
        &["localhost".to_owned()],
        &[std::net::Ipv4Addr::LOCALHOST.into()],
        now,
    )
    .unwrap();
    let files = TlsFiles {
        cert: server.cert,
        key: server.key,
    };
    (files, std::fs::read_to_string(pki.join("ca.pem")).unwrap())
}

#[tokio::test]
async fn the_proxy_and_the_admin_api_serve_https_when_given_a_certificate() {
    let dir = temp_dir("https");
    let (files, ca_pem) = make_certs(&dir);
    let ca = || reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let upstream = MockUpstream::start().await;
    let mut gw = Gateway::start().await;
    gw.stop_data_plane().await;
    gw.stop_control_plane().await;
    let tls = files.clone();
    let cp = start_control_plane_custom(&gw.cp_db_url, &gw.master_key, gw.grpc_addr, |s| {
        s.admin_http.tls = Some(tls);
    })
    .await;
    let plain_admin = format!("http://{}/admin/v1/teams", cp.admin_addr);
    gw.admin_url = format!("https://{}", cp.admin_addr);
    gw.cp = Some(cp);
    gw.http = reqwest::Client::builder()
        .add_root_certificate(ca())
        .build()
        .unwrap();
    let tls = files;
    gw.dp = Some(
        start_data_plane_custom(gw.grpc_addr, &gw.dp_dir, |s| {
            s.http.tls = Some(tls);
        })
        .await,
    );
    // An admin call over https (provisioning goes through the admin API).
    let p = gw
        .provision(&upstream.base_url(), "smart", "gpt-4o-2024")
        .await;
    let (status, teams) = gw.admin(reqwest::Method::GET, "/teams", None).await;
    assert_eq!(status, 200, "{teams}");

    // A chat completion over https; the client and server agree on HTTP/2 by ALPN.
    let base = format!("https://{}/v1", gw.dp().addr);
    let resp = gw
        .http
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&p.key)
        .json(&json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion", "{body}");
    // HTTP/1.1 over TLS works too.
    let h1 = reqwest::Client::builder()
        .add_root_certificate(ca())
        .http1_only()
        .build()
        .unwrap();
    let resp = h1
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&p.key)
        .json(&json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);

    // Plain HTTP is not served on those ports.
    let plain = reqwest::Client::new();
    assert!(plain
        .get(format!("http://{}/v1/models", gw.dp().addr))
        .send()
        .await
        .is_err());
    assert!(plain.get(&plain_admin).send().await.is_err());
    gw.shutdown().await;
}

#[tokio::test]
async fn a_video_download_forwards_only_the_variant_parameter() {
    let upstream = OpenAiUpstream::start().await;
    let gw = Gateway::start().await;
    let team = gw.create("/teams", json!({"name": "query-team"})).await;
    let key = gw
        .create(
            "/keys",
            json!({"team_id": team["id"], "name": "app", "environment": "prod"}),
        )
        .await;
    let key = key["key_secret"].as_str().unwrap().to_owned();
    let oa = gw
        .create("/providers", json!({"name": "oa-up", "kind": "openai-compatible", "base_url": upstream.base_url(), "credential": "sk-openai-1234"}))
        .await;
    gw.create(
        "/models",
        json!({"model": "sora-up", "input_micros_per_mtok": 0, "output_micros_per_mtok": 0, "per_second_micros": 1}),
    )
    .await;
    gw.create(
        "/routes",
        json!({"alias": "vid", "deployments": [{"provider_id": oa["id"], "model": "sora-up"}]}),
    )
    .await;
    gw.wait_for_config().await;
    let send = |req: reqwest::RequestBuilder| async { req.bearer_auth(&key).send().await.unwrap() };
    let resp = send(
        gw.http
            .post(format!("{}/videos", gw.base_url()))
            .json(&json!({"model": "vid", "prompt": "a cat", "seconds": "4"})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        let poll = send(gw.http.get(format!("{}/videos/{id}", gw.base_url()))).await;
        assert_eq!(poll.status(), 200);
    }
    let url = format!(
        "{}/videos/{id}/content?key=leaked-secret&variant=thumbnail&debug=1&api-version=x",
        gw.base_url()
    );
    let fetched = send(gw.http.get(url)).await;
    assert_eq!(fetched.status(), 200);
    let sent = upstream.last();
    assert_eq!(sent.path, "/v1/videos/video_up_1/content");
    assert_eq!(sent.query, "variant=thumbnail");
    // A variant that is not a plain word is dropped, not forwarded.
    let url = format!(
        "{}/videos/{id}/content?variant=video%26key%3Dx",
        gw.base_url()
    );
    assert_eq!(send(gw.http.get(url)).await.status(), 200);
    assert_eq!(upstream.last().query, "");
    gw.shutdown().await;
}
