//! The structured digest of a config: a hash of its content that can be kept up to date one
//! resource at a time, so a node that applies a delta checks the whole resulting config without
//! re-encoding 100k keys (the content hash of [`crate::canonical`] is one SHA-256 stream over
//! everything, which costs tens of milliseconds at that size).
//!
//! The construction:
//!
//! - each resource's *leaf* is the SHA-256 of its canonical encoding ([`crate::canonical`]'s
//!   item encoders, every field of every type), tagged with its section;
//! - each section (keys, providers, prices, groups, budgets, rate limits) keeps the number of
//!   its resources and the sum of their leaves as 256-bit integers modulo 2^256, so adding,
//!   replacing or removing one resource is one leaf added or subtracted;
//! - the digest is the hex SHA-256 of a tag, the key-hash secret's leaf and each section's count
//!   and sum, in a fixed order.
//!
//! Within a section ids are unique (a config with a duplicate id is not sent as deltas), so the
//! sum is over a set. The sum is an integrity check between two honest parties over mutual TLS —
//! it detects a node whose config diverged from the control plane's — not a defence against an
//! adversary choosing resources to collide, who would have to be an admin already.
//!
//! [`ConfigDigest::of`] computes it from scratch; a delta's application ([`crate::delta`]) keeps
//! it incrementally, and the tests hold the two equal.

use sha2::{Digest, Sha256};

use crate::canonical;
use crate::limits::RateLimit;
use crate::quota::Budget;
use crate::snapshot::{ApiKey, Config, ModelPrice, ProviderAccount, RoutingGroup};

const TAG: &[u8] = b"modelgate.config.digest.v1";

/// The sections of a config, in the digest's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Keys = 0,
    Providers = 1,
    Prices = 2,
    Groups = 3,
    Budgets = 4,
    RateLimits = 5,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keys => "keys",
            Self::Providers => "providers",
            Self::Prices => "prices",
            Self::Groups => "groups",
            Self::Budgets => "budgets",
            Self::RateLimits => "rate_limits",
        }
    }
}

const SECTIONS: usize = 6;

/// One resource's leaf: the SHA-256 of its tagged canonical encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf([u8; 32]);

impl Leaf {
    pub fn key(k: &ApiKey) -> Leaf {
        Leaf(canonical::key_leaf(k))
    }
    pub fn provider(p: &ProviderAccount) -> Leaf {
        Leaf(canonical::provider_leaf(p))
    }
    pub fn price(p: &ModelPrice) -> Leaf {
        Leaf(canonical::price_leaf(p))
    }
    pub fn group(g: &RoutingGroup) -> Leaf {
        Leaf(canonical::group_leaf(g))
    }
    pub fn budget(b: &Budget) -> Leaf {
        Leaf(canonical::budget_leaf(b))
    }
    pub fn rate_limit(l: &RateLimit) -> Leaf {
        Leaf(canonical::rate_limit_leaf(l))
    }

    /// The leaf as four little-endian 64-bit limbs of a 256-bit integer.
    fn limbs(&self) -> [u64; 4] {
        let mut out = [0u64; 4];
        for (limb, chunk) in out.iter_mut().zip(self.0.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *limb = u64::from_le_bytes(b);
        }
        out
    }
}

/// A section's count and the sum of its leaves modulo 2^256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Sum {
    count: u64,
    acc: [u64; 4],
}

impl Sum {
    fn add(&mut self, leaf: &Leaf) {
        let mut carry = false;
        for (a, b) in self.acc.iter_mut().zip(leaf.limbs()) {
            let (s1, c1) = a.overflowing_add(b);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *a = s2;
            carry = c1 || c2;
        }
        self.count = self.count.wrapping_add(1);
    }

    fn sub(&mut self, leaf: &Leaf) {
        let mut borrow = false;
        for (a, b) in self.acc.iter_mut().zip(leaf.limbs()) {
            let (d1, b1) = a.overflowing_sub(b);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *a = d2;
            borrow = b1 || b2;
        }
        self.count = self.count.wrapping_sub(1);
    }
}

/// The structured digest's state: the secret's leaf and each section's sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDigest {
    secret: [u8; 32],
    sections: [Sum; SECTIONS],
}

impl Default for ConfigDigest {
    /// The digest of the empty config.
    fn default() -> Self {
        ConfigDigest {
            secret: canonical::secret_leaf(&[]),
            sections: [Sum::default(); SECTIONS],
        }
    }
}

impl ConfigDigest {
    /// The digest of `config`, from scratch.
    pub fn of(config: &Config) -> ConfigDigest {
        let Config {
            key_hash_secret,
            keys,
            providers,
            prices,
            groups,
            budgets,
            rate_limits,
        } = config;
        let mut d = ConfigDigest::default();
        d.set_secret(key_hash_secret);
        keys.iter()
            .for_each(|k| d.add(Section::Keys, &Leaf::key(k)));
        providers
            .iter()
            .for_each(|p| d.add(Section::Providers, &Leaf::provider(p)));
        prices
            .iter()
            .for_each(|p| d.add(Section::Prices, &Leaf::price(p)));
        groups
            .iter()
            .for_each(|g| d.add(Section::Groups, &Leaf::group(g)));
        budgets
            .iter()
            .for_each(|b| d.add(Section::Budgets, &Leaf::budget(b)));
        rate_limits
            .iter()
            .for_each(|l| d.add(Section::RateLimits, &Leaf::rate_limit(l)));
        d
    }

    pub fn set_secret(&mut self, secret: &[u8]) {
        self.secret = canonical::secret_leaf(secret);
    }

    /// A resource added to `section`.
    pub fn add(&mut self, section: Section, leaf: &Leaf) {
        self.sections[section as usize].add(leaf);
    }

    /// A resource removed from `section` (a replaced one is removed, then its successor added).
    pub fn remove(&mut self, section: Section, leaf: &Leaf) {
        self.sections[section as usize].sub(leaf);
    }

    /// The digest as it travels and is compared: hex SHA-256 over the state.
    pub fn hex(&self) -> String {
        let mut h = Sha256::new();
        h.update((TAG.len() as u64).to_le_bytes());
        h.update(TAG);
        h.update(self.secret);
        for s in &self.sections {
            h.update(s.count.to_le_bytes());
            for limb in s.acc {
                h.update(limb.to_le_bytes());
            }
        }
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
mod tests;
