//! The pricing catalog: a price row per (provider kind, model) with every unit price,
//! limits and status, and `model_price_versions`, the immutable history every change appends
//! to.
//!
//! Price versions are catalog-wide: one counter (`counters.price_version`) numbers every
//! version of every row, so a version alone names the exact prices a usage row was charged.
//! Existing rows become the first versions, numbered above every per-row version the old schema
//! handed out, so a number recorded before this migration never names a new version.
//!
//! `models.model` was unique on its own; it becomes unique per provider. Neither database can
//! drop an inline unique constraint portably, so the table is rebuilt (create, copy, drop,
//! rename).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().to_owned()
}

fn text_default(col: impl IntoIden, default: &str) -> ColumnDef {
    ColumnDef::new(col)
        .string()
        .not_null()
        .default(default)
        .to_owned()
}

fn big(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

fn at(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

/// The catalog columns both tables share.
fn catalog_columns(t: &mut TableCreateStatement) {
    t.col(text(Models::Model))
        .col(text_default(Models::Provider, "*"))
        .col(text_default(Models::Family, "chat"))
        .col(big(Models::InputMicrosPerMtok))
        .col(big(Models::OutputMicrosPerMtok))
        .col(big(Models::CachedInputMicrosPerMtok))
        .col(big(Models::ReasoningMicrosPerMtok))
        .col(big(Models::PerImageMicros))
        .col(text_default(Models::ImagePrices, "{}"))
        .col(big(Models::PerSecondMicros))
        .col(big(Models::ContextWindow))
        .col(big(Models::MaxOutputTokens))
        .col(text_default(Models::Status, "active"))
        .col(big(Models::PriceVersion))
        .col(at(Models::CreatedAt));
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut catalog = Table::create();
        catalog.table(ModelsNew::Table).col(
            ColumnDef::new(Models::Id)
                .string()
                .not_null()
                .primary_key()
                .to_owned(),
        );
        catalog_columns(&mut catalog);
        catalog.col(at(Models::UpdatedAt));
        m.create_table(catalog.to_owned()).await?;

        let db = m.get_connection();
        let backend = db.get_database_backend();
        let run = |sql: &str| Statement::from_string(backend, sql.to_owned());
        db.execute(run(
            "INSERT INTO models_new (id, model, provider, family, input_micros_per_mtok, \
             output_micros_per_mtok, price_version, created_at, updated_at) \
             SELECT id, model, '*', 'chat', input_micros_per_mtok, output_micros_per_mtok, \
             price_version, created_at, created_at FROM models",
        ))
        .await?;
        m.drop_table(Table::drop().table(Models::Table).to_owned())
            .await?;
        m.rename_table(
            Table::rename()
                .table(ModelsNew::Table, Models::Table)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_models_provider_model")
                .table(Models::Table)
                .col(Models::Provider)
                .col(Models::Model)
                .unique()
                .to_owned(),
        )
        .await?;

        let mut history = Table::create();
        history
            .table(ModelPriceVersions::Table)
            .col(
                ColumnDef::new(ModelPriceVersions::Version)
                    .big_integer()
                    .not_null()
                    .primary_key()
                    .to_owned(),
            )
            .col(text(ModelPriceVersions::ModelId));
        catalog_columns(&mut history);
        m.create_table(history.to_owned()).await?;
        m.create_index(
            Index::create()
                .name("idx_model_price_versions_model_id")
                .table(ModelPriceVersions::Table)
                .col(ModelPriceVersions::ModelId)
                .to_owned(),
        )
        .await?;

        // Existing rows become versions numbered above every old per-row version.
        db.execute(run(
            "INSERT INTO model_price_versions (version, model_id, model, provider, family, \
             input_micros_per_mtok, output_micros_per_mtok, price_version, created_at) \
             SELECT (SELECT COALESCE(MAX(price_version), 0) FROM models) \
             + ROW_NUMBER() OVER (ORDER BY id), id, model, provider, family, \
             input_micros_per_mtok, output_micros_per_mtok, 0, created_at FROM models",
        ))
        .await?;
        db.execute(run(
            "UPDATE model_price_versions SET price_version = version",
        ))
        .await?;
        db.execute(run(
            "UPDATE models SET price_version = \
             (SELECT v.version FROM model_price_versions v WHERE v.model_id = models.id)",
        ))
        .await?;
        db.execute(run(
            "INSERT INTO counters (name, value) \
             SELECT 'price_version', COALESCE(MAX(version), 0) FROM model_price_versions",
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let backend = db.get_database_backend();
        let run = |sql: &str| Statement::from_string(backend, sql.to_owned());
        m.drop_table(Table::drop().table(ModelPriceVersions::Table).to_owned())
            .await?;
        db.execute(run("DELETE FROM counters WHERE name = 'price_version'"))
            .await?;
        m.create_table(
            Table::create()
                .table(ModelsNew::Table)
                .col(
                    ColumnDef::new(Models::Id)
                        .string()
                        .not_null()
                        .primary_key()
                        .to_owned(),
                )
                .col(text(Models::Model).unique_key().to_owned())
                .col(big(Models::InputMicrosPerMtok))
                .col(big(Models::OutputMicrosPerMtok))
                .col(big(Models::PriceVersion))
                .col(at(Models::CreatedAt))
                .to_owned(),
        )
        .await?;
        // One row per model survives: the one for any provider if there is one.
        db.execute(run(
            "INSERT INTO models_new (id, model, input_micros_per_mtok, output_micros_per_mtok, \
             price_version, created_at) \
             SELECT id, model, input_micros_per_mtok, output_micros_per_mtok, price_version, \
             created_at FROM models m WHERE id = (SELECT x.id FROM models x \
             WHERE x.model = m.model ORDER BY x.provider = '*' DESC, x.id LIMIT 1)",
        ))
        .await?;
        m.drop_table(Table::drop().table(Models::Table).to_owned())
            .await?;
        m.rename_table(
            Table::rename()
                .table(ModelsNew::Table, Models::Table)
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Models {
    Table,
    Id,
    Model,
    Provider,
    Family,
    InputMicrosPerMtok,
    OutputMicrosPerMtok,
    CachedInputMicrosPerMtok,
    ReasoningMicrosPerMtok,
    PerImageMicros,
    ImagePrices,
    PerSecondMicros,
    ContextWindow,
    MaxOutputTokens,
    Status,
    PriceVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ModelsNew {
    Table,
}

#[derive(DeriveIden)]
enum ModelPriceVersions {
    Table,
    Version,
    ModelId,
}
