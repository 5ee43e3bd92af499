//! Prepaid balances. A team's balance is enforced as a budget row of kind `balance`
//! (`budgets.kind`; every existing row is a `spend` budget): its amount is what was credited,
//! its spend is the usage ingest deducts, so the fleet's leases and reservations hold it like
//! any hard budget. `balance_entries` is the ledger of credits: top-ups and adjustments, each
//! with its actor and reason, never changed or deleted.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Budgets::Table)
                .add_column(
                    ColumnDef::new(Budgets::Kind)
                        .string()
                        .not_null()
                        .default("spend"),
                )
                .to_owned(),
        )
        .await?;
        // A balance row's ingest sequence when it opened: ingest deducts the events stored
        // after it (statements count the same ones).
        m.alter_table(
            Table::alter()
                .table(Budgets::Table)
                .add_column(ColumnDef::new(Budgets::OpenedSeq).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(BalanceEntries::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(BalanceEntries::Id)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(BalanceEntries::TeamId).string().not_null())
                .col(ColumnDef::new(BalanceEntries::Kind).string().not_null())
                .col(
                    ColumnDef::new(BalanceEntries::AmountMicros)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(BalanceEntries::ActorType)
                        .string()
                        .not_null(),
                )
                .col(ColumnDef::new(BalanceEntries::ActorId).string().not_null())
                .col(ColumnDef::new(BalanceEntries::Reason).string().not_null())
                .col(
                    ColumnDef::new(BalanceEntries::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_balance_entries_team_created")
                .table(BalanceEntries::Table)
                .col(BalanceEntries::TeamId)
                .col(BalanceEntries::CreatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(BalanceEntries::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Budgets::Table)
                .drop_column(Budgets::OpenedSeq)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Budgets::Table)
                .drop_column(Budgets::Kind)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum Budgets {
    Table,
    Kind,
    OpenedSeq,
}

#[derive(DeriveIden)]
enum BalanceEntries {
    Table,
    Id,
    TeamId,
    Kind,
    AmountMicros,
    ActorType,
    ActorId,
    Reason,
    CreatedAt,
}
