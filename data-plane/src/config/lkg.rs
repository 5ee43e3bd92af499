//! Last-known-good: every applied snapshot is written (encoded, sealed with AES-256-GCM under
//! the node's LKG key and bound to the file's label, atomically by rename) to the data directory, and a data plane that starts
//! while the control plane is unreachable serves from it. The snapshot holds provider
//! credentials and the key-hash secret, so it never touches the disk in clear.
//!
//! The LKG key comes from the operator ([`LkgKey::Given`]: `MODELGATE_LKG_KEY` or a key file
//! outside the data directory), or is generated as `lkg.key` (0600) in the data directory only
//! where that is explicit: `modelgate up`, or `--insecure-key-beside-data` (with a warning).

use std::path::{Path, PathBuf};

use modelgate_proto::config::v1 as wire;
use modelgate_shared::crypto::{Binding, CryptoError, Sealer};
use modelgate_shared::secret_fs;
use modelgate_shared::snapshot::{InvalidSnapshot, Snapshot};
use prost::Message;
use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;

const FILE: &str = "last-known-good.snapshot";
const KEY_FILE: &str = "lkg.key";

#[derive(Debug, Error)]
pub enum LkgError {
    #[error("reading or writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("decoding {path}: {source}")]
    Decode {
        path: PathBuf,
        source: prost::DecodeError,
    },
    #[error("invalid last-known-good snapshot: {0}")]
    Invalid(#[from] InvalidSnapshot),
    #[error("opening {path}: {source}")]
    Sealed { path: PathBuf, source: CryptoError },
}

/// Where a node's LKG key comes from.
#[derive(Clone)]
pub enum LkgKey {
    /// 64 hex characters the operator keeps apart from the data directory (`MODELGATE_LKG_KEY`,
    /// `--lkg-key`, or a key file outside the data directory).
    Given(SecretString),
    /// `lkg.key` in the data directory, generated on first start: `modelgate up`'s local,
    /// zero-setup path (its data directory is the whole installation).
    GeneratedBesideData,
    /// The same, asked for by an operator with `--insecure-key-beside-data`: whoever can read
    /// the data directory can open the snapshot. Logged as a warning at start.
    InsecureBesideData,
}

impl std::fmt::Debug for LkgKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LkgKey::Given(_) => f.write_str("Given([REDACTED])"),
            LkgKey::GeneratedBesideData => f.write_str("GeneratedBesideData"),
            LkgKey::InsecureBesideData => f.write_str("InsecureBesideData"),
        }
    }
}

/// The node's LKG sealer: from the given key, or the key file in `data_dir` (created 0600 with a
/// new random key if absent).
pub fn sealer(data_dir: &Path, key: &LkgKey) -> Result<Sealer, LkgError> {
    let key_path = data_dir.join(KEY_FILE);
    let sealed = |source| LkgError::Sealed {
        path: key_path.clone(),
        source,
    };
    if let LkgKey::Given(hex) = key {
        return Sealer::from_hex(hex.expose_secret()).map_err(sealed);
    }
    let io = |source| LkgError::Io {
        path: key_path.clone(),
        source,
    };
    match std::fs::read_to_string(&key_path) {
        Ok(hex) => Sealer::from_hex(&hex).map_err(sealed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            secret_fs::create_private_dir_all(data_dir).map_err(io)?;
            let hex = Sealer::generate_master_key_hex();
            secret_fs::write_new_secret_file(&key_path, hex.as_bytes()).map_err(io)?;
            Sealer::from_hex(&hex).map_err(sealed)
        }
        Err(source) => Err(io(source)),
    }
}

/// The AEAD binding of the last-known-good file: a value sealed for another purpose under the
/// same key does not open as a snapshot.
fn binding() -> Binding {
    Binding::file("data-plane/last-known-good.snapshot")
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Seals the encoded snapshot, writes it to a temporary file, syncs it, and renames it into place.
pub fn save(data_dir: &Path, sealer: &Sealer, encoded: &[u8]) -> Result<(), LkgError> {
    let sealed = sealer.seal_bound(encoded, &binding());
    let target = path(data_dir);
    let io = |source| LkgError::Io {
        path: target.clone(),
        source,
    };
    secret_fs::create_private_dir_all(data_dir).map_err(io)?;
    secret_fs::replace_secret_file(&target, sealed.as_bytes()).map_err(io)?;
    Ok(())
}

/// Loads and validates the last-known-good snapshot, if there is one.
pub fn load(data_dir: &Path, sealer: &Sealer) -> Result<Option<Snapshot>, LkgError> {
    let p = path(data_dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LkgError::Io { path: p, source }),
    };
    // A file an earlier release wrote is unbound; the next save binds it.
    let bytes = sealer
        .open_bound_or_unbound(text.trim(), &binding())
        .map_err(|source| LkgError::Sealed {
            path: p.clone(),
            source,
        })?;
    let decoded = wire::Snapshot::decode(bytes.as_slice()).map_err(|source| LkgError::Decode {
        path: p.clone(),
        source,
    })?;
    Ok(Some(Snapshot::try_from(decoded)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_lkg_keys_debug_shows_no_key() {
        let key = Sealer::generate_master_key_hex();
        let shown = format!("{:?}", LkgKey::Given(key.clone().into()));
        assert!(
            !shown.contains(&key) && shown.contains("REDACTED"),
            "{shown}"
        );
    }
}
