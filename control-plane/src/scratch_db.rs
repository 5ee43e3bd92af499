//! A Postgres database of its own for a unit test that needs several replicas on one database.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// A fresh database on the tests' Postgres server (`MODELGATE_TEST_DATABASE_URL`, else the local
/// one), dropped by [`ScratchDb::drop_now`].
pub struct ScratchDb {
    pub url: String,
    name: String,
    admin: DatabaseConnection,
}

impl ScratchDb {
    pub async fn create() -> ScratchDb {
        let base = std::env::var("MODELGATE_TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = format!("mg_unit_{}", modelgate_shared::new_id().simple());
        let admin = Database::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("this test needs Postgres at {base}: {e}"));
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
        ScratchDb { url, name, admin }
    }

    pub async fn drop_now(self) {
        self.admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .unwrap();
    }
}
