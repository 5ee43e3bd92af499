//! Data-plane nodes as seen on the config stream: the version assigned and the
//! version applied (with content hashes), status, last seen, and for a connected node its
//! request and error rates and whether it drifts (its applied config has differed from its
//! assignment for longer than `Services::config_drift_after`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;

use super::{page, Page, PageParams, ServiceError, Services};
use crate::store::node;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Node {
    pub node_id: String,
    pub labels: BTreeMap<String, String>,
    pub software_version: String,
    /// The version the control plane assigned to the node (0: none yet).
    pub assigned_version: i64,
    pub assigned_hash: String,
    /// The version the node serves, by its hello and its last ACK.
    pub applied_version: i64,
    /// The version this control plane's current config assigns the node (for a connected
    /// node; 0 otherwise), which may not have been sent yet: the node is in sync with every
    /// committed change once `applied_version` reaches it (`modelgate nodes wait`).
    pub target_version: i64,
    pub applied_hash: String,
    pub status: String,
    pub last_error: Option<String>,
    pub connected: bool,
    pub last_seen: DateTime<Utc>,
    /// Connected, and its applied config has differed from its assignment for longer than the
    /// drift bound.
    pub drifting: bool,
    /// Since when its applied config differs from its assignment (connected nodes).
    pub differs_since: Option<DateTime<Utc>>,
    /// Requests per second over the last minute of the node's reports (connected nodes).
    pub request_rate: f64,
    /// 5xx answers per second over the last minute of the node's reports.
    pub error_rate: f64,
}

impl From<node::Model> for Node {
    fn from(m: node::Model) -> Self {
        Node {
            node_id: m.node_id,
            labels: serde_json::from_str(&m.labels).unwrap_or_default(),
            software_version: m.software_version,
            assigned_version: m.assigned_version,
            assigned_hash: m.assigned_hash,
            applied_version: m.applied_version,
            target_version: 0,
            applied_hash: m.applied_hash,
            status: m.status,
            last_error: m.last_error,
            connected: m.connected,
            last_seen: m.last_seen,
            drifting: false,
            differs_since: None,
            request_rate: 0.0,
            error_rate: 0.0,
        }
    }
}

impl Node {
    /// Overlays what the node's open config stream knows now.
    fn with_live(mut self, s: &Services) -> Self {
        if !self.connected {
            return self;
        }
        let bound = chrono::Duration::from_std(s.config_drift_after)
            .unwrap_or(chrono::Duration::seconds(60));
        if let Some(distribution) = s.publisher.distribution() {
            let (published, _) = distribution.for_node(&self.labels);
            self.target_version = i64::try_from(published.version()).unwrap_or(i64::MAX);
        }
        if let Some(live) = s.node_states.view(&self.node_id, s.clock.now(), bound) {
            if let Some((v, h)) = live.assigned {
                self.assigned_version = i64::try_from(v).unwrap_or(i64::MAX);
                self.assigned_hash = h;
            }
            self.applied_version = i64::try_from(live.applied.0).unwrap_or(i64::MAX);
            self.applied_hash = live.applied.1;
            self.drifting = live.drifting;
            self.differs_since = live.drifting_since;
            self.last_seen = self.last_seen.max(live.last_seen);
            self.request_rate = live.request_rate;
            self.error_rate = live.error_rate;
        }
        self
    }
}

/// What a node said in its hello.
pub struct Hello {
    pub node_id: String,
    pub labels: BTreeMap<String, String>,
    pub software_version: String,
    pub current_version: u64,
}

pub async fn connected(
    s: &Services,
    hello: &Hello,
    current_hash: &str,
) -> Result<(), ServiceError> {
    let row = node::ActiveModel {
        assigned_version: Set(0),
        assigned_hash: Set(String::new()),
        applied_hash: Set(current_hash.to_owned()),
        node_id: Set(hello.node_id.clone()),
        labels: Set(serde_json::to_string(&hello.labels).unwrap_or_default()),
        software_version: Set(hello.software_version.clone()),
        applied_version: Set(i64::try_from(hello.current_version).unwrap_or(i64::MAX)),
        status: Set("connected".to_owned()),
        last_error: Set(None),
        connected: Set(true),
        last_seen: Set(Utc::now()),
    };
    node::Entity::insert(row)
        .on_conflict(
            OnConflict::column(node::Column::NodeId)
                .update_columns([
                    node::Column::Labels,
                    node::Column::SoftwareVersion,
                    node::Column::AppliedVersion,
                    node::Column::AppliedHash,
                    node::Column::Status,
                    node::Column::LastError,
                    node::Column::Connected,
                    node::Column::LastSeen,
                ])
                .to_owned(),
        )
        .exec_without_returning(&s.db)
        .await?;
    Ok(())
}

/// Records the version assigned to a node (sent on its stream).
pub async fn assigned(
    s: &Services,
    node_id: &str,
    version: u64,
    hash: &str,
) -> Result<(), ServiceError> {
    node::Entity::update_many()
        .col_expr(
            node::Column::AssignedVersion,
            i64::try_from(version).unwrap_or(i64::MAX).into(),
        )
        .col_expr(node::Column::AssignedHash, hash.to_owned().into())
        .filter(node::Column::NodeId.eq(node_id))
        .exec(&s.db)
        .await?;
    Ok(())
}

/// Records an ACK (`error` is `None`, `hash` the applied content hash) or a NACK of `version`.
pub async fn acknowledged(
    s: &Services,
    node_id: &str,
    version: u64,
    hash: Option<&str>,
    error: Option<String>,
) -> Result<(), ServiceError> {
    let mut update = node::Entity::update_many()
        .col_expr(node::Column::LastSeen, Utc::now().into())
        .filter(node::Column::NodeId.eq(node_id));
    update = match error {
        None => update
            .col_expr(
                node::Column::AppliedVersion,
                i64::try_from(version).unwrap_or(i64::MAX).into(),
            )
            .col_expr(node::Column::Status, "acked".into())
            .col_expr(
                node::Column::AppliedHash,
                hash.unwrap_or_default().to_owned().into(),
            )
            .col_expr(node::Column::LastError, Option::<String>::None.into()),
        Some(reason) => update
            .col_expr(node::Column::Status, "nacked".into())
            .col_expr(
                node::Column::LastError,
                Some(format!("version {version}: {reason}")).into(),
            ),
    };
    update.exec(&s.db).await?;
    Ok(())
}

pub async fn disconnected(s: &Services, node_id: &str) -> Result<(), ServiceError> {
    node::Entity::update_many()
        .col_expr(node::Column::Connected, false.into())
        .col_expr(node::Column::LastSeen, Utc::now().into())
        .filter(node::Column::NodeId.eq(node_id))
        .exec(&s.db)
        .await?;
    Ok(())
}

pub async fn list(
    s: &Services,
    actor: &super::authz::Actor,
    params: PageParams,
) -> Result<Page<Node>, ServiceError> {
    actor.require(super::authz::Action::ReadConfig)?;
    let limit = params.limit()?;
    let mut q = node::Entity::find().order_by_asc(node::Column::NodeId);
    if let Some(after) = &params.after {
        q = q.filter(node::Column::NodeId.gt(after.as_str()));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(
        rows,
        limit,
        |r| r.node_id.clone(),
        |r| Node::from(r).with_live(s),
    ))
}
