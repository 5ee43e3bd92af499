//! Migration 000005 on a database that already has prices: rows become the first catalog-wide
//! versions, numbered above every old per-row version, and the migration reverses. Runs on a
//! fresh Postgres database when `MODELGATE_TEST_DATABASE_URL` is set, else on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use modelgate_migrations::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

async fn query(db: &DatabaseConnection, sql: &str) -> Vec<Vec<String>> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap();
    let columns: Vec<&str> = sql
        .trim_start_matches("SELECT ")
        .split(" FROM ")
        .next()
        .unwrap()
        .split(", ")
        .collect();
    rows.iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| {
                    r.try_get::<String>("", c)
                        .or_else(|_| r.try_get::<i64>("", c).map(|v| v.to_string()))
                        .unwrap()
                })
                .collect()
        })
        .collect()
}

async fn exec(db: &DatabaseConnection, sql: &str) -> Result<(), String> {
    let backend = db.get_database_backend();
    db.execute(Statement::from_string(backend, sql.to_owned()))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A fresh database, and how to remove it afterwards.
enum Fresh {
    Sqlite(std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

async fn fresh() -> (DatabaseConnection, Fresh) {
    let unique = format!(
        "mg_migration_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    match std::env::var("MODELGATE_TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            let admin = Database::connect(&admin_url).await.unwrap();
            exec(&admin, &format!("CREATE DATABASE {unique}"))
                .await
                .unwrap();
            admin.close().await.unwrap();
            let (base, _) = admin_url.rsplit_once('/').unwrap();
            let db = Database::connect(format!("{base}/{unique}")).await.unwrap();
            (
                db,
                Fresh::Postgres {
                    admin_url,
                    name: unique,
                },
            )
        }
        _ => {
            let dir = std::env::temp_dir().join(unique);
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display());
            (Database::connect(&url).await.unwrap(), Fresh::Sqlite(dir))
        }
    }
}

async fn remove(fresh: Fresh) {
    match fresh {
        Fresh::Sqlite(dir) => {
            let _ = std::fs::remove_dir_all(dir);
        }
        Fresh::Postgres { admin_url, name } => {
            let admin = Database::connect(&admin_url).await.unwrap();
            let _ = exec(&admin, &format!("DROP DATABASE IF EXISTS {name}")).await;
            let _ = admin.close().await;
        }
    }
}

#[tokio::test]
async fn existing_prices_become_versions_above_every_old_per_row_version() {
    let (db, fresh) = fresh().await;
    Migrator::up(&db, Some(4)).await.unwrap();
    exec(
        &db,
        "INSERT INTO models (id, model, input_micros_per_mtok, output_micros_per_mtok, \
         price_version, created_at) VALUES \
         ('a', 'm1', 1, 2, 3, '2026-01-01 00:00:00+00:00'), \
         ('b', 'm2', 5, 6, 1, '2026-01-01 00:00:00+00:00')",
    )
    .await
    .unwrap();

    Migrator::up(&db, None).await.unwrap();
    assert_eq!(
        query(
            &db,
            "SELECT id, provider, family, status, price_version FROM models ORDER BY id"
        )
        .await,
        [
            ["a", "*", "chat", "active", "4"],
            ["b", "*", "chat", "active", "5"]
        ]
    );
    assert_eq!(
        query(
            &db,
            "SELECT version, model_id, input_micros_per_mtok, output_micros_per_mtok, price_version FROM model_price_versions ORDER BY version"
        )
        .await,
        [["4", "a", "1", "2", "4"], ["5", "b", "5", "6", "5"]]
    );
    assert_eq!(
        query(
            &db,
            "SELECT value FROM counters WHERE name = 'price_version'"
        )
        .await,
        [["5"]]
    );
    // A model is unique per provider, no longer on its own.
    exec(
        &db,
        "INSERT INTO models (id, model, provider, price_version, created_at, updated_at) \
         VALUES ('c', 'm1', 'openai', 6, '2026-01-02 00:00:00+00:00', '2026-01-02 00:00:00+00:00')",
    )
    .await
    .unwrap();
    let dup = exec(
        &db,
        "INSERT INTO models (id, model, provider, price_version, created_at, updated_at) \
         VALUES ('d', 'm1', 'openai', 7, '2026-01-02 00:00:00+00:00', '2026-01-02 00:00:00+00:00')",
    )
    .await;
    assert!(dup.unwrap_err().to_lowercase().contains("unique"));

    // Down (past the later migrations, to before the catalog) keeps one row per model, the one
    // for any provider.
    let later = Migrator::migrations().len() - 5;
    Migrator::down(&db, Some(u32::try_from(later + 1).unwrap()))
        .await
        .unwrap();
    assert_eq!(
        query(
            &db,
            "SELECT id, model, price_version FROM models ORDER BY id"
        )
        .await,
        [["a", "m1", "4"], ["b", "m2", "5"]]
    );
    assert!(exec(&db, "SELECT 1 FROM model_price_versions")
        .await
        .is_err());
    db.close().await.unwrap();
    remove(fresh).await;
}
