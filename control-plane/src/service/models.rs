//! The pricing catalog: one row per provider model, integer micro-USD per 1M tokens. Every
//! change bumps the row's price version, which usage rows record.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::audit::{self, Change};
use super::authz::{Action, Actor};
use super::{page, require_name, Page, PageParams, ServiceError, Services};
use crate::store::model_price;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertModel {
    pub model: String,
    pub input_micros_per_mtok: i64,
    pub output_micros_per_mtok: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelPrice {
    pub id: String,
    pub model: String,
    pub input_micros_per_mtok: i64,
    pub output_micros_per_mtok: i64,
    pub price_version: i64,
    pub created_at: DateTime<Utc>,
}

impl From<model_price::Model> for ModelPrice {
    fn from(m: model_price::Model) -> Self {
        ModelPrice {
            id: m.id,
            model: m.model,
            input_micros_per_mtok: m.input_micros_per_mtok,
            output_micros_per_mtok: m.output_micros_per_mtok,
            price_version: m.price_version,
            created_at: m.created_at,
        }
    }
}

/// Creates the price row for a model, or updates it (with a new price version) if it exists.
pub async fn upsert(
    s: &Services,
    actor: &Actor,
    input: UpsertModel,
) -> Result<ModelPrice, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let name = require_name("model", &input.model)?;
    if input.input_micros_per_mtok < 0 {
        return Err(ServiceError::invalid(
            "input_micros_per_mtok",
            "must not be negative",
        ));
    }
    if input.output_micros_per_mtok < 0 {
        return Err(ServiceError::invalid(
            "output_micros_per_mtok",
            "must not be negative",
        ));
    }
    let txn = s.db.begin().await?;
    let existing = model_price::Entity::find()
        .filter(model_price::Column::Model.eq(name.as_str()))
        .one(&txn)
        .await?;
    let before = existing.clone().map(ModelPrice::from);
    let model = match existing {
        Some(row) => {
            let version = row.price_version + 1;
            let mut active = row.into_active_model();
            active.input_micros_per_mtok = Set(input.input_micros_per_mtok);
            active.output_micros_per_mtok = Set(input.output_micros_per_mtok);
            active.price_version = Set(version);
            active.update(&txn).await?
        }
        None => {
            let row = model_price::ActiveModel {
                id: Set(modelgate_shared::new_id().to_string()),
                model: Set(name),
                input_micros_per_mtok: Set(input.input_micros_per_mtok),
                output_micros_per_mtok: Set(input.output_micros_per_mtok),
                price_version: Set(1),
                created_at: Set(Utc::now()),
            };
            model_price::Entity::insert(row)
                .exec_with_returning(&txn)
                .await?
        }
    };
    let price = ModelPrice::from(model);
    audit::record(
        &txn,
        actor,
        Change {
            action: "model.upsert",
            resource_type: "model",
            resource_id: &price.id,
            team_id: None,
            before: before.as_ref().and_then(audit::view),
            after: audit::view(&price),
        },
    )
    .await?;
    txn.commit().await?;
    s.publisher.rebuild(s).await?;
    Ok(price)
}

pub async fn list(
    s: &Services,
    actor: &Actor,
    params: PageParams,
) -> Result<Page<ModelPrice>, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let limit = params.limit()?;
    let mut q = model_price::Entity::find().order_by_asc(model_price::Column::Id);
    if let Some(after) = &params.after {
        q = q.filter(model_price::Column::Id.gt(after.as_str()));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(rows, limit, |r| r.id.clone(), ModelPrice::from))
}

/// Creates a price row only if the model has none (seeding must not bump versions).
pub async fn upsert_if_missing(
    s: &Services,
    model: &str,
    input_micros_per_mtok: i64,
    output_micros_per_mtok: i64,
) -> Result<(), ServiceError> {
    let exists = model_price::Entity::find()
        .filter(model_price::Column::Model.eq(model))
        .one(&s.db)
        .await?
        .is_some();
    if !exists {
        upsert(
            s,
            &Actor::system(),
            UpsertModel {
                model: model.to_owned(),
                input_micros_per_mtok,
                output_micros_per_mtok,
            },
        )
        .await?;
    }
    Ok(())
}
