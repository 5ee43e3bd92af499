//! The config snapshot: everything a data plane needs to serve requests, immutable and
//! versioned. The control plane builds it from the database; data planes receive it over gRPC,
//! verify it, and swap it in atomically.
//!
//! Conversions to and from the wire types live here, explicitly, in one place: `to_wire` and
//! `TryFrom<wire::Snapshot>` (which is where a data plane validates what it was sent).

use std::fmt;
use std::str::FromStr;

use modelgate_proto::config::v1 as wire;
use thiserror::Error;

pub use crate::cache::{CachePartition, CachePolicy, KeyCacheMode};
use crate::keys::KeyHash;
use crate::pricing::Price;
use crate::routing::TrafficClass;

/// One immutable config version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub version: u64,
    pub content_hash: String,
    pub config: Config,
}

/// The config itself. Every list is sorted by id so the encoding, and so the hash, is canonical.
/// Its `Debug` redacts the key-hash secret and provider credentials.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub key_hash_secret: Vec<u8>,
    pub keys: Vec<ApiKey>,
    pub providers: Vec<ProviderAccount>,
    pub prices: Vec<ModelPrice>,
    pub groups: Vec<RoutingGroup>,
    /// Spend budgets (protocol 5): definitions only, spend is leased from the control plane.
    pub budgets: Vec<crate::quota::Budget>,
    /// Rate limits (protocol 6): definitions only, their windows are leased from the control
    /// plane.
    pub rate_limits: Vec<crate::limits::RateLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub key_hash: KeyHash,
    pub prefix: String,
    pub team_id: String,
    pub environment: Environment,
    /// Empty means every alias.
    pub allowed_models: Vec<String>,
    pub revoked: bool,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub disabled: bool,
    /// The secret replaced by a rotation, and until when (unix seconds) it still works.
    pub previous: Option<(KeyHash, i64)>,
    pub owner_user_id: String,
    pub application: String,
    pub data_class: String,
    /// Empty means every family.
    pub endpoint_families: Vec<String>,
    /// The class of a request that names none.
    pub traffic_class: TrafficClass,
    /// Classes a request may ask for by header; empty means any.
    pub allowed_traffic_classes: Vec<TrafficClass>,
    /// The key's override of its routes' response cache.
    pub cache: KeyCacheMode,
}

impl ApiKey {
    /// The traffic class of a request that asked for `requested` (by header), if the key allows
    /// it; a request that asked for nothing gets the key's class.
    pub fn traffic_class_for(&self, requested: Option<TrafficClass>) -> Option<TrafficClass> {
        TrafficClass::for_request(self.traffic_class, &self.allowed_traffic_classes, requested)
    }

    pub fn may_use(&self, alias: &str) -> bool {
        self.allowed_models.is_empty() || self.allowed_models.iter().any(|m| m == alias)
    }

    pub fn may_call(&self, family: &str) -> bool {
        self.endpoint_families.is_empty() || self.endpoint_families.iter().any(|f| f == family)
    }
}

/// Its `Debug` redacts the credential.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderAccount {
    pub id: String,
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub credential: String,
}

const REDACTED: &str = "[REDACTED]";

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("key_hash_secret", &REDACTED)
            .field("keys", &self.keys)
            .field("providers", &self.providers)
            .field("prices", &self.prices)
            .field("groups", &self.groups)
            .field("budgets", &self.budgets)
            .field("rate_limits", &self.rate_limits)
            .finish()
    }
}

impl std::fmt::Debug for ProviderAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderAccount")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("credential", &REDACTED)
            .finish()
    }
}

/// One pricing catalog row as the data plane needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    pub model: String,
    /// The provider kind the row prices (`openai`, `mock`, ...); empty means any provider. A
    /// deployment takes the row of its provider's kind, else the row for any provider.
    pub provider: String,
    /// The endpoint family (`chat`, `embeddings`, ...); empty in snapshots of protocol 3.
    pub family: String,
    pub price: Price,
    /// The model's output token limit (0: unknown).
    pub max_output_tokens: u64,
}

impl Config {
    /// A deployment's price: the catalog row of its provider's kind, else the row for any
    /// provider (the data plane indexes the same rule into a map per snapshot).
    pub fn price_of(&self, provider_kind: &str, model: &str) -> Option<Price> {
        let row = |kind: &str| {
            self.prices
                .iter()
                .find(|p| p.model == model && p.provider == kind)
                .map(|p| p.price)
        };
        row(provider_kind).or_else(|| row(""))
    }
}

impl ModelPrice {
    /// Whether a data plane of protocol 3 would misread this row (it knows only model, input,
    /// output and version).
    fn needs_protocol_4(&self) -> bool {
        let p = &self.price;
        !self.provider.is_empty()
            || !self.family.is_empty()
            || p.cached_input_micros_per_mtok != 0
            || p.reasoning_micros_per_mtok != 0
            || p.per_image_micros != 0
            || p.per_second_micros != 0
        // `max_output_tokens` does not raise it: a data plane that ignores it only refuses
        // (or flags) more, never reserves less.
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingGroup {
    pub id: String,
    pub alias: String,
    pub deployments: Vec<Deployment>,
    /// Approved backup groups (aliases), in order.
    pub fallbacks: Vec<String>,
    pub policy: RoutePolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub provider_id: String,
    pub model: String,
    pub weight: u32,
    /// Lower tiers first.
    pub tier: u32,
    /// Per data plane: attempts in flight at once; 0 = no limit.
    pub max_in_flight: u32,
    /// Per data plane: attempts per minute (a bucket of that size); 0 = no limit.
    pub rpm: u32,
}

impl Deployment {
    /// The deployment's identity in health state, usage attempts and headers.
    pub fn id(&self) -> String {
        format!("{}/{}", self.provider_id, self.model)
    }
}

/// How a tier's deployments are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LbStrategy {
    #[default]
    Weighted,
    /// Power of two choices on in-flight requests.
    LeastInFlight,
    /// Lowest moving average of time to first byte.
    LowestLatency,
    /// Cheapest price first.
    LowestCost,
}

impl LbStrategy {
    pub const ALL: [LbStrategy; 4] = [
        LbStrategy::Weighted,
        LbStrategy::LeastInFlight,
        LbStrategy::LowestLatency,
        LbStrategy::LowestCost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Weighted => "weighted",
            Self::LeastInFlight => "least_in_flight",
            Self::LowestLatency => "lowest_latency",
            Self::LowestCost => "lowest_cost",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// Data classes, least to most sensitive.
pub const DATA_CLASSES: [&str; 4] = ["public", "internal", "confidential", "restricted"];

/// The rank of a data class (unknown classes rank as the most sensitive).
pub fn data_class_rank(class: &str) -> usize {
    DATA_CLASSES
        .iter()
        .position(|c| *c == class)
        .unwrap_or(DATA_CLASSES.len() - 1)
}

/// A group's retry, timeout and ejection policy (defaults filled in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePolicy {
    pub max_retries: u32,
    pub first_byte_timeout_ms: u32,
    pub total_timeout_ms: u32,
    pub stream_idle_timeout_ms: u32,
    pub cost_factor_milli: u32,
    pub eject_after: u32,
    pub base_cooldown_ms: u32,
    pub max_cooldown_ms: u32,
    pub lb: LbStrategy,
    /// Rank in [`DATA_CLASSES`] of the most sensitive data the group may receive.
    pub max_data_class: usize,
    pub connect_timeout_ms: u32,
    /// When translating between wire formats, drop a parameter the target cannot carry instead
    /// of rejecting the request with a 400 naming it.
    pub drop_unsupported: bool,
    pub missing_price: MissingPricePolicy,
    /// The group's response cache (off by default).
    pub cache: CachePolicy,
}

/// What a group does with a request whose cost it cannot price or bound.
///
/// The default is `Reject`: a gateway that enforces spend must not forward what it cannot
/// charge for — an unpriced model is a catalog gap the operator should see at once, not a free
/// ride found on the invoice. The seeded demo models are priced, so the default costs nothing
/// out of the box; free or self-hosted models opt in with `allow_and_flag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingPricePolicy {
    #[default]
    Reject,
    /// Serve without a reservation and flag the usage row (`cost_flag`).
    AllowAndFlag,
}

impl MissingPricePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::AllowAndFlag => "allow_and_flag",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reject" => Some(Self::Reject),
            "allow_and_flag" => Some(Self::AllowAndFlag),
            _ => None,
        }
    }
}

impl Default for RoutePolicy {
    fn default() -> Self {
        RoutePolicy {
            max_retries: 1,
            first_byte_timeout_ms: 60_000,
            total_timeout_ms: 600_000,
            stream_idle_timeout_ms: 120_000,
            cost_factor_milli: 1000,
            eject_after: 5,
            base_cooldown_ms: 5_000,
            max_cooldown_ms: 300_000,
            lb: LbStrategy::Weighted,
            max_data_class: DATA_CLASSES.len() - 1,
            connect_timeout_ms: 5_000,
            drop_unsupported: false,
            missing_price: MissingPricePolicy::Reject,
            cache: CachePolicy::default(),
        }
    }
}

impl RoutePolicy {
    fn to_wire(self) -> wire::RoutePolicy {
        wire::RoutePolicy {
            max_retries: self.max_retries,
            no_retries: self.max_retries == 0,
            first_byte_timeout_ms: self.first_byte_timeout_ms,
            total_timeout_ms: self.total_timeout_ms,
            stream_idle_timeout_ms: self.stream_idle_timeout_ms,
            cost_factor_milli: self.cost_factor_milli,
            eject_after: self.eject_after,
            base_cooldown_ms: self.base_cooldown_ms,
            max_cooldown_ms: self.max_cooldown_ms,
            lb: self.lb.as_str().to_owned(),
            max_data_class: DATA_CLASSES
                .get(self.max_data_class)
                .copied()
                .unwrap_or("restricted")
                .to_owned(),
            connect_timeout_ms: self.connect_timeout_ms,
            drop_unsupported: self.drop_unsupported,
            missing_price: self.missing_price.as_str().to_owned(),
            cache: self.cache.enabled.then(|| wire::CachePolicy {
                enabled: true,
                ttl_s: self.cache.ttl_s,
                partition: self.cache.partition.as_str().to_owned(),
                allow_non_deterministic: self.cache.allow_non_deterministic,
                hit_cost_ppm: self.cache.hit_cost_ppm,
            }),
        }
    }

    /// The group's policy from the wire. Only the cache can be refused: an unknown partition
    /// would otherwise share answers more widely than the config says.
    fn from_wire(p: Option<wire::RoutePolicy>) -> Result<Self, String> {
        let d = RoutePolicy::default();
        let Some(p) = p else { return Ok(d) };
        let cache = match p.cache {
            Some(c) if c.enabled => CachePolicy {
                enabled: true,
                ttl_s: if c.ttl_s == 0 {
                    CachePolicy::DEFAULT_TTL_S
                } else {
                    c.ttl_s
                },
                partition: if c.partition.is_empty() {
                    CachePartition::Team
                } else {
                    CachePartition::parse(&c.partition)
                        .ok_or_else(|| format!("unknown cache partition `{}`", c.partition))?
                },
                allow_non_deterministic: c.allow_non_deterministic,
                hit_cost_ppm: c.hit_cost_ppm,
            },
            _ => CachePolicy::default(),
        };
        let or = |v: u32, default: u32| if v == 0 { default } else { v };
        Ok(RoutePolicy {
            max_retries: if p.no_retries {
                0
            } else {
                or(p.max_retries, d.max_retries)
            },
            first_byte_timeout_ms: or(p.first_byte_timeout_ms, d.first_byte_timeout_ms),
            total_timeout_ms: or(p.total_timeout_ms, d.total_timeout_ms),
            stream_idle_timeout_ms: or(p.stream_idle_timeout_ms, d.stream_idle_timeout_ms),
            cost_factor_milli: or(p.cost_factor_milli, d.cost_factor_milli),
            eject_after: or(p.eject_after, d.eject_after),
            base_cooldown_ms: or(p.base_cooldown_ms, d.base_cooldown_ms),
            max_cooldown_ms: or(p.max_cooldown_ms, d.max_cooldown_ms),
            lb: LbStrategy::parse(&p.lb).unwrap_or_default(),
            max_data_class: if p.max_data_class.is_empty() {
                d.max_data_class
            } else {
                data_class_rank(&p.max_data_class)
            },
            connect_timeout_ms: or(p.connect_timeout_ms, d.connect_timeout_ms),
            drop_unsupported: p.drop_unsupported,
            // Anything but an explicit allow is the strict choice.
            missing_price: MissingPricePolicy::parse(&p.missing_price).unwrap_or_default(),
            cache,
        })
    }
}

/// The wire formats a provider account can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    OpenAiCompatible,
    /// Anthropic's Messages API (`POST {base_url}/v1/messages`).
    Anthropic,
    /// Google's Gemini API (`POST {base_url}/v1beta/models/{model}:generateContent`).
    Gemini,
    Mock,
    /// Azure OpenAI: `{base_url}/openai/deployments/{model}/...?api-version=...` with `api-key`.
    AzureOpenAi,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 6] = [
        Self::OpenAi,
        Self::OpenAiCompatible,
        Self::Anthropic,
        Self::Gemini,
        Self::Mock,
        Self::AzureOpenAi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::OpenAiCompatible => "openai-compatible",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Mock => "mock",
            Self::AzureOpenAi => "azure-openai",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Dev,
    Staging,
    Prod,
}

impl Environment {
    pub const ALL: [Environment; 3] = [Self::Dev, Self::Staging, Self::Prod];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Staging => "staging",
            Self::Prod => "prod",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown value `{0}`")]
pub struct UnknownValue(pub String);

/// Why a data plane refuses a snapshot (sent back in the NACK).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvalidSnapshot {
    #[error("snapshot {version} needs protocol {needed}, this data plane speaks {have}")]
    ProtocolTooNew {
        version: u64,
        needed: u32,
        have: u32,
    },
    #[error(
        "snapshot {version} needs the protocol feature `{feature}`, which this data plane lacks"
    )]
    MissingFeature { version: u64, feature: String },
    #[error("snapshot {version} has no config")]
    MissingConfig { version: u64 },
    #[error("snapshot {version} is a delta where a full config was expected")]
    UnexpectedDelta { version: u64 },
    #[error("snapshot {version} content hash mismatch: declared {declared}, computed {computed}")]
    HashMismatch {
        version: u64,
        declared: String,
        computed: String,
    },
    #[error("snapshot {version}: {field}: {problem}")]
    Field {
        version: u64,
        field: String,
        problem: String,
    },
}

/// The content hash of a config: hex SHA-256 of its canonical encoding ([`crate::canonical`]),
/// never of protobuf bytes.
pub fn content_hash(config: &Config) -> String {
    crate::canonical::content_hash(config)
}

impl Config {
    /// Sorts every list by id so that equal configs encode, and hash, identically.
    pub fn canonicalize(&mut self) {
        self.keys.sort_by(|a, b| a.id.cmp(&b.id));
        self.providers.sort_by(|a, b| a.id.cmp(&b.id));
        self.prices
            .sort_by(|a, b| (&a.model, &a.provider).cmp(&(&b.model, &b.provider)));
        self.groups.sort_by(|a, b| a.alias.cmp(&b.alias));
        self.budgets.sort_by(|a, b| a.id.cmp(&b.id));
        self.rate_limits.sort_by(|a, b| a.id.cmp(&b.id));
    }

    /// The lowest protocol that reads this config correctly: 4 once a price uses the catalog's
    /// newer fields (provider, family, cached input, reasoning, image, second), 7 once one
    /// prices characters, 8 once a team has a prepaid balance, else 3, so a control plane keeps feeding older data planes until the
    /// catalog needs more.
    pub fn min_protocol_version(&self) -> u32 {
        // A data plane that does not know a character price would charge speech nothing, and
        // one that does not know budgets or rate limits would serve past them: each must NACK.
        if self
            .budgets
            .iter()
            .any(|b| b.kind == crate::quota::BudgetKind::Balance)
        {
            8
        } else if self.prices.iter().any(|p| p.price.per_mchar_micros != 0) {
            7
        } else if !self.rate_limits.is_empty() {
            6
        } else if !self.budgets.is_empty() {
            5
        } else if self.prices.iter().any(ModelPrice::needs_protocol_4) {
            4
        } else {
            3
        }
    }

    pub fn to_wire(&self) -> wire::Config {
        wire::Config {
            key_hash_secret: self.key_hash_secret.clone(),
            keys: self.keys.iter().map(key_to_wire).collect(),
            providers: self
                .providers
                .iter()
                .map(|p| wire::ProviderAccount {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    kind: p.kind.as_str().to_owned(),
                    base_url: p.base_url.clone(),
                    credential: p.credential.clone(),
                })
                .collect(),
            prices: self
                .prices
                .iter()
                .map(|p| wire::ModelPrice {
                    model: p.model.clone(),
                    input_micros_per_mtok: p.price.input_micros_per_mtok,
                    output_micros_per_mtok: p.price.output_micros_per_mtok,
                    price_version: p.price.version,
                    cached_input_micros_per_mtok: p.price.cached_input_micros_per_mtok,
                    reasoning_micros_per_mtok: p.price.reasoning_micros_per_mtok,
                    per_image_micros: p.price.per_image_micros,
                    per_second_micros: p.price.per_second_micros,
                    per_mchar_micros: p.price.per_mchar_micros,
                    provider: p.provider.clone(),
                    family: p.family.clone(),
                    max_output_tokens: p.max_output_tokens,
                })
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|g| wire::RoutingGroup {
                    id: g.id.clone(),
                    alias: g.alias.clone(),
                    deployments: g
                        .deployments
                        .iter()
                        .map(|d| wire::Deployment {
                            provider_id: d.provider_id.clone(),
                            model: d.model.clone(),
                            weight: d.weight,
                            tier: d.tier,
                            max_in_flight: d.max_in_flight,
                            rpm: d.rpm,
                        })
                        .collect(),
                    fallbacks: g.fallbacks.clone(),
                    policy: Some(g.policy.to_wire()),
                })
                .collect(),
            budgets: self.budgets.iter().map(budget_to_wire).collect(),
            rate_limits: self.rate_limits.iter().map(rate_limit_to_wire).collect(),
        }
    }
}

fn rate_limit_to_wire(l: &crate::limits::RateLimit) -> wire::RateLimit {
    wire::RateLimit {
        id: l.id.clone(),
        scope_kind: l.scope.as_str().to_owned(),
        scope_id: l.scope_id.clone(),
        model: l.model.clone().unwrap_or_default(),
        rpm: l.rpm,
        tpm: l.tpm,
        max_concurrent: l.max_concurrent,
        when_unreachable: l.when_unreachable.as_str().to_owned(),
    }
}

fn rate_limit_from_wire(
    version: u64,
    i: usize,
    l: wire::RateLimit,
) -> Result<crate::limits::RateLimit, InvalidSnapshot> {
    use crate::limits::{LimitFallback, RateLimit};
    let bad = |f: &str, e: UnknownValue| InvalidSnapshot::Field {
        version,
        field: format!("rate_limits[{i}].{f}"),
        problem: e.to_string(),
    };
    Ok(RateLimit {
        scope: l.scope_kind.parse().map_err(|e| bad("scope_kind", e))?,
        when_unreachable: match l.when_unreachable.as_str() {
            "" => LimitFallback::FailOpen,
            other => other.parse().map_err(|e| bad("when_unreachable", e))?,
        },
        id: l.id,
        scope_id: l.scope_id,
        model: Some(l.model).filter(|m| !m.is_empty()),
        rpm: l.rpm,
        tpm: l.tpm,
        max_concurrent: l.max_concurrent,
    })
}

fn budget_to_wire(b: &crate::quota::Budget) -> wire::Budget {
    use crate::quota::WhenUnreachable;
    let (when, allowance) = match b.when_unreachable {
        WhenUnreachable::FailClosed => ("fail_closed", 0),
        WhenUnreachable::FailOpen { allowance_micros } => ("fail_open", allowance_micros),
    };
    wire::Budget {
        id: b.id.clone(),
        scope_kind: match b.kind {
            crate::quota::BudgetKind::Spend => b.scope.as_str().to_owned(),
            crate::quota::BudgetKind::Balance => BALANCE_SCOPE.to_owned(),
        },
        scope_id: b.scope_id.clone(),
        amount_micros: b.amount_micros,
        period: b.period.as_str().to_owned(),
        enforcement: b.enforcement.as_str().to_owned(),
        when_unreachable: when.to_owned(),
        fail_open_allowance_micros: allowance,
    }
}

/// A prepaid balance travels as a budget whose `scope_kind` is this (its scope is always a team):
/// the wire's spelling of `BudgetKind::Balance` (protocol 8).
const BALANCE_SCOPE: &str = "team_balance";

fn budget_from_wire(
    version: u64,
    i: usize,
    b: wire::Budget,
) -> Result<crate::quota::Budget, InvalidSnapshot> {
    use crate::quota::{Budget, WhenUnreachable};
    let bad = |f: &str, e: UnknownValue| InvalidSnapshot::Field {
        version,
        field: format!("budgets[{i}].{f}"),
        problem: e.to_string(),
    };
    let when_unreachable = match b.when_unreachable.as_str() {
        "fail_closed" | "" => WhenUnreachable::FailClosed,
        "fail_open" => WhenUnreachable::FailOpen {
            allowance_micros: b.fail_open_allowance_micros.max(0),
        },
        other => return Err(bad("when_unreachable", UnknownValue(other.to_owned()))),
    };
    if b.amount_micros < 0 {
        return Err(InvalidSnapshot::Field {
            version,
            field: format!("budgets[{i}].amount_micros"),
            problem: "must not be negative".into(),
        });
    }
    let (scope, kind) = if b.scope_kind == BALANCE_SCOPE {
        (
            crate::quota::ScopeKind::Team,
            crate::quota::BudgetKind::Balance,
        )
    } else {
        (
            b.scope_kind.parse().map_err(|e| bad("scope_kind", e))?,
            crate::quota::BudgetKind::Spend,
        )
    };
    Ok(Budget {
        scope,
        kind,
        period: b.period.parse().map_err(|e| bad("period", e))?,
        enforcement: b.enforcement.parse().map_err(|e| bad("enforcement", e))?,
        id: b.id,
        scope_id: b.scope_id,
        amount_micros: b.amount_micros,
        when_unreachable,
    })
}

fn key_to_wire(k: &ApiKey) -> wire::ApiKey {
    wire::ApiKey {
        id: k.id.clone(),
        key_hash: k.key_hash.to_vec(),
        prefix: k.prefix.clone(),
        team_id: k.team_id.clone(),
        environment: k.environment.as_str().to_owned(),
        allowed_models: k.allowed_models.clone(),
        revoked: k.revoked,
        expires_at: k.expires_at.unwrap_or(0),
        name: k.name.clone(),
        disabled: k.disabled,
        previous_key_hash: k.previous.map(|(h, _)| h.to_vec()).unwrap_or_default(),
        previous_expires_at: k.previous.map_or(0, |(_, t)| t),
        owner_user_id: k.owner_user_id.clone(),
        application: k.application.clone(),
        data_class: k.data_class.clone(),
        endpoint_families: k.endpoint_families.clone(),
        traffic_class: k.traffic_class.as_str().to_owned(),
        allowed_traffic_classes: k
            .allowed_traffic_classes
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        cache: match k.cache {
            KeyCacheMode::Route => String::new(),
            m => m.as_str().to_owned(),
        },
    }
}

/// What a data plane does with a snapshot it is offered, given the version it serves.
///
/// The rule: a node applies only a version strictly above the one it serves. Every config change
/// (a rollback to earlier content included) is published under a new, higher version number,
/// so an offer at or below the served version is never news: it is a stale control plane (one
/// restarted on a database whose counter is behind) or a replayed message, and applying it would
/// move the node backwards. Version 0 is "nothing served yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Newer than the served version: validate and apply it.
    Apply,
    /// The version already served: nothing to do; the node may acknowledge it again.
    AlreadyServing,
    /// Older than the served version (or version 0): refuse it and keep serving `served`.
    Older { served: u64 },
}

/// The version rule (see [`Decision`]), written once for every caller.
pub fn should_apply(served: u64, offered: u64) -> Decision {
    if offered > served {
        Decision::Apply
    } else if offered == served && served != 0 {
        Decision::AlreadyServing
    } else {
        Decision::Older { served }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Apply => f.write_str("newer than the served version"),
            Decision::AlreadyServing => f.write_str("already the served version"),
            Decision::Older { served } => {
                write!(f, "not newer than the served version {served}")
            }
        }
    }
}

impl Snapshot {
    /// Builds a snapshot from a config, computing the content hash.
    pub fn new(version: u64, mut config: Config) -> Self {
        config.canonicalize();
        let content_hash = content_hash(&config);
        Snapshot {
            version,
            content_hash,
            config,
        }
    }

    pub fn to_wire(&self) -> wire::Snapshot {
        wire::Snapshot {
            version: self.version,
            content_hash: self.content_hash.clone(),
            min_protocol_version: self.config.min_protocol_version(),
            config: Some(self.config.to_wire()),
            delta: None,
            required_features: Vec::new(),
        }
    }
}

/// Whether this build may read `s` at all: every feature it requires is one this build
/// has ([`crate::delta::FEATURES`]), and its protocol is not newer. Checked first, for full
/// snapshots and deltas alike, so a message is refused with a reason rather than misread.
pub fn check_compatible(s: &wire::Snapshot) -> Result<(), InvalidSnapshot> {
    if let Some(missing) = s
        .required_features
        .iter()
        .find(|f| !crate::delta::FEATURES.contains(&f.as_str()))
    {
        return Err(InvalidSnapshot::MissingFeature {
            version: s.version,
            feature: missing.clone(),
        });
    }
    if s.min_protocol_version > crate::SNAPSHOT_PROTOCOL_VERSION {
        return Err(InvalidSnapshot::ProtocolTooNew {
            version: s.version,
            needed: s.min_protocol_version,
            have: crate::SNAPSHOT_PROTOCOL_VERSION,
        });
    }
    Ok(())
}

impl TryFrom<wire::Snapshot> for Snapshot {
    type Error = InvalidSnapshot;

    /// Validates a received snapshot: protocol version, content hash, and every field.
    fn try_from(s: wire::Snapshot) -> Result<Self, Self::Error> {
        let version = s.version;
        check_compatible(&s)?;
        if s.delta.is_some() {
            return Err(InvalidSnapshot::UnexpectedDelta { version });
        }
        let config = s.config.ok_or(InvalidSnapshot::MissingConfig { version })?;
        let mut config = Config::from_wire(version, config)?;
        // The hash is over the canonical encoding of what was decoded, in canonical order.
        config.canonicalize();
        let computed = content_hash(&config);
        if computed != s.content_hash {
            return Err(InvalidSnapshot::HashMismatch {
                version,
                declared: s.content_hash,
                computed,
            });
        }
        Ok(Snapshot {
            version,
            content_hash: s.content_hash,
            config,
        })
    }
}

impl Config {
    /// Decodes and validates a wire config (every field; no hash: see `TryFrom<wire::Snapshot>`).
    /// `version` only names the snapshot in errors. The control plane also reads stored
    /// versions back with it.
    pub fn from_wire(version: u64, config: wire::Config) -> Result<Config, InvalidSnapshot> {
        Self::decode(version, config, true)
    }

    /// Decodes and validates each resource of a wire config on its own: a deployment's provider
    /// need not be in the same message (a delta's groups name providers the node already has;
    /// [`crate::delta`] checks the links of the result).
    pub(crate) fn decode_resources(
        version: u64,
        config: wire::Config,
    ) -> Result<Config, InvalidSnapshot> {
        Self::decode(version, config, false)
    }

    fn decode(
        version: u64,
        config: wire::Config,
        check_links: bool,
    ) -> Result<Config, InvalidSnapshot> {
        let field = |field: String, problem: String| InvalidSnapshot::Field {
            version,
            field,
            problem,
        };

        let mut keys = Vec::with_capacity(config.keys.len());
        for (i, k) in config.keys.into_iter().enumerate() {
            let key_hash: KeyHash = k
                .key_hash
                .as_slice()
                .try_into()
                .map_err(|_| field(format!("keys[{i}].key_hash"), "must be 32 bytes".into()))?;
            let environment = k.environment.parse().map_err(|e: UnknownValue| {
                field(format!("keys[{i}].environment"), e.to_string())
            })?;
            let previous = if k.previous_key_hash.is_empty() {
                None
            } else {
                let hash: KeyHash = k.previous_key_hash.as_slice().try_into().map_err(|_| {
                    field(
                        format!("keys[{i}].previous_key_hash"),
                        "must be 32 bytes".into(),
                    )
                })?;
                Some((hash, k.previous_expires_at))
            };
            let class = |name: &str, at: String| {
                TrafficClass::parse(name)
                    .ok_or_else(|| field(at, format!("unknown traffic class `{name}`")))
            };
            let traffic_class = if k.traffic_class.is_empty() {
                TrafficClass::default()
            } else {
                class(&k.traffic_class, format!("keys[{i}].traffic_class"))?
            };
            let allowed_traffic_classes = k
                .allowed_traffic_classes
                .iter()
                .enumerate()
                .map(|(j, c)| class(c, format!("keys[{i}].allowed_traffic_classes[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let cache = if k.cache.is_empty() {
                KeyCacheMode::Route
            } else {
                KeyCacheMode::parse(&k.cache).ok_or_else(|| {
                    field(
                        format!("keys[{i}].cache"),
                        format!("unknown cache mode `{}`", k.cache),
                    )
                })?
            };
            keys.push(ApiKey {
                id: k.id,
                name: k.name,
                key_hash,
                prefix: k.prefix,
                team_id: k.team_id,
                environment,
                allowed_models: k.allowed_models,
                revoked: k.revoked,
                expires_at: (k.expires_at != 0).then_some(k.expires_at),
                disabled: k.disabled,
                previous,
                owner_user_id: k.owner_user_id,
                application: k.application,
                data_class: k.data_class,
                endpoint_families: k.endpoint_families,
                traffic_class,
                allowed_traffic_classes,
                cache,
            });
        }

        let mut providers = Vec::with_capacity(config.providers.len());
        for (i, p) in config.providers.into_iter().enumerate() {
            let kind = p
                .kind
                .parse()
                .map_err(|e: UnknownValue| field(format!("providers[{i}].kind"), e.to_string()))?;
            providers.push(ProviderAccount {
                id: p.id,
                name: p.name,
                kind,
                base_url: p.base_url,
                credential: p.credential,
            });
        }

        let prices = config
            .prices
            .into_iter()
            .map(|p| ModelPrice {
                model: p.model,
                provider: if p.provider == "*" {
                    String::new()
                } else {
                    p.provider
                },
                family: p.family,
                max_output_tokens: p.max_output_tokens,
                price: Price {
                    input_micros_per_mtok: p.input_micros_per_mtok,
                    output_micros_per_mtok: p.output_micros_per_mtok,
                    cached_input_micros_per_mtok: p.cached_input_micros_per_mtok,
                    reasoning_micros_per_mtok: p.reasoning_micros_per_mtok,
                    per_image_micros: p.per_image_micros,
                    per_second_micros: p.per_second_micros,
                    per_mchar_micros: p.per_mchar_micros,
                    version: p.price_version,
                },
            })
            .collect();

        let budgets = config
            .budgets
            .into_iter()
            .enumerate()
            .map(|(i, b)| budget_from_wire(version, i, b))
            .collect::<Result<Vec<_>, _>>()?;
        let rate_limits = config
            .rate_limits
            .into_iter()
            .enumerate()
            .map(|(i, l)| rate_limit_from_wire(version, i, l))
            .collect::<Result<Vec<_>, _>>()?;

        let mut groups = Vec::with_capacity(config.groups.len());
        for (i, g) in config.groups.into_iter().enumerate() {
            let mut deployments = Vec::with_capacity(g.deployments.len());
            for (j, d) in g.deployments.into_iter().enumerate() {
                if check_links && !providers.iter().any(|p| p.id == d.provider_id) {
                    return Err(field(
                        format!("groups[{i}].deployments[{j}].provider_id"),
                        format!("unknown provider `{}`", d.provider_id),
                    ));
                }
                deployments.push(Deployment {
                    provider_id: d.provider_id,
                    model: d.model,
                    weight: d.weight,
                    tier: d.tier,
                    max_in_flight: d.max_in_flight,
                    rpm: d.rpm,
                });
            }
            if deployments.is_empty() {
                return Err(field(
                    format!("groups[{i}].deployments"),
                    "a routing group needs at least one deployment".into(),
                ));
            }
            groups.push(RoutingGroup {
                id: g.id,
                alias: g.alias,
                deployments,
                fallbacks: g.fallbacks,
                policy: RoutePolicy::from_wire(g.policy)
                    .map_err(|problem| field(format!("groups[{i}].policy.cache"), problem))?,
            });
        }

        Ok(Config {
            key_hash_secret: config.key_hash_secret,
            keys,
            providers,
            prices,
            groups,
            budgets,
            rate_limits,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_configs_debug_shows_neither_credentials_nor_the_key_hash_secret() {
        let mut config = sample();
        config.key_hash_secret = b"key-hash-secret-bytes".to_vec();
        config.providers[0].credential = "sk-live-credential-5678".into();
        let shown = format!("{config:?} {:?}", config.providers[0]);
        assert!(!shown.contains("sk-live-credential"), "{shown}");
        let secret_bytes = format!("{:?}", config.key_hash_secret);
        assert!(!shown.contains(&secret_bytes), "{shown}");
        assert!(shown.contains("REDACTED") && shown.contains("p1"));
    }

    pub(crate) fn sample() -> Config {
        Config {
            key_hash_secret: vec![7; 32],
            keys: vec![ApiKey {
                id: "k1".into(),
                name: "demo".into(),
                key_hash: [3; 32],
                prefix: "mg-abc".into(),
                team_id: "t1".into(),
                environment: Environment::Prod,
                allowed_models: vec!["gpt-4o-mini".into()],
                revoked: false,
                expires_at: Some(1_900_000_000),
                disabled: false,
                previous: Some(([4; 32], 1_800_000_000)),
                owner_user_id: "u1".into(),
                application: "checkout".into(),
                data_class: "internal".into(),
                endpoint_families: vec!["chat".into()],
                traffic_class: TrafficClass::Batch,
                allowed_traffic_classes: vec![TrafficClass::Eval],
                cache: KeyCacheMode::Refresh,
            }],
            providers: vec![ProviderAccount {
                id: "p1".into(),
                name: "mock".into(),
                kind: ProviderKind::Mock,
                base_url: String::new(),
                credential: String::new(),
            }],
            prices: vec![ModelPrice {
                model: "mock-small".into(),
                provider: "mock".into(),
                family: "chat".into(),
                max_output_tokens: 16_384,
                price: Price {
                    input_micros_per_mtok: 150_000,
                    output_micros_per_mtok: 600_000,
                    cached_input_micros_per_mtok: 75_000,
                    reasoning_micros_per_mtok: 700_000,
                    per_image_micros: 40_000,
                    per_second_micros: 6_000,
                    per_mchar_micros: 0,
                    version: 3,
                },
            }],
            groups: vec![RoutingGroup {
                id: "g1".into(),
                alias: "gpt-4o-mini".into(),
                deployments: vec![Deployment {
                    provider_id: "p1".into(),
                    model: "mock-small".into(),
                    weight: 1,
                    tier: 0,
                    max_in_flight: 2,
                    rpm: 600,
                }],
                fallbacks: vec!["backup".into()],
                policy: RoutePolicy {
                    max_retries: 0,
                    missing_price: MissingPricePolicy::AllowAndFlag,
                    cache: CachePolicy {
                        enabled: true,
                        ttl_s: 60,
                        partition: CachePartition::User,
                        allow_non_deterministic: true,
                        hit_cost_ppm: 250_000,
                    },
                    ..RoutePolicy::default()
                },
            }],
            budgets: vec![],
            rate_limits: vec![crate::limits::RateLimit {
                id: "l1".into(),
                scope: crate::limits::LimitScope::Team,
                scope_id: "t1".into(),
                model: Some("gpt-4o-mini".into()),
                rpm: 60,
                tpm: 10_000,
                max_concurrent: 4,
                when_unreachable: crate::limits::LimitFallback::FailClosed,
            }],
        }
    }

    #[test]
    fn the_missing_price_policy_is_reject_unless_the_wire_says_allow_and_flag() {
        let read = |s: &str| {
            RoutePolicy::from_wire(Some(wire::RoutePolicy {
                missing_price: s.to_owned(),
                ..Default::default()
            }))
            .unwrap()
            .missing_price
        };
        assert_eq!(read(""), MissingPricePolicy::Reject);
        assert_eq!(read("reject"), MissingPricePolicy::Reject);
        assert_eq!(read("something-newer"), MissingPricePolicy::Reject);
        assert_eq!(read("allow_and_flag"), MissingPricePolicy::AllowAndFlag);
    }

    #[test]
    fn a_cache_partition_this_build_does_not_know_is_refused_not_widened() {
        let mut wire = Snapshot::new(7, sample()).to_wire();
        let group = &mut wire.config.as_mut().unwrap().groups[0];
        group
            .policy
            .as_mut()
            .unwrap()
            .cache
            .as_mut()
            .unwrap()
            .partition = "org".into();
        // Fields are validated before the hash is compared.
        wire.content_hash = "not checked before the fields".into();
        let err = Snapshot::try_from(wire).unwrap_err().to_string();
        assert!(err.contains("groups[0].policy.cache"), "{err}");
    }

    #[test]
    fn snapshot_round_trips_through_the_wire() {
        let snap = Snapshot::new(42, sample());
        let back = Snapshot::try_from(snap.to_wire()).unwrap();
        assert_eq!(back, snap);
    }

    #[test]
    fn a_prepaid_balance_round_trips_as_a_team_balance_budget_and_needs_protocol_8() {
        use crate::quota::{Budget, BudgetKind, Enforcement, Period, ScopeKind, WhenUnreachable};
        let mut config = sample();
        let budget = |id: &str, kind| Budget {
            id: id.into(),
            scope: ScopeKind::Team,
            scope_id: "t1".into(),
            amount_micros: 5_000_000,
            period: Period::Total,
            enforcement: Enforcement::Hard,
            when_unreachable: WhenUnreachable::FailClosed,
            kind,
        };
        config.budgets = vec![budget("b1", BudgetKind::Spend)];
        assert_eq!(
            Snapshot::new(1, config.clone())
                .to_wire()
                .min_protocol_version,
            6
        );
        config
            .budgets
            .push(budget("balance-t1", BudgetKind::Balance));
        let snap = Snapshot::new(1, config);
        let wire = snap.to_wire();
        assert_eq!(wire.min_protocol_version, 8);
        let kinds: Vec<&str> = wire
            .config
            .as_ref()
            .unwrap()
            .budgets
            .iter()
            .map(|b| b.scope_kind.as_str())
            .collect();
        assert_eq!(kinds, ["team", "team_balance"]);
        assert_eq!(Snapshot::try_from(wire).unwrap(), snap);
    }

    #[test]
    fn tampered_snapshot_is_rejected_by_hash() {
        let mut wire = Snapshot::new(1, sample()).to_wire();
        if let Some(c) = wire.config.as_mut() {
            c.keys[0].revoked = true;
        }
        assert!(matches!(
            Snapshot::try_from(wire),
            Err(InvalidSnapshot::HashMismatch { .. })
        ));
    }

    #[test]
    fn snapshot_needing_a_newer_protocol_is_rejected() {
        let mut wire = Snapshot::new(1, sample()).to_wire();
        wire.min_protocol_version = crate::SNAPSHOT_PROTOCOL_VERSION + 1;
        assert!(matches!(
            Snapshot::try_from(wire),
            Err(InvalidSnapshot::ProtocolTooNew { .. })
        ));
    }

    #[test]
    fn unknown_provider_kind_names_the_field() {
        let mut config = sample();
        config.canonicalize();
        let mut wire_config = config.to_wire();
        wire_config.providers[0].kind = "bedrock".into();
        let wire = wire::Snapshot {
            version: 9,
            content_hash: "not checked before the fields".into(),
            min_protocol_version: 1,
            config: Some(wire_config),
            delta: None,
            required_features: Vec::new(),
        };
        let err = Snapshot::try_from(wire).unwrap_err();
        assert!(err.to_string().contains("providers[0].kind"), "{err}");
    }

    #[test]
    fn catalog_fields_raise_the_protocol_only_when_used() {
        let mut legacy = sample();
        legacy.prices[0] = ModelPrice {
            model: "mock-small".into(),
            provider: String::new(),
            family: String::new(),
            max_output_tokens: 0,
            price: Price {
                input_micros_per_mtok: 1,
                output_micros_per_mtok: 2,
                version: 1,
                ..Price::default()
            },
        };
        legacy.rate_limits.clear();
        assert_eq!(Snapshot::new(1, legacy).to_wire().min_protocol_version, 3);
        let mut catalog = sample();
        catalog.rate_limits.clear();
        assert_eq!(Snapshot::new(1, catalog).to_wire().min_protocol_version, 4);
        // Rate limits need a data plane that enforces them.
        assert_eq!(Snapshot::new(1, sample()).to_wire().min_protocol_version, 6);
        // A character price needs a data plane that charges characters.
        let mut speech = sample();
        speech.prices[0].price.per_mchar_micros = 15_000_000;
        assert_eq!(Snapshot::new(1, speech).to_wire().min_protocol_version, 7);
    }

    #[test]
    fn hash_is_independent_of_list_order() {
        let mut a = sample();
        a.keys.push(ApiKey {
            id: "k0".into(),
            ..a.keys[0].clone()
        });
        let mut b = a.clone();
        b.keys.reverse();
        assert_eq!(
            Snapshot::new(1, a).content_hash,
            Snapshot::new(1, b).content_hash
        );
    }

    #[test]
    fn a_node_applies_only_a_version_above_the_one_it_serves() {
        use super::{should_apply, Decision};
        // (served, offered, decision)
        let table = [
            (0, 1, Decision::Apply),
            (7, 8, Decision::Apply),
            (7, 1_000, Decision::Apply),
            (8, 8, Decision::AlreadyServing),
            (8, 7, Decision::Older { served: 8 }),
            (8, 1, Decision::Older { served: 8 }),
            (8, 0, Decision::Older { served: 8 }),
            (0, 0, Decision::Older { served: 0 }),
        ];
        for (served, offered, want) in table {
            assert_eq!(
                should_apply(served, offered),
                want,
                "served {served}, offered {offered}"
            );
        }
        assert_eq!(
            Decision::Older { served: 8 }.to_string(),
            "not newer than the served version 8"
        );
    }
}
