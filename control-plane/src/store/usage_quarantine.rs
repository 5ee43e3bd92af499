//! A usage event ingest refused to count, kept as received with the reporting node and the
//! reason (`service::usage::quarantine`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_quarantine")]
pub struct Model {
    /// UUIDv7 made at quarantine: the listing's order and cursor.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The event's own id (unique: a replay quarantines nothing twice).
    pub event_id: String,
    /// The node that reported the batch.
    pub node_id: String,
    pub reason: String,
    /// The event as received, as JSON.
    pub event: String,
    pub quarantined_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
