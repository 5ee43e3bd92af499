//! One audit log row: who changed what, with before/after (secrets redacted).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// `token` (an admin token) or `system`.
    pub actor_type: String,
    pub actor_id: String,
    pub actor_role: String,
    /// e.g. `key.create`, `key.rotate`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub team_id: Option<String>,
    /// JSON, or null for a create.
    pub before: Option<String>,
    /// JSON, or null for a delete.
    pub after: Option<String>,
    pub request_id: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
