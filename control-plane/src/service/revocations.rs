//! Revoked data-plane nodes: an operator refuses a node (`POST /admin/v1/nodes/{id}/revoke`);
//! from then on its connections are dropped after the TLS handshake, every call naming it is
//! refused, and its open config and usage streams end. The list is in the database; each control
//! plane keeps it in memory ([`Revoked`]), updated at once by a local revocation and by polling
//! every [`POLL_INTERVAL`] for revocations made on other control planes.

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, EntityTrait, TransactionTrait};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::audit::{self, Change};
use super::authz::{Action, Actor};
use super::{ServiceError, Services};
use crate::store::node_revocation;

/// How often each control plane re-reads the revoked set.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The revoked node ids, in memory; [`Revoked::subscribe`] wakes on every change.
pub struct Revoked {
    ids: RwLock<HashSet<String>>,
    changed: watch::Sender<u64>,
}

impl Default for Revoked {
    fn default() -> Self {
        Revoked {
            ids: RwLock::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl Revoked {
    pub fn contains(&self, node_id: &str) -> bool {
        self.ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(node_id)
    }

    pub fn insert(&self, node_id: &str) {
        let added = self
            .ids
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node_id.to_owned());
        if added {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    fn replace(&self, ids: HashSet<String>) {
        let mut current = self.ids.write().unwrap_or_else(PoisonError::into_inner);
        if *current != ids {
            *current = ids;
            drop(current);
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Wakes (`changed()`) whenever the set changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeRevocation {
    pub node_id: String,
    pub revoked_at: DateTime<Utc>,
    pub revoked_by: String,
}

impl From<node_revocation::Model> for NodeRevocation {
    fn from(m: node_revocation::Model) -> Self {
        NodeRevocation {
            node_id: m.node_id,
            revoked_at: m.revoked_at,
            revoked_by: m.revoked_by,
        }
    }
}

/// Revokes `node_id` (org admins only; audited). Revoking twice keeps the first record.
pub async fn revoke(
    s: &Services,
    actor: &Actor,
    node_id: &str,
) -> Result<NodeRevocation, ServiceError> {
    actor.require(Action::ManageOrg)?;
    if node_id.trim().is_empty() || node_id.len() > 256 {
        return Err(ServiceError::invalid("id", "a node id"));
    }
    let txn = s.db.begin().await?;
    node_revocation::Entity::insert(node_revocation::ActiveModel {
        node_id: Set(node_id.to_owned()),
        revoked_at: Set(s.clock.now()),
        revoked_by: Set(actor.id.clone()),
    })
    .on_conflict(
        OnConflict::column(node_revocation::Column::NodeId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    let row = node_revocation::Entity::find_by_id(node_id)
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("revocation of node `{node_id}`")))?;
    let after = NodeRevocation::from(row);
    audit::record(
        &txn,
        actor,
        Change {
            action: "node.revoke",
            resource_type: "node",
            resource_id: node_id,
            team_id: None,
            before: None,
            after: audit::view(&after),
        },
    )
    .await?;
    txn.commit().await?;
    s.revoked.insert(node_id);
    tracing::warn!(node = %node_id, "data-plane node revoked");
    Ok(after)
}

/// Reads the revoked set from the database into memory.
pub async fn load(s: &Services) -> Result<(), ServiceError> {
    let ids = node_revocation::Entity::find()
        .all(&s.db)
        .await?
        .into_iter()
        .map(|r| r.node_id)
        .collect();
    s.revoked.replace(ids);
    Ok(())
}

/// Re-reads the revoked set every [`POLL_INTERVAL`] until `shutdown` (revocations made by other
/// control planes on the same database).
pub async fn follow(s: Services, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = load(&s).await {
            tracing::warn!(error = %e, "could not re-read the revoked nodes");
        }
    }
}
