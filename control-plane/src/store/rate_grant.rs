//! The rate-limit lease ledger, persisted (see `service::limits::stored`): per limit, measure
//! and data-plane holder, the window it counts in, the cumulative grant, what the holder last
//! reported taken and when its lease ends. The row with the empty holder marks the current
//! window and is what allocations lock.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rate_grants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub limit_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub measure: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub holder: String,
    /// Unix seconds (0 for concurrency slots).
    pub window_start: i64,
    pub granted: i64,
    pub consumed: i64,
    /// Unix milliseconds the lease ends (the database's clock on Postgres).
    pub expires_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
