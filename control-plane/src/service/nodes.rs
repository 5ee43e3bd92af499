//! Data-plane nodes as seen on the config stream: applied version, status, last seen.

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
    pub applied_version: i64,
    pub status: String,
    pub last_error: Option<String>,
    pub connected: bool,
    pub last_seen: DateTime<Utc>,
}

impl From<node::Model> for Node {
    fn from(m: node::Model) -> Self {
        Node {
            node_id: m.node_id,
            labels: serde_json::from_str(&m.labels).unwrap_or_default(),
            software_version: m.software_version,
            applied_version: m.applied_version,
            status: m.status,
            last_error: m.last_error,
            connected: m.connected,
            last_seen: m.last_seen,
        }
    }
}

/// What a node said in its hello.
pub struct Hello {
    pub node_id: String,
    pub labels: BTreeMap<String, String>,
    pub software_version: String,
    pub current_version: u64,
}

pub async fn connected(s: &Services, hello: &Hello) -> Result<(), ServiceError> {
    let row = node::ActiveModel {
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

/// Records an ACK (`error` is `None`) or a NACK of `version`.
pub async fn acknowledged(
    s: &Services,
    node_id: &str,
    version: u64,
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
    Ok(page(rows, limit, |r| r.node_id.clone(), Node::from))
}
