//! The stored outcome of a create sent with an `Idempotency-Key`, per actor.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub actor_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// `METHOD path` the key was first used with.
    pub route: String,
    /// SHA-256 of the first request body: a reuse with another body is refused.
    pub request_hash: String,
    pub status: i32,
    pub response: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
