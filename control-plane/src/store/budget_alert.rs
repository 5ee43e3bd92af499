//! The soft-budget alert outbox: one row per threshold a budget crossed in a period, written in
//! the ingest transaction that claimed the threshold, delivered by a background worker.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "budget_alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub budget_id: String,
    pub period_start: i64,
    pub threshold_percent: i64,
    pub url: String,
    /// The JSON body, fixed when the threshold was claimed.
    pub body: String,
    pub attempts: i64,
    /// Unix milliseconds before which no attempt is made (backoff).
    pub next_attempt_ms: i64,
    /// A worker that claimed the row owns it until then (several control planes).
    pub claimed_until_ms: i64,
    /// Delivery stops being retried after this time.
    pub give_up_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    pub failed_at_ms: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
