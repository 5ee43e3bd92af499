//! The pricing catalog: one row per (provider kind, model) with its endpoint family,
//! unit prices in integer micro-USD, limits and status.
//!
//! **Versions.** Every change to a row takes the next number of one catalog-wide counter and
//! appends an immutable row to `model_price_versions`; the catalog row carries that number as
//! its `price_version`, the snapshot carries it to data planes, and every usage row records it.
//! Because the counter is shared by all rows, a version number alone names the exact prices
//! charged (`GET /price-versions/{version}`). Writing a row with the values it already has
//! changes nothing and makes no version.
//!
//! [`import`] turns a LiteLLM price map or a CSV file into catalog rows; [`import_catalog`]
//! diffs them against the catalog and, unless it is a dry run, applies every change in one
//! transaction.

pub mod import;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::audit::{self, Change};
use super::authz::{Action, Actor};
use super::{page, require_name, unique_violation, Page, PageParams, ServiceError, Services};
use crate::store::{counter, model_price, model_price_version};

/// The counter that numbers price versions.
const VERSION_COUNTER: &str = "price_version";

/// Provider kinds a row may price; `*` is any provider.
pub const PROVIDER_KINDS: &[&str] = &[
    "*",
    "openai",
    "anthropic",
    "gemini",
    "azure-openai",
    "openai-compatible",
    "mock",
];

/// Endpoint families.
pub const FAMILIES: &[&str] = &[
    "chat",
    "completions",
    "responses",
    "embeddings",
    "images",
    "audio",
    "video",
    "moderations",
    "rerank",
];

/// Row statuses. A `disabled` row is left out of the snapshot (its model has no price there);
/// a `deprecated` one still prices requests.
pub const STATUSES: &[&str] = &["active", "deprecated", "disabled"];

/// The content of a catalog row: what a version freezes and what an import compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CatalogEntry {
    /// The provider's model name, as deployments name it.
    pub model: String,
    /// A provider kind (`openai`, `anthropic`, `gemini`, `azure-openai`, `openai-compatible`,
    /// `mock`) or `*` for any provider.
    pub provider: String,
    pub family: String,
    /// Micro-USD per 1M input tokens.
    pub input_micros_per_mtok: i64,
    /// Micro-USD per 1M output tokens.
    pub output_micros_per_mtok: i64,
    /// Micro-USD per 1M cached input tokens; 0 charges them at the input price.
    pub cached_input_micros_per_mtok: i64,
    /// Micro-USD per 1M reasoning tokens; 0 charges them at the output price.
    pub reasoning_micros_per_mtok: i64,
    /// Micro-USD per image when no size/quality entry applies.
    pub per_image_micros: i64,
    /// Micro-USD per image by `"<size>/<quality>"`, e.g. `"1024x1024/hd"`.
    pub image_prices: BTreeMap<String, i64>,
    /// Micro-USD per second of audio or video.
    pub per_second_micros: i64,
    /// Micro-USD per 1M input characters (text-to-speech).
    #[serde(default)]
    pub per_mchar_micros: i64,
    /// Maximum input tokens; 0 when unknown.
    pub context_window: i64,
    /// Maximum output tokens; 0 when unknown.
    pub max_output_tokens: i64,
    /// `active`, `deprecated` or `disabled`.
    pub status: String,
}

impl CatalogEntry {
    /// Checks every field and normalises the provider (`""` → `*`). Errors name the field.
    pub fn validated(mut self) -> Result<Self, ServiceError> {
        self.model = require_name("model", &self.model)?;
        self.provider = self.provider.trim().to_owned();
        if self.provider.is_empty() {
            self.provider = "*".into();
        }
        one_of("provider", &self.provider, PROVIDER_KINDS)?;
        one_of("family", &self.family, FAMILIES)?;
        one_of("status", &self.status, STATUSES)?;
        for (name, value) in [
            ("input_micros_per_mtok", self.input_micros_per_mtok),
            ("output_micros_per_mtok", self.output_micros_per_mtok),
            (
                "cached_input_micros_per_mtok",
                self.cached_input_micros_per_mtok,
            ),
            ("reasoning_micros_per_mtok", self.reasoning_micros_per_mtok),
            ("per_image_micros", self.per_image_micros),
            ("per_second_micros", self.per_second_micros),
            ("per_mchar_micros", self.per_mchar_micros),
            ("context_window", self.context_window),
            ("max_output_tokens", self.max_output_tokens),
        ] {
            if value < 0 {
                return Err(ServiceError::invalid(name, "must not be negative"));
            }
        }
        for (size, micros) in &self.image_prices {
            if size.trim().is_empty() || size.len() > 100 {
                return Err(ServiceError::invalid(
                    "image_prices",
                    "keys must be 1 to 100 characters, like `1024x1024/standard`",
                ));
            }
            if *micros < 0 {
                return Err(ServiceError::invalid(
                    &format!("image_prices.{size}"),
                    "must not be negative",
                ));
            }
        }
        Ok(self)
    }
}

fn one_of(param: &str, value: &str, allowed: &[&str]) -> Result<(), ServiceError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            param,
            format!("`{value}` is not one of {}", allowed.join(", ")),
        ))
    }
}

fn default_provider() -> String {
    "*".into()
}

fn default_family() -> String {
    "chat".into()
}

fn default_status() -> String {
    "active".into()
}

/// `POST /models`: creates or replaces the row of (`provider`, `model`). Fields left out take
/// their defaults (so the body is the whole row, not a patch).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertModel {
    pub model: String,
    /// A provider kind, or `*` (the default) for any provider.
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Endpoint family; `chat` by default.
    #[serde(default = "default_family")]
    pub family: String,
    pub input_micros_per_mtok: i64,
    pub output_micros_per_mtok: i64,
    #[serde(default)]
    pub cached_input_micros_per_mtok: i64,
    #[serde(default)]
    pub reasoning_micros_per_mtok: i64,
    #[serde(default)]
    pub per_image_micros: i64,
    #[serde(default)]
    pub image_prices: BTreeMap<String, i64>,
    #[serde(default)]
    pub per_second_micros: i64,
    /// Micro-USD per 1M input characters (text-to-speech).
    #[serde(default)]
    pub per_mchar_micros: i64,
    #[serde(default)]
    pub context_window: i64,
    #[serde(default)]
    pub max_output_tokens: i64,
    /// `active` (default), `deprecated` or `disabled`.
    #[serde(default = "default_status")]
    pub status: String,
}

impl From<UpsertModel> for CatalogEntry {
    fn from(u: UpsertModel) -> Self {
        CatalogEntry {
            model: u.model,
            provider: u.provider,
            family: u.family,
            input_micros_per_mtok: u.input_micros_per_mtok,
            output_micros_per_mtok: u.output_micros_per_mtok,
            cached_input_micros_per_mtok: u.cached_input_micros_per_mtok,
            reasoning_micros_per_mtok: u.reasoning_micros_per_mtok,
            per_image_micros: u.per_image_micros,
            image_prices: u.image_prices,
            per_second_micros: u.per_second_micros,
            per_mchar_micros: u.per_mchar_micros,
            context_window: u.context_window,
            max_output_tokens: u.max_output_tokens,
            status: u.status,
        }
    }
}

/// A catalog row as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelPrice {
    pub id: String,
    #[serde(flatten)]
    pub entry: CatalogEntry,
    /// The catalog-wide version of the current prices.
    pub price_version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One immutable version of a catalog row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PriceVersion {
    pub version: i64,
    pub model_id: String,
    #[serde(flatten)]
    pub entry: CatalogEntry,
    /// When this version was made.
    pub created_at: DateTime<Utc>,
}

fn image_prices_of(json: &str) -> BTreeMap<String, i64> {
    serde_json::from_str(json).unwrap_or_default()
}

fn image_prices_json(map: &BTreeMap<String, i64>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
}

fn entry_of(m: &model_price::Model) -> CatalogEntry {
    CatalogEntry {
        model: m.model.clone(),
        provider: m.provider.clone(),
        family: m.family.clone(),
        input_micros_per_mtok: m.input_micros_per_mtok,
        output_micros_per_mtok: m.output_micros_per_mtok,
        cached_input_micros_per_mtok: m.cached_input_micros_per_mtok,
        reasoning_micros_per_mtok: m.reasoning_micros_per_mtok,
        per_image_micros: m.per_image_micros,
        image_prices: image_prices_of(&m.image_prices),
        per_second_micros: m.per_second_micros,
        per_mchar_micros: m.per_mchar_micros,
        context_window: m.context_window,
        max_output_tokens: m.max_output_tokens,
        status: m.status.clone(),
    }
}

impl From<model_price::Model> for ModelPrice {
    fn from(m: model_price::Model) -> Self {
        ModelPrice {
            entry: entry_of(&m),
            id: m.id,
            price_version: m.price_version,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

impl From<model_price_version::Model> for PriceVersion {
    fn from(v: model_price_version::Model) -> Self {
        PriceVersion {
            version: v.version,
            model_id: v.model_id,
            entry: CatalogEntry {
                image_prices: image_prices_of(&v.image_prices),
                model: v.model,
                provider: v.provider,
                family: v.family,
                input_micros_per_mtok: v.input_micros_per_mtok,
                output_micros_per_mtok: v.output_micros_per_mtok,
                cached_input_micros_per_mtok: v.cached_input_micros_per_mtok,
                reasoning_micros_per_mtok: v.reasoning_micros_per_mtok,
                per_image_micros: v.per_image_micros,
                per_second_micros: v.per_second_micros,
                per_mchar_micros: v.per_mchar_micros,
                context_window: v.context_window,
                max_output_tokens: v.max_output_tokens,
                status: v.status,
            },
            created_at: v.created_at,
        }
    }
}

/// What writing one entry did.
enum Applied {
    Added(ModelPrice),
    Changed {
        before: Box<ModelPrice>,
        after: ModelPrice,
    },
    Unchanged(ModelPrice),
}

/// Takes the next catalog-wide price version. The counter's row lock is held to commit, so
/// versions are handed out in commit order.
async fn next_version(txn: &DatabaseTransaction) -> Result<i64, ServiceError> {
    bump_version(txn, 1).await
}

/// Takes the counter's row lock without taking a number: a change reads the rows it compares
/// against only after this, so two concurrent changes never compare against stale rows.
async fn lock_versions(txn: &DatabaseTransaction) -> Result<(), ServiceError> {
    bump_version(txn, 0).await.map(drop)
}

async fn bump_version(txn: &DatabaseTransaction, by: i64) -> Result<i64, ServiceError> {
    let mut update = Query::update();
    update
        .table(counter::Entity)
        .value(
            counter::Column::Value,
            Expr::col(counter::Column::Value).add(by),
        )
        .and_where(Expr::col(counter::Column::Name).eq(VERSION_COUNTER))
        .returning_col(counter::Column::Value);
    let backend = txn.get_database_backend();
    let row = txn
        .query_one(backend.build(&update))
        .await?
        .ok_or_else(|| sea_orm::DbErr::RecordNotFound(format!("counter {VERSION_COUNTER}")))?;
    Ok(row.try_get("", "value")?)
}

/// Writes `entry` (already validated) over `existing`, the row of the same provider and model
/// if there is one: a new version and an audit row when anything differs, nothing otherwise.
async fn apply(
    txn: &DatabaseTransaction,
    actor: &Actor,
    action: &str,
    entry: CatalogEntry,
    existing: Option<model_price::Model>,
) -> Result<Applied, ServiceError> {
    if let Some(row) = &existing {
        if entry_of(row) == entry {
            return Ok(Applied::Unchanged(ModelPrice::from(row.clone())));
        }
    }
    let version = next_version(txn).await?;
    let now = Utc::now();
    let before = existing.clone().map(ModelPrice::from);
    let saved = match existing {
        Some(row) => {
            let mut active = row.into_active_model();
            active.family = Set(entry.family.clone());
            active.input_micros_per_mtok = Set(entry.input_micros_per_mtok);
            active.output_micros_per_mtok = Set(entry.output_micros_per_mtok);
            active.cached_input_micros_per_mtok = Set(entry.cached_input_micros_per_mtok);
            active.reasoning_micros_per_mtok = Set(entry.reasoning_micros_per_mtok);
            active.per_image_micros = Set(entry.per_image_micros);
            active.image_prices = Set(image_prices_json(&entry.image_prices));
            active.per_second_micros = Set(entry.per_second_micros);
            active.per_mchar_micros = Set(entry.per_mchar_micros);
            active.context_window = Set(entry.context_window);
            active.max_output_tokens = Set(entry.max_output_tokens);
            active.status = Set(entry.status.clone());
            active.price_version = Set(version);
            active.updated_at = Set(now);
            active.update(txn).await?
        }
        None => {
            let row = model_price::ActiveModel {
                id: Set(modelgate_shared::new_id().to_string()),
                model: Set(entry.model.clone()),
                provider: Set(entry.provider.clone()),
                family: Set(entry.family.clone()),
                input_micros_per_mtok: Set(entry.input_micros_per_mtok),
                output_micros_per_mtok: Set(entry.output_micros_per_mtok),
                cached_input_micros_per_mtok: Set(entry.cached_input_micros_per_mtok),
                reasoning_micros_per_mtok: Set(entry.reasoning_micros_per_mtok),
                per_image_micros: Set(entry.per_image_micros),
                image_prices: Set(image_prices_json(&entry.image_prices)),
                per_second_micros: Set(entry.per_second_micros),
                per_mchar_micros: Set(entry.per_mchar_micros),
                context_window: Set(entry.context_window),
                max_output_tokens: Set(entry.max_output_tokens),
                status: Set(entry.status.clone()),
                price_version: Set(version),
                created_at: Set(now),
                updated_at: Set(now),
            };
            model_price::Entity::insert(row)
                .exec_with_returning(txn)
                .await
                .map_err(|e| unique_violation(e, "a price row for this provider and model"))?
        }
    };
    model_price_version::Entity::insert(model_price_version::ActiveModel {
        version: Set(version),
        model_id: Set(saved.id.clone()),
        model: Set(entry.model.clone()),
        provider: Set(entry.provider.clone()),
        family: Set(entry.family.clone()),
        input_micros_per_mtok: Set(entry.input_micros_per_mtok),
        output_micros_per_mtok: Set(entry.output_micros_per_mtok),
        cached_input_micros_per_mtok: Set(entry.cached_input_micros_per_mtok),
        reasoning_micros_per_mtok: Set(entry.reasoning_micros_per_mtok),
        per_image_micros: Set(entry.per_image_micros),
        image_prices: Set(image_prices_json(&entry.image_prices)),
        per_second_micros: Set(entry.per_second_micros),
        per_mchar_micros: Set(entry.per_mchar_micros),
        context_window: Set(entry.context_window),
        max_output_tokens: Set(entry.max_output_tokens),
        status: Set(entry.status.clone()),
        price_version: Set(version),
        created_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    let after = ModelPrice::from(saved);
    audit::record(
        txn,
        actor,
        Change {
            action,
            resource_type: "model",
            resource_id: &after.id,
            team_id: None,
            before: before.as_ref().and_then(audit::view),
            after: audit::view(&after),
        },
    )
    .await?;
    Ok(match before {
        Some(before) => Applied::Changed {
            before: Box::new(before),
            after,
        },
        None => Applied::Added(after),
    })
}

async fn find_row<C: ConnectionTrait>(
    db: &C,
    provider: &str,
    model: &str,
) -> Result<Option<model_price::Model>, ServiceError> {
    Ok(model_price::Entity::find()
        .filter(model_price::Column::Provider.eq(provider))
        .filter(model_price::Column::Model.eq(model))
        .one(db)
        .await?)
}

/// Creates the row of (provider, model), or replaces it with a new price version if anything
/// differs. Writing the values a row already has returns it unchanged.
pub async fn upsert(
    s: &Services,
    actor: &Actor,
    input: UpsertModel,
) -> Result<ModelPrice, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let entry = CatalogEntry::from(input).validated()?;
    let txn = s.db.begin().await?;
    lock_versions(&txn).await?;
    let existing = find_row(&txn, &entry.provider, &entry.model).await?;
    let applied = apply(&txn, actor, "model.upsert", entry, existing).await?;
    txn.commit().await?;
    Ok(match applied {
        Applied::Unchanged(price) => price,
        Applied::Added(price) | Applied::Changed { after: price, .. } => {
            s.publisher.rebuild(s).await?;
            price
        }
    })
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

/// Every version of one catalog row, oldest first.
pub async fn versions(
    s: &Services,
    actor: &Actor,
    id: &str,
) -> Result<Vec<PriceVersion>, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let rows = model_price_version::Entity::find()
        .filter(model_price_version::Column::ModelId.eq(id))
        .order_by_asc(model_price_version::Column::Version)
        .all(&s.db)
        .await?;
    if rows.is_empty() {
        return Err(ServiceError::NotFound(format!("model {id}")));
    }
    Ok(rows.into_iter().map(PriceVersion::from).collect())
}

/// The prices one version number stands for (what a usage row with that version was charged).
pub async fn version(
    s: &Services,
    actor: &Actor,
    version: i64,
) -> Result<PriceVersion, ServiceError> {
    actor.require(Action::ReadConfig)?;
    model_price_version::Entity::find_by_id(version)
        .one(&s.db)
        .await?
        .map(PriceVersion::from)
        .ok_or_else(|| ServiceError::NotFound(format!("price version {version}")))
}

/// Creates a price row only if the model has none for any provider (seeding must not bump
/// versions).
pub async fn upsert_if_missing(
    s: &Services,
    model: &str,
    input_micros_per_mtok: i64,
    output_micros_per_mtok: i64,
) -> Result<(), ServiceError> {
    seed_if_missing(
        s,
        UpsertModel {
            model: model.to_owned(),
            provider: default_provider(),
            family: default_family(),
            input_micros_per_mtok,
            output_micros_per_mtok,
            cached_input_micros_per_mtok: 0,
            reasoning_micros_per_mtok: 0,
            per_image_micros: 0,
            image_prices: BTreeMap::new(),
            per_second_micros: 0,
            per_mchar_micros: 0,
            context_window: 0,
            max_output_tokens: 0,
            status: default_status(),
        },
    )
    .await
}

/// Creates the catalog row `row` describes unless its (provider, model) has one already.
pub async fn seed_if_missing(s: &Services, row: UpsertModel) -> Result<(), ServiceError> {
    if find_row(&s.db, &row.provider, &row.model).await?.is_none() {
        upsert(s, &Actor::system(), row).await?;
    }
    Ok(())
}

/// `POST /models/import`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub format: import::Format,
    /// The file's text: a LiteLLM `model_prices_and_context_window.json` map or a CSV file.
    pub content: String,
    /// Report the diff without changing anything.
    #[serde(default)]
    pub dry_run: bool,
}

/// A row whose prices an import changes.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChangedRow {
    pub model: String,
    pub provider: String,
    pub before: CatalogEntry,
    pub after: CatalogEntry,
    /// The version the row had.
    pub before_version: i64,
    /// The version the import made; absent on a dry run.
    pub after_version: Option<i64>,
}

/// A row that was added; `price_version` is absent on a dry run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AddedRow {
    #[serde(flatten)]
    pub entry: CatalogEntry,
    pub price_version: Option<i64>,
}

/// What an import did (or, on a dry run, would do).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportDiff {
    pub dry_run: bool,
    pub added: Vec<AddedRow>,
    pub changed: Vec<ChangedRow>,
    /// Rows already in the catalog with exactly these values.
    pub unchanged: u64,
    pub skipped: Vec<import::Skipped>,
}

/// Parses an import, diffs it against the catalog and, unless `dry_run`, applies every change
/// in one transaction (one version and one audit row per changed row) and rebuilds the
/// snapshot once. Rows the file cannot express exactly are skipped and reported, never
/// rounded.
pub async fn import_catalog(
    s: &Services,
    actor: &Actor,
    request: ImportRequest,
) -> Result<ImportDiff, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let parsed = import::parse(request.format, &request.content)?;
    let mut skipped = parsed.skipped;
    let txn = s.db.begin().await?;
    if !request.dry_run {
        lock_versions(&txn).await?;
    }
    let mut existing: HashMap<(String, String), model_price::Model> = model_price::Entity::find()
        .all(&txn)
        .await?
        .into_iter()
        .map(|m| ((m.provider.clone(), m.model.clone()), m))
        .collect();
    let mut diff = ImportDiff {
        dry_run: request.dry_run,
        added: Vec::new(),
        changed: Vec::new(),
        unchanged: 0,
        skipped: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for row in parsed.rows {
        let key = (row.entry.provider.clone(), row.entry.model.clone());
        if !seen.insert(key.clone()) {
            skipped.push(import::Skipped {
                model: row.entry.model,
                reason: format!(
                    "appears more than once for provider `{}`; the first row counts",
                    row.entry.provider
                ),
            });
            continue;
        }
        let current = existing.remove(&key);
        let entry = row.resolve(current.as_ref().map(entry_of));
        let entry = match entry.validated() {
            Ok(e) => e,
            Err(e) => {
                skipped.push(import::Skipped {
                    model: key.1,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if request.dry_run {
            match current {
                Some(cur) if entry_of(&cur) == entry => diff.unchanged += 1,
                Some(cur) => diff.changed.push(ChangedRow {
                    model: entry.model.clone(),
                    provider: entry.provider.clone(),
                    before: entry_of(&cur),
                    before_version: cur.price_version,
                    after: entry,
                    after_version: None,
                }),
                None => diff.added.push(AddedRow {
                    entry,
                    price_version: None,
                }),
            }
            continue;
        }
        match apply(&txn, actor, "model.import", entry, current).await? {
            Applied::Unchanged(_) => diff.unchanged += 1,
            Applied::Added(after) => diff.added.push(AddedRow {
                price_version: Some(after.price_version),
                entry: after.entry,
            }),
            Applied::Changed { before, after } => diff.changed.push(ChangedRow {
                model: after.entry.model.clone(),
                provider: after.entry.provider.clone(),
                before: before.entry,
                before_version: before.price_version,
                after: after.entry,
                after_version: Some(after.price_version),
            }),
        }
    }
    diff.skipped = skipped;
    if request.dry_run {
        txn.rollback().await?;
        return Ok(diff);
    }
    txn.commit().await?;
    if !diff.added.is_empty() || !diff.changed.is_empty() {
        s.publisher.rebuild(s).await?;
    }
    Ok(diff)
}
