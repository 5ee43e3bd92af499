//! Gateway keys: create (secret returned once), list, revoke.

use chrono::{DateTime, Utc};
use modelgate_shared::keys;
use modelgate_shared::snapshot::Environment;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};

use super::{page, require_name, teams, Page, PageParams, ServiceError, Services};
use crate::store::api_key;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub team_id: String,
    pub name: String,
    #[serde(default)]
    pub environment: Option<String>,
    /// Model aliases the key may use; empty or absent means all.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
pub struct Key {
    pub id: String,
    pub team_id: String,
    pub name: String,
    pub prefix: String,
    pub environment: String,
    pub allowed_models: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A created key: the only time the secret is returned.
#[derive(Debug, Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: Key,
    pub key_secret: String,
}

impl From<api_key::Model> for Key {
    fn from(m: api_key::Model) -> Self {
        Key {
            id: m.id,
            team_id: m.team_id,
            name: m.name,
            prefix: m.prefix,
            environment: m.environment,
            allowed_models: serde_json::from_str(&m.allowed_models).unwrap_or_default(),
            expires_at: m.expires_at,
            revoked_at: m.revoked_at,
            created_at: m.created_at,
        }
    }
}

pub async fn create(s: &Services, input: CreateKey) -> Result<CreatedKey, ServiceError> {
    let name = require_name("name", &input.name)?;
    let environment: Environment = match input.environment.as_deref() {
        None => Environment::Dev,
        Some(e) => e.parse().map_err(|_| {
            ServiceError::invalid("environment", "must be one of dev, staging, prod")
        })?,
    };
    for (i, m) in input.allowed_models.iter().enumerate() {
        if m.trim().is_empty() {
            return Err(ServiceError::invalid(
                &format!("allowed_models[{i}]"),
                "must not be empty",
            ));
        }
    }
    if let Some(exp) = input.expires_at {
        if exp <= Utc::now() {
            return Err(ServiceError::invalid("expires_at", "must be in the future"));
        }
    }
    teams::get(s, &input.team_id).await.map_err(|e| match e {
        ServiceError::NotFound(_) => ServiceError::invalid("team_id", "no such team"),
        other => other,
    })?;

    let secret = keys::generate_key();
    let server_secret = super::bootstrap::key_hash_secret(s).await?;
    let row = api_key::ActiveModel {
        id: Set(modelgate_shared::new_id().to_string()),
        team_id: Set(input.team_id),
        name: Set(name),
        key_hash: Set(hex::encode(keys::hash_key(&server_secret, &secret.secret))),
        prefix: Set(secret.display_prefix),
        environment: Set(environment.as_str().to_owned()),
        allowed_models: Set(serde_json::to_string(&input.allowed_models).unwrap_or_default()),
        expires_at: Set(input.expires_at),
        revoked_at: Set(None),
        created_at: Set(Utc::now()),
    };
    let model = api_key::Entity::insert(row)
        .exec_with_returning(&s.db)
        .await?;
    s.publisher.rebuild(s).await?;
    Ok(CreatedKey {
        key: model.into(),
        key_secret: secret.secret,
    })
}

pub async fn list(s: &Services, params: PageParams) -> Result<Page<Key>, ServiceError> {
    let limit = params.limit()?;
    let mut q = api_key::Entity::find().order_by_asc(api_key::Column::Id);
    if let Some(after) = &params.after {
        q = q.filter(api_key::Column::Id.gt(after.as_str()));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(rows, limit, |r| r.id.clone(), Key::from))
}

/// Revokes a key; the next snapshot (pushed at once) makes every data plane refuse it.
pub async fn revoke(s: &Services, id: &str) -> Result<Key, ServiceError> {
    let model = api_key::Entity::find_by_id(id)
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("key `{id}`")))?;
    let model = if model.revoked_at.is_none() {
        let mut active = model.into_active_model();
        active.revoked_at = Set(Some(Utc::now()));
        active.update(&s.db).await?
    } else {
        model
    };
    s.publisher.rebuild(s).await?;
    Ok(model.into())
}
