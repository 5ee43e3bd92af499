//! The data plane's side of the config contract, against a scripted control plane: it ACKs what
//! it applies, NACKs (with the reason) what it cannot apply, and keeps serving the last good
//! snapshot.

use modelgate_proto::config::v1::subscribe_request::Kind;
use modelgate_shared::snapshot::{Config, Snapshot};

use crate::support::scripted::against_script;

fn config() -> Config {
    Config {
        key_hash_secret: vec![1; 32],
        ..Default::default()
    }
}

#[tokio::test]
async fn data_plane_acks_what_it_applies_and_nacks_a_snapshot_needing_a_newer_protocol() {
    let good = Snapshot::new(1, config()).to_wire();
    let mut too_new = Snapshot::new(2, config()).to_wire();
    too_new.min_protocol_version = modelgate_shared::SNAPSHOT_PROTOCOL_VERSION + 1;
    let mut tampered = Snapshot::new(3, config()).to_wire();
    tampered.content_hash = "0".repeat(64);

    let (cp, dp) = against_script("nack", vec![(good, 1), (too_new, 1), (tampered, 1)]).await;
    let replies = cp.replies.lock().unwrap().clone();
    assert!(
        matches!(&replies[0], Kind::Ack(a) if a.version == 1),
        "{replies:?}"
    );
    assert!(
        matches!(&replies[1], Kind::Nack(n) if n.version == 2 && n.reason.contains("protocol")),
        "{replies:?}"
    );
    assert!(
        matches!(&replies[2], Kind::Nack(n) if n.version == 3 && n.reason.contains("hash")),
        "{replies:?}"
    );
    assert_eq!(
        dp.config_version(),
        1,
        "the last good snapshot stays in service"
    );
    dp.shutdown().await;
}
