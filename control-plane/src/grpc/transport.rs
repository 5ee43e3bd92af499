//! The gRPC listener's connections: mutual TLS (tokio-rustls, the fleet CA as the only trust
//! root) or, only when the operator asked for it, plaintext. Each connection carries its
//! [`Peer`] (the verified node identity) into every request's extensions via tonic's
//! [`Connected`]; [`super::identity`] reads it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use modelgate_shared::tls::{node_identity, NodeIdentity, Reloading, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::service::revocations::Revoked;

/// How the control plane's gRPC listener authenticates data planes.
#[derive(Clone)]
pub enum GrpcSecurity {
    /// Mutual TLS: clients must present a certificate chaining to the fleet CA.
    Tls(Arc<Reloading<ServerConfig>>),
    /// No TLS, no authentication: anyone who reaches the port is trusted
    /// (`--insecure-plaintext-grpc`).
    InsecurePlaintext,
}

impl std::fmt::Debug for GrpcSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrpcSecurity::Tls(r) => write!(f, "Tls({})", r.files().cert.display()),
            GrpcSecurity::InsecurePlaintext => f.write_str("InsecurePlaintext"),
        }
    }
}

/// Who is on the other end of a gRPC connection.
#[derive(Clone, Debug)]
pub enum Peer {
    /// A plaintext connection: nobody is authenticated; the hello is taken at its word.
    Plaintext,
    /// A verified client certificate naming this node.
    Node(Arc<NodeIdentity>),
    /// A verified client certificate that names no node (e.g. a certificate for something else
    /// issued by the same CA): every call is refused.
    Unidentified(String),
}

/// A client must finish its TLS handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, Peer),
}

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        match self {
            Conn::Plain(_) => Peer::Plaintext,
            Conn::Tls(_, peer) => peer.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts connections and completes each TLS handshake in its own task (a slow client holds up
/// nobody). A revoked node is dropped right after its handshake. The stream ends at `shutdown`.
pub fn incoming(
    listener: TcpListener,
    security: GrpcSecurity,
    revoked: Arc<Revoked>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Conn, io::Error>> {
    let (tx, rx) = mpsc::channel::<Result<Conn, io::Error>>(64);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "gRPC accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => return,
            };
            let _ = tcp.set_nodelay(true);
            match &security {
                GrpcSecurity::InsecurePlaintext => {
                    if tx.send(Ok(Conn::Plain(tcp))).await.is_err() {
                        return;
                    }
                }
                GrpcSecurity::Tls(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config.current());
                    let tx = tx.clone();
                    let revoked = revoked.clone();
                    tokio::spawn(async move {
                        let tls = match tokio::time::timeout(
                            HANDSHAKE_TIMEOUT,
                            acceptor.accept(tcp),
                        )
                        .await
                        {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::warn!(%remote, error = %e, "gRPC TLS handshake refused");
                                return;
                            }
                            Err(_) => {
                                tracing::warn!(%remote, "gRPC TLS handshake timed out");
                                return;
                            }
                        };
                        let peer = peer_of(&tls);
                        if let Peer::Node(id) = &peer {
                            if revoked.contains(&id.node_id) {
                                tracing::warn!(%remote, node = %id.node_id, "refused a revoked node");
                                return;
                            }
                        }
                        let _ = tx.send(Ok(Conn::Tls(Box::new(tls), peer))).await;
                    });
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

fn peer_of(tls: &tokio_rustls::server::TlsStream<TcpStream>) -> Peer {
    let (_, session) = tls.get_ref();
    match session.peer_certificates().and_then(|c| c.first()) {
        // The verifier requires a certificate, so this is unreachable in practice.
        None => Peer::Unidentified("no client certificate".into()),
        Some(cert) => match node_identity(cert) {
            Ok(id) => Peer::Node(Arc::new(id)),
            Err(e) => Peer::Unidentified(e.to_string()),
        },
    }
}
