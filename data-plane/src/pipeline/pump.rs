//! Pump: an upstream SSE stream forwarded to the client event by event, through a
//! `StreamTranslator` (pass-through or translation to the client's format), its usage read on
//! the way, the last event held back until the usage event is written (account). A stream
//! that breaks off ends with an error event in the client's format.
//!
//! The pump is the response body itself ([`Pump`]): the client connection's task polls it when
//! the socket can take more, and it polls the upstream stream in turn. No task of its own, no
//! channel between it and the connection, so an event costs no wake-up beyond the upstream
//! read and the client write it needs, and backpressure is the client's own.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use hyper::body::Frame;
use modelgate_shared::pricing::Price;
use modelgate_shared::usage::ErrorClass;

use super::account;
use crate::error::ProxyError;
use crate::estimate::{self, Produced};
use crate::providers::UpstreamError;
use crate::sse;
use crate::surfaces::{self, Surface};
use crate::translate::stream::StreamTranslator;
use crate::translate::Usage;
use crate::usage::Recorder;

/// The upstream stream a pump forwards.
pub type Upstream = BoxStream<'static, Result<Bytes, UpstreamError>>;

/// What the stream is metered and answered with.
pub struct Stream {
    pub rec: Recorder,
    /// The client's format (its error event, its array framing).
    pub client: Surface,
    pub translator: StreamTranslator,
    pub price: Option<Price>,
    /// What an estimate counts when the provider reports no usage.
    pub basis: estimate::Basis,
    /// The longest wait for the provider's next bytes.
    pub idle_timeout: Duration,
    /// A Gemini stream written as a JSON array (`:streamGenerateContent` without `alt=sse`).
    pub json_array: bool,
    /// Held until the stream is over (the deployment's in-flight count).
    pub held: Box<dyn Send>,
    /// Where the usage of a stream whose client went away is written from (shutdown waits
    /// for it).
    pub tasks: tokio_util::task::TaskTracker,
}

/// The response body of a streamed answer (see the module's doc).
pub struct Pump {
    upstream: Upstream,
    /// The stream's state, boxed once: the body hyper holds stays a few words.
    state: Box<State>,
    idle: Pin<Box<tokio::time::Sleep>>,
    /// Writing the usage event, then the last event: set once the upstream is done.
    finishing: Option<Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>>,
    /// The batch at hand has waited one turn of the scheduler for more upstream reads.
    yielded: bool,
    done: bool,
}

struct State {
    stream: Option<Stream>,
    framer: Option<surfaces::gemini::ArrayFramer>,
    splitter: sse::SseSplitter,
    out: Vec<Bytes>,
    batch: Batch,
    failure: Option<String>,
}

impl Pump {
    pub fn new(upstream: Upstream, stream: Stream) -> Pump {
        let idle = Box::pin(tokio::time::sleep(stream.idle_timeout));
        Pump {
            upstream,
            idle,
            finishing: None,
            yielded: false,
            done: false,
            state: Box::new(State {
                framer: stream
                    .json_array
                    .then(surfaces::gemini::ArrayFramer::default),
                stream: Some(stream),
                splitter: sse::SseSplitter::default(),
                out: Vec::with_capacity(4),
                batch: Batch::default(),
                failure: None,
            }),
        }
    }

    /// The upstream is done (its last event, an error, or its end): let it go, and start
    /// writing the usage event.
    fn finish(&mut self) {
        self.upstream = futures_util::stream::empty().boxed();
        let st = &mut *self.state;
        if let Some(stream) = st.stream.take() {
            self.finishing = Some(Box::pin(finish(
                stream,
                st.failure.take(),
                st.framer.take(),
            )));
        }
    }
}

impl State {
    /// The client's events of one upstream read, added to the batch.
    fn take(&mut self, chunk: &[u8]) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        for event in self.splitter.push(chunk) {
            stream.translator.event(event, &mut self.out);
            let framer = &mut self.framer;
            self.batch
                .extend(self.out.drain(..).filter_map(|e| frame(framer, e)));
        }
        if let Some(e) = self.splitter.too_large() {
            self.failure = Some(e.to_string());
        }
    }

    /// The upstream ended: an unterminated last event still counts.
    fn end(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        if let Some(event) = self.splitter.remainder() {
            stream.translator.event(event, &mut self.out);
        }
        stream.translator.end(&mut self.out);
        let framer = &mut self.framer;
        self.batch
            .extend(self.out.drain(..).filter_map(|e| frame(framer, e)));
    }

    /// The provider's last event is in, or the stream cannot go on.
    fn over(&self) -> bool {
        self.failure.is_some()
            || self
                .stream
                .as_ref()
                .is_some_and(|s| s.translator.terminal.is_some())
    }
}

impl hyper::body::Body for Pump {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(finishing) = this.finishing.as_mut() {
                let last = ready!(finishing.as_mut().poll(cx));
                this.finishing = None;
                this.done = true;
                return Poll::Ready(last.map(|b| Ok(Frame::data(b))));
            }
            // Take every upstream read at hand into one client write: a provider that sends
            // many events per packet costs one write, not one per event.
            let mut over = false;
            loop {
                match this.upstream.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        this.state.take(&chunk);
                        if this.state.over() {
                            over = true;
                            break;
                        }
                        if this.state.batch.full() {
                            break;
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        this.state.failure = Some(e.to_string());
                        over = true;
                        break;
                    }
                    Poll::Ready(None) => {
                        this.state.end();
                        over = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            if over {
                this.finish();
            }
            if !over && !this.yielded && !this.state.batch.is_empty() && !this.state.batch.full() {
                // The provider's connection task decodes one HTTP chunk per poll of its body:
                // let it (and whatever else is ready) run once, then take what it has ready,
                // so the events of one upstream packet go out in one client write.
                this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            this.yielded = false;
            if let Some(write) = this.state.batch.take() {
                if !over {
                    let timeout = this.state.stream.as_ref().map(|s| s.idle_timeout);
                    if let Some(t) = timeout {
                        this.idle.as_mut().reset(tokio::time::Instant::now() + t);
                    }
                }
                return Poll::Ready(Some(Ok(Frame::data(write))));
            }
            if over {
                continue;
            }
            // Nothing at hand: wait for the provider, for no longer than the idle timeout.
            if this.idle.as_mut().poll(cx).is_ready() {
                this.state.failure = Some("the provider's stream went idle for too long".into());
                this.finish();
                continue;
            }
            return Poll::Pending;
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

impl Drop for Pump {
    /// The client went away mid-stream: the usage of what was streamed is still written (as a
    /// client cancel, estimated where the provider had not reported it yet), off this task.
    fn drop(&mut self) {
        let Some(stream) = self.state.stream.take() else {
            return;
        };
        let tasks = stream.tasks.clone();
        if tokio::runtime::Handle::try_current().is_ok() {
            tasks.spawn(async move {
                let _ = settle(stream, None, true).await;
            });
        }
        // Without a runtime the recorder's own `Drop` writes a client cancel.
    }
}

/// Meters the stream and writes its usage event; returns the stream's last event (the held
/// terminal event, or an error event in the client's format) framed for the client.
async fn finish(
    stream: Stream,
    failure: Option<String>,
    mut framer: Option<surfaces::gemini::ArrayFramer>,
) -> Option<Bytes> {
    let client = stream.client;
    let (failure, reported, terminal) = settle(stream, failure, false).await;
    let last = match (failure, terminal) {
        (None, Some(done)) => Some(done),
        // The provider's error was forwarded; an OpenAI stream still ends with `[DONE]`, an
        // Anthropic one ends at its `error` event.
        (Some(_), Some(done)) if reported && client == Surface::OpenAiChat => Some(done),
        (Some(_), _) if reported => None,
        (Some(f), _) => Some(client.error_event(&ProxyError::upstream(f, false))),
        (None, None) => None,
    };
    let mut out = BytesMut::new();
    if let Some(last) = last.and_then(|l| frame(&mut framer, l)) {
        out.extend_from_slice(&last);
    }
    if let Some(f) = &framer {
        out.extend_from_slice(&f.close());
    }
    (!out.is_empty()).then(|| out.freeze())
}

/// Charges the stream's usage (the provider's report, or an estimate of what was streamed),
/// marks how it ended, and writes the event. Returns the failure the client is told of,
/// whether the provider itself reported it in the stream, and the held terminal event.
async fn settle(
    stream: Stream,
    mut failure: Option<String>,
    client_gone: bool,
) -> (Option<String>, bool, Option<Bytes>) {
    let Stream {
        mut rec,
        mut translator,
        price,
        basis,
        held,
        ..
    } = stream;
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
    rec.charge(usage, estimated, price);
    if client_gone {
        rec.fail(
            499,
            ErrorClass::ClientCancel,
            "the client closed the stream",
        );
    } else if let Some(f) = &failure {
        rec.fail(502, ErrorClass::ProviderError, f);
    }
    account::write(rec).await;
    drop(held);
    (failure, reported, translator.terminal.take())
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

    fn is_empty(&self) -> bool {
        self.events.is_empty()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::{Pump, Stream};
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

    /// The body pumping `upstream` (OpenAI chat to an OpenAI client).
    fn start(upstream: futures_util::stream::BoxStream<'static, Chunk>) -> Pump {
        start_with_idle(upstream, Duration::from_secs(30))
    }

    fn start_with_idle(
        upstream: futures_util::stream::BoxStream<'static, Chunk>,
        idle_timeout: Duration,
    ) -> Pump {
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
        Pump::new(
            upstream,
            Stream {
                rec,
                client: Surface::OpenAiChat,
                translator,
                price: None,
                basis,
                idle_timeout,
                json_array: false,
                held: Box::new(()),
                tasks: tokio_util::task::TaskTracker::new(),
            },
        )
    }

    /// The next write the client gets; `None` at the end of the body.
    async fn next_write(body: &mut Pump) -> Option<String> {
        // A guard against a hang, not a timing claim.
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the pump wrote nothing")?
            .unwrap();
        let data = frame.into_data().expect("a data frame");
        Some(String::from_utf8(data.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn events_read_together_reach_the_client_in_one_write() {
        let chunks: Vec<Chunk> = [HELLO, WORLD]
            .into_iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        // Both chunks are ready at once; the stream then ends with `[DONE]` on its own.
        let ready = futures_util::stream::iter(chunks);
        let done = futures_util::stream::once(async { Ok(Bytes::from_static(DONE.as_bytes())) });
        let mut body = start(ready.chain(done).boxed());
        let first = next_write(&mut body).await.unwrap();
        assert!(
            first.starts_with(&format!("{HELLO}{WORLD}")),
            "one write carries both events: {first:?}"
        );
        let mut rest = first[HELLO.len() + WORLD.len()..].to_owned();
        while let Some(w) = next_write(&mut body).await {
            rest.push_str(&w);
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
        let mut body = start(futures_util::stream::iter(chunks).boxed());
        let mut all = String::new();
        while let Some(w) = next_write(&mut body).await {
            all.push_str(&w);
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
        let mut body = start(tokio_stream::wrappers::ReceiverStream::new(up_rx).boxed());
        up_tx
            .send(Ok(Bytes::from_static(HELLO.as_bytes())))
            .await
            .unwrap();
        // The second event has not been sent: the first must reach the client anyway.
        assert_eq!(next_write(&mut body).await.unwrap(), HELLO);
        up_tx
            .send(Ok(Bytes::from_static(WORLD.as_bytes())))
            .await
            .unwrap();
        assert_eq!(next_write(&mut body).await.unwrap(), WORLD);
        up_tx
            .send(Ok(Bytes::from_static(DONE.as_bytes())))
            .await
            .unwrap();
        assert_eq!(next_write(&mut body).await.unwrap(), DONE);
        assert_eq!(next_write(&mut body).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_that_goes_quiet_past_the_idle_timeout_ends_the_stream_with_an_error() {
        let (up_tx, up_rx) = mpsc::channel::<Chunk>(4);
        let mut body = start_with_idle(
            tokio_stream::wrappers::ReceiverStream::new(up_rx).boxed(),
            Duration::from_secs(2),
        );
        up_tx
            .send(Ok(Bytes::from_static(HELLO.as_bytes())))
            .await
            .unwrap();
        assert_eq!(next_write(&mut body).await.unwrap(), HELLO);
        // Nothing more comes (the sender stays open); the paused clock runs to the timeout.
        let last = next_write(&mut body).await.unwrap();
        assert!(last.contains("went idle"), "{last:?}");
        assert_eq!(next_write(&mut body).await, None);
        drop(up_tx);
    }
}
