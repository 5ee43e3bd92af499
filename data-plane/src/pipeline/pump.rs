//! Pump: an upstream SSE stream forwarded to the client event by event, through a
//! `StreamTranslator` (pass-through or translation to the client's format), its usage read on
//! the way, the last event held back until the usage event is written (account). A stream
//! that breaks off ends with an error event in the client's format.

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use modelgate_shared::pricing::Price;
use modelgate_shared::usage::ErrorClass;
use tokio::sync::mpsc;

use super::account::charge;
use super::cached::Capture;
use crate::error::ProxyError;
use crate::estimate::{self, Produced};
use crate::providers;
use crate::sse;
use crate::surfaces::{self, Surface};
use crate::translate::stream::StreamTranslator;
use crate::translate::Usage;
use crate::usage::Recorder;

/// Forwards an upstream SSE stream event by event through `translator` (pass-through or
/// translation to the client's format), reading usage from it, and holding back the stream's
/// last event until the usage event is written. Ends the client stream with an error event in
/// the client's format if upstream breaks off.
///
/// The upstream reads at hand go to the client as one write: the events they held are forwarded
/// together as soon as they are translated (nothing waits for reads still to come), so a
/// provider that sends many events per packet costs one client write, not one per event. The
/// first read's events go out alone, with the answer's head, before the pump reads on.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn pump(
    mut upstream: futures_util::stream::BoxStream<'static, Result<Bytes, providers::UpstreamError>>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    mut rec: Recorder,
    client: Surface,
    mut translator: StreamTranslator,
    price: Option<Price>,
    basis: estimate::Basis,
    idle_timeout: std::time::Duration,
    json_array: bool,
    mut capture: Option<Capture>,
) {
    let mut framer = json_array.then(surfaces::gemini::ArrayFramer::default);
    let mut splitter = sse::SseSplitter::default();
    let mut failure: Option<String> = None;
    let mut client_gone = false;
    let mut out: Vec<Bytes> = Vec::with_capacity(4);
    // One vector for the events of every read, and room in the batch for a typical answer's
    // events: no allocation per upstream read.
    let mut events: Vec<Bytes> = Vec::with_capacity(8);
    let mut batch = Batch {
        events: Vec::with_capacity(32),
        ..Batch::default()
    };
    let mut ended = false;
    // The first write goes out with the first read's events alone, and before the pump reads
    // on: the client sees the answer begin as soon as the provider's does.
    let mut first_write = true;
    loop {
        let mut next = tokio::select! {
            n = tokio::time::timeout(idle_timeout, upstream.next()) => match n {
                Ok(n) => n,
                Err(_) => {
                    failure = Some("the provider's stream went idle for too long".into());
                    break;
                }
            },
            () = tx.closed() => { client_gone = true; break },
        };
        // Take this read and every one already waiting (an HTTP chunk per event is common)
        // into one client write.
        loop {
            match next {
                Some(Ok(chunk)) => splitter.push_bytes(chunk, &mut events),
                Some(Err(e)) => {
                    failure = Some(e.to_string());
                    break;
                }
                // The stream is over; an unterminated last event still counts.
                None => {
                    ended = true;
                    events.extend(splitter.remainder());
                }
            }
            for event in events.drain(..) {
                translator.event(event, &mut out);
                keep(&mut capture, &out);
                batch.extend(out.drain(..).filter_map(|e| frame(&mut framer, e)));
            }
            if let Some(e) = splitter.too_large() {
                failure = Some(e.to_string());
                break;
            }
            if ended {
                translator.end(&mut out);
                keep(&mut capture, &out);
                batch.extend(out.drain(..).filter_map(|e| frame(&mut framer, e)));
            }
            if ended || translator.terminal.is_some() || batch.full() || first_write {
                break;
            }
            // The provider's connection is driven by this task (`providers::upstream`): polling
            // the body decodes the next chunk already read, so take what is ready without
            // waiting (no yield to the scheduler, no system call per chunk).
            match upstream.next().now_or_never() {
                Some(n) => next = n,
                None => break,
            }
        }
        if let Some(write) = batch.take() {
            if tx.send(Ok(write)).await.is_err() {
                client_gone = true;
                break;
            }
            if std::mem::take(&mut first_write) {
                // Lets the client connection's task (on this thread) write the answer's head
                // with these events now; the pump would otherwise run on through every read at
                // hand first.
                tokio::task::yield_now().await;
            }
        }
        // The last event is in: what follows (a lingering connection) cannot change the answer.
        if failure.is_some() || ended || translator.terminal.is_some() {
            break;
        }
    }
    drop(upstream);
    // An error event the provider sent was already forwarded (in the client's format).
    let reported = translator.upstream_error.is_some();
    if failure.is_none() && !client_gone && (translator.terminal.is_none() || reported) {
        failure = Some(match translator.upstream_error.take() {
            Some(e) => format!("the provider reported an error in the stream: {e}"),
            None => "the provider's stream ended before its last event".into(),
        });
    }
    let complete = translator.terminal.is_some();
    let (usage, estimated) = match translator.usage {
        // A complete stream's own report is the truth.
        Some(u) if complete => (u, false),
        // Cut short (client gone, provider broke off): the report may predate most of the
        // output (Anthropic's `message_start` says 1 output token), so take at least the
        // estimate from what was streamed, and say it is an estimate.
        Some(u) => {
            let streamed = std::mem::take(&mut translator.streamed);
            let estimate = estimate::estimate_usage(basis, Produced::Stream(streamed)).await;
            (
                Usage {
                    output: u.output.max(estimate.output),
                    ..u
                },
                true,
            )
        }
        None => {
            let streamed = std::mem::take(&mut translator.streamed);
            (
                estimate::estimate_usage(basis, Produced::Stream(streamed)).await,
                true,
            )
        }
    };
    charge(&mut rec, usage, estimated, price);
    if client_gone {
        rec.fail(
            499,
            ErrorClass::ClientCancel,
            "the client closed the stream",
        );
    } else if let Some(f) = &failure {
        rec.fail(502, ErrorClass::ProviderError, f);
    }
    // A stream that ended well with its last event is stored as the client received it.
    if let (Some(mut c), None, false, Some(done)) =
        (capture, &failure, client_gone, &translator.terminal)
    {
        c.push(done);
        c.store(&rec);
    }
    if let Err(err) = rec.finish().await {
        tracing::error!(error = %err, "usage event not written");
    }
    if client_gone {
        return;
    }
    let last = match (failure, translator.terminal.take()) {
        (None, Some(done)) => Some(done),
        // The provider's error was forwarded; an OpenAI stream still ends with `[DONE]`, an
        // Anthropic one ends at its `error` event.
        (Some(_), Some(done)) if reported && client == Surface::OpenAiChat => Some(done),
        (Some(_), _) if reported => None,
        (Some(f), _) => Some(client.error_event(&ProxyError::upstream(f, false))),
        (None, None) => None,
    };
    if let Some(last) = last.and_then(|l| frame(&mut framer, l)) {
        let _ = tx.send(Ok(last)).await;
    }
    if let Some(f) = &framer {
        let _ = tx.send(Ok(f.close())).await;
    }
}

/// Gathers the client-bound events of a stream the cache will store.
fn keep(capture: &mut Option<Capture>, events: &[Bytes]) {
    if let Some(c) = capture {
        for e in events {
            c.push(e);
        }
    }
}

/// Client-bound events of the upstream reads at hand, joined into one write.
#[derive(Default)]
struct Batch {
    events: Vec<Bytes>,
    bytes: usize,
    joined: BytesMut,
}

impl Batch {
    /// Past this many bytes the batch is written without waiting for more ready reads.
    const MAX_BYTES: usize = 64 * 1024;

    fn extend(&mut self, events: impl Iterator<Item = Bytes>) {
        for e in events {
            self.bytes += e.len();
            self.events.push(e);
        }
    }

    fn full(&self) -> bool {
        self.bytes >= Self::MAX_BYTES
    }

    /// The events gathered since the last call as one buffer (the event itself when there is
    /// only one: no copy), or `None` when there are none.
    fn take(&mut self) -> Option<Bytes> {
        let bytes = std::mem::take(&mut self.bytes);
        match self.events.len() {
            0 => None,
            1 => self.events.pop(),
            _ => {
                self.joined.reserve(bytes);
                for e in self.events.drain(..) {
                    self.joined.extend_from_slice(&e);
                }
                Some(self.joined.split().freeze())
            }
        }
    }
}

/// An event as the client gets it: as is (SSE), or as the next element of a JSON array.
fn frame(framer: &mut Option<surfaces::gemini::ArrayFramer>, event: Bytes) -> Option<Bytes> {
    match framer {
        None => Some(event),
        Some(f) => f.element(&event),
    }
}

/// Forwards an upstream byte stream (speech audio) to the client as it arrives, unframed; the
/// usage event, already charged, is written when the stream ends — failed with 502 if the
/// provider broke off or went idle, 499 if the client went away. Audio has no in-band error
/// event: a broken stream ends short.
pub(crate) async fn pass_through(
    mut upstream: futures_util::stream::BoxStream<'static, Result<Bytes, providers::UpstreamError>>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    mut rec: Recorder,
    idle_timeout: std::time::Duration,
) {
    let mut failure: Option<String> = None;
    let mut client_gone = false;
    loop {
        let next = tokio::select! {
            n = tokio::time::timeout(idle_timeout, upstream.next()) => match n {
                Ok(n) => n,
                Err(_) => {
                    failure = Some("the provider's stream went idle for too long".into());
                    break;
                }
            },
            () = tx.closed() => { client_gone = true; break },
        };
        match next {
            Some(Ok(chunk)) => {
                if tx.send(Ok(chunk)).await.is_err() {
                    client_gone = true;
                    break;
                }
            }
            Some(Err(e)) => {
                failure = Some(e.to_string());
                break;
            }
            None => break,
        }
    }
    drop(upstream);
    if client_gone {
        rec.fail(
            499,
            ErrorClass::ClientCancel,
            "the client closed the stream",
        );
    } else if let Some(f) = &failure {
        rec.fail(502, ErrorClass::ProviderError, f);
    }
    if let Err(err) = rec.finish().await {
        tracing::error!(error = %err, "usage event not written");
    }
    if let Some(f) = failure.filter(|_| !client_gone) {
        let _ = tx.send(Err(std::io::Error::other(f))).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use tokio::sync::mpsc;

    use super::pump;
    use crate::estimate::{Basis, Encoding};
    use crate::providers::UpstreamError;
    use crate::surfaces::Surface;
    use crate::translate::stream::StreamTranslator;
    use crate::usage::spool::{Spool, SpoolOptions};
    use crate::usage::{Origin, Recorder};

    const HELLO: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
    const WORLD: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    type Chunk = Result<Bytes, UpstreamError>;

    /// Pumps `upstream` (OpenAI chat to an OpenAI client) in a task; returns the client's side.
    fn start(
        upstream: futures_util::stream::BoxStream<'static, Chunk>,
    ) -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
        let dir = std::env::temp_dir().join(format!("mg-pump-{}", uuid::Uuid::now_v7()));
        let spool = Spool::open(&dir, SpoolOptions::default()).unwrap();
        let rec = Recorder::start(spool, &Origin::default(), "chat", "req-pump");
        let basis = Basis {
            request: Bytes::from_static(b"{}"),
            client: Surface::OpenAiChat,
            upstream: Surface::OpenAiChat,
            encoding: Encoding::O200kBase,
        };
        let translator = StreamTranslator::new(Surface::OpenAiChat, Surface::OpenAiChat, false);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(pump(
            upstream,
            tx,
            rec,
            Surface::OpenAiChat,
            translator,
            None,
            basis,
            Duration::from_secs(30),
            false,
            None,
        ));
        rx
    }

    async fn next_write(rx: &mut mpsc::Receiver<Result<Bytes, std::io::Error>>) -> String {
        // A guard against a hang, not a timing claim.
        let write = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the pump wrote nothing")
            .expect("the pump ended")
            .unwrap();
        String::from_utf8(write.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_first_read_goes_out_at_once_and_the_reads_at_hand_after_it_in_one_write() {
        let chunks: Vec<Chunk> = [HELLO, WORLD, HELLO]
            .into_iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        // The three chunks are ready at once; the stream then ends with `[DONE]` on its own.
        let ready = futures_util::stream::iter(chunks);
        let done = futures_util::stream::once(async { Ok(Bytes::from_static(DONE.as_bytes())) });
        let mut rx = start(ready.chain(done).boxed());
        let first = next_write(&mut rx).await;
        assert_eq!(first, HELLO, "the first read's event goes out alone");
        let second = next_write(&mut rx).await;
        assert!(
            second.starts_with(&format!("{WORLD}{HELLO}")),
            "one write carries both events read after it: {second:?}"
        );
        let mut rest = second[WORLD.len() + HELLO.len()..].to_owned();
        while let Some(Ok(w)) = rx.recv().await {
            rest.push_str(std::str::from_utf8(&w).unwrap());
        }
        assert_eq!(rest, DONE, "the stream ends with its terminal event");
    }

    #[tokio::test]
    async fn an_upstream_event_over_the_cap_ends_the_stream_with_an_error_event() {
        let big = format!("data: {}", "x".repeat(crate::sse::MAX_EVENT_BYTES));
        let mut chunks: Vec<Chunk> = vec![Ok(Bytes::from_static(HELLO.as_bytes()))];
        chunks.extend(
            Bytes::from(big)
                .chunks(64 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c))),
        );
        // What would follow is never read.
        chunks.push(Ok(Bytes::from_static(DONE.as_bytes())));
        let mut rx = start(futures_util::stream::iter(chunks).boxed());
        let mut all = String::new();
        while let Some(Ok(w)) = rx.recv().await {
            all.push_str(std::str::from_utf8(&w).unwrap());
        }
        assert!(all.starts_with(HELLO), "{all:?}");
        let last = &all[HELLO.len()..];
        assert!(last.starts_with("data: {\"error\""), "{last:?}");
        assert!(last.contains("larger than 1048576 bytes"), "{last:?}");
        assert!(!all.contains("[DONE]"), "{all:?}");
    }

    #[tokio::test]
    async fn an_event_is_forwarded_without_waiting_for_the_next_one() {
        let (up_tx, up_rx) = mpsc::channel::<Chunk>(4);
        let mut rx = start(tokio_stream::wrappers::ReceiverStream::new(up_rx).boxed());
        up_tx
            .send(Ok(Bytes::from_static(HELLO.as_bytes())))
            .await
            .unwrap();
        // The second event has not been sent: the first must reach the client anyway.
        assert_eq!(next_write(&mut rx).await, HELLO);
        up_tx
            .send(Ok(Bytes::from_static(WORLD.as_bytes())))
            .await
            .unwrap();
        assert_eq!(next_write(&mut rx).await, WORLD);
        up_tx
            .send(Ok(Bytes::from_static(DONE.as_bytes())))
            .await
            .unwrap();
        assert_eq!(next_write(&mut rx).await, DONE);
    }
}
