//! The usage shipper: reads the spool from the acknowledged cursor, sends batches over the
//! `UsageService.Report` stream, and advances (and persists) the cursor only when the control
//! plane acknowledged a batch as stored. Fully acknowledged segments are deleted. A batch that
//! was sent but not acknowledged is sent again (the control plane deduplicates by event id).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use modelgate_proto::usage::v1::UsageAck;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::spool::{self, Position, Spool};

/// Events per batch.
pub const BATCH: usize = 1000;
/// How long to let events accumulate after the first new one before shipping.
const LINGER: Duration = Duration::from_millis(100);
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
const CURSOR_FILE: &str = "acked.cursor";
/// The gRPC method usage batches are reported to.
const REPORT_PATH: &str = "/modelgate.usage.v1.UsageService/Report";

pub struct Shipper {
    /// The data plane's one channel to the control plane (see [`crate::channel`]).
    pub channel: tonic::transport::Channel,
    pub node_id: String,
    pub spool: Spool,
    pub committed: watch::Receiver<Position>,
    pub shutdown: CancellationToken,
}

/// Bytes written to the spool and not yet acknowledged by the control plane (0 = drained).
pub fn backlog_bytes(spool: &Spool) -> u64 {
    let dir = spool.dir();
    let cursor = load_cursor(dir);
    let committed = *spool.committed().borrow();
    if cursor >= committed {
        return 0;
    }
    let mut total = 0;
    for s in spool::segments(dir).unwrap_or_default() {
        if s < cursor.segment || s > committed.segment {
            continue;
        }
        let len = std::fs::metadata(spool::segment_path(dir, s))
            .map(|m| m.len())
            .unwrap_or(0);
        let len = if s == committed.segment {
            committed.offset.min(len)
        } else {
            len
        };
        let from = if s == cursor.segment {
            cursor.offset
        } else {
            0
        };
        total += len.saturating_sub(from);
    }
    total
}

/// The acknowledged cursor: everything before it is stored by the control plane.
pub fn load_cursor(dir: &Path) -> Position {
    let text = std::fs::read_to_string(dir.join(CURSOR_FILE)).unwrap_or_default();
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Position { segment, offset },
        _ => Position::default(),
    }
}

fn save_cursor(dir: &Path, p: Position) -> std::io::Result<()> {
    let tmp = dir.join(format!("{CURSOR_FILE}.tmp"));
    std::fs::write(&tmp, format!("{} {}", p.segment, p.offset))?;
    std::fs::rename(tmp, dir.join(CURSOR_FILE))
}

struct Connection {
    tx: mpsc::Sender<RawBatch>,
    acks: tonic::Streaming<UsageAck>,
}

/// A `UsageBatch` whose events are the spool's records as they are: each already an encoded
/// `UsageEvent`, so shipping copies bytes instead of decoding and re-encoding every event. The
/// bytes on the wire are exactly those of the `UsageBatch` message the control plane reads.
#[derive(Debug, Default, Clone)]
struct RawBatch {
    batch_id: String,
    node_id: String,
    events: Vec<Bytes>,
    /// `UsageBatch.resent`: these events may have been sent before.
    resent: bool,
}

impl prost::Message for RawBatch {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        use prost::encoding::{bytes, string};
        // Field numbers of `modelgate.usage.v1.UsageBatch`.
        if !self.batch_id.is_empty() {
            string::encode(1, &self.batch_id, buf);
        }
        if !self.node_id.is_empty() {
            string::encode(2, &self.node_id, buf);
        }
        for event in &self.events {
            bytes::encode(3, event, buf);
        }
        if self.resent {
            prost::encoding::bool::encode(4, &self.resent, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Only ever sent; decoding skips everything.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        use prost::encoding::{bytes, string};
        let mut len = 0;
        if !self.batch_id.is_empty() {
            len += string::encoded_len(1, &self.batch_id);
        }
        if !self.node_id.is_empty() {
            len += string::encoded_len(2, &self.node_id);
        }
        if self.resent {
            len += prost::encoding::bool::encoded_len(4, &self.resent);
        }
        len + bytes::encoded_len_repeated(3, &self.events)
    }

    fn clear(&mut self) {
        *self = RawBatch::default();
    }
}

impl Shipper {
    pub async fn run(mut self) {
        let mut cursor = load_cursor(self.spool.dir());
        let mut conn: Option<Connection> = None;
        let mut backoff = Duration::from_millis(100);
        // Whether the next batch may have been sent before: after a failed send, and for the
        // first batch of this process (the one before it may have sent it and crashed before
        // the acknowledgement moved the cursor). The control plane then stores it without
        // first trying the statement that fails on an id already stored.
        let mut resent = true;
        loop {
            let next = match self.next_batch(cursor).await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    // Caught up: wait for more, then linger so a batch can form (one read, one
                    // round trip and one cursor write per batch, not per event).
                    tokio::select! {
                        r = self.committed.changed() => if r.is_err() { return },
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        () = self.shutdown.cancelled() => return,
                    }
                    tokio::time::sleep(LINGER).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "spool read failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let (events, end) = next;
            if events.is_empty() {
                // Moved past an exhausted segment.
                self.advance(&mut cursor, end);
                continue;
            }
            let count = events.len();
            let batch = RawBatch {
                batch_id: modelgate_shared::new_id().to_string(),
                node_id: self.node_id.clone(),
                events,
                resent,
            };
            match self.send(&mut conn, batch).await {
                Ok(()) => {
                    tracing::debug!(count, "usage batch acknowledged");
                    resent = false;
                    self.advance(&mut cursor, end);
                    backoff = Duration::from_millis(100);
                    // A short batch means the shipper has caught up: let the next one form
                    // rather than ship a few events per round trip (each batch costs a spool
                    // read, a round trip, a cursor write and the control plane's ingest).
                    if count < BATCH {
                        tokio::select! {
                            () = tokio::time::sleep(LINGER) => {}
                            () = self.shutdown.cancelled() => return,
                        }
                    }
                }
                Err(e) => {
                    conn = None;
                    resent = true;
                    tracing::warn!(error = %e, "usage shipping failed; will resend");
                    let jittered = backoff.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
                    tokio::select! {
                        () = tokio::time::sleep(jittered) => {}
                        () = self.shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn advance(&self, cursor: &mut Position, end: Position) {
        let finished_segment = cursor.segment;
        *cursor = end;
        if let Err(e) = save_cursor(self.spool.dir(), end) {
            tracing::error!(error = %e, "could not persist the usage cursor");
        }
        if end.segment > finished_segment {
            for s in spool::segments(self.spool.dir()).unwrap_or_default() {
                if s < end.segment {
                    if let Err(e) = self.spool.remove_segment(s) {
                        tracing::warn!(segment = s, error = %e, "could not delete shipped segment");
                    }
                }
            }
        }
    }

    /// The next batch after `cursor` and where it ends; `None` when caught up.
    async fn next_batch(
        &self,
        cursor: Position,
    ) -> std::io::Result<Option<(Vec<Bytes>, Position)>> {
        let committed = *self.committed.borrow();
        let dir = self.spool.dir().to_owned();
        tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let segments = spool::segments(&dir)?;
            // Start at the cursor's segment, or the oldest one still on disk.
            let Some(&segment) = segments.iter().find(|&&s| s >= cursor.segment) else {
                return Ok(None);
            };
            let offset = if segment == cursor.segment {
                cursor.offset
            } else {
                0
            };
            let (events, end) = spool::read_raw_records(&dir, segment, offset, BATCH)?;
            if !events.is_empty() {
                return Ok(Some((
                    events,
                    Position {
                        segment,
                        offset: end,
                    },
                )));
            }
            // Nothing more here: if a later segment exists, this one is finished.
            if let Some(&later) = segments.iter().find(|&&s| s > segment) {
                if segment < committed.segment {
                    return Ok(Some((
                        Vec::new(),
                        Position {
                            segment: later,
                            offset: 0,
                        },
                    )));
                }
            }
            Ok(None)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    async fn send(&self, conn: &mut Option<Connection>, batch: RawBatch) -> Result<(), String> {
        if conn.is_none() {
            // `UsageService.Report`, called with the raw batch codec (the generated client
            // would take decoded events).
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            grpc.ready()
                .await
                .map_err(|e| format!("the control plane is not ready: {e}"))?;
            let (tx, rx) = mpsc::channel(4);
            let acks = grpc
                .streaming(
                    tonic::Request::new(ReceiverStream::new(rx)),
                    http::uri::PathAndQuery::from_static(REPORT_PATH),
                    tonic_prost::ProstCodec::<RawBatch, UsageAck>::default(),
                )
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            *conn = Some(Connection { tx, acks });
        }
        let Some(c) = conn.as_mut() else {
            return Err("no connection".into());
        };
        let id = batch.batch_id.clone();
        c.tx.send(batch)
            .await
            .map_err(|_| "stream closed".to_string())?;
        let ack = tokio::time::timeout(ACK_TIMEOUT, c.acks.message())
            .await
            .map_err(|_| "acknowledgement timed out".to_string())?
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "stream ended".to_string())?;
        if ack.batch_id != id {
            return Err(format!(
                "acknowledged {} while waiting for {id}",
                ack.batch_id
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::pin::Pin;
    use std::sync::{Arc, Mutex};

    use modelgate_proto::usage::v1 as wire;
    use modelgate_proto::usage::v1::usage_service_server::{UsageService, UsageServiceServer};
    use modelgate_shared::usage::UsageEvent;
    use prost::Message;
    use tokio_stream::{Stream, StreamExt};
    use tonic::{Request, Response, Status, Streaming};

    use super::{RawBatch, Shipper};
    use crate::usage::spool::{FsyncPolicy, Spool, SpoolOptions};

    #[test]
    fn a_raw_batch_encodes_exactly_as_the_usage_batch_of_its_events() {
        let events: Vec<wire::UsageEvent> = (0..3)
            .map(|n| wire::UsageEvent {
                id: format!("event-{n}"),
                request_id: format!("req-{n}"),
                input_tokens: n,
                ..Default::default()
            })
            .collect();
        for resent in [false, true] {
            let decoded = wire::UsageBatch {
                batch_id: "batch-1".into(),
                node_id: "node-a".into(),
                events: events.clone(),
                resent,
            };
            let raw = RawBatch {
                batch_id: "batch-1".into(),
                node_id: "node-a".into(),
                events: events
                    .iter()
                    .map(|e| bytes::Bytes::from(e.encode_to_vec()))
                    .collect(),
                resent,
            };
            assert_eq!(raw.encoded_len(), decoded.encoded_len());
            assert_eq!(raw.encode_to_vec(), decoded.encode_to_vec());
            assert_eq!(
                wire::UsageBatch::decode(raw.encode_to_vec().as_slice()).unwrap(),
                decoded
            );
        }
    }

    /// A control plane that records each batch it receives (its size and `resent` flag) and
    /// fails the stream instead of acknowledging the second batch of all.
    #[derive(Clone, Default)]
    struct Recorder {
        seen: Arc<Mutex<Vec<(usize, bool)>>>,
    }

    #[tonic::async_trait]
    impl UsageService for Recorder {
        type ReportStream = Pin<Box<dyn Stream<Item = Result<wire::UsageAck, Status>> + Send>>;

        async fn report(
            &self,
            request: Request<Streaming<wire::UsageBatch>>,
        ) -> Result<Response<Self::ReportStream>, Status> {
            let seen = self.seen.clone();
            let acks = request.into_inner().map(move |batch| {
                let batch = batch?;
                let mut seen = seen.lock().unwrap();
                seen.push((batch.events.len(), batch.resent));
                if seen.len() == 2 {
                    return Err(Status::unavailable("lost before the acknowledgement"));
                }
                Ok(wire::UsageAck {
                    batch_id: batch.batch_id,
                    ..Default::default()
                })
            });
            Ok(Response::new(Box::pin(acks)))
        }
    }

    #[tokio::test]
    async fn a_batch_is_marked_resent_when_first_after_a_start_or_sent_again_after_a_failure() {
        let dir = std::env::temp_dir().join(format!("mg-shipper-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let spool = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Never)).unwrap();
        // Three batches' worth: full, full, and 500.
        for n in 0..2 * super::BATCH + 500 {
            let event = UsageEvent {
                id: format!("event-{n}"),
                request_id: format!("req-{n}"),
                status: 200,
                ..Default::default()
            };
            spool.append(&event).await.unwrap();
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorder = Recorder::default();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(UsageServiceServer::new(recorder.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let shutdown = tokio_util::sync::CancellationToken::new();
        let shipper = tokio::spawn(
            Shipper {
                channel: tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .unwrap()
                    .connect_lazy(),
                node_id: "node-a".into(),
                committed: spool.committed(),
                spool: spool.clone(),
                shutdown: shutdown.clone(),
            }
            .run(),
        );
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while recorder.seen.lock().unwrap().len() < 4 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        shipper.await.unwrap();
        server.abort();

        let seen = recorder.seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                (super::BATCH, true),  // the first batch since this shipper started
                (super::BATCH, false), // a new batch, lost before its acknowledgement
                (super::BATCH, true),  // the same batch again
                (500, false),          // the next new one
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
