//! The allocator: leases slices of each budget to data planes (`QuotaService.Allocate`).
//!
//! **The allocation invariant.** For a budget in one period the allocator keeps, per data-plane
//! holder (node id + process id), the cumulative amount granted and the amount it last reported
//! consumed. A live lease claims its whole grant; an expired one claims only what it reported.
//! A grant is made only from `amount − spent_before − Σ claims`, so `Σ claims ≤ amount`.
//!
//! **One ledger in the database.** Each allocation call (per refill, never per request) is one
//! transaction: it locks the period's baseline row in `budget_grants` (the row with the empty
//! holder, made by the period's first grant; `SELECT … FOR UPDATE` on Postgres, SQLite having
//! one writer), reads every holder's row, grants from what they leave, writes the caller's row
//! and commits before the data plane hears of the grant. So the ledger a grant is computed from
//! is always the whole fleet's, whichever control-plane replica answers: replicas over one
//! Postgres, and a restarted control plane, never grant the same money twice. On Postgres lease
//! ends are timed by the database's clock, which every replica shares. The row with the empty
//! holder keeps `spent_before`, the spend recorded before the first grant of the period.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use modelgate_shared::quota::{period_start, Period};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, Statement, TransactionTrait,
};

use super::{spent_in, Allocation};
use crate::service::{ServiceError, Services};
use crate::store::{budget, budget_grant};

/// How long a grant stays valid without a renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// The holder name of a ledger's baseline row (`granted_micros` = `spent_before`).
const BASELINE: &str = "";

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

#[derive(Clone, Copy)]
struct NodeLease {
    granted_total: i64,
    consumed: i64,
    /// Unix milliseconds (system time) the lease ends.
    expires_ms: i64,
}

struct Ledger {
    /// Spend already recorded for the period when the first grant of it was made.
    spent_before: i64,
    nodes: HashMap<String, NodeLease>,
}

/// Computes grants: the ledger of the budget period being allocated, read from `budget_grants`
/// inside the allocation's transaction.
#[derive(Default)]
pub struct Allocator {
    ledgers: Mutex<HashMap<(String, i64), Ledger>>,
    /// One allocation at a time in this process (its ledger above is the one just read).
    serial: tokio::sync::Mutex<()>,
}

fn ttl_ms() -> i64 {
    i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX)
}

impl Allocator {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i64), Ledger>> {
        match self.ledgers.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        }
    }

    /// Installs the ledger just read from the store, replacing what this process knew (other
    /// replicas may have granted since).
    fn install(&self, budget_id: &str, start: i64, ledger: Ledger) {
        let mut ledgers = self.lock();
        ledgers.retain(|(id, _), _| id != budget_id);
        ledgers.insert((budget_id.to_owned(), start), ledger);
    }

    /// Drops every ledger of a deleted budget.
    pub fn forget(&self, budget_id: &str) {
        self.lock().retain(|(id, _), _| id != budget_id);
    }

    /// Grants from what is left, sized by the node's share of this period's consumption.
    /// Returns the grant and the holder's new ledger entry (to persist).
    fn grant(
        &self,
        amount: i64,
        spent_before: i64,
        input: &AllocateInput,
        start: i64,
        now_ms: i64,
    ) -> (Grant, NodeLease) {
        let mut ledgers = self.lock();
        let ledger = ledgers
            .entry((input.budget_id.clone(), start))
            .or_insert_with(|| Ledger {
                spent_before,
                nodes: HashMap::new(),
            });
        let me = ledger.nodes.entry(input.node.clone()).or_insert(NodeLease {
            granted_total: 0,
            consumed: 0,
            expires_ms: now_ms,
        });
        if input.period_start == start {
            // Reported consumption never exceeds what was granted (a lower report is a
            // reservation given back).
            me.consumed = input.consumed_micros.clamp(0, me.granted_total);
        }
        me.expires_ms = now_ms + ttl_ms();
        let mut claims = 0i64;
        let mut live = 0i64;
        let mut total_consumed = 0i64;
        for n in ledger.nodes.values() {
            if n.expires_ms > now_ms {
                claims += n.granted_total;
                live += 1;
            } else {
                claims += n.consumed;
            }
            total_consumed += n.consumed;
        }
        let available = (amount - ledger.spent_before - claims).max(0);
        let mut left = available;
        let Some(me) = ledger.nodes.get_mut(&input.node) else {
            return (
                Grant {
                    granted_total_micros: 0,
                    period_start: start,
                    lease_ttl: LEASE_TTL,
                    remaining_micros: left,
                },
                NodeLease {
                    granted_total: 0,
                    consumed: 0,
                    expires_ms: now_ms,
                },
            );
        };
        // Size: the node's recent share of the period's consumption (an equal share while
        // nobody has consumed), never less than it needs now, never more than left.
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
        (
            Grant {
                granted_total_micros: me.granted_total,
                period_start: start,
                lease_ttl: LEASE_TTL,
                remaining_micros: left,
            },
            *me,
        )
    }
}

/// Reads a budget period's ledger back from `budget_grants`; `None` when nothing was granted.
async fn load(
    db: &impl ConnectionTrait,
    budget_id: &str,
    start: i64,
) -> Result<Option<Ledger>, ServiceError> {
    let rows = budget_grant::Entity::find()
        .filter(budget_grant::Column::BudgetId.eq(budget_id))
        .filter(budget_grant::Column::PeriodStart.eq(start))
        .all(db)
        .await?;
    let mut ledger = Ledger {
        spent_before: 0,
        nodes: HashMap::new(),
    };
    let mut baseline = false;
    for r in rows {
        if r.holder == BASELINE {
            ledger.spent_before = r.granted_micros;
            baseline = true;
        } else {
            ledger.nodes.insert(
                r.holder,
                NodeLease {
                    granted_total: r.granted_micros,
                    consumed: r.consumed_micros,
                    expires_ms: r.expires_at_ms,
                },
            );
        }
    }
    Ok(baseline.then_some(ledger))
}

async fn save(
    db: &impl ConnectionTrait,
    budget_id: &str,
    start: i64,
    holder: &str,
    lease: NodeLease,
) -> Result<(), ServiceError> {
    use budget_grant::Column as G;
    budget_grant::Entity::insert(budget_grant::ActiveModel {
        budget_id: Set(budget_id.to_owned()),
        period_start: Set(start),
        holder: Set(holder.to_owned()),
        granted_micros: Set(lease.granted_total),
        consumed_micros: Set(lease.consumed),
        expires_at_ms: Set(lease.expires_ms),
    })
    .on_conflict(
        OnConflict::columns([G::BudgetId, G::PeriodStart, G::Holder])
            .update_columns([G::GrantedMicros, G::ConsumedMicros, G::ExpiresAtMs])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// `QuotaService.Allocate`: a data plane reports its consumption and asks for more.
pub async fn allocate(s: &Services, input: AllocateInput) -> Result<Grant, ServiceError> {
    let m = budget::Entity::find_by_id(input.budget_id.as_str())
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("budget `{}`", input.budget_id)))?;
    let period: Period = m.period.parse().unwrap_or(Period::Total);
    let start = period_start(s.clock.now(), period);
    let spent = spent_in(s, &m.id, start).await?;
    let _serial = s.allocator.serial.lock().await;
    let txn = s.db.begin().await?;
    // The period's first grant makes its baseline row (the spend recorded so far); every
    // allocation then locks it, so allocations of one budget period run one at a time across
    // every replica.
    use budget_grant::Column as G;
    budget_grant::Entity::insert(budget_grant::ActiveModel {
        budget_id: Set(m.id.clone()),
        period_start: Set(start),
        holder: Set(BASELINE.to_owned()),
        granted_micros: Set(spent),
        consumed_micros: Set(0),
        expires_at_ms: Set(0),
    })
    .on_conflict(
        OnConflict::columns([G::BudgetId, G::PeriodStart, G::Holder])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    if postgres {
        budget_grant::Entity::find()
            .filter(G::BudgetId.eq(m.id.as_str()))
            .filter(G::PeriodStart.eq(start))
            .filter(G::Holder.eq(BASELINE))
            .lock_exclusive()
            .one(&txn)
            .await?;
    }
    let ledger = load(&txn, &m.id, start).await?.ok_or_else(|| {
        ServiceError::Unavailable("the budget ledger's baseline is missing".into())
    })?;
    s.allocator.install(&m.id, start, ledger);
    let now_ms = if postgres {
        database_now_ms(&txn).await?
    } else {
        Utc::now().timestamp_millis()
    };
    let (grant, lease) = s
        .allocator
        .grant(m.amount_micros, spent, &input, start, now_ms);
    // Committed before the data plane hears of the grant: a grant it can spend is on disk.
    save(&txn, &m.id, start, &input.node, lease).await?;
    txn.commit().await?;
    Ok(grant)
}

/// The database's clock in Unix milliseconds: every replica times leases by the same clock.
async fn database_now_ms(db: &impl ConnectionTrait) -> Result<i64, ServiceError> {
    let row = db
        .query_one(Statement::from_string(
            DbBackend::Postgres,
            "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS now_ms",
        ))
        .await?
        .ok_or_else(|| ServiceError::Unavailable("the database did not tell its time".into()))?;
    Ok(row.try_get::<i64>("", "now_ms")?)
}

/// Every holder's allocation in a period, from the store (so any control plane, restarted or
/// not, shows the same).
pub async fn allocations(
    s: &Services,
    budget_id: &str,
    start: i64,
) -> Result<Vec<Allocation>, ServiceError> {
    let now_ms = Utc::now().timestamp_millis();
    let mut out: Vec<Allocation> = budget_grant::Entity::find()
        .filter(budget_grant::Column::BudgetId.eq(budget_id))
        .filter(budget_grant::Column::PeriodStart.eq(start))
        .filter(budget_grant::Column::Holder.ne(BASELINE))
        .all(&s.db)
        .await?
        .into_iter()
        .map(|r| Allocation {
            node: r.holder,
            granted_micros: r.granted_micros,
            consumed_micros: r.consumed_micros,
            lease_live: r.expires_at_ms > now_ms,
        })
        .collect();
    out.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(out)
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

    fn total_granted(a: &Allocator) -> i64 {
        a.lock()
            .values()
            .flat_map(|l| l.nodes.values())
            .map(|n| n.granted_total)
            .sum()
    }

    #[test]
    fn grants_never_sum_past_the_amount() {
        let a = Allocator::default();
        for _round in 0..50 {
            for node in ["a", "b", "c"] {
                let _ = a.grant(1_000_000, 0, &ask(node, 0, 300_000, 10_000), 0, 1_000);
            }
        }
        let total = total_granted(&a);
        assert!(total <= 1_000_000, "granted {total}");
        assert!(total >= 990_000, "left unused {}", 1_000_000 - total);
    }

    #[test]
    fn an_expired_lease_gives_back_what_it_did_not_report_spent() {
        let a = Allocator::default();
        let now = 1_000;
        let (g, _) = a.grant(1_000, 0, &ask("a", 0, 1_000, 1_000), 0, now);
        assert_eq!(g.granted_total_micros, 1_000);
        // While a's lease lives, b gets nothing.
        assert_eq!(
            a.grant(1_000, 0, &ask("b", 0, 500, 100), 0, now)
                .0
                .granted_total_micros,
            0
        );
        // a reported 400 consumed; once its lease ends, the other 600 is free again.
        let _ = a.grant(1_000, 0, &ask("a", 400, 0, 0), 0, now);
        let later = now + ttl_ms() + 1_000;
        let (g, _) = a.grant(1_000, 0, &ask("b", 0, 1_000, 600), 0, later);
        assert_eq!(g.granted_total_micros, 600);
        assert_eq!(g.remaining_micros, 0);
    }
}
