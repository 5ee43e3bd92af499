//! Usage aggregated per UTC day, key, team, user, model, provider and whether it is check
//! traffic. Updated in the same transaction as the events it counts, only for events actually
//! inserted.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_daily")]
pub struct Model {
    /// `YYYY-MM-DD`, UTC, of the request's start.
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub team_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// The served model, or the requested alias when nothing was served.
    #[sea_orm(primary_key, auto_increment = false)]
    pub model: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub provider_id: String,
    /// Requests of acceptance runs (application `modelgate-check`), counted apart.
    #[sea_orm(primary_key, auto_increment = false)]
    pub check_traffic: bool,
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub reasoning_tokens: i64,
    pub images: i64,
    pub media_ms: i64,
    /// Characters of text-to-speech input.
    pub characters: i64,
    pub cost_micros: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
