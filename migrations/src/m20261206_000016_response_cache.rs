//! The response cache: a key's override of its routes' cache (`api_keys.cache`: `route`, `off`
//! or `refresh`; existing keys follow their routes) and the usage row's `cache_hit` (existing
//! rows were all answered upstream). A route's `policy.cache` lives in its policy JSON.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        m.alter_table(
            Table::alter()
                .table(ApiKeys::Table)
                .add_column(
                    ColumnDef::new(ApiKeys::Cache)
                        .string()
                        .not_null()
                        .default("route"),
                )
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(UsageEvents::Table)
                .add_column(
                    ColumnDef::new(UsageEvents::CacheHit)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(UsageEvents::Table)
                .drop_column(UsageEvents::CacheHit)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(ApiKeys::Table)
                .drop_column(ApiKeys::Cache)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Cache,
}

#[derive(DeriveIden)]
enum UsageEvents {
    Table,
    CacheHit,
}
