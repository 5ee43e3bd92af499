//! The HTTP serving loop both planes use for their listeners (the proxy, the admin API, the
//! metrics endpoint). It lives in its own crate because `shared` does no I/O and neither plane
//! may depend on the other.
//!
//! What it adds over `axum::serve`:
//! - **Header-read timeout** (hyper's `header_read_timeout`): a client must finish each request
//!   head within it. Hyper starts the timer whenever it waits for a head, so on HTTP/1.1 it also
//!   bounds the idle time of a keep-alive connection between requests. Its deadlines are kept by
//!   a coarse timer of the listener's own ([`timer`]: they fire up to one tick late, a twentieth
//!   of the timeout held between 5 and 250 ms), not in tokio's wheel, where each would cost a
//!   request a system call. On TLS listeners the handshake is bounded by the same timeout.
//! - **Idle timeout**: a connection on which no request started for this long is shut down
//!   gracefully (what is in flight, a long stream included, finishes first). This is what bounds
//!   idle HTTP/2 connections.
//! - **Body-read timeout**: a request body that has not fully arrived this long after its head
//!   fails with [`BodyTimeout`]; each surface turns that into a 408 in its own format
//!   ([`is_body_timeout`]). We answer rather than drop the connection so a slow but honest
//!   client learns why, and the data plane still writes the request's usage event.
//! - **Connection cap**: a semaphore taken before `accept`. At the cap new connections wait in
//!   the kernel's accept queue (and past its backlog the kernel refuses them); nothing is
//!   accepted just to be closed, so a client sees a slow connect rather than a reset.
//! - **TLS** (rustls with ring, optional): ALPN offers `h2` and `http/1.1` and the negotiated
//!   protocol picks the connection type. Plain listeners speak HTTP/1.1 only (as `axum::serve`
//!   did here), so no connection waits in protocol sniffing outside a timer.
//! - **Graceful shutdown**: on cancellation the listener closes, every connection is told to
//!   finish what is in flight and close, and [`Listener::serve`] returns once all have.
//! - **What serves the requests** is a [`Handler`]: an axum [`Router`] (the peer address goes
//!   into each request as `axum::extract::ConnectInfo<SocketAddr>`), or a handler of its own
//!   that is given the peer address as an argument and whose future hyper holds as it is
//!   (the proxy port's: no routing table, boxed service or extension map per request).
//!
//! Per request the loop adds one relaxed atomic increment and, for a request with a body, a
//! timer entry inside the body's existing box; a `Router` adds its `ConnectInfo` extension
//! (the request's extension map).

mod balance;
mod timer;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// What serves a listener's requests. `call` returns a future that owns what it needs: hyper
/// keeps it in the connection's one allocation while the request is served.
pub trait Handler: Clone + Send + Sync + 'static {
    fn call(
        &self,
        req: http::Request<TimedBody>,
        peer: SocketAddr,
    ) -> impl Future<Output = axum::response::Response> + Send + use<Self>;
}

/// An axum router, with the peer address as its `ConnectInfo` extension.
impl Handler for Router {
    fn call(
        &self,
        mut req: http::Request<TimedBody>,
        peer: SocketAddr,
    ) -> impl Future<Output = axum::response::Response> + Send + use<> {
        req.extensions_mut().insert(ConnectInfo(peer));
        // A `Router` is always ready: `poll_ready` is a no-op for it.
        let response = Service::call(&mut self.clone(), req);
        async move {
            match response.await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    }
}

/// How a listener treats its connections. [`Default`] holds the defaults the command line
/// shows.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Time a client has to send a complete request head (and, on HTTP/1.1, the longest a
    /// keep-alive connection may sit idle between requests). Also bounds a TLS handshake.
    pub header_timeout: Duration,
    /// A connection on which no request started for this long is closed gracefully.
    pub idle_timeout: Duration,
    /// Time a request body has to arrive in full, from its head.
    pub body_timeout: Duration,
    /// Open connections at most; more wait in the accept queue.
    pub max_connections: usize,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            tls: None,
        }
    }
}

/// A PEM certificate chain (leaf first) and its PEM private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("the TLS certificate and key")]
    Tls(#[from] rustls::Error),
}

/// A request body that did not arrive within [`HttpOptions::body_timeout`].
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct BodyTimeout(pub Duration);

/// Whether `err` or one of its sources is a [`BodyTimeout`].
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<BodyTimeout>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Loads a rustls server config from PEM files, offering `h2` and `http/1.1` by ALPN.
pub fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ListenError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ListenError::Pem { path, source }
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(pem(&files.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(&files.cert))?;
    if certs.is_empty() {
        return Err(ListenError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(pem(&files.key))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A bound listener, not yet serving.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    options: HttpOptions,
    nodelay: bool,
    /// The connection cap, shared by the parts of a [`Listener::split`] listener.
    permits: Arc<Semaphore>,
    /// A part of a split listener: its share of the connections, kept even with the others'.
    part: Option<balance::Part>,
}

/// One part of a [`Listener::split`] listener: its socket not yet registered with a runtime.
pub struct Detached {
    tcp: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    options: HttpOptions,
    nodelay: bool,
    permits: Arc<Semaphore>,
    part: balance::Part,
}

impl Detached {
    /// The listener, registered with the runtime this is called in (or entered by): the one
    /// that will serve it.
    pub fn attach(self) -> std::io::Result<Listener> {
        self.tcp.set_nonblocking(true)?;
        Ok(Listener {
            tcp: TcpListener::from_std(self.tcp)?,
            tls: self.tls,
            options: self.options,
            nodelay: self.nodelay,
            permits: self.permits,
            part: Some(self.part),
        })
    }
}

impl Listener {
    /// Binds `addr` and loads the TLS files, if any, so that both fail at start.
    pub async fn bind(addr: SocketAddr, options: HttpOptions) -> Result<Listener, ListenError> {
        let tls = match &options.tls {
            Some(files) => Some(TlsAcceptor::from(tls_config(files)?)),
            None => None,
        };
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind { addr, source })?;
        let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
        Ok(Listener {
            tcp,
            tls,
            options,
            nodelay: false,
            permits,
            part: None,
        })
    }

    /// Splits into `parts` listeners on the one socket (each holds a duplicate of its
    /// descriptor), for as many runtimes to accept from: whichever is waiting takes the next
    /// connection, and hands it on to the part serving the fewest connections when it serves
    /// well above that part (see [`balance`]). They share the connection cap and stop
    /// accepting, each, when their own `serve` is told to stop.
    pub fn split(self, parts: usize) -> std::io::Result<Vec<Detached>> {
        let parts = parts.max(1);
        let tcp = self.tcp.into_std()?;
        let mut sockets = (1..parts)
            .map(|_| tcp.try_clone())
            .collect::<std::io::Result<Vec<_>>>()?;
        sockets.push(tcp);
        Ok(sockets
            .into_iter()
            .zip(balance::parts(parts))
            .map(|(tcp, part)| Detached {
                tcp,
                tls: self.tls.clone(),
                options: self.options.clone(),
                nodelay: self.nodelay,
                permits: self.permits.clone(),
                part,
            })
            .collect())
    }

    /// Sets TCP_NODELAY on every accepted connection (streams are many small writes: without
    /// it each waits on the client's delayed ACK, ~40 ms).
    pub fn nodelay(mut self) -> Self {
        self.nodelay = true;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves `handler` until `shutdown` is cancelled, then drains: returns once every
    /// connection has finished what it had in flight.
    pub async fn serve<H: Handler>(self, handler: H, shutdown: CancellationToken) {
        let Listener {
            tcp,
            tls,
            options,
            nodelay,
            permits,
            mut part,
        } = self;
        let mut h1 = http1::Builder::new();
        h1.timer(timer::CoarseTimer::start(timer::tick_for(
            options.header_timeout,
        )))
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(20)));
        let shared = Arc::new(Shared {
            handler,
            tls,
            h1,
            h2,
            options,
            shutdown: shutdown.clone(),
        });
        let connections = TaskTracker::new();
        loop {
            let (stream, peer, permit, counted) = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(handed) = handed(&mut part) => match handed {
                    Ok(connection) => connection,
                    Err(e) => {
                        tracing::warn!(error = %e, "a connection handed over could not be served");
                        continue;
                    }
                },
                next = accept(&tcp, &permits) => match next {
                    Accepted::Connection(stream, peer, permit) => match &part {
                        None => (stream, peer, permit, None),
                        Some(part) => match part.place(stream, peer, permit) {
                            balance::Placed::Here(stream, permit, counted) => {
                                (stream, peer, permit, Some(counted))
                            }
                            balance::Placed::Away => continue,
                        },
                    },
                    Accepted::Failed(e) => {
                        accept_error(e).await;
                        continue;
                    }
                    Accepted::CapClosed => break,
                },
            };
            if nodelay {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
            }
            let shared = shared.clone();
            connections.spawn(async move {
                connection(&shared, stream, peer).await;
                drop((permit, counted));
            });
        }
        drop(tcp);
        connections.close();
        connections.wait().await;
    }
}

/// A connection to serve: its socket, peer, permit of the connection cap and, on a part of a
/// split listener, its place in the part's count.
type ToServe = (
    TcpStream,
    SocketAddr,
    OwnedSemaphorePermit,
    Option<balance::Counted>,
);

/// What waiting for the next connection on the socket gave.
enum Accepted {
    Connection(TcpStream, SocketAddr, OwnedSemaphorePermit),
    Failed(std::io::Error),
    /// The connection cap's semaphore was closed: the listener stops.
    CapClosed,
}

/// Takes a permit of the connection cap, then the next connection from the socket. At the cap
/// new connections wait in the kernel's queue.
async fn accept(tcp: &TcpListener, permits: &Arc<Semaphore>) -> Accepted {
    let Ok(permit) = permits.clone().acquire_owned().await else {
        return Accepted::CapClosed;
    };
    match tcp.accept().await {
        Ok((stream, peer)) => Accepted::Connection(stream, peer, permit),
        Err(e) => Accepted::Failed(e),
    }
}

/// The next connection another part of a split listener handed to this one; never, for a
/// listener that is not split.
async fn handed(part: &mut Option<balance::Part>) -> Option<std::io::Result<ToServe>> {
    match part {
        Some(part) => part
            .handed()
            .await
            .map(|r| r.map(|(s, peer, permit, counted)| (s, peer, permit, Some(counted)))),
        None => std::future::pending().await,
    }
}

/// What every connection of one listener shares.
struct Shared<H> {
    handler: H,
    tls: Option<TlsAcceptor>,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    options: HttpOptions,
    shutdown: CancellationToken,
}

/// A failed `accept`: a connection that died in the queue is skipped; anything else (e.g. out
/// of file descriptors) is logged and retried after a pause so the loop does not spin.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn connection<H: Handler>(shared: &Shared<H>, stream: TcpStream, peer: SocketAddr) {
    let started = Arc::new(AtomicU64::new(0));
    let service = {
        let handler = shared.handler.clone();
        let started = started.clone();
        let body_timeout = shared.options.body_timeout;
        hyper::service::service_fn(move |req: http::Request<Incoming>| {
            started.fetch_add(1, Ordering::Relaxed);
            let response = handler.call(req.map(|body| TimedBody::new(body, body_timeout)), peer);
            async move { Ok::<_, std::convert::Infallible>(response.await) }
        })
    };
    let result = match &shared.tls {
        None => {
            let conn = pin!(shared.h1.serve_connection(TokioIo::new(stream), service));
            drive(conn, |c| c.graceful_shutdown(), shared, &started).await
        }
        Some(acceptor) => {
            let tls =
                match tokio::time::timeout(shared.options.header_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                let conn = pin!(shared.h2.serve_connection(TokioIo::new(tls), service));
                drive(conn, |c| c.graceful_shutdown(), shared, &started).await
            } else {
                let conn = pin!(shared.h1.serve_connection(TokioIo::new(tls), service));
                drive(conn, |c| c.graceful_shutdown(), shared, &started).await
            }
        }
    };
    if let Err(e) = result {
        // Header timeouts, resets and half-sent requests end up here: the client's doing.
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Runs one connection to its end, shutting it down gracefully when the listener stops or when
/// no request started within the idle timeout.
async fn drive<C, H>(
    mut conn: Pin<&mut C>,
    graceful: fn(Pin<&mut C>),
    shared: &Shared<H>,
    started: &AtomicU64,
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    let idle = shared.options.idle_timeout;
    let mut idle_check = pin!(tokio::time::sleep(idle));
    let mut seen = 0;
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            () = shared.shutdown.cancelled(), if !closing => {
                graceful(conn.as_mut());
                closing = true;
            }
            () = idle_check.as_mut(), if !closing => {
                let now = started.load(Ordering::Relaxed);
                if now == seen {
                    graceful(conn.as_mut());
                    closing = true;
                } else {
                    seen = now;
                    idle_check.as_mut().reset(tokio::time::Instant::now() + idle);
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body that fails with [`BodyTimeout`] if it has not ended within the body
    /// timeout of its head. The timer exists only for a request that has a body, and is armed
    /// only when the body is read.
    pub struct TimedBody {
        #[pin]
        inner: Incoming,
        #[pin]
        deadline: Option<Sleep>,
        timeout: Duration,
    }
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        let deadline = (!inner.is_end_stream()).then(|| tokio::time::sleep(timeout));
        TimedBody {
            inner,
            deadline,
            timeout,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if let Some(deadline) = this.deadline.as_pin_mut() {
            if deadline.poll(cx).is_ready() {
                return Poll::Ready(Some(Err(Box::new(BodyTimeout(*this.timeout)))));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
