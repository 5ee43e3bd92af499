//! The upstream HTTP client: keep-alive HTTP/1.1 connections (plain, or TLS with rustls),
//! pooled per origin and per thread, each driven by the request that holds it.
//!
//! hyper's pooled client runs every connection in a task of its own and, for each HTTP/1
//! request whose answer has a body, spawns one more task that hands the connection back to the
//! pool once the body is read: a request crossed three tasks, each hop a wake-up (often on the
//! other worker thread). Here a connection has no task: the request that leases it polls its
//! I/O next to its own future — while it waits for the answer's head, and then whenever the
//! answer's body ([`Leased`]) is read — so the bytes arrive in the task that wants them. The
//! body's end gives the connection back to the pool; a body dropped before its end closes it
//! (it is mid-answer, so it cannot be reused).
//!
//! A connection waits in the pool unpolled: one the provider closed meanwhile is found out
//! when it is next leased (its I/O is polled before the request is sent) and discarded. If it
//! closes between that check and the write, hyper hands the unsent request back and it goes
//! out on a new connection; once written, a failure is the attempt's (the failure ladder
//! decides about retries). Idle connections live at most [`IDLE_TIMEOUT`], at most
//! [`MAX_IDLE_PER_ORIGIN`] per origin, the most recently used leased first.
//!
//! A connection is registered with the runtime of the thread that opened it, so it is only
//! leased again on that thread: the proxy's workers (`crate::server::workers`) each run a
//! single-threaded runtime, and a connection polled from another thread would have its
//! readiness delivered by the opener's runtime, a cross-thread wake-up per read.
//!
//! TLS offers only `http/1.1` in ALPN: an HTTP/2 connection multiplexes its streams through a
//! task of its own, which is the cost this client exists to avoid.

use std::future::{poll_fn, Future};
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};
use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::UpstreamError;

/// How long a connection may wait in the pool between two requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most idle connections kept per origin (more are closed when given back).
pub const MAX_IDLE_PER_ORIGIN: usize = 256;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// A pooled upstream client for one connect timeout. Cloning shares the pool.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

struct Inner {
    connector: HttpsConnector<HttpConnector>,
    idle: Mutex<HashMap<Origin, Vec<Idle>>>,
}

/// Where a connection goes, and from which thread: scheme and authority (host and port),
/// compared and hashed as written. `http`'s own types compare case-insensitively and hash the authority a lowercased
/// byte at a time (a thousand instructions per pool lookup, two lookups per request); a
/// deployment's base URL is one string, so its requests always spell the origin alike, and two
/// spellings of one host would only keep two pools.
#[derive(Clone)]
struct Origin {
    scheme: Scheme,
    authority: Authority,
    thread: ThreadId,
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        self.thread == other.thread
            && self.scheme.as_str() == other.scheme.as_str()
            && self.authority.as_str() == other.authority.as_str()
    }
}

impl Eq for Origin {}

impl Hash for Origin {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.thread.hash(state);
        self.scheme.as_str().hash(state);
        self.authority.as_str().hash(state);
    }
}

impl Origin {
    /// `uri`'s origin, as seen from the current thread.
    fn of(uri: &Uri) -> Option<Origin> {
        Some(Origin {
            scheme: uri.scheme()?.clone(),
            authority: uri.authority()?.clone(),
            thread: std::thread::current().id(),
        })
    }
}

/// One HTTP/1.1 connection: the handle requests are sent through and the future that runs
/// its I/O, polled by whoever holds it.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    io: Pin<Box<http1::Connection<Io, Full<Bytes>>>>,
    /// The connection's future has ended: closed by the peer, or failed.
    ended: bool,
}

impl Conn {
    /// Runs the connection's reads and writes as far as they go now; false once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.ended && self.io.as_mut().poll(cx).is_ready() {
            self.ended = true;
        }
        !self.ended
    }

    /// Whether an idle connection can take a request now (its I/O polled first, so a close by
    /// the peer is noticed).
    fn ready(&mut self, cx: &mut Context<'_>) -> bool {
        self.drive(cx) && matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// Builds an upstream client: `TCP_NODELAY`, the given connect timeout, keep-alive pooling,
/// TLS with the webpki roots (plain HTTP allowed for local and compatible hosts).
pub fn http_client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    HttpClient {
        inner: Arc::new(Inner {
            connector,
            idle: Mutex::new(HashMap::new()),
        }),
    }
}

impl HttpClient {
    /// Sends `req` (an absolute URI) on a pooled connection, or a new one, and returns the
    /// answer's head with a body that drives the connection while it is read.
    pub async fn request(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Leased>, UpstreamError> {
        let origin = Origin::of(req.uri()).ok_or_else(|| {
            UpstreamError::Connect(format!("`{}` is not an absolute URI", req.uri()))
        })?;
        let target = req.uri().clone();
        if !req.headers().contains_key(HOST) {
            if let Ok(host) = HeaderValue::from_str(origin.authority.as_str()) {
                req.headers_mut().insert(HOST, host);
            }
        }
        // HTTP/1.1 names the path (and query) on the request line; the host is in `Host`.
        *req.uri_mut() = target
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        let mut pooled = poll_fn(|cx| Poll::Ready(self.checkout(&origin, cx))).await;
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => self.connect(&target).await?,
            };
            match send(&mut conn, req).await {
                Ok(resp) => {
                    let lease = Lease {
                        conn,
                        origin,
                        pool: self.inner.clone(),
                    };
                    return Ok(resp.map(|body| Leased {
                        body,
                        lease: Some(lease),
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // A pooled connection closed before the request was written: once more
                    // on a new connection.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(UpstreamError::Read(e.into_error().to_string())),
                },
            }
        }
    }

    /// The most recently used idle connection to `origin` that can take a request; the
    /// expired and the closed are dropped on the way.
    fn checkout(&self, origin: &Origin, cx: &mut Context<'_>) -> Option<Conn> {
        loop {
            let idle = {
                let mut pool = self.inner.idle.lock().ok()?;
                pool.get_mut(origin)?.pop()?
            };
            if idle.since.elapsed() >= IDLE_TIMEOUT {
                continue;
            }
            let mut conn = idle.conn;
            if conn.ready(cx) {
                return Some(conn);
            }
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<Conn, UpstreamError> {
        let mut connector = self.inner.connector.clone();
        let io = connector
            .call(uri.clone())
            .await
            .map_err(|e| UpstreamError::Connect(e.to_string()))?;
        let (sender, io) = http1::handshake(io)
            .await
            .map_err(|e| UpstreamError::Connect(e.to_string()))?;
        Ok(Conn {
            sender,
            io: Box::pin(io),
            ended: false,
        })
    }
}

impl Inner {
    /// Gives a connection whose answer was read to its end back to the pool.
    fn give_back(&self, origin: Origin, conn: Conn) {
        let now = Instant::now();
        // Closed outside the lock: dropping a connection closes its socket.
        let mut closed = Vec::new();
        if let Ok(mut pool) = self.idle.lock() {
            let idle = pool.entry(origin).or_default();
            let fresh = idle
                .iter()
                .position(|i| now.duration_since(i.since) < IDLE_TIMEOUT)
                .unwrap_or(idle.len());
            closed.extend(idle.drain(..fresh));
            if idle.len() < MAX_IDLE_PER_ORIGIN {
                idle.push(Idle { conn, since: now });
            } else {
                closed.push(Idle { conn, since: now });
            }
        }
        drop(closed);
    }
}

/// Sends `req` on `conn`, running the connection's I/O in this task until the answer's head
/// arrives.
async fn send(
    conn: &mut Conn,
    req: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Full<Bytes>>>> {
    let mut answer = std::pin::pin!(conn.sender.try_send_request(req));
    poll_fn(|cx| {
        conn.drive(cx);
        answer.as_mut().poll(cx)
    })
    .await
}

/// A connection lent to one request until its answer is read.
struct Lease {
    conn: Conn,
    origin: Origin,
    pool: Arc<Inner>,
}

/// An answer's body that runs its connection's I/O as it is read, and gives the connection
/// back to the pool at its end.
pub struct Leased {
    body: Incoming,
    /// `None` once the body has ended (the connection is back in the pool) or failed.
    lease: Option<Lease>,
}

impl Body for Leased {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(lease) = &mut this.lease {
            lease.conn.drive(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => {
                if let Some(mut lease) = this.lease.take() {
                    // Lets the connection settle into its idle state before it is pooled.
                    if lease.conn.drive(cx) {
                        lease.pool.give_back(lease.origin, lease.conn);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Leased {
    /// A reader that stops at the answer's last event (an SSE `[DONE]`) may leave the end of
    /// the body unread though it has arrived: what is already here is read (never waited
    /// for), and if that reaches the end the connection goes back to the pool.
    fn drop(&mut self) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..MAX_FRAMES_READ_ON_DROP {
            lease.conn.drive(&mut cx);
            match Pin::new(&mut self.body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(None) => {
                    if lease.conn.drive(&mut cx) {
                        lease.pool.give_back(lease.origin, lease.conn);
                    }
                    return;
                }
                Poll::Ready(Some(Err(_))) | Poll::Pending => return,
            }
        }
    }
}

/// How many frames already received a dropped body reads looking for its end.
const MAX_FRAMES_READ_ON_DROP: usize = 16;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server that answers every request on a connection with `body`, counting the
    /// connections it accepted; with `close_after_one`, it closes each connection after its
    /// first answer and says so on the returned channel.
    async fn server(
        body: &'static str,
        close_after_one: bool,
    ) -> (
        Uri,
        Arc<AtomicUsize>,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let (closed, closes) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let closed = closed.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request: a head and a body of `content-length` bytes.
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buf.len() < end + 4 + len {
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + 4 + len);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        if close_after_one {
                            drop(sock);
                            let _ = closed.send(());
                            return;
                        }
                    }
                });
            }
        });
        let uri = format!("http://{addr}/v1/chat/completions")
            .parse()
            .unwrap();
        (uri, accepted, closes)
    }

    async fn call(client: &HttpClient, uri: &Uri) -> Result<Bytes, UpstreamError> {
        let req = Request::post(uri.clone())
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let resp = client.request(req).await?;
        Ok(resp.into_body().collect().await.unwrap().to_bytes())
    }

    #[test]
    fn a_pool_is_per_scheme_host_and_port_as_written() {
        let origin = |u: &str| Origin::of(&u.parse::<Uri>().unwrap()).unwrap();
        let a = origin("http://api.example:8080/v1/chat");
        assert!(a == origin("http://api.example:8080/v1/embeddings"));
        let state = std::hash::RandomState::new();
        assert_eq!(
            std::hash::BuildHasher::hash_one(&state, &a),
            std::hash::BuildHasher::hash_one(&state, origin("http://api.example:8080/x"))
        );
        assert!(a != origin("https://api.example:8080/v1/chat"));
        assert!(a != origin("http://api.example:8081/v1/chat"));
        assert!(a != origin("http://other.example:8080/v1/chat"));
    }

    #[tokio::test]
    async fn requests_one_after_another_share_one_connection() {
        let (uri, accepted, _) = server("hello", false).await;
        let client = http_client(Duration::from_secs(1));
        for _ in 0..5 {
            assert_eq!(call(&client, &uri).await.unwrap(), "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_replaced() {
        let (uri, accepted, mut closes) = server("again", true).await;
        let client = http_client(Duration::from_secs(1));
        for _ in 0..3 {
            assert_eq!(call(&client, &uri).await.unwrap(), "again");
            // The server has closed the pooled connection before the next request leases it.
            closes.recv().await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_answer_dropped_before_its_end_arrived_does_not_return_its_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    // Half of the announced body, then nothing more.
                    let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial";
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.read(&mut buf).await;
                });
            }
        });
        let uri: Uri = format!("http://{addr}/").parse().unwrap();
        let client = http_client(Duration::from_secs(1));
        for _ in 0..2 {
            let req = Request::get(uri.clone())
                .body(Full::new(Bytes::new()))
                .unwrap();
            drop(client.request(req).await.unwrap());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// Runs `f` on a new thread with a single-threaded runtime of its own, as a proxy worker.
    fn on_own_thread<F>(f: F) -> std::thread::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f);
        })
    }

    #[tokio::test]
    async fn a_connection_is_leased_again_only_on_the_thread_that_opened_it() {
        let (uri, accepted, _) = server("here", false).await;
        let client = http_client(Duration::from_secs(1));
        let (a_called, b_waits) = tokio::sync::oneshot::channel::<()>();
        let (b_called, a_waits) = tokio::sync::oneshot::channel::<()>();
        let a = on_own_thread({
            let (client, uri) = (client.clone(), uri.clone());
            async move {
                assert_eq!(call(&client, &uri).await.unwrap(), "here");
                a_called.send(()).unwrap();
                // Idle in its runtime while the other thread calls the same origin.
                a_waits.await.unwrap();
                assert_eq!(call(&client, &uri).await.unwrap(), "here");
            }
        });
        let b = on_own_thread({
            let (client, uri) = (client.clone(), uri.clone());
            async move {
                b_waits.await.unwrap();
                assert_eq!(call(&client, &uri).await.unwrap(), "here");
                assert_eq!(call(&client, &uri).await.unwrap(), "here");
                b_called.send(()).unwrap();
            }
        });
        tokio::task::spawn_blocking(move || {
            a.join().unwrap();
            b.join().unwrap();
        })
        .await
        .unwrap();
        // One connection per thread, each reused by its own thread's later call.
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn requests_in_parallel_each_get_a_connection_and_all_are_pooled() {
        let (uri, accepted, _) = server("many", false).await;
        let client = http_client(Duration::from_secs(1));
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let (client, uri) = (client.clone(), uri.clone());
                tokio::spawn(async move { call(&client, &uri).await.unwrap() })
            })
            .collect();
        for c in calls {
            assert_eq!(c.await.unwrap(), "many");
        }
        let opened = accepted.load(Ordering::SeqCst);
        for _ in 0..8 {
            assert_eq!(call(&client, &uri).await.unwrap(), "many");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), opened);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = http_client(Duration::from_secs(1));
        let uri = format!("http://{addr}/").parse().unwrap();
        let err = call(&client, &uri).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Connect(_)), "{err}");
    }

    #[tokio::test]
    async fn a_chunked_answer_whose_end_has_arrived_returns_its_connection_when_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    // Each read is one small request (no body); answer it, chunked, all at once.
                    while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {
                        let answer = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                                      6\r\ndata: \r\n7\r\n[DONE]\n\r\n0\r\n\r\n";
                        if sock.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let uri: Uri = format!("http://{addr}/").parse().unwrap();
        let client = http_client(Duration::from_secs(1));
        for _ in 0..3 {
            let req = Request::get(uri.clone())
                .body(Full::new(Bytes::new()))
                .unwrap();
            let mut body = client.request(req).await.unwrap().into_body();
            // The reader stops after the first frame, as the pump does at `[DONE]`, once the
            // whole answer is here.
            let first = body.frame().await.unwrap().unwrap();
            assert!(first.is_data());
            drop(body);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
