//! The config subscriber: keeps a `ConfigService.Subscribe` stream open to the control plane,
//! validates each snapshot, persists it as last-known-good, swaps it in, and answers ACK or
//! NACK. Only a version above the served one is applied (`shared::snapshot::should_apply`): the
//! served version offered again is ACKed as it is, an older one is NACKed "not newer than the
//! served version N" and the node keeps serving what it has. Reconnects with jittered
//! exponential backoff. A delta (protocol 9) is handled by [`super::delta`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use modelgate_proto::config::v1::{
    self as wire, subscribe_request::Kind, Ack, DeploymentHealth, HealthReport, Hello, Nack,
    RolloutTraffic, SubscribeRequest,
};
use modelgate_shared::snapshot::{should_apply, Decision};
use prost::Message;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::parts::{self, Parts, RawSnapshots};
use super::{lkg, Runtime, SharedRuntime};

pub struct Subscriber {
    /// The data plane's one channel to the control plane (see [`crate::channel`]).
    pub channel: tonic::transport::Channel,
    pub node_id: String,
    pub labels: HashMap<String, String>,
    pub data_dir: PathBuf,
    /// Seals the last-known-good file.
    pub lkg_sealer: modelgate_shared::crypto::Sealer,
    pub runtime: SharedRuntime,
    pub shutdown: CancellationToken,
    /// How often deployment health is reported on the stream.
    pub health_report_interval: Duration,
    /// What this node served, reported with its health for the rollout gates.
    pub traffic: Arc<crate::metrics::traffic::ServedTraffic>,
    /// Full snapshots and deltas applied, resyncs asked for.
    pub updates: Arc<super::delta::UpdateCounts>,
}

/// The largest snapshot message accepted. tonic's default (4 MiB) is about 20,000 keys; a
/// snapshot is about 210 bytes per key on the wire, so this leaves room for a million keys.
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;

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
                Ok(Ended::Renew) => {
                    tracing::info!(
                        "config stream closed after a large snapshot to free its receive \
                         buffer; subscribing again"
                    );
                    backoff = MIN_BACKOFF;
                    continue;
                }
                Ok(Ended::Closed) => {
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

    async fn session(&self) -> Result<Ended, tonic::Status> {
        let (tx, rx) = mpsc::channel(8);
        let serving = self.runtime.load_full();
        let hello = SubscribeRequest {
            kind: Some(Kind::Hello(Hello {
                node_id: self.node_id.clone(),
                labels: self.labels.clone(),
                software_version: env!("CARGO_PKG_VERSION").to_owned(),
                current_version: serving.version,
                protocol_version: modelgate_shared::SNAPSHOT_PROTOCOL_VERSION,
                current_hash: serving.content_hash.clone(),
                features: modelgate_shared::delta::FEATURES
                    .iter()
                    .map(|f| (*f).to_owned())
                    .collect(),
            })),
        };
        drop(serving);
        let _ = tx.send(hello).await;
        // Reports end with the session: the sender fails once the stream's receiver is gone.
        let reporter = tokio::spawn(report_health(
            self.runtime.clone(),
            self.traffic.clone(),
            tx.clone(),
            self.health_report_interval,
        ));
        let _stop_reporter = AbortOnDrop(reporter);
        let mut stream = subscribe(self.channel.clone(), rx).await?;
        tracing::info!("config stream connected");
        while let Some(raw) = stream.message().await? {
            let received = std::time::Instant::now();
            let malformed = |e: &dyn std::fmt::Display| {
                tonic::Status::invalid_argument(format!("undecodable snapshot message: {e}"))
            };
            let parts = parts::split(&raw).map_err(|e| malformed(&e))?;
            if parts.top.delta.is_some() {
                // A delta is small: decoded whole.
                drop(parts);
                let delta = wire::Snapshot::decode(raw).map_err(|e| malformed(&e))?;
                if self.on_delta(delta, &tx).await.is_err() {
                    break;
                }
                continue;
            }
            let version = parts.top.version;
            let bytes = raw.len();
            let served = self.runtime.load().version;
            match should_apply(served, version) {
                Decision::Apply => {}
                Decision::AlreadyServing => {
                    let ack = Kind::Ack(Ack {
                        version,
                        content_hash: self.runtime.load().content_hash.clone(),
                    });
                    if tx.send(SubscribeRequest { kind: Some(ack) }).await.is_err() {
                        break;
                    }
                    continue;
                }
                stale @ Decision::Older { .. } => {
                    tracing::warn!(version, served, "snapshot skipped: {stale}");
                    let nack = Kind::Nack(Nack {
                        version,
                        reason: stale.to_string(),
                    });
                    if tx
                        .send(SubscribeRequest { kind: Some(nack) })
                        .await
                        .is_err()
                    {
                        break;
                    }
                    continue;
                }
            }
            // Decoding, indexing and persisting a large snapshot takes a while (over a second
            // at 100k keys): it runs on a blocking thread, so the workers keep serving requests
            // from the current runtime meanwhile.
            let previous = self.runtime.load_full();
            let dir = self.data_dir.clone();
            let sealer = self.lkg_sealer.clone();
            let prepared =
                tokio::task::spawn_blocking(move || prepare(raw, parts, &previous, &dir, &sealer))
                    .await
                    .map_err(|e| tonic::Status::internal(format!("snapshot apply failed: {e}")))?;
            let applied = prepared.is_ok();
            let reply = match prepared {
                Ok(next) => {
                    let keys = next.keys.len();
                    let content_hash = next.content_hash.clone();
                    // The traffic counted so far belongs to the version being replaced: report
                    // it as that version's before the swap, so the rollout gates attribute
                    // what follows to the new one.
                    let closing = health_report(&self.runtime.load_full(), &self.traffic);
                    if tx.send(closing).await.is_err() {
                        break;
                    }
                    let replaced = self.runtime.swap(Arc::new(next));
                    // The old runtime goes once the last request holding it ends; the heap it
                    // leaves is then given back to the system (see `release_free_memory`).
                    tokio::task::spawn_blocking(move || {
                        drop(replaced);
                        release_free_memory();
                    });
                    self.updates
                        .full
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(
                        version,
                        keys,
                        bytes,
                        apply_ms = received.elapsed().as_secs_f64() * 1e3,
                        "snapshot applied"
                    );
                    Kind::Ack(Ack {
                        version,
                        content_hash,
                    })
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
            if applied && bytes >= RENEW_AFTER_BYTES {
                // tonic keeps a stream's receive buffer as large as the largest message the
                // stream carried (21 MB at 100k keys), for as long as the stream lives. End this
                // stream politely — no more requests from this side, so the ACK already queued
                // goes out first; the control plane then closes its side — and subscribe again
                // at once: the hello names the version now served, so the control plane sends
                // nothing until the next change, and then a delta from this version. Anything
                // it sent meanwhile is dropped here and sent again on the new stream.
                drop(_stop_reporter);
                drop(tx);
                let drain = async { while let Ok(Some(_)) = stream.message().await {} };
                let _ = tokio::time::timeout(RENEW_DRAIN, drain).await;
                return Ok(Ended::Renew);
            }
        }
        Ok(Ended::Closed)
    }
}

/// How a session ended without an error.
enum Ended {
    /// The control plane closed the stream (or the node could no longer send on it).
    Closed,
    /// The node ended it after a large full snapshot, to subscribe again at once.
    Renew,
}

/// A full snapshot at least this large is followed by a new stream (see `Subscriber::session`).
pub const RENEW_AFTER_BYTES: usize = 1024 * 1024;
/// How long a stream being renewed waits for the control plane to close its side.
const RENEW_DRAIN: Duration = Duration::from_secs(5);

/// Opens the `Subscribe` stream with the codec that hands snapshots over undecoded
/// ([`RawSnapshots`]), as the generated client would open it otherwise.
async fn subscribe(
    channel: tonic::transport::Channel,
    rx: mpsc::Receiver<SubscribeRequest>,
) -> Result<tonic::Streaming<Bytes>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_SNAPSHOT_BYTES);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_static("/modelgate.config.v1.ConfigService/Subscribe");
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.extensions_mut().insert(tonic::GrpcMethod::new(
        "modelgate.config.v1.ConfigService",
        "Subscribe",
    ));
    Ok(grpc
        .streaming(request, path, RawSnapshots)
        .await?
        .into_inner())
}

/// Validates the snapshot received as `raw` (split into `parts`), indexes it as the runtime that
/// follows `previous` (decoding its keys one at a time: see [`parts`]), and persists `raw` as
/// the last-known-good before it may be served: a node that serves a version boots back into
/// it (or a newer one), even when it is restarted right after the swap. Runs on a blocking
/// thread.
fn prepare(
    raw: Bytes,
    parts: Parts,
    previous: &Runtime,
    dir: &std::path::Path,
    sealer: &modelgate_shared::crypto::Sealer,
) -> Result<Runtime, modelgate_shared::snapshot::InvalidSnapshot> {
    let next = Runtime::build_from_parts(parts, previous)?;
    if let Err(e) = lkg::save(dir, sealer, &raw) {
        tracing::error!(error = %e, "could not persist last-known-good");
    }
    drop(raw);
    release_free_memory();
    Ok(next)
}

/// Gives the heap's free pages back to the system. An apply frees about as much as it allocates
/// (the wire message, its encoding, the replaced runtime), and glibc keeps freed memory in its
/// arenas: at 100k keys a node stayed at 165 MB resident after the first apply without this,
/// 124 MB with it (`modelgate-bench big-config`).
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `malloc_trim` takes no pointers; it only shrinks the allocator's own free lists,
    // under the allocator's locks, and may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends the node's view of every deployment's health every `interval` (the control plane's
/// fleet view and the explain endpoint read it), with its served traffic.
async fn report_health(
    runtime: SharedRuntime,
    traffic: Arc<crate::metrics::traffic::ServedTraffic>,
    tx: mpsc::Sender<SubscribeRequest>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if tx
            .send(health_report(&runtime.load_full(), &traffic))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A health report of `served`: its deployments' health, and the traffic counted so far under
/// its version.
pub(super) fn health_report(
    served: &Runtime,
    traffic: &crate::metrics::traffic::ServedTraffic,
) -> SubscribeRequest {
    let now = crate::time::now_ms();
    let reading = traffic.read();
    let deployments = served
        .health
        .snapshot(now)
        .into_iter()
        .map(|h| DeploymentHealth {
            deployment_id: h.deployment_id,
            ejected: h.ejected,
            rate_limited_until_ms: h.rate_limited_until_ms,
            consecutive_failures: h.consecutive_failures,
            in_flight: h.in_flight,
            ewma_ttfb_us: h.ewma_ttfb_us,
        })
        .collect();
    SubscribeRequest {
        kind: Some(Kind::Health(HealthReport {
            at_ms: now,
            deployments,
            config_version: served.version,
            config_hash: served.content_hash.clone(),
            traffic: Some(RolloutTraffic {
                requests: reading.requests,
                errors: reading.errors,
                latency_buckets: reading.latency_buckets,
            }),
        })),
    }
}
