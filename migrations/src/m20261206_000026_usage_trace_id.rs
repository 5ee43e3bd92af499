//! The usage row's `trace_id`: the request's OpenTelemetry trace id when its data plane exported
//! spans (`--otlp-endpoint`), so the request log links to the trace; empty otherwise (and in
//! every existing row).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(UsageEvents::Table)
                .add_column(
                    ColumnDef::new(UsageEvents::TraceId)
                        .string()
                        .not_null()
                        .default(""),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(UsageEvents::Table)
                .drop_column(UsageEvents::TraceId)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum UsageEvents {
    Table,
    TraceId,
}
