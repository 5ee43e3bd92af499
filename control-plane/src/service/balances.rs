//! Prepaid balances per team.
//!
//! A team's balance is a budget row of kind `balance` (id `balance-{team}`, team scope, period
//! `total`): its amount is the sum of the team's credits — top-ups and signed adjustments, each a
//! `balance_entries` row with its actor and reason, in the transaction that moves the amount —
//! and its spend is the usage ingest deducts (the budget-period upsert of `usage::ingest`, in
//! the transaction that inserts the events, so a replayed batch deducts nothing). In `refuse`
//! mode the row is a hard, fail-closed budget: data planes reserve each request's worst case
//! from the slices the allocator leases them, exactly as for a hard budget, so the fleet never
//! spends past what was credited (overspend 0), and a request that does not fit is refused with
//! 402 `insufficient_balance`. In `alert` mode it is a soft budget: nothing is refused, and its
//! `alert_webhook_url` is told at 50, 80 and 100 % of the credits spent (`budget_alerts`).
//!
//! balance = credited − deducted. A top-up re-arms the alert thresholds the new credits uncross.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::audit::{self, Change};
use super::authz::{Action, Actor};
use super::{budgets, ServiceError, Services};
use crate::store::{balance_entry, budget, budget_period, team};

/// `budgets.kind` of a balance row.
pub(crate) const BALANCE: &str = "balance";
/// History entries returned with a balance, newest first.
const HISTORY: u64 = 200;

/// The budget row id of a team's balance.
pub(crate) fn row_id(team_id: &str) -> String {
    format!("balance-{team_id}")
}

/// What a team at zero gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refused before going upstream (402 `insufficient_balance`), overspend 0 across the fleet.
    Refuse,
    /// Served; the balance goes negative and the webhook is alerted.
    Alert,
}

impl std::str::FromStr for Mode {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "refuse" => Ok(Mode::Refuse),
            "alert" => Ok(Mode::Alert),
            _ => Err(()),
        }
    }
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Refuse => "refuse",
            Mode::Alert => "alert",
        }
    }

    fn enforcement(self) -> &'static str {
        match self {
            Mode::Refuse => "hard",
            Mode::Alert => "soft",
        }
    }

    fn of_row(m: &budget::Model) -> Mode {
        if m.enforcement == "hard" {
            Mode::Refuse
        } else {
            Mode::Alert
        }
    }
}

/// One credit: a top-up or an adjustment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub id: String,
    /// top_up | adjustment
    pub kind: String,
    /// Signed micro-USD added to the credits.
    pub amount_micros: i64,
    pub actor_type: String,
    pub actor_id: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Balance {
    pub team_id: String,
    /// refuse | alert
    pub mode: String,
    /// Every top-up and adjustment, summed.
    pub credited_micros: i64,
    /// Usage deducted at ingest since the balance was opened.
    pub deducted_micros: i64,
    /// credited − deducted (negative only in `alert` mode, or after a debit adjustment).
    pub balance_micros: i64,
    /// Leased to data planes and not yet reported spent (reservations in flight included).
    pub reserved_micros: i64,
    pub alert_webhook_url: Option<String>,
    pub opened_at: DateTime<Utc>,
    /// The latest credits, newest first (at most 200).
    pub history: Vec<Entry>,
}

/// `POST /teams/{id}/balance/adjustments`. The first one opens the team's balance.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjust {
    /// top_up (default: a positive amount) | adjustment (signed; a correction or a debit)
    #[serde(default)]
    pub kind: Option<String>,
    /// Micro-USD; a top-up is positive, an adjustment non-zero (zero only to change the mode
    /// or the webhook).
    pub amount_micros: i64,
    /// Why: kept with the entry and in the audit log.
    pub reason: String,
    /// refuse (default for a new balance) | alert
    #[serde(default)]
    pub mode: Option<String>,
    /// Where alerts go (`""` removes it).
    #[serde(default)]
    pub alert_webhook_url: Option<String>,
}

/// What explain shows of the balance check.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BalanceCheck {
    pub team_id: String,
    pub mode: String,
    pub credited_micros: i64,
    pub deducted_micros: i64,
    pub reserved_micros: i64,
    pub balance_micros: i64,
}

async fn find_row(s: &Services, team_id: &str) -> Result<Option<budget::Model>, ServiceError> {
    Ok(budget::Entity::find_by_id(row_id(team_id))
        .one(&s.db)
        .await?
        .filter(|m| m.kind == BALANCE))
}

/// `GET /teams/{id}/balance`: the team's billing role, owners and admins (their team's, or any
/// without a team scope).
pub async fn get(s: &Services, actor: &Actor, team_id: &str) -> Result<Balance, ServiceError> {
    actor.require(Action::ReadBilling)?;
    actor.require_team(team_id, "team")?;
    let m = find_row(s, team_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("prepaid balance of team `{team_id}`")))?;
    let history = balance_entry::Entity::find()
        .filter(balance_entry::Column::TeamId.eq(team_id))
        .order_by_desc(balance_entry::Column::CreatedAt)
        .order_by_desc(balance_entry::Column::Id)
        .limit(HISTORY)
        .all(&s.db)
        .await?
        .into_iter()
        .map(entry)
        .collect();
    shape(s, m, history).await
}

async fn shape(
    s: &Services,
    m: budget::Model,
    history: Vec<Entry>,
) -> Result<Balance, ServiceError> {
    let mode = Mode::of_row(&m);
    let (team_id, webhook, opened_at) = (
        m.scope_id.clone(),
        m.alert_webhook_url.clone(),
        m.created_at,
    );
    let v = budgets::view(s, m, s.clock.now()).await?;
    Ok(Balance {
        team_id,
        mode: mode.as_str().to_owned(),
        credited_micros: v.amount_micros,
        deducted_micros: v.spent_micros,
        balance_micros: v.amount_micros - v.spent_micros,
        reserved_micros: v.reserved_micros,
        alert_webhook_url: webhook,
        opened_at,
        history,
    })
}

fn entry(r: balance_entry::Model) -> Entry {
    Entry {
        id: r.id,
        kind: r.kind,
        amount_micros: r.amount_micros,
        actor_type: r.actor_type,
        actor_id: r.actor_id,
        reason: r.reason,
        created_at: r.created_at,
    }
}

/// A top-up or adjustment: one ledger entry, the credits moved by it, and an audit row, in one
/// transaction; then a snapshot, so data planes see the new amount. Owners, admins and billing
/// without a team scope.
pub async fn adjust(
    s: &Services,
    actor: &Actor,
    team_id: &str,
    input: Adjust,
) -> Result<Balance, ServiceError> {
    actor.require(Action::ManageBilling)?;
    let kind = match input.kind.as_deref() {
        None | Some("top_up") => "top_up",
        Some("adjustment") => "adjustment",
        Some(_) => return Err(ServiceError::invalid("kind", "one of top_up, adjustment")),
    };
    let mode = input
        .mode
        .as_deref()
        .map(|m| {
            m.parse::<Mode>()
                .map_err(|_| ServiceError::invalid("mode", "one of refuse, alert"))
        })
        .transpose()?;
    let webhook = match input.alert_webhook_url.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            Some(Some(url.to_owned()))
        }
        Some(_) => {
            return Err(ServiceError::invalid(
                "alert_webhook_url",
                "must be an http:// or https:// URL",
            ))
        }
    };
    let changes_settings = mode.is_some() || webhook.is_some();
    match kind {
        "top_up" if input.amount_micros <= 0 => {
            return Err(ServiceError::invalid(
                "amount_micros",
                "a top-up must be positive (use kind adjustment to debit)",
            ))
        }
        _ if input.amount_micros == 0 && !changes_settings => {
            return Err(ServiceError::invalid(
                "amount_micros",
                "must not be zero (unless the request changes the mode or the webhook)",
            ))
        }
        _ => {}
    }
    if input.amount_micros.unsigned_abs() > MAX_CREDIT {
        return Err(ServiceError::invalid(
            "amount_micros",
            "at most 10^15 micro-USD ($1,000,000,000) at once",
        ));
    }
    let reason = input.reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ServiceError::invalid(
            "reason",
            "must say why, in 1 to 500 bytes",
        ));
    }
    team::Entity::find_by_id(team_id)
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("team `{team_id}`")))?;
    let id = row_id(team_id);
    let now = s.clock.now();
    let before = match find_row(s, team_id).await? {
        Some(m) => Some(shape(s, m, Vec::new()).await?),
        None => None,
    };
    // Ingest deducts from the row once it is committed: the events stored after this sequence.
    let opened_seq = crate::service::usage::sequence::committed_through(&s.db).await?;
    let txn = s.db.begin().await?;
    // Opens the balance (refuse mode unless told otherwise) if it is not open yet; concurrent
    // first adjustments both land, the row is made once.
    let open_mode = mode.unwrap_or(Mode::Refuse);
    budget::Entity::insert(budget::ActiveModel {
        id: Set(id.clone()),
        scope_kind: Set("team".into()),
        scope_id: Set(team_id.to_owned()),
        amount_micros: Set(0),
        period: Set("total".into()),
        enforcement: Set(open_mode.enforcement().into()),
        when_unreachable: Set("fail_closed".into()),
        fail_open_allowance_micros: Set(0),
        alert_webhook_url: Set(webhook.clone().flatten()),
        created_at: Set(now),
        kind: Set(BALANCE.into()),
        opened_seq: Set(Some(opened_seq)),
    })
    .on_conflict(
        OnConflict::column(budget::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    // An increment, never a read-modify-write: concurrent adjustments all count.
    let mut update = budget::Entity::update_many()
        .col_expr(
            budget::Column::AmountMicros,
            Expr::col(budget::Column::AmountMicros).add(input.amount_micros),
        )
        .filter(budget::Column::Id.eq(id.as_str()));
    if let Some(m) = mode {
        update = update.col_expr(budget::Column::Enforcement, Expr::value(m.enforcement()));
    }
    if let Some(url) = &webhook {
        update = update.col_expr(budget::Column::AlertWebhookUrl, Expr::value(url.clone()));
    }
    update.exec(&txn).await?;
    let row = budget::Entity::find_by_id(id.as_str())
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("prepaid balance of team `{team_id}`")))?;
    if input.amount_micros != 0 {
        balance_entry::Entity::insert(balance_entry::ActiveModel {
            id: Set(modelgate_shared::new_id().to_string()),
            team_id: Set(team_id.to_owned()),
            kind: Set(kind.to_owned()),
            amount_micros: Set(input.amount_micros),
            actor_type: Set(actor.kind.to_owned()),
            actor_id: Set(actor.id.clone()),
            reason: Set(reason.to_owned()),
            created_at: Set(now),
        })
        .exec_without_returning(&txn)
        .await?;
    }
    // New credits re-arm the alert thresholds they uncross (a debit arms nothing new).
    if let Some(p) = budget_period::Entity::find_by_id((id.clone(), 0))
        .one(&txn)
        .await?
    {
        let still = super::budget_alerts::crossed(p.spent_micros, row.amount_micros);
        if p.alerts_fired & !still != 0 {
            budget_period::Entity::update_many()
                .col_expr(
                    budget_period::Column::AlertsFired,
                    Expr::value(p.alerts_fired & still),
                )
                .filter(budget_period::Column::BudgetId.eq(id.as_str()))
                .filter(budget_period::Column::PeriodStart.eq(0))
                .exec(&txn)
                .await?;
        }
    }
    audit::record(
        &txn,
        actor,
        Change {
            action: if kind == "top_up" {
                "balance.top_up"
            } else {
                "balance.adjust"
            },
            resource_type: "balance",
            resource_id: team_id,
            team_id: Some(team_id),
            before: before.as_ref().and_then(audit::view),
            after: Some(serde_json::json!({
                "kind": kind,
                "amount_micros": input.amount_micros,
                "reason": reason,
                "credited_micros": row.amount_micros,
                "mode": Mode::of_row(&row).as_str(),
                "alert_webhook_url": row.alert_webhook_url,
            })),
        },
    )
    .await?;
    txn.commit().await?;
    s.publisher.rebuild(s).await?;
    get(s, &Actor::system(), team_id).await
}

/// The most one adjustment may move (keeps every sum far from overflow).
const MAX_CREDIT: u64 = 1_000_000_000_000_000;

/// What explain shows for the balance budget row `id` (none when it is gone).
pub async fn check(s: &Services, id: &str) -> Result<Option<BalanceCheck>, ServiceError> {
    let Some(m) = budget::Entity::find_by_id(id)
        .one(&s.db)
        .await?
        .filter(|m| m.kind == BALANCE)
    else {
        return Ok(None);
    };
    let b = shape(s, m, Vec::new()).await?;
    Ok(Some(BalanceCheck {
        team_id: b.team_id,
        mode: b.mode,
        credited_micros: b.credited_micros,
        deducted_micros: b.deducted_micros,
        reserved_micros: b.reserved_micros,
        balance_micros: b.balance_micros,
    }))
}

/// Every credit of `team_id` made in `[from, to)`, oldest first (statements).
pub(crate) async fn entries_between(
    s: &Services,
    team_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Entry>, ServiceError> {
    Ok(balance_entry::Entity::find()
        .filter(balance_entry::Column::TeamId.eq(team_id))
        .filter(balance_entry::Column::CreatedAt.gte(from))
        .filter(balance_entry::Column::CreatedAt.lt(to))
        .order_by_asc(balance_entry::Column::CreatedAt)
        .order_by_asc(balance_entry::Column::Id)
        .all(&s.db)
        .await?
        .into_iter()
        .map(entry)
        .collect())
}
