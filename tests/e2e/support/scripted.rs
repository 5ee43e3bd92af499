//! A scripted control plane for the data plane's side of the config contract: it sends a fixed
//! list of messages over mutual TLS, each after the replies to the one before, and records the
//! hello and every reply (health reports left out).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use modelgate_proto::config::v1::config_service_server::{ConfigService, ConfigServiceServer};
use modelgate_proto::config::v1::{
    subscribe_request::Kind, Hello, Snapshot as WireSnapshot, SubscribeRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{eventually, start_data_plane, temp_dir};

/// Sends each step's message after the previous step's replies (as many as the step expects),
/// recording every reply but health reports, and the hello.
#[derive(Clone)]
pub struct ScriptedControlPlane {
    script: Arc<Vec<(WireSnapshot, usize)>>,
    pub replies: Arc<Mutex<Vec<Kind>>>,
    pub hello: Arc<Mutex<Option<Hello>>>,
    /// Every subscription's hello, in order.
    pub hellos: Arc<Mutex<Vec<Hello>>>,
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
                kind: Some(Kind::Hello(hello)),
            })) = inbound.message().await
            else {
                return;
            };
            me.hellos.lock().unwrap().push(hello.clone());
            *me.hello.lock().unwrap() = Some(hello);
            for (message, expected) in me.script.iter() {
                if tx.send(Ok(message.clone())).await.is_err() {
                    return;
                }
                let mut got = 0;
                while got < *expected {
                    match inbound.message().await {
                        Ok(Some(SubscribeRequest {
                            kind: Some(Kind::Health(_)),
                        })) => continue,
                        Ok(Some(SubscribeRequest { kind: Some(reply) })) => {
                            me.replies.lock().unwrap().push(reply);
                            got += 1;
                        }
                        _ => return,
                    }
                }
            }
            while let Ok(Some(_)) = inbound.message().await {}
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A real data plane on a scripted control plane; returns once it replied `replies` times.
pub async fn against_script(
    name: &str,
    script: Vec<(WireSnapshot, usize)>,
) -> (ScriptedControlPlane, modelgate_data_plane::RunningDataPlane) {
    let total: usize = script.iter().map(|(_, n)| n).sum();
    let cp = ScriptedControlPlane {
        script: Arc::new(script),
        replies: Arc::default(),
        hello: Arc::default(),
        hellos: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        tonic::transport::Server::builder().add_service(ConfigServiceServer::new(cp.clone()));
    tokio::spawn(
        server.serve_with_incoming(modelgate_control_plane::grpc::transport::incoming(
            listener,
            super::pki::Pki::shared().server_security(),
            Arc::default(),
            tokio_util::sync::CancellationToken::new(),
        )),
    );
    let dp = start_data_plane(addr, &temp_dir(name)).await;
    let replies = cp.replies.clone();
    eventually(Duration::from_secs(10), "every scripted reply", || async {
        (replies.lock().unwrap().len() >= total).then_some(())
    })
    .await;
    (cp, dp)
}
