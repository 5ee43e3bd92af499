//! One stored usage event (unique by id).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
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
    pub status: i32,
    pub error_class: Option<String>,
    pub error_message: String,
    pub latency_us: i64,
    pub ttfb_us: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
    pub price_version: i64,
    pub streamed: bool,
    pub estimated: bool,
    pub ingested_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
