//! Usage quarantine: events a node reported that ingest refused to count (a negative or absurd
//! cost or token count, an impossible timestamp or status, an unknown key, a key of another
//! team). Each is kept as received, with the reporting node and the reason, for an admin to
//! read; none reaches `usage_events`, the daily aggregates or a budget. One row per event id, so
//! a replayed batch quarantines nothing twice.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(UsageQuarantine::Table)
                // UUIDv7 made by the control plane: the listing's order and cursor.
                .col(text(UsageQuarantine::Id).primary_key().to_owned())
                .col(text(UsageQuarantine::EventId))
                .col(text(UsageQuarantine::NodeId))
                .col(text(UsageQuarantine::Reason))
                // The event as received, as JSON.
                .col(ColumnDef::new(UsageQuarantine::Event).text().not_null())
                .col(
                    ColumnDef::new(UsageQuarantine::QuarantinedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("usage_quarantine_event_id")
                .table(UsageQuarantine::Table)
                .col(UsageQuarantine::EventId)
                .unique()
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(UsageQuarantine::Table).to_owned())
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum UsageQuarantine {
    Table,
    Id,
    EventId,
    NodeId,
    Reason,
    Event,
    QuarantinedAt,
}
