//! Budgets: a budget per scope (key, team, user, environment) and one spend row
//! per budget per calendar period. Spend is only ever added (`spent = spent + x`) by usage
//! ingest; a new period gets a new row, so a rollover never overwrites a figure.

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
                .table(Budgets::Table)
                .col(text(Budgets::Id).primary_key().to_owned())
                .col(text(Budgets::ScopeKind))
                .col(text(Budgets::ScopeId))
                .col(big(Budgets::AmountMicros))
                .col(text(Budgets::Period))
                .col(text(Budgets::Enforcement))
                .col(text(Budgets::WhenUnreachable))
                .col(big(Budgets::FailOpenAllowanceMicros))
                .col(ColumnDef::new(Budgets::AlertWebhookUrl).string().null())
                .col(
                    ColumnDef::new(Budgets::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("budgets_scope")
                .table(Budgets::Table)
                .col(Budgets::ScopeKind)
                .col(Budgets::ScopeId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(BudgetPeriods::Table)
                .col(text(BudgetPeriods::BudgetId))
                .col(
                    ColumnDef::new(BudgetPeriods::PeriodStart)
                        .big_integer()
                        .not_null(),
                )
                .col(big(BudgetPeriods::SpentMicros))
                .col(big(BudgetPeriods::AlertsFired))
                .primary_key(
                    Index::create()
                        .col(BudgetPeriods::BudgetId)
                        .col(BudgetPeriods::PeriodStart),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(BudgetPeriods::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Budgets::Table).to_owned())
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Budgets {
    Table,
    Id,
    ScopeKind,
    ScopeId,
    AmountMicros,
    Period,
    Enforcement,
    WhenUnreachable,
    FailOpenAllowanceMicros,
    AlertWebhookUrl,
    CreatedAt,
}

#[derive(DeriveIden)]
enum BudgetPeriods {
    Table,
    BudgetId,
    PeriodStart,
    SpentMicros,
    AlertsFired,
}
