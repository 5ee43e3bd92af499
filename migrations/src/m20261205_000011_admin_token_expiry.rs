//! Admin tokens can expire: `expires_at` (NULL: never). Existing tokens keep NULL, so an
//! upgrade locks nobody out; operators replace long-lived tokens by minting expiring ones.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(AdminTokens::Table)
                .add_column(
                    ColumnDef::new(AdminTokens::ExpiresAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(AdminTokens::Table)
                .drop_column(AdminTokens::ExpiresAt)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum AdminTokens {
    Table,
    ExpiresAt,
}
