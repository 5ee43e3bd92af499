//! The ingest sequence: every stored event gets a number from the `usage_seq` counter, and pull
//! consumers (the pull API, export sinks, statements) page by it. The cursor must never pass an
//! event that is still to commit, or a consumer that resumes after it would skip that event.
//!
//! On Postgres several writers store at once (the writer tasks of one control plane and those
//! of every other control plane on the database), so numbers are not taken under a lock held to
//! commit. A writer instead:
//!
//! 1. takes a block in a short transaction of its own ([`take`]): the counter advances and the
//!    block is recorded in `usage_seq_pending`; the counter's row lock is held for that one
//!    statement only;
//! 2. stores its events under the block in its ingest transaction, which first deletes the
//!    block's pending row ([`claim`]); the deletion commits with the events, atomically.
//!
//! Readers see only sequence numbers below the lowest pending block ([`VISIBLE_BELOW`], read in
//! the same statement, so one snapshot): every number below it belongs to a transaction that
//! has committed or never will. A block whose transaction failed is released by its writer
//! ([`release`]); one whose writer died before claiming it (or whose release was lost) is
//! abandoned and deleted after [`ABANDONED_AFTER_MS`] by the next writer, unless some
//! transaction has claimed it meanwhile (`SKIP LOCKED`). A release that fails (the database
//! away just then) is retried, and abandoned blocks are also swept every few seconds
//! ([`sweep`]), so a ledger that falls quiet after an outage is not held back. A writer whose block was deleted that
//! way finds nothing to claim and fails its batch, which its node sends again: its numbers can
//! never become visible behind a consumer.
//!
//! SQLite allows one write transaction at a time: its writer takes numbers from the counter
//! inside the ingest transaction ([`take_in`]) and `usage_seq_pending` stays empty.

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use crate::service::ServiceError;
use crate::store::counter;

pub const COUNTER: &str = "usage_seq";

/// A pending block not claimed for this long is abandoned (its writer stopped between taking
/// and claiming it). Until then, consumers wait for it.
pub const ABANDONED_AFTER_MS: i64 = 60_000;

/// SQL for the exclusive upper bound of the sequence numbers a reader may page over: the lowest
/// pending block, or no bound.
pub const VISIBLE_BELOW: &str =
    "COALESCE((SELECT MIN(first_seq) FROM usage_seq_pending), 9223372036854775807)";

/// A block of `len` sequence numbers from `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub first: i64,
    pub len: i64,
}

/// Postgres: takes a block of `n` numbers and records it as pending, in one short transaction
/// (which also deletes abandoned blocks). Its commit need not wait for the disk: a transaction
/// that stores events under the block commits after it, and its durable commit implies this one.
pub async fn take(db: &DatabaseConnection, n: usize) -> Result<Block, ServiceError> {
    let len = i64::try_from(n).unwrap_or(i64::MAX);
    let txn = db.begin().await?;
    txn.execute_unprepared("SET LOCAL synchronous_commit = off")
        .await?;
    let now = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::int8";
    let sql = format!(
        "WITH abandoned AS (DELETE FROM usage_seq_pending WHERE first_seq IN \
           (SELECT first_seq FROM usage_seq_pending WHERE taken_at_ms < {now} - $2 \
            FOR UPDATE SKIP LOCKED)), \
         block AS (UPDATE counters SET value = value + $1 WHERE name = '{COUNTER}' \
           RETURNING value) \
         INSERT INTO usage_seq_pending (first_seq, last_seq, taken_at_ms) \
         SELECT value - $1 + 1, value, {now} FROM block RETURNING first_seq"
    );
    let row = txn
        .query_one(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [len.into(), ABANDONED_AFTER_MS.into()],
        ))
        .await?
        .ok_or_else(|| sea_orm::DbErr::RecordNotFound(format!("counter {COUNTER}")))?;
    let first: i64 = row.try_get("", "first_seq")?;
    txn.commit().await?;
    Ok(Block { first, len })
}

/// Postgres: claims `block` for `txn` by deleting its pending row (the row stays locked, and
/// pending to every reader, until `txn` ends). Fails if the block was deleted as abandoned.
pub async fn claim<C: ConnectionTrait>(txn: &C, block: Block) -> Result<(), ServiceError> {
    let done = txn
        .execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM usage_seq_pending WHERE first_seq = $1",
            [block.first.into()],
        ))
        .await?;
    if done.rows_affected() != 1 {
        return Err(ServiceError::Unavailable(format!(
            "usage sequence block {} was given up as abandoned before it was used",
            block.first
        )));
    }
    Ok(())
}

/// Blocks whose release failed (the database was unreachable just when their transaction
/// failed), released again by the writer's next [`sweep`].
#[derive(Debug, Default)]
pub struct Unreleased(std::sync::Mutex<Vec<Block>>);

impl Unreleased {
    fn push(&self, block: Block) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(block);
    }

    fn take(&self) -> Vec<Block> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Postgres: gives up `block` after its ingest transaction failed, so consumers need not wait
/// for it. If the database cannot be reached now, the block goes to `unreleased` for the next
/// [`sweep`].
pub async fn release(db: &DatabaseConnection, block: Block, unreleased: &Unreleased) {
    let gone = db
        .execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM usage_seq_pending WHERE first_seq = $1",
            [block.first.into()],
        ))
        .await;
    if let Err(e) = gone {
        tracing::warn!(first = block.first, error = %e, "could not release a usage sequence block; will retry");
        unreleased.push(block);
    }
}

/// Postgres, every few seconds from the writer: releases the blocks whose release failed and
/// deletes abandoned ones (as [`take`] does), so that after an outage the pull API's consumers
/// are not held back until the next ingest comes along.
pub async fn sweep(db: &DatabaseConnection, unreleased: &Unreleased) {
    for block in unreleased.take() {
        release(db, block, unreleased).await;
    }
    let now = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::int8";
    let abandoned = db
        .execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "DELETE FROM usage_seq_pending WHERE first_seq IN \
                 (SELECT first_seq FROM usage_seq_pending WHERE taken_at_ms < {now} - $1 \
                  FOR UPDATE SKIP LOCKED)"
            ),
            [ABANDONED_AFTER_MS.into()],
        ))
        .await;
    if let Err(e) = abandoned {
        tracing::debug!(error = %e, "could not sweep abandoned usage sequence blocks");
    }
}

/// SQLite (one writer at a time): reserves `n` numbers inside `txn` and returns the first.
pub(crate) async fn take_in<C: ConnectionTrait>(txn: &C, n: usize) -> Result<i64, ServiceError> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let mut update = Query::update();
    update
        .table(counter::Entity)
        .value(
            counter::Column::Value,
            Expr::col(counter::Column::Value).add(n),
        )
        .and_where(Expr::col(counter::Column::Name).eq(COUNTER))
        .returning_col(counter::Column::Value);
    let backend = txn.get_database_backend();
    let row = txn
        .query_one(backend.build(&update))
        .await?
        .ok_or_else(|| sea_orm::DbErr::RecordNotFound(format!("counter {COUNTER}")))?;
    let last: i64 = row.try_get("", "value")?;
    Ok(last - n + 1)
}

/// The highest sequence number at or below which every event is committed: an event stored
/// from now on gets a higher one.
pub async fn committed_through<C: ConnectionTrait>(db: &C) -> Result<i64, ServiceError> {
    let backend = db.get_database_backend();
    let row = db
        .query_one(Statement::from_string(
            backend,
            format!(
                "SELECT COALESCE((SELECT MIN(first_seq) - 1 FROM usage_seq_pending), \
                 (SELECT value FROM counters WHERE name = '{COUNTER}'), 0) AS v"
            ),
        ))
        .await?;
    Ok(match row {
        Some(r) => r.try_get("", "v")?,
        None => 0,
    })
}
