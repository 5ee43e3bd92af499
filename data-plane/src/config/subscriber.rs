//! The config subscriber: keeps a `ConfigService.Subscribe` stream open to the control plane,
//! validates each snapshot, swaps it in, persists it as last-known-good, and answers ACK or
//! NACK. Reconnects with jittered exponential backoff.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use modelgate_proto::config::v1::{
    config_service_client::ConfigServiceClient, subscribe_request::Kind, Ack, Hello, Nack,
    SubscribeRequest,
};
use modelgate_shared::snapshot::Snapshot;
use prost::Message;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::{lkg, Runtime, SharedRuntime};

pub struct Subscriber {
    pub control_plane_url: String,
    pub node_id: String,
    pub labels: HashMap<String, String>,
    pub data_dir: PathBuf,
    /// Seals the last-known-good file.
    pub lkg_sealer: modelgate_shared::crypto::Sealer,
    pub runtime: SharedRuntime,
    pub shutdown: CancellationToken,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Subscriber {
    pub async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let outcome = tokio::select! {
                r = self.session() => r,
                () = self.shutdown.cancelled() => return,
            };
            match outcome {
                Ok(()) => {
                    tracing::info!("config stream ended; reconnecting");
                    backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "config stream failed; serving last-known-good")
                }
            }
            let jittered = backoff.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
            tokio::select! {
                () = tokio::time::sleep(jittered) => {}
                () = self.shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn session(&self) -> Result<(), tonic::Status> {
        let mut client = ConfigServiceClient::connect(self.control_plane_url.clone())
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let (tx, rx) = mpsc::channel(8);
        let hello = SubscribeRequest {
            kind: Some(Kind::Hello(Hello {
                node_id: self.node_id.clone(),
                labels: self.labels.clone(),
                software_version: env!("CARGO_PKG_VERSION").to_owned(),
                current_version: self.runtime.load().version,
                protocol_version: modelgate_shared::SNAPSHOT_PROTOCOL_VERSION,
            })),
        };
        let _ = tx.send(hello).await;
        let mut stream = client
            .subscribe(ReceiverStream::new(rx))
            .await?
            .into_inner();
        tracing::info!(url = %self.control_plane_url, "config stream connected");
        while let Some(wire) = stream.message().await? {
            let version = wire.version;
            let encoded = wire.encode_to_vec();
            let reply = match Snapshot::try_from(wire) {
                Ok(snapshot) => {
                    let health = self.runtime.load().health.clone();
                    self.runtime
                        .store(Arc::new(Runtime::build_with_health(snapshot, health)));
                    let dir = self.data_dir.clone();
                    let sealer = self.lkg_sealer.clone();
                    match tokio::task::spawn_blocking(move || lkg::save(&dir, &sealer, &encoded))
                        .await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "could not persist last-known-good")
                        }
                        Err(e) => tracing::error!(error = %e, "last-known-good writer panicked"),
                    }
                    tracing::info!(version, "snapshot applied");
                    Kind::Ack(Ack { version })
                }
                Err(e) => {
                    tracing::warn!(version, reason = %e, "snapshot rejected");
                    Kind::Nack(Nack {
                        version,
                        reason: e.to_string(),
                    })
                }
            };
            if tx
                .send(SubscribeRequest { kind: Some(reply) })
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(())
    }
}
