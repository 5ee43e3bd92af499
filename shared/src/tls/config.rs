//! PEM files → rustls configurations (ring provider, TLS 1.3, the fleet CA as the only root),
//! rebuilt when the files change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::TlsError;

/// How often [`Reloading::current`] looks at the files' modification times.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The three files of one side of the channel: the fleet CA to trust, this side's certificate
/// (chain) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    fn paths(&self) -> [&Path; 3] {
        [&self.ca, &self.cert, &self.key]
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            message: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        message: format!("no usable private key: {e}"),
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(path)? {
        store.add(c).map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(store))
}

/// The control plane's side: requires a client certificate chaining to the fleet CA (with the
/// `clientAuth` usage) and presents `files.cert`.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(&files.ca)?, provider()).build()?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&files.cert)?, key(&files.key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A data plane's side: trusts only the fleet CA (the server certificate must carry the
/// `serverAuth` usage and the dialled name) and presents `files.cert` as its client certificate.
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(certs(&files.cert)?, key(&files.key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

type Stamp = Option<(SystemTime, u64)>;

fn stamps(files: &TlsFiles) -> [Stamp; 3] {
    files.paths().map(|p| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
}

struct State<T> {
    current: Arc<T>,
    stamps: [Stamp; 3],
    checked: Instant,
}

/// A configuration built from [`TlsFiles`] and rebuilt when one of them changes (modification
/// time or length, looked at no more than every [`RECHECK_INTERVAL`], on use). A change that
/// does not build (e.g. a certificate written before its key) keeps the previous configuration
/// and is tried again at the next look, so rotation needs no restart and no ordering.
pub struct Reloading<T> {
    files: TlsFiles,
    build: fn(&TlsFiles) -> Result<T, TlsError>,
    state: Mutex<State<T>>,
}

impl<T> Reloading<T> {
    /// Builds the first configuration; fails if the files do not make one.
    pub fn new(
        files: TlsFiles,
        build: fn(&TlsFiles) -> Result<T, TlsError>,
    ) -> Result<Self, TlsError> {
        let stamps = stamps(&files);
        let current = Arc::new(build(&files)?);
        Ok(Reloading {
            files,
            build,
            state: Mutex::new(State {
                current,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= RECHECK_INTERVAL {
            state.checked = Instant::now();
            let now = stamps(&self.files);
            if now != state.stamps {
                match (self.build)(&self.files) {
                    Ok(next) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS files changed; new connections use them");
                        state.current = Arc::new(next);
                        state.stamps = now;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous ones")
                    }
                }
            }
        }
        state.current.clone()
    }
}

impl Reloading<ServerConfig> {
    pub fn server(files: TlsFiles) -> Result<Self, TlsError> {
        Reloading::new(files, server_config)
    }
}

impl Reloading<ClientConfig> {
    pub fn client(files: TlsFiles) -> Result<Self, TlsError> {
        Reloading::new(files, client_config)
    }
}
