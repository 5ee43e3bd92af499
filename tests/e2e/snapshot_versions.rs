//! The version rule between the planes: every config change, a rollback to earlier content
//! included, is published under a new, higher version, and a data plane applies only a version
//! above the one it serves. A control plane whose version counter is behind (restarted on a
//! database restored from an older backup) is refused with a NACK the fleet view shows, and the
//! node keeps serving the newer snapshot until the control plane publishes past it.

use std::time::Duration;

use serde_json::Value;

use crate::support::{eventually, gateway_with_smart_route, start_control_plane_clocked, TestDb};
use crate::usage_ingest::new_key;

#[tokio::test]
async fn a_rollback_to_earlier_content_gets_a_new_higher_version_and_is_applied() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let latest = || {
        gw.cp()
            .services
            .publisher
            .latest()
            .unwrap()
            .snapshot
            .clone()
    };
    let before = latest();

    let (status, v) = gw
        .admin(
            reqwest::Method::POST,
            &format!("/keys/{}/disable", p.key_id),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let disabled = latest();
    assert!(disabled.version > before.version);
    assert_ne!(disabled.content_hash, before.content_hash);
    gw.wait_for_config().await;
    assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 401);

    let (status, v) = gw
        .admin(
            reqwest::Method::POST,
            &format!("/keys/{}/enable", p.key_id),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let rolled_back = latest();
    assert_eq!(
        rolled_back.content_hash, before.content_hash,
        "the content is back to what it was"
    );
    assert!(
        rolled_back.version > disabled.version,
        "but under a new version: {} after {}",
        rolled_back.version,
        disabled.version
    );
    gw.wait_for_config().await;
    assert_eq!(gw.dp().config_version(), rolled_back.version);
    assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_control_plane_behind_the_served_version_is_refused_and_the_node_keeps_serving_the_newer_snapshot(
) {
    let (_upstream, mut gw, p) = gateway_with_smart_route().await;
    // A few more versions (each key is a config change).
    for _ in 0..3 {
        new_key(&gw, None).await;
    }
    gw.wait_for_config().await;
    let served = gw.dp().config_version();

    // The control plane comes back on a database whose version counter is behind: here one
    // with nothing in it, as a restore of a backup older than every change above would be.
    gw.stop_control_plane().await;
    let behind_db = TestDb::new().await;
    let cp = start_control_plane_clocked(
        &behind_db.url,
        &gw.master_key,
        gw.grpc_addr,
        gw.clock.clone(),
    )
    .await;
    let offered = cp.services.publisher.latest().unwrap().snapshot.version;
    assert!(offered < served, "offered {offered}, served {served}");
    gw.admin_url = format!("http://{}", cp.admin_addr);
    gw.admin_token = cp.bootstrap_admin_token.clone().unwrap();
    gw.cp = Some(cp);

    let want = format!("not newer than the served version {served}");
    let node = eventually(
        Duration::from_secs(15),
        "the node to refuse the older snapshot",
        || async {
            let (_, nodes) = gw.admin(reqwest::Method::GET, "/nodes", None).await;
            nodes["data"].as_array().and_then(|ns| {
                ns.iter()
                    .find(|n| n["status"] == "nacked")
                    .filter(|n| n["last_error"].as_str().is_some_and(|e| e.contains(&want)))
                    .cloned()
            })
        },
    )
    .await;
    assert_eq!(
        node["last_error"],
        Value::String(format!("version {offered}: {want}")),
        "{node}"
    );
    assert_eq!(gw.dp().config_version(), served, "the newer snapshot stays");
    assert_eq!(
        gw.say_hi(&p.key, "smart").await.status(),
        200,
        "a key only the newer snapshot has still works"
    );

    // Once the control plane publishes past the served version, the node applies it.
    let mut version = offered;
    while version <= served {
        new_key(&gw, None).await;
        version = gw
            .cp()
            .services
            .publisher
            .latest()
            .unwrap()
            .snapshot
            .version;
    }
    gw.wait_for_config().await;
    assert_eq!(gw.dp().config_version(), version);
    assert_eq!(
        gw.say_hi(&p.key, "smart").await.status(),
        401,
        "the control plane's config is served now, and it has no such key"
    );
    gw.shutdown().await;
    behind_db.drop_database().await;
}
