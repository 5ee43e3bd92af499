//! Control-plane replicas over one Postgres.
//!
//! Several `modelgate control-plane` processes may share one Postgres database; data planes
//! connect to any of them (a list of URLs) and move to another when theirs goes away. What
//! keeps them one control plane:
//!
//! - **Config changes reach every replica.** After committing a config change a replica
//!   rebuilds and then `NOTIFY`s [`CHANNEL`] ([`announce`]); every other replica `LISTEN`s
//!   ([`listen`]) and rebuilds on each notification. A replica whose listener lost its
//!   connection rebuilds once it is back (it may have missed notifications), and every
//!   [`VERSION_CHECK`] it compares the newest stored version with the one it publishes and
//!   rebuilds when they differ. A rebuild that minted a version notifies in turn.
//! - **Version numbers never collide**: `config_versions.version` is the primary key; a replica
//!   whose insert loses the race re-reads the newest version and tries again (reusing it when it
//!   carries the same content), see `snapshot::store`.
//! - **One replica drives rollouts**: the holder of the `rollouts` lease ([`LEASE_TTL`], renewed
//!   every [`RENEW_EVERY`], timed by the database's clock) evaluates the gates, moves the waves
//!   and mints the versions of a staged rollout; the others follow the persisted state (the
//!   `rollouts` row and the stored versions, see [`follow`]) and publish the same per-track
//!   assignment to their nodes. A replica believes it holds the lease for one second less than
//!   the database says, so two replicas never drive at once while their clocks run at the same
//!   rate.
//! - **Budget allocations** are one transaction each over the ledger in the database (see
//!   `service::budgets::allocator`), so any replica may answer.
//!
//! On SQLite there is one control plane per database file: a starting control plane claims the
//! `sqlite` lease and logs an error while another process holds it ([`claim_database`]).

pub mod follow;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use tokio_util::sync::CancellationToken;

use crate::service::{ServiceError, Services};

/// The `NOTIFY` channel on which a replica announces a committed config change.
pub const CHANNEL: &str = "modelgate_config";
/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often a lease is renewed (and, by a replica without it, tried).
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How often a replica compares the newest stored version with the one it publishes.
pub const VERSION_CHECK: Duration = Duration::from_secs(2);

/// The lease of the replica that drives staged rollouts.
const ROLLOUTS: &str = "rollouts";
/// The lease of the one control plane of a SQLite database.
const SQLITE: &str = "sqlite";

/// This control-plane process among the replicas of its database.
pub struct Replica {
    /// This process's replica id (a new one per start).
    pub id: String,
    postgres: bool,
    /// Until when (this process's monotonic clock) this replica holds the rollouts lease.
    rollouts_until: Mutex<Option<Instant>>,
    /// Wakes the refresher: a notification came, or one may have been missed.
    wake: tokio::sync::Notify,
}

impl Replica {
    pub fn new(db: &DatabaseConnection) -> Replica {
        Replica {
            id: format!("cp-{}", modelgate_shared::new_id()),
            postgres: db.get_database_backend() == DbBackend::Postgres,
            rollouts_until: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Whether replicas may share this database (Postgres).
    pub fn shared_database(&self) -> bool {
        self.postgres
    }

    /// Whether this replica drives staged rollouts now (always, on SQLite).
    pub fn drives_rollouts(&self) -> bool {
        if !self.postgres {
            return true;
        }
        self.lock().is_some_and(|until| until > Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        match self.rollouts_until.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// Tells every other replica that the config tables or the published versions changed (a
/// no-op on SQLite). A failure is logged: the others' version check catches up.
pub async fn announce(s: &Services) {
    if !s.replica.postgres {
        return;
    }
    let notify = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANNEL.into(), s.replica.id.clone().into()],
    );
    if let Err(e) = s.db.execute(notify).await {
        tracing::warn!(error = %e, "could not notify the other control-plane replicas");
    }
}

/// Takes or renews lease `name` for this replica; `true` when it holds it afterwards.
async fn try_lease(s: &Services, name: &str) -> Result<bool, DbErr> {
    let ttl_ms = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
    let statement = if s.replica.postgres {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO replica_leases (name, holder, expires_at_ms) \
             VALUES ($1, $2, (extract(epoch from clock_timestamp()) * 1000)::bigint + $3) \
             ON CONFLICT (name) DO UPDATE \
               SET holder = EXCLUDED.holder, expires_at_ms = EXCLUDED.expires_at_ms \
               WHERE replica_leases.holder = EXCLUDED.holder \
                  OR replica_leases.expires_at_ms < (extract(epoch from clock_timestamp()) * 1000)::bigint \
             RETURNING holder",
            [name.into(), s.replica.id.clone().into(), ttl_ms.into()],
        )
    } else {
        let now = chrono::Utc::now().timestamp_millis();
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO replica_leases (name, holder, expires_at_ms) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE \
               SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
               WHERE replica_leases.holder = excluded.holder OR replica_leases.expires_at_ms < ? \
             RETURNING holder",
            [
                name.into(),
                s.replica.id.clone().into(),
                (now + ttl_ms).into(),
                now.into(),
            ],
        )
    };
    Ok(s.db.query_one(statement).await?.is_some())
}

/// Gives lease `name` up (at shutdown), so that another replica need not wait for it to lapse.
async fn release(s: &Services, name: &str) {
    let sql = if s.replica.postgres {
        "DELETE FROM replica_leases WHERE name = $1 AND holder = $2"
    } else {
        "DELETE FROM replica_leases WHERE name = ? AND holder = ?"
    };
    let statement = Statement::from_sql_and_values(
        s.db.get_database_backend(),
        sql,
        [name.into(), s.replica.id.clone().into()],
    );
    if let Err(e) = s.db.execute(statement).await {
        tracing::warn!(lease = name, error = %e, "could not release a lease");
    }
}

/// At start on SQLite: claims the database for this control plane, and says so loudly when
/// another live control plane holds it. It is not refused: a second process on one SQLite
/// file is how an operator rotates the master key or inspects a database, and the storage
/// itself stays correct (SQLite has one writer); what is not shared between two is the
/// rate-limit ledger and the rollout state, so run replicas on Postgres.
pub async fn claim_database(s: &Services) -> Result<(), ServiceError> {
    if s.replica.postgres {
        return Ok(());
    }
    if !try_lease(s, SQLITE).await? {
        tracing::error!(
            "another control plane is running on this SQLite database: one control plane per \
             SQLite file is the rule (rate limits and rollouts are held by one process); run \
             replicas on Postgres"
        );
    }
    Ok(())
}

/// Holds this replica's leases until `shutdown`: renews the SQLite claim, or on Postgres takes
/// and renews the rollouts lease (and switches the publisher between driving and following
/// when it is won or lost).
pub async fn hold_leases(s: Services, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(RENEW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        if !s.replica.postgres {
            if let Err(e) = try_lease(&s, SQLITE).await {
                tracing::warn!(error = %e, "could not renew the database claim");
            }
            continue;
        }
        let asked = Instant::now();
        let held = match try_lease(&s, ROLLOUTS).await {
            Ok(held) => held,
            Err(e) => {
                // Keep what is believed: it lapses by itself.
                tracing::warn!(error = %e, "could not renew the rollouts lease");
                continue;
            }
        };
        let was = s.replica.drives_rollouts();
        *s.replica.lock() = held.then(|| asked + LEASE_TTL - Duration::from_secs(1));
        if held != was {
            if held {
                tracing::info!(replica = %s.replica.id, "this replica now drives rollouts");
            } else {
                tracing::warn!(replica = %s.replica.id, "this replica no longer drives rollouts; following");
            }
            // Either way the publisher's state is read afresh from the database.
            s.publisher.state.lock().await.loaded = false;
            s.replica.wake.notify_one();
        }
    }
    if s.replica.postgres {
        *s.replica.lock() = None;
        release(&s, ROLLOUTS).await;
    } else {
        release(&s, SQLITE).await;
    }
}

/// Listens for other replicas' config changes until `shutdown` (Postgres only) and wakes the
/// refresher on each, after a reconnection, and when the newest stored version is not the one
/// published.
pub async fn listen(s: Services, shutdown: CancellationToken) {
    use sea_orm::sqlx::postgres::PgListener;
    if !s.replica.postgres {
        return;
    }
    let mut check = tokio::time::interval(VERSION_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut newest_seen: Option<u64> = None;
    loop {
        let connected = async {
            let mut l = PgListener::connect_with(s.db.get_postgres_connection_pool()).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sea_orm::sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            r = connected => match r {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "could not listen for other replicas' changes; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            },
            () = shutdown.cancelled() => return,
        };
        // Whatever was announced while not listening.
        s.replica.wake.notify_one();
        loop {
            tokio::select! {
                n = listener.try_recv() => match n {
                    Ok(Some(n)) => {
                        if n.payload() != s.replica.id {
                            s.replica.wake.notify_one();
                        }
                    }
                    // The connection was lost; the next receive reconnects. Catch up.
                    Ok(None) => s.replica.wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for other replicas' changes failed; reconnecting");
                        break;
                    }
                },
                _ = check.tick() => {
                    // Only a newly stored version wakes it (a version minted and never
                    // published, by a replica that died in between, would otherwise wake it
                    // every time).
                    let newest = newest_stored(&s).await;
                    if newest.is_some_and(|v| {
                        newest_seen != Some(v) && s.publisher.latest().is_none_or(|p| p.version() < v)
                    }) {
                        s.replica.wake.notify_one();
                    }
                    newest_seen = newest.or(newest_seen);
                }
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// The newest stored config version.
async fn newest_stored(s: &Services) -> Option<u64> {
    let row =
        s.db.query_one(Statement::from_string(
            s.db.get_database_backend(),
            "SELECT max(version) AS v FROM config_versions",
        ))
        .await
        .ok()??;
    let v: Option<i64> = row.try_get("", "v").ok()?;
    v.and_then(|v| u64::try_from(v).ok())
}

/// Rebuilds each time [`listen`] or [`hold_leases`] wakes it (several wakes while a rebuild
/// runs make one more rebuild), until `shutdown`.
pub async fn refresh(s: Services, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = s.replica.wake.notified() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = s.publisher.refresh(&s).await {
            tracing::warn!(error = %e, "rebuild after another replica's change failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use modelgate_shared::snapshot::Config;

    use crate::crypto::Sealer;
    use crate::service::Services;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_replicas_minting_at_once_get_distinct_consecutive_numbers() {
        let db = crate::scratch_db::ScratchDb::create().await;
        let url = db.url.clone();
        let key = Sealer::generate_master_key_hex();
        let replica = || async {
            Services::new(
                crate::store::connect(&url).await.unwrap(),
                Sealer::from_hex(&key).unwrap(),
                modelgate_shared::clock::system(),
            )
        };
        let (a, b) = (replica().await, replica().await);
        let mint_many = |s: Services, tag: &'static str| async move {
            let mut versions = Vec::new();
            for i in 0..20 {
                let config = Config {
                    key_hash_secret: format!("{tag}-{i}").into_bytes(),
                    ..Config::default()
                };
                versions.push(crate::snapshot::mint(&s, config).await.unwrap().version());
            }
            versions
        };
        let (from_a, from_b) = tokio::join!(
            tokio::spawn(mint_many(a.clone(), "a")),
            tokio::spawn(mint_many(b.clone(), "b"))
        );
        let mut all: Vec<u64> = from_a.unwrap().into_iter().chain(from_b.unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (1..=40).collect::<Vec<u64>>());
        a.db.close().await.unwrap();
        b.db.close().await.unwrap();
        db.drop_now().await;
    }
}
