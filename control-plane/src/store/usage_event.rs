//! One stored usage event (unique by id).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Commit-ordered ingest sequence: the cursor of pull consumers and exporters.
    pub seq: Option<i64>,
    pub schema_version: i32,
    pub request_id: String,
    pub started_at_ms: i64,
    pub first_byte_at_ms: i64,
    pub ended_at_ms: i64,
    pub node_id: String,
    pub region: String,
    pub key_id: String,
    pub team_id: String,
    pub user_id: String,
    pub application: String,
    pub environment: String,
    pub endpoint: String,
    pub requested_model: String,
    pub provider_id: String,
    pub served_model: String,
    pub deployment_id: String,
    /// JSON array of attempts.
    pub attempts: String,
    pub status: i32,
    pub error_class: Option<String>,
    pub error_message: String,
    pub latency_us: i64,
    pub ttfb_us: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub reasoning_tokens: i64,
    pub images: i64,
    pub media_ms: i64,
    /// Characters of text-to-speech input.
    pub characters: i64,
    pub cost_micros: i64,
    pub price_version: i64,
    pub streamed: bool,
    pub estimated: bool,
    pub fallback_used: bool,
    pub traffic_class: String,
    pub cost_flag: String,
    pub cache_hit: bool,
    pub trace_id: String,
    pub ingested_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
