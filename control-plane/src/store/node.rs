//! A data-plane node as last seen on the config stream.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "data_plane_nodes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub node_id: String,
    /// JSON object of labels.
    pub labels: String,
    pub software_version: String,
    pub applied_version: i64,
    pub status: String,
    pub last_error: Option<String>,
    pub connected: bool,
    pub last_seen: DateTimeUtc,
    /// The version the control plane last assigned to the node (0: none yet).
    pub assigned_version: i64,
    pub assigned_hash: String,
    /// The content hash of the version the node last applied, as it reported it.
    pub applied_hash: String,
    /// The replica the node is connected to (or was last, when not `connected`).
    pub replica: Option<String>,
    /// Since when its applied config differs from its assignment (while connected).
    pub differs_since: Option<DateTimeUtc>,
    /// Requests and 5xx answers per second over the last minute of reports, in thousandths.
    pub request_rate_milli: i64,
    pub error_rate_milli: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
