//! Ledger upkeep: partitions made ahead of time and retention.
//!
//! On Postgres `usage_events` is range-partitioned by event id, one partition per week of id time
//! (`modelgate_migrations::usage_partitions`). [`maintain`] creates the partitions for the
//! current span and [`AHEAD`] beyond it, so ingest never waits on one, and, under a retention
//! setting, drops every partition whose whole span ended before the cutoff: retention is a
//! `DROP TABLE` per week, not a `DELETE` of millions of rows. Rows with old UUIDv7 ids that
//! landed in the default partition (events reported after their partition was dropped) are
//! deleted there. SQLite keeps one table and deletes by id range.
//!
//! Retention never takes an event an export sink has not delivered yet: a partition holding a
//! sequence number above the lowest sink cursor is kept (and reported) until the sink catches
//! up. The daily aggregates and budget periods are not touched. An event replayed after its
//! row was dropped would be stored again: deduplication by id holds within the retention window.

use std::time::Duration;

use chrono::{DateTime, Utc};
use modelgate_migrations::usage_partitions::{self, DEFAULT_PARTITION};
pub use modelgate_migrations::usage_partitions::{Partition, AHEAD, WIDTH_MS};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use crate::service::ServiceError;

/// What one [`maintain`] pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Maintained {
    /// Partitions created (ahead of time).
    pub created: Vec<String>,
    /// Partitions dropped by retention.
    pub dropped: Vec<String>,
    /// Partitions past retention kept because an export sink has not delivered all their events.
    pub kept_for_export: Vec<String>,
    /// Rows deleted one by one (SQLite, or stray old ids in the default partition).
    pub deleted_rows: u64,
}

/// Creates the partitions due and applies `retention` (none: keep everything) as of `now`.
pub async fn maintain(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    retention: Option<Duration>,
) -> Result<Maintained, ServiceError> {
    let mut done = Maintained::default();
    let partitioned = usage_partitions::is_partitioned(db).await?;
    if partitioned {
        let txn = db.begin().await?;
        done.created = usage_partitions::create_ahead(&txn, now.timestamp_millis()).await?;
        txn.commit().await?;
    }
    let Some(retention) = retention else {
        return Ok(done);
    };
    let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff_ms = now.timestamp_millis().saturating_sub(keep_ms);
    let exported_to = lowest_sink_cursor(db).await?;
    if partitioned {
        for p in usage_partitions::list(db).await? {
            if p.end_ms > cutoff_ms {
                continue;
            }
            let newest_seq = scalar(
                db,
                &format!("SELECT COALESCE(max(seq), 0) AS v FROM {}", p.name),
            )
            .await?;
            if exported_to.is_some_and(|cursor| newest_seq > cursor) {
                done.kept_for_export.push(p.name);
                continue;
            }
            // Detach, then drop: the partitioned table is locked only for the detach.
            let txn = db.begin().await?;
            txn.execute_unprepared(&format!(
                "ALTER TABLE usage_events DETACH PARTITION {}",
                p.name
            ))
            .await?;
            txn.execute_unprepared(&format!("DROP TABLE {}", p.name))
                .await?;
            txn.commit().await?;
            done.dropped.push(p.name);
        }
    }
    // Old UUIDv7 ids outside every partition (or every row, on SQLite).
    let table = if partitioned {
        DEFAULT_PARTITION
    } else {
        "usage_events"
    };
    let mut sql = format!(
        "DELETE FROM {table} WHERE id >= '{}' AND id < '{}'",
        usage_partitions::id_bound(0x0100_0000_0000),
        usage_partitions::id_bound(cutoff_ms),
    );
    if let Some(cursor) = exported_to {
        sql.push_str(&format!(" AND seq <= {cursor}"));
    }
    done.deleted_rows = db.execute_unprepared(&sql).await?.rows_affected();
    if !done.dropped.is_empty() || done.deleted_rows > 0 || !done.kept_for_export.is_empty() {
        tracing::info!(
            dropped = ?done.dropped,
            deleted_rows = done.deleted_rows,
            kept_for_export = ?done.kept_for_export,
            "usage retention applied"
        );
    }
    Ok(done)
}

/// The partitions with a range, oldest first (none on SQLite).
pub async fn list(db: &DatabaseConnection) -> Result<Vec<Partition>, ServiceError> {
    if !usage_partitions::is_partitioned(db).await? {
        return Ok(Vec::new());
    }
    Ok(usage_partitions::list(db).await?)
}

/// The lowest export sink cursor: every event at or below it is delivered everywhere. `None`
/// without sinks.
async fn lowest_sink_cursor(db: &DatabaseConnection) -> Result<Option<i64>, ServiceError> {
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT min(\"cursor\") AS v FROM export_sinks",
        ))
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<Option<i64>>("", "v")?,
        None => None,
    })
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> Result<i64, ServiceError> {
    let row = db
        .query_one(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| sea_orm::DbErr::RecordNotFound(sql.to_owned()))?;
    Ok(row.try_get::<i64>("", "v")?)
}

/// How often [`run`] maintains the ledger.
pub const INTERVAL: Duration = Duration::from_secs(3600);

/// Maintains the ledger now and every [`INTERVAL`] until `shutdown`.
pub async fn run(
    s: crate::service::Services,
    retention: Option<Duration>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = maintain(&s.db, s.clock.now(), retention).await {
            tracing::warn!(error = %e, "usage ledger maintenance failed");
        }
    }
}
