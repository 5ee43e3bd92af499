//! A routing group: a model alias and the deployments that serve it.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "routing_groups")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub alias: String,
    /// JSON array of `{provider_id, model, weight, tier}`.
    pub deployments: String,
    pub created_at: DateTimeUtc,
    /// JSON array of backup group aliases, in order.
    pub fallbacks: String,
    /// JSON object: the group's `PolicySpec`.
    pub policy: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
