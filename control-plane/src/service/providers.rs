//! Provider accounts. The credential is sealed at rest and never returned (last 4 only).

use chrono::{DateTime, Utc};
use modelgate_shared::snapshot::ProviderKind;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::audit::{self, Change};
use super::authz::{Action, Actor};
use super::{page, require_name, unique_violation, Page, PageParams, ServiceError, Services};
use crate::store::provider_account;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub credential: Option<String>,
}

// Hand-written so a credential can never reach a log through `{:?}`.
impl std::fmt::Debug for CreateProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateProvider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// A new credential for an existing provider account (`PUT /providers/{id}/credential`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceCredential {
    pub credential: String,
}

// Hand-written so a credential can never reach a log through `{:?}`.
impl std::fmt::Debug for ReplaceCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplaceCredential")
            .field("credential", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub base_url: String,
    pub credential_last4: String,
    pub created_at: DateTime<Utc>,
}

impl From<provider_account::Model> for Provider {
    fn from(m: provider_account::Model) -> Self {
        Provider {
            id: m.id,
            name: m.name,
            kind: m.kind,
            base_url: m.base_url,
            credential_last4: m.credential_last4,
            created_at: m.created_at,
        }
    }
}

pub fn default_base_url(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
        ProviderKind::Anthropic => Some("https://api.anthropic.com"),
        ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com"),
        ProviderKind::Mock => Some("mock://builtin"),
        // Each Azure resource has its own host: `https://{resource}.openai.azure.com`.
        ProviderKind::OpenAiCompatible | ProviderKind::AzureOpenAi => None,
    }
}

pub async fn create(
    s: &Services,
    actor: &Actor,
    input: CreateProvider,
) -> Result<Provider, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let name = require_name("name", &input.name)?;
    let kind: ProviderKind = input.kind.parse().map_err(|_| {
        let kinds: Vec<_> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
        ServiceError::invalid("kind", format!("must be one of {}", kinds.join(", ")))
    })?;
    let base_url = match input.base_url.as_deref().map(str::trim) {
        Some(url) if !url.is_empty() => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ServiceError::invalid(
                    "base_url",
                    "must be an http:// or https:// URL",
                ));
            }
            url.trim_end_matches('/').to_owned()
        }
        _ => default_base_url(kind)
            .ok_or_else(|| ServiceError::invalid("base_url", "is required for this kind"))?
            .to_owned(),
    };
    let credential = input.credential.unwrap_or_default();
    if matches!(
        kind,
        ProviderKind::OpenAi
            | ProviderKind::Anthropic
            | ProviderKind::AzureOpenAi
            | ProviderKind::Gemini
    ) && credential.is_empty()
    {
        return Err(ServiceError::invalid(
            "credential",
            format!("is required for {kind}"),
        ));
    }
    let last4 = last4(&credential);
    let id = modelgate_shared::new_id().to_string();
    let credential_ciphertext = s.sealer.seal_bound(
        credential.as_bytes(),
        &crate::crypto::provider_credential(&id),
    );
    let row = provider_account::ActiveModel {
        id: Set(id),
        name: Set(name),
        kind: Set(kind.as_str().to_owned()),
        base_url: Set(base_url),
        credential_ciphertext: Set(credential_ciphertext),
        credential_last4: Set(last4),
        created_at: Set(Utc::now()),
    };
    let txn = s.db.begin().await?;
    let model = provider_account::Entity::insert(row)
        .exec_with_returning(&txn)
        .await
        .map_err(|e| unique_violation(e, "a provider with this name"))?;
    let provider = Provider::from(model);
    audit::record(
        &txn,
        actor,
        Change {
            action: "provider.create",
            resource_type: "provider",
            resource_id: &provider.id,
            team_id: None,
            before: None,
            after: audit::view(&provider),
        },
    )
    .await?;
    txn.commit().await?;
    s.publisher.rebuild(s).await?;
    Ok(provider)
}

/// The last four characters of a credential, the only part the API ever shows.
fn last4(credential: &str) -> String {
    let chars: Vec<char> = credential.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// Replaces a provider account's credential (an upstream key rotated or leaked). A security
/// change: it reaches every node at once, also the nodes of a staged rollout's old track
/// (`shared::rollout::compose` takes credentials from the current config), and starts no
/// rollout. The old credential is gone from the store when this returns.
pub async fn replace_credential(
    s: &Services,
    actor: &Actor,
    id: &str,
    input: ReplaceCredential,
) -> Result<Provider, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let credential = input.credential.trim();
    if credential.is_empty() {
        return Err(ServiceError::invalid("credential", "must not be empty"));
    }
    let txn = s.db.begin().await?;
    let row = provider_account::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("provider {id}")))?;
    let before = Provider::from(row.clone());
    let mut active: provider_account::ActiveModel = row.into();
    active.credential_ciphertext = Set(s.sealer.seal_bound(
        credential.as_bytes(),
        &crate::crypto::provider_credential(id),
    ));
    active.credential_last4 = Set(last4(credential));
    let provider = Provider::from(provider_account::Entity::update(active).exec(&txn).await?);
    audit::record(
        &txn,
        actor,
        Change {
            action: "provider.credential_replace",
            resource_type: "provider",
            resource_id: &provider.id,
            team_id: None,
            before: audit::view(&before),
            after: audit::view(&provider),
        },
    )
    .await?;
    txn.commit().await?;
    s.publisher.rebuild(s).await?;
    Ok(provider)
}

pub async fn list(
    s: &Services,
    actor: &Actor,
    params: PageParams,
) -> Result<Page<Provider>, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let limit = params.limit()?;
    let mut q = provider_account::Entity::find().order_by_asc(provider_account::Column::Id);
    if let Some(after) = &params.after {
        q = q.filter(provider_account::Column::Id.gt(after.as_str()));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(rows, limit, |r| r.id.clone(), Provider::from))
}
