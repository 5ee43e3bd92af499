//! The canonical encoding of a [`Config`] and the two hashes taken over it.
//!
//! Protobuf bytes are not a canonical form (map order, unknown fields and default values are
//! the encoder's choice), so the content hash is taken over this encoding instead, written
//! here once for both planes. The rules:
//!
//! - the encoding starts with the tag `modelgate.config.canonical.v1` and a section name;
//! - every integer is 8 bytes little-endian (signed ones two's complement), a bool one byte,
//!   a string or byte string its length (8 bytes) then its bytes, a list its length then its
//!   items, an absent optional `0` and a present one `1` followed by the value, an enum the
//!   string of its stable name (`as_str`);
//! - lists are taken in the canonical order [`Config::canonicalize`] gives them;
//! - every field of every type is encoded, in declaration order. Each type is destructured in
//!   full, so adding a field to a domain type fails to compile here until it is encoded.
//!
//! [`content_hash`] covers the whole config (secrets included: a replaced credential is a new
//! version). [`policy_hash`] covers only the *policy* part — providers without their
//! credentials, prices, routing groups, budgets and rate limits — which is what a staged
//! rollout rolls out (see [`crate::rollout`]); keys, the key-hash secret and credentials are the
//! *immediate* part, which reaches every node at once.

use sha2::{Digest, Sha256};

use crate::limits::RateLimit;
use crate::quota::{Budget, BudgetKind, WhenUnreachable};
use crate::snapshot::{
    ApiKey, CachePolicy, Config, Deployment, ModelPrice, ProviderAccount, RoutePolicy, RoutingGroup,
};

const TAG: &[u8] = b"modelgate.config.canonical.v1";

/// Hex SHA-256 of the canonical encoding of the whole config.
pub fn content_hash(config: &Config) -> String {
    content_hash_with(config, |e| e.list(&config.keys, Encoder::key))
}

/// [`content_hash`] of `config` with `keys` (in canonical order: by id) in place of
/// `config.keys`, for a reader that does not hold its keys as one list of `ApiKey`s (the data
/// plane keeps them in a compact form and hands them here one at a time).
pub fn content_hash_with_keys<K: std::borrow::Borrow<ApiKey>>(
    config: &Config,
    keys: impl ExactSizeIterator<Item = K>,
) -> String {
    content_hash_with(config, |e| {
        e.u64(keys.len() as u64);
        for k in keys {
            e.key(k.borrow());
        }
    })
}

fn content_hash_with(config: &Config, keys: impl FnOnce(&mut Encoder)) -> String {
    let mut e = Encoder::new("content");
    e.bytes(&config.key_hash_secret);
    keys(&mut e);
    e.list(&config.providers, |e, p| e.provider(p, true));
    policy_sections(&mut e, config);
    // Prepaid balances are money, not policy: a top-up reaches every node at once.
    let balances: Vec<&Budget> = config
        .budgets
        .iter()
        .filter(|b| b.kind == BudgetKind::Balance)
        .collect();
    e.list(&balances, |e, b| e.budget(b));
    e.finish()
}

/// Hex SHA-256 of the canonical encoding of the config's policy part only (what a staged
/// rollout rolls out).
pub fn policy_hash(config: &Config) -> String {
    let mut e = Encoder::new("policy");
    e.list(&config.providers, |e, p| e.provider(p, false));
    policy_sections(&mut e, config);
    e.finish()
}

/// SHA-256 of one resource's canonical encoding, tagged with its section: the leaves of the
/// structured digest ([`crate::digest`]). `section` is the digest's name for the section.
pub(crate) fn key_leaf(k: &ApiKey) -> [u8; 32] {
    leaf("keys", |e| e.key(k))
}

pub(crate) fn provider_leaf(p: &ProviderAccount) -> [u8; 32] {
    leaf("providers", |e| e.provider(p, true))
}

pub(crate) fn price_leaf(p: &ModelPrice) -> [u8; 32] {
    leaf("prices", |e| e.price(p))
}

pub(crate) fn group_leaf(g: &RoutingGroup) -> [u8; 32] {
    leaf("groups", |e| e.group(g))
}

pub(crate) fn budget_leaf(b: &Budget) -> [u8; 32] {
    leaf("budgets", |e| e.budget(b))
}

pub(crate) fn rate_limit_leaf(l: &RateLimit) -> [u8; 32] {
    leaf("rate_limits", |e| e.rate_limit(l))
}

pub(crate) fn secret_leaf(secret: &[u8]) -> [u8; 32] {
    leaf("key_hash_secret", |e| e.bytes(secret))
}

fn leaf(section: &str, item: impl FnOnce(&mut Encoder)) -> [u8; 32] {
    let mut e = Encoder::new("item");
    e.str(section);
    item(&mut e);
    e.hasher.finalize().into()
}

fn policy_sections(e: &mut Encoder, c: &Config) {
    e.list(&c.prices, Encoder::price);
    e.list(&c.groups, Encoder::group);
    let spend: Vec<&Budget> = c
        .budgets
        .iter()
        .filter(|b| b.kind == BudgetKind::Spend)
        .collect();
    e.list(&spend, |e, b| e.budget(b));
    e.list(&c.rate_limits, Encoder::rate_limit);
}

struct Encoder {
    hasher: Sha256,
}

impl Encoder {
    fn new(section: &str) -> Self {
        let mut e = Encoder {
            hasher: Sha256::new(),
        };
        e.bytes(TAG);
        e.str(section);
        e
    }

    fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }

    fn u64(&mut self, v: u64) {
        self.hasher.update(v.to_le_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.hasher.update(v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.u64(u64::from(v));
    }

    fn bool(&mut self, v: bool) {
        self.hasher.update([u8::from(v)]);
    }

    fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.hasher.update(v);
    }

    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    fn strs(&mut self, v: &[String]) {
        self.list(v, |e, s| e.str(s));
    }

    fn list<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        self.u64(items.len() as u64);
        for i in items {
            item(self, i);
        }
    }

    fn opt<T>(&mut self, v: Option<&T>, some: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.bool(false),
            Some(v) => {
                self.bool(true);
                some(self, v);
            }
        }
    }

    fn key(&mut self, k: &ApiKey) {
        let ApiKey {
            id,
            name,
            key_hash,
            prefix,
            team_id,
            environment,
            allowed_models,
            revoked,
            expires_at,
            disabled,
            previous,
            owner_user_id,
            application,
            data_class,
            endpoint_families,
            traffic_class,
            allowed_traffic_classes,
            cache,
        } = k;
        self.str(id);
        self.str(name);
        self.bytes(key_hash);
        self.str(prefix);
        self.str(team_id);
        self.str(environment.as_str());
        self.strs(allowed_models);
        self.bool(*revoked);
        self.opt(expires_at.as_ref(), |e, t| e.i64(*t));
        self.bool(*disabled);
        self.opt(previous.as_ref(), |e, (hash, until)| {
            e.bytes(hash);
            e.i64(*until);
        });
        self.str(owner_user_id);
        self.str(application);
        self.str(data_class);
        self.strs(endpoint_families);
        self.str(traffic_class.as_str());
        self.list(allowed_traffic_classes, |e, c| e.str(c.as_str()));
        self.str(cache.as_str());
    }

    fn provider(&mut self, p: &ProviderAccount, with_credential: bool) {
        let ProviderAccount {
            id,
            name,
            kind,
            base_url,
            credential,
        } = p;
        self.str(id);
        self.str(name);
        self.str(kind.as_str());
        self.str(base_url);
        if with_credential {
            self.str(credential);
        }
    }

    fn price(&mut self, p: &ModelPrice) {
        let ModelPrice {
            model,
            provider,
            family,
            price,
            max_output_tokens,
        } = p;
        let crate::pricing::Price {
            input_micros_per_mtok,
            output_micros_per_mtok,
            cached_input_micros_per_mtok,
            reasoning_micros_per_mtok,
            per_image_micros,
            per_second_micros,
            per_mchar_micros,
            version,
        } = price;
        self.str(model);
        self.str(provider);
        self.str(family);
        for v in [
            input_micros_per_mtok,
            output_micros_per_mtok,
            cached_input_micros_per_mtok,
            reasoning_micros_per_mtok,
            per_image_micros,
            per_second_micros,
            per_mchar_micros,
        ] {
            self.i64(*v);
        }
        self.u64(*version);
        self.u64(*max_output_tokens);
    }

    fn group(&mut self, g: &RoutingGroup) {
        let RoutingGroup {
            id,
            alias,
            deployments,
            fallbacks,
            policy,
        } = g;
        self.str(id);
        self.str(alias);
        self.list(deployments, |e, d| {
            let Deployment {
                provider_id,
                model,
                weight,
                tier,
                max_in_flight,
                rpm,
            } = d;
            e.str(provider_id);
            e.str(model);
            e.u32(*weight);
            e.u32(*tier);
            e.u32(*max_in_flight);
            e.u32(*rpm);
        });
        self.strs(fallbacks);
        let RoutePolicy {
            max_retries,
            first_byte_timeout_ms,
            total_timeout_ms,
            stream_idle_timeout_ms,
            cost_factor_milli,
            eject_after,
            base_cooldown_ms,
            max_cooldown_ms,
            lb,
            max_data_class,
            connect_timeout_ms,
            drop_unsupported,
            missing_price,
            cache,
        } = policy;
        for v in [
            max_retries,
            first_byte_timeout_ms,
            total_timeout_ms,
            stream_idle_timeout_ms,
            cost_factor_milli,
            eject_after,
            base_cooldown_ms,
            max_cooldown_ms,
        ] {
            self.u32(*v);
        }
        self.str(lb.as_str());
        self.u64(*max_data_class as u64);
        self.u32(*connect_timeout_ms);
        self.bool(*drop_unsupported);
        self.str(missing_price.as_str());
        let CachePolicy {
            enabled,
            ttl_s,
            partition,
            allow_non_deterministic,
            hit_cost_ppm,
        } = cache;
        self.bool(*enabled);
        self.u32(*ttl_s);
        self.str(partition.as_str());
        self.bool(*allow_non_deterministic);
        self.u32(*hit_cost_ppm);
    }

    fn budget(&mut self, b: &Budget) {
        let Budget {
            id,
            scope,
            scope_id,
            amount_micros,
            period,
            enforcement,
            when_unreachable,
            kind,
        } = b;
        self.str(id);
        self.str(scope.as_str());
        self.str(scope_id);
        self.i64(*amount_micros);
        self.str(period.as_str());
        self.str(enforcement.as_str());
        match when_unreachable {
            WhenUnreachable::FailClosed => self.str("fail_closed"),
            WhenUnreachable::FailOpen { allowance_micros } => {
                self.str("fail_open");
                self.i64(*allowance_micros);
            }
        }
        self.str(kind.as_str());
    }

    fn rate_limit(&mut self, l: &RateLimit) {
        let RateLimit {
            id,
            scope,
            scope_id,
            model,
            rpm,
            tpm,
            max_concurrent,
            when_unreachable,
        } = l;
        self.str(id);
        self.str(scope.as_str());
        self.str(scope_id);
        self.opt(model.as_ref(), |e, m| e.str(m));
        self.u64(*rpm);
        self.u64(*tpm);
        self.u32(*max_concurrent);
        self.str(when_unreachable.as_str());
    }
}

#[cfg(test)]
mod tests;
