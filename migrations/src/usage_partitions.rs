//! The usage ledger's partitions on Postgres. `usage_events` is range-partitioned by its own id:
//! an event id is a UUIDv7, whose first 48 bits are its Unix time in milliseconds written as the
//! leading 12 hex digits (`0193a1b2-c3d4-7…`), so ids sort by time as text and a time range is an
//! id range. Partitioning by the id keeps `ON CONFLICT (id)` working (Postgres wants the
//! partition key in every unique index) while each partition holds one span of time, which
//! retention drops whole.
//!
//! One partition per [`WIDTH_MS`] (epoch-aligned), named after its first day
//! (`usage_events_p20261203`), plus `usage_events_default` for ids outside every range (an id that
//! is not a UUIDv7, or one far in the future). Creating a partition moves the rows of its range
//! out of the default partition first, so a range that the default partition already touched
//! can still be created.
//!
//! Used by the migration that partitions the table and by the control plane's maintenance
//! (`service::usage::partitions`), which keeps partitions created ahead of time.

use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

pub const DAY_MS: i64 = 86_400_000;
/// The span of time one partition holds.
pub const WIDTH_MS: i64 = 7 * DAY_MS;
/// Partitions kept ready beyond the one holding the current time.
pub const AHEAD: i64 = 2;
/// Where ids outside every partition's range go.
pub const DEFAULT_PARTITION: &str = "usage_events_default";
const PREFIX: &str = "usage_events_p";

/// One partition with a range: its table and the time span its ids cover, `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The start of the partition span holding `ms`.
pub fn span_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(WIDTH_MS)
}

/// The smallest id a UUIDv7 made at `ms` can have, as it sorts: the 48-bit time as 12 hex
/// digits, hyphenated where the id is (`0193a1b2-c3d4`). Every id made at `ms` or later sorts
/// at or after it, every earlier one before it.
pub fn id_bound(ms: i64) -> String {
    let hex = format!("{:012x}", ms.clamp(0, (1 << 48) - 1));
    format!("{}-{}", &hex[..8], &hex[8..])
}

/// The time an id bound (or a UUIDv7 id) stands for, if it has that shape.
pub fn bound_ms(bound: &str) -> Option<i64> {
    let head = bound.get(..13)?;
    if head.as_bytes()[8] != b'-' {
        return None;
    }
    let hex = format!("{}{}", &head[..8], &head[9..]);
    i64::from_str_radix(&hex, 16).ok()
}

/// The partition table for the span starting at `start_ms`: `usage_events_pYYYYMMDD`.
pub fn partition_name(start_ms: i64) -> String {
    let day = chrono::DateTime::from_timestamp_millis(start_ms)
        .unwrap_or_default()
        .format("%Y%m%d");
    format!("{PREFIX}{day}")
}

/// Whether `usage_events` is a partitioned table here (always false on SQLite).
pub async fn is_partitioned<C: ConnectionTrait>(c: &C) -> Result<bool, DbErr> {
    if c.get_database_backend() != DbBackend::Postgres {
        return Ok(false);
    }
    let row = c
        .query_one(Statement::from_string(
            DbBackend::Postgres,
            "SELECT relkind::text AS kind FROM pg_class \
             WHERE oid = to_regclass('usage_events')",
        ))
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<String>("", "kind")? == "p",
        None => false,
    })
}

/// The partitions with a range, oldest first (the default partition is not listed).
pub async fn list<C: ConnectionTrait>(c: &C) -> Result<Vec<Partition>, DbErr> {
    let rows = c
        .query_all(Statement::from_string(
            DbBackend::Postgres,
            "SELECT p.relname::text AS name, pg_get_expr(p.relpartbound, p.oid) AS bound \
             FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass('usage_events')",
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.try_get("", "name")?;
        let bound: String = r.try_get("", "bound")?;
        // FOR VALUES FROM ('0193a1b2-c3d4') TO ('0193a1b3-0000'), or DEFAULT.
        let quoted: Vec<&str> = bound.split('\'').skip(1).step_by(2).collect();
        if let [from, to] = quoted[..] {
            if let (Some(start_ms), Some(end_ms)) = (bound_ms(from), bound_ms(to)) {
                out.push(Partition {
                    name,
                    start_ms,
                    end_ms,
                });
            }
        }
    }
    out.sort_by_key(|p| p.start_ms);
    Ok(out)
}

/// Creates the partition for the span starting at `start_ms` unless one exists; returns its name
/// if it was created. Rows of its range held by the default partition move into it, in the same
/// transaction. Run it inside a transaction.
pub async fn create<C: ConnectionTrait>(c: &C, start_ms: i64) -> Result<Option<String>, DbErr> {
    let start_ms = span_start(start_ms);
    let name = partition_name(start_ms);
    let exists = c
        .query_one(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT to_regclass('{name}') IS NOT NULL AS present"),
        ))
        .await?
        .map(|r| r.try_get::<bool>("", "present"))
        .transpose()?
        .unwrap_or(false);
    if exists {
        return Ok(None);
    }
    let (lo, hi) = (id_bound(start_ms), id_bound(start_ms + WIDTH_MS));
    c.execute_unprepared(&format!(
        "CREATE TABLE {name} (LIKE usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    ))
    .await?;
    c.execute_unprepared(&format!(
        "WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE id >= '{lo}' AND id < '{hi}' \
         RETURNING *) INSERT INTO {name} SELECT * FROM moved"
    ))
    .await?;
    // Attaching builds the partitioned table's indexes on the new partition.
    c.execute_unprepared(&format!(
        "ALTER TABLE usage_events ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')"
    ))
    .await?;
    Ok(Some(name))
}

/// Makes sure the partitions from the one holding `now_ms` to [`AHEAD`] beyond it exist;
/// returns the ones it created.
pub async fn create_ahead<C: ConnectionTrait>(c: &C, now_ms: i64) -> Result<Vec<String>, DbErr> {
    let mut created = Vec::new();
    let first = span_start(now_ms);
    for i in 0..=AHEAD {
        if let Some(name) = create(c, first + i * WIDTH_MS).await? {
            created.push(name);
        }
    }
    Ok(created)
}
