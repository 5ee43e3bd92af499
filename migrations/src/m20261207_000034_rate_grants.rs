//! `rate_grants`: the rate-limit lease ledger, kept in the database so that every control-plane
//! replica grants from the same one. Per limit, measure and data-plane holder: the window the
//! row counts in (`window_start`, Unix seconds; 0 for concurrency slots), the cumulative grant,
//! what the holder last reported taken, and when its lease ends. The row with the empty holder
//! marks the measure's current window; allocations lock it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RateGrants::Table)
                .col(ColumnDef::new(RateGrants::LimitId).string().not_null())
                .col(ColumnDef::new(RateGrants::Measure).string().not_null())
                .col(ColumnDef::new(RateGrants::Holder).string().not_null())
                .col(
                    ColumnDef::new(RateGrants::WindowStart)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(RateGrants::Granted).big_integer().not_null())
                .col(
                    ColumnDef::new(RateGrants::Consumed)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RateGrants::ExpiresAtMs)
                        .big_integer()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(RateGrants::LimitId)
                        .col(RateGrants::Measure)
                        .col(RateGrants::Holder),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RateGrants::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RateGrants {
    Table,
    LimitId,
    Measure,
    Holder,
    WindowStart,
    Granted,
    Consumed,
    ExpiresAtMs,
}
