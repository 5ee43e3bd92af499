//! The snapshot builder and publisher. After every committed config change the service layer
//! calls [`Publisher::rebuild`]: it reads the config tables into a canonical snapshot and
//! decides what each node should serve, as a [`Distribution`] on a `watch` channel that every
//! config stream reads with its node's labels.
//!
//! Without a rollout policy (today's behaviour) the distribution is one version for every node:
//! when the content hash differs from the latest version's, a new immutable version (monotonic
//! number) is stored and published at once. With a rollout policy, a change of the *policy*
//! part starts a staged rollout (`crate::rollout`): the nodes of the waves reached serve the
//! new content, the others keep the old; a change of the *immediate* part (keys, credentials)
//! is minted into both tracks at once (`modelgate_shared::rollout::compose`).

pub mod delta;
pub mod keys;

use std::sync::Arc;

use chrono::Utc;
use modelgate_proto::config::v1 as wire;
use modelgate_shared::pricing::Price;
use modelgate_shared::rollout::{Plan, Track};
use modelgate_shared::snapshot::{
    Config, Deployment, ModelPrice, ProviderAccount, RoutingGroup, Snapshot,
};
use prost::Message;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::{watch, Mutex};

use crate::rollout::{self, Active};
use crate::service::{bootstrap, routes::DeploymentSpec, ServiceError, Services};
use crate::store::{
    budget, config_version, model_price, provider_account, rate_limit, routing_group,
};

/// A published snapshot. Its wire form is made when a node needs the whole of it (a first
/// connection, a resync): with deltas that is rare, and holding it beside the domain form
/// doubled the memory of every version held.
#[derive(Debug)]
pub struct Published {
    pub snapshot: Snapshot,
}

impl Published {
    pub(crate) fn new(snapshot: Snapshot) -> Arc<Published> {
        Arc::new(Published { snapshot })
    }

    pub fn version(&self) -> u64 {
        self.snapshot.version
    }
}

/// What each node should serve now.
#[derive(Debug)]
pub struct Distribution {
    /// The version of every node outside the waves a rollout reached (of every node when no
    /// rollout runs).
    pub stable: Arc<Published>,
    /// While a rollout runs or is paused: its new content and the waves it reached.
    pub rollout: Option<NewTrack>,
}

/// The new track of a rollout.
#[derive(Debug)]
pub struct NewTrack {
    pub published: Arc<Published>,
    pub plan: Arc<Plan>,
    /// The index of the last wave reached.
    pub reached: usize,
}

impl Distribution {
    /// The version a node with `labels` is assigned, and its track.
    pub fn for_node(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> (&Arc<Published>, Track) {
        match &self.rollout {
            Some(r) if r.plan.reached(r.reached, labels) => (&r.published, Track::New),
            _ => (&self.stable, Track::Old),
        }
    }

    /// The highest version assigned to any node.
    pub fn newest(&self) -> &Arc<Published> {
        match &self.rollout {
            Some(r) if r.published.version() > self.stable.version() => &r.published,
            _ => &self.stable,
        }
    }
}

/// The publisher's state, changed only under its lock.
#[derive(Default)]
pub(crate) struct State {
    /// Read from the database once, then kept current by the admin API.
    pub(crate) loaded: bool,
    pub(crate) policy: Option<Arc<Plan>>,
    pub(crate) stable: Option<Arc<Published>>,
    pub(crate) rollout: Option<Active>,
    /// The policy hash of the last rollout rolled back: not rolled out again until the policy
    /// in the database changes.
    pub(crate) rejected_policy: Option<String>,
    /// What the last rebuild was made from, and the stable version it left: a rebuild that
    /// finds the same skips the hashing and storing.
    pub(crate) inputs: Option<Inputs>,
}

/// What a rebuild's outcome depends on when no rollout is in flight.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Inputs {
    keys: (u64, usize),
    /// The content hash of every section but the keys.
    policy_tables: String,
    /// The rollout policy, as stored.
    policy: Option<String>,
    rejected_policy: Option<String>,
    stable: Option<u64>,
}

#[derive(Clone)]
pub struct Publisher {
    tx: Arc<watch::Sender<Option<Arc<Distribution>>>>,
    pub(crate) state: Arc<Mutex<State>>,
    /// Counts the versions minted and rollout rows written by this process: a rebuild that
    /// wrote announces it to the other replicas (`crate::replica`).
    writes: Arc<std::sync::atomic::AtomicU64>,
    /// Recent versions and the deltas between them (`delta`).
    deltas: Arc<delta::Deltas>,
    /// The keys section, kept between rebuilds (`keys`).
    keys: Arc<Mutex<keys::KeyCache>>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(None);
        Publisher {
            tx: Arc::new(tx),
            state: Arc::new(Mutex::new(State::default())),
            writes: Arc::default(),
            deltas: Arc::default(),
            keys: Arc::default(),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Distribution>>> {
        self.tx.subscribe()
    }

    /// Recent versions and the deltas between them, for the config streams.
    pub fn deltas(&self) -> &delta::Deltas {
        &self.deltas
    }

    pub fn distribution(&self) -> Option<Arc<Distribution>> {
        self.tx.borrow().clone()
    }

    /// The highest version published (the only one when no rollout runs).
    pub fn latest(&self) -> Option<Arc<Published>> {
        self.tx.borrow().as_ref().map(|d| d.newest().clone())
    }

    /// The version every node outside a rollout's waves serves.
    pub fn stable(&self) -> Option<Arc<Published>> {
        self.tx.borrow().as_ref().map(|d| d.stable.clone())
    }

    /// Rebuilds from the database after a committed config change; publishes what changed and
    /// tells the other replicas.
    pub async fn rebuild(&self, s: &Services) -> Result<Arc<Published>, ServiceError> {
        let mut st = self.state.lock().await;
        let newest = self.reconcile(s, &mut st).await;
        drop(st);
        crate::replica::announce(s).await;
        newest
    }

    /// Rebuilds from the database without a change of its own (periodically, and after another
    /// replica's change); tells the other replicas only when it minted or moved a rollout.
    pub async fn refresh(&self, s: &Services) -> Result<Arc<Published>, ServiceError> {
        let mut st = self.state.lock().await;
        let before = self.writes.load(std::sync::atomic::Ordering::Relaxed);
        let newest = self.reconcile(s, &mut st).await;
        drop(st);
        if self.writes.load(std::sync::atomic::Ordering::Relaxed) != before {
            crate::replica::announce(s).await;
        }
        newest
    }

    /// Counts a version minted or a rollout row written by this process.
    pub(crate) fn wrote(&self) {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads the config tables and brings the distribution in line with them (under the lock).
    pub(crate) async fn reconcile(
        &self,
        s: &Services,
        st: &mut State,
    ) -> Result<Arc<Published>, ServiceError> {
        if !s.replica.drives_rollouts() {
            // Another replica drives rollouts: follow what it persisted.
            crate::replica::follow::reconcile(s, st).await?;
            return self.send(s, st);
        }
        if !st.loaded {
            st.inputs = None;
            st.policy = None;
            st.rollout = None;
            st.rejected_policy = None;
            rollout::load(s, st).await?;
            st.loaded = true;
        } else if s.replica.shared_database() {
            // Another replica may have set or cleared it.
            st.policy = rollout::read_policy(s).await?;
        }
        let mut config = load_policy_tables(s).await?;
        config.canonicalize();
        let now = Utc::now();
        let mut cache = self.keys.lock().await;
        cache.sync(&s.db).await?;
        let mut inputs = Inputs {
            keys: cache.fingerprint(now),
            policy_tables: modelgate_shared::snapshot::content_hash(&config),
            policy: st
                .policy
                .as_deref()
                .map(|p| serde_json::to_string(p).unwrap_or_default()),
            rejected_policy: st.rejected_policy.clone(),
            stable: st.stable.as_ref().map(|p| p.version()),
        };
        // Nothing the config is made of changed since the last rebuild, and no rollout is in
        // flight: what is published stands (the periodic rebuild costs a few small reads).
        if st.rollout.is_none() && st.inputs.as_ref() == Some(&inputs) {
            drop(cache);
            return self.send(s, st);
        }
        config.keys = cache.keys(now);
        drop(cache);
        let started = std::time::Instant::now();
        let current = Snapshot::new(0, config);
        let hashed = started.elapsed();
        let staged = st.policy.is_some() || st.rollout.is_some();
        match (&st.stable, staged) {
            (Some(_), true) => rollout::reconcile(s, st, current).await?,
            _ => {
                let published = publish_everywhere(s, current).await?;
                st.stable = Some(published);
            }
        }
        inputs.stable = st.stable.as_ref().map(|p| p.version());
        inputs.rejected_policy.clone_from(&st.rejected_policy);
        st.inputs = Some(inputs);
        let stored = started.elapsed();
        tracing::debug!(
            hash_ms = hashed.as_secs_f64() * 1e3,
            store_ms = (stored - hashed).as_secs_f64() * 1e3,
            "config rebuilt"
        );
        self.send(s, st)
    }

    /// Publishes the state's distribution (when it changed) and returns the newest version.
    pub(crate) fn send(&self, s: &Services, st: &State) -> Result<Arc<Published>, ServiceError> {
        let stable = st
            .stable
            .clone()
            .ok_or_else(|| ServiceError::Unavailable("no config version built yet".into()))?;
        let next = Distribution {
            stable,
            rollout: st.rollout.as_ref().map(|r| NewTrack {
                published: r.new.clone(),
                plan: r.plan.clone(),
                reached: r.reached,
            }),
        };
        let unchanged = self.tx.borrow().as_ref().is_some_and(|d| {
            d.stable.version() == next.stable.version()
                && match (&d.rollout, &next.rollout) {
                    (None, None) => true,
                    (Some(a), Some(b)) => {
                        a.published.version() == b.published.version() && a.reached == b.reached
                    }
                    _ => false,
                }
        });
        let newest = next.newest().clone();
        self.deltas.remember(&next.stable);
        if let Some(r) = &next.rollout {
            self.deltas.remember(&r.published);
        }
        if !unchanged {
            tracing::info!(
                stable = next.stable.version(),
                new = next.rollout.as_ref().map(|r| r.published.version()),
                wave = next.rollout.as_ref().map(|r| r.reached),
                "config distribution published"
            );
            s.metrics.published(newest.version());
            self.tx.send_replace(Some(Arc::new(next)));
        }
        Ok(newest)
    }
}

/// Today's behaviour: the current content, under the latest version if its hash is the same,
/// else under a new one, for every node.
pub(crate) async fn publish_everywhere(
    s: &Services,
    candidate: Snapshot,
) -> Result<Arc<Published>, ServiceError> {
    store(s, candidate, true).await
}

/// Stores `config` under the next fleet-wide version number and returns it, published form
/// made once. Every version of every track is minted here.
pub(crate) async fn mint(s: &Services, config: Config) -> Result<Arc<Published>, ServiceError> {
    store(s, Snapshot::new(0, config), false).await
}

/// How many times a replica tries the next version number before giving up.
const MINT_ATTEMPTS: u32 = 50;

/// Stores `candidate` under the next version number (or, with `reuse_latest`, returns the
/// latest version when it carries the same content). The number is the table's primary key:
/// when another replica stored it first, the insert fails and this one reads the newest
/// version again and retries.
async fn store(
    s: &Services,
    candidate: Snapshot,
    reuse_latest: bool,
) -> Result<Arc<Published>, ServiceError> {
    // Encoded only when a version is stored (a rebuild that changed nothing stores none).
    let mut body: Option<Vec<u8>> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        // The newest number and hash only: its body is not needed here.
        let latest: Option<(i64, String)> = config_version::Entity::find()
            .select_only()
            .column(config_version::Column::Version)
            .column(config_version::Column::ContentHash)
            .order_by_desc(config_version::Column::Version)
            .into_tuple()
            .one(&s.db)
            .await?;
        if let Some((version, hash)) = latest.as_ref().filter(|_| reuse_latest) {
            if *hash == candidate.content_hash {
                return Ok(Published::new(Snapshot {
                    version: u64::try_from(*version).unwrap_or(0),
                    ..candidate
                }));
            }
        }
        let next = latest.as_ref().map_or(1, |(v, _)| v + 1);
        let body = body
            .get_or_insert_with(|| redacted(&candidate.config).encode_to_vec())
            .clone();
        let inserted = config_version::Entity::insert(config_version::ActiveModel {
            version: Set(next),
            content_hash: Set(candidate.content_hash.clone()),
            body: Set(body),
            created_at: Set(Utc::now()),
        })
        .exec_without_returning(&s.db)
        .await;
        match inserted {
            Ok(_) => {
                s.publisher.wrote();
                let version = u64::try_from(next).unwrap_or(0);
                tracing::info!(version, hash = %candidate.content_hash, "config version minted");
                return Ok(Published::new(Snapshot {
                    version,
                    ..candidate
                }));
            }
            Err(e)
                if attempt < MINT_ATTEMPTS
                    && matches!(
                        e.sql_err(),
                        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                    ) =>
            {
                tracing::debug!(
                    version = next,
                    "another replica stored this version number first; retrying"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A stored version's config, secrets blank (they are not stored), with its content hash:
/// `None` when it is missing or no longer decodes.
pub(crate) async fn stored_config(
    s: &Services,
    version: u64,
) -> Result<Option<(Config, String)>, ServiceError> {
    let Some(row) = config_version::Entity::find_by_id(i64::try_from(version).unwrap_or(i64::MAX))
        .one(&s.db)
        .await?
    else {
        return Ok(None);
    };
    let decoded = wire::Config::decode(row.body.as_slice())
        .ok()
        .and_then(|w| Config::from_wire(version, w).ok());
    if decoded.is_none() {
        tracing::warn!(version, "a stored config version does not decode");
    }
    Ok(decoded.map(|c| (c, row.content_hash)))
}

/// The stored copy of a version keeps no secret and no key. Whoever reads a stored version
/// composes it with the current keys, credentials and balances (`rollout::compose`), which
/// reach every track at once; leaving the keys out keeps a version's row small (a few hundred
/// kilobytes at 1k routes, not 21 MB at 100k keys) and its encoding cheap.
fn redacted(config: &Config) -> wire::Config {
    let stored = Config {
        key_hash_secret: Vec::new(),
        keys: Vec::new(),
        providers: config.providers.clone(),
        prices: config.prices.clone(),
        groups: config.groups.clone(),
        budgets: config.budgets.clone(),
        rate_limits: config.rate_limits.clone(),
    };
    let mut w = stored.to_wire();
    for p in &mut w.providers {
        p.credential.clear();
    }
    w
}

/// The config as the tables hold it now (keys from the publisher's cache, brought up to date).
pub(crate) async fn load_config(s: &Services) -> Result<Config, ServiceError> {
    let mut config = load_policy_tables(s).await?;
    let mut cache = s.publisher.keys.lock().await;
    cache.sync(&s.db).await?;
    config.keys = cache.keys(Utc::now());
    Ok(config)
}

/// Every section but the keys, read in full (each is small next to the keys).
async fn load_policy_tables(s: &Services) -> Result<Config, ServiceError> {
    let key_hash_secret = bootstrap::key_hash_secret(s).await?;

    let mut providers = Vec::new();
    for p in provider_account::Entity::find().all(&s.db).await? {
        let credential = String::from_utf8(s.sealer.open_bound(
            &p.credential_ciphertext,
            &crate::crypto::provider_credential(&p.id),
        )?)
        .unwrap_or_default();
        let Ok(kind) = p.kind.parse() else {
            tracing::warn!(provider = %p.id, kind = %p.kind, "skipping provider of unknown kind");
            continue;
        };
        providers.push(ProviderAccount {
            id: p.id,
            name: p.name,
            kind,
            base_url: p.base_url,
            credential,
        });
    }

    // A disabled catalog row prices nothing; `*` (any provider) travels as "".
    let prices = model_price::Entity::find()
        .filter(model_price::Column::Status.ne("disabled"))
        .all(&s.db)
        .await?
        .into_iter()
        .map(|m| ModelPrice {
            model: m.model,
            provider: if m.provider == "*" {
                String::new()
            } else {
                m.provider
            },
            family: m.family,
            max_output_tokens: u64::try_from(m.max_output_tokens).unwrap_or(0),
            price: Price {
                input_micros_per_mtok: m.input_micros_per_mtok,
                output_micros_per_mtok: m.output_micros_per_mtok,
                cached_input_micros_per_mtok: m.cached_input_micros_per_mtok,
                reasoning_micros_per_mtok: m.reasoning_micros_per_mtok,
                per_image_micros: m.per_image_micros,
                per_second_micros: m.per_second_micros,
                per_mchar_micros: m.per_mchar_micros,
                version: u64::try_from(m.price_version).unwrap_or(0),
            },
        })
        .collect();

    let groups = routing_group::Entity::find()
        .all(&s.db)
        .await?
        .into_iter()
        .map(|g| {
            let specs: Vec<DeploymentSpec> =
                serde_json::from_str(&g.deployments).unwrap_or_default();
            RoutingGroup {
                id: g.id,
                alias: g.alias,
                deployments: specs
                    .into_iter()
                    .map(|d| Deployment {
                        provider_id: d.provider_id,
                        model: d.model,
                        weight: d.weight,
                        tier: d.tier,
                        max_in_flight: d.max_in_flight,
                        rpm: d.rpm,
                    })
                    .collect(),
                fallbacks: serde_json::from_str(&g.fallbacks).unwrap_or_default(),
                policy: serde_json::from_str::<crate::service::routes::PolicySpec>(&g.policy)
                    .unwrap_or_default()
                    .resolve(),
            }
        })
        .collect();

    let budgets = budget::Entity::find()
        .all(&s.db)
        .await?
        .into_iter()
        .filter_map(|b| {
            use modelgate_shared::quota::{Budget, WhenUnreachable};
            // A row that does not parse is left out; the service validates every field.
            Some(Budget {
                scope: b.scope_kind.parse().ok()?,
                period: b.period.parse().ok()?,
                enforcement: b.enforcement.parse().ok()?,
                when_unreachable: if b.when_unreachable == "fail_open" {
                    WhenUnreachable::FailOpen {
                        allowance_micros: b.fail_open_allowance_micros,
                    }
                } else {
                    WhenUnreachable::FailClosed
                },
                kind: b.kind.parse().ok()?,
                id: b.id,
                scope_id: b.scope_id,
                // A balance debited past its credits has nothing to grant.
                amount_micros: b.amount_micros.max(0),
            })
        })
        .collect();

    let rate_limits = rate_limit::Entity::find()
        .all(&s.db)
        .await?
        .iter()
        .filter_map(crate::service::limits::to_domain)
        .collect();

    Ok(Config {
        key_hash_secret,
        keys: Vec::new(),
        providers,
        prices,
        groups,
        budgets,
        rate_limits,
    })
}
