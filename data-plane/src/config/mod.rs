//! The data plane's view of config: the current [`Runtime`] (a snapshot indexed for the request
//! path) behind an `ArcSwap`, fed by the gRPC subscriber in [`subscriber`] and persisted as the
//! last-known-good file by [`lkg`]. A request loads one `Arc<Runtime>` at its start and uses it
//! to the end, so no request sees half a config.

pub mod lkg;
pub mod subscriber;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use modelgate_shared::keys::KeyHash;
use modelgate_shared::pricing::Price;
use modelgate_shared::snapshot::{ApiKey, ProviderAccount, RoutingGroup, Snapshot};

use crate::providers::openai::Endpoint;

/// A snapshot indexed for O(1) lookups on the request path.
#[derive(Debug, Default)]
pub struct Runtime {
    /// 0 when no snapshot has been applied yet.
    pub version: u64,
    pub key_hash_secret: Vec<u8>,
    pub keys: HashMap<KeyHash, ApiKey>,
    pub providers: HashMap<String, ProviderAccount>,
    pub prices: HashMap<String, Price>,
    pub groups: HashMap<String, RoutingGroup>,
    /// Parsed upstream endpoints of HTTP providers, by provider id.
    pub endpoints: HashMap<String, Endpoint>,
}

impl Runtime {
    pub fn build(snapshot: Snapshot) -> Self {
        let c = snapshot.config;
        let endpoints = c
            .providers
            .iter()
            .filter_map(|p| Some((p.id.clone(), Endpoint::for_provider(p)?)))
            .collect();
        Runtime {
            endpoints,
            version: snapshot.version,
            key_hash_secret: c.key_hash_secret,
            keys: c.keys.into_iter().map(|k| (k.key_hash, k)).collect(),
            providers: c.providers.into_iter().map(|p| (p.id.clone(), p)).collect(),
            prices: c.prices.into_iter().map(|p| (p.model, p.price)).collect(),
            groups: c.groups.into_iter().map(|g| (g.alias.clone(), g)).collect(),
        }
    }
}

/// The shared, atomically swapped current config.
pub type SharedRuntime = Arc<ArcSwap<Runtime>>;
