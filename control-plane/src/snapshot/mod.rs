//! The snapshot builder and publisher. After every committed config change the service layer
//! calls [`Publisher::rebuild`]: it reads the config tables, builds a canonical snapshot, and if
//! its content hash differs from the latest version, stores a new immutable version (monotonic
//! number) and publishes it on a `watch` channel that every config stream forwards at once.

use std::sync::Arc;

use chrono::Utc;
use modelgate_proto::config::v1 as wire;
use modelgate_shared::keys::KeyHash;
use modelgate_shared::pricing::Price;
use modelgate_shared::routing::TrafficClass;
use modelgate_shared::snapshot::{
    ApiKey, Config, Deployment, KeyCacheMode, ModelPrice, ProviderAccount, RoutingGroup, Snapshot,
};
use prost::Message;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::{watch, Mutex};

use crate::service::{bootstrap, routes::DeploymentSpec, ServiceError, Services};
use crate::store::{
    api_key, budget, config_version, model_price, provider_account, rate_limit, routing_group,
};

/// A published snapshot with its wire form encoded once for every subscriber.
#[derive(Debug)]
pub struct Published {
    pub snapshot: Snapshot,
    pub wire: wire::Snapshot,
}

#[derive(Clone)]
pub struct Publisher {
    tx: Arc<watch::Sender<Option<Arc<Published>>>>,
    build_lock: Arc<Mutex<()>>,
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
            build_lock: Arc::new(Mutex::new(())),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.tx.subscribe()
    }

    pub fn latest(&self) -> Option<Arc<Published>> {
        self.tx.borrow().clone()
    }

    /// Rebuilds from the database; publishes a new version when the content changed.
    pub async fn rebuild(&self, s: &Services) -> Result<Arc<Published>, ServiceError> {
        let _guard = self.build_lock.lock().await;
        let config = load_config(s).await?;
        let latest = config_version::Entity::find()
            .order_by_desc(config_version::Column::Version)
            .one(&s.db)
            .await?;
        let candidate = Snapshot::new(0, config);
        let version = match &latest {
            Some(row) if row.content_hash == candidate.content_hash => {
                u64::try_from(row.version).unwrap_or(0)
            }
            _ => {
                let next = latest.as_ref().map_or(1, |r| r.version + 1);
                config_version::Entity::insert(config_version::ActiveModel {
                    version: Set(next),
                    content_hash: Set(candidate.content_hash.clone()),
                    body: Set(redacted(&candidate.config).encode_to_vec()),
                    created_at: Set(Utc::now()),
                })
                .exec_without_returning(&s.db)
                .await?;
                u64::try_from(next).unwrap_or(0)
            }
        };
        let snapshot = Snapshot {
            version,
            ..candidate
        };
        if let Some(current) = self.tx.borrow().as_ref() {
            if current.snapshot.version == version
                && current.snapshot.content_hash == snapshot.content_hash
            {
                return Ok(current.clone());
            }
        }
        let published = Arc::new(Published {
            wire: snapshot.to_wire(),
            snapshot,
        });
        tracing::info!(
            version = published.snapshot.version,
            hash = %published.snapshot.content_hash,
            "snapshot published"
        );
        s.metrics.published(published.snapshot.version);
        self.tx.send_replace(Some(published.clone()));
        Ok(published)
    }
}

/// The stored copy of a version keeps no secret.
fn redacted(config: &Config) -> wire::Config {
    let mut w = config.to_wire();
    w.key_hash_secret.clear();
    for p in &mut w.providers {
        p.credential.clear();
    }
    w
}

async fn load_config(s: &Services) -> Result<Config, ServiceError> {
    let key_hash_secret = bootstrap::key_hash_secret(s).await?;

    let now = chrono::Utc::now();
    let keys = api_key::Entity::find()
        .all(&s.db)
        .await?
        .into_iter()
        .filter_map(|k| {
            let hash: KeyHash = hex::decode(&k.key_hash).ok()?.try_into().ok()?;
            // A replaced secret travels only while its grace period lasts; the data plane
            // enforces the end to the second.
            let previous = match (&k.previous_key_hash, k.previous_expires_at) {
                (Some(h), Some(until)) if until > now => {
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
                allowed_traffic_classes: serde_json::from_str::<Vec<String>>(
                    &k.allowed_traffic_classes,
                )
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
        })
        .collect();

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
        keys,
        providers,
        prices,
        groups,
        budgets,
        rate_limits,
    })
}
