//! Budgets: definitions and their admin surface, their spend per calendar
//! period, and (`allocator`) the leases of budget granted to data planes. A data plane admits a
//! request only by reserving its worst-case cost from its own grant, before its lease ends, so
//! what the fleet can spend on a hard budget never exceeds the amount (see ARCHITECTURE.md).

mod allocator;

pub use allocator::{allocate, AllocateInput, Allocator, Grant, LEASE_TTL};

/// `budgets.kind` of a spend budget; a prepaid balance's row is `balance`
/// (`service::balances`).
pub(crate) const SPEND: &str = "spend";

use chrono::{DateTime, Utc};
use modelgate_shared::quota::{period_start, Enforcement, Period, ScopeKind};
use modelgate_shared::scope::{one_named, ScopeChoice, ScopeKindOwner, ScopeOwner};
use sea_orm::{ActiveValue::Set, EntityTrait, TransactionTrait};
use serde::{Deserialize, Serialize};

use super::audit::{self, Change};
use super::authz::{Action, Actor};
use super::{scopes, ServiceError, Services};
use crate::store::{budget, budget_period};

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBudget {
    pub scope: Scope,
    pub amount_micros: i64,
    /// day | week | month | total
    pub period: String,
    /// hard | soft
    pub enforcement: String,
    /// fail_closed (default) | fail_open
    #[serde(default)]
    pub when_unreachable: Option<String>,
    #[serde(default)]
    pub fail_open_allowance_micros: i64,
    #[serde(default)]
    pub alert_webhook_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Allocation {
    pub node: String,
    pub granted_micros: i64,
    pub consumed_micros: i64,
    pub lease_live: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Budget {
    pub id: String,
    pub scope: Scope,
    pub amount_micros: i64,
    pub period: String,
    pub enforcement: String,
    pub when_unreachable: String,
    pub fail_open_allowance_micros: i64,
    pub alert_webhook_url: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Unix seconds of the current period's start.
    pub period_start: i64,
    /// Charged in the current period (ingested usage).
    pub spent_micros: i64,
    /// Granted to data planes and not yet reported spent.
    pub reserved_micros: i64,
    pub remaining_micros: i64,
    pub allocations: Vec<Allocation>,
}

fn webhook_url(url: &str) -> Result<String, ServiceError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.to_owned())
    } else {
        Err(ServiceError::invalid(
            "alert_webhook_url",
            "must be an http:// or https:// URL",
        ))
    }
}

impl Scope {
    /// Who owns this scope (the organisation when it does not name exactly one).
    pub(crate) fn owner(&self) -> ScopeOwner<'_> {
        one_scope(self).map_or(ScopeOwner::Organisation, |(kind, id)| kind.owner(id))
    }
}

/// The one scope `scope` names (shared with rate limits: `modelgate_shared::scope`).
fn one_scope(scope: &Scope) -> Result<(ScopeKind, &str), ScopeChoice> {
    one_named(&[
        (ScopeKind::Key, scope.key_id.as_deref()),
        (ScopeKind::Team, scope.team_id.as_deref()),
        (ScopeKind::User, scope.user_id.as_deref()),
        (ScopeKind::Environment, scope.environment.as_deref()),
    ])
}

pub(crate) fn scope_of(m: &budget::Model) -> Scope {
    let id = Some(m.scope_id.clone());
    match m.scope_kind.as_str() {
        "key" => Scope {
            key_id: id,
            ..Scope::default()
        },
        "team" => Scope {
            team_id: id,
            ..Scope::default()
        },
        "user" => Scope {
            user_id: id,
            ..Scope::default()
        },
        _ => Scope {
            environment: id,
            ..Scope::default()
        },
    }
}

pub async fn create(
    s: &Services,
    actor: &Actor,
    input: CreateBudget,
) -> Result<Budget, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let (kind, scope_id) = one_scope(&input.scope).map_err(|_| {
        ServiceError::invalid(
            "scope",
            "name exactly one of key_id, team_id, user_id, environment",
        )
    })?;
    if kind == ScopeKind::Environment
        && scope_id
            .parse::<modelgate_shared::snapshot::Environment>()
            .is_err()
    {
        return Err(ServiceError::invalid(
            "scope.environment",
            "unknown environment",
        ));
    }
    if input.amount_micros < 0 {
        return Err(ServiceError::invalid(
            "amount_micros",
            "must not be negative",
        ));
    }
    let period: Period = input
        .period
        .parse()
        .map_err(|_| ServiceError::invalid("period", "one of day, week, month, total"))?;
    let enforcement: Enforcement = input
        .enforcement
        .parse()
        .map_err(|_| ServiceError::invalid("enforcement", "one of hard, soft"))?;
    let when = input.when_unreachable.as_deref().unwrap_or("fail_closed");
    if !matches!(when, "fail_closed" | "fail_open") {
        return Err(ServiceError::invalid(
            "when_unreachable",
            "one of fail_closed, fail_open",
        ));
    }
    if input.fail_open_allowance_micros < 0 {
        return Err(ServiceError::invalid(
            "fail_open_allowance_micros",
            "must not be negative",
        ));
    }
    let webhook = match input.alert_webhook_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(url) => Some(webhook_url(url)?),
    };
    let row = budget::ActiveModel {
        id: Set(modelgate_shared::new_id().to_string()),
        scope_kind: Set(kind.as_str().to_owned()),
        scope_id: Set(scope_id.to_owned()),
        amount_micros: Set(input.amount_micros),
        period: Set(period.as_str().to_owned()),
        enforcement: Set(enforcement.as_str().to_owned()),
        when_unreachable: Set(when.to_owned()),
        fail_open_allowance_micros: Set(input.fail_open_allowance_micros),
        alert_webhook_url: Set(webhook),
        created_at: Set(Utc::now()),
        kind: Set(SPEND.to_owned()),
        opened_seq: Set(None),
    };
    let txn = s.db.begin().await?;
    let model = budget::Entity::insert(row)
        .exec_with_returning(&txn)
        .await?;
    // A new budget has spent nothing and holds no allocations yet.
    let start = period_start(s.clock.now(), period);
    let view = shape(model, start, 0, Vec::new());
    audit::record(
        &txn,
        actor,
        Change {
            action: "budget.create",
            resource_type: "budget",
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

/// `GET /budgets` filters: at most one scope (none: every budget the actor may see).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListBudgets {
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub environment: Option<String>,
    pub after: Option<String>,
    pub limit: Option<u64>,
}

pub async fn list(
    s: &Services,
    actor: &Actor,
    q: ListBudgets,
) -> Result<super::Page<Budget>, ServiceError> {
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
    actor.require(Action::ReadConfig)?;
    let limit = super::PageParams {
        after: None,
        limit: q.limit,
    }
    .limit()?;
    // Prepaid balances are budget rows too, but read and changed as balances.
    let mut find = budget::Entity::find()
        .filter(budget::Column::Kind.eq(SPEND))
        .order_by_asc(budget::Column::Id);
    let filter = Scope {
        key_id: q.key_id,
        team_id: q.team_id,
        user_id: q.user_id,
        environment: q.environment,
    };
    match one_scope(&filter) {
        Err(ScopeChoice::Several) => {
            return Err(ServiceError::invalid(
                "scope",
                "filter by at most one of key_id, team_id, user_id, environment",
            ))
        }
        Ok((kind, id)) => {
            find = find
                .filter(budget::Column::ScopeKind.eq(kind.as_str()))
                .filter(budget::Column::ScopeId.eq(id));
        }
        Err(ScopeChoice::None) => {}
    }
    if let Some(own) = actor.scope() {
        // A team-scoped actor sees its team's budgets and its team's keys' budgets.
        find = find.filter(scopes::visible_to_team(
            budget::Column::ScopeKind,
            budget::Column::ScopeId,
            own,
        ));
    }
    if let Some(after) = &q.after {
        find = find.filter(budget::Column::Id.gt(after.as_str()));
    }
    let mut rows = find.limit(limit + 1).all(&s.db).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let now = s.clock.now();
    let mut data = Vec::with_capacity(rows.len());
    for m in rows {
        data.push(view(s, m, now).await?);
    }
    let next_cursor = if more {
        data.last().map(|b| b.id.clone())
    } else {
        None
    };
    Ok(super::Page { data, next_cursor })
}

/// `PATCH /budgets/{id}`: absent fields keep their value; `alert_webhook_url: ""` removes it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBudget {
    #[serde(default)]
    pub amount_micros: Option<i64>,
    /// hard | soft
    #[serde(default)]
    pub enforcement: Option<String>,
    /// fail_closed | fail_open
    #[serde(default)]
    pub when_unreachable: Option<String>,
    #[serde(default)]
    pub fail_open_allowance_micros: Option<i64>,
    #[serde(default)]
    pub alert_webhook_url: Option<String>,
}

async fn find_for(s: &Services, actor: &Actor, id: &str) -> Result<budget::Model, ServiceError> {
    let model = budget::Entity::find_by_id(id)
        .one(&s.db)
        .await?
        .filter(|m| m.kind == SPEND)
        .ok_or_else(|| ServiceError::NotFound(format!("budget `{id}`")))?;
    let owner = scopes::owner_of::<ScopeKind>(&model.scope_kind, &model.scope_id);
    scopes::require_visible(s, actor, owner, &format!("budget `{id}`")).await?;
    Ok(model)
}

/// Changes a budget; data planes see it in the next snapshot.
///
/// Lowering the amount below what is already granted is safe by construction: the allocator
/// grants only from `amount − spent − Σ claims`, which is then ≤ 0, so no holder gets more;
/// grants already made are spent only until their lease ends (≤ [`LEASE_TTL`], not renewed),
/// and a data plane also never spends past the snapshot's amount from its own grant. The
/// period's spend can pass the new amount by at most what was granted and unspent when the
/// change arrived — never by more than the old amount allowed.
pub async fn update(
    s: &Services,
    actor: &Actor,
    id: &str,
    input: UpdateBudget,
) -> Result<Budget, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let before_model = find_for(s, actor, id).await?;
    let mut active: budget::ActiveModel = before_model.clone().into();
    if let Some(a) = input.amount_micros {
        if a < 0 {
            return Err(ServiceError::invalid(
                "amount_micros",
                "must not be negative",
            ));
        }
        active.amount_micros = Set(a);
    }
    if let Some(e) = &input.enforcement {
        let e: Enforcement = e
            .parse()
            .map_err(|_| ServiceError::invalid("enforcement", "one of hard, soft"))?;
        active.enforcement = Set(e.as_str().to_owned());
    }
    if let Some(w) = &input.when_unreachable {
        if !matches!(w.as_str(), "fail_closed" | "fail_open") {
            return Err(ServiceError::invalid(
                "when_unreachable",
                "one of fail_closed, fail_open",
            ));
        }
        active.when_unreachable = Set(w.clone());
    }
    if let Some(a) = input.fail_open_allowance_micros {
        if a < 0 {
            return Err(ServiceError::invalid(
                "fail_open_allowance_micros",
                "must not be negative",
            ));
        }
        active.fail_open_allowance_micros = Set(a);
    }
    if let Some(url) = &input.alert_webhook_url {
        let url = url.trim();
        active.alert_webhook_url = Set(if url.is_empty() {
            None
        } else {
            Some(webhook_url(url)?)
        });
    }
    let now = s.clock.now();
    let before = view(s, before_model, now).await?;
    let txn = s.db.begin().await?;
    let after_model = budget::Entity::update(active).exec(&txn).await?;
    let after = shape(
        after_model,
        before.period_start,
        before.spent_micros,
        before.allocations.clone(),
    );
    audit::record(
        &txn,
        actor,
        Change {
            action: "budget.update",
            resource_type: "budget",
            resource_id: id,
            team_id: after.scope.team_id.as_deref(),
            before: audit::view(&before),
            after: audit::view(&after),
        },
    )
    .await?;
    txn.commit().await?;
    s.publisher.rebuild(s).await?;
    Ok(after)
}

/// Deletes a budget, its period rows, persisted grants and undelivered alerts; data planes
/// stop enforcing it with the next snapshot.
pub async fn delete(s: &Services, actor: &Actor, id: &str) -> Result<(), ServiceError> {
    use sea_orm::{ColumnTrait, QueryFilter};
    actor.require(Action::ManageOrg)?;
    let model = find_for(s, actor, id).await?;
    let before = view(s, model, s.clock.now()).await?;
    let txn = s.db.begin().await?;
    budget_period::Entity::delete_many()
        .filter(budget_period::Column::BudgetId.eq(id))
        .exec(&txn)
        .await?;
    crate::store::budget_grant::Entity::delete_many()
        .filter(crate::store::budget_grant::Column::BudgetId.eq(id))
        .exec(&txn)
        .await?;
    crate::store::budget_alert::Entity::delete_many()
        .filter(crate::store::budget_alert::Column::BudgetId.eq(id))
        .filter(crate::store::budget_alert::Column::DeliveredAtMs.is_null())
        .exec(&txn)
        .await?;
    budget::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(
        &txn,
        actor,
        Change {
            action: "budget.delete",
            resource_type: "budget",
            resource_id: id,
            team_id: before.scope.team_id.as_deref(),
            before: audit::view(&before),
            after: None,
        },
    )
    .await?;
    txn.commit().await?;
    s.allocator.forget(id);
    s.publisher.rebuild(s).await?;
    Ok(())
}

/// The current view (spent, reserved, remaining) of each budget id, for explain.
pub async fn views(s: &Services, ids: &[&str]) -> Result<Vec<Budget>, ServiceError> {
    let now = s.clock.now();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(m) = budget::Entity::find_by_id(*id).one(&s.db).await? {
            out.push(view(s, m, now).await?);
        }
    }
    Ok(out)
}

pub async fn get(s: &Services, actor: &Actor, id: &str) -> Result<Budget, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let model = find_for(s, actor, id).await?;
    view(s, model, s.clock.now()).await
}

pub(crate) async fn spent_in(s: &Services, id: &str, start: i64) -> Result<i64, ServiceError> {
    Ok(budget_period::Entity::find_by_id((id.to_owned(), start))
        .one(&s.db)
        .await?
        .map_or(0, |p| p.spent_micros))
}

pub(crate) async fn view(
    s: &Services,
    m: budget::Model,
    now: DateTime<Utc>,
) -> Result<Budget, ServiceError> {
    let period: Period = m.period.parse().unwrap_or(Period::Total);
    let start = period_start(now, period);
    let spent = spent_in(s, &m.id, start).await?;
    let allocations = allocator::allocations(s, &m.id, start).await?;
    Ok(shape(m, start, spent, allocations))
}

fn shape(m: budget::Model, start: i64, spent: i64, allocations: Vec<Allocation>) -> Budget {
    let reserved: i64 = allocations
        .iter()
        .map(|a| (a.granted_micros - a.consumed_micros).max(0))
        .sum();
    Budget {
        scope: scope_of(&m),
        remaining_micros: (m.amount_micros - spent - reserved).max(0),
        id: m.id,
        amount_micros: m.amount_micros,
        period: m.period,
        enforcement: m.enforcement,
        when_unreachable: m.when_unreachable,
        fail_open_allowance_micros: m.fail_open_allowance_micros,
        alert_webhook_url: m.alert_webhook_url,
        created_at: m.created_at,
        period_start: start,
        spent_micros: spent,
        reserved_micros: reserved,
        allocations,
    }
}
