//! Config distribution: revocation reaches a connected data plane within a second, nodes record
//! their applied version, and a data plane keeps serving (and boots) without the control plane.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{eventually, start_control_plane, Gateway};
use crate::support::{gateway_with_smart_route, request_id};

#[tokio::test]
async fn revoked_key_is_refused_by_a_connected_data_plane_within_one_second() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let body = json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        gw.chat(&p.key, body.clone()).send().await.unwrap().status(),
        200
    );

    let (status, _) = gw
        .admin(
            reqwest::Method::POST,
            &format!("/keys/{}/revoke", p.key_id),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let revoked_at = Instant::now();
    let resp = eventually(
        Duration::from_secs(1),
        "the revoked key to be refused",
        || async {
            let r = gw.chat(&p.key, body.clone()).send().await.unwrap();
            (r.status() == 401).then_some(r)
        },
    )
    .await;
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_api_key");
    gw.shutdown().await;
}

#[tokio::test]
async fn nodes_report_the_version_they_applied() {
    let gw = Gateway::start().await;
    let latest = gw
        .cp()
        .services
        .publisher
        .latest()
        .unwrap()
        .snapshot
        .version;
    let node = eventually(
        Duration::from_secs(5),
        "the node to ack the latest version",
        || async {
            let (_, v) = gw.admin(reqwest::Method::GET, "/nodes", None).await;
            v["data"]
                .as_array()
                .and_then(|nodes| nodes.first().cloned())
                .filter(|n| n["applied_version"] == latest && n["status"] == "acked")
        },
    )
    .await;
    assert_eq!(node["connected"], true);
    assert_eq!(node["labels"]["region"], "test");
    gw.shutdown().await;
}

#[tokio::test]
async fn data_plane_serves_without_the_control_plane_and_boots_from_last_known_good() {
    let (_upstream, mut gw, p) = gateway_with_smart_route().await;
    let body = json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]});

    gw.stop_control_plane().await;
    let resp = gw.chat(&p.key, body.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200, "a running data plane keeps serving");
    let served_while_away = request_id(&resp);

    gw.restart_data_plane().await;
    assert!(
        gw.dp().config_version() > 0,
        "booted from the last-known-good file"
    );
    let resp = gw.chat(&p.key, body.clone()).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "a restarted data plane serves from last-known-good"
    );
    let served_after_restart = request_id(&resp);
    assert_eq!(
        gw.chat("mg-wrong", body.clone())
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // The control plane comes back on the same address: the spooled usage is shipped.
    let cp = start_control_plane(&gw.db.url, &gw.master_key, gw.grpc_addr).await;
    gw.admin_url = format!("http://{}", cp.admin_addr);
    gw.cp = Some(cp);
    for request_id in [served_while_away, served_after_restart] {
        let row = gw.usage_row(&request_id).await;
        assert_eq!(row["status"], 200);
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn last_known_good_file_is_a_sealed_verified_snapshot_without_a_credential_in_clear() {
    let (_upstream, gw, _p) = crate::support::gateway_with_smart_route().await;
    let path = modelgate_data_plane::config::lkg::path(&gw.dp_dir);
    let sealer = modelgate_data_plane::config::lkg::sealer(
        &gw.dp_dir,
        &modelgate_data_plane::LkgKey::GeneratedBesideData,
    )
    .unwrap();
    // The file is written just after the snapshot is applied: wait for the served version.
    let want = gw.dp().config_version();
    let snapshot = eventually(
        Duration::from_secs(5),
        "the last-known-good file",
        || async {
            modelgate_data_plane::config::lkg::load(&gw.dp_dir, &sealer)
                .ok()
                .flatten()
                .filter(|s| s.version >= want)
        },
    )
    .await;
    let raw = std::fs::read(&path).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(
        !raw.contains("sk-upstream-secret-1234"),
        "the provider credential must not be in the file in clear"
    );
    assert!(
        snapshot
            .config
            .providers
            .iter()
            .any(|p| p.credential == "sk-upstream-secret-1234"),
        "the sealed file still carries what the node needs"
    );
    let other = modelgate_data_plane::config::lkg::sealer(
        &gw.dp_dir,
        &modelgate_data_plane::LkgKey::Given(
            modelgate_control_plane::crypto::Sealer::generate_master_key_hex().into(),
        ),
    )
    .unwrap();
    assert!(
        modelgate_data_plane::config::lkg::load(&gw.dp_dir, &other).is_err(),
        "another key cannot open it"
    );
    // Corrupt one byte: the file is refused rather than served.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    assert!(modelgate_data_plane::config::lkg::load(&gw.dp_dir, &sealer).is_err());
    gw.shutdown().await;
}
