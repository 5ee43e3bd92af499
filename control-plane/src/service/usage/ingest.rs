//! Ingest: each batch is screened by its caller, then stored by the [`Writer`] (group commit,
//! several groups at once on Postgres) in one transaction per group of waiting batches that
//! (1) stores the events under a block of ingest sequence numbers ([`super::sequence`]) in bulk
//! (binary `COPY` on Postgres, plain multi-row `INSERT`s on SQLite) or, for a group that replays
//! a stored event, with `ON CONFLICT (id) DO NOTHING RETURNING id`, and (2) adds exactly the
//! inserted events to the daily aggregates and budget periods. A replayed batch inserts nothing and so changes no
//! aggregate; there is no window between "stored" and "counted".
//!
//! Groups commit in any order; a consumer paging by `seq` still never skips an event committed
//! late, because readers see only the numbers below the lowest block still pending
//! ([`super::sequence::VISIBLE_BELOW`]).
//!
//! Before any of that, each event is screened ([`super::validate`]): one whose figures no genuine
//! node could produce, or whose key does not exist or belongs to another team, is quarantined
//! with its reason in the same transaction ([`super::quarantine`]) and takes no part in the
//! sequence, the aggregates or the budgets. The rest of its batch is stored as usual and the
//! batch is acknowledged. An event that names a value this control plane does not know (an
//! error class, environment, traffic class or cost flag: a newer or a forged writer) is
//! quarantined the same way, with the field and the value as its reason, never stored under a
//! guessed value.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use modelgate_shared::usage::{Environment, ErrorClass, TrafficClass, Undecodable, UsageEvent};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QuerySelect, QueryTrait, Statement,
};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use super::copy;
use super::quarantine;
use super::sequence::{self, Block};
use super::sqlite_load;
use super::validate::{self, Refusal};
use crate::service::{ServiceError, Services};
use crate::store::raw_txn::{CopyError, PgTxn, SqliteTxn};
use crate::store::{api_key, budget, budget_period, usage_daily, usage_event};

/// Rows per INSERT statement (38 columns each stays under SQLite's bound-parameter limit).
const CHUNK: usize = 400;

/// Outcome of ingesting one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ingested {
    pub inserted: u64,
    /// Events already stored (or already quarantined) earlier: a replay.
    pub duplicates: u64,
    /// Events newly quarantined by this batch.
    pub quarantined: u64,
}

/// An event as a node reported it: decoded, or naming values this build does not know.
pub type Received = Result<UsageEvent, Undecodable>;

/// Whether a batch's events may have been sent before (`UsageBatch.resent`). Deduplication by
/// event id never depends on it; it picks how the batch is stored on Postgres: a batch sent
/// again goes straight to the statement that skips stored ids, instead of a binary `COPY` that
/// would fail on them and be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Sent for the first time, as far as its sender knows.
    New,
    /// Sent again after a failure, or the first batch of a node that may have sent it before a
    /// restart.
    Resent,
}

/// Stores a batch of decoded events (see [`ingest_received`]).
pub async fn ingest(
    s: &Services,
    node_id: &str,
    events: Vec<UsageEvent>,
) -> Result<Ingested, ServiceError> {
    ingest_received(
        s,
        node_id,
        events.into_iter().map(Ok).collect(),
        Delivery::New,
    )
    .await
}

/// Stores a batch reported by `node_id`; events whose id is already stored are skipped, events
/// that fail validation or could not be decoded are quarantined. Returns once the batch is
/// committed (with whatever other batches the [`Writer`] grouped it with), so the caller may
/// acknowledge it.
pub async fn ingest_received(
    s: &Services,
    node_id: &str,
    mut events: Vec<Received>,
    delivery: Delivery,
) -> Result<Ingested, ServiceError> {
    let received = events.len() as u64;
    // An id repeated within the batch is stored and counted once.
    let first: Vec<bool> = {
        let mut seen = HashSet::with_capacity(events.len());
        events
            .iter()
            .map(|e| {
                let id = match e {
                    Ok(e) => &e.id,
                    Err(u) => &u.event.id,
                };
                seen.insert(cleaned(id))
            })
            .collect()
    };
    let mut first = first.into_iter();
    events.retain(|_| first.next().unwrap_or(false));
    if events.is_empty() {
        return Ok(Ingested::default());
    }
    let (events, refused) = screen(s, events).await?;
    let first_reason = refused.first().map(|(_, why)| why.to_string());
    let batch = Batch {
        node_id: node_id.to_owned(),
        received,
        events,
        refused,
        delivery,
    };
    let stored = s.ingest_writer.write(batch).await?;
    if stored.copy_refused {
        s.metrics.copy_refused();
    }
    let done = stored.counts;
    s.metrics.ingested(
        done.inserted,
        done.duplicates,
        done.quarantined,
        stored.ended_at_ms.into_iter(),
        s.clock.now().timestamp_millis(),
    );
    if done.quarantined > 0 {
        tracing::warn!(
            node = %node_id,
            quarantined = done.quarantined,
            first_reason = first_reason.as_deref().unwrap_or(""),
            "usage events quarantined"
        );
    }
    Ok(done)
}

/// One screened batch on its way to the [`Writer`].
pub(super) struct Batch {
    node_id: String,
    /// Events as received, repeats included (for the acknowledgement's duplicate count).
    received: u64,
    events: Vec<UsageEvent>,
    refused: Vec<(UsageEvent, Refusal)>,
    delivery: Delivery,
}

/// Group commit: the task that writes usage batches. It takes every batch that is waiting,
/// stores them in one transaction (one sequence block, one insert, one aggregate upsert, one
/// budget upsert, one commit) and answers each batch's caller. Batches from many data planes
/// thus share the costs that are per transaction (taking a block, the commit's flush).
///
/// On Postgres up to [`POSTGRES_GROUPS`] groups are stored at once, each on its own connection:
/// the next group is formed as soon as one may start, from every batch that arrived meanwhile.
/// Their inserts run in parallel (no lock is held across them; see [`super::sequence`]); only
/// their upserts of a shared aggregate row wait for each other. SQLite stores one group at a
/// time.
///
/// If a group fails, each of its batches is retried alone, so one batch that cannot be stored
/// fails only its own caller (whose node keeps it and resends).
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

/// How often the writer sweeps the pending sequence blocks on Postgres ([`sequence::sweep`]).
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

struct Job {
    batch: Batch,
    done: oneshot::Sender<Result<Stored, ServiceError>>,
}

/// What the writer reports of one batch: its counts, and when each stored event ended (the
/// ingest lag metric).
#[derive(Debug, Default)]
struct Stored {
    counts: Ingested,
    ended_at_ms: Vec<i64>,
    /// Its group's binary `COPY` was refused and the group stored again by `INSERT`.
    copy_refused: bool,
}

/// Events in one group at most: beyond this the next transaction takes the rest.
const GROUP_EVENTS: usize = 20_000;

/// Groups stored at once on Postgres.
pub const POSTGRES_GROUPS: usize = 4;

impl Writer {
    /// Starts the writer task on the current runtime; it ends when the last handle is dropped.
    pub fn start(db: DatabaseConnection, alert_wakeup: Arc<Notify>) -> Self {
        let (jobs, rx) = mpsc::channel(1024);
        let groups = match db.get_database_backend() {
            DbBackend::Postgres => POSTGRES_GROUPS,
            _ => 1,
        };
        tokio::spawn(run(db, alert_wakeup, rx, groups));
        Writer { jobs }
    }

    async fn write(&self, batch: Batch) -> Result<Stored, ServiceError> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job { batch, done })
            .await
            .map_err(|_| ServiceError::Unavailable("the usage writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| ServiceError::Unavailable("the usage writer has stopped".into()))?
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

async fn run(
    db: DatabaseConnection,
    alert_wakeup: Arc<Notify>,
    mut rx: mpsc::Receiver<Job>,
    groups: usize,
) {
    let slots = Arc::new(Semaphore::new(groups));
    let unreleased = Arc::new(sequence::Unreleased::default());
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    let sweeping = Arc::new(Semaphore::new(1));
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            job = rx.recv() => match job {
                Some(job) => job,
                None => return,
            },
            _ = sweep.tick(), if postgres => {
                // One sweep at a time, beside the groups (it may wait on an unreachable
                // database).
                if let Ok(one) = sweeping.clone().try_acquire_owned() {
                    let (db, unreleased) = (db.clone(), unreleased.clone());
                    tokio::spawn(async move {
                        sequence::sweep(&db, &unreleased).await;
                        drop(one);
                    });
                }
                continue;
            }
        };
        // A group is formed once it may start, so it takes every batch that arrived meanwhile.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut size = first.batch.events.len() + first.batch.refused.len();
        let mut group = vec![first];
        while size < GROUP_EVENTS {
            let Ok(job) = rx.try_recv() else { break };
            size += job.batch.events.len() + job.batch.refused.len();
            group.push(job);
        }
        tokio::spawn(store_group(
            db.clone(),
            alert_wakeup.clone(),
            unreleased.clone(),
            group,
            slot,
        ));
    }
}

/// Stores one group and answers each of its callers; `slot` is given back when it is done.
async fn store_group(
    db: DatabaseConnection,
    alert_wakeup: Arc<Notify>,
    unreleased: Arc<sequence::Unreleased>,
    mut group: Vec<Job>,
    slot: OwnedSemaphorePermit,
) {
    let _slot = slot;
    let batches: Vec<&Batch> = group.iter().map(|j| &j.batch).collect();
    let outcome = store(&db, &unreleased, &batches).await;
    match outcome {
        Ok((results, alerts)) => {
            if alerts > 0 {
                alert_wakeup.notify_one();
            }
            for (job, result) in group.into_iter().zip(results) {
                let _ = job.done.send(Ok(result));
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some(job) = group.pop() {
                let _ = job.done.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(batches = group.len(), error = %e, "a usage group failed; storing its batches one by one");
            for job in group {
                let result = store(&db, &unreleased, &[&job.batch])
                    .await
                    .map(|(mut r, alerts)| {
                        if alerts > 0 {
                            alert_wakeup.notify_one();
                        }
                        r.pop().unwrap_or_default()
                    });
                let _ = job.done.send(result);
            }
        }
    }
}

/// Stores `batches` in one transaction: their quarantined events, then their events under one
/// block of sequence numbers. An id that two batches of the group both carry is stored once and
/// counted for the first. Returns each batch's outcome, in order, and the number of budget
/// alerts queued.
///
/// On Postgres the events go in by binary `COPY` ([`super::copy`]); if one of them is already
/// stored (a replay) or holds a NUL, the `COPY` fails and the group is stored again, under a new
/// block, by `INSERT … ON CONFLICT (id) DO NOTHING`, which skips the one and cleans the other.
/// A group holding a batch [`Delivery::Resent`] skips the `COPY`: it would likely fail.
async fn store(
    db: &DatabaseConnection,
    unreleased: &sequence::Unreleased,
    batches: &[&Batch],
) -> Result<(Vec<Stored>, usize), ServiceError> {
    let now = Utc::now();
    let mut seen = HashSet::new();
    let mut owner = Vec::new();
    let mut events: Vec<&UsageEvent> = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        for e in &b.events {
            if seen.insert(cleaned(&e.id)) {
                events.push(e);
                owner.push(i);
            }
        }
    }
    let group = Group {
        batches,
        events: &events,
        owner: &owner,
        now,
    };
    let loads: &[Load] = if batches.iter().any(|b| b.delivery == Delivery::Resent) {
        &[Load::Insert]
    } else {
        &[Load::Copy, Load::Insert]
    };
    if db.get_database_backend() != DbBackend::Postgres {
        for &load in loads {
            if let Some(stored) = store_sqlite(db, &group, load).await? {
                return Ok(refused_in_bulk(stored, load, loads));
            }
        }
        return Err(ServiceError::Unavailable(
            "a usage group could not be stored: refused in bulk and by INSERT … ON CONFLICT".into(),
        ));
    }
    for &load in loads {
        // The block is taken first, in its own transaction (see `super::sequence`).
        let block = if events.is_empty() {
            None
        } else {
            Some(sequence::take(db, events.len()).await?)
        };
        let stored = store_postgres(db, &group, block, load).await;
        if let (false, Some(block)) = (matches!(stored, Ok(Some(_))), block) {
            sequence::release(db, block, unreleased).await;
        }
        if let Some(stored) = stored? {
            return Ok(refused_in_bulk(stored, load, loads));
        }
    }
    Err(ServiceError::Unavailable(
        "a usage group could not be stored: refused by COPY and by INSERT".into(),
    ))
}

/// `stored` as [`store`] answers it: when the group went in by `INSERT` after its bulk load was
/// refused, each batch says so (counted in `modelgate_cp_usage_copy_refused_total`).
fn refused_in_bulk(
    (mut done, alerts): (Vec<Stored>, usize),
    load: Load,
    loads: &[Load],
) -> (Vec<Stored>, usize) {
    if load == Load::Insert && loads.len() > 1 {
        for batch in &mut done {
            batch.copy_refused = true;
        }
    }
    (done, alerts)
}

/// A group of batches on its way into one transaction: its distinct events, each with the
/// index of the batch it came from.
struct Group<'a> {
    batches: &'a [&'a Batch],
    events: &'a [&'a UsageEvent],
    owner: &'a [usize],
    now: chrono::DateTime<Utc>,
}

/// How a group's events go into the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// In bulk: binary `COPY` on Postgres ([`copy`]), plain multi-row `INSERT`s of a few fixed
    /// sizes on SQLite ([`sqlite_load`]). Fails as a whole if an id is already stored.
    Copy,
    /// `INSERT … ON CONFLICT (id) DO NOTHING RETURNING id`: skips ids already stored.
    Insert,
}

/// Which of a group's events its insert stored.
enum Inserted {
    All,
    Ids(HashSet<String>),
}

impl Inserted {
    fn contains(&self, e: &UsageEvent) -> bool {
        match self {
            Inserted::All => true,
            Inserted::Ids(ids) => ids.contains(cleaned(&e.id).as_ref()),
        }
    }
}

/// [`store`]'s transaction on Postgres, under `block` (`None`: the group has only quarantined
/// events). `Ok(None)`: Postgres refused a copied row (an id already stored, a NUL in text),
/// and nothing was stored.
async fn store_postgres(
    db: &DatabaseConnection,
    group: &Group<'_>,
    block: Option<Block>,
    load: Load,
) -> Result<Option<(Vec<Stored>, usize)>, ServiceError> {
    // Built before the transaction begins. Numbered in arrival order, inserted in id order:
    // concurrent groups that share ids (a batch replayed to two control planes) then wait on
    // each other's rows in one order and never deadlock.
    let insert = block.map(|b| {
        let mut rows: Vec<(&UsageEvent, i64)> =
            group.events.iter().copied().zip(b.first..).collect();
        rows.sort_by(|x, y| x.0.id.cmp(&y.0.id));
        match load {
            Load::Copy => Ok(copy::encode(&rows, group.now)),
            Load::Insert => Err(insert_unnest(&rows, group.now)),
        }
    });
    let txn = PgTxn::begin(db).await?;
    if let Some(block) = block {
        sequence::claim(&txn, block).await?;
    }
    let quarantined = quarantine_all(&txn, group).await?;
    let inserted = match insert {
        None => Inserted::Ids(HashSet::new()),
        Some(Ok(rows)) => match txn.copy_in(&copy::statement(), &rows).await {
            Ok(_) => Inserted::All,
            Err(CopyError::Refused(why)) => {
                tracing::debug!(%why, "a usage group replays a stored event or holds a NUL; storing it again without COPY");
                return Ok(None);
            }
            Err(CopyError::Db(e)) => return Err(e.into()),
        },
        Some(Err(statement)) => Inserted::Ids(insert_returning(&txn, statement).await?),
    };
    let done = account(&txn, group, &inserted, quarantined).await?;
    txn.commit().await?;
    Ok(Some(done))
}

/// [`store`]'s transaction on SQLite (one writer at a time): the sequence numbers are taken
/// inside it. `Ok(None)`: SQLite refused a row of the bulk insert (an id already stored), and
/// nothing was stored.
async fn store_sqlite(
    db: &DatabaseConnection,
    group: &Group<'_>,
    load: Load,
) -> Result<Option<(Vec<Stored>, usize)>, ServiceError> {
    let txn = SqliteTxn::begin(db).await?;
    let quarantined = quarantine_all(&txn, group).await?;
    let mut inserted = Inserted::Ids(HashSet::new());
    if !group.events.is_empty() {
        let first_seq = sequence::take_in(&txn, group.events.len()).await?;
        inserted = match load {
            Load::Copy => {
                match sqlite_load::insert(&txn, group.events, first_seq, group.now).await {
                    Ok(()) => Inserted::All,
                    Err(sqlite_load::LoadError::Refused(why)) => {
                        tracing::debug!(%why, "a usage group replays a stored event; storing it again with ON CONFLICT");
                        return Ok(None);
                    }
                    Err(sqlite_load::LoadError::Db(e)) => return Err(e.into()),
                }
            }
            Load::Insert => {
                Inserted::Ids(insert_rows(&txn, group.events, first_seq, group.now).await?)
            }
        };
    }
    let done = account(&txn, group, &inserted, quarantined).await?;
    txn.commit().await?;
    Ok(Some(done))
}

/// Stores each batch's refused events; returns how many each newly quarantined.
async fn quarantine_all<C: ConnectionTrait>(
    txn: &C,
    group: &Group<'_>,
) -> Result<Vec<u64>, ServiceError> {
    let mut quarantined = Vec::with_capacity(group.batches.len());
    for b in group.batches {
        quarantined.push(quarantine::store(txn, &b.node_id, &b.refused, group.now).await?);
    }
    Ok(quarantined)
}

/// Adds exactly the `inserted` events to the aggregates and budgets, in `txn`; returns each
/// batch's outcome and the number of budget alerts queued.
async fn account<C: ConnectionTrait>(
    txn: &C,
    group: &Group<'_>,
    inserted: &Inserted,
    quarantined: Vec<u64>,
) -> Result<(Vec<Stored>, usize), ServiceError> {
    let batches = group.batches;
    let mut counted = vec![0u64; batches.len()];
    let mut ended_at_ms = vec![Vec::new(); batches.len()];
    let mut alerts = 0;
    if !group.events.is_empty() {
        let mut stored = Vec::with_capacity(group.events.len());
        for (e, &i) in group.events.iter().zip(group.owner) {
            if inserted.contains(e) {
                stored.push(*e);
                counted[i] += 1;
                ended_at_ms[i].push(e.ended_at_ms);
            }
        }
        add_to_aggregates(txn, &stored).await?;
        alerts = add_to_budgets(txn, &stored, group.now).await?;
    }
    let results = batches
        .iter()
        .zip(ended_at_ms)
        .enumerate()
        .map(|(i, (b, ended_at_ms))| Stored {
            counts: Ingested {
                inserted: counted[i],
                quarantined: quarantined[i],
                duplicates: b.received - counted[i] - quarantined[i],
            },
            ended_at_ms,
            copy_refused: false,
        })
        .collect();
    Ok((results, alerts))
}

/// Splits a batch into the events to store and the refused ones with their reasons. One query
/// reads the teams of every key the batch names.
async fn screen(
    s: &Services,
    received: Vec<Received>,
) -> Result<(Vec<UsageEvent>, Vec<(UsageEvent, Refusal)>), ServiceError> {
    let now_ms = s.clock.now().timestamp_millis();
    let mut refused = Vec::new();
    let mut events = Vec::with_capacity(received.len());
    for r in received {
        match r {
            Ok(e) => events.push(e),
            Err(u) => refused.push((*u.event, Refusal::UnknownValues(u.unknown))),
        }
    }
    let key_ids: Vec<&str> = events
        .iter()
        .filter(|e| !e.key_id.is_empty())
        .map(|e| e.key_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut owners: HashMap<String, String> = HashMap::with_capacity(key_ids.len());
    for chunk in key_ids.chunks(CHUNK) {
        let rows: Vec<(String, String)> = api_key::Entity::find()
            .select_only()
            .column(api_key::Column::Id)
            .column(api_key::Column::TeamId)
            .filter(api_key::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(&s.db)
            .await?;
        owners.extend(rows);
    }
    let mut good = Vec::with_capacity(events.len());
    for e in events {
        let verdict = validate::check(&e, now_ms)
            .and_then(|()| validate::check_key(&e, owners.get(&e.key_id).map(String::as_str)));
        match verdict {
            Ok(()) => good.push(e),
            Err(why) => refused.push((e, why)),
        }
    }
    Ok((good, refused))
}

/// Portable path: multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING id` in chunks.
async fn insert_rows<C: ConnectionTrait>(
    txn: &C,
    events: &[&UsageEvent],
    first_seq: i64,
    now: chrono::DateTime<Utc>,
) -> Result<HashSet<String>, ServiceError> {
    let mut rows: Vec<usage_event::ActiveModel> = events
        .iter()
        .zip(first_seq..)
        .map(|(e, seq)| row(e, seq, now))
        .collect();
    let mut inserted_ids = HashSet::new();
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(CHUNK));
        let chunk = std::mem::replace(&mut rows, rest);
        let mut insert = usage_event::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::column(usage_event::Column::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .into_query();
        insert.returning_col(usage_event::Column::Id);
        let backend = txn.get_database_backend();
        for r in txn.query_all(backend.build(&insert)).await? {
            inserted_ids.insert(r.try_get::<String>("", "id")?);
        }
    }
    Ok(inserted_ids)
}

/// Postgres path: one statement for the whole group that inserts every event with its sequence
/// number, each column sent as one array and expanded by `UNNEST` — a fixed-size statement
/// whatever the group's size, parsed and planned once, and one round trip.
fn insert_unnest(rows: &[(&UsageEvent, i64)], now: chrono::DateTime<Utc>) -> Statement {
    use sea_orm::sea_query::ArrayType;
    use sea_orm::Value;
    fn array(ty: ArrayType, values: Vec<Value>) -> Value {
        Value::Array(ty, Some(Box::new(values)))
    }
    let events: Vec<&UsageEvent> = rows.iter().map(|(e, _)| *e).collect();
    let text = |f: &dyn Fn(&UsageEvent) -> &str| {
        array(
            ArrayType::String,
            events.iter().map(|e| Value::from(clean(f(e)))).collect(),
        )
    };
    let big = |f: &dyn Fn(&UsageEvent) -> i64| {
        array(
            ArrayType::BigInt,
            events.iter().map(|e| Value::from(f(e))).collect(),
        )
    };
    let int = |f: &dyn Fn(&UsageEvent) -> i32| {
        array(
            ArrayType::Int,
            events.iter().map(|e| Value::from(f(e))).collect(),
        )
    };
    let flag = |f: &dyn Fn(&UsageEvent) -> bool| {
        array(
            ArrayType::Bool,
            events.iter().map(|e| Value::from(f(e))).collect(),
        )
    };
    let attempts = array(
        ArrayType::String,
        events
            .iter()
            .map(|e| Value::from(clean(&attempts_json(e))))
            .collect(),
    );
    // (column, SQL array type, values), in one order for the column list and UNNEST.
    let columns: Vec<(&str, &str, Value)> = vec![
        ("id", "text", text(&|e| &e.id)),
        (
            "schema_version",
            "int4",
            int(&|e| i32::try_from(e.schema_version).unwrap_or(i32::MAX)),
        ),
        ("request_id", "text", text(&|e| &e.request_id)),
        ("started_at_ms", "int8", big(&|e| e.started_at_ms)),
        ("first_byte_at_ms", "int8", big(&|e| e.first_byte_at_ms)),
        ("ended_at_ms", "int8", big(&|e| e.ended_at_ms)),
        ("node_id", "text", text(&|e| &e.node_id)),
        ("region", "text", text(&|e| &e.region)),
        ("key_id", "text", text(&|e| &e.key_id)),
        ("team_id", "text", text(&|e| &e.team_id)),
        ("user_id", "text", text(&|e| &e.user_id)),
        ("application", "text", text(&|e| &e.application)),
        ("environment", "text", text(&|e| environment(e))),
        ("endpoint", "text", text(&|e| &e.endpoint)),
        ("requested_model", "text", text(&|e| &e.requested_model)),
        ("provider_id", "text", text(&|e| &e.provider_id)),
        ("served_model", "text", text(&|e| &e.served_model)),
        ("deployment_id", "text", text(&|e| &e.deployment_id)),
        ("attempts", "text", attempts),
        ("status", "int4", int(&|e| i32::from(e.status))),
        // Arrays carry no NULLs through the binder: empty here, NULLIF'd back below.
        (
            "error_class",
            "text",
            text(&|e| e.error_class.map_or("", ErrorClass::as_str)),
        ),
        ("error_message", "text", text(&|e| &e.error_message)),
        ("latency_us", "int8", big(&|e| to_i64(e.latency_us))),
        ("ttfb_us", "int8", big(&|e| to_i64(e.ttfb_us))),
        ("input_tokens", "int8", big(&|e| to_i64(e.input_tokens))),
        ("output_tokens", "int8", big(&|e| to_i64(e.output_tokens))),
        (
            "cached_input_tokens",
            "int8",
            big(&|e| to_i64(e.cached_input_tokens)),
        ),
        (
            "reasoning_tokens",
            "int8",
            big(&|e| to_i64(e.reasoning_tokens)),
        ),
        ("images", "int8", big(&|e| to_i64(e.images))),
        ("media_ms", "int8", big(&|e| to_i64(e.media_ms))),
        ("characters", "int8", big(&|e| to_i64(e.characters))),
        ("cost_micros", "int8", big(&|e| e.cost_micros)),
        ("price_version", "int8", big(&|e| to_i64(e.price_version))),
        ("streamed", "bool", flag(&|e| e.streamed)),
        ("estimated", "bool", flag(&|e| e.estimated)),
        ("fallback_used", "bool", flag(&|e| e.fallback_used)),
        ("traffic_class", "text", text(&|e| traffic_class(e))),
        ("cost_flag", "text", text(&|e| e.cost_flag.as_str())),
        ("cache_hit", "bool", flag(&|e| e.cache_hit)),
        ("trace_id", "text", text(&|e| &e.trace_id)),
        (
            "seq",
            "int8",
            array(
                ArrayType::BigInt,
                rows.iter().map(|(_, seq)| Value::from(*seq)).collect(),
            ),
        ),
    ];
    let names: Vec<&str> = columns.iter().map(|(n, _, _)| *n).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty, _))| format!("${}::{ty}[]", i + 1))
        .collect();
    let selected: Vec<String> = names
        .iter()
        .map(|n| match *n {
            "error_class" => "NULLIF(u.error_class, '')".to_owned(),
            n => format!("u.{n}"),
        })
        .collect();
    let sql = format!(
        "INSERT INTO usage_events ({names}, ingested_at) \
         SELECT {selected}, ${now}::timestamptz \
         FROM UNNEST({arrays}) AS u({names}) \
         ON CONFLICT (id) DO NOTHING RETURNING id",
        names = names.join(", "),
        selected = selected.join(", "),
        now = columns.len() + 1,
        arrays = arrays.join(", ")
    );
    let mut values: Vec<Value> = columns.into_iter().map(|(_, _, v)| v).collect();
    values.push(Value::from(now));
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Runs [`insert_unnest`]'s statement; returns the ids it inserted.
async fn insert_returning<C: ConnectionTrait>(
    txn: &C,
    statement: Statement,
) -> Result<HashSet<String>, ServiceError> {
    let rows = txn.query_all(statement).await?;
    let mut ids = HashSet::with_capacity(rows.len());
    for r in rows {
        ids.insert(r.try_get::<String>("", "id")?);
    }
    Ok(ids)
}

fn attempts_json(e: &UsageEvent) -> String {
    serde_json::to_string(&e.attempts).unwrap_or_else(|_| "[]".into())
}

/// The aggregate row an event counts towards: its UTC day (days since the Unix epoch) and the
/// event's key, team, user, model and provider as stored ([`cleaned`]: borrowed unless a NUL
/// had to be replaced) — a row's strings are made once per aggregate row, not per event — and
/// whether it is check traffic.
type DailyKey<'a> = (
    i64,
    Cow<'a, str>,
    Cow<'a, str>,
    Cow<'a, str>,
    Cow<'a, str>,
    Cow<'a, str>,
    bool,
);

#[derive(Debug, Default)]
struct DailySums {
    requests: i64,
    errors: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    reasoning_tokens: i64,
    images: i64,
    media_ms: i64,
    characters: i64,
    cost_micros: i64,
}

const DAY_MS: i64 = 86_400_000;

/// The UTC day of a millisecond timestamp, `YYYY-MM-DD`.
pub(crate) fn day_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

async fn add_to_aggregates<C: ConnectionTrait>(
    txn: &C,
    events: &[&UsageEvent],
) -> Result<(), ServiceError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut sums: BTreeMap<DailyKey<'_>, DailySums> = BTreeMap::new();
    for e in events {
        let model = if e.served_model.is_empty() {
            &e.requested_model
        } else {
            &e.served_model
        };
        let key = (
            e.started_at_ms.div_euclid(DAY_MS),
            cleaned(&e.key_id),
            cleaned(&e.team_id),
            cleaned(&e.user_id),
            cleaned(model),
            cleaned(&e.provider_id),
            e.application == modelgate_shared::usage::CHECK_APPLICATION,
        );
        let s = sums.entry(key).or_default();
        s.requests += 1;
        s.errors += i64::from(e.status >= 400);
        s.input_tokens += to_i64(e.input_tokens);
        s.output_tokens += to_i64(e.output_tokens);
        s.cached_input_tokens += to_i64(e.cached_input_tokens);
        s.reasoning_tokens += to_i64(e.reasoning_tokens);
        s.images += to_i64(e.images);
        s.media_ms += to_i64(e.media_ms);
        s.characters += to_i64(e.characters);
        s.cost_micros += e.cost_micros;
    }
    use usage_daily::Column as C;
    let counters = [
        C::Requests,
        C::Errors,
        C::InputTokens,
        C::OutputTokens,
        C::CachedInputTokens,
        C::ReasoningTokens,
        C::Images,
        C::MediaMs,
        C::Characters,
        C::CostMicros,
    ];
    let mut on_conflict = OnConflict::columns([
        C::Day,
        C::KeyId,
        C::TeamId,
        C::UserId,
        C::Model,
        C::ProviderId,
        C::CheckTraffic,
    ]);
    for c in counters {
        // An increment, never an overwrite.
        let name = sea_orm::IdenStatic::as_str(&c);
        on_conflict.value(
            c,
            Expr::cust(format!("usage_daily.{name} + excluded.{name}")),
        );
    }
    let rows: Vec<usage_daily::ActiveModel> = sums
        .into_iter()
        .map(
            |((day, key_id, team_id, user_id, model, provider_id, check), s)| {
                usage_daily::ActiveModel {
                    day: Set(day_of(day * DAY_MS)),
                    key_id: Set(key_id.into_owned()),
                    team_id: Set(team_id.into_owned()),
                    user_id: Set(user_id.into_owned()),
                    model: Set(model.into_owned()),
                    provider_id: Set(provider_id.into_owned()),
                    check_traffic: Set(check),
                    requests: Set(s.requests),
                    errors: Set(s.errors),
                    input_tokens: Set(s.input_tokens),
                    output_tokens: Set(s.output_tokens),
                    cached_input_tokens: Set(s.cached_input_tokens),
                    reasoning_tokens: Set(s.reasoning_tokens),
                    images: Set(s.images),
                    media_ms: Set(s.media_ms),
                    characters: Set(s.characters),
                    cost_micros: Set(s.cost_micros),
                }
            },
        )
        .collect();
    let mut rows = rows;
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(CHUNK));
        let chunk = std::mem::replace(&mut rows, rest);
        usage_daily::Entity::insert_many(chunk)
            .on_conflict(on_conflict.clone())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Adds each inserted event's cost to the period row of every budget whose scope matches it
/// (the period the request started in). An increment on a per-period row, never an overwrite:
/// a new period is a new row.
///
/// Then claims the alert thresholds the touched periods crossed (`service::budget_alerts`),
/// in this same transaction.
async fn add_to_budgets<C: ConnectionTrait>(
    txn: &C,
    events: &[&UsageEvent],
    now: chrono::DateTime<Utc>,
) -> Result<usize, ServiceError> {
    use modelgate_shared::quota::{period_start, Period};
    if !events.iter().any(|e| e.cost_micros != 0) {
        return Ok(0);
    }
    let budgets = budget::Entity::find().all(txn).await?;
    if budgets.is_empty() {
        return Ok(0);
    }
    let mut sums: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for e in events.iter().filter(|e| e.cost_micros != 0) {
        let started = chrono::DateTime::from_timestamp_millis(e.started_at_ms).unwrap_or_default();
        for b in &budgets {
            let scoped = match b.scope_kind.as_str() {
                "key" => e.key_id.as_str(),
                "team" => e.team_id.as_str(),
                "user" => e.user_id.as_str(),
                "environment" => environment(e),
                _ => continue,
            };
            if scoped != b.scope_id {
                continue;
            }
            let period: Period = b.period.parse().unwrap_or(Period::Total);
            *sums
                .entry((b.id.clone(), period_start(started, period)))
                .or_default() += e.cost_micros;
        }
    }
    use budget_period::Column as C;
    let mut on_conflict = OnConflict::columns([C::BudgetId, C::PeriodStart]);
    on_conflict.value(
        C::SpentMicros,
        Expr::cust("budget_periods.spent_micros + excluded.spent_micros"),
    );
    let touched: Vec<(String, i64)> = sums.keys().cloned().collect();
    let rows: Vec<budget_period::ActiveModel> = sums
        .into_iter()
        .map(|((budget_id, start), spent)| budget_period::ActiveModel {
            budget_id: Set(budget_id),
            period_start: Set(start),
            spent_micros: Set(spent),
            alerts_fired: Set(0),
        })
        .collect();
    if !rows.is_empty() {
        budget_period::Entity::insert_many(rows)
            .on_conflict(on_conflict)
            .exec_without_returning(txn)
            .await?;
    }
    crate::service::budget_alerts::claim_crossed(txn, &budgets, &touched, now).await
}

/// Postgres text cannot hold NUL; one such event must never block its batch forever.
pub(super) fn clean(s: &str) -> String {
    cleaned(s).into_owned()
}

/// [`clean`] without a copy when there is nothing to replace.
pub(super) fn cleaned(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// The row's text for the event's environment (`""` when it has none).
fn environment(e: &UsageEvent) -> &'static str {
    e.environment.map_or("", Environment::as_str)
}

/// The row's text for the event's traffic class (`""` in a schema 1 event).
fn traffic_class(e: &UsageEvent) -> &'static str {
    e.traffic_class.map_or("", TrafficClass::as_str)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn row(e: &UsageEvent, seq: i64, now: chrono::DateTime<Utc>) -> usage_event::ActiveModel {
    let attempts = attempts_json(e);
    usage_event::ActiveModel {
        id: Set(clean(&e.id)),
        seq: Set(Some(seq)),
        schema_version: Set(i32::try_from(e.schema_version).unwrap_or(i32::MAX)),
        request_id: Set(clean(&e.request_id)),
        started_at_ms: Set(e.started_at_ms),
        first_byte_at_ms: Set(e.first_byte_at_ms),
        ended_at_ms: Set(e.ended_at_ms),
        node_id: Set(clean(&e.node_id)),
        region: Set(clean(&e.region)),
        key_id: Set(clean(&e.key_id)),
        team_id: Set(clean(&e.team_id)),
        user_id: Set(clean(&e.user_id)),
        application: Set(clean(&e.application)),
        environment: Set(environment(e).to_owned()),
        endpoint: Set(clean(&e.endpoint)),
        requested_model: Set(clean(&e.requested_model)),
        provider_id: Set(clean(&e.provider_id)),
        served_model: Set(clean(&e.served_model)),
        deployment_id: Set(clean(&e.deployment_id)),
        attempts: Set(clean(&attempts)),
        status: Set(i32::from(e.status)),
        error_class: Set(e.error_class.map(|c| c.as_str().to_owned())),
        error_message: Set(clean(&e.error_message)),
        latency_us: Set(to_i64(e.latency_us)),
        ttfb_us: Set(to_i64(e.ttfb_us)),
        input_tokens: Set(to_i64(e.input_tokens)),
        output_tokens: Set(to_i64(e.output_tokens)),
        cached_input_tokens: Set(to_i64(e.cached_input_tokens)),
        reasoning_tokens: Set(to_i64(e.reasoning_tokens)),
        images: Set(to_i64(e.images)),
        media_ms: Set(to_i64(e.media_ms)),
        characters: Set(to_i64(e.characters)),
        cost_micros: Set(e.cost_micros),
        price_version: Set(to_i64(e.price_version)),
        streamed: Set(e.streamed),
        estimated: Set(e.estimated),
        fallback_used: Set(e.fallback_used),
        traffic_class: Set(traffic_class(e).to_owned()),
        cost_flag: Set(e.cost_flag.as_str().to_owned()),
        cache_hit: Set(e.cache_hit),
        trace_id: Set(e.trace_id.clone()),
        ingested_at: Set(now),
    }
}
