//! The compact form in which a runtime holds its keys. At 100k keys the keys are most of a data
//! plane's memory: a shared `ApiKey` is seven owned strings and three lists (about 650 bytes
//! with its index entries). A [`Key`] instead holds
//!
//! - its own text (id, name, display prefix) in one allocation, with two offsets;
//! - its secret hashes and dates inline (the rotated-away secret, rare, boxed);
//! - its owner as an interned string ([`Sym`]);
//! - everything keys tend to share — team, application, data class, environment, allowed model
//!   aliases, endpoint families, traffic classes, cache mode — as one interned [`Policy`], whose
//!   strings are interned too. Keys of one team with the same settings point at one `Policy`.
//!
//! Interning happens once per key when a runtime is built or a delta adds a key, through the
//! [`Interner`] a runtime and the runtimes derived from it by deltas share; a full snapshot
//! starts a new one, so what no key uses any more goes with the runtime that used it. The
//! request path only reads: no allocation, no lock, one more pointer to follow for the shared
//! fields. A [`Key`] converts back to the `ApiKey` it came from ([`Key::to_api_key`]) exactly —
//! order of lists included — which is what the digest of a delta hashes (never per request).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use modelgate_shared::cache::KeyCacheMode;
use modelgate_shared::key_view::KeyView;
use modelgate_shared::keys::KeyHash;
use modelgate_shared::routing::TrafficClass;
use modelgate_shared::snapshot::{ApiKey, Environment};

/// An interned string: one allocation per distinct value, shared by every key that holds it.
pub type Sym = Arc<str>;

/// What keys tend to share, interned as a whole.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    team_id: Sym,
    application: Sym,
    data_class: Sym,
    /// Empty means every alias.
    allowed_models: Box<[Sym]>,
    /// Empty means every family.
    endpoint_families: Box<[Sym]>,
    /// Empty means any.
    allowed_traffic_classes: Box<[TrafficClass]>,
    environment: Environment,
    traffic_class: TrafficClass,
    cache: KeyCacheMode,
}

/// The distinct strings and policies of a runtime's keys.
#[derive(Debug, Default)]
pub struct Interner {
    strings: HashSet<Sym>,
    policies: HashSet<Arc<Policy>>,
}

impl Interner {
    /// The one `Sym` for `s`.
    pub fn sym(&mut self, s: &str) -> Sym {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        let sym: Sym = Arc::from(s);
        self.strings.insert(sym.clone());
        sym
    }

    fn syms(&mut self, list: &[String]) -> Box<[Sym]> {
        list.iter().map(|s| self.sym(s)).collect()
    }

    fn policy(&mut self, policy: Policy) -> Arc<Policy> {
        if let Some(found) = self.policies.get(&policy) {
            return found.clone();
        }
        let policy = Arc::new(policy);
        self.policies.insert(policy.clone());
        policy
    }

    /// Distinct strings and policies held.
    pub fn len(&self) -> (usize, usize) {
        (self.strings.len(), self.policies.len())
    }
}

/// An [`Interner`] shared by a runtime and those derived from it by deltas. Locked only while
/// a runtime is built or a delta applied (one writer at a time), never on the request path.
#[derive(Debug, Clone, Default)]
pub struct SharedInterner(Arc<Mutex<Interner>>);

impl SharedInterner {
    pub fn with<T>(&self, f: impl FnOnce(&mut Interner) -> T) -> T {
        // An interner holds no invariant a panicking writer could break halfway.
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A gateway key as a runtime holds it (see the module doc).
#[derive(Debug)]
pub struct Key {
    /// id ‖ name ‖ prefix.
    text: Box<str>,
    name_at: u32,
    prefix_at: u32,
    /// The hash of the current secret.
    pub key_hash: KeyHash,
    policy: Arc<Policy>,
    owner_user_id: Sym,
    /// Unix seconds, when `expires` (apart, so the two pack with the flags below).
    expires_at: i64,
    expires: bool,
    /// The secret replaced by a rotation, and until when (unix seconds) it still works.
    previous: Option<Box<(KeyHash, i64)>>,
    revoked: bool,
    disabled: bool,
}

/// An offset into a key's text: its strings come from a snapshot message, which is far below
/// 4 GiB (`subscriber::MAX_SNAPSHOT_BYTES`).
fn offset(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

impl Key {
    pub fn new(k: ApiKey, interner: &mut Interner) -> Key {
        let mut text = String::with_capacity(k.id.len() + k.name.len() + k.prefix.len());
        text.push_str(&k.id);
        let name_at = offset(text.len());
        text.push_str(&k.name);
        let prefix_at = offset(text.len());
        text.push_str(&k.prefix);
        let policy = Policy {
            team_id: interner.sym(&k.team_id),
            application: interner.sym(&k.application),
            data_class: interner.sym(&k.data_class),
            allowed_models: interner.syms(&k.allowed_models),
            endpoint_families: interner.syms(&k.endpoint_families),
            allowed_traffic_classes: k.allowed_traffic_classes.into_boxed_slice(),
            environment: k.environment,
            traffic_class: k.traffic_class,
            cache: k.cache,
        };
        Key {
            text: text.into_boxed_str(),
            name_at,
            prefix_at,
            key_hash: k.key_hash,
            policy: interner.policy(policy),
            owner_user_id: interner.sym(&k.owner_user_id),
            expires_at: k.expires_at.unwrap_or_default(),
            expires: k.expires_at.is_some(),
            previous: k.previous.map(Box::new),
            revoked: k.revoked,
            disabled: k.disabled,
        }
    }

    /// The `ApiKey` this key was made from, field for field (for digests and the
    /// last-known-good; not for the request path).
    pub fn to_api_key(&self) -> ApiKey {
        let p = &*self.policy;
        let strings = |list: &[Sym]| list.iter().map(|s| s.to_string()).collect();
        ApiKey {
            id: self.id().to_owned(),
            name: self.name().to_owned(),
            key_hash: self.key_hash,
            prefix: self.prefix().to_owned(),
            team_id: p.team_id.to_string(),
            environment: p.environment,
            allowed_models: strings(&p.allowed_models),
            revoked: self.revoked,
            expires_at: KeyView::expires_at(self),
            disabled: self.disabled,
            previous: self.previous(),
            owner_user_id: self.owner_user_id.to_string(),
            application: p.application.to_string(),
            data_class: p.data_class.to_string(),
            endpoint_families: strings(&p.endpoint_families),
            traffic_class: p.traffic_class,
            allowed_traffic_classes: p.allowed_traffic_classes.to_vec(),
            cache: p.cache,
        }
    }

    pub fn id(&self) -> &str {
        self.text.get(..self.name_at as usize).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.text
            .get(self.name_at as usize..self.prefix_at as usize)
            .unwrap_or_default()
    }

    pub fn prefix(&self) -> &str {
        self.text.get(self.prefix_at as usize..).unwrap_or_default()
    }

    pub fn application(&self) -> &str {
        &self.policy.application
    }

    pub fn cache(&self) -> KeyCacheMode {
        self.policy.cache
    }

    pub fn traffic_class(&self) -> TrafficClass {
        self.policy.traffic_class
    }

    /// The secret replaced by a rotation, and until when it still works.
    pub fn previous(&self) -> Option<(KeyHash, i64)> {
        self.previous.as_deref().copied()
    }

    /// The policy this key shares with keys of the same settings.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The owner's interned string.
    pub fn owner_sym(&self) -> &Sym {
        &self.owner_user_id
    }
}

impl KeyView for Key {
    fn id(&self) -> &str {
        Key::id(self)
    }
    fn team_id(&self) -> &str {
        &self.policy.team_id
    }
    fn owner_user_id(&self) -> &str {
        &self.owner_user_id
    }
    fn environment(&self) -> Environment {
        self.policy.environment
    }
    fn data_class(&self) -> &str {
        &self.policy.data_class
    }
    fn is_revoked(&self) -> bool {
        self.revoked
    }
    fn is_disabled(&self) -> bool {
        self.disabled
    }
    fn expires_at(&self) -> Option<i64> {
        self.expires.then_some(self.expires_at)
    }
    fn may_use(&self, alias: &str) -> bool {
        let allowed = &self.policy.allowed_models;
        allowed.is_empty() || allowed.iter().any(|m| &**m == alias)
    }
    fn may_call(&self, family: &str) -> bool {
        let allowed = &self.policy.endpoint_families;
        allowed.is_empty() || allowed.iter().any(|f| &**f == family)
    }
    fn traffic_class_for(&self, requested: Option<TrafficClass>) -> Option<TrafficClass> {
        let p = &*self.policy;
        TrafficClass::for_request(p.traffic_class, &p.allowed_traffic_classes, requested)
    }
}

#[cfg(test)]
mod tests;
