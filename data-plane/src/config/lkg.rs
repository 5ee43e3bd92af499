//! Last-known-good: every applied snapshot is written (encoded, sealed with AES-256-GCM under
//! the node's LKG key and bound to the file's label, atomically by rename) to the data directory, and a data plane that starts
//! while the control plane is unreachable serves from it. The snapshot holds provider
//! credentials and the key-hash secret, so it never touches the disk in clear.
//!
//! After a delta, the snapshot file is not rewritten (at 100k keys that is tens of megabytes):
//! the delta is appended to a journal beside it (sealed, synced, before it is served), and
//! `load` replays the journal onto the snapshot and folds it in.
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
/// The deltas applied since the snapshot file was written, one sealed line each, in order.
const JOURNAL: &str = "last-known-good.deltas";

/// A journal past this size is folded into the snapshot: the subscriber asks for a full
/// snapshot, whose save starts the journal afresh (a start folds it too).
pub const JOURNAL_MAX_BYTES: u64 = 4 * 1024 * 1024;
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

fn journal_binding() -> Binding {
    Binding::file("data-plane/last-known-good.deltas")
}

/// Seals the encoded snapshot, writes it to a temporary file, syncs it, and renames it into
/// place; then removes the journal of deltas, which applied to the snapshot replaced (a crash in
/// between leaves deltas at or below the new version, which `load` skips).
pub fn save(data_dir: &Path, sealer: &Sealer, encoded: &[u8]) -> Result<(), LkgError> {
    let sealed = sealer.seal_bound(encoded, &binding());
    let target = path(data_dir);
    let io = |source| LkgError::Io {
        path: target.clone(),
        source,
    };
    secret_fs::create_private_dir_all(data_dir).map_err(io)?;
    secret_fs::replace_secret_file(&target, sealed.as_bytes()).map_err(io)?;
    let journal = data_dir.join(JOURNAL);
    match std::fs::remove_file(&journal) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LkgError::Io {
            path: journal,
            source,
        }),
    }
}

/// Appends an applied delta (its encoded wire message) to the journal, sealed and synced, before
/// the node serves it; returns the journal's size.
pub fn append_delta(data_dir: &Path, sealer: &Sealer, encoded: &[u8]) -> Result<u64, LkgError> {
    let mut line = sealer.seal_bound(encoded, &journal_binding());
    line.push('\n');
    let journal = data_dir.join(JOURNAL);
    secret_fs::append_secret_file(&journal, line.as_bytes()).map_err(|source| LkgError::Io {
        path: journal,
        source,
    })
}

/// Loads the last-known-good snapshot with the journal's deltas applied, and folds them into the
/// snapshot file (so the journal starts afresh). A delta that does not open, decode or apply
/// ends the replay there: the node serves the last version that did (and says so in the log).
pub fn load(data_dir: &Path, sealer: &Sealer) -> Result<Option<Snapshot>, LkgError> {
    let Some(mut snapshot) = load_snapshot(data_dir, sealer)? else {
        return Ok(None);
    };
    let journal = data_dir.join(JOURNAL);
    let text = match std::fs::read_to_string(&journal) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(snapshot)),
        Err(source) => {
            return Err(LkgError::Io {
                path: journal,
                source,
            })
        }
    };
    let mut replayed = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match replay(&snapshot, sealer, line) {
            Ok(Some(next)) => {
                snapshot = next;
                replayed += 1;
            }
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(
                    version = snapshot.version,
                    %reason,
                    "last-known-good journal ends here"
                );
                break;
            }
        }
    }
    if replayed > 0 {
        tracing::info!(
            version = snapshot.version,
            deltas = replayed,
            "last-known-good deltas replayed"
        );
    }
    save(data_dir, sealer, &snapshot.to_wire().encode_to_vec())?;
    Ok(Some(snapshot))
}

/// One journal line applied to `current`: `None` when it is at or below `current`'s version.
fn replay(current: &Snapshot, sealer: &Sealer, line: &str) -> Result<Option<Snapshot>, String> {
    use modelgate_shared::delta::{self, ConfigDelta};
    use modelgate_shared::digest::ConfigDigest;
    let bytes = sealer
        .open_bound(line.trim(), &journal_binding())
        .map_err(|e| e.to_string())?;
    let wire = wire::Snapshot::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    let d = ConfigDelta::try_from(wire).map_err(|e| e.to_string())?;
    if d.version <= current.version {
        return Ok(None);
    }
    delta::check_base(&d, current.version, &current.content_hash).map_err(|e| e.to_string())?;
    let (version, content_hash) = (d.version, d.content_hash.clone());
    let mut config = current.config.clone();
    let mut digest = ConfigDigest::of(&config);
    delta::apply(&mut config, &mut digest, d).map_err(|e| e.to_string())?;
    // At start the full content hash is affordable: the replayed config must be the one served.
    let next = Snapshot::new(version, config);
    if next.content_hash != content_hash {
        return Err(format!(
            "version {version} replays to {}, not {content_hash}",
            next.content_hash
        ));
    }
    Ok(Some(next))
}

/// Loads and validates the last-known-good snapshot file, if there is one.
fn load_snapshot(data_dir: &Path, sealer: &Sealer) -> Result<Option<Snapshot>, LkgError> {
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
