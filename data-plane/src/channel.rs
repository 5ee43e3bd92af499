//! The one gRPC channel from this data plane to the control plane, shared by the config
//! subscriber, the usage shipper, budget quotas and rate limits.
//!
//! Over `https://host:port` it is mutual TLS (tokio-rustls): the control plane's certificate must
//! chain to the fleet CA, carry the `serverAuth` usage and match `host`; this node presents its
//! own certificate. The TLS files are re-read when they change, so each new connection uses the
//! current ones. `http://` is plaintext and only allowed with `--insecure-plaintext-grpc`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use modelgate_shared::tls::{
    ClientConfig, NodeIdentity, Reloading, ServerName, TlsError, TlsFiles,
};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// How this data plane reaches the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlPlaneSecurity {
    /// Mutual TLS with these files (`--tls-ca`, `--tls-cert`, `--tls-key`); the URL is `https://`.
    Tls(TlsFiles),
    /// Plaintext, no authentication either way (`--insecure-plaintext-grpc`); the URL is
    /// `http://`.
    InsecurePlaintext,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("invalid control plane URL `{url}`: {message}")]
    Url { url: String, message: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const KEEPALIVE: Duration = Duration::from_secs(10);

/// A lazily connecting channel to the control plane at `urls`: one URL, or several
/// comma-separated (control-plane replicas over one database). It connects on first use and
/// reconnects after a failure, each time with the current TLS files. With several URLs each
/// (re)connection tries them in turn, starting with the one that last worked, so a node whose
/// replica dies moves to another on its next connection: the config stream resumes from the
/// version it serves (sent in its hello), the usage shipper from its spool, and quota calls
/// simply go to the replica now connected (both keep their ledgers in the database).
pub fn connect(urls: &str, security: &ControlPlaneSecurity) -> Result<Channel, ChannelError> {
    let targets = targets(urls, security)?;
    let first = targets[0].url.clone();
    let bad = |message: &str| ChannelError::Url {
        url: first.clone(),
        message: message.to_owned(),
    };
    let count = u32::try_from(targets.len()).unwrap_or(u32::MAX);
    let endpoint = Endpoint::from_shared(first.clone())
        .map_err(|e| bad(&e.to_string()))?
        // Each target has its own connect timeout (see `Failover`); this bounds the whole turn.
        .connect_timeout(CONNECT_TIMEOUT * count)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE * 2);
    let tls = match security {
        ControlPlaneSecurity::Tls(files) => Some(Arc::new(Reloading::client(files.clone())?)),
        ControlPlaneSecurity::InsecurePlaintext => None,
    };
    Ok(endpoint.connect_with_connector_lazy(Failover {
        targets: Arc::new(targets),
        next: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        tls,
    }))
}

/// One control-plane address of the list.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    host: String,
    port: u16,
}

/// Parses and checks every URL of a comma-separated list against the security mode.
fn targets(urls: &str, security: &ControlPlaneSecurity) -> Result<Vec<Target>, ChannelError> {
    let mut out = Vec::new();
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let bad = |message: &str| ChannelError::Url {
            url: url.to_owned(),
            message: message.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let host = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let port = match (uri.scheme_str(), security) {
            (Some("https"), ControlPlaneSecurity::Tls(_)) => uri.port_u16().unwrap_or(443),
            (Some("http"), ControlPlaneSecurity::InsecurePlaintext) => uri.port_u16().unwrap_or(80),
            (Some("http"), ControlPlaneSecurity::Tls(_)) => return Err(bad(
                "with TLS material the URL must be https://host:port (plaintext http:// needs --insecure-plaintext-grpc and no TLS files)",
            )),
            (Some("https"), ControlPlaneSecurity::InsecurePlaintext) => {
                return Err(bad("https:// needs --tls-ca, --tls-cert and --tls-key"))
            }
            _ => {
                return Err(bad(
                    "the scheme must be https (or http with --insecure-plaintext-grpc)",
                ))
            }
        };
        out.push(Target {
            url: url.to_owned(),
            host,
            port,
        });
    }
    if out.is_empty() {
        return Err(ChannelError::Url {
            url: urls.to_owned(),
            message: "no control plane URL".to_owned(),
        });
    }
    Ok(out)
}

/// How often a plaintext channel says so again.
const INSECURE_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Logs a warning at start and every minute while the channel runs without TLS.
pub async fn warn_while_plaintext(
    security: ControlPlaneSecurity,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if security != ControlPlaneSecurity::InsecurePlaintext {
        return;
    }
    let mut tick = tokio::time::interval(INSECURE_WARNING_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => tracing::warn!(
                "talking to the control plane WITHOUT TLS (--insecure-plaintext-grpc): anyone on \
                 the path can read the config (provider credentials) and impersonate either side"
            ),
            () = shutdown.cancelled() => return,
        }
    }
}

/// The node identity this data plane's certificate states (what the control plane will
/// attribute its calls to).
pub fn certificate_identity(files: &TlsFiles) -> Result<NodeIdentity, TlsError> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(&files.cert).map_err(|source| TlsError::Read {
        path: files.cert.clone(),
        source,
    })?;
    let cert =
        rustls_pki_types::CertificateDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
            path: files.cert.clone(),
            message: e.to_string(),
        })?;
    modelgate_shared::tls::node_identity(&cert)
}

/// Either side of the control-plane connection: TLS (the normal case) or, with
/// `--insecure-plaintext-grpc`, plain TCP.
type Stream = tokio_util::either::Either<tokio_rustls::client::TlsStream<TcpStream>, TcpStream>;

/// Dials the targets in turn from the one that last worked (TCP, then TLS with the current
/// client configuration; the server name is the target's host) and keeps the first that
/// connects. The URL tonic passes is ignored: it is only the first of the list.
#[derive(Clone)]
struct Failover {
    targets: Arc<Vec<Target>>,
    /// The index to try first on the next connection.
    next: Arc<std::sync::atomic::AtomicUsize>,
    tls: Option<Arc<Reloading<ClientConfig>>>,
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<Stream>>> + Send>>;

impl tower_service::Service<Uri> for Failover {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            use std::sync::atomic::Ordering;
            let n = this.targets.len();
            let start = this.next.load(Ordering::Relaxed) % n;
            let mut last = io::Error::other("no control plane URL");
            for i in 0..n {
                let index = (start + i) % n;
                let target = &this.targets[index];
                let attempt =
                    tokio::time::timeout(CONNECT_TIMEOUT, dial(target, this.tls.as_ref()));
                match attempt.await {
                    Ok(Ok(stream)) => {
                        this.next.store(index, Ordering::Relaxed);
                        if n > 1 {
                            tracing::info!(url = %target.url, "connected to the control plane");
                        }
                        return Ok(TokioIo::new(stream));
                    }
                    Ok(Err(e)) => {
                        if n > 1 {
                            tracing::warn!(url = %target.url, error = %e, "control plane unreachable; trying the next");
                        }
                        last = e;
                    }
                    Err(_) => {
                        if n > 1 {
                            tracing::warn!(url = %target.url, "control plane connect timed out; trying the next");
                        }
                        last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                    }
                }
            }
            // Next time, start after the one tried first this time.
            this.next.store((start + 1) % n, Ordering::Relaxed);
            Err(last)
        })
    }
}

async fn dial(target: &Target, tls: Option<&Arc<Reloading<ClientConfig>>>) -> io::Result<Stream> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(tokio_util::either::Either::Right(tcp));
    };
    let name = ServerName::try_from(target.host.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let stream = tokio_rustls::TlsConnector::from(tls.current())
        .connect(name, tcp)
        .await?;
    Ok(tokio_util::either::Either::Left(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> ControlPlaneSecurity {
        ControlPlaneSecurity::Tls(TlsFiles {
            ca: "ca.pem".into(),
            cert: "node.pem".into(),
            key: "node-key.pem".into(),
        })
    }

    #[test]
    fn a_comma_separated_list_names_every_control_plane_in_order() {
        let t = targets(" https://cp-a:9091, https://cp-b:9092 ,", &tls()).unwrap();
        let got: Vec<(&str, u16)> = t.iter().map(|t| (t.host.as_str(), t.port)).collect();
        assert_eq!(got, [("cp-a", 9091), ("cp-b", 9092)]);
        assert_eq!(targets("https://cp:9091", &tls()).unwrap().len(), 1);
    }

    #[test]
    fn every_url_of_the_list_must_suit_the_security_mode() {
        assert!(targets("https://cp-a:9091,http://cp-b:9091", &tls()).is_err());
        assert!(targets(
            "http://cp-a:9091,https://cp-b:9091",
            &ControlPlaneSecurity::InsecurePlaintext
        )
        .is_err());
        assert!(targets(" , ", &tls()).is_err());
    }
}
