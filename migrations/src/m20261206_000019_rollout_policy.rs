//! The rollout policy (issue #15): at most one row, the plan (JSON) every policy change follows
//! while it exists. No row: every change goes to every node at once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RolloutPolicy {
    Table,
    Name,
    Plan,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RolloutPolicy::Table)
                .col(
                    ColumnDef::new(RolloutPolicy::Name)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(RolloutPolicy::Plan).text().not_null())
                .col(
                    ColumnDef::new(RolloutPolicy::UpdatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RolloutPolicy::Table).to_owned())
            .await
    }
}
