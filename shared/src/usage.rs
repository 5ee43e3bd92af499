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
        }
    }
}

/// One request's usage record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageEvent {
    /// UUIDv7, the idempotency key end to end.
    pub id: String,
    pub request_id: String,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub node_id: String,
    pub key_id: String,
    pub team_id: String,
    pub endpoint: String,
    pub requested_model: String,
    pub provider_id: String,
    pub served_model: String,
    pub status: u16,
    /// `None` on success.
    pub error_class: Option<String>,
    pub error_message: String,
    pub latency_us: u64,
    pub ttfb_us: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micros: i64,
    pub price_version: u64,
    pub streamed: bool,
    pub estimated: bool,
}

impl From<&UsageEvent> for wire::UsageEvent {
    fn from(e: &UsageEvent) -> Self {
        wire::UsageEvent {
            id: e.id.clone(),
            request_id: e.request_id.clone(),
            started_at_ms: e.started_at_ms,
            ended_at_ms: e.ended_at_ms,
            node_id: e.node_id.clone(),
            key_id: e.key_id.clone(),
            team_id: e.team_id.clone(),
            endpoint: e.endpoint.clone(),
            requested_model: e.requested_model.clone(),
            provider_id: e.provider_id.clone(),
            served_model: e.served_model.clone(),
            status: u32::from(e.status),
            error_class: e.error_class.clone().unwrap_or_default(),
            error_message: e.error_message.clone(),
            latency_us: e.latency_us,
            ttfb_us: e.ttfb_us,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cost_micros: e.cost_micros,
            price_version: e.price_version,
            streamed: e.streamed,
            estimated: e.estimated,
        }
    }
}

impl From<wire::UsageEvent> for UsageEvent {
    fn from(e: wire::UsageEvent) -> Self {
        UsageEvent {
            id: e.id,
            request_id: e.request_id,
            started_at_ms: e.started_at_ms,
            ended_at_ms: e.ended_at_ms,
            node_id: e.node_id,
            key_id: e.key_id,
            team_id: e.team_id,
            endpoint: e.endpoint,
            requested_model: e.requested_model,
            provider_id: e.provider_id,
            served_model: e.served_model,
            status: u16::try_from(e.status).unwrap_or(u16::MAX),
            error_class: (!e.error_class.is_empty()).then_some(e.error_class),
            error_message: e.error_message,
            latency_us: e.latency_us,
            ttfb_us: e.ttfb_us,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cost_micros: e.cost_micros,
            price_version: e.price_version,
            streamed: e.streamed,
            estimated: e.estimated,
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
