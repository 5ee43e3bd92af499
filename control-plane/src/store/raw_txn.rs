//! A transaction held as sqlx's own connection, for what sea-orm cannot send, that still runs
//! sea-orm's statements: it implements [`ConnectionTrait`], so code written against that trait
//! (entity inserts, finds, raw statements) runs inside it unchanged. The ledger's ingest uses it
//! to store a group's events in bulk and then count them into the aggregates, in one
//! transaction: on Postgres by binary `COPY … FROM STDIN` ([`PgTxn::copy_in`]), on SQLite by
//! statements whose values are bound straight from borrowed text ([`SqliteTxn::execute_query`]:
//! sea-orm would copy every value into a statement and then clone them all to bind them).

use sea_orm::sea_query::Values;
use sea_orm::sqlx::sqlite::{SqliteArguments, SqliteRow};
use sea_orm::sqlx::{self, postgres::PgRow, Postgres, Sqlite};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
};
use sea_query_binder::SqlxValues;
use tokio::sync::Mutex;

/// One open transaction; rolled back if dropped without [`RawTxn::commit`].
pub struct RawTxn<DB: sqlx::Database> {
    // Statements take `&self` (as sea-orm's own transaction does); one runs at a time.
    txn: Mutex<sqlx::Transaction<'static, DB>>,
}

pub type PgTxn = RawTxn<Postgres>;
pub type SqliteTxn = RawTxn<Sqlite>;

/// Why a `COPY` failed; either way the transaction is void.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Postgres refused a row's values: a unique key already taken (SQLSTATE 23505) or text it
    /// cannot hold, such as a NUL (22021).
    #[error("Postgres refused a copied row: {0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl<DB: sqlx::Database> RawTxn<DB> {
    /// Begins a transaction on a connection of `pool`, which must be the pool of a sea-orm
    /// connection of `backend`.
    async fn begin_on(
        db: &DatabaseConnection,
        backend: DbBackend,
        pool: impl FnOnce(&DatabaseConnection) -> &sqlx::Pool<DB>,
    ) -> Result<Self, DbErr> {
        if db.get_database_backend() != backend {
            return Err(DbErr::Custom(format!(
                "a raw {backend:?} transaction needs a {backend:?} connection"
            )));
        }
        let txn = pool(db).begin().await.map_err(conn_err)?;
        Ok(RawTxn {
            txn: Mutex::new(txn),
        })
    }

    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.into_inner().commit().await.map_err(exec_err)
    }
}

impl PgTxn {
    /// Begins a transaction on a connection of `db`'s pool. `db` must be a Postgres connection.
    pub async fn begin(db: &DatabaseConnection) -> Result<Self, DbErr> {
        Self::begin_on(db, DbBackend::Postgres, |db| {
            db.get_postgres_connection_pool()
        })
        .await
    }

    /// Runs `statement` (a `COPY … FROM STDIN`) with `data` as its input; returns the rows
    /// copied.
    pub async fn copy_in(&self, statement: &str, data: &[u8]) -> Result<u64, CopyError> {
        let mut txn = self.txn.lock().await;
        let copied = async {
            let mut copy = txn.copy_in_raw(statement).await?;
            copy.send(data).await?;
            copy.finish().await
        }
        .await;
        copied.map_err(|e| match &e {
            sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("23505" | "22021")) => {
                CopyError::Refused(d.message().to_owned())
            }
            _ => CopyError::Db(exec_err(e)),
        })
    }
}

impl SqliteTxn {
    /// Begins a transaction on `db`'s connection. `db` must be a SQLite connection.
    pub async fn begin(db: &DatabaseConnection) -> Result<Self, DbErr> {
        Self::begin_on(db, DbBackend::Sqlite, |db| db.get_sqlite_connection_pool()).await
    }

    /// Runs `query` (its values bound by the caller, borrowed where they can be); returns the
    /// rows it changed.
    pub async fn execute_query<'q>(
        &self,
        query: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
    ) -> Result<u64, DbErr> {
        let mut txn = self.txn.lock().await;
        let done = query.execute(&mut **txn).await.map_err(exec_err)?;
        Ok(done.rows_affected())
    }
}

fn exec_err(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(e))
}

fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(e))
}

fn conn_err(e: sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(e))
}

/// `sql` with its values bound (moved, not copied).
fn bound<DB: sqlx::Database>(
    sql: &str,
    values: Option<Values>,
) -> sqlx::query::Query<'_, DB, SqlxValues>
where
    SqlxValues: for<'q> sqlx::IntoArguments<'q, DB>,
{
    sqlx::query_with(sql, SqlxValues(values.unwrap_or(Values(Vec::new()))))
}

/// sea-orm's statements on a raw transaction of one database (`$db`, its row type, its
/// backend): the same four methods for each.
macro_rules! connection_trait {
    ($db:ty, $row:ty, $backend:expr) => {
        #[async_trait::async_trait]
        impl ConnectionTrait for RawTxn<$db> {
            fn get_database_backend(&self) -> DbBackend {
                $backend
            }

            async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
                let mut txn = self.txn.lock().await;
                let done = bound::<$db>(&stmt.sql, stmt.values)
                    .execute(&mut **txn)
                    .await
                    .map_err(exec_err)?;
                Ok(done.into())
            }

            async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
                use sqlx::Executor;
                let mut txn = self.txn.lock().await;
                let done = (&mut **txn).execute(sql).await.map_err(exec_err)?;
                Ok(done.into())
            }

            async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
                let mut txn = self.txn.lock().await;
                let row: Option<$row> = bound::<$db>(&stmt.sql, stmt.values)
                    .fetch_optional(&mut **txn)
                    .await
                    .map_err(query_err)?;
                Ok(row.map(Into::into))
            }

            async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
                let mut txn = self.txn.lock().await;
                let rows: Vec<$row> = bound::<$db>(&stmt.sql, stmt.values)
                    .fetch_all(&mut **txn)
                    .await
                    .map_err(query_err)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }
    };
}

connection_trait!(Postgres, PgRow, DbBackend::Postgres);
connection_trait!(Sqlite, SqliteRow, DbBackend::Sqlite);
