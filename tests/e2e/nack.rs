//! The data plane's side of the config contract, against a scripted control plane: it ACKs what
//! it applies, NACKs (with the reason) what it cannot apply, and keeps serving the last good
//! snapshot.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use modelgate_proto::config::v1::config_service_server::{ConfigService, ConfigServiceServer};
use modelgate_proto::config::v1::{
    subscribe_request::Kind, Snapshot as WireSnapshot, SubscribeRequest,
};
use modelgate_shared::snapshot::{Config, Snapshot};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::support::{eventually, start_data_plane, temp_dir};

/// Sends the scripted snapshots one after another, each after the previous reply, and records
/// every reply.
#[derive(Clone)]
struct ScriptedControlPlane {
    script: Arc<Vec<WireSnapshot>>,
    replies: Arc<Mutex<Vec<Kind>>>,
}

#[tonic::async_trait]
impl ConfigService for ScriptedControlPlane {
    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<WireSnapshot, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let me = self.clone();
        tokio::spawn(async move {
            let Ok(Some(SubscribeRequest {
                kind: Some(Kind::Hello(_)),
            })) = inbound.message().await
            else {
                return;
            };
            for snapshot in me.script.iter() {
                if tx.send(Ok(snapshot.clone())).await.is_err() {
                    return;
                }
                // The answer to this snapshot; health reports may come in between.
                loop {
                    match inbound.message().await {
                        Ok(Some(SubscribeRequest {
                            kind: Some(Kind::Health(_)),
                        })) => continue,
                        Ok(Some(SubscribeRequest { kind: Some(reply) })) => {
                            me.replies.lock().unwrap().push(reply);
                            break;
                        }
                        _ => return,
                    }
                }
            }
            // Hold the stream open.
            while let Ok(Some(_)) = inbound.message().await {}
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

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

    let cp = ScriptedControlPlane {
        script: Arc::new(vec![good, too_new, tampered]),
        replies: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        tonic::transport::Server::builder().add_service(ConfigServiceServer::new(cp.clone()));
    // Over mutual TLS with the test fleet's control-plane certificate, as a real one.
    tokio::spawn(
        server.serve_with_incoming(modelgate_control_plane::grpc::transport::incoming(
            listener,
            crate::support::pki::Pki::shared().server_security(),
            Arc::default(),
            tokio_util::sync::CancellationToken::new(),
        )),
    );

    let dp = start_data_plane(addr, &temp_dir("nack")).await;
    let replies = cp.replies.clone();
    eventually(Duration::from_secs(10), "three replies", || async {
        (replies.lock().unwrap().len() == 3).then_some(())
    })
    .await;

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
