//! `ConfigService.Subscribe`: hello, then the version assigned to the node (by its labels, from
//! the publisher's distribution: the latest everywhere, or during a staged rollout the new or
//! the old track) and every later assignment; ACK/NACK and traffic reports recorded per node.

use std::collections::BTreeMap;
use std::pin::Pin;

use futures_util::Stream;
use modelgate_proto::config::v1::{
    config_service_server::ConfigService, subscribe_request::Kind, Snapshot, SubscribeRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::identity;
use crate::rollout;
use crate::service::{fleet, nodes, Services};
use crate::snapshot::delta;

pub struct ConfigStream {
    pub services: Services,
    pub shutdown: CancellationToken,
}

#[tonic::async_trait]
impl ConfigService for ConfigStream {
    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<Snapshot, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = identity::caller(&request, &self.services.revoked)?;
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(SubscribeRequest {
                kind: Some(Kind::Hello(h)),
            }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a hello",
                ))
            }
        };
        let current_hash = hello.current_hash;
        let deltas_ok = delta::supports_deltas(hello.protocol_version, &hello.features);
        let hello = nodes::Hello {
            node_id: hello.node_id,
            labels: hello.labels.into_iter().collect::<BTreeMap<_, _>>(),
            software_version: hello.software_version,
            current_version: hello.current_version,
        };
        caller.hello(&hello.node_id, &hello.labels)?;
        nodes::connected(&self.services, &hello, &current_hash).await?;
        self.services.node_states.connected(
            &hello.node_id,
            hello.labels.clone(),
            hello.software_version.clone(),
            (hello.current_version, current_hash.clone()),
            self.services.clock.now(),
        );
        self.services.metrics.node_connected();
        self.services
            .metrics
            .node_applied(&hello.node_id, hello.current_version);
        tracing::info!(node = %hello.node_id, version = hello.current_version, deltas = deltas_ok, "data plane subscribed");

        let (tx, rx) = mpsc::channel(4);
        let services = self.services.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let node_id = hello.node_id.clone();
            let mut snapshots = services.publisher.subscribe();
            let mut revocations = services.revoked.subscribe();
            // What the node serves once it applied what it was sent: the base of the next delta
            // (a node that did not apply it asks for a full snapshot instead).
            let mut sent = hello.current_version;
            let mut sent_hash = current_hash;
            // The node asked for a full snapshot (`Resync`): the next message is one.
            let mut resync = false;
            loop {
                let assigned = snapshots
                    .borrow_and_update()
                    .as_ref()
                    .map(|d| d.for_node(&hello.labels).0.clone());
                if let Some(p) = assigned {
                    if p.snapshot.version != sent || resync {
                        let message = if deltas_ok && !resync {
                            services
                                .publisher
                                .deltas()
                                .for_node((sent, &sent_hash), &p)
                                .await
                        } else {
                            delta::Send::Full(p.clone())
                        };
                        let is_delta = matches!(message, delta::Send::Delta(_));
                        if tx.send(Ok(message.wire())).await.is_err() {
                            break;
                        }
                        resync = false;
                        services.metrics.config_sent(is_delta);
                        sent = p.snapshot.version;
                        sent_hash = p.snapshot.content_hash.clone();
                        services.metrics.node_assigned(&node_id, sent);
                        services.node_states.assigned(
                            &node_id,
                            sent,
                            &p.snapshot.content_hash,
                            services.clock.now(),
                        );
                        if let Err(e) =
                            nodes::assigned(&services, &node_id, sent, &p.snapshot.content_hash)
                                .await
                        {
                            tracing::warn!(node = %node_id, error = %e, "could not record the assignment");
                        }
                    }
                }
                tokio::select! {
                    changed = snapshots.changed() => if changed.is_err() { break },
                    msg = inbound.message() => match msg {
                        Ok(Some(SubscribeRequest { kind: Some(Kind::Ack(ack)) })) => {
                            tracing::debug!(node = %node_id, version = ack.version, "ack");
                            services.metrics.node_applied(&node_id, ack.version);
                            services.node_states.applied(&node_id, ack.version, ack.content_hash.clone(), services.clock.now());
                            if let Err(e) = nodes::acknowledged(&services, &node_id, ack.version, Some(&ack.content_hash), None).await {
                                tracing::warn!(node = %node_id, error = %e, "could not record ack");
                            }
                        }
                        Ok(Some(SubscribeRequest { kind: Some(Kind::Nack(nack)) })) => {
                            tracing::warn!(node = %node_id, version = nack.version, reason = %nack.reason, "nack");
                            services.metrics.node_refused();
                            services.node_states.nacked(&node_id, nack.version, nack.reason.clone(), services.clock.now());
                            rollout::shared_reports::nack(&services, &node_id, nack.version, &nack.reason);
                            if let Err(e) = nodes::acknowledged(&services, &node_id, nack.version, None, Some(nack.reason)).await {
                                tracing::warn!(node = %node_id, error = %e, "could not record nack");
                            }
                        }
                        Ok(Some(SubscribeRequest { kind: Some(Kind::Resync(r)) })) => {
                            tracing::info!(node = %node_id, served = r.served_version, reason = %r.reason, "resync asked; sending the full snapshot");
                            services.metrics.config_resync();
                            sent = r.served_version;
                            sent_hash = r.served_hash;
                            resync = true;
                        }
                        Ok(Some(SubscribeRequest { kind: Some(Kind::Health(report)) })) => {
                            if let Some(t) = report.traffic {
                                let sample = rollout::nodes::Sample {
                                    at: services.clock.now(),
                                    version: report.config_version,
                                    requests: t.requests,
                                    errors: t.errors,
                                    latency_buckets: t.latency_buckets,
                                };
                                rollout::shared_reports::traffic(&services, &node_id, &sample);
                                services.node_states.reported(&node_id, sample);
                            }
                            services.fleet.record(&node_id, report.deployments.into_iter().map(|d| fleet::NodeDeploymentHealth {
                                deployment_id: d.deployment_id,
                                ejected: d.ejected,
                                rate_limited_until_ms: d.rate_limited_until_ms,
                                consecutive_failures: d.consecutive_failures,
                                in_flight: d.in_flight,
                                ewma_ttfb_us: d.ewma_ttfb_us,
                            }).collect());
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    },
                    changed = revocations.changed() => {
                        if changed.is_err() || services.revoked.contains(&node_id) {
                            tracing::warn!(node = %node_id, "closing the config stream of a revoked node");
                            let _ = tx.send(Err(Status::permission_denied(format!("node `{node_id}` is revoked")))).await;
                            break;
                        }
                    }
                    () = shutdown.cancelled() => break,
                }
            }
            services.fleet.forget(&node_id);
            services.node_states.forget(&node_id);
            services.metrics.node_disconnected(&node_id);
            if let Err(e) = nodes::disconnected(&services, &node_id).await {
                tracing::warn!(node = %node_id, error = %e, "could not record disconnect");
            }
            tracing::info!(node = %node_id, "data plane stream closed");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
