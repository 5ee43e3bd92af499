//! The request log's indexes (`control-plane/src/service/usage/requests.rs`): its pages are
//! read newest first by `(started_at_ms, seq)`, unfiltered or under an equality filter on one of
//! the columns below, so each filter gets `(column, started_at_ms, seq)` and a page is one index
//! range read backwards. Failed requests get a partial index (they are the few rows an operator
//! looks for). The team index replaces the foundation's `(team_id, started_at_ms)`, which it
//! covers.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (name, columns, predicate) — plain SQL, the same on Postgres and SQLite.
const INDEXES: &[(&str, &str, &str)] = &[
    ("idx_usage_events_started", "started_at_ms, seq", ""),
    (
        "idx_usage_events_team_started_seq",
        "team_id, started_at_ms, seq",
        "",
    ),
    (
        "idx_usage_events_key_started",
        "key_id, started_at_ms, seq",
        "",
    ),
    (
        "idx_usage_events_user_started",
        "user_id, started_at_ms, seq",
        "",
    ),
    (
        "idx_usage_events_model_started",
        "requested_model, started_at_ms, seq",
        "",
    ),
    // A team's traffic for one alias: the dashboard's usual drill-down. Without it, a team
    // filter and a model filter together made the planner intersect both indexes and sort
    // (4 s for a page at 10M rows).
    (
        "idx_usage_events_team_model_started",
        "team_id, requested_model, started_at_ms, seq",
        "",
    ),
    (
        "idx_usage_events_provider_started",
        "provider_id, started_at_ms, seq",
        "",
    ),
    (
        "idx_usage_events_errors_started",
        "error_class, started_at_ms, seq",
        " WHERE error_class IS NOT NULL",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (name, columns, predicate) in INDEXES {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {name} ON usage_events ({columns}){predicate}"
            ))
            .await?;
        }
        db.execute_unprepared("DROP INDEX IF EXISTS idx_usage_events_team_started")
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_usage_events_team_started \
             ON usage_events (team_id, started_at_ms)",
        )
        .await?;
        for (name, _, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }
}
