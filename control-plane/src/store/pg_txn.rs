//! A Postgres transaction held as sqlx's own connection, for what sea-orm cannot send (`COPY …
//! FROM STDIN`), that still runs sea-orm's statements: it implements [`ConnectionTrait`], so code
//! written against that trait (entity inserts, finds, raw statements) runs inside it unchanged.
//! The ledger's ingest uses it to store a group's events by binary `COPY` and then count them
//! into the aggregates, in one transaction.

use sea_orm::sea_query::Values;
use sea_orm::sqlx::{self, postgres::PgRow, Postgres};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
};
use sea_query_binder::SqlxValues;
use tokio::sync::Mutex;

/// One open transaction; rolled back if dropped without [`PgTxn::commit`].
pub struct PgTxn {
    // Statements take `&self` (as sea-orm's own transaction does); one runs at a time.
    txn: Mutex<sqlx::Transaction<'static, Postgres>>,
}

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

impl PgTxn {
    /// Begins a transaction on a connection of `db`'s pool. `db` must be a Postgres connection.
    pub async fn begin(db: &DatabaseConnection) -> Result<Self, DbErr> {
        if db.get_database_backend() != DbBackend::Postgres {
            return Err(DbErr::Custom("a PgTxn needs a Postgres connection".into()));
        }
        let txn = db
            .get_postgres_connection_pool()
            .begin()
            .await
            .map_err(conn_err)?;
        Ok(PgTxn {
            txn: Mutex::new(txn),
        })
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

    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.into_inner().commit().await.map_err(exec_err)
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
fn bound(sql: &str, values: Option<Values>) -> sqlx::query::Query<'_, Postgres, SqlxValues> {
    sqlx::query_with(sql, SqlxValues(values.unwrap_or(Values(Vec::new()))))
}

#[async_trait::async_trait]
impl ConnectionTrait for PgTxn {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let mut txn = self.txn.lock().await;
        let done = bound(&stmt.sql, stmt.values)
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
        let row: Option<PgRow> = bound(&stmt.sql, stmt.values)
            .fetch_optional(&mut **txn)
            .await
            .map_err(query_err)?;
        Ok(row.map(Into::into))
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut txn = self.txn.lock().await;
        let rows: Vec<PgRow> = bound(&stmt.sql, stmt.values)
            .fetch_all(&mut **txn)
            .await
            .map_err(query_err)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
