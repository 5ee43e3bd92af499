//! Ledger rows for SQLite: the fast path of ingest on the zero-setup database.
//!
//! A group's events go in by plain multi-row `INSERT`s whose sizes are powers of two (at most
//! [`MAX_ROWS`] rows), so there are only a few statement texts and each is prepared once per
//! connection (sqlx keeps prepared statements by their text). Each row's values are taken
//! straight from the decoded event: no entity model, no query builder and no SQL text per
//! group. Like `COPY` on Postgres, the load fails when an id is already stored (a batch
//! replayed after a lost acknowledgement); the transaction is then void and the group stored
//! again by `INSERT … ON CONFLICT (id) DO NOTHING RETURNING id` (see `super::ingest`). A replay
//! is rare, a new event the rule.
//!
//! The statements are `INSERT OR FAIL`: a failing statement keeps the rows it wrote before the
//! conflict instead of undoing them, which is no loss since the whole transaction is void, and
//! spares SQLite the statement journal it otherwise writes for every page a statement changes
//! inside a transaction (`perf`: 4.5 % of SQLite's thread, mostly copying into a temporary
//! file; the control plane's CPU per stored event fell about a tenth, see ARCHITECTURE.md).
//!
//! The values are bound straight from the event's text (borrowed; sqlx copies each once on its
//! way to SQLite's thread) with the types the entity path binds (same text for the enums and
//! the time, NUL replaced by U+FFFD), so a row reads back the same whichever path stored it.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use modelgate_shared::usage::{Environment, ErrorClass, TrafficClass, UsageEvent};
use sea_orm::sqlx::sqlite::{Sqlite, SqliteArguments};
use sea_orm::sqlx::{self, query::Query};
use sea_orm::{DbErr, SqlErr};

use super::copy::COLUMNS;
use super::ingest::cleaned;
use crate::store::raw_txn::SqliteTxn;

/// Rows in the largest statement: 256 × 42 values stays well under SQLite's bound-parameter
/// limit (32,766).
const MAX_ROWS: usize = 256;

/// The statement texts, by the base-2 logarithm of their row count (1, 2, 4, … 256 rows).
static STATEMENTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let columns = COLUMNS
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let row = format!("({})", vec!["?"; COLUMNS.len()].join(", "));
    (0..=MAX_ROWS.trailing_zeros())
        .map(|log| {
            let rows = vec![row.as_str(); 1 << log].join(", ");
            format!("INSERT OR FAIL INTO \"usage_events\" ({columns}) VALUES {rows}")
        })
        .collect()
});

/// Why the fast path stored nothing; either way the transaction is void.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoadError {
    /// SQLite refused a row: its id (or sequence number) is already stored.
    #[error("SQLite refused a row: {0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// How many rows the next statement takes out of `left` (> 0): the largest power of two that
/// fits, at most [`MAX_ROWS`].
fn next_size(left: usize) -> usize {
    let n = left.min(MAX_ROWS);
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// Inserts `events` numbered from `first_seq` in their order, stored at `now`, in `txn`.
pub(super) async fn insert(
    txn: &SqliteTxn,
    events: &[&UsageEvent],
    first_seq: i64,
    now: DateTime<Utc>,
) -> Result<(), LoadError> {
    let mut left = events;
    let mut seq = first_seq;
    // The attempts' JSON is made per row; it outlives the statement it is bound in.
    let mut attempts = Vec::with_capacity(left.len().min(MAX_ROWS));
    while !left.is_empty() {
        let n = next_size(left.len());
        let (these, rest) = left.split_at(n);
        left = rest;
        attempts.clear();
        attempts.extend(
            these
                .iter()
                .map(|e| serde_json::to_string(&e.attempts).unwrap_or_else(|_| "[]".into())),
        );
        let mut query = sqlx::query(&STATEMENTS[n.trailing_zeros() as usize]);
        for (&e, attempts) in these.iter().zip(&attempts) {
            query = bind_row(query, e, seq, attempts, now);
            seq += 1;
        }
        if let Err(e) = txn.execute_query(query).await {
            return Err(match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(why)) => LoadError::Refused(why),
                _ => LoadError::Db(e),
            });
        }
    }
    Ok(())
}

/// Binds one row's values, in [`COLUMNS`] order.
fn bind_row<'q>(
    query: Query<'q, Sqlite, SqliteArguments<'q>>,
    e: &'q UsageEvent,
    seq: i64,
    attempts: &'q str,
    now: DateTime<Utc>,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    let count = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    query
        .bind(cleaned(&e.id))
        .bind(seq)
        .bind(i32::try_from(e.schema_version).unwrap_or(i32::MAX))
        .bind(cleaned(&e.request_id))
        .bind(e.started_at_ms)
        .bind(e.first_byte_at_ms)
        .bind(e.ended_at_ms)
        .bind(cleaned(&e.node_id))
        .bind(cleaned(&e.region))
        .bind(cleaned(&e.key_id))
        .bind(cleaned(&e.team_id))
        .bind(cleaned(&e.user_id))
        .bind(cleaned(&e.application))
        .bind(e.environment.map_or("", Environment::as_str))
        .bind(cleaned(&e.endpoint))
        .bind(cleaned(&e.requested_model))
        .bind(cleaned(&e.provider_id))
        .bind(cleaned(&e.served_model))
        .bind(cleaned(&e.deployment_id))
        .bind(cleaned(attempts))
        .bind(i32::from(e.status))
        .bind(e.error_class.map(ErrorClass::as_str))
        .bind(cleaned(&e.error_message))
        .bind(count(e.latency_us))
        .bind(count(e.ttfb_us))
        .bind(count(e.input_tokens))
        .bind(count(e.output_tokens))
        .bind(count(e.cached_input_tokens))
        .bind(count(e.reasoning_tokens))
        .bind(count(e.images))
        .bind(count(e.media_ms))
        .bind(count(e.characters))
        .bind(e.cost_micros)
        .bind(count(e.price_version))
        .bind(e.streamed)
        .bind(e.estimated)
        .bind(e.fallback_used)
        .bind(e.traffic_class.map_or("", TrafficClass::as_str))
        .bind(e.cost_flag.as_str())
        .bind(e.cache_hit)
        .bind(e.trace_id.as_str())
        .bind(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_cut_into_statements_of_a_few_sizes() {
        let sizes = |mut left: usize| {
            let mut out = Vec::new();
            while left > 0 {
                let n = next_size(left);
                out.push(n);
                left -= n;
            }
            out
        };
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(230), [128, 64, 32, 4, 2]);
        assert_eq!(sizes(1000), [256, 256, 256, 128, 64, 32, 8]);
        assert_eq!(STATEMENTS.len(), 9);
    }

    #[test]
    fn every_statement_has_one_placeholder_per_column_of_each_row() {
        for (log, sql) in STATEMENTS.iter().enumerate() {
            let rows = 1usize << log;
            assert_eq!(
                sql.matches('?').count(),
                rows * COLUMNS.len(),
                "{rows} rows"
            );
        }
    }
}
