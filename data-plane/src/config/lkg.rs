//! Last-known-good: every applied snapshot is written (encoded, sealed with AES-256-GCM under
//! the node's LKG key and bound to the file's label, atomically by rename) to the data directory, and a data plane that starts
//! while the control plane is unreachable serves from it. The snapshot holds provider
//! credentials and the key-hash secret, so it never touches the disk in clear.
//!
//! The LKG key comes from `MODELGATE_LKG_KEY` (64 hex characters, e.g. from a secret store) or,
//! failing that, from `lkg.key` in the data directory, generated on first start (0600).

use std::path::{Path, PathBuf};

use modelgate_proto::config::v1 as wire;
use modelgate_shared::crypto::{Binding, CryptoError, Sealer};
use modelgate_shared::snapshot::{InvalidSnapshot, Snapshot};
use prost::Message;
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

/// The node's LKG sealer: from the given key, or the key file in `data_dir` (created if absent).
pub fn sealer(data_dir: &Path, key_hex: Option<&str>) -> Result<Sealer, LkgError> {
    let key_path = data_dir.join(KEY_FILE);
    let sealed = |source| LkgError::Sealed {
        path: key_path.clone(),
        source,
    };
    if let Some(hex) = key_hex {
        return Sealer::from_hex(hex).map_err(sealed);
    }
    let io = |source| LkgError::Io {
        path: key_path.clone(),
        source,
    };
    match std::fs::read_to_string(&key_path) {
        Ok(hex) => Sealer::from_hex(&hex).map_err(sealed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let hex = Sealer::generate_master_key_hex();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            {
                use std::io::Write;
                let mut f = options.open(&key_path).map_err(io)?;
                f.write_all(hex.as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
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
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    let io = |source| LkgError::Io {
        path: target.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(sealed.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    std::fs::rename(&tmp, &target).map_err(io)?;
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
