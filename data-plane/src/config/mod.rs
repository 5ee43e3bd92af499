//! The data plane's view of config: the current [`Runtime`] (a snapshot indexed for the request
//! path) behind an `ArcSwap`, fed by the gRPC subscriber in [`subscriber`] and persisted as the
//! last-known-good file by [`lkg`]. A request loads one `Arc<Runtime>` at its start and uses it
//! to the end, so no request sees half a config.

pub mod delta;
mod key_index;
mod labels;
pub mod lkg;
pub mod subscriber;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub use key_index::{KeyIndex, KeysById};

use arc_swap::ArcSwap;
use modelgate_shared::digest::ConfigDigest;
use modelgate_shared::pricing::Price;
use modelgate_shared::snapshot::{ApiKey, ModelPrice, ProviderAccount, RoutingGroup, Snapshot};

use crate::providers::{Clients, Endpoint, HttpClient};
use crate::routing::health::{DeploymentHealth, HealthTable};

/// A routing group's deployments, indexed for the routing decision: aligned with
/// `RoutingGroup::deployments`, built once per snapshot (and per delta that touches the group,
/// its providers or prices) so a request allocates nothing to plan.
#[derive(Debug, Clone)]
pub struct GroupIndex {
    /// `provider_id/model` of each deployment.
    pub ids: Vec<String>,
    pub health: Vec<Arc<DeploymentHealth>>,
    pub prices: Vec<Option<Price>>,
    /// Each deployment's catalog output token limit, where known.
    pub output_limits: Vec<Option<u64>>,
    /// Some deployment of the group has no catalog price.
    pub unpriced: bool,
    /// The upstream client with the group's connect timeout.
    pub client: HttpClient,
}

/// A key in the by-id index: hashed and compared by its id, and found by `&str`, so the index
/// holds one pointer per key.
#[derive(Debug, Clone)]
pub struct ById(pub Arc<ApiKey>);

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, which `Borrow<str>` requires.
        self.0.id.as_str().hash(state);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

/// A key as found by one of its secrets.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub key: Arc<ApiKey>,
    /// Set when found by a rotated-away secret: it works until then (unix seconds).
    pub valid_until: Option<i64>,
}

/// A snapshot indexed for O(1) lookups on the request path.
#[derive(Debug, Default)]
pub struct Runtime {
    /// 0 when no snapshot has been applied yet.
    pub version: u64,
    /// The served snapshot's content hash (empty when none).
    pub content_hash: String,
    /// The served config's structured digest, kept across deltas (`modelgate_shared::digest`).
    pub digest: ConfigDigest,
    pub key_hash_secret: Vec<u8>,
    /// Signs video job ids; derived from `key_hash_secret` once per snapshot.
    pub video_job_key: crate::surfaces::openai_videos::JobIdKey,
    /// Every live secret's hash: a key's current one, and a rotated-away one in its grace period.
    pub keys: KeyIndex,
    /// Every key by id (the same `Arc`s, no copy of the id): where a delta finds the key it
    /// changes or removes.
    pub keys_by_id: KeysById,
    pub providers: HashMap<String, ProviderAccount>,
    /// Catalog rows by (provider kind, model), whole.
    pub price_rows: HashMap<(String, String), ModelPrice>,
    /// Catalog prices by (provider kind, model); an empty kind is the row for any provider.
    pub prices: HashMap<(String, String), Price>,
    pub groups: HashMap<String, RoutingGroup>,
    /// Parsed upstream endpoints of HTTP providers, by provider id.
    pub endpoints: HashMap<String, Endpoint>,
    /// Routing indexes by group alias.
    pub routes: HashMap<String, GroupIndex>,
    /// Deployment health on this node; carried from one runtime to the next.
    pub health: Arc<HealthTable>,
    /// Upstream clients by connect timeout; carried from one runtime to the next.
    pub clients: Arc<Clients>,
    /// Budget definitions (their spend state lives in `crate::quota`, across snapshots).
    pub budgets: Vec<modelgate_shared::quota::Budget>,
    /// Rate-limit definitions (their counts live in `crate::limits`, across snapshots).
    pub rate_limits: Vec<Arc<modelgate_shared::limits::RateLimit>>,
}

impl Runtime {
    pub fn build(snapshot: Snapshot) -> Self {
        Self::build_with(snapshot, Arc::default(), Arc::default())
    }

    /// Builds the runtime that follows `previous`, keeping its deployment health and its
    /// upstream connection pools.
    pub fn build_after(snapshot: Snapshot, previous: &Runtime) -> Self {
        Self::build_with(snapshot, previous.health.clone(), previous.clients.clone())
    }

    fn build_with(snapshot: Snapshot, health: Arc<HealthTable>, clients: Arc<Clients>) -> Self {
        let digest = ConfigDigest::of(&snapshot.config);
        let c = snapshot.config;
        let price_rows: HashMap<(String, String), ModelPrice> = c
            .prices
            .into_iter()
            .map(|p| ((p.provider.clone(), p.model.clone()), p))
            .collect();
        let providers: HashMap<String, ProviderAccount> =
            c.providers.into_iter().map(|p| (p.id.clone(), p)).collect();
        let groups: HashMap<String, RoutingGroup> =
            c.groups.into_iter().map(|g| (g.alias.clone(), g)).collect();
        let mut keys_by_id = KeysById::for_keys(c.keys.len());
        for k in c.keys {
            keys_by_id.replace(ById(Arc::new(k)));
        }
        let mut runtime = Runtime {
            version: snapshot.version,
            content_hash: snapshot.content_hash,
            digest,
            video_job_key: crate::surfaces::openai_videos::JobIdKey::derive(&c.key_hash_secret),
            key_hash_secret: c.key_hash_secret,
            keys: index_keys(keys_by_id.len(), keys_by_id.iter().map(|k| &k.0)),
            keys_by_id,
            providers,
            price_rows,
            prices: HashMap::new(),
            groups,
            endpoints: HashMap::new(),
            routes: HashMap::new(),
            health,
            clients,
            budgets: c.budgets,
            rate_limits: c.rate_limits.into_iter().map(Arc::new).collect(),
        };
        runtime.index_catalog();
        runtime.index_endpoints();
        runtime.index_routes();
        runtime
    }

    /// `prices` from `price_rows`.
    fn index_catalog(&mut self) {
        self.prices = self
            .price_rows
            .iter()
            .map(|(id, p)| (id.clone(), p.price))
            .collect();
    }

    /// `endpoints` from `providers`.
    fn index_endpoints(&mut self) {
        self.endpoints = self
            .providers
            .values()
            .filter_map(|p| Some((p.id.clone(), Endpoint::for_provider(p)?)))
            .collect();
    }

    /// `routes` from `groups`, `providers` and the catalog.
    fn index_routes(&mut self) {
        self.routes = self
            .groups
            .values()
            .map(|g| (g.alias.clone(), self.index_group(g)))
            .collect();
    }

    fn index_group(&self, g: &RoutingGroup) -> GroupIndex {
        let kind = |provider_id: &str| self.providers.get(provider_id).map(|p| p.kind.as_str());
        let ids: Vec<String> = g.deployments.iter().map(|d| d.id()).collect();
        let group_prices: Vec<Option<Price>> = g
            .deployments
            .iter()
            .map(|d| price_for(&self.prices, kind(&d.provider_id), &d.model))
            .collect();
        let limit = |k: &str, model: &str| {
            self.price_rows
                .get(&(k.to_owned(), model.to_owned()))
                .map(|p| p.max_output_tokens)
                .filter(|t| *t > 0)
        };
        GroupIndex {
            health: ids.iter().map(|id| self.health.get(id)).collect(),
            unpriced: group_prices.iter().any(Option::is_none),
            prices: group_prices,
            output_limits: g
                .deployments
                .iter()
                .map(|d| {
                    kind(&d.provider_id)
                        .and_then(|k| limit(k, &d.model))
                        .or_else(|| limit("", &d.model))
                })
                .collect(),
            ids,
            client: self.clients.get(g.policy.connect_timeout_ms),
        }
    }
}

impl Runtime {
    /// The catalog price of `model` at a provider of `kind`, for paths that have no
    /// precomputed deployment price (video job polls; not the request hot path).
    pub fn price(
        &self,
        kind: modelgate_shared::snapshot::ProviderKind,
        model: &str,
    ) -> Option<Price> {
        price_for(&self.prices, Some(kind.as_str()), model)
    }
}

/// A deployment's price: the catalog row of its provider's kind, else the row for any provider.
fn price_for(
    prices: &HashMap<(String, String), Price>,
    kind: Option<&str>,
    model: &str,
) -> Option<Price> {
    kind.and_then(|k| prices.get(&(k.to_owned(), model.to_owned())))
        .or_else(|| prices.get(&(String::new(), model.to_owned())))
        .copied()
}

fn index_keys<'a>(count: usize, keys: impl Iterator<Item = &'a Arc<ApiKey>>) -> KeyIndex {
    let mut index = KeyIndex::for_keys(count);
    for key in keys {
        index_key(&mut index, key);
    }
    index
}

/// Indexes `key` under its secrets' hashes.
fn index_key(index: &mut KeyIndex, key: &Arc<ApiKey>) {
    if let Some((previous, until)) = key.previous {
        // The current secret of another key wins should the two ever collide.
        if index.get(&previous).is_none_or(|e| e.valid_until.is_some()) {
            index.insert(
                previous,
                KeyEntry {
                    key: key.clone(),
                    valid_until: Some(until),
                },
            );
        }
    }
    index.insert(
        key.key_hash,
        KeyEntry {
            key: key.clone(),
            valid_until: None,
        },
    );
}

/// Removes `key`'s entries (those that name this key) from the index.
fn unindex_key(index: &mut KeyIndex, key: &ApiKey) {
    let hashes = [Some(key.key_hash), key.previous.map(|(h, _)| h)];
    for hash in hashes.into_iter().flatten() {
        if index.get(&hash).is_some_and(|e| e.key.id == key.id) {
            index.remove(&hash);
        }
    }
}

/// The shared, atomically swapped current config.
pub type SharedRuntime = Arc<ArcSwap<Runtime>>;
