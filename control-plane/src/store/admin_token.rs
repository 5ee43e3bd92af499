//! An admin API token (stored hashed).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "admin_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub prefix: String,
    /// owner, admin, member, viewer or billing.
    pub role: String,
    /// Set: the token acts only within this team.
    pub team_id: Option<String>,
    pub revoked_at: Option<DateTimeUtc>,
    /// Set: the token stops working at this instant.
    pub expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
