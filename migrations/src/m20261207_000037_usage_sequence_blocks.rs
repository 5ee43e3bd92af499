//! Ingest writers that do not share one lock: a writer takes a block of ingest sequence numbers
//! from the `usage_seq` counter in a short transaction of its own and records it here as
//! pending, then stores its events under that block in a second transaction that deletes the
//! pending row as it commits. The pull cursor's visibility watermark is the lowest pending block:
//! readers page only below it, so an event committed late can never land behind a consumer's
//! cursor (`control-plane/src/service/usage/sequence.rs`).
//!
//! The same table on SQLite, where it stays empty (its writer numbers events inside the one
//! write transaction SQLite allows at a time), so that readers ask one question everywhere.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(UsageSeqPending::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(UsageSeqPending::FirstSeq)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(UsageSeqPending::LastSeq)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(UsageSeqPending::TakenAtMs)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(UsageSeqPending::Table)
                .if_exists()
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum UsageSeqPending {
    Table,
    FirstSeq,
    LastSeq,
    TakenAtMs,
}
