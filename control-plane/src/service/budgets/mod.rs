//! Budgets: definitions, their spend per calendar period, and the allocator that
//! leases budget to data planes.
//!
//! **The allocation invariant.** For a budget in one period the allocator keeps, per data-plane
//! incarnation, the cumulative amount granted and the amount it last reported consumed. A live
//! lease claims its whole grant; an expired one claims only what it reported. A grant is made
//! only from `amount − spent_before − Σ claims`, so `Σ claims ≤ amount`. A data plane admits a
//! request only by reserving its worst-case cost from its own grant, before its lease ends, so
//! what the fleet can spend on a hard budget never exceeds the amount (see ARCHITECTURE.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use modelgate_shared::quota::{period_start, Enforcement, Period, ScopeKind};
use sea_orm::{ActiveValue::Set, EntityTrait, TransactionTrait};
use serde::{Deserialize, Serialize};

use super::audit::{self, Change};
use super::authz::{Action, Actor};
use super::{ServiceError, Services};
use crate::store::{budget, budget_period};

/// How long a grant stays valid without a renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

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

#[derive(Debug, Serialize, utoipa::ToSchema)]
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

fn scope_of(m: &budget::Model) -> Scope {
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
    let scopes = [
        (ScopeKind::Key, &input.scope.key_id),
        (ScopeKind::Team, &input.scope.team_id),
        (ScopeKind::User, &input.scope.user_id),
        (ScopeKind::Environment, &input.scope.environment),
    ];
    let mut named = scopes
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)));
    let (kind, scope_id) = match (named.next(), named.next()) {
        (Some(one), None) if !one.1.trim().is_empty() => one,
        _ => {
            return Err(ServiceError::invalid(
                "scope",
                "name exactly one of key_id, team_id, user_id, environment",
            ))
        }
    };
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
    let row = budget::ActiveModel {
        id: Set(modelgate_shared::new_id().to_string()),
        scope_kind: Set(kind.as_str().to_owned()),
        scope_id: Set(scope_id.clone()),
        amount_micros: Set(input.amount_micros),
        period: Set(period.as_str().to_owned()),
        enforcement: Set(enforcement.as_str().to_owned()),
        when_unreachable: Set(when.to_owned()),
        fail_open_allowance_micros: Set(input.fail_open_allowance_micros),
        alert_webhook_url: Set(input.alert_webhook_url),
        created_at: Set(Utc::now()),
    };
    let txn = s.db.begin().await?;
    let model = budget::Entity::insert(row)
        .exec_with_returning(&txn)
        .await?;
    // A new budget has spent nothing and holds no allocations yet.
    let start = period_start(Utc::now(), period);
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

/// The current view (spent, reserved, remaining) of each budget id, for explain.
pub async fn views(s: &Services, ids: &[&str]) -> Result<Vec<Budget>, ServiceError> {
    let now = Utc::now();
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
    let model = budget::Entity::find_by_id(id)
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("budget `{id}`")))?;
    if model.scope_kind == "team" {
        actor.require_team(&model.scope_id, &format!("budget `{id}`"))?;
    }
    view(s, model, Utc::now()).await
}

async fn spent_in(s: &Services, id: &str, start: i64) -> Result<i64, ServiceError> {
    Ok(budget_period::Entity::find_by_id((id.to_owned(), start))
        .one(&s.db)
        .await?
        .map_or(0, |p| p.spent_micros))
}

async fn view(s: &Services, m: budget::Model, now: DateTime<Utc>) -> Result<Budget, ServiceError> {
    let period: Period = m.period.parse().unwrap_or(Period::Total);
    let start = period_start(now, period);
    let spent = spent_in(s, &m.id, start).await?;
    let allocations = s.allocator.allocations(&m.id, start);
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

/// A data plane's request for more budget (see the proto `AllocateRequest`).
#[derive(Debug, Clone)]
pub struct AllocateInput {
    pub node: String,
    pub budget_id: String,
    pub period_start: i64,
    pub consumed_micros: i64,
    pub want_micros: i64,
    pub need_micros: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub granted_total_micros: i64,
    pub period_start: i64,
    pub lease_ttl: Duration,
    pub remaining_micros: i64,
}

struct NodeLease {
    granted_total: i64,
    consumed: i64,
    expires: Instant,
}

struct Ledger {
    /// Spend already recorded for the period when this control plane first saw it.
    spent_before: i64,
    nodes: HashMap<String, NodeLease>,
}

/// The in-memory allocation ledger: one per budget per period.
#[derive(Default)]
pub struct Allocator {
    ledgers: Mutex<HashMap<(String, i64), Ledger>>,
}

impl Allocator {
    pub fn allocations(&self, budget_id: &str, start: i64) -> Vec<Allocation> {
        let now = Instant::now();
        let Ok(ledgers) = self.ledgers.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Allocation> = ledgers
            .get(&(budget_id.to_owned(), start))
            .map(|l| {
                l.nodes
                    .iter()
                    .map(|(node, n)| Allocation {
                        node: node.clone(),
                        granted_micros: n.granted_total,
                        consumed_micros: n.consumed,
                        lease_live: n.expires > now,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    /// Grants from what is left, sized by the node's share of this period's consumption.
    fn grant(
        &self,
        amount: i64,
        spent_before: i64,
        input: &AllocateInput,
        start: i64,
        now: Instant,
    ) -> Grant {
        let mut ledgers = match self.ledgers.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let ledger = ledgers
            .entry((input.budget_id.clone(), start))
            .or_insert_with(|| Ledger {
                spent_before,
                nodes: HashMap::new(),
            });
        let me = ledger.nodes.entry(input.node.clone()).or_insert(NodeLease {
            granted_total: 0,
            consumed: 0,
            expires: now,
        });
        if input.period_start == start {
            // Reported consumption never exceeds what was granted (a lower report is a
            // reservation given back).
            me.consumed = input.consumed_micros.clamp(0, me.granted_total);
        }
        me.expires = now + LEASE_TTL;
        let mut claims = 0i64;
        let mut live = 0i64;
        let mut total_consumed = 0i64;
        for n in ledger.nodes.values() {
            if n.expires > now {
                claims += n.granted_total;
                live += 1;
            } else {
                claims += n.consumed;
            }
            total_consumed += n.consumed;
        }
        let available = (amount - ledger.spent_before - claims).max(0);
        let me = ledger.nodes.get_mut(&input.node);
        let mut granted_total = 0;
        let mut left = available;
        if let Some(me) = me {
            // Size: the node's recent share of the period's consumption (an equal share
            // while nobody has consumed), never less than it needs now, never more than left.
            let share = i128::from(available) * i128::from(me.consumed + 1)
                / i128::from(total_consumed + live.max(1));
            let share = i64::try_from(share).unwrap_or(available);
            let size = share
                .min(input.want_micros.max(0))
                .max(input.need_micros.max(0));
            let extra = if size <= available {
                size
            } else if input.need_micros <= available {
                available
            } else {
                0
            };
            me.granted_total += extra;
            left -= extra;
            granted_total = me.granted_total;
        }
        Grant {
            granted_total_micros: granted_total,
            period_start: start,
            lease_ttl: LEASE_TTL,
            remaining_micros: left,
        }
    }
}

/// `QuotaService.Allocate`: a data plane reports its consumption and asks for more.
pub async fn allocate(s: &Services, input: AllocateInput) -> Result<Grant, ServiceError> {
    let m = budget::Entity::find_by_id(input.budget_id.as_str())
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("budget `{}`", input.budget_id)))?;
    let period: Period = m.period.parse().unwrap_or(Period::Total);
    let start = period_start(Utc::now(), period);
    let spent_before = spent_in(s, &m.id, start).await?;
    Ok(s.allocator
        .grant(m.amount_micros, spent_before, &input, start, Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(node: &str, consumed: i64, want: i64, need: i64) -> AllocateInput {
        AllocateInput {
            node: node.into(),
            budget_id: "b".into(),
            period_start: 0,
            consumed_micros: consumed,
            want_micros: want,
            need_micros: need,
        }
    }

    #[test]
    fn grants_never_sum_past_the_amount() {
        let a = Allocator::default();
        let now = Instant::now();
        let mut total = 0;
        for round in 0..50 {
            for node in ["a", "b", "c"] {
                let g = a.grant(1_000_000, 0, &ask(node, 0, 300_000, 10_000), 0, now);
                let _ = (round, g);
            }
        }
        for node in a.allocations("b", 0) {
            total += node.granted_micros;
        }
        assert!(total <= 1_000_000, "granted {total}");
        assert!(total >= 990_000, "left unused {}", 1_000_000 - total);
    }

    #[test]
    fn an_expired_lease_gives_back_what_it_did_not_report_spent() {
        let a = Allocator::default();
        let now = Instant::now();
        let g = a.grant(1_000, 0, &ask("a", 0, 1_000, 1_000), 0, now);
        assert_eq!(g.granted_total_micros, 1_000);
        // While a's lease lives, b gets nothing.
        assert_eq!(
            a.grant(1_000, 0, &ask("b", 0, 500, 100), 0, now)
                .granted_total_micros,
            0
        );
        // a reported 400 consumed; once its lease ends, the other 600 is free again.
        let _ = a.grant(1_000, 0, &ask("a", 400, 0, 0), 0, now);
        let later = now + LEASE_TTL + Duration::from_secs(1);
        let g = a.grant(1_000, 0, &ask("b", 0, 1_000, 600), 0, later);
        assert_eq!(g.granted_total_micros, 600);
        assert_eq!(g.remaining_micros, 0);
    }
}
