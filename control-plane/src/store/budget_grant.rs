//! The allocator's ledger, persisted: per budget, period and data-plane holder, the cumulative
//! grant, the consumption last reported and when the lease ends. Written by each allocation
//! call (never per request) and read back when a control plane starts.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "budget_grants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub budget_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub period_start: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub holder: String,
    pub granted_micros: i64,
    pub consumed_micros: i64,
    /// Unix milliseconds (control-plane clock) the lease ends.
    pub expires_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
