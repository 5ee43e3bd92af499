//! Rate limits: definitions on a key, team, user or model alias, and the ledger
//! that leases each data plane a share of every minute's requests and tokens and of the
//! concurrent-request slots (see [`ledger`] for the invariant).

pub mod ledger;
pub mod stored;

use chrono::{DateTime, Utc};
use modelgate_shared::limits::{window_start, LimitFallback, LimitScope, Measure};
use modelgate_shared::scope::{one_named, ScopeChoice, ScopeKindOwner, ScopeOwner};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, ModelTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::audit::{self, Change};
use super::authz::{Action, Actor};
use super::{page, scopes, Page, PageParams, ServiceError, Services};
use crate::store::rate_limit;

pub use ledger::{Ledger, RateAsk, RateGrant};

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitScopeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// A model alias: every request for it counts, whoever makes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRateLimit {
    pub scope: LimitScopeSpec,
    /// With a key, team or user scope: count only requests for this alias.
    #[serde(default)]
    pub model: Option<String>,
    /// Requests per minute (0 or absent: not limited).
    #[serde(default)]
    pub rpm: u64,
    /// Input plus output tokens per minute (0 or absent: not limited).
    #[serde(default)]
    pub tpm: u64,
    /// Requests in flight at once (0 or absent: not limited).
    #[serde(default)]
    pub max_concurrent: u32,
    /// fail_open (default: each node holds the whole limit alone while the control plane is
    /// unreachable) | fail_closed (stop when the node's lease is spent)
    #[serde(default)]
    pub when_unreachable: Option<String>,
}

/// One measure's state in the current window across the fleet.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeasureState {
    /// requests | tokens | concurrent
    pub measure: String,
    pub limit: u64,
    /// Unix seconds of the current minute (0 for concurrent).
    pub window_start: i64,
    /// Leased to data planes in this window (slots held, for concurrent).
    pub granted: i64,
    /// Reported taken by data planes in this window.
    pub consumed: i64,
    pub allocations: Vec<ledger::NodeShare>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RateLimit {
    pub id: String,
    pub scope: LimitScopeSpec,
    pub model: Option<String>,
    pub rpm: u64,
    pub tpm: u64,
    pub max_concurrent: u32,
    pub when_unreachable: String,
    pub created_at: DateTime<Utc>,
    /// The limited measures now, fleet-wide.
    pub state: Vec<MeasureState>,
}

impl LimitScopeSpec {
    /// The one scope this names (shared with budgets: `modelgate_shared::scope`).
    fn one(&self) -> Result<(LimitScope, &str), ScopeChoice> {
        one_named(&[
            (LimitScope::Key, self.key_id.as_deref()),
            (LimitScope::Team, self.team_id.as_deref()),
            (LimitScope::User, self.user_id.as_deref()),
            (LimitScope::Model, self.model.as_deref()),
        ])
    }

    /// Who owns this scope (the organisation when it does not name exactly one).
    pub(crate) fn owner(&self) -> ScopeOwner<'_> {
        self.one()
            .map_or(ScopeOwner::Organisation, |(kind, id)| kind.owner(id))
    }
}

fn scope_of(m: &rate_limit::Model) -> LimitScopeSpec {
    let id = Some(m.scope_id.clone());
    match m.scope_kind.as_str() {
        "key" => LimitScopeSpec {
            key_id: id,
            ..LimitScopeSpec::default()
        },
        "team" => LimitScopeSpec {
            team_id: id,
            ..LimitScopeSpec::default()
        },
        "user" => LimitScopeSpec {
            user_id: id,
            ..LimitScopeSpec::default()
        },
        _ => LimitScopeSpec {
            model: id,
            ..LimitScopeSpec::default()
        },
    }
}

/// The domain form of a stored row (`None` if a field does not parse; the service validates
/// every field on the way in).
pub fn to_domain(m: &rate_limit::Model) -> Option<modelgate_shared::limits::RateLimit> {
    Some(modelgate_shared::limits::RateLimit {
        id: m.id.clone(),
        scope: m.scope_kind.parse().ok()?,
        scope_id: m.scope_id.clone(),
        model: m.model.clone(),
        rpm: u64::try_from(m.rpm).ok()?,
        tpm: u64::try_from(m.tpm).ok()?,
        max_concurrent: u32::try_from(m.max_concurrent).ok()?,
        when_unreachable: m.when_unreachable.parse().ok()?,
    })
}

fn shape(ledger: &Ledger, m: rate_limit::Model, now: i64) -> RateLimit {
    let state = to_domain(&m)
        .map(|d| {
            d.measures()
                .map(|measure| {
                    let start = window_start(measure, now);
                    let (granted, consumed, allocations) = ledger.state(&m.id, measure, start);
                    MeasureState {
                        measure: measure.as_str().to_owned(),
                        limit: d.amount(measure),
                        window_start: start,
                        granted,
                        consumed,
                        allocations,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    RateLimit {
        id: m.id.clone(),
        scope: scope_of(&m),
        model: m.model.clone(),
        rpm: u64::try_from(m.rpm).unwrap_or(0),
        tpm: u64::try_from(m.tpm).unwrap_or(0),
        max_concurrent: u32::try_from(m.max_concurrent).unwrap_or(0),
        when_unreachable: m.when_unreachable,
        created_at: m.created_at,
        state,
    }
}

pub async fn create(
    s: &Services,
    actor: &Actor,
    input: CreateRateLimit,
) -> Result<RateLimit, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let (kind, scope_id) = input.scope.one().map_err(|_| {
        ServiceError::invalid(
            "scope",
            "name exactly one of key_id, team_id, user_id, model",
        )
    })?;
    let model = input.model.filter(|m| !m.trim().is_empty());
    if kind == LimitScope::Model && model.is_some() {
        return Err(ServiceError::invalid(
            "model",
            "a limit on a model alias already names its model",
        ));
    }
    if input.rpm == 0 && input.tpm == 0 && input.max_concurrent == 0 {
        return Err(ServiceError::invalid(
            "rpm",
            "set at least one of rpm, tpm, max_concurrent",
        ));
    }
    let too_big = |v: u64| i64::try_from(v).is_err();
    if too_big(input.rpm) || too_big(input.tpm) {
        return Err(ServiceError::invalid("rpm", "too large"));
    }
    let fallback: LimitFallback = input
        .when_unreachable
        .as_deref()
        .unwrap_or("fail_open")
        .parse()
        .map_err(|_| ServiceError::invalid("when_unreachable", "one of fail_open, fail_closed"))?;
    let row = rate_limit::ActiveModel {
        id: Set(modelgate_shared::new_id().to_string()),
        scope_kind: Set(kind.as_str().to_owned()),
        scope_id: Set(scope_id.to_owned()),
        model: Set(model),
        rpm: Set(i64::try_from(input.rpm).unwrap_or(i64::MAX)),
        tpm: Set(i64::try_from(input.tpm).unwrap_or(i64::MAX)),
        max_concurrent: Set(i64::from(input.max_concurrent)),
        when_unreachable: Set(fallback.as_str().to_owned()),
        created_at: Set(Utc::now()),
    };
    let txn = s.db.begin().await?;
    let model = rate_limit::Entity::insert(row)
        .exec_with_returning(&txn)
        .await?;
    let view = shape(&s.rate_ledger, model, Utc::now().timestamp());
    audit::record(
        &txn,
        actor,
        Change {
            action: "rate_limit.create",
            resource_type: "rate_limit",
            resource_id: &view.id,
            team_id: view.scope.team_id.as_deref(),
            before: None,
            after: audit::view(&view),
        },
    )
    .await?;
    txn.commit().await?;
    s.publisher.rebuild(s).await?;
    Ok(view)
}

async fn find(s: &Services, actor: &Actor, id: &str) -> Result<rate_limit::Model, ServiceError> {
    let model = rate_limit::Entity::find_by_id(id)
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("rate limit `{id}`")))?;
    let owner = scopes::owner_of::<LimitScope>(&model.scope_kind, &model.scope_id);
    scopes::require_visible(s, actor, owner, &format!("rate limit `{id}`")).await?;
    Ok(model)
}

pub async fn get(s: &Services, actor: &Actor, id: &str) -> Result<RateLimit, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let model = find(s, actor, id).await?;
    let (ledger, now) = shown(s, std::slice::from_ref(&model.id)).await?;
    Ok(shape(ledger.as_ref().unwrap_or(&s.rate_ledger), model, now))
}

pub async fn list(
    s: &Services,
    actor: &Actor,
    params: PageParams,
) -> Result<Page<RateLimit>, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let limit = params.limit()?;
    let mut q = rate_limit::Entity::find().order_by_asc(rate_limit::Column::Id);
    if let Some(after) = &params.after {
        q = q.filter(rate_limit::Column::Id.gt(after.as_str()));
    }
    if let Some(own) = actor.scope() {
        // A team-scoped actor sees its team's limits and its team's keys' limits.
        q = q.filter(scopes::visible_to_team(
            rate_limit::Column::ScopeKind,
            rate_limit::Column::ScopeId,
            own,
        ));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let (ledger, now) = shown(s, &ids).await?;
    let ledger = ledger.as_ref().unwrap_or(&s.rate_ledger);
    Ok(page(
        rows,
        limit,
        |r| r.id.clone(),
        |r| shape(ledger, r, now),
    ))
}

pub async fn delete(s: &Services, actor: &Actor, id: &str) -> Result<(), ServiceError> {
    actor.require(Action::ManageOrg)?;
    let model = find(s, actor, id).await?;
    let before = shape(&s.rate_ledger, model.clone(), Utc::now().timestamp());
    let txn = s.db.begin().await?;
    model.delete(&txn).await?;
    audit::record(
        &txn,
        actor,
        Change {
            action: "rate_limit.delete",
            resource_type: "rate_limit",
            resource_id: id,
            team_id: before.scope.team_id.as_deref(),
            before: audit::view(&before),
            after: None,
        },
    )
    .await?;
    txn.commit().await?;
    s.publisher.rebuild(s).await?;
    Ok(())
}

/// The current view of each limit id (definitions with their fleet-wide windows), for explain.
pub async fn views(s: &Services, ids: &[&str]) -> Result<Vec<RateLimit>, ServiceError> {
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(m) = rate_limit::Entity::find_by_id(*id).one(&s.db).await? {
            rows.push(m);
        }
    }
    let found: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let (ledger, now) = shown(s, &found).await?;
    let ledger = ledger.as_ref().unwrap_or(&s.rate_ledger);
    Ok(rows.into_iter().map(|m| shape(ledger, m, now)).collect())
}

/// The ledger the admin view shows, and the time (Unix seconds) naming its windows: where
/// replicas share the database, the stored ledger as every replica granted from it (`None`
/// when there is nothing to read); else this control plane's own (`None`: `s.rate_ledger`).
async fn shown(s: &Services, ids: &[String]) -> Result<(Option<Ledger>, i64), ServiceError> {
    if !s.replica.shared_database() || ids.is_empty() {
        return Ok((None, Utc::now().timestamp()));
    }
    let (view, now) = stored::fleet_view(s, ids).await?;
    Ok((Some(view), now))
}

/// `QuotaService.AllocateRate`: a data plane reports what it took of one measure and asks for
/// more (or, for concurrent slots, gives some back).
pub async fn allocate(s: &Services, ask: RateAsk) -> Result<RateGrant, ServiceError> {
    let m = rate_limit::Entity::find_by_id(ask.limit_id.as_str())
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("rate limit `{}`", ask.limit_id)))?;
    let limit = to_domain(&m)
        .ok_or_else(|| ServiceError::Conflict(format!("rate limit `{}` is invalid", m.id)))?;
    let amount = i64::try_from(limit.amount(ask.measure)).unwrap_or(i64::MAX);
    let granted = if s.replica.shared_database() {
        stored::allocate(s, &s.rate_ledger, amount, &ask).await?
    } else {
        // SQLite has one control plane per file and one connection, which a rebuild of a large
        // config holds for seconds: the ledger stays in this process's memory (re-learned after
        // a restart, see `ledger`), so a rate share never waits behind a rebuild.
        let now = Utc::now().timestamp();
        s.rate_ledger.grant(
            amount,
            &ask,
            window_start(ask.measure, now),
            std::time::Instant::now(),
        )
    };
    granted.map_err(|ledger::WarmingUp| {
        ServiceError::Unavailable(
            "the rate-limit ledger is learning what data planes hold after a restart".into(),
        )
    })
}

/// At start: if rate limits exist, a previous control plane may have leased shares that are
/// still live, so the ledger learns them before granting anything new (see [`Ledger::warm_up`]).
pub async fn warm_up_if_needed(s: &Services) -> Result<(), ServiceError> {
    if rate_limit::Entity::find().one(&s.db).await?.is_some() {
        s.rate_ledger.warm_up(std::time::Instant::now());
    }
    Ok(())
}

/// The measures of a limit, for callers that parse one from the wire.
pub fn parse_measure(s: &str) -> Result<Measure, ServiceError> {
    s.parse()
        .map_err(|_| ServiceError::invalid("measure", "one of requests, tokens, concurrent"))
}
