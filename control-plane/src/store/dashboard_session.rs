//! A dashboard session (`dashboard::session`): hashes only, never the cookie or the token.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dashboard_sessions")]
pub struct Model {
    /// SHA-256 (hex) of the session id the browser's cookie holds.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_hash: String,
    /// SHA-256 (hex) of the admin token it signed in with, as `admin_tokens.token_hash`.
    pub token_hash: String,
    /// Unix milliseconds of sign-in and of the last request (refreshed at most once a minute).
    pub created_at_ms: i64,
    pub last_used_at_ms: i64,
    /// The message for the session's next page, sealed (bound to this row).
    pub flash: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
