//! Migration 23 on a ledger that already has rows: on Postgres the table becomes partitioned by
//! week of event id with every row in its week (an id that is not a UUIDv7 in the default
//! partition), the indexes it had are there again, and the migration reverses to one table with
//! the same rows. SQLite keeps its table. Runs on a fresh Postgres database when
//! `MODELGATE_TEST_DATABASE_URL` is set, else on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use modelgate_migrations::usage_partitions::{id_bound, partition_name, span_start, WIDTH_MS};
use modelgate_migrations::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};

/// The columns without a default in the ledger before migration 23, and their text ones blank.
const COLUMNS: &str = "id, seq, request_id, node_id, key_id, team_id, endpoint, requested_model, \
                       provider_id, served_model, error_message, status, streamed, estimated, \
                       ingested_at";
const BLANKS: &str = "'', '', '', '', '', '', '', '', ''";

async fn strings(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    let backend = db.get_database_backend();
    db.query_all(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect()
}

async fn exec(db: &DatabaseConnection, sql: &str) {
    let backend = db.get_database_backend();
    db.execute(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_existing_ledger_is_partitioned_by_week_with_its_rows_and_indexes_and_back() {
    let unique = format!(
        "mg_migration_parts_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let admin_url = std::env::var("MODELGATE_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let (db, sqlite_dir) = match &admin_url {
        Some(admin_url) => {
            let admin = Database::connect(admin_url).await.unwrap();
            exec(&admin, &format!("CREATE DATABASE {unique}")).await;
            admin.close().await.unwrap();
            let (base, _) = admin_url.rsplit_once('/').unwrap();
            (
                Database::connect(format!("{base}/{unique}")).await.unwrap(),
                None,
            )
        }
        None => {
            let dir = std::env::temp_dir().join(&unique);
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display());
            (Database::connect(&url).await.unwrap(), Some(dir))
        }
    };
    // Every migration before the one that partitions the ledger (later ones follow it).
    let before = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261206_000023_usage_partitions")
        .unwrap();
    Migrator::up(&db, Some(u32::try_from(before).unwrap()))
        .await
        .unwrap();

    // Rows across three weeks (a UUIDv7-shaped id each), one id that is not a UUIDv7.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let times: Vec<i64> = (0..3).map(|w| now - (2 - w) * WIDTH_MS).collect();
    let mut ids: Vec<String> = times
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{}-7000-8000-{i:012x}", id_bound(*t)))
        .collect();
    ids.push("legacy-event".to_owned());
    for (seq, id) in ids.iter().enumerate() {
        exec(
            &db,
            &format!(
                "INSERT INTO usage_events ({COLUMNS}) \
                 VALUES ('{id}', {}, {BLANKS}, 200, false, false, '2026-01-01 00:00:00+00:00')",
                seq + 1
            ),
        )
        .await;
    }

    Migrator::up(&db, None).await.unwrap();
    let mut stored = strings(&db, "SELECT id FROM usage_events").await;
    stored.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(stored, expected);
    if db.get_database_backend() == DbBackend::Postgres {
        for (id, t) in ids.iter().zip(&times) {
            let home = strings(
                &db,
                &format!("SELECT tableoid::regclass::text FROM usage_events WHERE id = '{id}'"),
            )
            .await;
            assert_eq!(home, vec![partition_name(span_start(*t))], "{id}");
        }
        let home = strings(
            &db,
            "SELECT tableoid::regclass::text FROM usage_events WHERE id = 'legacy-event'",
        )
        .await;
        assert_eq!(home, vec!["usage_events_default".to_owned()]);
        // Two weeks ahead are ready, and the request log's indexes came along.
        let parts = strings(
            &db,
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'usage_events'::regclass",
        )
        .await;
        for w in 0..=2 {
            assert!(
                parts.contains(&partition_name(span_start(now) + w * WIDTH_MS)),
                "{parts:?}"
            );
        }
        let indexes = strings(
            &db,
            "SELECT indexname::text FROM pg_indexes WHERE tablename = 'usage_events'",
        )
        .await;
        for name in [
            "usage_events_pkey",
            "idx_usage_events_seq",
            "idx_usage_events_request_id",
            "idx_usage_events_team_started_model",
            "idx_usage_events_errors_started",
        ] {
            assert!(indexes.iter().any(|i| i == name), "{name}: {indexes:?}");
        }
        // Deduplication by id still holds across the partitioned table.
        let backend = db.get_database_backend();
        let res = db
            .execute(Statement::from_string(
                backend,
                format!(
                    "INSERT INTO usage_events ({COLUMNS}) \
                     VALUES ('{}', 99, {BLANKS}, 200, false, false, now()) \
                     ON CONFLICT (id) DO NOTHING",
                    ids[0]
                ),
            ))
            .await
            .unwrap();
        assert_eq!(res.rows_affected(), 0);
    }

    // Back to before the partitioning (and the migrations after it).
    let after = Migrator::migrations().len() - before;
    Migrator::down(&db, Some(u32::try_from(after).unwrap()))
        .await
        .unwrap();
    let mut stored = strings(&db, "SELECT id FROM usage_events").await;
    stored.sort();
    assert_eq!(stored, expected);
    if db.get_database_backend() == DbBackend::Postgres {
        let kind = strings(
            &db,
            "SELECT relkind::text FROM pg_class WHERE oid = 'usage_events'::regclass",
        )
        .await;
        assert_eq!(kind, vec!["r".to_owned()]);
        let unique = strings(
            &db,
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_usage_events_seq'",
        )
        .await;
        assert!(unique[0].starts_with("CREATE UNIQUE INDEX"), "{unique:?}");
    }

    db.close().await.unwrap();
    match (admin_url, sqlite_dir) {
        (Some(admin_url), _) => {
            let admin = Database::connect(&admin_url).await.unwrap();
            exec(&admin, &format!("DROP DATABASE IF EXISTS {unique}")).await;
            admin.close().await.unwrap();
        }
        (None, Some(dir)) => {
            let _ = std::fs::remove_dir_all(dir);
        }
        (None, None) => {}
    }
}
