//! First-start initialisation (the key-hash secret, the bootstrap admin token), admin token
//! checks, and the demo seed that `modelgate up` uses.

use chrono::{DateTime, Utc};
use modelgate_shared::keys;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait,
};

use super::authz::{Actor, Role};
use super::{keys as key_service, models, providers, routes, teams, ServiceError, Services};
use crate::crypto;
use crate::store::{admin_token, api_key, provider_account, routing_group, setting, team};

const KEY_HASH_SECRET: &str = "key_hash_secret";

/// The server secret gateway keys are hashed with (sealed in `settings`).
pub async fn key_hash_secret(s: &Services) -> Result<Vec<u8>, ServiceError> {
    let row = setting::Entity::find_by_id(KEY_HASH_SECRET)
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound("setting key_hash_secret".into()))?;
    Ok(s.sealer
        .open_bound(&row.value, &crypto::setting_value(KEY_HASH_SECRET))?)
}

/// Creates what a fresh database lacks. Returns the bootstrap admin token when one was minted
/// (there were no admin tokens); it is shown once and stored only hashed.
pub async fn ensure_initialized(s: &Services) -> Result<Option<String>, ServiceError> {
    if setting::Entity::find_by_id(KEY_HASH_SECRET)
        .one(&s.db)
        .await?
        .is_none()
    {
        let sealed = s.sealer.seal_bound(
            &keys::generate_server_secret(),
            &crypto::setting_value(KEY_HASH_SECRET),
        );
        // Two replicas starting at once on an empty database: the first secret stored stays.
        setting::Entity::insert(setting::ActiveModel {
            name: Set(KEY_HASH_SECRET.to_owned()),
            value: Set(sealed),
        })
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(setting::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&s.db)
        .await?;
    }
    if admin_token::Entity::find().count(&s.db).await? > 0 {
        return Ok(None);
    }
    // Several replicas may find no token at once: the one whose claim row is stored mints, in
    // the claim's transaction, so a crash in between leaves neither.
    let txn = s.db.begin().await?;
    let claimed = setting::Entity::insert(setting::ActiveModel {
        name: Set(BOOTSTRAP_CLAIM.to_owned()),
        value: Set(Utc::now().to_rfc3339()),
    })
    .on_conflict(
        sea_orm::sea_query::OnConflict::column(setting::Column::Name)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    if claimed == 0 {
        txn.rollback().await?;
        return Ok(None);
    }
    let token = insert_owner_token(&txn, "bootstrap").await?;
    txn.commit().await?;
    Ok(Some(token))
}

/// The settings row that records that a bootstrap admin token was minted (its value: when).
const BOOTSTRAP_CLAIM: &str = "bootstrap_token_minted_at";

/// Mints an organisation owner token (shown once, stored as SHA-256).
pub async fn mint_admin_token(s: &Services, name: &str) -> Result<String, ServiceError> {
    insert_owner_token(&s.db, name).await
}

async fn insert_owner_token(
    db: &impl sea_orm::ConnectionTrait,
    name: &str,
) -> Result<String, ServiceError> {
    let token = keys::generate_admin_token();
    admin_token::Entity::insert(admin_token::ActiveModel {
        id: Set(modelgate_shared::new_id().to_string()),
        name: Set(name.to_owned()),
        token_hash: Set(keys::sha256_hex(&token.secret)),
        prefix: Set(token.display_prefix),
        role: Set(Role::Owner.as_str().to_owned()),
        team_id: Set(None),
        revoked_at: Set(None),
        expires_at: Set(None),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(token.secret)
}

/// Deletes the admin token `presented` (a bootstrap token that could not be handed over), so
/// that a database left without any token mints a new bootstrap token at the next start.
pub async fn withdraw_admin_token(s: &Services, presented: &str) -> Result<(), ServiceError> {
    let txn = s.db.begin().await?;
    admin_token::Entity::delete_many()
        .filter(admin_token::Column::TokenHash.eq(keys::sha256_hex(presented)))
        .exec(&txn)
        .await?;
    setting::Entity::delete_by_id(BOOTSTRAP_CLAIM)
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// Revokes every live admin token with this name (used by `modelgate up` to replace its own).
pub async fn revoke_admin_tokens_named(s: &Services, name: &str) -> Result<(), ServiceError> {
    admin_token::Entity::update_many()
        .col_expr(admin_token::Column::RevokedAt, Some(Utc::now()).into())
        .filter(admin_token::Column::Name.eq(name))
        .filter(admin_token::Column::RevokedAt.is_null())
        .exec(&s.db)
        .await?;
    Ok(())
}

/// What a presented admin token stands for.
#[derive(Debug)]
pub enum Authentication {
    /// A live token.
    Actor(Actor),
    /// No live token has this secret (unknown, revoked, or of a role this build does not know).
    Unknown,
    /// The token expired at this instant.
    Expired(DateTime<Utc>),
}

/// The actor a presented admin token stands for, if it is live: not revoked, and not expired
/// by the injected clock.
pub async fn authenticate(
    s: &Services,
    presented: &str,
    request_id: &str,
) -> Result<Authentication, ServiceError> {
    authenticate_hash(s, &keys::sha256_hex(presented), request_id).await
}

/// [`authenticate`] by the token's SHA-256 (hex), as stored: how a dashboard session, which
/// keeps only that hash, re-authenticates its token on every request.
pub async fn authenticate_hash(
    s: &Services,
    token_hash: &str,
    request_id: &str,
) -> Result<Authentication, ServiceError> {
    let found = admin_token::Entity::find()
        .filter(admin_token::Column::TokenHash.eq(token_hash))
        .filter(admin_token::Column::RevokedAt.is_null())
        .one(&s.db)
        .await?;
    let Some(token) = found else {
        return Ok(Authentication::Unknown);
    };
    if let Some(at) = token.expires_at.filter(|at| *at <= s.clock.now()) {
        return Ok(Authentication::Expired(at));
    }
    // A role this build does not know grants nothing.
    let Ok(role) = token.role.parse::<Role>() else {
        return Ok(Authentication::Unknown);
    };
    Ok(Authentication::Actor(Actor {
        kind: "token",
        id: token.id,
        role,
        team_id: token.team_id,
        request_id: request_id.to_owned(),
    }))
}

/// What `modelgate up` prints.
pub struct DemoCredentials {
    pub api_key: String,
    pub admin_token: String,
    pub model: String,
    /// One chat route per registered provider, the mock's first.
    pub routes: Vec<DemoRoute>,
}

/// A routed, priced alias `modelgate up` registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoRoute {
    /// The provider account's name (`mock`, `openai`, `anthropic`, `gemini`).
    pub provider: &'static str,
    pub alias: &'static str,
    /// The provider's model the alias routes to.
    pub model: &'static str,
}

/// A real provider account for `modelgate up` to register.
pub struct DemoUpstream {
    pub credential: String,
    /// `None`: the provider kind's public URL.
    pub base_url: Option<String>,
}

// Hand-written so a credential can never reach a log through `{:?}`.
impl std::fmt::Debug for DemoUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoUpstream")
            .field("credential", &"<redacted>")
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// The real providers `modelgate up` registers beside the mock, each when its key is set.
#[derive(Debug, Default)]
pub struct DemoUpstreams {
    pub openai: Option<DemoUpstream>,
    pub anthropic: Option<DemoUpstream>,
    pub gemini: Option<DemoUpstream>,
}

pub const DEMO_TEAM: &str = "demo";
pub const DEMO_MODEL: &str = "mock-small";
/// The demo's speech-to-text and text-to-speech aliases (served by the mock).
pub const DEMO_TRANSCRIBE_MODEL: &str = "mock-whisper";
pub const DEMO_SPEECH_MODEL: &str = "mock-tts";
const DEMO_KEY_NAME: &str = "demo (modelgate up)";
const UP_TOKEN_NAME: &str = "modelgate up";

/// A real provider's demo route: the provider account (named as its kind), the alias (the
/// model's own name) and its list price in micro-USD per 1M input and output tokens.
struct RealProvider {
    kind: &'static str,
    model: &'static str,
    input_micros_per_mtok: i64,
    output_micros_per_mtok: i64,
}

const OPENAI: RealProvider = RealProvider {
    kind: "openai",
    model: "gpt-4o-mini",
    input_micros_per_mtok: 150_000,
    output_micros_per_mtok: 600_000,
};
const ANTHROPIC: RealProvider = RealProvider {
    kind: "anthropic",
    model: "claude-haiku-4-5",
    input_micros_per_mtok: 1_000_000,
    output_micros_per_mtok: 5_000_000,
};
const GEMINI: RealProvider = RealProvider {
    kind: "gemini",
    model: "gemini-2.5-flash",
    input_micros_per_mtok: 300_000,
    output_micros_per_mtok: 2_500_000,
};

/// Seeds the demo team, the built-in mock provider with a priced model and a route, and each
/// real provider in `upstreams` with a priced route named after its model. Each run replaces
/// the previous run's demo key and admin token (their secrets were shown once and are not
/// recoverable).
pub async fn seed_demo(
    s: &Services,
    upstreams: DemoUpstreams,
) -> Result<DemoCredentials, ServiceError> {
    let team_id = match team::Entity::find()
        .filter(team::Column::Name.eq(DEMO_TEAM))
        .one(&s.db)
        .await?
    {
        Some(t) => t.id,
        None => {
            teams::create(
                s,
                &Actor::system(),
                teams::CreateTeam {
                    name: DEMO_TEAM.into(),
                },
            )
            .await?
            .id
        }
    };

    let mock_id = ensure_provider(s, "mock", "mock", None, None).await?;
    // Priced like a real small model (gpt-4o-mini's list price), never zero.
    models::upsert_if_missing(s, DEMO_MODEL, 150_000, 600_000).await?;
    ensure_route(s, DEMO_MODEL, &mock_id, DEMO_MODEL).await?;
    // The audio surfaces' demo models, priced like whisper-1 ($0.006 a minute) and tts-1 ($15
    // per 1M characters).
    for (model, per_second_micros, per_mchar_micros) in [
        (DEMO_TRANSCRIBE_MODEL, 100, 0),
        (DEMO_SPEECH_MODEL, 0, 15_000_000),
    ] {
        models::seed_if_missing(
            s,
            models::UpsertModel {
                model: model.into(),
                provider: "*".into(),
                family: "audio".into(),
                input_micros_per_mtok: 0,
                output_micros_per_mtok: 0,
                cached_input_micros_per_mtok: 0,
                reasoning_micros_per_mtok: 0,
                per_image_micros: 0,
                image_prices: Default::default(),
                per_second_micros,
                per_mchar_micros,
                context_window: 0,
                max_output_tokens: 0,
                status: "active".into(),
            },
        )
        .await?;
        ensure_route(s, model, &mock_id, model).await?;
    }

    let mut routes = vec![DemoRoute {
        provider: "mock",
        alias: DEMO_MODEL,
        model: DEMO_MODEL,
    }];
    for (provider, upstream) in [
        (OPENAI, upstreams.openai),
        (ANTHROPIC, upstreams.anthropic),
        (GEMINI, upstreams.gemini),
    ] {
        let Some(upstream) = upstream.filter(|u| !u.credential.is_empty()) else {
            continue;
        };
        let id = ensure_real_provider(s, provider.kind, upstream).await?;
        models::upsert_if_missing(
            s,
            provider.model,
            provider.input_micros_per_mtok,
            provider.output_micros_per_mtok,
        )
        .await?;
        ensure_route(s, provider.model, &id, provider.model).await?;
        routes.push(DemoRoute {
            provider: provider.kind,
            alias: provider.model,
            model: provider.model,
        });
    }

    // Like every key write, this one bumps the version and takes a revision (`snapshot::keys`).
    let txn = s.db.begin().await?;
    let revision = crate::snapshot::keys::take_revision(&txn).await?;
    api_key::Entity::update_many()
        .col_expr(api_key::Column::RevokedAt, Some(Utc::now()).into())
        .col_expr(
            api_key::Column::Version,
            sea_orm::sea_query::Expr::col(api_key::Column::Version).add(1i64),
        )
        .col_expr(api_key::Column::Revision, revision.into())
        .filter(api_key::Column::Name.eq(DEMO_KEY_NAME))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    let key = key_service::create(
        s,
        &Actor::system(),
        key_service::CreateKey {
            team_id,
            name: DEMO_KEY_NAME.into(),
            environment: Some("dev".into()),
            ..Default::default()
        },
    )
    .await?;

    revoke_admin_tokens_named(s, UP_TOKEN_NAME).await?;
    let admin_token = mint_admin_token(s, UP_TOKEN_NAME).await?;
    Ok(DemoCredentials {
        api_key: key.key_secret,
        admin_token,
        model: DEMO_MODEL.into(),
        routes,
    })
}

/// The provider account named `kind` with `upstream`'s credential: created when missing; an
/// existing one whose credential differs gets the new one (a key fixed or rotated between two
/// runs). An existing account keeps its base URL (no admin call changes it); a different one
/// given is logged and ignored.
async fn ensure_real_provider(
    s: &Services,
    kind: &str,
    upstream: DemoUpstream,
) -> Result<String, ServiceError> {
    let Some(row) = provider_account::Entity::find()
        .filter(provider_account::Column::Name.eq(kind))
        .one(&s.db)
        .await?
    else {
        return ensure_provider(s, kind, kind, Some(upstream.credential), upstream.base_url).await;
    };
    let stored = s.sealer.open_bound(
        &row.credential_ciphertext,
        &crypto::provider_credential(&row.id),
    )?;
    // Compared as `replace_credential` stores it (trimmed), so an unchanged key changes nothing.
    if stored != upstream.credential.trim().as_bytes() {
        providers::replace_credential(
            s,
            &Actor::system(),
            &row.id,
            providers::ReplaceCredential {
                credential: upstream.credential,
            },
        )
        .await?;
    }
    if let Some(url) = upstream
        .base_url
        .as_deref()
        .map(|u| u.trim().trim_end_matches('/'))
        .filter(|u| !u.is_empty() && *u != row.base_url)
    {
        tracing::warn!(
            provider = kind,
            base_url = %row.base_url,
            ignored = %url,
            "the provider account already exists and keeps its base URL: the base URL flag \
             applies when `modelgate up` creates the account"
        );
    }
    Ok(row.id)
}

async fn ensure_provider(
    s: &Services,
    name: &str,
    kind: &str,
    credential: Option<String>,
    base_url: Option<String>,
) -> Result<String, ServiceError> {
    if let Some(p) = provider_account::Entity::find()
        .filter(provider_account::Column::Name.eq(name))
        .one(&s.db)
        .await?
    {
        return Ok(p.id);
    }
    Ok(providers::create(
        s,
        &Actor::system(),
        providers::CreateProvider {
            name: name.into(),
            kind: kind.into(),
            base_url,
            credential,
        },
    )
    .await?
    .id)
}

async fn ensure_route(
    s: &Services,
    alias: &str,
    provider_id: &str,
    model: &str,
) -> Result<(), ServiceError> {
    let exists = routing_group::Entity::find()
        .filter(routing_group::Column::Alias.eq(alias))
        .one(&s.db)
        .await?
        .is_some();
    if !exists {
        routes::create(
            s,
            &Actor::system(),
            routes::CreateRoute {
                alias: alias.into(),
                deployments: vec![routes::DeploymentSpec {
                    provider_id: provider_id.into(),
                    model: model.into(),
                    weight: 1,
                    tier: 0,
                    max_in_flight: 0,
                    rpm: 0,
                }],
                fallbacks: vec![],
                policy: routes::PolicySpec::default(),
            },
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::crypto::Sealer;
    use crate::scratch_db::ScratchDb;
    use crate::service::Services;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_starting_at_once_on_an_empty_database_mint_one_bootstrap_token() {
        let db = ScratchDb::create().await;
        let key = Sealer::generate_master_key_hex();
        let mut replicas = Vec::new();
        for _ in 0..4 {
            replicas.push(Services::new(
                crate::store::connect(&db.url).await.unwrap(),
                Sealer::from_hex(&key).unwrap(),
                modelgate_shared::clock::system(),
            ));
        }
        let starts: Vec<_> = replicas
            .iter()
            .cloned()
            .map(|s| tokio::spawn(async move { super::ensure_initialized(&s).await.unwrap() }))
            .collect();
        let mut minted = Vec::new();
        for start in starts {
            minted.extend(start.await.unwrap());
        }
        assert_eq!(minted.len(), 1, "one bootstrap token, shown by one replica");
        assert!(matches!(
            super::authenticate(&replicas[0], &minted[0], "test")
                .await
                .unwrap(),
            super::Authentication::Actor(_)
        ));

        // A token that could not be handed over is withdrawn: the next start mints again.
        super::withdraw_admin_token(&replicas[1], &minted[0])
            .await
            .unwrap();
        let again = super::ensure_initialized(&replicas[2]).await.unwrap();
        assert!(again.is_some());
        assert!(super::ensure_initialized(&replicas[3])
            .await
            .unwrap()
            .is_none());
        for s in replicas {
            s.db.close().await.unwrap();
        }
        db.drop_now().await;
    }
}
