//! Routing groups: an app-facing model alias and the deployments (provider account + provider
//! model) that serve it.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};

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
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoute {
    pub alias: String,
    pub deployments: Vec<DeploymentSpec>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Route {
    pub id: String,
    pub alias: String,
    pub deployments: Vec<DeploymentSpec>,
    pub created_at: DateTime<Utc>,
}

impl From<routing_group::Model> for Route {
    fn from(m: routing_group::Model) -> Self {
        Route {
            id: m.id,
            alias: m.alias,
            deployments: serde_json::from_str(&m.deployments).unwrap_or_default(),
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
    let row = routing_group::ActiveModel {
        id: Set(modelgate_shared::new_id().to_string()),
        alias: Set(alias),
        deployments: Set(serde_json::to_string(&input.deployments).unwrap_or_default()),
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
