//! Monthly statements. A month closes a grace period after it ends; `statement_closes`
//! records when, and the ingest sequence reached then (`close_seq`): the month covers the
//! events stored up to it, and an event stored later lands in the next open month. A closed
//! month's statement is stored in `statements`, whole, and served from there: it never
//! changes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Statements::Table)
                .if_not_exists()
                .col(ColumnDef::new(Statements::TeamId).string().not_null())
                // YYYY-MM
                .col(ColumnDef::new(Statements::Month).string().not_null())
                .col(
                    ColumnDef::new(Statements::ClosedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Statements::TotalMicros)
                        .big_integer()
                        .not_null(),
                )
                // The whole statement as JSON, exactly as served.
                .col(ColumnDef::new(Statements::Body).text().not_null())
                .primary_key(
                    Index::create()
                        .col(Statements::TeamId)
                        .col(Statements::Month),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(StatementCloses::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(StatementCloses::Month)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(StatementCloses::ClosedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(StatementCloses::CloseSeq)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(StatementCloses::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Statements::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Statements {
    Table,
    TeamId,
    Month,
    ClosedAt,
    TotalMicros,
    Body,
}

#[derive(DeriveIden)]
enum StatementCloses {
    Table,
    Month,
    ClosedAt,
    CloseSeq,
}
