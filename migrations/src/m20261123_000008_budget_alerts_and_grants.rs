//! Budget follow-ups (issue #7): the soft-budget alert outbox, the allocator's grant ledger
//! (so a restarted control plane still counts the grants data planes hold), and the usage
//! row's cost flag (served without a known price, or without a bounded cost).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().to_owned()
}

fn big(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(BudgetAlerts::Table)
                .col(text(BudgetAlerts::Id).primary_key().to_owned())
                .col(text(BudgetAlerts::BudgetId))
                .col(big(BudgetAlerts::PeriodStart))
                .col(big(BudgetAlerts::ThresholdPercent))
                .col(text(BudgetAlerts::Url))
                .col(text(BudgetAlerts::Body))
                .col(big(BudgetAlerts::Attempts))
                .col(big(BudgetAlerts::NextAttemptMs))
                .col(big(BudgetAlerts::ClaimedUntilMs))
                .col(big(BudgetAlerts::GiveUpAtMs))
                .col(
                    ColumnDef::new(BudgetAlerts::DeliveredAtMs)
                        .big_integer()
                        .null(),
                )
                .col(
                    ColumnDef::new(BudgetAlerts::FailedAtMs)
                        .big_integer()
                        .null(),
                )
                .col(ColumnDef::new(BudgetAlerts::LastError).string().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("budget_alerts_pending")
                .table(BudgetAlerts::Table)
                .col(BudgetAlerts::DeliveredAtMs)
                .col(BudgetAlerts::NextAttemptMs)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(BudgetGrants::Table)
                .col(text(BudgetGrants::BudgetId))
                .col(big(BudgetGrants::PeriodStart))
                .col(text(BudgetGrants::Holder))
                .col(big(BudgetGrants::GrantedMicros))
                .col(big(BudgetGrants::ConsumedMicros))
                .col(big(BudgetGrants::ExpiresAtMs))
                .primary_key(
                    Index::create()
                        .col(BudgetGrants::BudgetId)
                        .col(BudgetGrants::PeriodStart)
                        .col(BudgetGrants::Holder),
                )
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(UsageEvents::Table)
                .add_column(
                    ColumnDef::new(UsageEvents::CostFlag)
                        .string()
                        .not_null()
                        .default(""),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(UsageEvents::Table)
                .drop_column(UsageEvents::CostFlag)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(BudgetGrants::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(BudgetAlerts::Table).to_owned())
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum BudgetAlerts {
    Table,
    Id,
    BudgetId,
    PeriodStart,
    ThresholdPercent,
    Url,
    Body,
    Attempts,
    NextAttemptMs,
    ClaimedUntilMs,
    GiveUpAtMs,
    DeliveredAtMs,
    FailedAtMs,
    LastError,
}

#[derive(DeriveIden)]
enum BudgetGrants {
    Table,
    BudgetId,
    PeriodStart,
    Holder,
    GrantedMicros,
    ConsumedMicros,
    ExpiresAtMs,
}

#[derive(DeriveIden)]
enum UsageEvents {
    Table,
    CostFlag,
}
