//! The keys section of the config, kept between rebuilds.
//!
//! Keys are the one section that grows with the customer base (100k and more), and every
//! committed change rebuilds the config. Reading and converting every key row each time cost
//! seconds at that size, so the publisher keeps the converted keys here and each rebuild reads
//! only the rows written since the last one:
//!
//! - every key write takes the next value of the `key_revision` counter in its transaction
//!   ([`take_revision`]) and stores it in the row's `revision`. The counter's row stays locked
//!   until the write commits, so a transaction that takes a higher value commits after every
//!   one that took a lower: once the counter reads `r`, every row written at or below `r` is
//!   committed, on any replica;
//! - [`KeyCache::sync`] reads the counter, then the rows above the value it read last time (an
//!   index range), then remembers the new value. A row read twice is harmless;
//! - a count of the table that differs from the cache's (a row removed by hand; keys are never
//!   deleted by the service) reads everything again.
//!
//! A rotation's replaced secret works until a moment in time: the cache keeps it with its end,
//! and [`KeyCache::keys`] leaves it out once that moment has passed, as a full read would.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use modelgate_shared::keys::KeyHash;
use modelgate_shared::routing::TrafficClass;
use modelgate_shared::snapshot::{ApiKey, KeyCacheMode};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter,
};

use crate::store::{api_key, counter};

const COUNTER: &str = "key_revision";

/// Takes the next key revision inside `txn` (the counter's row stays locked until it ends).
pub(crate) async fn take_revision<C: ConnectionTrait>(txn: &C) -> Result<i64, DbErr> {
    let mut update = Query::update();
    update
        .table(counter::Entity)
        .value(
            counter::Column::Value,
            // An `i64`, as every other statement on `counters` binds: the text is the same as
            // theirs, so a connection reuses their prepared statement, typed by its first use.
            Expr::col(counter::Column::Value).add(1i64),
        )
        .and_where(Expr::col(counter::Column::Name).eq(COUNTER))
        .returning_col(counter::Column::Value);
    let row = txn
        .query_one(txn.get_database_backend().build(&update))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("counter {COUNTER}")))?;
    row.try_get("", "value")
}

/// The counter's committed value.
async fn read_revision(db: &DatabaseConnection) -> Result<i64, DbErr> {
    Ok(counter::Entity::find_by_id(COUNTER)
        .one(db)
        .await?
        .map_or(0, |c| c.value))
}

/// The converted keys, by id (in the config's order), and what the cache has read.
#[derive(Default)]
pub struct KeyCache {
    /// `None` when the row does not convert, which leaves it out of the config (fails closed).
    held: BTreeMap<String, Option<ApiKey>>,
    /// The counter's value at the last sync: every row at or below it has been read.
    revision: Option<i64>,
    /// Bumped by every sync that read a row.
    generation: u64,
}

/// What a [`KeyCache::sync`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// Rows read in full and converted (new or changed).
    pub read: usize,
    /// Whether the whole table was read.
    pub full: bool,
}

impl KeyCache {
    /// Brings the cache in line with the table.
    pub async fn sync(&mut self, db: &DatabaseConnection) -> Result<Synced, DbErr> {
        let revision = read_revision(db).await?;
        let rows = match self.revision {
            Some(seen) if revision == seen => Vec::new(),
            Some(seen) => {
                api_key::Entity::find()
                    .filter(api_key::Column::Revision.gt(seen))
                    .all(db)
                    .await?
            }
            None => return self.read_all(db, revision).await,
        };
        let read = rows.len();
        for r in rows {
            self.held.insert(r.id.clone(), convert(r));
        }
        if read > 0 {
            self.generation += 1;
        }
        self.revision = Some(revision);
        let count = api_key::Entity::find().count(db).await?;
        if usize::try_from(count).ok() != Some(self.held.len()) {
            tracing::warn!(
                table = count,
                held = self.held.len(),
                "the key table and the key cache differ in size; reading every key"
            );
            return self.read_all(db, revision).await;
        }
        Ok(Synced { read, full: false })
    }

    async fn read_all(&mut self, db: &DatabaseConnection, revision: i64) -> Result<Synced, DbErr> {
        let rows = api_key::Entity::find().all(db).await?;
        let read = rows.len();
        self.held = rows
            .into_iter()
            .map(|r| (r.id.clone(), convert(r)))
            .collect();
        self.revision = Some(revision);
        self.generation += 1;
        Ok(Synced { read, full: true })
    }

    /// Equal for two calls exactly when [`KeyCache::keys`] gives the same keys at both
    /// moments: no row read in between, and as many replaced secrets still in their grace
    /// period (their number only falls as time passes).
    pub fn fingerprint(&self, now: DateTime<Utc>) -> (u64, usize) {
        let now = now.timestamp();
        let in_grace = self
            .held
            .values()
            .flatten()
            .filter(|k| k.previous.is_some_and(|(_, until)| until > now))
            .count();
        (self.generation, in_grace)
    }

    /// The keys to publish at `now`, sorted by id.
    pub fn keys(&self, now: DateTime<Utc>) -> Vec<ApiKey> {
        let now = now.timestamp();
        self.held
            .values()
            .flatten()
            .map(|k| {
                let mut k = k.clone();
                // A replaced secret travels only while its grace period lasts; the data plane
                // enforces the end to the second.
                k.previous = k.previous.filter(|&(_, until)| until > now);
                k
            })
            .collect()
    }
}

/// A key row as the config carries it, with a replaced secret kept whatever its end.
fn convert(k: api_key::Model) -> Option<ApiKey> {
    let hash: KeyHash = hex::decode(&k.key_hash).ok()?.try_into().ok()?;
    let previous = match (&k.previous_key_hash, k.previous_expires_at) {
        (Some(h), Some(until)) => {
            let h: KeyHash = hex::decode(h).ok()?.try_into().ok()?;
            Some((h, until.timestamp()))
        }
        _ => None,
    };
    Some(ApiKey {
        disabled: k.disabled_at.is_some(),
        previous,
        owner_user_id: k.owner_user_id.unwrap_or_default(),
        application: k.application,
        data_class: k.data_class,
        endpoint_families: serde_json::from_str(&k.endpoint_families).unwrap_or_default(),
        // A class that does not parse leaves the key out (fails closed): the service
        // validates classes, so only a hand-edited row can get here.
        traffic_class: TrafficClass::parse(&k.traffic_class)?,
        allowed_traffic_classes: serde_json::from_str::<Vec<String>>(&k.allowed_traffic_classes)
            .ok()?
            .iter()
            .map(|c| TrafficClass::parse(c))
            .collect::<Option<Vec<_>>>()?,
        // Fails closed like the class: a mode that does not parse leaves the key out.
        cache: KeyCacheMode::parse(&k.cache)?,
        key_hash: hash,
        prefix: k.prefix,
        team_id: k.team_id,
        environment: k.environment.parse().ok()?,
        allowed_models: serde_json::from_str(&k.allowed_models).unwrap_or_default(),
        revoked: k.revoked_at.is_some(),
        expires_at: k.expires_at.map(|t| t.timestamp()),
        name: k.name,
        id: k.id,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use modelgate_shared::snapshot::ApiKey;
    use sea_orm::ConnectionTrait;

    use super::KeyCache;
    use crate::crypto::Sealer;
    use crate::service::authz::Actor;
    use crate::service::{keys, teams, Services};

    /// One master key for every replica of a test.
    const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    async fn services(url: &str) -> Services {
        Services::new(
            crate::store::connect(url).await.unwrap(),
            Sealer::from_hex(MASTER_KEY).unwrap(),
            modelgate_shared::clock::system(),
        )
    }

    async fn make_keys(s: &Services, n: usize) -> Vec<String> {
        crate::service::bootstrap::ensure_initialized(s)
            .await
            .unwrap();
        let actor = Actor::system();
        let team = teams::create(
            s,
            &actor,
            teams::CreateTeam {
                name: "cache".into(),
            },
        )
        .await
        .unwrap();
        let mut ids = Vec::new();
        for i in 0..n {
            let created = keys::create(
                s,
                &actor,
                keys::CreateKey {
                    team_id: team.id.clone(),
                    name: format!("k{i}"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            ids.push(created.key.id);
        }
        ids
    }

    fn find<'a>(keys: &'a [ApiKey], id: &str) -> &'a ApiKey {
        keys.iter().find(|k| k.id == id).unwrap()
    }

    #[tokio::test]
    async fn after_the_first_read_a_sync_reads_only_the_keys_written_since_on_any_replica() {
        let db = crate::scratch_db::ScratchDb::create().await;
        let (a, b) = (services(&db.url).await, services(&db.url).await);
        let ids = make_keys(&a, 5).await;
        let mut cache = KeyCache::default();
        let first = cache.sync(&a.db).await.unwrap();
        assert!(first.full);
        assert_eq!(first.read, 5);
        let before = cache.fingerprint(Utc::now());

        let again = cache.sync(&a.db).await.unwrap();
        assert_eq!((again.read, again.full), (0, false), "nothing written");
        assert_eq!(cache.fingerprint(Utc::now()), before);

        // A revocation on the other replica and a key created there.
        keys::revoke(&b, &Actor::system(), &ids[2]).await.unwrap();
        let team = find(&cache.keys(Utc::now()), &ids[0]).team_id.clone();
        let created = keys::create(
            &b,
            &Actor::system(),
            keys::CreateKey {
                team_id: team,
                name: "late".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let synced = cache.sync(&a.db).await.unwrap();
        assert_eq!((synced.read, synced.full), (2, false));
        assert_ne!(cache.fingerprint(Utc::now()), before);
        let now = cache.keys(Utc::now());
        assert_eq!(now.len(), 6);
        assert!(find(&now, &ids[2]).revoked);
        assert!(!find(&now, &ids[1]).revoked);
        find(&now, &created.key.id);
        assert!(now.windows(2).all(|w| w[0].id < w[1].id), "sorted by id");

        a.db.close().await.unwrap();
        b.db.close().await.unwrap();
        db.drop_now().await;
    }

    #[tokio::test]
    async fn a_key_row_removed_by_hand_makes_the_cache_read_every_key_again() {
        let db = crate::scratch_db::ScratchDb::create().await;
        let s = services(&db.url).await;
        let ids = make_keys(&s, 3).await;
        let mut cache = KeyCache::default();
        cache.sync(&s.db).await.unwrap();
        s.db.execute_unprepared(&format!("DELETE FROM api_keys WHERE id = '{}'", ids[0]))
            .await
            .unwrap();
        let synced = cache.sync(&s.db).await.unwrap();
        assert_eq!((synced.read, synced.full), (2, true));
        assert!(cache.keys(Utc::now()).iter().all(|k| k.id != ids[0]));
        s.db.close().await.unwrap();
        db.drop_now().await;
    }

    #[tokio::test]
    async fn a_replaced_secret_leaves_the_published_keys_when_its_grace_period_ends() {
        let db = crate::scratch_db::ScratchDb::create().await;
        let s = services(&db.url).await;
        let ids = make_keys(&s, 2).await;
        keys::rotate(
            &s,
            &Actor::system(),
            &ids[0],
            keys::Rotate {
                grace_seconds: Some(60),
            },
        )
        .await
        .unwrap();
        let mut cache = KeyCache::default();
        cache.sync(&s.db).await.unwrap();
        let now = Utc::now();
        let later = now + Duration::seconds(120);
        assert!(find(&cache.keys(now), &ids[0]).previous.is_some());
        assert!(find(&cache.keys(later), &ids[0]).previous.is_none());
        assert_ne!(
            cache.fingerprint(now),
            cache.fingerprint(later),
            "the end of a grace period is a change to publish"
        );
        s.db.close().await.unwrap();
        db.drop_now().await;
    }
}
