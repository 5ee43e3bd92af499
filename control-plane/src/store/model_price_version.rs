//! One immutable version of a pricing catalog row. `version` is catalog-wide (numbered by the
//! `price_version` counter), so it alone identifies the prices a usage row was charged.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "model_price_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i64,
    pub model_id: String,
    pub model: String,
    pub provider: String,
    pub family: String,
    pub input_micros_per_mtok: i64,
    pub output_micros_per_mtok: i64,
    pub cached_input_micros_per_mtok: i64,
    pub reasoning_micros_per_mtok: i64,
    pub per_image_micros: i64,
    pub image_prices: String,
    pub per_second_micros: i64,
    /// Micro-USD per 1M input characters (text-to-speech).
    pub per_mchar_micros: i64,
    pub context_window: i64,
    pub max_output_tokens: i64,
    pub status: String,
    /// Equal to `version`.
    pub price_version: i64,
    /// When this version was made.
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
