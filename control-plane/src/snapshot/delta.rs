//! Deltas for the config streams: the versions published recently, kept in memory, and
//! the delta from what a node serves to what it is assigned, computed once per pair of versions
//! and encoded once for every node that needs it (`modelgate_shared::delta`).
//!
//! A node gets a delta only when it announced the `config-delta` feature and protocol 9, serves
//! a version this control plane still holds under the same content hash, and the two configs
//! can be told apart as a delta; otherwise it gets the full snapshot, as before. The structured
//! digest of each version ([`ConfigDigest`]) is computed once, the first time a delta to it is.
//!
//! Memory: each version held costs what its `Published` costs (domain and wire form, several
//! hundred bytes a key); [`HISTORY`] bounds how many are held (the distributed ones among them).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use modelgate_proto::config::v1 as wire;
use modelgate_shared::delta::{self, FEATURE_CONFIG_DELTA};
use modelgate_shared::digest::ConfigDigest;

use super::Published;

/// Versions distributed (the current ones included) that a delta may start from.
pub const HISTORY: usize = 4;

/// Delta encodings kept (each a few hundred bytes for a small change).
const CACHED_DELTAS: usize = 64;

/// Whether a node's hello lets it receive deltas.
pub fn supports_deltas(protocol_version: u32, features: &[String]) -> bool {
    protocol_version >= delta::DELTA_PROTOCOL_VERSION
        && features.iter().any(|f| f == FEATURE_CONFIG_DELTA)
}

/// What a config stream sends a node.
pub enum Send {
    Full(Arc<Published>),
    Delta(Arc<wire::Snapshot>),
}

impl Send {
    pub fn wire(&self) -> wire::Snapshot {
        match self {
            Send::Full(p) => p.snapshot.to_wire(),
            Send::Delta(d) => (**d).clone(),
        }
    }
}

type Cell<T> = Arc<OnceLock<T>>;

#[derive(Default)]
pub struct Deltas {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    history: VecDeque<Arc<Published>>,
    digests: HashMap<u64, Cell<ConfigDigest>>,
    deltas: HashMap<(u64, u64), Cell<Option<Arc<wire::Snapshot>>>>,
    order: VecDeque<(u64, u64)>,
}

impl Deltas {
    /// Keeps `p` as a base later deltas may start from.
    pub fn remember(&self, p: &Arc<Published>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.history.iter().any(|h| h.version() == p.version()) {
            return;
        }
        inner.history.push_back(p.clone());
        while inner.history.len() > HISTORY {
            if let Some(gone) = inner.history.pop_front() {
                let v = gone.version();
                inner.digests.remove(&v);
            }
        }
    }

    /// What to send a node that serves `served` (version and content hash) and is assigned
    /// `target`: the delta when there is one, else the full snapshot. Runs the computation (tens
    /// of milliseconds at 100k keys, the first time for a pair) on a blocking thread.
    pub async fn for_node(&self, served: (u64, &str), target: &Arc<Published>) -> Send {
        let full = || Send::Full(target.clone());
        let (base_version, base_hash) = served;
        if base_version == 0 || base_version >= target.version() {
            return full();
        }
        let (base, base_digest, digest, cell) = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(base) = inner
                .history
                .iter()
                .find(|h| h.version() == base_version)
                .cloned()
            else {
                return full();
            };
            if base.snapshot.content_hash != base_hash {
                return full();
            }
            let base_digest = inner.digests.get(&base_version).cloned();
            let digest = inner.digests.entry(target.version()).or_default().clone();
            let key = (base_version, target.version());
            let cell = match inner.deltas.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let c: Cell<Option<Arc<wire::Snapshot>>> = Arc::default();
                    inner.deltas.insert(key, c.clone());
                    inner.order.push_back(key);
                    while inner.order.len() > CACHED_DELTAS {
                        if let Some(old) = inner.order.pop_front() {
                            inner.deltas.remove(&old);
                        }
                    }
                    c
                }
            };
            (base, base_digest, digest, cell)
        };
        let target_owned = target.clone();
        let computed = tokio::task::spawn_blocking(move || {
            cell.get_or_init(|| {
                let started = std::time::Instant::now();
                let made = compute(&base, base_digest.as_deref(), &target_owned, &digest);
                match made {
                    Ok(d) => {
                        let wire = d.to_wire();
                        tracing::info!(
                            base = base.version(),
                            target = target_owned.version(),
                            changes = d.changes(),
                            bytes = prost::Message::encoded_len(&wire),
                            compute_ms = started.elapsed().as_secs_f64() * 1e3,
                            "delta computed"
                        );
                        Some(Arc::new(wire))
                    }
                    Err(e) => {
                        tracing::warn!(
                            base = base.version(),
                            target = target_owned.version(),
                            error = %e,
                            "no delta between these versions; sending full snapshots"
                        );
                        None
                    }
                }
            })
            .clone()
        })
        .await;
        match computed {
            Ok(Some(d)) => Send::Delta(d),
            Ok(None) => full(),
            Err(e) => {
                tracing::warn!(error = %e, "computing a delta failed; sending the full snapshot");
                full()
            }
        }
    }
}

/// The delta from `base` to `target`, and `target`'s digest into `target_digest` if it is not
/// there yet: advanced from `base`'s when that is known (a few leaves for a small change), else
/// computed from every resource (once per version, tens of milliseconds at 100k keys).
fn compute(
    base: &Published,
    base_digest: Option<&OnceLock<ConfigDigest>>,
    target: &Published,
    target_digest: &OnceLock<ConfigDigest>,
) -> Result<delta::ConfigDelta, delta::NotRepresentable> {
    if let Some(known) = target_digest.get() {
        return delta::compute(&base.snapshot, &target.snapshot, known);
    }
    match base_digest.and_then(OnceLock::get) {
        Some(from) => {
            let mut d = delta::compute(&base.snapshot, &target.snapshot, &ConfigDigest::default())?;
            let advanced = target_digest
                .get_or_init(|| delta::advance_digest(&base.snapshot.config, from, &d));
            d.digest = advanced.hex();
            Ok(d)
        }
        None => {
            let digest = target_digest.get_or_init(|| ConfigDigest::of(&target.snapshot.config));
            delta::compute(&base.snapshot, &target.snapshot, digest)
        }
    }
}
