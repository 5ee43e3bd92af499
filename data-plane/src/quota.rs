//! Budget enforcement on the request path, without a round trip per request.
//!
//! The control plane leases each node a slice of every hard budget (`QuotaService.Allocate`).
//! Before a request is forwarded, its worst-case cost is reserved from the node's slice of every
//! hard budget whose scope matches the key (key, team, owner user, environment); the request is
//! refused with `budget_exceeded` when a slice cannot cover it and the control plane grants no
//! more. A team's prepaid balance in `refuse` mode is such a budget (kind `Balance`, its amount
//! what was credited) and refuses with `insufficient_balance`. After the response the reservation is settled to the actual cost (the `Recorder` does
//! it when it writes the usage event); a request dropped mid-way keeps its whole reservation.
//!
//! The hot path takes one short `std::sync::Mutex` per matching budget (a compare and two
//! additions under it); it calls the control plane only when a slice runs low (in the
//! background, ahead of running out) or is empty (inline, once per refill, single-flight).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use foldhash::HashMap;
use modelgate_proto::quota::v1::{quota_service_client::QuotaServiceClient, AllocateRequest};
use modelgate_shared::key_view::KeyView;
use modelgate_shared::quota::{period_start, Budget, BudgetKind, Enforcement, WhenUnreachable};
use tonic::transport::Channel;

/// A slice is asked for in chunks of this fraction of the budget (at least the request's need).
const CHUNK_DIVISOR: i64 = 10;
/// How long an allocation call may take before the control plane counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Budget state of this node, kept across snapshots (by budget id).
pub struct Quotas {
    /// This process's holder id at the control plane: node id plus a per-process suffix, so a
    /// restarted node never inherits (and re-spends) its predecessor's grant.
    holder: String,
    client: QuotaServiceClient<Channel>,
    states: RwLock<HashMap<String, Arc<BudgetState>>>,
}

struct BudgetState {
    local: Mutex<Local>,
    /// Single flight for allocation calls.
    refill: tokio::sync::Mutex<()>,
}

#[derive(Default, Clone, Copy)]
struct Local {
    period_start: i64,
    /// Cumulative grant in this period: the node never takes past it (except fail_open).
    granted_total: i64,
    /// Reserved or charged from the grant in this period.
    consumed: i64,
    lease_until: Option<Instant>,
    /// Taken past the grant while the control plane was unreachable (fail_open).
    open_used: i64,
    /// The control plane's last view of the budget's remaining amount.
    remaining: i64,
}

impl Local {
    fn roll(&mut self, start: i64) {
        if self.period_start != start {
            *self = Local {
                period_start: start,
                ..Local::default()
            };
        }
    }

    fn lease_live(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|t| t > now)
    }
}

/// Why a request may not go upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The reservation would cross a hard budget.
    Exceeded { budget_id: String },
    /// The reservation would cross the team's prepaid balance (a hard balance: `refuse`).
    InsufficientBalance { team_id: String },
}

pub use modelgate_shared::quota::any_hard;

/// Reserved amounts, settled to the actual cost when the request's usage event is written.
#[derive(Default)]
pub struct Reservation {
    held: Vec<Held>,
}

struct Held {
    state: Arc<BudgetState>,
    period_start: i64,
    reserved: i64,
}

impl Reservation {
    /// Replaces every reservation by the actual cost (which may be lower or, with a provider
    /// that reports more tokens than the bound, higher).
    pub fn settle(mut self, actual_micros: i64) {
        for h in self.held.drain(..) {
            let mut l = lock(&h.state.local);
            if l.period_start == h.period_start {
                l.consumed = l
                    .consumed
                    .saturating_add(actual_micros)
                    .saturating_sub(h.reserved)
                    .max(0);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

fn lock(m: &Mutex<Local>) -> std::sync::MutexGuard<'_, Local> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Whether `budget` applies to requests made with `key`.
pub fn applies<K: KeyView + ?Sized>(budget: &Budget, key: &K) -> bool {
    budget.applies_to(key)
}

impl Quotas {
    /// `channel`: the data plane's one channel to the control plane (see [`crate::channel`]).
    pub fn new(node_id: &str, channel: Channel) -> Arc<Self> {
        Arc::new(Quotas {
            holder: format!("{node_id}/{}", modelgate_shared::new_id()),
            client: QuotaServiceClient::new(channel),
            states: RwLock::default(),
        })
    }

    /// Gives this node a grant without asking the control plane (benchmarks and tests).
    #[doc(hidden)]
    pub fn prime(&self, budget_id: &str, period_start: i64, granted_micros: i64, lease: Duration) {
        let state = self.state(budget_id);
        let mut l = lock(&state.local);
        l.roll(period_start);
        l.granted_total = granted_micros;
        l.remaining = granted_micros;
        l.lease_until = Some(Instant::now() + lease);
    }

    fn state(&self, id: &str) -> Arc<BudgetState> {
        if let Ok(m) = self.states.read() {
            if let Some(s) = m.get(id) {
                return s.clone();
            }
        }
        let mut m = match self.states.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(id.to_owned())
            .or_insert_with(|| {
                Arc::new(BudgetState {
                    local: Mutex::default(),
                    refill: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// Reserves `cost` (micro-USD) from every hard budget in `budgets` that applies to `key`.
    /// A key with no hard budget reserves nothing.
    pub async fn reserve(
        self: &Arc<Self>,
        budgets: &[Budget],
        key: &(impl KeyView + ?Sized + Sync),
        cost: i64,
        now: DateTime<Utc>,
    ) -> Result<Reservation, Refusal> {
        let mut r = Reservation::default();
        for b in budgets
            .iter()
            .filter(|b| b.enforcement == Enforcement::Hard && applies(b, key))
        {
            let start = period_start(now, b.period);
            let state = self.state(&b.id);
            // More than the whole budget can never fit: refused without a lease call.
            let mut taken =
                cost <= b.amount_micros && self.take(&state, b, start, cost, Instant::now());
            if !taken && cost <= b.amount_micros {
                let reachable = self.refill(&state, b, start, cost).await;
                taken = self.take(&state, b, start, cost, Instant::now())
                    || (!reachable && take_open(&state, b, start, cost));
            }
            if !taken {
                r.settle(0);
                return Err(match b.kind {
                    BudgetKind::Spend => Refusal::Exceeded {
                        budget_id: b.id.clone(),
                    },
                    BudgetKind::Balance => Refusal::InsufficientBalance {
                        team_id: b.scope_id.clone(),
                    },
                });
            }
            r.held.push(Held {
                state,
                period_start: start,
                reserved: cost,
            });
        }
        Ok(r)
    }

    /// What the control plane last said is left of the key's tightest hard budget, less what
    /// this node holds reserved — for the `x-modelgate-budget-remaining` header.
    pub fn remaining<K: KeyView + ?Sized>(&self, budgets: &[Budget], key: &K) -> Option<i64> {
        let states = self.states.read().ok()?;
        budgets
            .iter()
            .filter(|b| b.enforcement == Enforcement::Hard && applies(b, key))
            .filter_map(|b| {
                let l = *lock(&states.get(&b.id)?.local);
                Some(
                    l.remaining
                        .saturating_add(l.granted_total)
                        .saturating_sub(l.consumed)
                        .max(0),
                )
            })
            .min()
    }

    /// Takes `cost` from the node's slice if the lease lives and the slice covers it; starts a
    /// background refill when the slice runs low.
    fn take(
        self: &Arc<Self>,
        state: &Arc<BudgetState>,
        b: &Budget,
        start: i64,
        cost: i64,
        now: Instant,
    ) -> bool {
        let (ok, low) = {
            let mut l = lock(&state.local);
            l.roll(start);
            // A budget lowered below what this node was granted stops at the new amount.
            let ceiling = l.granted_total.min(b.amount_micros);
            let ok = l.lease_live(now) && l.consumed.saturating_add(cost) <= ceiling;
            if ok {
                l.consumed = l.consumed.saturating_add(cost);
            }
            let low = l.granted_total.saturating_sub(l.consumed) < chunk(b, cost) / 2
                || l.lease_until
                    .is_some_and(|t| t < now + Duration::from_secs(10));
            (ok, low)
        };
        if ok && low && l_remaining_positive(state) {
            let me = self.clone();
            let (state, b) = (state.clone(), b.clone());
            tokio::spawn(async move {
                if let Ok(_g) = state.refill.try_lock() {
                    me.call(&state, &b, start, 0).await;
                }
            });
        }
        ok
    }

    /// Asks the control plane for more (single flight). Returns false when it is unreachable.
    async fn refill(&self, state: &BudgetState, b: &Budget, start: i64, need: i64) -> bool {
        let _g = state.refill.lock().await;
        {
            // Someone else's call may already have covered us.
            let l = lock(&state.local);
            if l.period_start == start
                && l.lease_live(Instant::now())
                && l.consumed.saturating_add(need) <= l.granted_total
            {
                return true;
            }
        }
        self.call(state, b, start, need).await
    }

    async fn call(&self, state: &BudgetState, b: &Budget, start: i64, need: i64) -> bool {
        let consumed = {
            let mut l = lock(&state.local);
            l.roll(start);
            l.consumed
        };
        let sent = Instant::now();
        let req = AllocateRequest {
            node_id: self.holder.clone(),
            budget_id: b.id.clone(),
            period_start: start,
            consumed_micros: consumed,
            want_micros: chunk(b, need),
            need_micros: need,
        };
        let mut client = self.client.clone();
        // Per call: the channel is shared with long-lived streams, so it has no overall timeout.
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.allocate(req))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")));
        match answer {
            Ok(resp) => {
                let resp = resp.into_inner();
                let mut l = lock(&state.local);
                if resp.period_start == l.period_start {
                    l.granted_total = l.granted_total.max(resp.granted_total_micros);
                    let ttl = Duration::from_millis(u64::try_from(resp.lease_ttl_ms).unwrap_or(0));
                    l.lease_until = Some(sent + ttl);
                    l.remaining = resp.remaining_micros;
                }
                true
            }
            Err(e) => {
                tracing::warn!(budget = %b.id, error = %e, "budget allocation failed");
                e.code() != tonic::Code::Unavailable
                    && e.code() != tonic::Code::DeadlineExceeded
                    && e.code() != tonic::Code::Unknown
                    && e.code() != tonic::Code::Cancelled
            }
        }
    }
}

/// Not worth a background call when the control plane said nothing is left.
fn l_remaining_positive(state: &BudgetState) -> bool {
    lock(&state.local).remaining > 0
}

fn chunk(b: &Budget, need: i64) -> i64 {
    (b.amount_micros / CHUNK_DIVISOR).max(need.saturating_mul(2))
}

/// With the control plane unreachable and the budget `fail_open`: take past the grant up to
/// the allowance (per node and period).
fn take_open(state: &BudgetState, b: &Budget, start: i64, cost: i64) -> bool {
    let WhenUnreachable::FailOpen { allowance_micros } = b.when_unreachable else {
        return false;
    };
    let mut l = lock(&state.local);
    l.roll(start);
    if l.open_used.saturating_add(cost) <= allowance_micros {
        l.open_used = l.open_used.saturating_add(cost);
        l.consumed = l.consumed.saturating_add(cost);
        true
    } else {
        false
    }
}
