//! Incremental config updates (issue #15, R-6.6/R-6.7): after its first full snapshot a data
//! plane receives deltas; a delta on another base makes it ask for a full snapshot (resync); a
//! delta whose result does not hash as declared is NACKed and not applied; a node without the
//! delta feature keeps receiving full snapshots.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::support::scripted::against_script;
use crate::support::{eventually, gateway_with_smart_route, pki, Gateway};
use modelgate_proto::config::v1::config_service_client::ConfigServiceClient;
use modelgate_proto::config::v1::{
    subscribe_request::Kind, Ack, Resync, Snapshot as WireSnapshot, SubscribeRequest,
};
use modelgate_shared::delta::{self, FEATURE_CONFIG_DELTA};
use modelgate_shared::digest::ConfigDigest;
use modelgate_shared::snapshot::{Config, Snapshot};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn keys_created_and_revoked_after_connect_reach_the_node_as_deltas_and_are_enforced() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let dp = gw.dp();
    let before = (dp.config_updates().full(), dp.config_updates().deltas());
    assert!(before.0 >= 1, "the first snapshot is a full one");

    let key = gw
        .create(
            "/keys",
            json!({"team_id": p.team_id, "name": "late", "environment": "prod", "allowed_models": ["smart"]}),
        )
        .await;
    let secret = key["key_secret"].as_str().unwrap().to_owned();
    gw.wait_for_config().await;
    assert_eq!(gw.say_hi(&secret, "smart").await.status(), 200);

    let (status, body) = gw
        .admin(
            Method::POST,
            &format!("/keys/{}/revoke", key["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    gw.wait_for_config().await;
    assert_eq!(gw.say_hi(&secret, "smart").await.status(), 401);
    // The first key is untouched by either delta.
    assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 200);

    let after = (dp.config_updates().full(), dp.config_updates().deltas());
    assert_eq!(after.0, before.0, "no full snapshot after the first");
    assert!(after.1 >= before.1 + 2, "{before:?} → {after:?}");
    // What the node serves is what the control plane published, hash for hash.
    let published = gw.cp().services.publisher.latest().unwrap();
    assert_eq!(
        dp.runtime.load().content_hash,
        published.snapshot.content_hash
    );
    assert_eq!(dp.config_updates().resyncs(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_node_restarted_after_deltas_serves_the_right_config_from_its_last_known_good() {
    let (_upstream, mut gw, p) = gateway_with_smart_route().await;
    let key = gw
        .create(
            "/keys",
            json!({"team_id": p.team_id, "name": "late", "environment": "prod", "allowed_models": ["smart"]}),
        )
        .await;
    let secret = key["key_secret"].as_str().unwrap().to_owned();
    gw.wait_for_config().await;
    assert!(gw.dp().config_updates().deltas() >= 1);
    let served = gw.dp().runtime.load_full();

    // The control plane goes away; the node restarts from its disk alone.
    gw.stop_control_plane().await;
    gw.restart_data_plane().await;
    let rt = gw.dp().runtime.load_full();
    assert_eq!(
        (rt.version, &rt.content_hash),
        (served.version, &served.content_hash)
    );
    assert_eq!(gw.say_hi(&secret, "smart").await.status(), 200);
    gw.shutdown().await;
}

/// A raw config stream to the real control plane, as a node of `protocol` with `features`.
async fn raw_stream(
    gw: &Gateway,
    node: &str,
    protocol: u32,
    features: &[&str],
) -> (mpsc::Sender<SubscribeRequest>, Streaming<WireSnapshot>) {
    let labels = [("region", "test")];
    let channel = pki::node_channel(pki::Pki::shared(), gw.grpc_addr, node, &labels);
    let (tx, rx) = mpsc::channel(4);
    tx.send(pki::hello(node, &labels, protocol, features))
        .await
        .unwrap();
    let stream = ConfigServiceClient::new(channel)
        .subscribe(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, stream)
}

async fn ack(tx: &mpsc::Sender<SubscribeRequest>, s: &WireSnapshot) {
    tx.send(SubscribeRequest {
        kind: Some(Kind::Ack(Ack {
            version: s.version,
            content_hash: s.content_hash.clone(),
        })),
    })
    .await
    .unwrap();
}

async fn next(stream: &mut Streaming<WireSnapshot>) -> WireSnapshot {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a config message")
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn nodes_without_the_delta_feature_get_full_snapshots_and_nodes_with_it_get_deltas_or_a_resync(
) {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    // An older data plane: protocol 8, no features.
    let (old_tx, mut old) = raw_stream(&gw, "old-node", 8, &[]).await;
    // A current one.
    let (new_tx, mut new) = raw_stream(&gw, "new-node", 9, &[FEATURE_CONFIG_DELTA]).await;
    let first_old = next(&mut old).await;
    let first_new = next(&mut new).await;
    for (tx, s) in [(&old_tx, &first_old), (&new_tx, &first_new)] {
        assert!(
            s.config.is_some() && s.delta.is_none(),
            "a first snapshot is full"
        );
        assert!(s.min_protocol_version <= 8);
        ack(tx, s).await;
    }
    // Give the ACKs time to land before the change (the base is what was sent; the ACK only
    // makes the fleet view current).
    tokio::time::sleep(Duration::from_millis(100)).await;

    gw.create(
        "/keys",
        json!({"team_id": p.team_id, "name": "late", "environment": "prod"}),
    )
    .await;
    let second_old = next(&mut old).await;
    assert!(second_old.config.is_some() && second_old.delta.is_none());
    Snapshot::try_from(second_old.clone()).unwrap();
    let second_new = next(&mut new).await;
    let d = second_new
        .delta
        .as_ref()
        .expect("a delta for the delta-capable node");
    assert_eq!(d.base_version, first_new.version);
    assert_eq!(second_new.version, second_old.version);
    assert_eq!(second_new.content_hash, second_old.content_hash);
    assert_eq!(d.upsert_keys.len(), 1);
    assert!(second_new.config.is_none());
    assert_eq!(second_new.required_features, [FEATURE_CONFIG_DELTA]);

    // Applied on the first full snapshot, the delta gives the second, hash for hash.
    let base = Snapshot::try_from(first_new.clone()).unwrap();
    let delta = delta::ConfigDelta::try_from(second_new.clone()).unwrap();
    let mut config = base.config.clone();
    let mut digest = ConfigDigest::of(&config);
    delta::apply(&mut config, &mut digest, delta).unwrap();
    assert_eq!(
        Snapshot::new(second_new.version, config).content_hash,
        second_new.content_hash
    );

    // A node that asks for a full snapshot gets one, of the version it is assigned.
    new_tx
        .send(SubscribeRequest {
            kind: Some(Kind::Resync(Resync {
                served_version: first_new.version,
                served_hash: first_new.content_hash.clone(),
                reason: "test".into(),
            })),
        })
        .await
        .unwrap();
    let full = next(&mut new).await;
    assert!(full.config.is_some() && full.delta.is_none());
    assert_eq!(full.version, second_new.version);
    assert_eq!(
        Snapshot::try_from(full).unwrap().content_hash,
        second_new.content_hash
    );
    drop((old_tx, new_tx));
    gw.shutdown().await;
}

/// Versions 1 and 2 of a small config (2 revokes a key) and the delta between them.
fn versions() -> (Snapshot, Snapshot, delta::ConfigDelta) {
    let key = modelgate_shared::snapshot::ApiKey {
        id: "k1".into(),
        name: "k".into(),
        key_hash: [5; 32],
        prefix: "mg-x".into(),
        team_id: "t1".into(),
        environment: modelgate_shared::snapshot::Environment::Prod,
        allowed_models: vec![],
        revoked: false,
        expires_at: None,
        disabled: false,
        previous: None,
        owner_user_id: String::new(),
        application: String::new(),
        data_class: "internal".into(),
        endpoint_families: vec![],
        traffic_class: Default::default(),
        allowed_traffic_classes: vec![],
        cache: modelgate_shared::snapshot::KeyCacheMode::Route,
    };
    let v1 = Snapshot::new(
        1,
        Config {
            key_hash_secret: vec![1; 32],
            keys: vec![key],
            ..Default::default()
        },
    );
    let mut c2 = v1.config.clone();
    c2.keys[0].revoked = true;
    let v2 = Snapshot::new(2, c2);
    let d = delta::compute(&v1, &v2, &ConfigDigest::of(&v2.config)).unwrap();
    (v1, v2, d)
}

#[tokio::test]
async fn a_delta_on_another_base_makes_the_node_ask_for_a_full_snapshot_and_end_on_the_right_hash()
{
    let (v1, v2, mut d) = versions();
    // The control plane believes the node serves version 7.
    d.base_version = 7;
    let script = vec![(v1.to_wire(), 1), (d.to_wire(), 1), (v2.to_wire(), 1)];
    let (cp, dp) = against_script("delta-wrong-base", script).await;
    let hello = cp.hello.lock().unwrap().clone().unwrap();
    assert_eq!(hello.protocol_version, 9);
    assert!(hello.features.iter().any(|f| f == FEATURE_CONFIG_DELTA));
    let replies = cp.replies.lock().unwrap().clone();
    assert!(
        matches!(&replies[0], Kind::Ack(a) if a.version == 1),
        "{replies:?}"
    );
    assert!(
        matches!(&replies[1], Kind::Resync(r) if r.served_version == 1 && r.served_hash == v1.content_hash),
        "{replies:?}"
    );
    assert!(
        matches!(&replies[2], Kind::Ack(a) if a.version == 2 && a.content_hash == v2.content_hash),
        "{replies:?}"
    );
    let rt = dp.runtime.load_full();
    assert_eq!((rt.version, &rt.content_hash), (2, &v2.content_hash));
    assert_eq!(
        dp.config_updates().deltas(),
        0,
        "the delta was never applied"
    );
    assert_eq!(dp.config_updates().resyncs(), 1);
    dp.shutdown().await;
}

#[tokio::test]
async fn a_delta_whose_result_does_not_hash_as_declared_is_nacked_not_applied_and_resynced() {
    let (v1, v2, mut d) = versions();
    d.digest = ConfigDigest::default().hex();
    let script = vec![
        (v1.to_wire(), 1),
        // A NACK, then a resync request.
        (d.to_wire(), 2),
        (v2.to_wire(), 1),
    ];
    let (cp, dp) = against_script("delta-bad-hash", script).await;
    let replies = cp.replies.lock().unwrap().clone();
    assert!(
        matches!(&replies[1], Kind::Nack(n) if n.version == 2 && n.reason.contains("digest")),
        "{replies:?}"
    );
    assert!(
        matches!(&replies[2], Kind::Resync(r) if r.served_version == 1),
        "{replies:?}"
    );
    assert!(
        matches!(&replies[3], Kind::Ack(a) if a.version == 2),
        "{replies:?}"
    );
    assert_eq!(dp.runtime.load().content_hash, v2.content_hash);
    assert_eq!(dp.config_updates().deltas(), 0);
    dp.shutdown().await;
}

#[tokio::test]
async fn a_good_delta_from_a_scripted_control_plane_is_applied_and_a_message_needing_an_unknown_feature_is_refused(
) {
    let (v1, v2, d) = versions();
    let mut future = v2.to_wire();
    future.version = 3;
    future.required_features = vec!["config-teleport".into()];
    let script = vec![(v1.to_wire(), 1), (d.to_wire(), 1), (future, 1)];
    let (cp, dp) = against_script("delta-good", script).await;
    let replies = cp.replies.lock().unwrap().clone();
    assert!(
        matches!(&replies[1], Kind::Ack(a) if a.version == 2 && a.content_hash == v2.content_hash),
        "{replies:?}"
    );
    assert!(
        matches!(&replies[2], Kind::Nack(n) if n.version == 3 && n.reason.contains("config-teleport")),
        "{replies:?}"
    );
    assert_eq!(dp.config_version(), 2);
    assert_eq!(dp.config_updates().deltas(), 1);
    let rt = dp.runtime.load_full();
    assert!(rt.keys_by_id.get("k1").unwrap().0.to_api_key().revoked);
    dp.shutdown().await;
}

#[tokio::test]
async fn after_a_large_full_snapshot_the_node_subscribes_again_naming_the_version_it_serves() {
    let (v1, _, _) = versions();
    let mut config = v1.config.clone();
    config.keys = (0..12_000u32)
        .map(|n| {
            let mut k = config.keys[0].clone();
            k.id = format!("k{n:05}");
            k.name = format!("key number {n}");
            k.key_hash = [0; 32];
            k.key_hash[..4].copy_from_slice(&n.to_le_bytes());
            k
        })
        .collect();
    let large = Snapshot::new(1, config);
    // About 1.2 MB on the wire: past `subscriber::RENEW_AFTER_BYTES` (1 MiB).
    let wire = large.to_wire();
    // The scripted control plane sends its script on every subscription: the second time the
    // node already serves the version and only ACKs it.
    let (cp, dp) = against_script("renew-after-large", vec![(wire, 1)]).await;
    let (hellos, replies) = (cp.hellos.clone(), cp.replies.clone());
    eventually(
        Duration::from_secs(10),
        "a second subscription, answered",
        || async {
            (hellos.lock().unwrap().len() >= 2 && replies.lock().unwrap().len() >= 2).then_some(())
        },
    )
    .await;
    let hellos = cp.hellos.lock().unwrap().clone();
    assert_eq!(hellos[0].current_version, 0);
    assert_eq!(
        (hellos[1].current_version, &hellos[1].current_hash),
        (1, &large.content_hash)
    );
    let replies = cp.replies.lock().unwrap().clone();
    assert!(
        replies.iter().all(
            |r| matches!(r, Kind::Ack(a) if a.version == 1 && a.content_hash == large.content_hash)
        ),
        "{replies:?}"
    );
    assert_eq!(dp.config_updates().full(), 1, "applied once");
    assert_eq!(dp.runtime.load_full().keys.len(), 12_000);
    // Once the node serves it, the version comes no more: it stays on its second stream.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cp.hellos.lock().unwrap().len(), 2);
    dp.shutdown().await;
}
