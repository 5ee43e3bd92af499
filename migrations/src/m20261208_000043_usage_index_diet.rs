//! One ledger index fewer, so that ingest pays for fewer B-tree entries per row. Every ingested
//! row adds one entry to each index of `usage_events`; the entries of an index led by a
//! time-ordered column (`id`, `seq`, `started_at_ms`, `request_id`) land on its rightmost page,
//! while those led by a key, team, user or alias land on a page per distinct value and cost two
//! to five times as much (measured in SQL, ARCHITECTURE.md "Ingest").
//!
//! The team index `(team_id, started_at_ms, seq)` becomes `(team_id, started_at_ms, seq,
//! requested_model)`, and the team × alias index `(team_id, requested_model, started_at_ms,
//! seq)` goes: a team page reads the new index as it read the old one (same leading columns,
//! same order), and a team + alias page reads the team's range newest first and checks the
//! alias in the index entry itself (a trailing key column is an index condition, not a heap
//! fetch).
//!
//! On a partitioned ledger each statement reaches every partition. The new index is built before
//! the old ones are dropped (on a large existing ledger it takes a while: about 30 s at 10M rows
//! on a 2-core machine); the rollback builds the two dropped indexes again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The team index with the alias as a trailing filter column.
const TEAM: &str = "idx_usage_events_team_started_model";

/// (name, columns) of the indexes this migration drops, as they were made.
const DROPPED: &[(&str, &str)] = &[
    (
        "idx_usage_events_team_started_seq",
        "team_id, started_at_ms, seq",
    ),
    (
        "idx_usage_events_team_model_started",
        "team_id, requested_model, started_at_ms, seq",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared(&format!(
            "CREATE INDEX IF NOT EXISTS {TEAM} \
             ON usage_events (team_id, started_at_ms, seq, requested_model)"
        ))
        .await?;
        for (name, _) in DROPPED {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (name, columns) in DROPPED {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {name} ON usage_events ({columns})"
            ))
            .await?;
        }
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {TEAM}"))
            .await?;
        Ok(())
    }
}
