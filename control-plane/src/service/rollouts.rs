//! The admin surface of staged rollouts (`/admin/v1/rollouts…`): the rollout policy, the list
//! and detail of rollouts with their waves and gate readings, the diff a pending version would
//! bring, and the operator's promote, pause, resume and rollback. Reading needs `ReadConfig`,
//! changing `ManageOrg`; every change is audited. The engine is `crate::rollout`.

use chrono::{DateTime, Utc};
use modelgate_shared::rollout::{policy_diff, Change, Plan};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, EntityTrait, TransactionTrait};
use serde::Serialize;

use super::audit::{self, Change as AuditChange};
use super::authz::{Action, Actor};
use super::{ServiceError, Services};
use crate::rollout::{self, Reading};
use crate::snapshot::stored_config;
use crate::store::{rollout as row, rollout_policy};

/// The rollout policy in effect.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PolicyView {
    /// `null` when none is configured (every change goes to every node at once).
    #[schema(value_type = Object)]
    pub plan: Option<Plan>,
}

/// One wave of a rollout.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WaveView {
    pub index: usize,
    pub selector: String,
    pub bake_s: u64,
    /// `done`, `current` or `pending` (`done` for every wave of a completed rollout).
    pub state: &'static str,
    /// Connected nodes whose first matching wave this is.
    pub nodes: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RolloutView {
    pub id: String,
    /// `running`, `paused`, `completed` or `rolled_back`.
    pub status: String,
    /// The index of the last wave reached.
    pub wave: i32,
    pub waves: Vec<WaveView>,
    /// The plan the rollout follows (fixed when it started).
    #[schema(value_type = Object)]
    pub plan: serde_json::Value,
    /// The latest version of the old content (nodes outside the waves reached).
    pub old_version: i64,
    /// The latest version of the new content.
    pub new_version: i64,
    /// Why it paused, rolled back or completed early.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub wave_started_at: DateTime<Utc>,
    /// The gates' last reading (a running rollout on this control plane).
    pub gates: Option<Reading>,
}

/// What a rollout changes: the policy resources added, changed or removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DiffView {
    pub id: String,
    pub old_version: i64,
    pub new_version: i64,
    #[schema(value_type = Vec<Object>)]
    pub changes: Vec<Change>,
}

fn view(s: &Services, m: row::Model, live: Option<&rollout::Active>) -> RolloutView {
    let plan: Option<Plan> = serde_json::from_str(&m.plan).ok();
    let reached = usize::try_from(m.wave).unwrap_or(0);
    let completed = m.status == rollout::Status::Completed.as_str();
    let nodes = s.node_states.labels();
    let waves = plan
        .as_ref()
        .map(|p| {
            p.waves
                .iter()
                .enumerate()
                .map(|(i, w)| WaveView {
                    index: i,
                    selector: w.selector.to_string(),
                    bake_s: w.bake_s,
                    state: if completed || i < reached {
                        "done"
                    } else if i == reached {
                        "current"
                    } else {
                        "pending"
                    },
                    nodes: nodes
                        .iter()
                        .filter(|(_, l)| {
                            p.waves.iter().position(|w| w.selector.matches(l)) == Some(i)
                        })
                        .map(|(id, _)| id.clone())
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    RolloutView {
        gates: live.filter(|a| a.id == m.id).and_then(|a| a.last.clone()),
        id: m.id,
        status: m.status,
        wave: m.wave,
        waves,
        plan: serde_json::from_str(&m.plan).unwrap_or_default(),
        old_version: m.old_version,
        new_version: m.new_version,
        reason: m.reason,
        created_at: m.created_at,
        updated_at: m.updated_at,
        wave_started_at: m.wave_started_at,
    }
}

pub async fn get_policy(s: &Services, actor: &Actor) -> Result<PolicyView, ServiceError> {
    actor.require(Action::ReadConfig)?;
    Ok(PolicyView {
        plan: rollout::policy(s).await.map(|p| p.as_ref().clone()),
    })
}

/// Configures the rollout policy: from now on a policy change follows `plan` (a rollout in
/// progress keeps the plan it started with).
pub async fn set_policy(
    s: &Services,
    actor: &Actor,
    plan: serde_json::Value,
) -> Result<PolicyView, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let plan: Plan =
        serde_json::from_value(plan).map_err(|e| ServiceError::invalid("plan", e.to_string()))?;
    plan.validate()
        .map_err(|e| ServiceError::invalid("plan", e.to_string()))?;
    let before = rollout::policy(s).await.map(|p| p.as_ref().clone());
    let txn = s.db.begin().await?;
    rollout_policy::Entity::insert(rollout_policy::ActiveModel {
        name: Set("default".into()),
        plan: Set(serde_json::to_string(&plan).unwrap_or_default()),
        updated_at: Set(s.clock.now()),
    })
    .on_conflict(
        OnConflict::column(rollout_policy::Column::Name)
            .update_columns([
                rollout_policy::Column::Plan,
                rollout_policy::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        AuditChange {
            action: "rollout_policy.set",
            resource_type: "rollout_policy",
            resource_id: "default",
            team_id: None,
            before: before.as_ref().and_then(audit::view),
            after: audit::view(&plan),
        },
    )
    .await?;
    txn.commit().await?;
    rollout::set_policy(s, Some(plan.clone())).await?;
    Ok(PolicyView { plan: Some(plan) })
}

/// Removes the rollout policy: from now on every change goes to every node at once. Refused
/// while a rollout is in progress.
pub async fn clear_policy(s: &Services, actor: &Actor) -> Result<PolicyView, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let before = rollout::policy(s).await.map(|p| p.as_ref().clone());
    rollout::set_policy(s, None).await?;
    let txn = s.db.begin().await?;
    rollout_policy::Entity::delete_by_id("default")
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        actor,
        AuditChange {
            action: "rollout_policy.clear",
            resource_type: "rollout_policy",
            resource_id: "default",
            team_id: None,
            before: before.as_ref().and_then(audit::view),
            after: None,
        },
    )
    .await?;
    txn.commit().await?;
    s.publisher.rebuild(s).await?;
    Ok(PolicyView { plan: None })
}

/// The latest rollouts, newest first (at most 100).
pub async fn list(s: &Services, actor: &Actor) -> Result<Vec<RolloutView>, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let live = rollout::active(s).await;
    Ok(rollout::rows(s, 100)
        .await?
        .into_iter()
        .map(|m| view(s, m, live.as_ref()))
        .collect())
}

pub async fn get(s: &Services, actor: &Actor, id: &str) -> Result<RolloutView, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let live = rollout::active(s).await;
    Ok(view(s, rollout::find(s, id).await?, live.as_ref()))
}

/// The policy resources the rollout's new version adds, changes or removes against the old.
pub async fn diff(s: &Services, actor: &Actor, id: &str) -> Result<DiffView, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let m = rollout::find(s, id).await?;
    let version = |v: i64| u64::try_from(v).unwrap_or(0);
    let (Some((old, _)), Some((new, _))) = (
        stored_config(s, version(m.old_version)).await?,
        stored_config(s, version(m.new_version)).await?,
    ) else {
        return Err(ServiceError::NotFound(format!(
            "the stored versions of rollout `{id}`"
        )));
    };
    Ok(DiffView {
        id: m.id,
        old_version: m.old_version,
        new_version: m.new_version,
        changes: policy_diff(&old, &new),
    })
}

/// An operator's action on the rollout in progress (audited).
pub async fn act(
    s: &Services,
    actor: &Actor,
    id: &str,
    action: rollout::Action,
) -> Result<RolloutView, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let before = rollout::find(s, id).await?;
    let reason = match action {
        rollout::Action::Pause => Some(format!("paused by {}", actor.id)),
        rollout::Action::Rollback => Some(format!("rolled back by {}", actor.id)),
        rollout::Action::Promote => Some(format!("promoted by {}", actor.id)),
        rollout::Action::Resume => None,
    };
    let after = rollout::act(s, id, action, reason).await?;
    let name = match action {
        rollout::Action::Promote => "rollout.promote",
        rollout::Action::Pause => "rollout.pause",
        rollout::Action::Resume => "rollout.resume",
        rollout::Action::Rollback => "rollout.rollback",
    };
    let live = rollout::active(s).await;
    let before = view(s, before, None);
    let after = view(s, after, live.as_ref());
    audit::record(
        &s.db,
        actor,
        AuditChange {
            action: name,
            resource_type: "rollout",
            resource_id: id,
            team_id: None,
            before: audit::view(&before),
            after: audit::view(&after),
        },
    )
    .await?;
    Ok(after)
}
