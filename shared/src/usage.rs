//! The usage event: exactly one per request, successes and rejections alike.
//!
//! Fields that hold a closed set of values are enums here ([`ErrorClass`], [`TrafficClass`],
//! [`Environment`], [`CostFlag`]); they become strings only at the edges: the wire
//! (`From<&UsageEvent> for wire::UsageEvent`, [`UsageEvent::encode_wire`] which writes the same
//! bytes without building the wire message, and `TryFrom<wire::UsageEvent>`) and the control
//! plane's database rows. A wire event naming a value this build does not know is not decoded
//! into a guess: [`Undecodable`] says which field held what, so ingest can quarantine it.

mod encode;

use std::fmt;

use modelgate_proto::usage::v1 as wire;
use thiserror::Error;

pub use crate::routing::TrafficClass;
pub use crate::snapshot::Environment;

/// Why a request did not succeed. Its string form (`as_str`) is the one on the wire, in the
/// database and in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Auth,
    Permission,
    NotFound,
    BadRequest,
    PayloadTooLarge,
    ProviderError,
    Timeout,
    ClientCancel,
    Internal,
    /// Refused before forwarding: a hard budget would be crossed. (A request whose cost cannot
    /// be bounded under a hard budget is a `BadRequest`: the client must set `max_tokens`.)
    BudgetExceeded,
    /// Refused before forwarding: the team's prepaid balance (R-4.7, refuse mode) cannot cover
    /// the request's worst-case cost (402). Apart from `BudgetExceeded` because what fixes it is
    /// a top-up, not the next period, and billing reads it apart.
    InsufficientBalance,
    /// Refused before forwarding: a rate limit (requests or tokens per minute, concurrent
    /// requests) of the key, its team, its user or the model is reached.
    RateLimited,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 12] = [
        Self::Auth,
        Self::Permission,
        Self::NotFound,
        Self::BadRequest,
        Self::PayloadTooLarge,
        Self::ProviderError,
        Self::Timeout,
        Self::ClientCancel,
        Self::Internal,
        Self::BudgetExceeded,
        Self::InsufficientBalance,
        Self::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Permission => "permission",
            Self::NotFound => "not_found",
            Self::BadRequest => "bad_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::ProviderError => "provider_error",
            Self::Timeout => "timeout",
            Self::ClientCancel => "client_cancel",
            Self::Internal => "internal",
            Self::BudgetExceeded => "budget_exceeded",
            Self::InsufficientBalance => "insufficient_balance",
            Self::RateLimited => "rate_limited",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an event's cost is not a fully priced, reserved figure. Set only under a group's
/// `allow_and_flag` missing-price policy; on the wire `""`, `"price_missing"` or
/// `"cost_unbounded"`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CostFlag {
    /// The cost is the catalog price of what was used (the common case).
    #[default]
    #[serde(rename = "")]
    None,
    /// Served with no catalog price for the deployment: the cost is 0.
    PriceMissing,
    /// Served under a hard budget without a reservation: no output bound was known.
    CostUnbounded,
}

impl CostFlag {
    pub const ALL: [CostFlag; 3] = [Self::None, Self::PriceMissing, Self::CostUnbounded];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::PriceMissing => "price_missing",
            Self::CostUnbounded => "cost_unbounded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The request header that marks a request as check traffic (`modelgate check` sends it with
/// the value `1`). Such a request is served and charged like any other; its usage event's
/// `application` is [`CHECK_APPLICATION`] in place of the key's, so the request log
/// (`?application=`), exports and dashboards can tell acceptance checks from real traffic.
pub const CHECK_HEADER: &str = "x-modelgate-check";

/// The `application` a check request's usage event carries.
pub const CHECK_APPLICATION: &str = "modelgate-check";

/// The usage event schema this build writes (see `schema_version` in the proto).
pub const USAGE_SCHEMA_VERSION: u32 = 2;

/// One call to an upstream deployment on behalf of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Attempt {
    pub deployment_id: String,
    pub provider_id: String,
    pub model: String,
    /// The upstream's HTTP status; 0 when none arrived.
    pub status: u16,
    /// `None` on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// From the attempt's start until its answer was in hand (a stream's headers).
    pub latency_us: u64,
    /// When the attempt started (Unix ms); 0 in an event from a writer before this field.
    #[serde(default)]
    pub started_at_ms: i64,
    /// Why the attempt failed, in a few words; empty on success (and from older writers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error_message: String,
}

/// One request's usage record. Serialized (JSON) only where an event is kept as received,
/// such as the control plane's usage quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct UsageEvent {
    pub schema_version: u32,
    /// UUIDv7, the idempotency key end to end.
    pub id: String,
    pub request_id: String,
    pub started_at_ms: i64,
    /// 0 when no byte came back.
    pub first_byte_at_ms: i64,
    pub ended_at_ms: i64,
    pub node_id: String,
    pub region: String,
    pub key_id: String,
    pub team_id: String,
    pub user_id: String,
    pub application: String,
    /// The key's environment; `None` for an event without a key, and in schema 1 events.
    pub environment: Option<Environment>,
    /// Endpoint family, e.g. `chat.completions`.
    pub endpoint: String,
    /// The alias the client asked for.
    pub requested_model: String,
    pub provider_id: String,
    pub served_model: String,
    pub deployment_id: String,
    pub attempts: Vec<Attempt>,
    pub status: u16,
    /// `None` on success.
    pub error_class: Option<ErrorClass>,
    pub error_message: String,
    pub latency_us: u64,
    pub ttfb_us: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_tokens: u64,
    pub images: u64,
    pub media_ms: u64,
    /// Characters of input text (text-to-speech).
    pub characters: u64,
    pub cost_micros: i64,
    pub price_version: u64,
    pub streamed: bool,
    pub estimated: bool,
    pub fallback_used: bool,
    /// `None` only in events written before the field existed (schema 1).
    pub traffic_class: Option<TrafficClass>,
    pub cost_flag: CostFlag,
    /// Answered from the response cache: no upstream call; the tokens are the original
    /// answer's, the cost the route's hit cost.
    pub cache_hit: bool,
    /// The request's OpenTelemetry trace id (32 hex digits) when its node exported spans.
    pub trace_id: String,
}

impl From<&Attempt> for wire::Attempt {
    fn from(a: &Attempt) -> Self {
        wire::Attempt {
            deployment_id: a.deployment_id.clone(),
            provider_id: a.provider_id.clone(),
            model: a.model.clone(),
            status: u32::from(a.status),
            error_class: a.error_class.map_or("", ErrorClass::as_str).to_owned(),
            latency_us: a.latency_us,
            started_at_ms: a.started_at_ms,
            error_message: a.error_message.clone(),
        }
    }
}

impl From<&UsageEvent> for wire::UsageEvent {
    fn from(e: &UsageEvent) -> Self {
        wire::UsageEvent {
            schema_version: e.schema_version,
            id: e.id.clone(),
            request_id: e.request_id.clone(),
            started_at_ms: e.started_at_ms,
            first_byte_at_ms: e.first_byte_at_ms,
            ended_at_ms: e.ended_at_ms,
            node_id: e.node_id.clone(),
            region: e.region.clone(),
            key_id: e.key_id.clone(),
            team_id: e.team_id.clone(),
            user_id: e.user_id.clone(),
            application: e.application.clone(),
            environment: e.environment.map_or("", Environment::as_str).to_owned(),
            endpoint: e.endpoint.clone(),
            requested_model: e.requested_model.clone(),
            provider_id: e.provider_id.clone(),
            served_model: e.served_model.clone(),
            deployment_id: e.deployment_id.clone(),
            attempts: e.attempts.iter().map(wire::Attempt::from).collect(),
            status: u32::from(e.status),
            error_class: e.error_class.map_or("", ErrorClass::as_str).to_owned(),
            error_message: e.error_message.clone(),
            latency_us: e.latency_us,
            ttfb_us: e.ttfb_us,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cached_input_tokens: e.cached_input_tokens,
            reasoning_tokens: e.reasoning_tokens,
            images: e.images,
            media_ms: e.media_ms,
            characters: e.characters,
            cost_micros: e.cost_micros,
            price_version: e.price_version,
            streamed: e.streamed,
            estimated: e.estimated,
            fallback_used: e.fallback_used,
            traffic_class: e.traffic_class.map_or("", TrafficClass::as_str).to_owned(),
            cost_flag: e.cost_flag.as_str().to_owned(),
            cache_hit: e.cache_hit,
            trace_id: e.trace_id.clone(),
        }
    }
}

/// A string field of a wire event holding a value this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field} `{value}` is not a value this build knows")]
pub struct UnknownValue {
    pub field: Field,
    pub value: String,
}

/// The typed string fields of a wire event, named as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    ErrorClass,
    Environment,
    TrafficClass,
    CostFlag,
    /// `error_class` of the attempt at this index.
    AttemptErrorClass(usize),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::ErrorClass => f.write_str("error_class"),
            Field::Environment => f.write_str("environment"),
            Field::TrafficClass => f.write_str("traffic_class"),
            Field::CostFlag => f.write_str("cost_flag"),
            Field::AttemptErrorClass(i) => write!(f, "attempts[{i}].error_class"),
        }
    }
}

/// A wire event that names values this build does not know (a newer or a forged writer). It is
/// never decoded into a guess; `event` is what could be read, with each unknown field left at
/// its empty value, kept so ingest can quarantine the event with `unknown` as the reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", describe(.unknown))]
pub struct Undecodable {
    pub event: Box<UsageEvent>,
    /// Never empty.
    pub unknown: Vec<UnknownValue>,
}

fn describe(unknown: &[UnknownValue]) -> String {
    let parts: Vec<String> = unknown.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// Reads one typed field: an empty string is `None`, a known name its value, anything else is
/// noted in `unknown` (and read as `None`).
fn typed<T>(
    value: String,
    field: Field,
    parse: fn(&str) -> Option<T>,
    unknown: &mut Vec<UnknownValue>,
) -> Option<T> {
    if value.is_empty() {
        return None;
    }
    let parsed = parse(&value);
    if parsed.is_none() {
        unknown.push(UnknownValue { field, value });
    }
    parsed
}

impl TryFrom<wire::UsageEvent> for UsageEvent {
    type Error = Undecodable;

    fn try_from(e: wire::UsageEvent) -> Result<Self, Undecodable> {
        let mut unknown = Vec::new();
        let attempts = e
            .attempts
            .into_iter()
            .enumerate()
            .map(|(i, a)| Attempt {
                deployment_id: a.deployment_id,
                provider_id: a.provider_id,
                model: a.model,
                status: u16::try_from(a.status).unwrap_or(u16::MAX),
                error_class: typed(
                    a.error_class,
                    Field::AttemptErrorClass(i),
                    ErrorClass::parse,
                    &mut unknown,
                ),
                latency_us: a.latency_us,
                started_at_ms: a.started_at_ms,
                error_message: a.error_message,
            })
            .collect();
        let event = UsageEvent {
            schema_version: e.schema_version,
            id: e.id,
            request_id: e.request_id,
            started_at_ms: e.started_at_ms,
            first_byte_at_ms: e.first_byte_at_ms,
            ended_at_ms: e.ended_at_ms,
            node_id: e.node_id,
            region: e.region,
            key_id: e.key_id,
            team_id: e.team_id,
            user_id: e.user_id,
            application: e.application,
            environment: typed(
                e.environment,
                Field::Environment,
                |s| s.parse().ok(),
                &mut unknown,
            ),
            endpoint: e.endpoint,
            requested_model: e.requested_model,
            provider_id: e.provider_id,
            served_model: e.served_model,
            deployment_id: e.deployment_id,
            attempts,
            status: u16::try_from(e.status).unwrap_or(u16::MAX),
            error_class: typed(
                e.error_class,
                Field::ErrorClass,
                ErrorClass::parse,
                &mut unknown,
            ),
            error_message: e.error_message,
            latency_us: e.latency_us,
            ttfb_us: e.ttfb_us,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cached_input_tokens: e.cached_input_tokens,
            reasoning_tokens: e.reasoning_tokens,
            images: e.images,
            media_ms: e.media_ms,
            characters: e.characters,
            cost_micros: e.cost_micros,
            price_version: e.price_version,
            streamed: e.streamed,
            estimated: e.estimated,
            fallback_used: e.fallback_used,
            traffic_class: typed(
                e.traffic_class,
                Field::TrafficClass,
                TrafficClass::parse,
                &mut unknown,
            ),
            cost_flag: typed(e.cost_flag, Field::CostFlag, CostFlag::parse, &mut unknown)
                .unwrap_or_default(),
            cache_hit: e.cache_hit,
            trace_id: e.trace_id,
        };
        if unknown.is_empty() {
            Ok(event)
        } else {
            Err(Undecodable {
                event: Box::new(event),
                unknown,
            })
        }
    }
}

#[cfg(test)]
mod tests;
