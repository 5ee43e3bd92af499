//! Usage events as CloudEvents 1.0 (JSON format): `id` is the usage event id (stable across
//! redeliveries, so consumers deduplicate by it), `subject` the team.

use serde::Serialize;

use crate::service::usage::UsageRow;

pub const EVENT_TYPE: &str = "dev.modelgate.usage.v1";
/// The media type of a JSON array of CloudEvents (batched content mode).
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

#[derive(Debug, Serialize)]
pub struct CloudEvent<'a> {
    pub specversion: &'static str,
    pub id: &'a str,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub subject: &'a str,
    pub time: String,
    pub datacontenttype: &'static str,
    pub data: &'a UsageRow,
}

impl<'a> CloudEvent<'a> {
    pub fn of(row: &'a UsageRow) -> Self {
        let time = chrono::DateTime::from_timestamp_millis(row.ended_at_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        CloudEvent {
            specversion: "1.0",
            id: &row.id,
            source: format!("/modelgate/nodes/{}", row.node_id),
            event_type: EVENT_TYPE,
            subject: &row.team_id,
            time,
            datacontenttype: "application/json",
            data: row,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_row_becomes_a_cloudevent_keyed_by_its_id() {
        let row: UsageRow = crate::store::usage_event::Model {
            id: "0190-abc".into(),
            seq: Some(7),
            team_id: "team-1".into(),
            node_id: "dp-1".into(),
            ended_at_ms: 1_700_000_000_123,
            attempts: "[]".into(),
            ..test_model()
        }
        .into();
        let v = serde_json::to_value(CloudEvent::of(&row)).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "0190-abc");
        assert_eq!(v["type"], EVENT_TYPE);
        assert_eq!(v["subject"], "team-1");
        assert_eq!(v["source"], "/modelgate/nodes/dp-1");
        assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["data"]["seq"], 7);
    }

    fn test_model() -> crate::store::usage_event::Model {
        crate::store::usage_event::Model {
            id: String::new(),
            seq: None,
            schema_version: 2,
            request_id: String::new(),
            started_at_ms: 0,
            first_byte_at_ms: 0,
            ended_at_ms: 0,
            node_id: String::new(),
            region: String::new(),
            key_id: String::new(),
            team_id: String::new(),
            user_id: String::new(),
            application: String::new(),
            environment: String::new(),
            endpoint: String::new(),
            requested_model: String::new(),
            provider_id: String::new(),
            served_model: String::new(),
            deployment_id: String::new(),
            attempts: String::new(),
            status: 200,
            error_class: None,
            error_message: String::new(),
            latency_us: 0,
            ttfb_us: 0,
            input_tokens: 0,
            output_tokens: 0,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
            images: 0,
            media_ms: 0,
            characters: 0,
            cost_micros: 0,
            price_version: 0,
            streamed: false,
            estimated: false,
            fallback_used: false,
            traffic_class: String::new(),
            cost_flag: String::new(),
            cache_hit: false,
            trace_id: String::new(),
            ingested_at: chrono::DateTime::default(),
        }
    }
}
