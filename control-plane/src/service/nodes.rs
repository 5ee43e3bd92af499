//! Data-plane nodes as seen on the config stream: the version assigned and the
//! version applied (with content hashes), status, last seen, and for a connected node its
//! request and error rates and whether it drifts (its applied config has differed from its
//! assignment for longer than `Services::config_drift_after`).
//!
//! Across control-plane replicas (Postgres) every replica answers for the whole fleet: a node's
//! row in `data_plane_nodes` names the replica it is connected to, and that replica refreshes
//! the row every [`REFRESH_EVERY`] with what its config stream knows (last seen, rates, since
//! when the applied config differs from the assignment; [`refresh`]). Another replica shows the
//! row as it is, with drift judged against its own bound; a row not refreshed for
//! [`STALE_AFTER`] (its replica died without saying so) shows the node disconnected, as a node
//! whose stream closed. On SQLite (one control plane) nothing is refreshed: the nodes connected
//! here are overlaid from memory, as before.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;

use super::{page, Page, PageParams, ServiceError, Services};
use crate::store::node;

/// How often a replica refreshes the rows of the nodes connected to it (Postgres).
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// A connected node's row not refreshed for this long is shown disconnected: the replica it
/// was connected to is gone (its nodes notice within the 20 s keepalive too, and move).
pub const STALE_AFTER: chrono::Duration = chrono::Duration::seconds(20);

fn rate_milli(rate: f64) -> i64 {
    // Rounded to thousandths; a rate is far below i64's range.
    (rate * 1000.0).round() as i64
}

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
    /// The control-plane replica the node is connected to (or was last), by replica id.
    pub replica: Option<String>,
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
            replica: m.replica,
            drifting: false,
            differs_since: m.differs_since,
            request_rate: m.request_rate_milli as f64 / 1000.0,
            error_rate: m.error_rate_milli as f64 / 1000.0,
        }
    }
}

impl Node {
    /// Overlays what the node's open config stream knows now: from this replica's memory when
    /// the node is connected here, else (replicas sharing a database) from the row its replica
    /// refreshes, shown disconnected once that row is stale.
    fn with_live(mut self, s: &Services) -> Self {
        if !self.connected {
            return self.disconnected();
        }
        let now = s.clock.now();
        let bound = chrono::Duration::from_std(s.config_drift_after)
            .unwrap_or(chrono::Duration::seconds(60));
        if let Some(live) = s.node_states.view(&self.node_id, now, bound) {
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
            self.replica = Some(s.replica.id.clone());
        } else if s.replica.shared_database() {
            if now - self.last_seen > STALE_AFTER {
                self.connected = false;
                return self.disconnected();
            }
            self.drifting = self.differs_since.is_some_and(|t| now - t > bound);
        } else {
            // One control plane: a row it does not hold in memory has no live stream.
            self.differs_since = None;
            self.request_rate = 0.0;
            self.error_rate = 0.0;
        }
        if let Some(distribution) = s.publisher.distribution() {
            let (published, _) = distribution.for_node(&self.labels);
            self.target_version = i64::try_from(published.version()).unwrap_or(i64::MAX);
        }
        self
    }

    /// A node with no open stream: no live figures.
    fn disconnected(mut self) -> Self {
        self.differs_since = None;
        self.drifting = false;
        self.request_rate = 0.0;
        self.error_rate = 0.0;
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
        last_seen: Set(s.clock.now()),
        replica: Set(Some(s.replica.id.clone())),
        differs_since: Set(None),
        request_rate_milli: Set(0),
        error_rate_milli: Set(0),
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
                    node::Column::Replica,
                    node::Column::DiffersSince,
                    node::Column::RequestRateMilli,
                    node::Column::ErrorRateMilli,
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
        .col_expr(node::Column::LastSeen, s.clock.now().into())
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

/// The node's stream to this replica closed. A row another replica took over since (the node
/// moved) is left alone.
pub async fn disconnected(s: &Services, node_id: &str) -> Result<(), ServiceError> {
    node::Entity::update_many()
        .col_expr(node::Column::Connected, false.into())
        .col_expr(node::Column::LastSeen, s.clock.now().into())
        .col_expr(
            node::Column::DiffersSince,
            Option::<DateTime<Utc>>::None.into(),
        )
        .col_expr(node::Column::RequestRateMilli, 0i64.into())
        .col_expr(node::Column::ErrorRateMilli, 0i64.into())
        .filter(node::Column::NodeId.eq(node_id))
        .filter(node::Column::Replica.eq(s.replica.id.as_str()))
        .exec(&s.db)
        .await?;
    Ok(())
}

/// Writes what this replica's config streams know of its nodes into their rows (last seen,
/// rates, since when the applied config differs from the assignment), so the other replicas
/// show them: one transaction of one update per connected node. Rows another replica took
/// over are left alone.
pub async fn refresh(s: &Services) -> Result<(), ServiceError> {
    use sea_orm::TransactionTrait;
    let now = s.clock.now();
    let bound =
        chrono::Duration::from_std(s.config_drift_after).unwrap_or(chrono::Duration::seconds(60));
    let views = s.node_states.views(now, bound);
    if views.is_empty() {
        return Ok(());
    }
    let txn = s.db.begin().await?;
    for (id, live) in views {
        node::Entity::update_many()
            .col_expr(node::Column::LastSeen, now.max(live.last_seen).into())
            .col_expr(node::Column::DiffersSince, live.drifting_since.into())
            .col_expr(
                node::Column::RequestRateMilli,
                rate_milli(live.request_rate).into(),
            )
            .col_expr(
                node::Column::ErrorRateMilli,
                rate_milli(live.error_rate).into(),
            )
            .filter(node::Column::NodeId.eq(id.as_str()))
            .filter(node::Column::Replica.eq(s.replica.id.as_str()))
            .filter(node::Column::Connected.eq(true))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// The drift of the nodes connected to other replicas, by their rows: `(node, drifting)` for
/// each one shown connected (its row refreshed within [`STALE_AFTER`]).
pub async fn remote_drift(s: &Services) -> Result<Vec<(String, bool)>, ServiceError> {
    let now = s.clock.now();
    let bound =
        chrono::Duration::from_std(s.config_drift_after).unwrap_or(chrono::Duration::seconds(60));
    let rows = node::Entity::find()
        .filter(node::Column::Connected.eq(true))
        .filter(node::Column::LastSeen.gte(now - STALE_AFTER))
        .all(&s.db)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|r| {
            r.replica.as_deref() != Some(s.replica.id.as_str())
                && !s.node_states.is_connected(&r.node_id)
        })
        .map(|r| {
            let drifting = r.differs_since.is_some_and(|t| now - t > bound);
            (r.node_id, drifting)
        })
        .collect())
}

/// On replicas sharing a database, every [`REFRESH_EVERY`] until `shutdown`: refreshes the rows
/// of this replica's nodes, and sets `modelgate_cp_node_config_drift` of the other replicas'
/// nodes (removed once such a node leaves or moves here). A no-op on SQLite.
pub async fn keep_fresh(s: Services, shutdown: tokio_util::sync::CancellationToken) {
    if !s.replica.shared_database() {
        return;
    }
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = refresh(&s).await {
            tracing::warn!(error = %e, "could not refresh the rows of this replica's nodes");
        }
        match remote_drift(&s).await {
            Ok(remote) => {
                let now: std::collections::HashSet<String> =
                    remote.iter().map(|(n, _)| n.clone()).collect();
                for gone in shown.difference(&now) {
                    if !s.node_states.is_connected(gone) {
                        s.metrics.forget_node_drift(gone);
                    }
                }
                for (node, drifting) in remote {
                    s.metrics.node_drift(&node, drifting);
                }
                shown = now;
            }
            Err(e) => tracing::warn!(error = %e, "could not read the other replicas' nodes"),
        }
    }
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
