//! Ledger rows for SQLite: the fast path of ingest on the zero-setup database.
//!
//! A group's events go in by plain multi-row `INSERT`s whose sizes are powers of two (at most
//! [`MAX_ROWS`] rows), so there are only a few statement texts and each is prepared once per
//! connection (sqlx keeps prepared statements by their text). Each row's values are taken
//! straight from the decoded event: no entity model, no query builder and no SQL text per
//! group. Like `COPY` on Postgres, a plain `INSERT` fails as a whole when an id is already
//! stored (a batch replayed after a lost acknowledgement); the group is then stored again by
//! `INSERT … ON CONFLICT (id) DO NOTHING RETURNING id` (see `super::ingest`). A replay is rare,
//! a new event the rule.
//!
//! The values are the ones the entity path binds (same types, same text for the enums, NUL
//! replaced by U+FFFD), so a row reads back the same whichever path stored it.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use modelgate_shared::usage::{Environment, ErrorClass, TrafficClass, UsageEvent};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, SqlErr, Statement, Value};

use super::copy::COLUMNS;
use super::ingest::clean;

/// Rows in the largest statement: 256 × 42 values stays well under SQLite's bound-parameter
/// limit (32,766).
pub(super) const MAX_ROWS: usize = 256;

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
            format!("INSERT INTO \"usage_events\" ({columns}) VALUES {rows}")
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

/// Inserts `rows` (each event with its sequence number), stored at `now`, in `txn`.
pub(super) async fn insert<C: ConnectionTrait>(
    txn: &C,
    rows: &[(&UsageEvent, i64)],
    now: DateTime<Utc>,
) -> Result<(), LoadError> {
    let mut left = rows;
    while !left.is_empty() {
        let n = next_size(left.len());
        let (these, rest) = left.split_at(n);
        left = rest;
        let mut values = Vec::with_capacity(n * COLUMNS.len());
        for &(e, seq) in these {
            push_row(&mut values, e, seq, now);
        }
        let sql = &STATEMENTS[n.trailing_zeros() as usize];
        let statement = Statement::from_sql_and_values(DbBackend::Sqlite, sql.as_str(), values);
        match txn.execute(statement).await {
            Ok(_) => {}
            Err(e) => {
                return Err(match e.sql_err() {
                    Some(SqlErr::UniqueConstraintViolation(why)) => LoadError::Refused(why),
                    _ => LoadError::Db(e),
                })
            }
        }
    }
    Ok(())
}

/// One row's values, in [`COLUMNS`] order.
fn push_row(values: &mut Vec<Value>, e: &UsageEvent, seq: i64, now: DateTime<Utc>) {
    let text = |s: &str| Value::from(clean(s));
    let count = |v: u64| Value::from(i64::try_from(v).unwrap_or(i64::MAX));
    let attempts = serde_json::to_string(&e.attempts).unwrap_or_else(|_| "[]".into());
    values.extend([
        text(&e.id),
        Value::from(seq),
        Value::from(i32::try_from(e.schema_version).unwrap_or(i32::MAX)),
        text(&e.request_id),
        Value::from(e.started_at_ms),
        Value::from(e.first_byte_at_ms),
        Value::from(e.ended_at_ms),
        text(&e.node_id),
        text(&e.region),
        text(&e.key_id),
        text(&e.team_id),
        text(&e.user_id),
        text(&e.application),
        Value::from(e.environment.map_or("", Environment::as_str)),
        text(&e.endpoint),
        text(&e.requested_model),
        text(&e.provider_id),
        text(&e.served_model),
        text(&e.deployment_id),
        text(&attempts),
        Value::from(i32::from(e.status)),
        Value::from(e.error_class.map(|c| ErrorClass::as_str(c).to_owned())),
        text(&e.error_message),
        count(e.latency_us),
        count(e.ttfb_us),
        count(e.input_tokens),
        count(e.output_tokens),
        count(e.cached_input_tokens),
        count(e.reasoning_tokens),
        count(e.images),
        count(e.media_ms),
        count(e.characters),
        Value::from(e.cost_micros),
        count(e.price_version),
        Value::from(e.streamed),
        Value::from(e.estimated),
        Value::from(e.fallback_used),
        Value::from(e.traffic_class.map_or("", TrafficClass::as_str)),
        Value::from(e.cost_flag.as_str()),
        Value::from(e.cache_hit),
        Value::from(e.trace_id.clone()),
        Value::from(now),
    ]);
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
    fn every_statement_has_one_placeholder_per_value_it_is_given() {
        for (log, sql) in STATEMENTS.iter().enumerate() {
            let rows = 1usize << log;
            assert_eq!(
                sql.matches('?').count(),
                rows * COLUMNS.len(),
                "{rows} rows"
            );
        }
        let mut values = Vec::new();
        push_row(&mut values, &UsageEvent::default(), 1, Utc::now());
        assert_eq!(values.len(), COLUMNS.len());
    }
}
