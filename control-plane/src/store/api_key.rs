//! A gateway key row (the secret itself is never stored).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub team_id: String,
    pub name: String,
    /// Hex HMAC-SHA-256 of the secret under the server key-hash secret.
    pub key_hash: String,
    pub prefix: String,
    pub environment: String,
    /// JSON array of allowed model aliases; empty means all.
    pub allowed_models: String,
    pub expires_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub owner_user_id: Option<String>,
    pub application: String,
    /// public, internal, confidential or restricted.
    pub data_class: String,
    /// JSON array of endpoint families the key may call; empty means all.
    pub endpoint_families: String,
    /// JSON object of caller-defined labels.
    pub metadata: String,
    pub disabled_at: Option<DateTimeUtc>,
    /// After a rotation: the replaced secret's hash, valid until `previous_expires_at`.
    pub previous_key_hash: Option<String>,
    pub previous_expires_at: Option<DateTimeUtc>,
    /// interactive, batch, eval or media: the class of a request that names none.
    pub traffic_class: String,
    /// JSON array of classes a request may ask for by header; empty means any.
    pub allowed_traffic_classes: String,
    /// `route`, `off` or `refresh` (`modelgate_shared::cache::KeyCacheMode`).
    pub cache: String,
    /// Bumped by every update (`If-Match`).
    pub version: i64,
    /// The `key_revision` counter's value taken by the last write (`snapshot::keys`).
    pub revision: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
