//! The servers the suite starts for itself on a machine without them
//! (`support::services`): forced here whatever the environment says, so that the provisioning
//! path runs in CI too (where the machine's servers are used) and cannot rot unnoticed. Each is
//! this process's own (not the one at the default address) and does what the tests use it for.

use std::time::Duration;

use crate::support::services::{provisioned, Service};
use crate::support::upstream::MockUpstream;
use crate::support::{eventually, request_id, Gateway, TestDb};

/// The port of a `scheme://[user@]host:port[/path]` URL.
fn port(url: &str) -> u16 {
    let rest = url.split_once("://").unwrap().1;
    let host_port = rest.rsplit('@').next().unwrap().split('/').next().unwrap();
    host_port.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[tokio::test]
async fn a_provisioned_postgres_takes_the_migrations_and_stores_a_requests_ledger_row() {
    let base = provisioned(Service::Postgres).await;
    assert_ne!(
        port(&base),
        5432,
        "our own server, not the machine's: {base}"
    );
    let db = TestDb::on_postgres(base).await;
    assert!(db.url.starts_with("postgres://"), "{}", db.url);
    let url = db.url.clone();
    let upstream = MockUpstream::start().await;
    let gw = Gateway::start_on(db, url).await;
    let p = gw
        .provision(&upstream.base_url(), "smart", "gpt-4o-2024")
        .await;
    let resp = gw.say_hi(&p.key, "smart").await;
    assert_eq!(resp.status(), 200);
    let row = gw.usage_row(&request_id(&resp)).await;
    assert_eq!(row["key_id"], p.key_id.as_str(), "{row}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_provisioned_nats_has_jetstream_and_deduplicates_by_message_id() {
    let url = provisioned(Service::Nats).await;
    assert_ne!(port(&url), 4222, "our own server, not the machine's: {url}");
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "MGTEST_PROVISIONED".into(),
        subjects: vec!["mgtest.provisioned".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    for _ in 0..2 {
        let headers = {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", "one-event");
            h
        };
        js.publish_with_headers("mgtest.provisioned", headers, "event".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut stream = js.get_stream("MGTEST_PROVISIONED").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn a_provisioned_redis_stores_and_expires_an_entry() {
    let url = provisioned(Service::Redis).await;
    assert_ne!(port(&url), 6379, "our own server, not the machine's: {url}");
    let mut redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg("mgtest:provisioned")
        .arg("answer")
        .arg("PX")
        .arg(300)
        .query_async(&mut redis)
        .await
        .unwrap();
    let stored: Option<String> = redis::cmd("GET")
        .arg("mgtest:provisioned")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("answer"));
    eventually(Duration::from_secs(10), "the entry to expire", || {
        let mut redis = redis.clone();
        async move {
            let left: Option<String> = redis::cmd("GET")
                .arg("mgtest:provisioned")
                .query_async(&mut redis)
                .await
                .unwrap();
            left.is_none().then_some(())
        }
    })
    .await;
}
