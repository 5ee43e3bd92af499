//! A usage export destination (HTTP webhook or NATS JetStream subject) and its cursor.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "export_sinks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    /// `webhook` or `nats`.
    pub kind: String,
    pub url: String,
    /// NATS subject (empty for webhooks).
    pub subject: String,
    /// JetStream stream to create for the subject when missing (empty: must exist).
    pub stream: String,
    /// Sealed HMAC signing secret (webhooks).
    pub secret_ciphertext: String,
    /// Ingest sequence of the last event delivered.
    pub cursor: i64,
    pub delivered: i64,
    /// Consecutive failed deliveries.
    pub failures: i64,
    pub last_error: Option<String>,
    pub last_delivery_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
