//! The usage event: exactly one per request, successes and rejections alike.

use modelgate_proto::usage::v1 as wire;

/// Why a request did not succeed. Stored as its string form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Refused before forwarding: a rate limit (requests or tokens per minute, concurrent
    /// requests) of the key, its team, its user or the model is reached.
    RateLimited,
}

impl ErrorClass {
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
            Self::RateLimited => "rate_limited",
        }
    }
}

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
    pub error_class: Option<String>,
    pub latency_us: u64,
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
    pub environment: String,
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
    pub error_class: Option<String>,
    pub error_message: String,
    pub latency_us: u64,
    pub ttfb_us: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_tokens: u64,
    pub images: u64,
    pub media_ms: u64,
    pub cost_micros: i64,
    pub price_version: u64,
    pub streamed: bool,
    pub estimated: bool,
    pub fallback_used: bool,
    pub traffic_class: String,
    /// `""`, `"price_missing"` or `"cost_unbounded"` (see the proto field).
    pub cost_flag: String,
}

impl From<&Attempt> for wire::Attempt {
    fn from(a: &Attempt) -> Self {
        wire::Attempt {
            deployment_id: a.deployment_id.clone(),
            provider_id: a.provider_id.clone(),
            model: a.model.clone(),
            status: u32::from(a.status),
            error_class: a.error_class.clone().unwrap_or_default(),
            latency_us: a.latency_us,
        }
    }
}

impl From<wire::Attempt> for Attempt {
    fn from(a: wire::Attempt) -> Self {
        Attempt {
            deployment_id: a.deployment_id,
            provider_id: a.provider_id,
            model: a.model,
            status: u16::try_from(a.status).unwrap_or(u16::MAX),
            error_class: (!a.error_class.is_empty()).then_some(a.error_class),
            latency_us: a.latency_us,
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
            environment: e.environment.clone(),
            endpoint: e.endpoint.clone(),
            requested_model: e.requested_model.clone(),
            provider_id: e.provider_id.clone(),
            served_model: e.served_model.clone(),
            deployment_id: e.deployment_id.clone(),
            attempts: e.attempts.iter().map(wire::Attempt::from).collect(),
            status: u32::from(e.status),
            error_class: e.error_class.clone().unwrap_or_default(),
            error_message: e.error_message.clone(),
            latency_us: e.latency_us,
            ttfb_us: e.ttfb_us,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cached_input_tokens: e.cached_input_tokens,
            reasoning_tokens: e.reasoning_tokens,
            images: e.images,
            media_ms: e.media_ms,
            cost_micros: e.cost_micros,
            price_version: e.price_version,
            streamed: e.streamed,
            estimated: e.estimated,
            fallback_used: e.fallback_used,
            traffic_class: e.traffic_class.clone(),
            cost_flag: e.cost_flag.clone(),
        }
    }
}

impl From<wire::UsageEvent> for UsageEvent {
    fn from(e: wire::UsageEvent) -> Self {
        UsageEvent {
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
            environment: e.environment,
            endpoint: e.endpoint,
            requested_model: e.requested_model,
            provider_id: e.provider_id,
            served_model: e.served_model,
            deployment_id: e.deployment_id,
            attempts: e.attempts.into_iter().map(Attempt::from).collect(),
            status: u16::try_from(e.status).unwrap_or(u16::MAX),
            error_class: (!e.error_class.is_empty()).then_some(e.error_class),
            error_message: e.error_message,
            latency_us: e.latency_us,
            ttfb_us: e.ttfb_us,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cached_input_tokens: e.cached_input_tokens,
            reasoning_tokens: e.reasoning_tokens,
            images: e.images,
            media_ms: e.media_ms,
            cost_micros: e.cost_micros,
            price_version: e.price_version,
            streamed: e.streamed,
            estimated: e.estimated,
            fallback_used: e.fallback_used,
            traffic_class: e.traffic_class,
            cost_flag: e.cost_flag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_event_round_trips_through_the_wire() {
        let e = UsageEvent {
            id: "0190".into(),
            status: 429,
            error_class: Some("rate_limit".into()),
            cost_micros: 12,
            streamed: true,
            schema_version: USAGE_SCHEMA_VERSION,
            region: "eu-west".into(),
            attempts: vec![
                Attempt {
                    deployment_id: "p1/gpt".into(),
                    status: 503,
                    error_class: Some("provider_error".into()),
                    ..Default::default()
                },
                Attempt {
                    deployment_id: "p2/gpt".into(),
                    status: 200,
                    ..Default::default()
                },
            ],
            cached_input_tokens: 3,
            reasoning_tokens: 4,
            images: 1,
            media_ms: 1500,
            fallback_used: true,
            traffic_class: "batch".into(),
            cost_flag: "price_missing".into(),
            ..Default::default()
        };
        assert_eq!(UsageEvent::from(wire::UsageEvent::from(&e)), e);
        let ok = UsageEvent {
            status: 200,
            ..Default::default()
        };
        assert_eq!(
            UsageEvent::from(wire::UsageEvent::from(&ok)).error_class,
            None
        );
    }
}
