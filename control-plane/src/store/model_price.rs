//! A pricing catalog row, unique per (provider, model). Unit prices are integer micro-USD
//! (per 1M tokens, per image, per second); `price_version` is the catalog-wide version of the
//! row's current prices (see `model_price_version`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "models")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub model: String,
    /// A provider kind, or `*` for any provider.
    pub provider: String,
    pub family: String,
    pub input_micros_per_mtok: i64,
    pub output_micros_per_mtok: i64,
    pub cached_input_micros_per_mtok: i64,
    pub reasoning_micros_per_mtok: i64,
    pub per_image_micros: i64,
    /// JSON object: `"<size>/<quality>"` → micro-USD per image.
    pub image_prices: String,
    pub per_second_micros: i64,
    /// Micro-USD per 1M input characters (text-to-speech).
    pub per_mchar_micros: i64,
    pub context_window: i64,
    pub max_output_tokens: i64,
    pub status: String,
    pub price_version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
