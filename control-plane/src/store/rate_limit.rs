//! A rate limit on one scope (key, team, user or model alias).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rate_limits")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub scope_kind: String,
    pub scope_id: String,
    /// With a key, team or user scope: only this alias counts.
    pub model: Option<String>,
    pub rpm: i64,
    pub tpm: i64,
    pub max_concurrent: i64,
    pub when_unreachable: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
