//! One request-log index fewer: `(provider_id, started_at_ms, seq)`. Every ingested row paid
//! for it (one more B-tree entry, about 1.5 µs per row in SQL on a 2-core machine), and a
//! provider is common enough among requests (a handful of providers) that a provider page reads
//! the time index backwards and stops after a few hundred rows. Measured at 1M rows before and
//! after (ARCHITECTURE.md, "The request log").
//!
//! On a partitioned ledger the index is dropped from the parent and so from every partition; the
//! rollback builds it again (on a large ledger, in a maintenance window).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS idx_usage_events_provider_started")
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_usage_events_provider_started \
                 ON usage_events (provider_id, started_at_ms, seq)",
            )
            .await?;
        Ok(())
    }
}
