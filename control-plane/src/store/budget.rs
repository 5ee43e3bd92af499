//! A budget on one scope (key, team, user or environment): a spend budget (`kind = spend`), or a
//! team's prepaid balance (`kind = balance`, see `service::balances`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "budgets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub scope_kind: String,
    pub scope_id: String,
    pub amount_micros: i64,
    pub period: String,
    pub enforcement: String,
    pub when_unreachable: String,
    pub fail_open_allowance_micros: i64,
    pub alert_webhook_url: Option<String>,
    pub created_at: DateTimeUtc,
    /// `spend` | `balance`.
    pub kind: String,
    /// A balance: the ingest sequence when it opened (it is deducted the events stored after).
    pub opened_seq: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
