//! The audit log: every admin change writes one row, in the same transaction as the change,
//! with the resource's API view before and after (API views never hold secrets).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};

use super::authz::{Action, Actor};
use super::{page, Page, PageParams, ServiceError, Services};
use crate::store::audit;

/// One change to record.
pub struct Change<'a> {
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub team_id: Option<&'a str>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// The JSON view of an API value for the log.
pub fn view<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

pub async fn record<C: ConnectionTrait>(
    db: &C,
    actor: &Actor,
    change: Change<'_>,
) -> Result<(), ServiceError> {
    audit::Entity::insert(audit::ActiveModel {
        id: Set(modelgate_shared::new_id().to_string()),
        actor_type: Set(actor.kind.to_owned()),
        actor_id: Set(actor.id.clone()),
        actor_role: Set(actor.role.as_str().to_owned()),
        action: Set(change.action.to_owned()),
        resource_type: Set(change.resource_type.to_owned()),
        resource_id: Set(change.resource_id.to_owned()),
        team_id: Set(change.team_id.map(str::to_owned)),
        before: Set(change.before.map(|v| v.to_string())),
        after: Set(change.after.map(|v| v.to_string())),
        request_id: Set(actor.request_id.clone()),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub actor_type: String,
    pub actor_id: String,
    pub actor_role: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub team_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub request_id: String,
    pub created_at: DateTime<Utc>,
}

impl From<audit::Model> for AuditEntry {
    fn from(m: audit::Model) -> Self {
        let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        AuditEntry {
            id: m.id,
            actor_type: m.actor_type,
            actor_id: m.actor_id,
            actor_role: m.actor_role,
            action: m.action,
            resource_type: m.resource_type,
            resource_id: m.resource_id,
            team_id: m.team_id,
            before: parse(m.before),
            after: parse(m.after),
            request_id: m.request_id,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub team_id: Option<String>,
}

/// Audit entries in time order after the cursor. A team-scoped actor sees its team's only.
pub async fn list(
    s: &Services,
    actor: &Actor,
    params: PageParams,
    filter: AuditFilter,
) -> Result<Page<AuditEntry>, ServiceError> {
    actor.require(Action::ReadAudit)?;
    let limit = params.limit()?;
    let mut q = audit::Entity::find().order_by_asc(audit::Column::Id);
    if let Some(after) = &params.after {
        q = q.filter(audit::Column::Id.gt(after.as_str()));
    }
    if let Some(team) = actor.scope() {
        q = q.filter(audit::Column::TeamId.eq(team));
    }
    if let Some(v) = &filter.resource_type {
        q = q.filter(audit::Column::ResourceType.eq(v.as_str()));
    }
    if let Some(v) = &filter.resource_id {
        q = q.filter(audit::Column::ResourceId.eq(v.as_str()));
    }
    if let Some(v) = &filter.actor_id {
        q = q.filter(audit::Column::ActorId.eq(v.as_str()));
    }
    if let Some(v) = &filter.action {
        q = q.filter(audit::Column::Action.eq(v.as_str()));
    }
    if let Some(v) = &filter.team_id {
        q = q.filter(audit::Column::TeamId.eq(v.as_str()));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(rows, limit, |r| r.id.clone(), AuditEntry::from))
}
