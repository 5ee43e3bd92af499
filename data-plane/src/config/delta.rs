//! Applying a delta (`modelgate_shared::delta`) to the served [`Runtime`]: the next runtime is
//! the current one's indexes cloned (the keys themselves are shared `Arc`s, not copied, in their
//! compact form: `super::compact`), changed
//! resource by resource through the shared `apply`, which keeps the structured digest and checks
//! it; then only what the delta touched is re-derived — a group's routing index, every index
//! when providers or prices changed, the video job key when the secret did. So a one-key change
//! costs two map clones and a few hashes, not a rebuild of 100k keys.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use modelgate_proto::config::v1::SubscribeRequest;
use modelgate_proto::config::v1::{self as wire, subscribe_request::Kind, Ack, Nack, Resync};
use modelgate_shared::delta::{self, ConfigDelta, DeltaError, PriceId, Store, Target};
use modelgate_shared::digest::Leaf;
use modelgate_shared::limits::RateLimit;
use modelgate_shared::quota::Budget;
use modelgate_shared::snapshot::{
    check_compatible, should_apply, ApiKey, Config, Decision, ModelPrice, ProviderAccount,
    RoutingGroup, Snapshot,
};
use prost::Message;
use tokio::sync::mpsc;

use super::subscriber::{health_report, Subscriber};
use super::{lkg, ById, Key, Runtime};

/// How this node's config changed since it started: full snapshots and deltas applied, full
/// snapshots it asked for (`modelgate_dp_config_updates_total`, `…_resyncs_total`).
#[derive(Debug, Default)]
pub struct UpdateCounts {
    pub full: AtomicU64,
    pub deltas: AtomicU64,
    pub resyncs: AtomicU64,
}

impl UpdateCounts {
    pub fn full(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }
    pub fn deltas(&self) -> u64 {
        self.deltas.load(Ordering::Relaxed)
    }
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }
}

/// The next runtime while a delta is applied, and what the delta touched.
struct Working {
    rt: Runtime,
    secret: bool,
    providers: bool,
    prices: bool,
    groups: Vec<String>,
}

impl Runtime {
    /// The runtime that follows `self` after `delta`, checked (see the module doc). The caller
    /// has checked the delta's base (`delta::check_base`).
    pub fn after_delta(&self, delta: ConfigDelta) -> Result<Runtime, DeltaError> {
        let mut digest = self.digest;
        let mut w = Working {
            rt: Runtime {
                version: delta.version,
                content_hash: delta.content_hash.clone(),
                digest,
                key_hash_secret: self.key_hash_secret.clone(),
                key_hasher: self.key_hasher.clone(),
                video_job_key: self.video_job_key.clone(),
                keys: self.keys.clone(),
                keys_by_id: self.keys_by_id.clone(),
                interner: self.interner.clone(),
                providers: self.providers.clone(),
                price_rows: self.price_rows.clone(),
                prices: self.prices.clone(),
                groups: self.groups.clone(),
                endpoints: self.endpoints.clone(),
                routes: self.routes.clone(),
                health: self.health.clone(),
                clients: self.clients.clone(),
                budgets: self.budgets.clone(),
                rate_limits: self.rate_limits.clone(),
            },
            secret: false,
            providers: false,
            prices: false,
            groups: Vec::new(),
        };
        delta::apply(&mut w, &mut digest, delta)?;
        let mut rt = w.rt;
        rt.digest = digest;
        if w.secret {
            rt.key_hasher = modelgate_shared::keys::KeyHasher::new(&rt.key_hash_secret);
            rt.video_job_key =
                crate::surfaces::openai_videos::JobIdKey::derive(&rt.key_hash_secret);
        }
        if w.providers {
            rt.index_endpoints();
        }
        if w.prices {
            rt.index_catalog();
        }
        if w.providers || w.prices {
            rt.index_routes();
        } else {
            for alias in w.groups {
                match rt.groups.get(&alias) {
                    Some(g) => {
                        let index = rt.index_group(g);
                        rt.routes.insert(alias, index);
                    }
                    None => {
                        rt.routes.remove(&alias);
                    }
                }
            }
        }
        Ok(rt)
    }
}

impl Runtime {
    /// The served config, whole and canonical (what a delta produced, for the last-known-good).
    pub fn to_config(&self) -> Config {
        let mut c = Config {
            key_hash_secret: self.key_hash_secret.clone(),
            keys: self.keys_by_id.iter().map(|k| k.0.to_api_key()).collect(),
            providers: self.providers.values().cloned().collect(),
            prices: self.price_rows.values().cloned().collect(),
            groups: self.groups.values().cloned().collect(),
            budgets: self.budgets.clone(),
            rate_limits: self.rate_limits.iter().map(|l| (**l).clone()).collect(),
        };
        c.canonicalize();
        c
    }
}

/// The stream closed while a reply was being sent.
pub(super) struct Closed;

impl Subscriber {
    /// A delta from the control plane: refused (NACK) when it needs what this build lacks or is
    /// not newer; a full snapshot asked for (`Resync`) when its base is not what this node
    /// serves; else applied on a blocking thread, journalled to the last-known-good, swapped in
    /// and ACKed. A delta whose result fails its checks is NACKed, and a full snapshot asked for.
    pub(super) async fn on_delta(
        &self,
        wire: wire::Snapshot,
        tx: &mpsc::Sender<SubscribeRequest>,
    ) -> Result<(), Closed> {
        let received = std::time::Instant::now();
        let version = wire.version;
        let bytes = wire.encoded_len();
        let send = |kind: Kind| async move {
            tx.send(SubscribeRequest { kind: Some(kind) })
                .await
                .map_err(|_| Closed)
        };
        let nack = |reason: String| Kind::Nack(Nack { version, reason });
        let serving = self.runtime.load_full();
        if let Err(e) = check_compatible(&wire) {
            tracing::warn!(version, reason = %e, "delta refused");
            return send(nack(e.to_string())).await;
        }
        match should_apply(serving.version, version) {
            Decision::Apply => {}
            Decision::AlreadyServing => {
                return send(Kind::Ack(Ack {
                    version,
                    content_hash: serving.content_hash.clone(),
                }))
                .await
            }
            stale @ Decision::Older { .. } => {
                tracing::warn!(version, served = serving.version, "delta skipped: {stale}");
                return send(nack(stale.to_string())).await;
            }
        }
        let encoded = wire.encode_to_vec();
        let d = match ConfigDelta::try_from(wire) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(version, reason = %e, "delta refused");
                return send(nack(e.to_string())).await;
            }
        };
        if let Err(e) = delta::check_base(&d, serving.version, &serving.content_hash) {
            tracing::info!(version, served = serving.version, reason = %e, "delta on another base; asking for a full snapshot");
            return self.resync(&serving, e.to_string(), tx).await;
        }
        let changes = d.changes();
        let dir = self.data_dir.clone();
        let sealer = self.lkg_sealer.clone();
        let previous = serving.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let next = previous.after_delta(d)?;
            let indexed = started.elapsed();
            persist(&next, &dir, &sealer, &encoded);
            Ok::<_, DeltaError>((next, indexed, started.elapsed() - indexed))
        })
        .await;
        match outcome {
            Ok(Ok((next, indexed, journalled))) => {
                let content_hash = next.content_hash.clone();
                // As for a full snapshot: what was served so far is reported as the old version's.
                tx.send(health_report(&serving, &self.traffic))
                    .await
                    .map_err(|_| Closed)?;
                let replaced = self.runtime.swap(Arc::new(next));
                tokio::task::spawn_blocking(move || drop(replaced));
                self.updates.deltas.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    version,
                    changes,
                    bytes,
                    apply_ms = received.elapsed().as_secs_f64() * 1e3,
                    index_ms = indexed.as_secs_f64() * 1e3,
                    journal_ms = journalled.as_secs_f64() * 1e3,
                    "delta applied"
                );
                send(Kind::Ack(Ack {
                    version,
                    content_hash,
                }))
                .await
            }
            Ok(Err(e)) => {
                tracing::warn!(version, reason = %e, "delta rejected; asking for a full snapshot");
                send(nack(e.to_string())).await?;
                self.resync(&serving, e.to_string(), tx).await
            }
            Err(e) => {
                tracing::error!(version, error = %e, "delta apply failed");
                send(nack(format!("delta apply failed: {e}"))).await?;
                self.resync(&serving, e.to_string(), tx).await
            }
        }
    }

    /// Asks the control plane for the full snapshot of this node's assignment.
    async fn resync(
        &self,
        serving: &Runtime,
        reason: String,
        tx: &mpsc::Sender<SubscribeRequest>,
    ) -> Result<(), Closed> {
        self.updates.resyncs.fetch_add(1, Ordering::Relaxed);
        tx.send(SubscribeRequest {
            kind: Some(Kind::Resync(Resync {
                served_version: serving.version,
                served_hash: serving.content_hash.clone(),
                reason,
            })),
        })
        .await
        .map_err(|_| Closed)
    }
}

/// Journals an applied delta before it is served; past the journal's bound, folds everything
/// into the snapshot file instead (one full write every few thousand deltas).
fn persist(
    next: &Runtime,
    dir: &std::path::Path,
    sealer: &modelgate_shared::crypto::Sealer,
    encoded: &[u8],
) {
    let size = match lkg::append_delta(dir, sealer, encoded) {
        Ok(size) => size,
        Err(e) => {
            tracing::error!(error = %e, "could not journal the delta to the last-known-good");
            return;
        }
    };
    if size <= lkg::JOURNAL_MAX_BYTES {
        return;
    }
    let snapshot = Snapshot::new(next.version, next.to_config());
    if snapshot.content_hash != next.content_hash {
        tracing::error!(
            version = next.version,
            "the served config does not hash as declared; journal kept"
        );
        return;
    }
    if let Err(e) = lkg::save(dir, sealer, &snapshot.to_wire().encode_to_vec()) {
        tracing::error!(error = %e, "could not fold the last-known-good journal");
    }
}

/// A key's leaf is over the shared `ApiKey`'s canonical encoding: the compact key being
/// replaced or removed is turned back into one for the hash (once per changed key).
impl Store<ApiKey> for Working {
    fn remove(&mut self, id: &String) -> Option<Leaf> {
        let ById(old) = self.rt.keys_by_id.take(id.as_str())?;
        self.rt.keys.remove(&old);
        Some(Leaf::key(&old.to_api_key()))
    }

    fn put(&mut self, key: ApiKey) -> Option<Leaf> {
        let key = Arc::new(self.rt.interner.with(|strings| Key::new(key, strings)));
        let replaced = self.rt.keys_by_id.replace(ById(key.clone()));
        let leaf = replaced.map(|ById(old)| {
            self.rt.keys.remove(&old);
            Leaf::key(&old.to_api_key())
        });
        self.rt.keys.insert(&key);
        leaf
    }
}

impl Store<ProviderAccount> for Working {
    fn remove(&mut self, id: &String) -> Option<Leaf> {
        self.providers = true;
        self.rt.providers.remove(id).map(|p| Leaf::provider(&p))
    }

    fn put(&mut self, p: ProviderAccount) -> Option<Leaf> {
        self.providers = true;
        self.rt
            .providers
            .insert(p.id.clone(), p)
            .map(|old| Leaf::provider(&old))
    }
}

impl Store<ModelPrice> for Working {
    fn remove(&mut self, id: &PriceId) -> Option<Leaf> {
        self.prices = true;
        self.rt
            .price_rows
            .remove(&(id.provider.clone(), id.model.clone()))
            .map(|p| Leaf::price(&p))
    }

    fn put(&mut self, p: ModelPrice) -> Option<Leaf> {
        self.prices = true;
        self.rt
            .price_rows
            .insert((p.provider.clone(), p.model.clone()), p)
            .map(|old| Leaf::price(&old))
    }
}

impl Store<RoutingGroup> for Working {
    fn remove(&mut self, alias: &String) -> Option<Leaf> {
        let old = self.rt.groups.remove(alias)?;
        self.groups.push(alias.clone());
        Some(Leaf::group(&old))
    }

    fn put(&mut self, g: RoutingGroup) -> Option<Leaf> {
        self.groups.push(g.alias.clone());
        self.rt
            .groups
            .insert(g.alias.clone(), g)
            .map(|old| Leaf::group(&old))
    }
}

impl Store<Budget> for Working {
    fn remove(&mut self, id: &String) -> Option<Leaf> {
        let list = &mut self.rt.budgets;
        let at = list.iter().position(|b| &b.id == id)?;
        Some(Leaf::budget(&list.remove(at)))
    }

    fn put(&mut self, b: Budget) -> Option<Leaf> {
        let list = &mut self.rt.budgets;
        match list.iter_mut().find(|x| x.id == b.id) {
            Some(slot) => Some(Leaf::budget(&std::mem::replace(slot, b))),
            None => {
                list.push(b);
                None
            }
        }
    }
}

impl Store<RateLimit> for Working {
    fn remove(&mut self, id: &String) -> Option<Leaf> {
        let list = &mut self.rt.rate_limits;
        let at = list.iter().position(|l| &l.id == id)?;
        Some(Leaf::rate_limit(&list.remove(at)))
    }

    fn put(&mut self, l: RateLimit) -> Option<Leaf> {
        let list = &mut self.rt.rate_limits;
        let l = Arc::new(l);
        match list.iter_mut().find(|x| x.id == l.id) {
            Some(slot) => {
                let old: Arc<RateLimit> = std::mem::replace(slot, l);
                Some(Leaf::rate_limit(&old))
            }
            None => {
                list.push(l);
                None
            }
        }
    }
}

impl Target for Working {
    fn set_key_hash_secret(&mut self, secret: Vec<u8>) {
        self.secret = true;
        self.rt.key_hash_secret = secret;
    }

    fn has_provider(&self, id: &str) -> bool {
        self.rt.providers.contains_key(id)
    }

    fn group_using(&self, provider: &str) -> Option<String> {
        self.rt
            .groups
            .values()
            .find(|g| g.deployments.iter().any(|d| d.provider_id == provider))
            .map(|g| g.alias.clone())
    }
}

/// The keys of a runtime by id, for tests that compare an applied runtime with a built one.
#[cfg(test)]
pub(crate) fn key_ids(rt: &Runtime) -> Vec<String> {
    let mut ids: Vec<String> = rt.keys_by_id.iter().map(|k| k.0.id().to_owned()).collect();
    ids.sort();
    ids
}

#[cfg(test)]
pub(super) mod tests;
