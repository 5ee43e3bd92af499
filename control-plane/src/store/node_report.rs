//! A node's traffic report or NACK as received by one replica, for the replica that drives
//! rollouts (`rollout::shared_reports`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "node_reports")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub node_id: String,
    /// The replica that received it.
    pub replica: String,
    /// When it was received, Unix milliseconds.
    pub at_ms: i64,
    /// `traffic` or `nack`.
    pub kind: String,
    /// The version the node served (traffic) or refused (NACK).
    pub version: i64,
    /// Cumulative since the node started (traffic).
    pub requests: i64,
    pub errors: i64,
    /// A JSON array of cumulative counts per latency bucket (traffic).
    pub latency_buckets: String,
    /// Why the node refused the version (NACK).
    pub reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
