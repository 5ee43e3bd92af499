//! The data plane's view of config: the current [`Runtime`] (a snapshot indexed for the request
//! path) behind an `ArcSwap`, fed by the gRPC subscriber in [`subscriber`] and persisted as the
//! last-known-good file by [`lkg`]. A request loads one `Arc<Runtime>` at its start and uses it
//! to the end, so no request sees half a config.

pub mod compact;
pub mod delta;
mod key_index;
mod labels;
pub mod lkg;
pub mod parts;
pub mod subscriber;

use std::sync::Arc;

pub use compact::Key;
pub use key_index::{ById, Found, KeyIndex, KeysById};

use arc_swap::ArcSwap;
use foldhash::{HashMap, HashMapExt};
use modelgate_shared::digest::ConfigDigest;
use modelgate_shared::digest::{Leaf, Section};
use modelgate_shared::pricing::Price;
use modelgate_shared::snapshot::{
    check_compatible, ApiKey, Config, InvalidSnapshot, ModelPrice, ProviderAccount, RoutingGroup,
    Snapshot,
};

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
    /// Hashes a presented secret under `key_hash_secret`; keyed once per snapshot.
    pub key_hasher: modelgate_shared::keys::KeyHasher,
    /// Signs video job ids; derived from `key_hash_secret` once per snapshot.
    pub video_job_key: crate::surfaces::openai_videos::JobIdKey,
    /// Every live secret's hash: a key's current one, and a rotated-away one in its grace period.
    pub keys: KeyIndex,
    /// Every key by id (the same `Arc`s, no copy of the id): where a delta finds the key it
    /// changes or removes.
    pub keys_by_id: KeysById,
    /// The keys' interned strings and policies, shared with the runtimes deltas derive from
    /// this one (a full snapshot starts afresh).
    pub interner: compact::SharedInterner,
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
    /// The runtime of a whole snapshot (the last-known-good at start, tests, benches), with
    /// fresh deployment health and upstream clients.
    pub fn build(snapshot: Snapshot) -> Self {
        let digest = ConfigDigest::of(&snapshot.config);
        let mut c = snapshot.config;
        let interner = compact::SharedInterner::default();
        let (keys, keys_by_id) =
            interner.with(|strings| index_keys(std::mem::take(&mut c.keys), strings));
        Self::assemble(
            Indexed {
                version: snapshot.version,
                content_hash: snapshot.content_hash,
                digest,
                keys,
                keys_by_id,
                interner,
            },
            c,
            Arc::default(),
            Arc::default(),
        )
    }

    /// The runtime of a full snapshot received in parts ([`parts`]), following `previous`:
    /// validated as `Snapshot::try_from` validates a whole one (protocol, every field, the
    /// content hash), each key decoded, checked, hashed into the digest and made compact on its
    /// own, and the content hash taken over the compact keys (turned back into `ApiKey`s one at a
    /// time, in canonical order), so what is served is what was hashed.
    pub fn build_from_parts(
        parts: parts::Parts,
        previous: &Runtime,
    ) -> Result<Runtime, InvalidSnapshot> {
        let parts::Parts { top, keys } = parts;
        let version = top.version;
        check_compatible(&top)?;
        if top.delta.is_some() {
            return Err(InvalidSnapshot::UnexpectedDelta { version });
        }
        let rest = top
            .config
            .ok_or(InvalidSnapshot::MissingConfig { version })?;
        let mut c = Config::from_wire(version, rest)?;
        c.canonicalize();
        let mut digest = ConfigDigest::of(&c);
        let interner = compact::SharedInterner::default();
        let (by_hash, by_id) = interner.with(|strings| {
            let mut by_hash = KeyIndex::for_keys(keys.len());
            let mut by_id = KeysById::for_keys(keys.len());
            for (i, bytes) in keys.into_iter().enumerate() {
                let key = decode_key(version, i, bytes)?;
                digest.add(Section::Keys, &Leaf::key(&key));
                let key = Arc::new(Key::new(key, strings));
                if by_id.replace(ById(key.clone())).is_some() {
                    return Err(InvalidSnapshot::Field {
                        version,
                        field: format!("keys[{i}].id"),
                        problem: "another key has this id".into(),
                    });
                }
                by_hash.insert(&key);
            }
            Ok((by_hash, by_id))
        })?;
        let mut sorted: Vec<&Key> = by_id.iter().map(|k| &*k.0).collect();
        sorted.sort_unstable_by(|a, b| a.id().cmp(b.id()));
        let computed = modelgate_shared::canonical::content_hash_with_keys(
            &c,
            sorted.iter().map(|k| k.to_api_key()),
        );
        drop(sorted);
        if computed != top.content_hash {
            return Err(InvalidSnapshot::HashMismatch {
                version,
                declared: top.content_hash,
                computed,
            });
        }
        Ok(Self::assemble(
            Indexed {
                version,
                content_hash: top.content_hash,
                digest,
                keys: by_hash,
                keys_by_id: by_id,
                interner,
            },
            c,
            previous.health.clone(),
            previous.clients.clone(),
        ))
    }

    /// A runtime from its indexed keys and the rest of its config (`c.keys` is not read).
    fn assemble(
        indexed: Indexed,
        c: Config,
        health: Arc<HealthTable>,
        clients: Arc<Clients>,
    ) -> Self {
        let Indexed {
            version,
            content_hash,
            digest,
            keys,
            keys_by_id,
            interner,
        } = indexed;
        let price_rows: HashMap<(String, String), ModelPrice> = c
            .prices
            .into_iter()
            .map(|p| ((p.provider.clone(), p.model.clone()), p))
            .collect();
        let providers: HashMap<String, ProviderAccount> =
            c.providers.into_iter().map(|p| (p.id.clone(), p)).collect();
        let groups: HashMap<String, RoutingGroup> =
            c.groups.into_iter().map(|g| (g.alias.clone(), g)).collect();
        let mut runtime = Runtime {
            version,
            content_hash,
            digest,
            video_job_key: crate::surfaces::openai_videos::JobIdKey::derive(&c.key_hash_secret),
            key_hasher: modelgate_shared::keys::KeyHasher::new(&c.key_hash_secret),
            key_hash_secret: c.key_hash_secret,
            keys,
            keys_by_id,
            interner,
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

/// What a runtime is built from besides the rest of its config.
struct Indexed {
    version: u64,
    content_hash: String,
    digest: ConfigDigest,
    keys: KeyIndex,
    keys_by_id: KeysById,
    interner: compact::SharedInterner,
}

/// Key `i` of snapshot `version` from its encoding, validated as in a whole config.
fn decode_key(version: u64, i: usize, bytes: bytes::Bytes) -> Result<ApiKey, InvalidSnapshot> {
    use prost::Message;
    let at = |field: String| field.replacen("keys[0]", &format!("keys[{i}]"), 1);
    let key =
        modelgate_proto::config::v1::ApiKey::decode(bytes).map_err(|e| InvalidSnapshot::Field {
            version,
            field: format!("keys[{i}]"),
            problem: e.to_string(),
        })?;
    let one = modelgate_proto::config::v1::Config {
        keys: vec![key],
        ..Default::default()
    };
    let mut c = Config::from_wire(version, one).map_err(|e| match e {
        InvalidSnapshot::Field {
            version,
            field,
            problem,
        } => InvalidSnapshot::Field {
            version,
            field: at(field),
            problem,
        },
        other => other,
    })?;
    c.keys.pop().ok_or(InvalidSnapshot::Field {
        version,
        field: format!("keys[{i}]"),
        problem: "not decoded".into(),
    })
}

/// The keys in their compact form, indexed by secret hash and by id. Each `ApiKey` is dropped
/// as soon as its compact form is made.
fn index_keys(keys: Vec<ApiKey>, interner: &mut compact::Interner) -> (KeyIndex, KeysById) {
    let mut by_hash = KeyIndex::for_keys(keys.len());
    let mut by_id = KeysById::for_keys(keys.len());
    for k in keys {
        let key = Arc::new(Key::new(k, interner));
        if let Some(ById(replaced)) = by_id.replace(ById(key.clone())) {
            by_hash.remove(&replaced);
        }
        by_hash.insert(&key);
    }
    (by_hash, by_id)
}

/// The shared, atomically swapped current config.
pub type SharedRuntime = Arc<ArcSwap<Runtime>>;
