//! An operator's rollout action relayed from the replica that received it to the replica that
//! drives rollouts (`rollout::relay`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rollout_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub rollout_id: String,
    /// `promote`, `pause`, `resume` or `rollback`.
    pub action: String,
    pub reason: Option<String>,
    pub requested_at_ms: i64,
    /// When the driving replica took it (null: not yet; the receiver may still withdraw it).
    pub claimed_at_ms: Option<i64>,
    /// `ok`, `not_found`, `conflict` or `error` once carried out.
    pub outcome: Option<String>,
    /// The error's message when the outcome is not `ok`.
    pub message: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
