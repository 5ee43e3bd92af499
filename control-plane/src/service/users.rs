//! Users and their team memberships (with a role per team).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::audit::{self, Change};
use super::authz::{Action, Actor, Role};
use super::{page, teams, unique_violation, Page, PageParams, ServiceError, Services};
use crate::store::{team_member, user};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

impl From<user::Model> for User {
    fn from(m: user::Model) -> Self {
        User {
            id: m.id,
            email: m.email,
            name: m.name,
            version: m.version,
            created_at: m.created_at,
        }
    }
}

fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub async fn create(s: &Services, actor: &Actor, input: CreateUser) -> Result<User, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let email = input.email.trim().to_lowercase();
    if !valid_email(&email) {
        return Err(ServiceError::invalid("email", "must be an email address"));
    }
    let name = input.name.unwrap_or_default().trim().to_owned();
    if name.len() > 200 {
        return Err(ServiceError::invalid(
            "name",
            "must be at most 200 characters",
        ));
    }
    let txn = s.db.begin().await?;
    let model = user::Entity::insert(user::ActiveModel {
        id: Set(modelgate_shared::new_id().to_string()),
        email: Set(email),
        name: Set(name),
        version: Set(1),
        created_at: Set(Utc::now()),
    })
    .exec_with_returning(&txn)
    .await
    .map_err(|e| unique_violation(e, "a user with this email"))?;
    let u = User::from(model);
    audit::record(
        &txn,
        actor,
        Change {
            action: "user.create",
            resource_type: "user",
            resource_id: &u.id,
            team_id: None,
            before: None,
            after: audit::view(&u),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(u)
}

/// Users: all of them, or a scoped actor's team members only.
pub async fn list(
    s: &Services,
    actor: &Actor,
    params: PageParams,
) -> Result<Page<User>, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let limit = params.limit()?;
    let mut q = user::Entity::find().order_by_asc(user::Column::Id);
    if let Some(after) = &params.after {
        q = q.filter(user::Column::Id.gt(after.as_str()));
    }
    if let Some(team) = actor.scope() {
        let members: Vec<String> = team_member::Entity::find()
            .filter(team_member::Column::TeamId.eq(team))
            .all(&s.db)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        q = q.filter(user::Column::Id.is_in(members));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(rows, limit, |r| r.id.clone(), User::from))
}

pub(crate) async fn find(s: &Services, id: &str) -> Result<user::Model, ServiceError> {
    user::Entity::find_by_id(id)
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("user `{id}`")))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub user_id: String,
    pub role: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub team_id: String,
    pub user_id: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

impl From<team_member::Model> for Member {
    fn from(m: team_member::Model) -> Self {
        Member {
            team_id: m.team_id,
            user_id: m.user_id,
            role: m.role,
            created_at: m.created_at,
        }
    }
}

/// Adds a user to a team with a role (or changes the role of a member).
pub async fn add_member(
    s: &Services,
    actor: &Actor,
    team_id: &str,
    input: AddMember,
) -> Result<Member, ServiceError> {
    actor.require(Action::ManageTeam)?;
    actor.require_team(team_id, &format!("team `{team_id}`"))?;
    let role: Role = input.role.parse()?;
    if !actor.may_grant(role) {
        return Err(ServiceError::Forbidden(format!(
            "a {} may not grant the {} role",
            actor.role.as_str(),
            role.as_str()
        )));
    }
    teams::find(s, team_id).await?;
    find(s, &input.user_id).await.map_err(|e| match e {
        ServiceError::NotFound(_) => ServiceError::invalid("user_id", "no such user"),
        other => other,
    })?;
    let txn = s.db.begin().await?;
    let before = team_member::Entity::find_by_id((team_id.to_owned(), input.user_id.clone()))
        .one(&txn)
        .await?;
    let row = team_member::ActiveModel {
        team_id: Set(team_id.to_owned()),
        user_id: Set(input.user_id.clone()),
        role: Set(role.as_str().to_owned()),
        created_at: Set(Utc::now()),
    };
    team_member::Entity::insert(row)
        .on_conflict(
            sea_orm::sea_query::OnConflict::columns([
                team_member::Column::TeamId,
                team_member::Column::UserId,
            ])
            .update_column(team_member::Column::Role)
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    let after = team_member::Entity::find_by_id((team_id.to_owned(), input.user_id.clone()))
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound("membership".into()))?;
    let member = Member::from(after);
    audit::record(
        &txn,
        actor,
        Change {
            action: "team.member.set",
            resource_type: "team_member",
            resource_id: &format!("{team_id}/{}", input.user_id),
            team_id: Some(team_id),
            before: before.map(Member::from).as_ref().and_then(audit::view),
            after: audit::view(&member),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(member)
}

pub async fn members(
    s: &Services,
    actor: &Actor,
    team_id: &str,
) -> Result<Vec<Member>, ServiceError> {
    actor.require(Action::ReadConfig)?;
    actor.require_team(team_id, &format!("team `{team_id}`"))?;
    teams::find(s, team_id).await?;
    let rows = team_member::Entity::find()
        .filter(team_member::Column::TeamId.eq(team_id))
        .order_by_asc(team_member::Column::UserId)
        .limit(10_000)
        .all(&s.db)
        .await?;
    Ok(rows.into_iter().map(Member::from).collect())
}
