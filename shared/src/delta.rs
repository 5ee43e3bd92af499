//! Incremental config updates: the difference between two config versions,
//! resource by resource, computed by the control plane and applied by a data plane, written once
//! here as pure functions.
//!
//! A [`ConfigDelta`] names the version it applies to (`base_version` and `base_hash`) and the
//! one it produces (`version`, `content_hash` and the structured `digest` of the result). For
//! every section of a [`Config`] it carries the resources added or changed, whole
//! (`upserted`), and the ids of those removed. Resources are identified as
//! [`Config::canonicalize`] orders them: keys, providers, budgets and rate limits by id, prices
//! by (model, provider kind), routing groups by alias.
//!
//! [`compute`] merges the two canonical (sorted) lists of each section. [`apply`] changes any
//! [`Target`] — the [`Config`] itself, or a data plane's indexed runtime — one resource at a
//! time and keeps the [`ConfigDigest`] in step, then checks the result: removed ids must exist,
//! every routing group's providers must exist, and the digest must be the one the control plane
//! declared. A target that fails midway is left half changed: apply to a copy and discard it.
//!
//! On the wire a delta is a `Snapshot` whose `delta` is set (no `config`), declaring protocol 9
//! and requiring the [`FEATURE_CONFIG_DELTA`] feature, so a data plane that does not know deltas
//! refuses it instead of reading an empty config.

use std::cmp::Ordering;
use std::fmt;

use modelgate_proto::config::v1 as wire;
use thiserror::Error;

use crate::digest::{ConfigDigest, Leaf, Section};
use crate::limits::RateLimit;
use crate::quota::Budget;
use crate::snapshot::{
    check_compatible, ApiKey, Config, InvalidSnapshot, ModelPrice, ProviderAccount, RoutingGroup,
    Snapshot,
};

/// The protocol feature of deltas and resync requests.
pub const FEATURE_CONFIG_DELTA: &str = "config-delta";

/// The protocol features this build supports, sent in its hello. A message that requires a
/// feature outside this list is refused with a reason (NACK).
pub const FEATURES: &[&str] = &[FEATURE_CONFIG_DELTA];

/// The protocol a delta declares.
pub const DELTA_PROTOCOL_VERSION: u32 = 9;

/// A catalog row's identity: model, then provider kind ("" for any provider).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PriceId {
    pub model: String,
    pub provider: String,
}

impl fmt::Display for PriceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.model, self.provider)
    }
}

/// A resource of one section of a config, identified as the canonical order identifies it.
pub trait Resource: Clone + PartialEq + Sized {
    type Id: Ord + Clone + fmt::Display;
    const SECTION: Section;
    fn id(&self) -> Self::Id;
    /// How this resource's id compares with `id`.
    fn cmp_id(&self, id: &Self::Id) -> Ordering;
    /// The canonical order of two resources of the section.
    fn order(&self, other: &Self) -> Ordering;
    fn leaf(&self) -> Leaf;
    fn list(config: &Config) -> &Vec<Self>;
    fn list_mut(config: &mut Config) -> &mut Vec<Self>;
}

macro_rules! by_string_id {
    ($t:ty, $field:ident, $section:ident, $leaf:ident, $list:ident) => {
        impl Resource for $t {
            type Id = String;
            const SECTION: Section = Section::$section;
            fn id(&self) -> String {
                self.$field.clone()
            }
            fn cmp_id(&self, id: &String) -> Ordering {
                self.$field.cmp(id)
            }
            fn order(&self, other: &Self) -> Ordering {
                self.$field.cmp(&other.$field)
            }
            fn leaf(&self) -> Leaf {
                Leaf::$leaf(self)
            }
            fn list(config: &Config) -> &Vec<Self> {
                &config.$list
            }
            fn list_mut(config: &mut Config) -> &mut Vec<Self> {
                &mut config.$list
            }
        }
    };
}

by_string_id!(ApiKey, id, Keys, key, keys);
by_string_id!(ProviderAccount, id, Providers, provider, providers);
by_string_id!(RoutingGroup, alias, Groups, group, groups);
by_string_id!(Budget, id, Budgets, budget, budgets);
by_string_id!(RateLimit, id, RateLimits, rate_limit, rate_limits);

impl Resource for ModelPrice {
    type Id = PriceId;
    const SECTION: Section = Section::Prices;
    fn id(&self) -> PriceId {
        PriceId {
            model: self.model.clone(),
            provider: self.provider.clone(),
        }
    }
    fn cmp_id(&self, id: &PriceId) -> Ordering {
        (self.model.as_str(), self.provider.as_str())
            .cmp(&(id.model.as_str(), id.provider.as_str()))
    }
    fn order(&self, other: &Self) -> Ordering {
        (&self.model, &self.provider).cmp(&(&other.model, &other.provider))
    }
    fn leaf(&self) -> Leaf {
        Leaf::price(self)
    }
    fn list(config: &Config) -> &Vec<Self> {
        &config.prices
    }
    fn list_mut(config: &mut Config) -> &mut Vec<Self> {
        &mut config.prices
    }
}

/// One section's changes: resources added or changed (whole), and ids removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes<T: Resource> {
    pub upserted: Vec<T>,
    pub removed: Vec<T::Id>,
}

impl<T: Resource> Default for Changes<T> {
    fn default() -> Self {
        Changes {
            upserted: Vec::new(),
            removed: Vec::new(),
        }
    }
}

impl<T: Resource> Changes<T> {
    pub fn len(&self) -> usize {
        self.upserted.len() + self.removed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The changes from one config version to another (see the module doc).
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigDelta {
    pub base_version: u64,
    pub base_hash: String,
    pub version: u64,
    /// The content hash of the resulting config ([`crate::canonical::content_hash`]).
    pub content_hash: String,
    /// The structured digest of the resulting config ([`ConfigDigest::hex`]).
    pub digest: String,
    /// The new key-hash secret, when it changed.
    pub key_hash_secret: Option<Vec<u8>>,
    pub keys: Changes<ApiKey>,
    pub providers: Changes<ProviderAccount>,
    pub prices: Changes<ModelPrice>,
    pub groups: Changes<RoutingGroup>,
    pub budgets: Changes<Budget>,
    pub rate_limits: Changes<RateLimit>,
}

/// Shows versions and counts only: no secret, no credential.
impl fmt::Debug for ConfigDelta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigDelta")
            .field("base_version", &self.base_version)
            .field("version", &self.version)
            .field("content_hash", &self.content_hash)
            .field("key_hash_secret_changed", &self.key_hash_secret.is_some())
            .field("keys", &self.keys.len())
            .field("providers", &self.providers.len())
            .field("prices", &self.prices.len())
            .field("groups", &self.groups.len())
            .field("budgets", &self.budgets.len())
            .field("rate_limits", &self.rate_limits.len())
            .finish()
    }
}

impl ConfigDelta {
    /// How many resources it adds, changes or removes (the secret counts as one).
    pub fn changes(&self) -> usize {
        usize::from(self.key_hash_secret.is_some())
            + self.keys.len()
            + self.providers.len()
            + self.prices.len()
            + self.groups.len()
            + self.budgets.len()
            + self.rate_limits.len()
    }
}

/// Why two configs cannot be told apart as a delta (the control plane sends a full snapshot).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NotRepresentable {
    #[error(
        "{section}: `{id}` is not strictly after the resource before it (unsorted or duplicate id)"
    )]
    NotCanonical { section: &'static str, id: String },
}

/// The delta from `base` to `target`, whose structured digest is `target_digest`. Both configs
/// must be canonical ([`Config::canonicalize`], as [`Snapshot::new`] makes them) with unique ids.
pub fn compute(
    base: &Snapshot,
    target: &Snapshot,
    target_digest: &ConfigDigest,
) -> Result<ConfigDelta, NotRepresentable> {
    let (b, t) = (&base.config, &target.config);
    Ok(ConfigDelta {
        base_version: base.version,
        base_hash: base.content_hash.clone(),
        version: target.version,
        content_hash: target.content_hash.clone(),
        digest: target_digest.hex(),
        key_hash_secret: (b.key_hash_secret != t.key_hash_secret)
            .then(|| t.key_hash_secret.clone()),
        keys: diff(b, t)?,
        providers: diff(b, t)?,
        prices: diff(b, t)?,
        groups: diff(b, t)?,
        budgets: diff(b, t)?,
        rate_limits: diff(b, t)?,
    })
}

/// The digest of a delta's result, from the digest of its base (`base`, whose digest is
/// `base_digest`) and the delta's changes: per resource removed or replaced, its leaf in the base
/// taken out; per resource upserted, its leaf put in. What a node does applying the delta,
/// without touching the resources left alone, so the control plane need not hash every key of
/// each new version ([`ConfigDigest::of`]) when it holds the previous version's digest.
pub fn advance_digest(
    base: &Config,
    base_digest: &ConfigDigest,
    delta: &ConfigDelta,
) -> ConfigDigest {
    let mut d = *base_digest;
    if let Some(secret) = &delta.key_hash_secret {
        d.set_secret(secret);
    }
    advance_section(base, &mut d, &delta.keys);
    advance_section(base, &mut d, &delta.providers);
    advance_section(base, &mut d, &delta.prices);
    advance_section(base, &mut d, &delta.groups);
    advance_section(base, &mut d, &delta.budgets);
    advance_section(base, &mut d, &delta.rate_limits);
    d
}

fn advance_section<T: Resource>(base: &Config, d: &mut ConfigDigest, changes: &Changes<T>) {
    let list = T::list(base);
    let find = |id: &T::Id| {
        list.binary_search_by(|x| x.cmp_id(id))
            .ok()
            .map(|at| &list[at])
    };
    for id in &changes.removed {
        if let Some(old) = find(id) {
            d.remove(T::SECTION, &old.leaf());
        }
    }
    for item in &changes.upserted {
        if let Some(old) = find(&item.id()) {
            d.remove(T::SECTION, &old.leaf());
        }
        d.add(T::SECTION, &item.leaf());
    }
}

/// One section's changes: a merge of the two sorted lists.
fn diff<T: Resource>(base: &Config, target: &Config) -> Result<Changes<T>, NotRepresentable> {
    let (old, new) = (T::list(base), T::list(target));
    canonical(old)?;
    canonical(new)?;
    let mut out = Changes::default();
    let (mut i, mut j) = (0, 0);
    loop {
        match (old.get(i), new.get(j)) {
            (None, None) => break,
            (Some(o), None) => {
                out.removed.push(o.id());
                i += 1;
            }
            (None, Some(n)) => {
                out.upserted.push(n.clone());
                j += 1;
            }
            (Some(o), Some(n)) => match o.order(n) {
                Ordering::Less => {
                    out.removed.push(o.id());
                    i += 1;
                }
                Ordering::Greater => {
                    out.upserted.push(n.clone());
                    j += 1;
                }
                Ordering::Equal => {
                    if o != n {
                        out.upserted.push(n.clone());
                    }
                    i += 1;
                    j += 1;
                }
            },
        }
    }
    Ok(out)
}

fn canonical<T: Resource>(list: &[T]) -> Result<(), NotRepresentable> {
    match list
        .windows(2)
        .find(|w| w[0].order(&w[1]) != Ordering::Less)
    {
        Some(w) => Err(NotRepresentable::NotCanonical {
            section: T::SECTION.as_str(),
            id: w[1].id().to_string(),
        }),
        None => Ok(()),
    }
}

/// Where a delta is applied: one section's resources, by id.
pub trait Store<T: Resource> {
    /// Removes the resource `id`; its leaf ([`Resource::leaf`]), or `None` when there is none.
    fn remove(&mut self, id: &T::Id) -> Option<Leaf>;
    /// Adds `item`, or replaces the resource with its id; the replaced resource's leaf.
    fn put(&mut self, item: T) -> Option<Leaf>;
}

/// A whole config a delta can be applied to.
pub trait Target:
    Store<ApiKey>
    + Store<ProviderAccount>
    + Store<ModelPrice>
    + Store<RoutingGroup>
    + Store<Budget>
    + Store<RateLimit>
{
    fn set_key_hash_secret(&mut self, secret: Vec<u8>);
    fn has_provider(&self, id: &str) -> bool;
    /// The alias of a routing group with a deployment on `provider`, if there is one.
    fn group_using(&self, provider: &str) -> Option<String>;
}

impl<T: Resource> Store<T> for Config {
    fn remove(&mut self, id: &T::Id) -> Option<Leaf> {
        let list = T::list_mut(self);
        let at = list.binary_search_by(|x| x.cmp_id(id)).ok()?;
        Some(list.remove(at).leaf())
    }

    fn put(&mut self, item: T) -> Option<Leaf> {
        let list = T::list_mut(self);
        match list.binary_search_by(|x| x.order(&item)) {
            Ok(at) => Some(std::mem::replace(&mut list[at], item).leaf()),
            Err(at) => {
                list.insert(at, item);
                None
            }
        }
    }
}

impl Target for Config {
    fn set_key_hash_secret(&mut self, secret: Vec<u8>) {
        self.key_hash_secret = secret;
    }

    fn has_provider(&self, id: &str) -> bool {
        self.providers
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .is_ok()
    }

    fn group_using(&self, provider: &str) -> Option<String> {
        self.groups
            .iter()
            .find(|g| g.deployments.iter().any(|d| d.provider_id == provider))
            .map(|g| g.alias.clone())
    }
}

/// Why a delta was not applied.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeltaError {
    #[error(
        "delta to {version} applies to version {base_version}, this node serves {served_version}"
    )]
    WrongBase {
        version: u64,
        base_version: u64,
        served_version: u64,
    },
    #[error("delta to {version}: base version {base_version} is {base_hash}, this node's is {served_hash}")]
    WrongBaseContent {
        version: u64,
        base_version: u64,
        base_hash: String,
        served_hash: String,
    },
    #[error("delta to {version}: {section} `{id}` to remove is not in the served config")]
    Missing {
        version: u64,
        section: &'static str,
        id: String,
    },
    #[error("delta to {version}: routing group `{group}` names provider `{provider}`, which the result lacks")]
    DanglingProvider {
        version: u64,
        group: String,
        provider: String,
    },
    #[error("delta to {version}: the result's digest is {computed}, the control plane declared {declared}")]
    DigestMismatch {
        version: u64,
        declared: String,
        computed: String,
    },
    #[error(transparent)]
    Invalid(#[from] InvalidSnapshot),
}

impl DeltaError {
    /// The delta does not fit what the node serves: the node asks for a full snapshot instead.
    pub fn is_wrong_base(&self) -> bool {
        matches!(
            self,
            DeltaError::WrongBase { .. } | DeltaError::WrongBaseContent { .. }
        )
    }
}

/// Whether `delta` applies to the config a node serves (`served_version`, `served_hash`).
pub fn check_base(
    delta: &ConfigDelta,
    served_version: u64,
    served_hash: &str,
) -> Result<(), DeltaError> {
    if delta.base_version != served_version {
        return Err(DeltaError::WrongBase {
            version: delta.version,
            base_version: delta.base_version,
            served_version,
        });
    }
    if delta.base_hash != served_hash {
        return Err(DeltaError::WrongBaseContent {
            version: delta.version,
            base_version: delta.base_version,
            base_hash: delta.base_hash.clone(),
            served_hash: served_hash.to_owned(),
        });
    }
    Ok(())
}

/// Applies `delta` to `target`, whose digest is `digest` (kept in step), and checks the result
/// (see the module doc). The caller has checked the base ([`check_base`]). On error `target`
/// and `digest` are half changed and must be discarded.
pub fn apply<S: Target>(
    target: &mut S,
    digest: &mut ConfigDigest,
    delta: ConfigDelta,
) -> Result<(), DeltaError> {
    let version = delta.version;
    if let Some(secret) = delta.key_hash_secret {
        digest.set_secret(&secret);
        target.set_key_hash_secret(secret);
    }
    let removed_providers = delta.providers.removed.clone();
    let upserted_groups: Vec<(String, Vec<String>)> = delta
        .groups
        .upserted
        .iter()
        .map(|g| {
            (
                g.alias.clone(),
                g.deployments
                    .iter()
                    .map(|d| d.provider_id.clone())
                    .collect(),
            )
        })
        .collect();
    section(target, digest, version, delta.providers)?;
    section(target, digest, version, delta.prices)?;
    section(target, digest, version, delta.groups)?;
    section(target, digest, version, delta.budgets)?;
    section(target, digest, version, delta.rate_limits)?;
    section(target, digest, version, delta.keys)?;
    for (group, providers) in upserted_groups {
        if let Some(provider) = providers.into_iter().find(|p| !target.has_provider(p)) {
            return Err(DeltaError::DanglingProvider {
                version,
                group,
                provider,
            });
        }
    }
    for provider in removed_providers {
        if let Some(group) = target.group_using(&provider) {
            return Err(DeltaError::DanglingProvider {
                version,
                group,
                provider,
            });
        }
    }
    let computed = digest.hex();
    if computed != delta.digest {
        return Err(DeltaError::DigestMismatch {
            version,
            declared: delta.digest,
            computed,
        });
    }
    Ok(())
}

fn section<T: Resource, S: Store<T>>(
    target: &mut S,
    digest: &mut ConfigDigest,
    version: u64,
    changes: Changes<T>,
) -> Result<(), DeltaError> {
    for id in changes.removed {
        let Some(leaf) = target.remove(&id) else {
            return Err(DeltaError::Missing {
                version,
                section: T::SECTION.as_str(),
                id: id.to_string(),
            });
        };
        digest.remove(T::SECTION, &leaf);
    }
    for item in changes.upserted {
        let leaf = item.leaf();
        if let Some(replaced) = target.put(item) {
            digest.remove(T::SECTION, &replaced);
        }
        digest.add(T::SECTION, &leaf);
    }
    Ok(())
}

impl ConfigDelta {
    /// The wire form: a `Snapshot` carrying the delta, declaring protocol 9 and requiring the
    /// delta feature.
    pub fn to_wire(&self) -> wire::Snapshot {
        // The upserted resources go through the snapshot's own conversions.
        let upserts = Config {
            key_hash_secret: Vec::new(),
            keys: self.keys.upserted.clone(),
            providers: self.providers.upserted.clone(),
            prices: self.prices.upserted.clone(),
            groups: self.groups.upserted.clone(),
            budgets: self.budgets.upserted.clone(),
            rate_limits: self.rate_limits.upserted.clone(),
        }
        .to_wire();
        wire::Snapshot {
            version: self.version,
            content_hash: self.content_hash.clone(),
            min_protocol_version: DELTA_PROTOCOL_VERSION,
            config: None,
            required_features: vec![FEATURE_CONFIG_DELTA.to_owned()],
            delta: Some(wire::ConfigDelta {
                base_version: self.base_version,
                base_hash: self.base_hash.clone(),
                result_digest: self.digest.clone(),
                key_hash_secret_changed: self.key_hash_secret.is_some(),
                key_hash_secret: self.key_hash_secret.clone().unwrap_or_default(),
                upsert_keys: upserts.keys,
                removed_keys: self.keys.removed.clone(),
                upsert_providers: upserts.providers,
                removed_providers: self.providers.removed.clone(),
                upsert_prices: upserts.prices,
                removed_prices: self
                    .prices
                    .removed
                    .iter()
                    .map(|p| wire::PriceId {
                        model: p.model.clone(),
                        provider: p.provider.clone(),
                    })
                    .collect(),
                upsert_groups: upserts.groups,
                removed_groups: self.groups.removed.clone(),
                upsert_budgets: upserts.budgets,
                removed_budgets: self.budgets.removed.clone(),
                upsert_rate_limits: upserts.rate_limits,
                removed_rate_limits: self.rate_limits.removed.clone(),
            }),
        }
    }
}

impl TryFrom<wire::Snapshot> for ConfigDelta {
    type Error = InvalidSnapshot;

    /// Validates a received delta: features and protocol, then every upserted resource as a
    /// full snapshot's are validated. The result is checked when it is applied.
    fn try_from(s: wire::Snapshot) -> Result<Self, Self::Error> {
        check_compatible(&s)?;
        let version = s.version;
        let d = s.delta.ok_or(InvalidSnapshot::MissingConfig { version })?;
        let upserts = Config::decode_resources(
            version,
            wire::Config {
                key_hash_secret: Vec::new(),
                keys: d.upsert_keys,
                providers: d.upsert_providers,
                prices: d.upsert_prices,
                groups: d.upsert_groups,
                budgets: d.upsert_budgets,
                rate_limits: d.upsert_rate_limits,
            },
        )?;
        Ok(ConfigDelta {
            base_version: d.base_version,
            base_hash: d.base_hash,
            version,
            content_hash: s.content_hash,
            digest: d.result_digest,
            key_hash_secret: d.key_hash_secret_changed.then_some(d.key_hash_secret),
            keys: Changes {
                upserted: upserts.keys,
                removed: d.removed_keys,
            },
            providers: Changes {
                upserted: upserts.providers,
                removed: d.removed_providers,
            },
            prices: Changes {
                upserted: upserts.prices,
                removed: d
                    .removed_prices
                    .into_iter()
                    .map(|p| PriceId {
                        model: p.model,
                        // As a full snapshot reads it: `*` is any provider.
                        provider: if p.provider == "*" {
                            String::new()
                        } else {
                            p.provider
                        },
                    })
                    .collect(),
            },
            groups: Changes {
                upserted: upserts.groups,
                removed: d.removed_groups,
            },
            budgets: Changes {
                upserted: upserts.budgets,
                removed: d.removed_budgets,
            },
            rate_limits: Changes {
                upserted: upserts.rate_limits,
                removed: d.removed_rate_limits,
            },
        })
    }
}

#[cfg(test)]
mod tests;
