//! Rate limits on the request path, fleet-wide without a round trip per request.
//!
//! The control plane leases each node a share of every limit's measures
//! (`QuotaService.AllocateRate`): a number of this minute's requests and tokens, and a number of
//! concurrent-request slots. Before a request is forwarded it takes one request, its token
//! estimate (prompt bytes / 4 plus its `max_tokens`) and one slot from the node's share of every
//! limit that applies (key, team, owner user, model alias); it is refused with 429
//! `rate_limit_exceeded` when a share cannot cover it and the control plane grants no more.
//! When the usage event is written the token estimate is replaced by the actual count and the
//! slot is given back ([`Admission`]).
//!
//! The hot path takes one short `std::sync::Mutex` per applying measure; it calls the control
//! plane only when a share runs low (in the background, ahead of running out) or is empty
//! (inline, single-flight per measure).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use modelgate_proto::quota::v1::{quota_service_client::QuotaServiceClient, RateRequest};
use modelgate_shared::limits::{
    retry_after_secs, window_start, LimitFallback, LimitScope, Measure, RateLimit,
};
use modelgate_shared::snapshot::ApiKey;
use tonic::transport::Channel;

/// A share is asked for in chunks of this fraction of the limit (at least what is needed).
const CHUNK_DIVISOR: i64 = 10;
/// How long a lease call may take before the control plane counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Renew a lease in the background when it has less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(5);
/// How long a node keeps concurrency slots it does not use before giving them back.
const IDLE_LINGER: Duration = Duration::from_secs(1);

/// Rate-limit state of this node, kept across snapshots (by limit id).
pub struct Limits {
    /// Node id plus a per-process suffix, so a restarted node never inherits a grant.
    holder: String,
    client: QuotaServiceClient<Channel>,
    counters: RwLock<HashMap<String, Arc<LimitCounters>>>,
}

struct LimitCounters {
    /// Indexed by [`slot`].
    measures: [Counter; 3],
}

struct Counter {
    local: Mutex<Local>,
    /// Single flight for lease calls.
    call: tokio::sync::Mutex<()>,
    /// A check for idle slots to give back is scheduled.
    linger: std::sync::atomic::AtomicBool,
}

#[derive(Default, Clone, Copy)]
struct Local {
    /// The minute being counted (0 for concurrent slots).
    window: i64,
    /// Granted to this node: cumulative in the window, or slots held.
    granted: i64,
    /// Taken in the window (reservations included), or requests in flight.
    consumed: i64,
    lease_until: Option<Instant>,
}

impl Local {
    fn roll(&mut self, window: i64) {
        if self.window != window {
            *self = Local {
                window,
                ..Local::default()
            };
        }
    }

    fn lease_live(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|t| t > now)
    }
}

fn slot(m: Measure) -> usize {
    match m {
        Measure::Requests => 0,
        Measure::Tokens => 1,
        Measure::Concurrent => 2,
    }
}

fn lock(m: &Mutex<Local>) -> MutexGuard<'_, Local> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The limit a request ran into, for the 429 that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub limit_id: String,
    pub measure: Measure,
    pub amount: u64,
    pub scope: LimitScope,
    pub scope_id: String,
    pub model: Option<String>,
    pub retry_after_secs: u64,
}

/// What a request took; settled when its usage event is written, and its concurrency slots
/// given back when it is dropped (whatever way the request ended).
#[derive(Default)]
pub struct Admission {
    taken: Vec<Taken>,
    limits: Option<Arc<Limits>>,
}

struct Taken {
    counters: Arc<LimitCounters>,
    limit: Arc<RateLimit>,
    measure: Measure,
    window: i64,
    amount: i64,
}

impl Admission {
    pub fn is_empty(&self) -> bool {
        self.taken.is_empty()
    }

    /// Replaces the token estimate by the tokens the request actually used.
    pub fn settle_tokens(&mut self, actual: u64) {
        let actual = i64::try_from(actual).unwrap_or(i64::MAX);
        for t in self
            .taken
            .iter_mut()
            .filter(|t| t.measure == Measure::Tokens)
        {
            let mut l = lock(&t.counters.measures[slot(Measure::Tokens)].local);
            if l.window == t.window {
                l.consumed = (l.consumed + actual - t.amount).max(0);
            }
            t.amount = actual;
        }
    }
}

impl Admission {
    /// Gives back the requests and tokens taken by a request that is then refused (its slots
    /// go back when it is dropped).
    fn refund(&mut self) {
        for t in self.taken.iter_mut().filter(|t| t.measure.windowed()) {
            let mut l = lock(&t.counters.measures[slot(t.measure)].local);
            if l.window == t.window {
                l.consumed = (l.consumed - t.amount).max(0);
            }
            t.amount = 0;
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        for t in self.taken.drain(..) {
            if t.measure != Measure::Concurrent {
                continue;
            }
            let counter = &t.counters.measures[slot(Measure::Concurrent)];
            let (spare, idle) = {
                let mut l = lock(&counter.local);
                l.consumed = (l.consumed - 1).max(0);
                (l.granted - l.consumed, l.consumed == 0)
            };
            // Unused slots go back to the fleet: what exceeds twice a chunk at once, and all of
            // them once the node has stayed idle for a moment (so steady sequential traffic
            // keeps its slot instead of calling the control plane per request).
            let Some(limits) = &self.limits else {
                continue;
            };
            if spare > 2 * chunk(&t.limit, Measure::Concurrent, 1) {
                limits.release_slots(&t.counters, &t.limit);
            } else if idle && spare > 0 && !counter.linger.swap(true, Ordering::AcqRel) {
                let (limits, counters, limit) = (limits.clone(), t.counters.clone(), t.limit);
                tokio::spawn(async move {
                    tokio::time::sleep(IDLE_LINGER).await;
                    let counter = &counters.measures[slot(Measure::Concurrent)];
                    counter.linger.store(false, Ordering::Release);
                    let still_idle = {
                        let l = lock(&counter.local);
                        l.consumed == 0 && l.granted > 0
                    };
                    if still_idle {
                        limits.release_slots(&counters, &limit);
                    }
                });
            }
        }
    }
}

impl Limits {
    pub fn new(node_id: &str, control_plane_url: &str) -> anyhow::Result<Arc<Self>> {
        let channel = tonic::transport::Endpoint::from_shared(control_plane_url.to_owned())?
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect_lazy();
        Ok(Arc::new(Limits {
            holder: format!("{node_id}/{}", modelgate_shared::new_id()),
            client: QuotaServiceClient::new(channel),
            counters: RwLock::default(),
        }))
    }

    /// Gives this node a share of every measure of `limit` without asking the control plane
    /// (benchmarks and tests).
    #[doc(hidden)]
    pub fn prime(&self, limit: &RateLimit, now_secs: i64, share: i64, lease: Duration) {
        let counters = self.counters(&limit.id);
        for m in Measure::ALL {
            let mut l = lock(&counters.measures[slot(m)].local);
            l.roll(window_start(m, now_secs));
            l.granted = share;
            l.lease_until = Some(Instant::now() + lease);
        }
    }

    fn counters(&self, id: &str) -> Arc<LimitCounters> {
        if let Ok(m) = self.counters.read() {
            if let Some(c) = m.get(id) {
                return c.clone();
            }
        }
        let mut m = match self.counters.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(id.to_owned())
            .or_insert_with(|| {
                let counter = || Counter {
                    local: Mutex::default(),
                    call: tokio::sync::Mutex::new(()),
                    linger: std::sync::atomic::AtomicBool::new(false),
                };
                Arc::new(LimitCounters {
                    measures: [counter(), counter(), counter()],
                })
            })
            .clone()
    }

    /// Takes a request, `tokens` (the estimate) and a slot from every limit in `limits` that
    /// applies to a request with `key` for `alias`. On refusal nothing stays taken.
    pub async fn admit(
        self: &Arc<Self>,
        limits: &[Arc<RateLimit>],
        key: &ApiKey,
        alias: &str,
        tokens: u64,
        now_secs: i64,
    ) -> Result<Admission, Limited> {
        let mut admission = Admission {
            taken: Vec::new(),
            limits: Some(self.clone()),
        };
        for limit in limits.iter().filter(|l| l.applies_to(key, alias)) {
            let counters = self.counters(&limit.id);
            for measure in limit.measures() {
                let cost = match measure {
                    Measure::Tokens => i64::try_from(tokens).unwrap_or(i64::MAX),
                    Measure::Requests | Measure::Concurrent => 1,
                };
                let window = window_start(measure, now_secs);
                if !self.take(&counters, limit, measure, window, cost).await {
                    admission.refund();
                    return Err(Limited {
                        limit_id: limit.id.clone(),
                        measure,
                        amount: limit.amount(measure),
                        scope: limit.scope,
                        scope_id: limit.scope_id.clone(),
                        model: limit.model.clone(),
                        retry_after_secs: retry_after_secs(measure, now_secs),
                    });
                }
                admission.taken.push(Taken {
                    counters: counters.clone(),
                    limit: limit.clone(),
                    measure,
                    window,
                    amount: cost,
                });
            }
        }
        Ok(admission)
    }

    async fn take(
        self: &Arc<Self>,
        counters: &Arc<LimitCounters>,
        limit: &RateLimit,
        measure: Measure,
        window: i64,
        cost: i64,
    ) -> bool {
        let counter = &counters.measures[slot(measure)];
        if self.take_granted(counters, limit, measure, window, cost) {
            return true;
        }
        let reachable = {
            let _g = counter.call.lock().await;
            let covered = {
                let l = lock(&counter.local);
                l.window == window && l.lease_live(Instant::now()) && l.consumed + cost <= l.granted
            };
            covered || self.call(counter, limit, measure, window, cost).await
        };
        if self.take_granted(counters, limit, measure, window, cost) {
            return true;
        }
        if reachable || limit.when_unreachable == LimitFallback::FailClosed {
            return false;
        }
        // fail_open: this node holds the whole limit on its own until the control plane is
        // back.
        let mut l = lock(&counter.local);
        l.roll(window);
        let amount = i64::try_from(limit.amount(measure)).unwrap_or(i64::MAX);
        if l.consumed + cost <= amount {
            l.consumed += cost;
            true
        } else {
            false
        }
    }

    /// Takes `cost` from the node's live share; starts a background renewal when the share
    /// runs low or the lease nears its end.
    fn take_granted(
        self: &Arc<Self>,
        counters: &Arc<LimitCounters>,
        limit: &RateLimit,
        measure: Measure,
        window: i64,
        cost: i64,
    ) -> bool {
        let counter = &counters.measures[slot(measure)];
        let now = Instant::now();
        let (ok, low) = {
            let mut l = lock(&counter.local);
            l.roll(window);
            let ok = l.lease_live(now) && l.consumed + cost <= l.granted;
            if ok {
                l.consumed += cost;
            }
            let low = measure.windowed()
                && l.granted - l.consumed < chunk(limit, measure, cost) / 2
                || l.lease_until.is_some_and(|t| t < now + RENEW_BEFORE);
            (ok, low)
        };
        if ok && low {
            let (me, counters, limit) = (self.clone(), counters.clone(), limit.clone());
            tokio::spawn(async move {
                let counter = &counters.measures[slot(measure)];
                if let Ok(_g) = counter.call.try_lock() {
                    me.call(counter, &limit, measure, window, 0).await;
                }
            });
        }
        ok
    }

    /// Gives every concurrency slot back to the control plane (at shutdown, after the node has
    /// drained), so the fleet does not wait out a lapsed lease's grace for them.
    pub async fn release_all(&self, limits: &[Arc<RateLimit>]) {
        for limit in limits.iter().filter(|l| l.max_concurrent > 0) {
            let Some(counters) = self
                .counters
                .read()
                .ok()
                .and_then(|m| m.get(&limit.id).cloned())
            else {
                continue;
            };
            let counter = &counters.measures[slot(Measure::Concurrent)];
            let _g = counter.call.lock().await;
            {
                let mut l = lock(&counter.local);
                if l.granted == 0 {
                    continue;
                }
                l.granted = l.consumed;
            }
            self.call(counter, limit, Measure::Concurrent, 0, 0).await;
        }
    }

    /// Gives the control plane back the slots this node does not use (in the background).
    fn release_slots(self: &Arc<Self>, counters: &Arc<LimitCounters>, limit: &RateLimit) {
        let (me, counters, limit) = (self.clone(), counters.clone(), limit.clone());
        tokio::spawn(async move {
            let counter = &counters.measures[slot(Measure::Concurrent)];
            let Ok(_g) = counter.call.try_lock() else {
                return;
            };
            {
                // Lower the local cap first, so the node never holds more in flight than the
                // control plane counts for it.
                let mut l = lock(&counter.local);
                let keep = if l.consumed == 0 {
                    0
                } else {
                    l.consumed + chunk(&limit, Measure::Concurrent, 1)
                };
                l.granted = l.granted.min(keep);
            }
            me.call(counter, &limit, Measure::Concurrent, 0, 0).await;
        });
    }

    /// Reports to the control plane and asks for `chunk` more (at least `need`). Returns false
    /// when the control plane is unreachable. The caller holds the counter's call lock.
    async fn call(
        &self,
        counter: &Counter,
        limit: &RateLimit,
        measure: Measure,
        window: i64,
        need: i64,
    ) -> bool {
        let (consumed, held) = {
            let mut l = lock(&counter.local);
            l.roll(window);
            let consumed = if measure.windowed() {
                l.consumed
            } else {
                l.granted
            };
            (consumed, l.granted)
        };
        let want = if need == 0 && !measure.windowed() {
            0
        } else {
            chunk(limit, measure, need)
        };
        let sent = Instant::now();
        let req = RateRequest {
            node_id: self.holder.clone(),
            limit_id: limit.id.clone(),
            measure: measure.as_str().to_owned(),
            window_start: window,
            consumed,
            want,
            need,
            held,
        };
        let mut client = self.client.clone();
        match client.allocate_rate(req).await {
            Ok(resp) => {
                let resp = resp.into_inner();
                let mut l = lock(&counter.local);
                if resp.window_start == l.window {
                    l.granted = if measure.windowed() {
                        l.granted.max(resp.granted_total)
                    } else {
                        resp.granted_total
                    };
                    let ttl = Duration::from_millis(u64::try_from(resp.lease_ttl_ms).unwrap_or(0));
                    l.lease_until = Some(sent + ttl);
                }
                true
            }
            Err(e) => {
                tracing::warn!(limit = %limit.id, measure = measure.as_str(), error = %e, "rate-limit lease call failed");
                !matches!(
                    e.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Unknown
                        | tonic::Code::Cancelled
                )
            }
        }
    }
}

/// How much a node asks for at once: a tenth of the limit, at least twice what it needs now
/// (for concurrent slots: a tenth, at least what it needs).
fn chunk(limit: &RateLimit, measure: Measure, need: i64) -> i64 {
    let amount = i64::try_from(limit.amount(measure)).unwrap_or(i64::MAX);
    let base = amount / CHUNK_DIVISOR;
    if measure.windowed() {
        base.max(need.saturating_mul(2))
    } else {
        base.max(need)
    }
}
