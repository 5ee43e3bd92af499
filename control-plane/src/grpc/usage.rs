//! `UsageService.Report`: each batch is stored (deduplicated by event id; events that fail
//! validation quarantined) and committed before its acknowledgement is sent.

use std::pin::Pin;

use futures_util::Stream;
use modelgate_proto::usage::v1::{usage_service_server::UsageService, UsageAck, UsageBatch};
use modelgate_shared::usage::UsageEvent;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::identity;
use crate::service::{usage, Services};

pub struct UsageIngest {
    pub services: Services,
    pub shutdown: tokio_util::sync::CancellationToken,
}

#[tonic::async_trait]
impl UsageService for UsageIngest {
    type ReportStream = Pin<Box<dyn Stream<Item = Result<UsageAck, Status>> + Send>>;

    async fn report(
        &self,
        request: Request<Streaming<UsageBatch>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        let caller = identity::caller(&request, &self.services.revoked)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let services = self.services.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut revocations = services.revoked.subscribe();
            // The node this stream speaks for: the certificate's, or (plaintext) the last batch's.
            let mut node = caller.node_id().map(str::to_owned);
            loop {
                let next = tokio::select! {
                    n = inbound.message() => n,
                    changed = revocations.changed() => {
                        if changed.is_err() || node.as_deref().is_some_and(|n| services.revoked.contains(n)) {
                            let _ = tx.send(Err(Status::permission_denied("node revoked"))).await;
                            break;
                        }
                        continue;
                    }
                    () = shutdown.cancelled() => break,
                };
                let batch = match next {
                    Ok(Some(b)) => b,
                    Ok(None) | Err(_) => break,
                };
                if let Err(status) = caller.usage_batch(
                    &batch.node_id,
                    batch.events.iter().map(|e| e.node_id.as_str()),
                ) {
                    tracing::warn!(batch = %batch.batch_id, claimed = %batch.node_id, error = %status.message(), "usage batch refused");
                    let _ = tx.send(Err(status)).await;
                    break;
                }
                node = Some(batch.node_id.clone());
                // An event naming a value this build does not know is quarantined by ingest.
                let events: Vec<usage::Received> =
                    batch.events.into_iter().map(UsageEvent::try_from).collect();
                let delivery = if batch.resent {
                    usage::Delivery::Resent
                } else {
                    usage::Delivery::New
                };
                match usage::ingest_received(&services, &batch.node_id, events, delivery).await {
                    Ok(done) => {
                        let ack = UsageAck {
                            batch_id: batch.batch_id,
                            inserted: u32::try_from(done.inserted).unwrap_or(u32::MAX),
                            duplicates: u32::try_from(done.duplicates).unwrap_or(u32::MAX),
                            quarantined: u32::try_from(done.quarantined).unwrap_or(u32::MAX),
                        };
                        if tx.send(Ok(ack)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        // Not acknowledged: the data plane keeps the batch and resends it.
                        tracing::warn!(batch = %batch.batch_id, node = %batch.node_id, error = %e, "usage batch not stored");
                        let _ = tx.send(Err(Status::from(e))).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
