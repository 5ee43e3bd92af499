//! Admin API tokens: each carries a role, an optional team scope and an optional expiry. The
//! secret is returned once and stored as SHA-256. Whoever may mint a token may revoke it, and
//! no one else: a team-scoped actor only its team's (another team's is "not found"), and no one
//! a token whose role is above their own.

use chrono::{DateTime, Utc};
use modelgate_shared::keys;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::audit::{self, Change};
use super::authz::{Action, Actor, Role};
use super::{page, require_name, teams, Page, PageParams, ServiceError, Services};
use crate::store::admin_token;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub team_id: Option<String>,
    /// When the token stops working (RFC 3339, in the future); absent: never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Token {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub role: String,
    pub team_id: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// When the token stops working; null: never.
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<admin_token::Model> for Token {
    fn from(m: admin_token::Model) -> Self {
        Token {
            id: m.id,
            name: m.name,
            prefix: m.prefix,
            role: m.role,
            team_id: m.team_id,
            revoked_at: m.revoked_at,
            expires_at: m.expires_at,
            created_at: m.created_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: Token,
    /// Shown once.
    pub token: String,
}

/// Mints a token. Organisation-wide owners/admins may mint any token; a team-scoped owner/admin
/// only tokens scoped to its own team. Nobody grants a role above their own.
pub async fn create(
    s: &Services,
    actor: &Actor,
    input: CreateToken,
) -> Result<CreatedToken, ServiceError> {
    actor.require(Action::ManageTeam)?;
    let name = require_name("name", &input.name)?;
    let role: Role = input.role.parse()?;
    let now = s.clock.now();
    if let Some(exp) = input.expires_at {
        if exp <= now {
            return Err(ServiceError::invalid("expires_at", "must be in the future"));
        }
    }
    let team_id = match (&input.team_id, actor.scope()) {
        (None, Some(_)) => {
            return Err(ServiceError::Forbidden(
                "a team-scoped token may only mint tokens scoped to its team".into(),
            ))
        }
        (Some(t), _) => {
            actor.require_team(t, &format!("team `{t}`"))?;
            teams::find(s, t).await.map_err(|e| match e {
                ServiceError::NotFound(_) => ServiceError::invalid("team_id", "no such team"),
                other => other,
            })?;
            Some(t.clone())
        }
        (None, None) => None,
    };
    if !actor.may_grant(role) {
        return Err(ServiceError::Forbidden(format!(
            "a {} may not grant the {} role",
            actor.role.as_str(),
            role.as_str()
        )));
    }
    let secret = keys::generate_admin_token();
    let txn = s.db.begin().await?;
    let model = admin_token::Entity::insert(admin_token::ActiveModel {
        id: Set(modelgate_shared::new_id().to_string()),
        name: Set(name),
        token_hash: Set(keys::sha256_hex(&secret.secret)),
        prefix: Set(secret.display_prefix),
        role: Set(role.as_str().to_owned()),
        team_id: Set(team_id),
        revoked_at: Set(None),
        expires_at: Set(input.expires_at),
        created_at: Set(now),
    })
    .exec_with_returning(&txn)
    .await?;
    let info = Token::from(model);
    audit::record(
        &txn,
        actor,
        Change {
            action: "token.create",
            resource_type: "admin_token",
            resource_id: &info.id,
            team_id: info.team_id.as_deref(),
            before: None,
            after: audit::view(&info),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(CreatedToken {
        info,
        token: secret.secret,
    })
}

pub async fn list(
    s: &Services,
    actor: &Actor,
    params: PageParams,
) -> Result<Page<Token>, ServiceError> {
    actor.require(Action::ManageTeam)?;
    let limit = params.limit()?;
    let mut q = admin_token::Entity::find().order_by_asc(admin_token::Column::Id);
    if let Some(after) = &params.after {
        q = q.filter(admin_token::Column::Id.gt(after.as_str()));
    }
    if let Some(team) = actor.scope() {
        q = q.filter(admin_token::Column::TeamId.eq(team));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(rows, limit, |r| r.id.clone(), Token::from))
}

pub async fn revoke(s: &Services, actor: &Actor, id: &str) -> Result<Token, ServiceError> {
    actor.require(Action::ManageTeam)?;
    let what = format!("admin token `{id}`");
    let txn = s.db.begin().await?;
    let model = admin_token::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(what.clone()))?;
    match (&model.team_id, actor.scope()) {
        (None, Some(_)) => return Err(ServiceError::NotFound(what)),
        (Some(t), _) => actor.require_team(t, &what)?,
        (None, None) => {}
    }
    // Only a token the actor could have minted (an unknown stored role ranks as owner).
    let role = model.role.parse::<Role>().unwrap_or(Role::Owner);
    if !actor.may_grant(role) {
        return Err(ServiceError::Forbidden(format!(
            "a {} may not revoke a {} token",
            actor.role.as_str(),
            role.as_str()
        )));
    }
    let before = Token::from(model.clone());
    let model = if model.revoked_at.is_none() {
        let mut active = model.into_active_model();
        active.revoked_at = Set(Some(s.clock.now()));
        active.update(&txn).await?
    } else {
        model
    };
    let after = Token::from(model);
    audit::record(
        &txn,
        actor,
        Change {
            action: "token.revoke",
            resource_type: "admin_token",
            resource_id: id,
            team_id: after.team_id.as_deref(),
            before: audit::view(&before),
            after: audit::view(&after),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}
