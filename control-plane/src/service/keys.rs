//! Gateway keys and their lifecycle: create (secret returned once), get and list (never the
//! secret), update (optimistic concurrency by version), disable/enable, revoke, and rotate with
//! a grace period during which the old and the new secret both work. Every change is audited in
//! its transaction and pushed to the data planes at once.

use chrono::{DateTime, Duration, Utc};
use modelgate_shared::keys;
use modelgate_shared::routing::TrafficClass;
use modelgate_shared::snapshot::{Environment, KeyCacheMode};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::audit::{self, Change};
use super::authz::{Action, Actor};
use super::{page, require_name, teams, Page, PageParams, ServiceError, Services};
use crate::store::{api_key, team_member};

/// Endpoint families a key can be limited to.
pub const ENDPOINT_FAMILIES: [&str; 9] = [
    "chat",
    "responses",
    "embeddings",
    "images",
    "messages",
    "generate_content",
    "video",
    "audio",
    "models",
];
pub use modelgate_shared::snapshot::DATA_CLASSES;
/// Longest rotation grace period.
const MAX_GRACE_SECONDS: i64 = 30 * 24 * 3600;
const DEFAULT_GRACE_SECONDS: i64 = 3600;
const MAX_METADATA_BYTES: usize = 4096;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
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
    #[serde(default)]
    pub owner_user_id: Option<String>,
    #[serde(default)]
    pub application: Option<String>,
    #[serde(default)]
    pub data_class: Option<String>,
    /// Endpoint families the key may call; empty or absent means all.
    #[serde(default)]
    pub endpoint_families: Vec<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// interactive (default), batch, eval or media: the class of a request that names none.
    #[serde(default)]
    pub traffic_class: Option<String>,
    /// Classes a request may ask for with `x-modelgate-traffic-class`; empty or absent means any.
    #[serde(default)]
    pub allowed_traffic_classes: Vec<String>,
    /// The key's override of its routes' response cache: `route` (default: follow the route's
    /// `policy.cache`), `off` (never looked up nor stored) or `refresh` (never answered from
    /// the cache; its fresh answers are stored).
    #[serde(default)]
    pub cache: Option<String>,
}

/// A partial update: absent fields are left as they are; `expires_at` and `owner_user_id`
/// accept `null` to clear.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default, with = "double_option")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, with = "double_option")]
    pub owner_user_id: Option<Option<String>>,
    #[serde(default)]
    pub application: Option<String>,
    #[serde(default)]
    pub data_class: Option<String>,
    #[serde(default)]
    pub endpoint_families: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub traffic_class: Option<String>,
    #[serde(default)]
    pub allowed_traffic_classes: Option<Vec<String>>,
    /// `route`, `off` or `refresh`.
    #[serde(default)]
    pub cache: Option<String>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// How long the replaced secret keeps working (default 3600, at most 30 days; 0 = stop now).
    #[serde(default)]
    pub grace_seconds: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Key {
    pub id: String,
    pub team_id: String,
    pub name: String,
    pub prefix: String,
    /// active, disabled, revoked or expired.
    pub status: &'static str,
    pub environment: String,
    pub allowed_models: Vec<String>,
    pub endpoint_families: Vec<String>,
    pub owner_user_id: Option<String>,
    pub application: String,
    pub data_class: String,
    pub traffic_class: String,
    pub allowed_traffic_classes: Vec<String>,
    /// The key's response-cache override: `route`, `off` or `refresh`.
    pub cache: String,
    pub metadata: serde_json::Value,
    pub expires_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// After a rotation: when the replaced secret stops working.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

/// A created or rotated key: the only time the secret is returned.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: Key,
    pub key_secret: String,
}

// Hand-written so the key's secret can never reach a log through `{:?}`.
impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key", &self.key)
            .field("key_secret", &"<redacted>")
            .finish()
    }
}

impl From<api_key::Model> for Key {
    fn from(m: api_key::Model) -> Self {
        let now = Utc::now();
        let status = if m.revoked_at.is_some() {
            "revoked"
        } else if m.disabled_at.is_some() {
            "disabled"
        } else if m.expires_at.is_some_and(|t| t <= now) {
            "expired"
        } else {
            "active"
        };
        Key {
            id: m.id,
            team_id: m.team_id,
            name: m.name,
            prefix: m.prefix,
            status,
            environment: m.environment,
            allowed_models: serde_json::from_str(&m.allowed_models).unwrap_or_default(),
            endpoint_families: serde_json::from_str(&m.endpoint_families).unwrap_or_default(),
            owner_user_id: m.owner_user_id,
            application: m.application,
            data_class: m.data_class,
            traffic_class: m.traffic_class,
            allowed_traffic_classes: serde_json::from_str(&m.allowed_traffic_classes)
                .unwrap_or_default(),
            cache: m.cache,
            metadata: serde_json::from_str(&m.metadata).unwrap_or_default(),
            expires_at: m.expires_at,
            disabled_at: m.disabled_at,
            revoked_at: m.revoked_at,
            previous_secret_expires_at: m.previous_expires_at.filter(|t| *t > now),
            version: m.version,
            created_at: m.created_at,
        }
    }
}

fn check_models(param: &str, models: &[String]) -> Result<(), ServiceError> {
    for (i, m) in models.iter().enumerate() {
        if m.trim().is_empty() || m.len() > 256 {
            return Err(ServiceError::invalid(
                &format!("{param}[{i}]"),
                "must be a model alias of 1 to 256 characters",
            ));
        }
    }
    Ok(())
}

fn check_families(families: &[String]) -> Result<(), ServiceError> {
    for (i, f) in families.iter().enumerate() {
        if !ENDPOINT_FAMILIES.contains(&f.as_str()) {
            return Err(ServiceError::invalid(
                &format!("endpoint_families[{i}]"),
                format!("must be one of {}", ENDPOINT_FAMILIES.join(", ")),
            ));
        }
    }
    Ok(())
}

fn check_cache(v: &str) -> Result<(), ServiceError> {
    match KeyCacheMode::parse(v) {
        Some(_) => Ok(()),
        None => Err(ServiceError::invalid(
            "cache",
            "must be one of route, off, refresh",
        )),
    }
}

fn check_data_class(v: &str) -> Result<(), ServiceError> {
    if DATA_CLASSES.contains(&v) {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "data_class",
            format!("must be one of {}", DATA_CLASSES.join(", ")),
        ))
    }
}

fn check_traffic_classes(default: Option<&str>, allowed: &[String]) -> Result<(), ServiceError> {
    let names = || {
        TrafficClass::ALL
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(d) = default {
        if TrafficClass::parse(d).is_none() {
            return Err(ServiceError::invalid(
                "traffic_class",
                format!("must be one of {}", names()),
            ));
        }
    }
    for (i, c) in allowed.iter().enumerate() {
        if TrafficClass::parse(c).is_none() {
            return Err(ServiceError::invalid(
                &format!("allowed_traffic_classes[{i}]"),
                format!("must be one of {}", names()),
            ));
        }
    }
    Ok(())
}

fn check_application(v: &str) -> Result<String, ServiceError> {
    let v = v.trim();
    if v.len() > 200 || v.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "application",
            "must be at most 200 printable characters",
        ));
    }
    Ok(v.to_owned())
}

fn metadata_json(m: &serde_json::Map<String, serde_json::Value>) -> Result<String, ServiceError> {
    let text = serde_json::Value::Object(m.clone()).to_string();
    if text.len() > MAX_METADATA_BYTES {
        return Err(ServiceError::invalid(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes of JSON"),
        ));
    }
    Ok(text)
}

/// A key's owner must be a member of the key's team. A user who does not exist and one who
/// is not a member get the same answer, so a team-scoped actor learns nothing about users
/// outside its team (like `team_id` naming another team: a 400 naming the field).
async fn check_owner(s: &Services, team_id: &str, owner: &str) -> Result<(), ServiceError> {
    let member = team_member::Entity::find_by_id((team_id.to_owned(), owner.to_owned()))
        .one(&s.db)
        .await?;
    match member {
        Some(_) => Ok(()),
        None => Err(ServiceError::invalid(
            "owner_user_id",
            "no such user in the key's team",
        )),
    }
}

pub async fn create(
    s: &Services,
    actor: &Actor,
    input: CreateKey,
) -> Result<CreatedKey, ServiceError> {
    actor.require(Action::ManageKeys)?;
    let name = require_name("name", &input.name)?;
    let environment: Environment = match input.environment.as_deref() {
        None => Environment::Dev,
        Some(e) => e.parse().map_err(|_| {
            ServiceError::invalid("environment", "must be one of dev, staging, prod")
        })?,
    };
    check_models("allowed_models", &input.allowed_models)?;
    check_families(&input.endpoint_families)?;
    let data_class = input.data_class.unwrap_or_else(|| "internal".into());
    check_data_class(&data_class)?;
    let traffic_class = input.traffic_class.unwrap_or_else(|| "interactive".into());
    check_traffic_classes(Some(&traffic_class), &input.allowed_traffic_classes)?;
    let cache = input.cache.unwrap_or_else(|| "route".into());
    check_cache(&cache)?;
    let application = check_application(input.application.as_deref().unwrap_or(""))?;
    let metadata = metadata_json(&input.metadata.unwrap_or_default())?;
    if let Some(exp) = input.expires_at {
        if exp <= Utc::now() {
            return Err(ServiceError::invalid("expires_at", "must be in the future"));
        }
    }
    if input.team_id.trim().is_empty() {
        return Err(ServiceError::invalid("team_id", "is required"));
    }
    // A scoped actor naming another team learns nothing: the team is "not found" either way.
    actor
        .require_team(&input.team_id, "team")
        .map_err(|_| ServiceError::invalid("team_id", "no such team"))?;
    teams::find(s, &input.team_id).await.map_err(|e| match e {
        ServiceError::NotFound(_) => ServiceError::invalid("team_id", "no such team"),
        other => other,
    })?;
    if let Some(owner) = &input.owner_user_id {
        check_owner(s, &input.team_id, owner).await?;
    }

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
        owner_user_id: Set(input.owner_user_id),
        application: Set(application),
        data_class: Set(data_class),
        endpoint_families: Set(
            serde_json::to_string(&input.endpoint_families).unwrap_or_else(|_| "[]".into())
        ),
        metadata: Set(metadata),
        traffic_class: Set(traffic_class),
        allowed_traffic_classes: Set(
            serde_json::to_string(&input.allowed_traffic_classes).unwrap_or_else(|_| "[]".into())
        ),
        cache: Set(cache),
        disabled_at: Set(None),
        previous_key_hash: Set(None),
        previous_expires_at: Set(None),
        version: Set(1),
        revision: Set(0),
    };
    let txn = s.db.begin().await?;
    let mut row = row;
    row.revision = Set(crate::snapshot::keys::take_revision(&txn).await?);
    let model = api_key::Entity::insert(row)
        .exec_with_returning(&txn)
        .await?;
    let key = Key::from(model);
    audit::record(
        &txn,
        actor,
        Change {
            action: "key.create",
            resource_type: "key",
            resource_id: &key.id,
            team_id: Some(&key.team_id),
            before: None,
            after: audit::view(&key),
        },
    )
    .await?;
    txn.commit().await?;
    s.publisher.rebuild(s).await?;
    Ok(CreatedKey {
        key,
        key_secret: secret.secret,
    })
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyFilter {
    pub team_id: Option<String>,
    pub owner_user_id: Option<String>,
}

pub async fn list(
    s: &Services,
    actor: &Actor,
    params: PageParams,
    filter: KeyFilter,
) -> Result<Page<Key>, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let limit = params.limit()?;
    let mut q = api_key::Entity::find().order_by_asc(api_key::Column::Id);
    if let Some(after) = &params.after {
        q = q.filter(api_key::Column::Id.gt(after.as_str()));
    }
    if let Some(team) = actor.scope() {
        q = q.filter(api_key::Column::TeamId.eq(team));
    }
    if let Some(team) = &filter.team_id {
        q = q.filter(api_key::Column::TeamId.eq(team.as_str()));
    }
    if let Some(owner) = &filter.owner_user_id {
        q = q.filter(api_key::Column::OwnerUserId.eq(owner.as_str()));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(rows, limit, |r| r.id.clone(), Key::from))
}

/// Loads a key the actor may see, inside `txn`.
async fn load(
    txn: &DatabaseTransaction,
    actor: &Actor,
    id: &str,
) -> Result<api_key::Model, ServiceError> {
    let what = format!("key `{id}`");
    let model = api_key::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(what.clone()))?;
    actor.require_team(&model.team_id, &what)?;
    Ok(model)
}

pub async fn get(s: &Services, actor: &Actor, id: &str) -> Result<Key, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let what = format!("key `{id}`");
    let model = api_key::Entity::find_by_id(id)
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(what.clone()))?;
    actor.require_team(&model.team_id, &what)?;
    Ok(model.into())
}

/// Applies `change` to a key in one transaction: authorisation, the `If-Match` version check,
/// the version bump, the audit row, then a snapshot rebuild.
async fn change_key<F>(
    s: &Services,
    actor: &Actor,
    id: &str,
    if_match: Option<i64>,
    action: &str,
    change: F,
) -> Result<(api_key::Model, Key), ServiceError>
where
    F: FnOnce(&api_key::Model, &mut api_key::ActiveModel) -> Result<(), ServiceError>,
{
    actor.require(Action::ManageKeys)?;
    let txn = s.db.begin().await?;
    let current = load(&txn, actor, id).await?;
    if let Some(expected) = if_match {
        if expected != current.version {
            return Err(ServiceError::VersionMismatch {
                current: current.version,
            });
        }
    }
    let before = Key::from(current.clone());
    let mut active = current.clone().into_active_model();
    change(&current, &mut active)?;
    active.version = Set(current.version + 1);
    active.revision = Set(crate::snapshot::keys::take_revision(&txn).await?);
    let updated = active.update(&txn).await?;
    let after = Key::from(updated.clone());
    audit::record(
        &txn,
        actor,
        Change {
            action,
            resource_type: "key",
            resource_id: id,
            team_id: Some(&updated.team_id),
            before: audit::view(&before),
            after: audit::view(&after),
        },
    )
    .await?;
    txn.commit().await?;
    s.publisher.rebuild(s).await?;
    Ok((updated, after))
}

pub async fn update(
    s: &Services,
    actor: &Actor,
    id: &str,
    if_match: Option<i64>,
    input: UpdateKey,
) -> Result<Key, ServiceError> {
    // Validate before opening the transaction.
    let name = input
        .name
        .as_deref()
        .map(|n| require_name("name", n))
        .transpose()?;
    if let Some(m) = &input.allowed_models {
        check_models("allowed_models", m)?;
    }
    if let Some(f) = &input.endpoint_families {
        check_families(f)?;
    }
    if let Some(d) = &input.data_class {
        check_data_class(d)?;
    }
    check_traffic_classes(
        input.traffic_class.as_deref(),
        input.allowed_traffic_classes.as_deref().unwrap_or_default(),
    )?;
    if let Some(c) = &input.cache {
        check_cache(c)?;
    }
    let application = input
        .application
        .as_deref()
        .map(check_application)
        .transpose()?;
    let metadata = input.metadata.as_ref().map(metadata_json).transpose()?;
    if let Some(Some(exp)) = input.expires_at {
        if exp <= Utc::now() {
            return Err(ServiceError::invalid("expires_at", "must be in the future"));
        }
    }
    if let Some(Some(owner)) = &input.owner_user_id {
        actor.require(Action::ManageKeys)?;
        // A key's team never changes, so the key read here names the team it will have.
        let key = get(s, actor, id).await?;
        check_owner(s, &key.team_id, owner).await?;
    }
    let (_, key) = change_key(s, actor, id, if_match, "key.update", |current, k| {
        if current.revoked_at.is_some() {
            return Err(ServiceError::Conflict(
                "a revoked key cannot be changed".into(),
            ));
        }
        if let Some(v) = name {
            k.name = Set(v);
        }
        if let Some(v) = &input.allowed_models {
            k.allowed_models = Set(serde_json::to_string(v).unwrap_or_else(|_| "[]".into()));
        }
        if let Some(v) = &input.endpoint_families {
            k.endpoint_families = Set(serde_json::to_string(v).unwrap_or_else(|_| "[]".into()));
        }
        if let Some(v) = input.data_class {
            k.data_class = Set(v);
        }
        if let Some(v) = input.traffic_class {
            k.traffic_class = Set(v);
        }
        if let Some(v) = &input.allowed_traffic_classes {
            k.allowed_traffic_classes =
                Set(serde_json::to_string(v).unwrap_or_else(|_| "[]".into()));
        }
        if let Some(v) = input.cache {
            k.cache = Set(v);
        }
        if let Some(v) = application {
            k.application = Set(v);
        }
        if let Some(v) = metadata {
            k.metadata = Set(v);
        }
        if let Some(v) = input.expires_at {
            k.expires_at = Set(v);
        }
        if let Some(v) = input.owner_user_id {
            k.owner_user_id = Set(v);
        }
        Ok(())
    })
    .await?;
    Ok(key)
}

/// Disables a key (refused everywhere within a second) without revoking it.
pub async fn disable(s: &Services, actor: &Actor, id: &str) -> Result<Key, ServiceError> {
    let (_, key) = change_key(s, actor, id, None, "key.disable", |current, k| {
        if current.disabled_at.is_none() {
            k.disabled_at = Set(Some(Utc::now()));
        }
        Ok(())
    })
    .await?;
    Ok(key)
}

pub async fn enable(s: &Services, actor: &Actor, id: &str) -> Result<Key, ServiceError> {
    let (_, key) = change_key(s, actor, id, None, "key.enable", |current, k| {
        if current.revoked_at.is_some() {
            return Err(ServiceError::Conflict(
                "a revoked key cannot be enabled".into(),
            ));
        }
        k.disabled_at = Set(None);
        Ok(())
    })
    .await?;
    Ok(key)
}

/// Revokes a key for good; the next snapshot (pushed at once) makes every data plane refuse it.
pub async fn revoke(s: &Services, actor: &Actor, id: &str) -> Result<Key, ServiceError> {
    let (_, key) = change_key(s, actor, id, None, "key.revoke", |current, k| {
        if current.revoked_at.is_none() {
            k.revoked_at = Set(Some(Utc::now()));
        }
        Ok(())
    })
    .await?;
    Ok(key)
}

/// Issues a new secret. The replaced one keeps working for the grace period, then stops; a
/// secret replaced earlier and still in its grace period stops at once (one previous at most).
pub async fn rotate(
    s: &Services,
    actor: &Actor,
    id: &str,
    input: Rotate,
) -> Result<CreatedKey, ServiceError> {
    let grace = input.grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
        return Err(ServiceError::invalid(
            "grace_seconds",
            format!("must be between 0 and {MAX_GRACE_SECONDS}"),
        ));
    }
    let secret = keys::generate_key();
    let server_secret = super::bootstrap::key_hash_secret(s).await?;
    let new_hash = hex::encode(keys::hash_key(&server_secret, &secret.secret));
    let prefix = secret.display_prefix.clone();
    let (_, key) = change_key(s, actor, id, None, "key.rotate", |current, k| {
        if current.revoked_at.is_some() {
            return Err(ServiceError::Conflict(
                "a revoked key cannot be rotated".into(),
            ));
        }
        k.previous_key_hash = Set(Some(current.key_hash.clone()));
        k.previous_expires_at = Set(Some(Utc::now() + Duration::seconds(grace)));
        k.key_hash = Set(new_hash);
        k.prefix = Set(prefix);
        Ok(())
    })
    .await?;
    Ok(CreatedKey {
        key,
        key_secret: secret.secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_keys_debug_shows_no_secret() {
        let m = api_key::Model {
            id: "k1".into(),
            team_id: "t1".into(),
            name: "n".into(),
            key_hash: "h".into(),
            prefix: "mg-sk-ver".into(),
            environment: "dev".into(),
            allowed_models: "[]".into(),
            expires_at: None,
            revoked_at: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
            owner_user_id: None,
            application: String::new(),
            data_class: "internal".into(),
            endpoint_families: "[]".into(),
            metadata: "{}".into(),
            disabled_at: None,
            previous_key_hash: None,
            previous_expires_at: None,
            traffic_class: "interactive".into(),
            allowed_traffic_classes: "[]".into(),
            cache: "route".into(),
            version: 1,
            revision: 0,
        };
        let created = CreatedKey {
            key: Key::from(m),
            key_secret: "mg-sk-very-secret-value".into(),
        };
        let shown = format!("{created:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("k1"), "{shown}");
    }
}
