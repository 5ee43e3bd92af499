//! The channel between the planes (issue #14): mutual TLS with the fleet CA, node identity from
//! the certificate, revocation, rotation, the `certs` command and the plaintext opt-in. Every
//! refusal is checked on what the control plane stored (nodes, usage rows, budget leases), not
//! only on the error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use modelgate_proto::config::v1::{
    config_service_client::ConfigServiceClient, Snapshot, SubscribeRequest,
};
use modelgate_proto::quota::v1::{quota_service_client::QuotaServiceClient, AllocateRequest};
use modelgate_proto::usage::v1::{
    usage_service_client::UsageServiceClient, UsageBatch, UsageEvent,
};
use modelgate_shared::tls::TlsFiles;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::support::pki::{grpc_url, node_channel, Pki};
use crate::support::{eventually, start_control_plane, temp_dir, Gateway};
use crate::usage_ingest::Key;

fn channel_with(addr: std::net::SocketAddr, files: TlsFiles) -> Channel {
    modelgate_data_plane::channel::connect(
        &grpc_url(addr),
        &modelgate_data_plane::channel::ControlPlaneSecurity::Tls(files),
    )
    .unwrap()
}

fn plaintext_channel(addr: std::net::SocketAddr) -> Channel {
    modelgate_data_plane::channel::connect(
        &format!("http://{addr}"),
        &modelgate_data_plane::channel::ControlPlaneSecurity::InsecurePlaintext,
    )
    .unwrap()
}

/// Opens a config stream with this hello; the sender keeps the stream open.
async fn subscribe(
    channel: Channel,
    node_id: &str,
    labels: &[(&str, &str)],
) -> Result<(tonic::Streaming<Snapshot>, mpsc::Sender<SubscribeRequest>), tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(crate::support::pki::hello(
        node_id,
        labels,
        modelgate_shared::SNAPSHOT_PROTOCOL_VERSION,
        &[],
    ))
    .await
    .unwrap();
    let mut client = ConfigServiceClient::new(channel);
    let mut stream = client
        .subscribe(ReceiverStream::new(rx))
        .await?
        .into_inner();
    // The first snapshot (or the refusal) arrives at once.
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no snapshot"))??;
    if first.is_none() {
        return Err(tonic::Status::unavailable(
            "the stream ended without a snapshot",
        ));
    }
    Ok((stream, tx))
}

/// Reports one genuine-looking event of `key` (an existing key, so ingest stores it rather than
/// quarantining it) in a batch claiming `batch_node`, the event claiming `event_node`.
async fn report(
    channel: Channel,
    batch_node: &str,
    event_node: &str,
    key: &Key,
) -> Result<(), tonic::Status> {
    let started_at_ms = chrono::Utc::now().timestamp_millis();
    let batch = UsageBatch {
        batch_id: uuid::Uuid::now_v7().to_string(),
        node_id: batch_node.to_owned(),
        resent: false,
        events: vec![UsageEvent {
            id: uuid::Uuid::now_v7().to_string(),
            request_id: uuid::Uuid::now_v7().to_string(),
            key_id: key.id.clone(),
            team_id: key.team_id.clone(),
            node_id: event_node.to_owned(),
            status: 200,
            endpoint: "chat.completions".into(),
            served_model: "gpt-x".into(),
            started_at_ms,
            ended_at_ms: started_at_ms,
            input_tokens: 1,
            output_tokens: 1,
            cost_micros: 1,
            schema_version: 2,
            ..Default::default()
        }],
    };
    let mut client = UsageServiceClient::new(channel);
    let mut acks = client
        .report(tokio_stream::iter(vec![batch]))
        .await?
        .into_inner();
    match tokio::time::timeout(Duration::from_secs(5), acks.message()).await {
        Ok(Ok(Some(_))) => Ok(()),
        Ok(Ok(None)) => Err(tonic::Status::unavailable("no acknowledgement")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(tonic::Status::deadline_exceeded("no acknowledgement")),
    }
}

async fn allocate(channel: Channel, holder: &str, budget_id: &str) -> Result<i64, tonic::Status> {
    let mut client = QuotaServiceClient::new(channel);
    let period_start = modelgate_shared::quota::period_start(
        chrono::Utc::now(),
        modelgate_shared::quota::Period::Month,
    );
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        client.allocate(AllocateRequest {
            node_id: holder.to_owned(),
            budget_id: budget_id.to_owned(),
            period_start,
            consumed_micros: 0,
            want_micros: 500_000,
            need_micros: 1_000,
        }),
    )
    .await
    .map_err(|_| tonic::Status::deadline_exceeded("no answer"))??;
    Ok(r.into_inner().granted_total_micros)
}

/// Returns when the stream ends (closed or failed).
async fn ended(s: &mut tonic::Streaming<Snapshot>) {
    while let Ok(Some(_)) = s.message().await {}
}

async fn node_ids(gw: &Gateway) -> Vec<String> {
    let (status, v) = gw
        .admin(reqwest::Method::GET, "/nodes?limit=100", None)
        .await;
    assert_eq!(status, 200, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn usage_rows(gw: &Gateway, key_id: &str) -> usize {
    let (status, v) = gw
        .admin(
            reqwest::Method::GET,
            &format!("/usage/events?key_id={key_id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    v["data"].as_array().unwrap().len()
}

async fn budget_allocations(gw: &Gateway, id: &str) -> Vec<Value> {
    let (status, b) = gw
        .admin(reqwest::Method::GET, &format!("/budgets/{id}"), None)
        .await;
    assert_eq!(status, 200, "{b}");
    b["allocations"].as_array().unwrap().clone()
}

async fn team_budget(gw: &Gateway) -> String {
    let team = gw
        .create(
            "/teams",
            json!({"name": format!("t-{}", uuid::Uuid::now_v7().simple())}),
        )
        .await;
    let b = gw
        .create(
            "/budgets",
            json!({"scope": {"team_id": team["id"]}, "amount_micros": 1_000_000, "period": "month", "enforcement": "hard"}),
        )
        .await;
    b["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn clients_without_a_fleet_certificate_or_claiming_another_node_get_nothing() {
    let gw = Gateway::start().await;
    let budget = team_budget(&gw).await;
    let addr = gw.grpc_addr;
    let pki = Pki::shared();
    let key = crate::usage_ingest::new_key(&gw, None).await;

    // No TLS at all.
    let plain = plaintext_channel(addr);
    assert!(subscribe(plain.clone(), "intruder", &[]).await.is_err());
    assert!(report(plain.clone(), "intruder", "intruder", &key)
        .await
        .is_err());
    assert!(allocate(plain, "intruder/1", &budget).await.is_err());

    // TLS without a client certificate: the server never answers with application data.
    assert_no_application_data_without_a_client_certificate(pki, addr).await;

    // A certificate from another CA (trusting ours, so only the control plane's check applies).
    let other = Pki::new();
    let mut foreign = other.node("intruder", &[]);
    foreign.ca = pki.control_plane().ca;
    let foreign = channel_with(addr, foreign);
    assert!(subscribe(foreign.clone(), "intruder", &[]).await.is_err());
    assert!(report(foreign.clone(), "intruder", "intruder", &key)
        .await
        .is_err());
    assert!(allocate(foreign, "intruder/1", &budget).await.is_err());

    // A valid certificate for node-x claiming node-y, in the hello, the batch, an event, a lease.
    let x = node_channel(pki, addr, "node-x", &[]);
    let denied = |r: Result<_, tonic::Status>| {
        assert_eq!(
            r.err().map(|e| e.code()),
            Some(tonic::Code::PermissionDenied)
        );
    };
    denied(subscribe(x.clone(), "node-y", &[]).await.map(|_| ()));
    denied(report(x.clone(), "node-y", "node-y", &key).await);
    denied(report(x.clone(), "node-x", "node-y", &key).await);
    denied(allocate(x.clone(), "node-y/1", &budget).await.map(drop));
    // An empty holder or one without its process part cannot write the ledger either.
    for holder in ["", "node-x", "/1"] {
        assert!(
            allocate(x.clone(), holder, &budget).await.is_err(),
            "{holder:?}"
        );
    }

    // Nothing was stored: no node, no usage row, no lease.
    let nodes = node_ids(&gw).await;
    for n in ["intruder", "node-x", "node-y"] {
        assert!(!nodes.contains(&n.to_owned()), "{n} in {nodes:?}");
    }
    assert_eq!(usage_rows(&gw, &key.id).await, 0);
    assert!(budget_allocations(&gw, &budget).await.is_empty());

    // The same node speaking for itself is served (the refusals above were about identity).
    let (_stream, _tx) = subscribe(x.clone(), "node-x", &[]).await.unwrap();
    report(x.clone(), "node-x", "node-x", &key).await.unwrap();
    assert!(allocate(x, "node-x/1", &budget).await.unwrap() > 0);
    assert_eq!(usage_rows(&gw, &key.id).await, 1);
    let leases = budget_allocations(&gw, &budget).await;
    assert_eq!(leases.len(), 1, "{leases:?}");
    gw.shutdown().await;
}

async fn assert_no_application_data_without_a_client_certificate(
    pki: &Pki,
    addr: std::net::SocketAddr,
) {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(pki.dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let outcome = async {
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await?;
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let mut buf = [0u8; 64];
        tls.read(&mut buf).await
    }
    .await;
    assert!(
        matches!(outcome, Err(_) | Ok(0)),
        "the control plane answered a client without a certificate: {outcome:?}"
    );
}

#[tokio::test]
async fn a_hello_whose_labels_contradict_the_certificate_is_refused() {
    let gw = Gateway::start().await;
    let pki = Pki::shared();
    let ch = node_channel(pki, gw.grpc_addr, "node-eu", &[("region", "eu")]);
    let e = subscribe(ch.clone(), "node-eu", &[("region", "us")])
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let e = subscribe(ch.clone(), "node-eu", &[]).await.err().unwrap();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    assert!(!node_ids(&gw).await.contains(&"node-eu".to_owned()));
    // Its own labels: served.
    let _ok = subscribe(ch, "node-eu", &[("region", "eu")]).await.unwrap();
    gw.shutdown().await;
}

#[tokio::test]
async fn a_revoked_node_is_cut_off_within_a_second_on_every_control_plane_and_cannot_reconnect() {
    let gw = Gateway::start().await;
    let budget = team_budget(&gw).await;
    let key = crate::usage_ingest::new_key(&gw, None).await;
    let pki = Pki::shared();
    // A second control plane on the same database (it learns of the revocation by polling).
    let cp2 = start_control_plane(
        &gw.cp_db_url,
        &gw.master_key,
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    let on_one = node_channel(pki, gw.grpc_addr, "node-r", &[]);
    let on_two = node_channel(pki, cp2.grpc_addr, "node-r", &[]);
    let (mut s1, _t1) = subscribe(on_one.clone(), "node-r", &[]).await.unwrap();
    let (mut s2, _t2) = subscribe(on_two.clone(), "node-r", &[]).await.unwrap();
    // And a real data plane under another id, which must keep working.
    let bystander_version = gw.dp().config_version();
    assert!(bystander_version > 0);

    let (status, v) = gw
        .admin(reqwest::Method::POST, "/nodes/node-r/revoke", None)
        .await;
    let revoked_at = Instant::now();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["node_id"], "node-r");

    tokio::time::timeout(Duration::from_secs(1), ended(&mut s1))
        .await
        .expect("the stream on the control plane that revoked ended within 1 s");
    let local = revoked_at.elapsed();
    tokio::time::timeout(Duration::from_secs(3), ended(&mut s2))
        .await
        .expect("the stream on the other control plane ended within a few seconds");
    let remote = revoked_at.elapsed();
    assert!(local < Duration::from_secs(1), "{local:?}");
    assert!(remote < Duration::from_secs(2), "{remote:?}");

    // Refused from now on, on both, at every service; persisted (audited too).
    for ch in [
        on_one.clone(),
        on_two.clone(),
        node_channel(pki, gw.grpc_addr, "node-r", &[]),
    ] {
        assert!(subscribe(ch.clone(), "node-r", &[]).await.is_err());
        assert!(report(ch.clone(), "node-r", "node-r", &key).await.is_err());
        assert!(allocate(ch, "node-r/1", &budget).await.is_err());
    }
    assert!(budget_allocations(&gw, &budget).await.is_empty());
    let (_, audit) = gw
        .admin(reqwest::Method::GET, "/audit?limit=100", None)
        .await;
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "node.revoke" && e["resource_id"] == "node-r"),
        "{audit}"
    );
    // A control plane started after the revocation refuses it too (it is in the database).
    let cp3 = start_control_plane(
        &gw.cp_db_url,
        &gw.master_key,
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    assert!(subscribe(
        node_channel(pki, cp3.grpc_addr, "node-r", &[]),
        "node-r",
        &[]
    )
    .await
    .is_err());
    // Other nodes are unaffected.
    let (_s, _t) = subscribe(
        node_channel(pki, gw.grpc_addr, "node-ok", &[]),
        "node-ok",
        &[],
    )
    .await
    .unwrap();
    cp3.shutdown().await;
    cp2.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_data_plane_refuses_a_control_plane_with_another_name_or_from_another_ca() {
    let db = crate::support::TestDb::new().await;
    // A control plane whose certificate is for another name than the one dialled (127.0.0.1).
    let misnamed = Pki::with_control_plane_names(&["cp.example"], &[]);
    let cp = modelgate_control_plane::start(modelgate_control_plane::Settings {
        database_url: db.url.clone(),
        master_key_hex: modelgate_control_plane::crypto::Sealer::generate_master_key_hex().into(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_http: Default::default(),
        grpc_limits: Default::default(),
        metrics_listen: None,
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        grpc_security: misnamed.server_security(),
        clock: modelgate_shared::clock::system(),
        usage_retention: None,
        config_drift_after: modelgate_control_plane::service::DEFAULT_CONFIG_DRIFT_AFTER,
        statement_grace: modelgate_control_plane::service::statements::DEFAULT_GRACE,
    })
    .await
    .unwrap();
    let e = subscribe(
        node_channel(&misnamed, cp.grpc_addr, "dp-1", &[]),
        "dp-1",
        &[],
    )
    .await
    .err()
    .unwrap();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");

    assert!(!cp_nodes(&cp).await.contains(&"dp-1".to_owned()));
    cp.shutdown().await;
    db.drop_database().await;

    // A control plane from another CA: the node trusts only another fleet's CA (its own
    // certificate is one the control plane accepts, so only the node's check refuses).
    let gw = Gateway::start().await;
    let mut node = Pki::shared().node("dp-2", &[]);
    node.ca = Pki::new().control_plane().ca;
    let e = subscribe(channel_with(gw.grpc_addr, node), "dp-2", &[])
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
    assert!(!node_ids(&gw).await.contains(&"dp-2".to_owned()));
    // Its own fleet's CA and the right name: served (the refusals were the node's checks).
    let _ok = subscribe(
        node_channel(Pki::shared(), gw.grpc_addr, "dp-3", &[]),
        "dp-3",
        &[],
    )
    .await
    .unwrap();
    gw.shutdown().await;
}

async fn cp_nodes(cp: &modelgate_control_plane::RunningControlPlane) -> Vec<String> {
    use sea_orm::EntityTrait;
    modelgate_control_plane::store::node::Entity::find()
        .all(&cp.services.db)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node_id)
        .collect()
}

#[tokio::test]
async fn rotated_certificates_and_ca_are_used_by_new_connections_without_a_restart() {
    let db = crate::support::TestDb::new().await;
    let old = Pki::new();
    let new = Pki::new();
    // The control plane's files live in their own directory, replaced in place.
    let dir = temp_dir("rotation");
    let copy = |from: &Pki| {
        for (src, dst) in [
            (from.dir.join("ca.pem"), "ca.pem"),
            (from.dir.join("control-plane.pem"), "cp.pem"),
            (from.dir.join("control-plane-key.pem"), "cp-key.pem"),
        ] {
            let tmp = dir.join(format!("{dst}.tmp"));
            std::fs::copy(src, &tmp).unwrap();
            std::fs::rename(tmp, dir.join(dst)).unwrap();
        }
    };
    copy(&old);
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("cp.pem"),
        key: dir.join("cp-key.pem"),
    };
    let cp = modelgate_control_plane::start(modelgate_control_plane::Settings {
        database_url: db.url.clone(),
        master_key_hex: modelgate_control_plane::crypto::Sealer::generate_master_key_hex().into(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_http: Default::default(),
        grpc_limits: Default::default(),
        metrics_listen: None,
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        grpc_security: modelgate_control_plane::grpc::transport::GrpcSecurity::Tls(Arc::new(
            modelgate_shared::tls::Reloading::server(files).unwrap(),
        )),
        clock: modelgate_shared::clock::system(),
        usage_retention: None,
        config_drift_after: modelgate_control_plane::service::DEFAULT_CONFIG_DRIFT_AFTER,
        statement_grace: modelgate_control_plane::service::statements::DEFAULT_GRACE,
    })
    .await
    .unwrap();
    let addr = cp.grpc_addr;
    let (_held, _tx) = subscribe(node_channel(&old, addr, "n-old", &[]), "n-old", &[])
        .await
        .unwrap();
    assert!(
        subscribe(node_channel(&new, addr, "n-new", &[]), "n-new", &[])
            .await
            .is_err()
    );

    copy(&new);
    // New connections use the new CA and certificate once the files are seen to change.
    eventually(
        Duration::from_secs(5),
        "the rotated files to be used",
        || async {
            subscribe(node_channel(&new, addr, "n-new", &[]), "n-new", &[])
                .await
                .ok()
                .map(drop)
        },
    )
    .await;
    assert!(
        subscribe(node_channel(&old, addr, "n-old2", &[]), "n-old2", &[])
            .await
            .is_err()
    );
    cp.shutdown().await;
    db.drop_database().await;
}

fn modelgate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .env_remove("MODELGATE_TLS_CA")
        .env_remove("MODELGATE_TLS_CERT")
        .env_remove("MODELGATE_TLS_KEY")
        .env_remove("MODELGATE_INSECURE_PLAINTEXT_GRPC")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn modelgate_certs_writes_the_fleet_files_with_0600_keys() {
    let dir = temp_dir("certs").join("fleet");
    let d = dir.to_str().unwrap();
    assert!(modelgate(&["certs", "init", "--dir", d]).status.success());
    assert!(
        !modelgate(&["certs", "init", "--dir", d]).status.success(),
        "a second init must not overwrite the CA"
    );
    assert!(modelgate(&[
        "certs",
        "issue",
        "--dir",
        d,
        "--node-id",
        "dp-eu-1",
        "--label",
        "region=eu"
    ])
    .status
    .success());
    assert!(modelgate(&[
        "certs",
        "issue",
        "--dir",
        d,
        "--control-plane",
        "--dns",
        "localhost",
        "cp.internal",
        "--ip",
        "127.0.0.1"
    ])
    .status
    .success());
    for f in [
        "ca.pem",
        "ca-key.pem",
        "dp-eu-1.pem",
        "dp-eu-1-key.pem",
        "control-plane.pem",
        "control-plane-key.pem",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for k in ["ca-key.pem", "dp-eu-1-key.pem", "control-plane-key.pem"] {
            assert_eq!(mode(&dir.join(k)), 0o600, "{k}");
        }
    }
    let id = modelgate_data_plane::channel::certificate_identity(&TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("dp-eu-1.pem"),
        key: dir.join("dp-eu-1-key.pem"),
    })
    .unwrap();
    assert_eq!(id.node_id, "dp-eu-1");
    assert_eq!(id.labels.get("region").map(String::as_str), Some("eu"));
}

#[test]
fn the_planes_refuse_plaintext_grpc_unless_asked_and_then_warn() {
    let dir = temp_dir("plaintext");
    let db = format!("sqlite://{}?mode=rwc", dir.join("cp.db").display());
    let key = modelgate_control_plane::crypto::Sealer::generate_master_key_hex();
    let out = modelgate(&[
        "control-plane",
        "--database-url",
        &db,
        "--master-key",
        &key,
        "--admin-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-ca") && err.contains("--insecure-plaintext-grpc"),
        "{err}"
    );
    let out = modelgate(&[
        "data-plane",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.join("dp").to_str().unwrap(),
        "--control-plane-url",
        "http://127.0.0.1:9",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-plaintext-grpc"));

    // With the flag it runs, and says so.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args([
            "control-plane",
            "--database-url",
            &db,
            "--master-key",
            &key,
            "--admin-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--insecure-plaintext-grpc",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let warned = stderr
        .lines()
        .map_while(Result::ok)
        .take(50)
        .any(|l| l.contains("WITHOUT TLS"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "no plaintext warning");
}

#[tokio::test]
async fn modelgate_nodes_revoke_refuses_the_node() {
    let gw = Gateway::start().await;
    let pki = Pki::shared();
    let (mut stream, _tx) = subscribe(
        node_channel(pki, gw.grpc_addr, "node-cli", &[]),
        "node-cli",
        &[],
    )
    .await
    .unwrap();
    let (admin_url, admin_token) = (gw.admin_url.clone(), gw.admin_token.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
            .args(["nodes", "revoke", "node-cli", "--output", "json"])
            .env("MODELGATE_ADMIN_URL", admin_url)
            .env("MODELGATE_ADMIN_TOKEN", admin_token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["node_id"], "node-cli");
    tokio::time::timeout(Duration::from_secs(1), ended(&mut stream))
        .await
        .expect("the revoked node's stream ended");
    assert!(subscribe(
        node_channel(pki, gw.grpc_addr, "node-cli", &[]),
        "node-cli",
        &[]
    )
    .await
    .is_err());
    gw.shutdown().await;
}
