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

/// A lazily connecting channel to `url` (it connects on first use and reconnects after a
/// failure, each time with the current TLS files).
pub fn connect(url: &str, security: &ControlPlaneSecurity) -> Result<Channel, ChannelError> {
    let bad = |message: &str| ChannelError::Url {
        url: url.to_owned(),
        message: message.to_owned(),
    };
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| bad(&e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE * 2);
    let uri = endpoint.uri().clone();
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    match (uri.scheme_str(), security) {
        (Some("https"), ControlPlaneSecurity::Tls(files)) => {
            let tls = Arc::new(Reloading::client(files.clone())?);
            Ok(endpoint.connect_with_connector_lazy(TlsConnector { tls }))
        }
        (Some("http"), ControlPlaneSecurity::InsecurePlaintext) => Ok(endpoint.connect_lazy()),
        (Some("http"), ControlPlaneSecurity::Tls(_)) => Err(bad(
            "with TLS material the URL must be https://host:port (plaintext http:// needs --insecure-plaintext-grpc and no TLS files)",
        )),
        (Some("https"), ControlPlaneSecurity::InsecurePlaintext) => Err(bad(
            "https:// needs --tls-ca, --tls-cert and --tls-key",
        )),
        _ => Err(bad("the scheme must be https (or http with --insecure-plaintext-grpc)")),
    }
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

/// Dials TCP, then TLS with the current client configuration; the server name is the URL's host.
#[derive(Clone)]
struct TlsConnector {
    tls: Arc<Reloading<ClientConfig>>,
}

type Connecting = Pin<
    Box<
        dyn Future<Output = io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>> + Send,
    >,
>;

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.tls.current();
        Box::pin(async move {
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(tls))
        })
    }
}
