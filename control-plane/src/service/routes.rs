//! Routing groups: an app-facing model alias and the deployments (provider account + provider
//! model) that serve it.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};

use modelgate_shared::cache::{CachePartition, CachePolicy};

use super::audit::{self, Change};
use super::authz::{Action, Actor};
use super::{page, require_name, unique_violation, Page, PageParams, ServiceError, Services};
use crate::store::{provider_account, routing_group};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    pub provider_id: String,
    pub model: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Lower tiers are tried first (default 0).
    #[serde(default)]
    pub tier: u32,
    /// Per data plane: attempts in flight at once (absent or 0: no limit). A deployment at its
    /// limit is passed over for the next one, as if rate limited.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_in_flight: u32,
    /// Per data plane: attempts per minute, as a bucket of that size refilled evenly (absent or
    /// 0: no limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rpm: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// A group's policy; absent fields take the defaults (`RoutePolicy::default`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Retries of the same deployment on a transient failure (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_timeout_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_timeout_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout_ms: Option<u32>,
    /// TCP and TLS connect timeout to the group's providers (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u32>,
    /// A fallback may cost at most this factor of the primary's price (default 1.0), in
    /// thousandths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_factor_milli: Option<u32>,
    /// Consecutive failures that eject a deployment (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eject_after: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_cooldown_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cooldown_ms: Option<u32>,
    /// weighted (default), least_in_flight, lowest_latency or lowest_cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb: Option<String>,
    /// The most sensitive data class the group may receive (public, internal, confidential,
    /// restricted; default restricted = any). Keys of a more sensitive class cannot reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_data_class: Option<String>,
    /// When a request is translated to another provider's wire format, drop parameters the
    /// target cannot carry instead of answering 400 naming them (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_unsupported: Option<bool>,
    /// A deployment without a catalog price, or a request under a hard budget whose cost
    /// cannot be bounded: `reject` (default; the client gets a clear error, nothing is sent
    /// upstream) or `allow_and_flag` (served without a reservation, the usage row flagged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_price: Option<String>,
    /// The group's exact-match response cache (absent: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
}

/// A group's response cache: identical requests (same alias, same request in canonical form,
/// same partition) are answered from a stored answer without an upstream call.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// Answers are looked up and stored (default false).
    #[serde(default)]
    pub enabled: bool,
    /// Seconds a stored answer is served (default 3600, at most 2592000 = 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u32>,
    /// Whose requests share answers: `team` (default; another team never receives them),
    /// `key`, `user` (the key's owner) or `none` (the whole organisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Also cache requests that are not deterministic (neither `temperature` 0 nor a `seed`;
    /// default false). Embeddings are always cacheable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_non_deterministic: Option<bool>,
    /// What a hit costs, in millionths of the original answer's cost (default 0: free;
    /// 1000000: the full price). Never counted as upstream spend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_cost_ppm: Option<u32>,
}

impl CacheSpec {
    fn resolve(&self) -> CachePolicy {
        let d = CachePolicy::default();
        CachePolicy {
            enabled: self.enabled,
            ttl_s: self.ttl_s.unwrap_or(d.ttl_s),
            partition: self
                .partition
                .as_deref()
                .and_then(CachePartition::parse)
                .unwrap_or(d.partition),
            allow_non_deterministic: self
                .allow_non_deterministic
                .unwrap_or(d.allow_non_deterministic),
            hit_cost_ppm: self.hit_cost_ppm.unwrap_or(d.hit_cost_ppm),
        }
    }

    fn validate(&self) -> Result<(), ServiceError> {
        if let Some(ttl) = self.ttl_s {
            if ttl == 0 || ttl > CachePolicy::MAX_TTL_S {
                return Err(ServiceError::invalid(
                    "policy.cache.ttl_s",
                    format!("must be between 1 and {}", CachePolicy::MAX_TTL_S),
                ));
            }
        }
        if let Some(p) = &self.partition {
            if CachePartition::parse(p).is_none() {
                return Err(ServiceError::invalid(
                    "policy.cache.partition",
                    "must be one of team, key, user, none",
                ));
            }
        }
        if let Some(ppm) = self.hit_cost_ppm {
            if ppm > CachePolicy::FULL_COST_PPM {
                return Err(ServiceError::invalid(
                    "policy.cache.hit_cost_ppm",
                    "must be between 0 and 1000000 (the full cost)",
                ));
            }
        }
        Ok(())
    }
}

impl PolicySpec {
    pub fn resolve(&self) -> modelgate_shared::snapshot::RoutePolicy {
        let d = modelgate_shared::snapshot::RoutePolicy::default();
        modelgate_shared::snapshot::RoutePolicy {
            max_retries: self.max_retries.unwrap_or(d.max_retries),
            first_byte_timeout_ms: self
                .first_byte_timeout_ms
                .unwrap_or(d.first_byte_timeout_ms),
            total_timeout_ms: self.total_timeout_ms.unwrap_or(d.total_timeout_ms),
            stream_idle_timeout_ms: self
                .stream_idle_timeout_ms
                .unwrap_or(d.stream_idle_timeout_ms),
            cost_factor_milli: self.cost_factor_milli.unwrap_or(d.cost_factor_milli),
            eject_after: self.eject_after.unwrap_or(d.eject_after),
            base_cooldown_ms: self.base_cooldown_ms.unwrap_or(d.base_cooldown_ms),
            max_cooldown_ms: self.max_cooldown_ms.unwrap_or(d.max_cooldown_ms),
            lb: self
                .lb
                .as_deref()
                .and_then(modelgate_shared::snapshot::LbStrategy::parse)
                .unwrap_or_default(),
            max_data_class: self.max_data_class.as_deref().map_or(
                d.max_data_class,
                modelgate_shared::snapshot::data_class_rank,
            ),
            connect_timeout_ms: self.connect_timeout_ms.unwrap_or(d.connect_timeout_ms),
            drop_unsupported: self.drop_unsupported.unwrap_or(d.drop_unsupported),
            missing_price: self
                .missing_price
                .as_deref()
                .and_then(modelgate_shared::snapshot::MissingPricePolicy::parse)
                .unwrap_or(d.missing_price),
            cache: self.cache.as_ref().map_or(d.cache, CacheSpec::resolve),
        }
    }

    fn validate(&self) -> Result<(), ServiceError> {
        let check = |param: &str, v: Option<u32>, min: u32, max: u32| match v {
            Some(v) if v < min || v > max => Err(ServiceError::invalid(
                &format!("policy.{param}"),
                format!("must be between {min} and {max}"),
            )),
            _ => Ok(()),
        };
        check("max_retries", self.max_retries, 0, 5)?;
        check(
            "first_byte_timeout_ms",
            self.first_byte_timeout_ms,
            1,
            3_600_000,
        )?;
        check("total_timeout_ms", self.total_timeout_ms, 1, 3_600_000)?;
        check(
            "stream_idle_timeout_ms",
            self.stream_idle_timeout_ms,
            1,
            3_600_000,
        )?;
        check("connect_timeout_ms", self.connect_timeout_ms, 1, 600_000)?;
        check("cost_factor_milli", self.cost_factor_milli, 1, 1_000_000)?;
        check("eject_after", self.eject_after, 1, 1000)?;
        check("base_cooldown_ms", self.base_cooldown_ms, 1, 3_600_000)?;
        check("max_cooldown_ms", self.max_cooldown_ms, 1, 86_400_000)?;
        if let Some(lb) = &self.lb {
            if modelgate_shared::snapshot::LbStrategy::parse(lb).is_none() {
                return Err(ServiceError::invalid(
                    "policy.lb",
                    "must be one of weighted, least_in_flight, lowest_latency, lowest_cost",
                ));
            }
        }
        if let Some(m) = &self.missing_price {
            if modelgate_shared::snapshot::MissingPricePolicy::parse(m).is_none() {
                return Err(ServiceError::invalid(
                    "policy.missing_price",
                    "must be one of reject, allow_and_flag",
                ));
            }
        }
        if let Some(c) = &self.max_data_class {
            if !modelgate_shared::snapshot::DATA_CLASSES.contains(&c.as_str()) {
                return Err(ServiceError::invalid(
                    "policy.max_data_class",
                    "must be one of public, internal, confidential, restricted",
                ));
            }
        }
        if let Some(c) = &self.cache {
            c.validate()?;
        }
        Ok(())
    }
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoute {
    pub alias: String,
    pub deployments: Vec<DeploymentSpec>,
    /// Approved backup groups (existing aliases), tried in order after every tier failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub policy: PolicySpec,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Route {
    pub id: String,
    pub alias: String,
    pub deployments: Vec<DeploymentSpec>,
    pub fallbacks: Vec<String>,
    pub policy: PolicySpec,
    pub created_at: DateTime<Utc>,
}

impl From<routing_group::Model> for Route {
    fn from(m: routing_group::Model) -> Self {
        Route {
            id: m.id,
            alias: m.alias,
            deployments: serde_json::from_str(&m.deployments).unwrap_or_default(),
            fallbacks: serde_json::from_str(&m.fallbacks).unwrap_or_default(),
            policy: serde_json::from_str(&m.policy).unwrap_or_default(),
            created_at: m.created_at,
        }
    }
}

pub async fn create(
    s: &Services,
    actor: &Actor,
    input: CreateRoute,
) -> Result<Route, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let alias = check(s, &input).await?;
    let row = routing_group::ActiveModel {
        id: Set(modelgate_shared::new_id().to_string()),
        alias: Set(alias),
        deployments: Set(serde_json::to_string(&input.deployments).unwrap_or_default()),
        fallbacks: Set(serde_json::to_string(&input.fallbacks).unwrap_or_else(|_| "[]".into())),
        policy: Set(serde_json::to_string(&input.policy).unwrap_or_else(|_| "{}".into())),
        created_at: Set(Utc::now()),
    };
    let txn = s.db.begin().await?;
    let model = routing_group::Entity::insert(row)
        .exec_with_returning(&txn)
        .await
        .map_err(|e| unique_violation(e, "a route with this alias"))?;
    let route = Route::from(model);
    audit::record(
        &txn,
        actor,
        Change {
            action: "route.create",
            resource_type: "route",
            resource_id: &route.id,
            team_id: None,
            before: None,
            after: audit::view(&route),
        },
    )
    .await?;
    txn.commit().await?;
    s.publisher.rebuild(s).await?;
    Ok(route)
}

/// Validates a route's input; returns its alias.
async fn check(s: &Services, input: &CreateRoute) -> Result<String, ServiceError> {
    let alias = require_name("alias", &input.alias)?;
    if input.deployments.is_empty() {
        return Err(ServiceError::invalid(
            "deployments",
            "a routing group needs at least one deployment",
        ));
    }
    for (i, d) in input.deployments.iter().enumerate() {
        require_name(&format!("deployments[{i}].model"), &d.model)?;
        if d.weight == 0 {
            return Err(ServiceError::invalid(
                &format!("deployments[{i}].weight"),
                "must be at least 1",
            ));
        }
        if d.rpm > 10_000_000 {
            return Err(ServiceError::invalid(
                &format!("deployments[{i}].rpm"),
                "must be at most 10000000",
            ));
        }
        let exists = provider_account::Entity::find_by_id(d.provider_id.as_str())
            .one(&s.db)
            .await?
            .is_some();
        if !exists {
            return Err(ServiceError::invalid(
                &format!("deployments[{i}].provider_id"),
                "no such provider",
            ));
        }
    }
    input.policy.validate()?;
    for (i, f) in input.fallbacks.iter().enumerate() {
        let param = format!("fallbacks[{i}]");
        if *f == alias {
            return Err(ServiceError::invalid(
                &param,
                "a group cannot fall back to itself",
            ));
        }
        let exists = routing_group::Entity::find()
            .filter(routing_group::Column::Alias.eq(f.as_str()))
            .one(&s.db)
            .await?
            .is_some();
        if !exists {
            return Err(ServiceError::invalid(&param, "no route with this alias"));
        }
    }
    Ok(alias)
}

/// Replaces the deployments, fallbacks and policy of the route `alias` (`PUT /routes/{alias}`;
/// the body's alias must be the same). Audited; published like any change (through a staged
/// rollout when a rollout policy is configured).
pub async fn replace(
    s: &Services,
    actor: &Actor,
    alias: &str,
    input: CreateRoute,
) -> Result<Route, ServiceError> {
    actor.require(Action::ManageOrg)?;
    if input.alias != alias {
        return Err(ServiceError::invalid(
            "alias",
            "must be the alias in the path",
        ));
    }
    let alias = check(s, &input).await?;
    let txn = s.db.begin().await?;
    let existing = routing_group::Entity::find()
        .filter(routing_group::Column::Alias.eq(alias.as_str()))
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("route `{alias}`")))?;
    let before = Route::from(existing.clone());
    let mut row: routing_group::ActiveModel = existing.into();
    row.deployments = Set(serde_json::to_string(&input.deployments).unwrap_or_default());
    row.fallbacks = Set(serde_json::to_string(&input.fallbacks).unwrap_or_else(|_| "[]".into()));
    row.policy = Set(serde_json::to_string(&input.policy).unwrap_or_else(|_| "{}".into()));
    let model = routing_group::Entity::update(row).exec(&txn).await?;
    let route = Route::from(model);
    audit::record(
        &txn,
        actor,
        Change {
            action: "route.update",
            resource_type: "route",
            resource_id: &route.id,
            team_id: None,
            before: audit::view(&before),
            after: audit::view(&route),
        },
    )
    .await?;
    txn.commit().await?;
    s.publisher.rebuild(s).await?;
    Ok(route)
}

pub async fn list(
    s: &Services,
    actor: &Actor,
    params: PageParams,
) -> Result<Page<Route>, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let limit = params.limit()?;
    let mut q = routing_group::Entity::find().order_by_asc(routing_group::Column::Id);
    if let Some(after) = &params.after {
        q = q.filter(routing_group::Column::Id.gt(after.as_str()));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(rows, limit, |r| r.id.clone(), Route::from))
}
