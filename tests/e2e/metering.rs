//! Metering survives its dependencies going away: every answered request has exactly one usage
//! row after the control plane was away under load, and after the control plane's connections to
//! Postgres were cut mid-ingest (through a TCP proxy: every connection cut, new ones refused for a
//! while, as in a database restart or failover); the spool drains to zero. And a full spool
//! refuses traffic it could not meter, without calling upstream.

use std::collections::HashSet;
use std::time::Duration;

use modelgate_data_plane::usage::spool::{FsyncPolicy, SpoolOptions, WhenFull};

use crate::support::load::Load;
use crate::support::tcp_proxy::TcpProxy;
use crate::support::upstream::MockUpstream;
use crate::support::{eventually, start_data_plane_with, temp_dir, Gateway, Provisioned, TestDb};

/// Every answered request has exactly one row; nothing else was stored for the key.
async fn assert_one_row_per_answered_request(gw: &Gateway, p: &Provisioned, answered: &[String]) {
    let unique: HashSet<&String> = answered.iter().collect();
    assert_eq!(unique.len(), answered.len(), "request ids are unique");
    let counts = eventually(
        Duration::from_secs(60),
        "a usage row for every answered request",
        || async {
            let counts = gw.usage_counts_by_request(&p.key_id).await;
            answered
                .iter()
                .all(|id| counts.contains_key(id))
                .then_some(counts)
        },
    )
    .await;
    for id in answered {
        assert_eq!(counts[id], 1, "request {id} has exactly one usage row");
    }
    assert_eq!(
        counts.len(),
        answered.len(),
        "rows = requests (no row without an answered request)"
    );
    eventually(
        Duration::from_secs(30),
        "the spool to drain to zero",
        || async { (gw.dp().usage_backlog_bytes() == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn control_plane_away_under_load_loses_and_duplicates_nothing() {
    let upstream = MockUpstream::start().await;
    let mut gw = Gateway::start().await;
    let p = gw
        .provision(&upstream.base_url(), "smart", "gpt-4o-2024")
        .await;
    let load = Load::start(&gw.base_url(), &p.key, "smart", 8, Duration::from_millis(5));
    eventually(Duration::from_secs(10), "load to start", || async {
        (load.answered_so_far() > 50).then_some(())
    })
    .await;

    gw.stop_control_plane().await;
    let during = load.answered_so_far();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        load.answered_so_far() > during + 50,
        "the data plane keeps serving while the control plane is away"
    );
    assert!(
        gw.dp().usage_backlog_bytes() > 0,
        "events wait in the spool"
    );
    gw.restart_control_plane().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answered = load.stop().await;

    assert_one_row_per_answered_request(&gw, &p, &answered).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_database_connection_cut_during_ingest_loses_and_duplicates_nothing() {
    let db = TestDb::postgres().await;
    let (head, rest) = db.url.split_once('@').unwrap();
    let (host_port, db_name) = rest.split_once('/').unwrap();
    let proxy = TcpProxy::start(
        tokio::net::lookup_host(host_port)
            .await
            .unwrap()
            .next()
            .unwrap(),
    )
    .await;
    let via_proxy = format!("{head}@{}/{db_name}", proxy.addr);
    let upstream = MockUpstream::start().await;
    let gw = Gateway::start_on(db, via_proxy).await;
    let p = gw
        .provision(&upstream.base_url(), "smart", "gpt-4o-2024")
        .await;
    let load = Load::start(&gw.base_url(), &p.key, "smart", 8, Duration::from_millis(5));
    eventually(Duration::from_secs(10), "load to start", || async {
        (load.answered_so_far() > 50).then_some(())
    })
    .await;

    // Postgres "restarts": every connection is cut mid-ingest and new ones are refused.
    proxy.go_down();
    let during = load.answered_so_far();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        load.answered_so_far() > during + 50,
        "the data plane keeps serving while the database is down"
    );
    assert!(
        gw.dp().usage_backlog_bytes() > 0,
        "nothing is acknowledged while the database is down"
    );
    proxy.come_back();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answered = load.stop().await;

    assert_one_row_per_answered_request(&gw, &p, &answered).await;
    gw.shutdown().await;
}

/// The value of the metric sample `name` (exactly as rendered) served at `base`/metrics.
pub async fn metric(base: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
}

/// A provisioned gateway whose data plane's spool is bounded at one byte (its first event
/// fills it); returns the upstream, the gateway, the key and the data plane's base address.
async fn gateway_with_a_one_byte_spool(
    fsync: FsyncPolicy,
    when_full: WhenFull,
) -> (MockUpstream, Gateway, Provisioned, String) {
    let upstream = MockUpstream::start().await;
    let mut gw = Gateway::start().await;
    let p = gw
        .provision(&upstream.base_url(), "smart", "gpt-4o-2024")
        .await;
    gw.stop_data_plane().await;
    let options = SpoolOptions {
        fsync,
        max_bytes: 1,
        when_full,
    };
    gw.dp = Some(start_data_plane_with(gw.grpc_addr, &temp_dir("full"), options).await);
    gw.wait_for_config().await;
    let node = format!("http://{}", gw.dp().metrics_addr);
    (upstream, gw, p, node)
}

#[tokio::test]
async fn a_full_spool_refuses_new_requests_without_calling_upstream() {
    // A bound of one byte: the first event fills it.
    let (upstream, gw, p, node) =
        gateway_with_a_one_byte_spool(FsyncPolicy::Never, WhenFull::Reject).await;

    assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 200);
    let calls = upstream.calls();
    let refused = gw.say_hi(&p.key, "smart").await;
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "metering_unavailable");
    assert_eq!(
        upstream.calls(),
        calls,
        "a refused request never goes upstream"
    );
    assert_eq!(
        metric(&node, "modelgate_usage_spool_refused_total").await,
        1
    );
    assert!(metric(&node, "modelgate_usage_spool_disk_bytes").await > 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_full_spool_can_be_told_to_serve_and_count_unmetered_requests() {
    let (_upstream, gw, p, node) = gateway_with_a_one_byte_spool(
        FsyncPolicy::Interval(Duration::from_millis(10)),
        WhenFull::ServeUnmetered,
    )
    .await;

    let metered = gw.say_hi(&p.key, "smart").await;
    assert_eq!(metered.status(), 200);
    gw.usage_row(&crate::support::request_id(&metered)).await;
    let unmetered = gw.say_hi(&p.key, "smart").await;
    assert_eq!(unmetered.status(), 200);
    assert_eq!(metric(&node, "modelgate_usage_unmetered_total").await, 1);
    let counts = gw.usage_counts_by_request(&p.key_id).await;
    assert!(!counts.contains_key(&crate::support::request_id(&unmetered)));
    gw.shutdown().await;
}
