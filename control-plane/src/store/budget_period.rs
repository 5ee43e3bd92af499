//! A budget's spend in one calendar period. Created on first spend and only ever incremented.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "budget_periods")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub budget_id: String,
    /// Unix seconds of the UTC period start (0 for `total`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub period_start: i64,
    pub spent_micros: i64,
    /// Soft-alert thresholds already sent this period (bit 0 = 50 %, 1 = 80 %, 2 = 100 %).
    pub alerts_fired: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
