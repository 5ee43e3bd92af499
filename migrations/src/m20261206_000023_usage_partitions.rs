//! Postgres: `usage_events` becomes a table range-partitioned by event id (time, see
//! [`crate::usage_partitions`]), with its rows. The table is renamed aside, the partitioned table
//! is created like it (columns, defaults, checks) with the default partition and one partition
//! per span from the oldest stored UUIDv7 id to [`AHEAD`] spans beyond now, the rows are copied,
//! the old table dropped, and its indexes are built again on the new one as they were, read from
//! the catalogue (so indexes added by any earlier migration come along). A unique index that
//! does not include the id cannot exist on a partitioned table: the sequence index becomes a
//! plain one (sequence numbers stay unique by construction: each comes once from the counter).
//!
//! SQLite keeps its plain table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::usage_partitions::{self, span_start, AHEAD, DEFAULT_PARTITION, WIDTH_MS};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Ids before this are not UUIDv7s made by ModelGate (2024-01-01T00:00:00Z).
const EPOCH_MS: i64 = 1_704_067_200_000;

/// The index definitions of `table` other than its primary key, as `CREATE INDEX` statements.
async fn index_definitions<C: ConnectionTrait>(c: &C, table: &str) -> Result<Vec<String>, DbErr> {
    let rows = c
        .query_all(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT pg_get_indexdef(i.indexrelid) AS def FROM pg_index i \
                 WHERE i.indrelid = to_regclass('{table}') AND NOT i.indisprimary \
                 ORDER BY i.indexrelid"
            ),
        ))
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String>("", "def"))
        .collect()
}

/// Moves the rows of `usage_events` into a new table made by `create_new` and rebuilds the
/// indexes (each passed through `adapt`).
async fn rebuild<C: ConnectionTrait>(
    c: &C,
    create_new: &[String],
    adapt: impl Fn(String) -> String,
) -> Result<(), DbErr> {
    c.execute_unprepared("LOCK TABLE usage_events IN ACCESS EXCLUSIVE MODE")
        .await?;
    let indexes = index_definitions(c, "usage_events").await?;
    c.execute_unprepared("ALTER TABLE usage_events RENAME TO usage_events_before")
        .await?;
    for sql in create_new {
        c.execute_unprepared(sql).await?;
    }
    c.execute_unprepared("INSERT INTO usage_events SELECT * FROM usage_events_before")
        .await?;
    c.execute_unprepared("DROP TABLE usage_events_before")
        .await?;
    // Indexes after the rows: one sorted build each instead of row-by-row growth.
    c.execute_unprepared(
        "ALTER TABLE usage_events ADD CONSTRAINT usage_events_pkey PRIMARY KEY (id)",
    )
    .await?;
    for def in indexes {
        c.execute_unprepared(&adapt(def)).await?;
    }
    c.execute_unprepared("ANALYZE usage_events").await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let c = m.get_connection();
        if c.get_database_backend() != DbBackend::Postgres
            || usage_partitions::is_partitioned(c).await?
        {
            return Ok(());
        }
        let now_ms = c
            .query_one(Statement::from_string(
                DbBackend::Postgres,
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8 AS now_ms",
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "now_ms"))
            .transpose()?
            .unwrap_or(EPOCH_MS);
        // The oldest UUIDv7 id stored (by the primary key: no scan).
        let oldest = c
            .query_one(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT min(id)::text AS id FROM usage_events WHERE id >= '{}' AND id < '{}'",
                    usage_partitions::id_bound(EPOCH_MS),
                    usage_partitions::id_bound(now_ms),
                ),
            ))
            .await?
            .and_then(|r| r.try_get::<Option<String>>("", "id").ok().flatten())
            .and_then(|id| usage_partitions::bound_ms(&id))
            .unwrap_or(now_ms);
        let mut create_new = vec![
            "CREATE TABLE usage_events (LIKE usage_events_before INCLUDING DEFAULTS \
             INCLUDING CONSTRAINTS) PARTITION BY RANGE (id)"
                .to_owned(),
            format!("CREATE TABLE {DEFAULT_PARTITION} PARTITION OF usage_events DEFAULT"),
        ];
        let mut start = span_start(oldest);
        while start <= span_start(now_ms) + AHEAD * WIDTH_MS {
            create_new.push(format!(
                "CREATE TABLE {} PARTITION OF usage_events FOR VALUES FROM ('{}') TO ('{}')",
                usage_partitions::partition_name(start),
                usage_partitions::id_bound(start),
                usage_partitions::id_bound(start + WIDTH_MS),
            ));
            start += WIDTH_MS;
        }
        rebuild(c, &create_new, |def| {
            if def.contains("(id)") {
                def
            } else {
                def.replacen("CREATE UNIQUE INDEX", "CREATE INDEX", 1)
            }
        })
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let c = m.get_connection();
        if !usage_partitions::is_partitioned(c).await? {
            return Ok(());
        }
        let create_new = vec!["CREATE TABLE usage_events (LIKE usage_events_before \
                               INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            .to_owned()];
        rebuild(c, &create_new, |def| {
            // An index on a partitioned table is defined ON ONLY in the catalogue's words.
            let def = def.replacen(" ON ONLY ", " ON ", 1);
            if def.contains("idx_usage_events_seq ") {
                def.replacen("CREATE INDEX", "CREATE UNIQUE INDEX", 1)
            } else {
                def
            }
        })
        .await
    }
}
