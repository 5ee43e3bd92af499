//! A staged rollout of one policy change (see `crate::rollout`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rollouts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// running | paused | completed | rolled_back | superseded
    pub status: String,
    /// The plan (JSON) the rollout follows, fixed when it started.
    pub plan: String,
    /// The index of the last wave reached.
    pub wave: i32,
    /// The version of the old track's content (the latest minted for it).
    pub old_version: i64,
    /// The version of the new track's content (the latest minted for it).
    pub new_version: i64,
    pub old_policy_hash: String,
    pub new_policy_hash: String,
    /// Why it paused, rolled back or stopped.
    pub reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub wave_started_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
