//! Teams.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

use super::{page, require_name, unique_violation, Page, PageParams, ServiceError, Services};
use crate::store::team;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    pub name: String,
}

#[derive(Debug, Serialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<team::Model> for Team {
    fn from(m: team::Model) -> Self {
        Team {
            id: m.id,
            name: m.name,
            created_at: m.created_at,
        }
    }
}

pub async fn create(s: &Services, input: CreateTeam) -> Result<Team, ServiceError> {
    let name = require_name("name", &input.name)?;
    let row = team::ActiveModel {
        id: Set(modelgate_shared::new_id().to_string()),
        name: Set(name),
        created_at: Set(Utc::now()),
    };
    let model = team::Entity::insert(row)
        .exec_with_returning(&s.db)
        .await
        .map_err(|e| unique_violation(e, "a team with this name"))?;
    Ok(model.into())
}

pub async fn get(s: &Services, id: &str) -> Result<team::Model, ServiceError> {
    team::Entity::find_by_id(id)
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("team `{id}`")))
}

pub async fn list(s: &Services, params: PageParams) -> Result<Page<Team>, ServiceError> {
    let limit = params.limit()?;
    let mut q = team::Entity::find().order_by_asc(team::Column::Id);
    if let Some(after) = &params.after {
        q = q.filter(team::Column::Id.gt(after.as_str()));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(rows, limit, |r| r.id.clone(), Team::from))
}
