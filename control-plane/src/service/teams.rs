//! Teams: the unit that owns keys, members, usage and budgets.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::audit::{self, Change};
use super::authz::{Action, Actor};
use super::{page, require_name, unique_violation, Page, PageParams, ServiceError, Services};
use crate::store::team;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

impl From<team::Model> for Team {
    fn from(m: team::Model) -> Self {
        Team {
            id: m.id,
            name: m.name,
            version: m.version,
            created_at: m.created_at,
        }
    }
}

pub async fn create(s: &Services, actor: &Actor, input: CreateTeam) -> Result<Team, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let name = require_name("name", &input.name)?;
    let row = team::ActiveModel {
        id: Set(modelgate_shared::new_id().to_string()),
        name: Set(name),
        created_at: Set(Utc::now()),
        version: Set(1),
    };
    let txn = s.db.begin().await?;
    let model = team::Entity::insert(row)
        .exec_with_returning(&txn)
        .await
        .map_err(|e| unique_violation(e, "a team with this name"))?;
    let team = Team::from(model);
    audit::record(
        &txn,
        actor,
        Change {
            action: "team.create",
            resource_type: "team",
            resource_id: &team.id,
            team_id: Some(&team.id),
            before: None,
            after: audit::view(&team),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(team)
}

/// A team by id, as the actor may see it (another team is not found for a scoped actor).
pub async fn get(s: &Services, actor: &Actor, id: &str) -> Result<Team, ServiceError> {
    actor.require(Action::ReadConfig)?;
    actor.require_team(id, &format!("team `{id}`"))?;
    Ok(find(s, id).await?.into())
}

pub(crate) async fn find(s: &Services, id: &str) -> Result<team::Model, ServiceError> {
    team::Entity::find_by_id(id)
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("team `{id}`")))
}

pub async fn list(
    s: &Services,
    actor: &Actor,
    params: PageParams,
) -> Result<Page<Team>, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let limit = params.limit()?;
    let mut q = team::Entity::find().order_by_asc(team::Column::Id);
    if let Some(after) = &params.after {
        q = q.filter(team::Column::Id.gt(after.as_str()));
    }
    if let Some(own) = actor.scope() {
        q = q.filter(team::Column::Id.eq(own));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(rows, limit, |r| r.id.clone(), Team::from))
}
