//! Last-known-good: every applied snapshot is written (encoded, atomically by rename) to the
//! data directory, and a data plane that starts while the control plane is unreachable serves
//! from it.

use std::path::{Path, PathBuf};

use modelgate_proto::config::v1 as wire;
use modelgate_shared::snapshot::{InvalidSnapshot, Snapshot};
use prost::Message;
use thiserror::Error;

const FILE: &str = "last-known-good.snapshot";

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
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Writes the encoded snapshot to a temporary file, syncs it, and renames it into place.
pub fn save(data_dir: &Path, encoded: &[u8]) -> Result<(), LkgError> {
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
        f.write_all(encoded).map_err(io)?;
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
pub fn load(data_dir: &Path) -> Result<Option<Snapshot>, LkgError> {
    let p = path(data_dir);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LkgError::Io { path: p, source }),
    };
    let decoded = wire::Snapshot::decode(bytes.as_slice()).map_err(|source| LkgError::Decode {
        path: p.clone(),
        source,
    })?;
    Ok(Some(Snapshot::try_from(decoded)?))
}
