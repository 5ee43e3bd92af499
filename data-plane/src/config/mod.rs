//! The data plane's view of config: the current [`Runtime`] (a snapshot indexed for the request
//! path) behind an `ArcSwap`, fed by the gRPC subscriber in [`subscriber`] and persisted as the
//! last-known-good file by [`lkg`]. A request loads one `Arc<Runtime>` at its start and uses it
//! to the end, so no request sees half a config.

mod labels;
pub mod lkg;
pub mod subscriber;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use modelgate_shared::keys::KeyHash;
use modelgate_shared::pricing::Price;
use modelgate_shared::snapshot::{ApiKey, ProviderAccount, RoutingGroup, Snapshot};

use crate::providers::{Clients, Endpoint, HttpClient};
use crate::routing::health::{DeploymentHealth, HealthTable};

/// A routing group's deployments, indexed for the routing decision: aligned with
/// `RoutingGroup::deployments`, built once per snapshot so a request allocates nothing to plan.
#[derive(Debug)]
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

/// A key as found by one of its secrets.
#[derive(Debug)]
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
    pub key_hash_secret: Vec<u8>,
    /// Signs video job ids; derived from `key_hash_secret` once per snapshot.
    pub video_job_key: crate::surfaces::openai_videos::JobIdKey,
    /// Every live secret's hash: a key's current one, and a rotated-away one in its grace period.
    pub keys: HashMap<KeyHash, KeyEntry>,
    pub providers: HashMap<String, ProviderAccount>,
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
        let c = snapshot.config;
        let limits: HashMap<(String, String), u64> = c
            .prices
            .iter()
            .filter(|p| p.max_output_tokens > 0)
            .map(|p| ((p.provider.clone(), p.model.clone()), p.max_output_tokens))
            .collect();
        let prices: HashMap<(String, String), Price> = c
            .prices
            .into_iter()
            .map(|p| ((p.provider, p.model), p.price))
            .collect();
        let kinds: HashMap<&str, &'static str> = c
            .providers
            .iter()
            .map(|p| (p.id.as_str(), p.kind.as_str()))
            .collect();
        let routes = c
            .groups
            .iter()
            .map(|g| {
                let ids: Vec<String> = g.deployments.iter().map(|d| d.id()).collect();
                let group_prices: Vec<Option<Price>> = g
                    .deployments
                    .iter()
                    .map(|d| {
                        let kind = kinds.get(d.provider_id.as_str()).copied();
                        price_for(&prices, kind, &d.model)
                    })
                    .collect();
                let index = GroupIndex {
                    health: ids.iter().map(|id| health.get(id)).collect(),
                    unpriced: group_prices.iter().any(Option::is_none),
                    prices: group_prices,
                    output_limits: g
                        .deployments
                        .iter()
                        .map(|d| {
                            let kind = kinds.get(d.provider_id.as_str()).copied();
                            kind.and_then(|k| limits.get(&(k.to_owned(), d.model.clone())))
                                .or_else(|| limits.get(&(String::new(), d.model.clone())))
                                .copied()
                        })
                        .collect(),
                    ids,
                    client: clients.get(g.policy.connect_timeout_ms),
                };
                (g.alias.clone(), index)
            })
            .collect();
        let endpoints = c
            .providers
            .iter()
            .filter_map(|p| Some((p.id.clone(), Endpoint::for_provider(p)?)))
            .collect();
        Runtime {
            endpoints,
            version: snapshot.version,
            content_hash: snapshot.content_hash,
            video_job_key: crate::surfaces::openai_videos::JobIdKey::derive(&c.key_hash_secret),
            key_hash_secret: c.key_hash_secret,
            keys: index_keys(c.keys),
            providers: c.providers.into_iter().map(|p| (p.id.clone(), p)).collect(),
            prices,
            groups: c.groups.into_iter().map(|g| (g.alias.clone(), g)).collect(),
            routes,
            health,
            clients,
            budgets: c.budgets,
            rate_limits: c.rate_limits.into_iter().map(Arc::new).collect(),
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

fn index_keys(keys: Vec<ApiKey>) -> HashMap<KeyHash, KeyEntry> {
    let mut index = HashMap::with_capacity(keys.len());
    for k in keys {
        let key = Arc::new(k);
        if let Some((previous, until)) = key.previous {
            index.insert(
                previous,
                KeyEntry {
                    key: key.clone(),
                    valid_until: Some(until),
                },
            );
        }
        // The current secret wins should the two ever collide.
        index.insert(
            key.key_hash,
            KeyEntry {
                key,
                valid_until: None,
            },
        );
    }
    index
}

/// The shared, atomically swapped current config.
pub type SharedRuntime = Arc<ArcSwap<Runtime>>;
