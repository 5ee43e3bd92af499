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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use modelgate_proto::quota::v1::{quota_service_client::QuotaServiceClient, RateRequest};
use modelgate_shared::key_view::KeyView;
use modelgate_shared::limits::{retry_after_secs, window_start, LimitFallback, Measure, RateLimit};
use tonic::transport::Channel;

use crate::time::unix_now;

/// A share is asked for in chunks of this fraction of the limit (at least what is needed).
const CHUNK_DIVISOR: i64 = 10;
/// How long a lease call may take before the control plane counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Renew a lease in the background when it has less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(5);
/// How long a node keeps concurrency slots it does not use before giving them back.
const IDLE_LINGER: Duration = Duration::from_secs(1);
/// After the control plane granted nothing more, refuse locally this long before asking again
/// (per-minute measures: never past the minute's end).
const DENIED_FOR: Duration = Duration::from_secs(1);
const DENIED_SLOTS_FOR: Duration = Duration::from_millis(200);
/// After a failed call, go straight to the fallback this long before trying again.
const UNREACHABLE_FOR: Duration = Duration::from_secs(1);
/// How often the keeper reports held concurrency slots (renewing their lease, giving back idle
/// ones, and correcting the control plane's count after a lost answer).
const KEEP_EVERY: Duration = Duration::from_secs(3);
/// A minute count is reported again after this long even if it did not move (a restarted
/// control plane learns it within its warm-up).
const REPORT_AT_LEAST_EVERY: Duration = Duration::from_secs(5);

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
    linger: AtomicBool,
}

#[derive(Default, Clone, Copy)]
struct Local {
    /// The minute being counted (0 for concurrent slots). Only ever moves forward.
    window: i64,
    /// Granted to this node: cumulative in the window, or slots held.
    granted: i64,
    /// Taken in the window (reservations included), or requests in flight.
    consumed: i64,
    lease_until: Option<Instant>,
    /// The control plane granted nothing more: refuse locally until then.
    denied_until: Option<Instant>,
    /// The control plane could not be reached: apply the fallback until then.
    unreachable_until: Option<Instant>,
    /// `consumed` as last reported, and when: the keeper reports a minute's count when it
    /// moved or its last report grew old.
    reported: i64,
    reported_at: Option<Instant>,
}

impl Local {
    /// Moves to `window` if it is newer; a late request from an older minute counts in the
    /// current one. Returns the window counted in.
    fn roll(&mut self, window: i64) -> i64 {
        if window > self.window {
            *self = Local {
                window,
                ..Local::default()
            };
        }
        self.window
    }

    fn lease_live(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|t| t > now)
    }

    /// What the node reports holding: its grant, or for slots, more if it serves past it.
    fn held(&self, measure: Measure) -> i64 {
        if measure.windowed() {
            self.granted
        } else {
            self.granted.max(self.consumed)
        }
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

/// The limit a request ran into (a plain fact, kept in `shared` so the refusal type below this
/// module can name it).
pub use modelgate_shared::limits::Limited;

/// What a request took; settled when its usage event is written, and its concurrency slots
/// given back when it is dropped (whatever way the request ended). Dropped before the
/// `Recorder` kept it (a client gone while waiting on a lease call), it gives everything back.
#[derive(Default)]
pub struct Admission {
    taken: Vec<Taken>,
    limits: Option<Arc<Limits>>,
    /// The request went on (the `Recorder` holds this): its requests and tokens stay counted.
    kept: bool,
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

    /// The request goes upstream: what it took stays counted until it is settled.
    pub fn keep(&mut self) {
        self.kept = true;
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
                l.consumed = l
                    .consumed
                    .saturating_add(actual)
                    .saturating_sub(t.amount)
                    .max(0);
            }
            t.amount = actual;
        }
    }

    /// Gives back the requests and tokens taken by a request that did not go on (its slots
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
        if !self.kept {
            self.refund();
        }
        let runtime = tokio::runtime::Handle::try_current().ok();
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
            // keeps its slot instead of calling the control plane per request). The keeper
            // catches what these miss.
            let (Some(limits), Some(runtime)) = (&self.limits, &runtime) else {
                continue;
            };
            if spare > 2 * chunk(&t.limit, Measure::Concurrent, 1) {
                let (limits, counters, limit) = (limits.clone(), t.counters.clone(), t.limit);
                runtime.spawn(async move { limits.release_slots(&counters, &limit).await });
            } else if idle && spare > 0 && !counter.linger.swap(true, Ordering::AcqRel) {
                let (limits, counters, limit) = (limits.clone(), t.counters.clone(), t.limit);
                runtime.spawn(async move {
                    tokio::time::sleep(IDLE_LINGER).await;
                    let counter = &counters.measures[slot(Measure::Concurrent)];
                    counter.linger.store(false, Ordering::Release);
                    limits.release_slots(&counters, &limit).await;
                });
            }
        }
    }
}

impl Limits {
    /// `channel`: the data plane's one channel to the control plane (see [`crate::channel`]).
    pub fn new(node_id: &str, channel: Channel) -> Arc<Self> {
        Arc::new(Limits {
            holder: format!("{node_id}/{}", modelgate_shared::new_id()),
            client: QuotaServiceClient::new(channel),
            counters: RwLock::default(),
        })
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
                    linger: AtomicBool::new(false),
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
        key: &(impl KeyView + ?Sized + Sync),
        alias: &str,
        tokens: u64,
        now_secs: i64,
    ) -> Result<Admission, Limited> {
        let mut admission = Admission::default();
        for limit in limits.iter().filter(|l| l.applies_to(key, alias)) {
            if admission.limits.is_none() {
                admission.limits = Some(self.clone());
            }
            let counters = self.counters(&limit.id);
            for measure in limit.measures() {
                let cost = match measure {
                    Measure::Tokens => i64::try_from(tokens).unwrap_or(i64::MAX),
                    Measure::Requests | Measure::Concurrent => 1,
                };
                let Some(window) = self
                    .take(
                        &counters,
                        limit,
                        measure,
                        window_start(measure, now_secs),
                        cost,
                    )
                    .await
                else {
                    // `admission` gives back what it took when dropped (not kept).
                    return Err(Limited {
                        limit_id: limit.id.clone(),
                        measure,
                        amount: limit.amount(measure),
                        scope: limit.scope,
                        scope_id: limit.scope_id.clone(),
                        model: limit.model.clone(),
                        retry_after_secs: retry_after_secs(measure, now_secs),
                    });
                };
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

    /// Takes `cost` of `measure`; the window it was counted in, or `None` when refused.
    async fn take(
        self: &Arc<Self>,
        counters: &Arc<LimitCounters>,
        limit: &Arc<RateLimit>,
        measure: Measure,
        window: i64,
        cost: i64,
    ) -> Option<i64> {
        // More than the whole limit can never be admitted: refused without a lease call
        // (a huge `max_tokens` must not reach the control plane as a request for a share).
        if cost > i64::try_from(limit.amount(measure)).unwrap_or(i64::MAX) {
            return None;
        }
        let counter = &counters.measures[slot(measure)];
        if let Some(w) = self.take_granted(counters, limit, measure, window, cost) {
            return Some(w);
        }
        let now = Instant::now();
        let (denied, unreachable) = {
            let l = lock(&counter.local);
            (
                l.denied_until.is_some_and(|t| t > now),
                l.unreachable_until.is_some_and(|t| t > now),
            )
        };
        if denied {
            return None;
        }
        let mut reachable = !unreachable;
        if reachable {
            // A few rounds: a share another request's call brought in may be taken by a third
            // before this one gets to it.
            for _ in 0..3 {
                let before = lock(&counter.local).granted;
                reachable = self.refill(counters, limit, measure, cost).await;
                if let Some(w) = self.take_granted(counters, limit, measure, window, cost) {
                    return Some(w);
                }
                let grew = lock(&counter.local).granted > before;
                if !reachable || !grew {
                    break;
                }
            }
            let now = Instant::now();
            let mut l = lock(&counter.local);
            if reachable {
                let until = if measure.windowed() {
                    let left = u64::try_from(limits_window_end(l.window) - unix_now()).unwrap_or(0);
                    now + DENIED_FOR.min(Duration::from_secs(left))
                } else {
                    now + DENIED_SLOTS_FOR
                };
                l.denied_until = Some(until);
            } else {
                l.unreachable_until = Some(now + UNREACHABLE_FOR);
            }
        }
        if reachable || limit.when_unreachable == LimitFallback::FailClosed {
            return None;
        }
        // fail_open: this node holds the whole limit on its own until the control plane is
        // back.
        let mut l = lock(&counter.local);
        let w = l.roll(window);
        let amount = i64::try_from(limit.amount(measure)).unwrap_or(i64::MAX);
        if l.consumed.saturating_add(cost) <= amount {
            l.consumed = l.consumed.saturating_add(cost);
            Some(w)
        } else {
            None
        }
    }

    /// Takes `cost` from the node's live share; starts a background renewal when the share
    /// runs low or the lease nears its end.
    fn take_granted(
        self: &Arc<Self>,
        counters: &Arc<LimitCounters>,
        limit: &Arc<RateLimit>,
        measure: Measure,
        window: i64,
        cost: i64,
    ) -> Option<i64> {
        let counter = &counters.measures[slot(measure)];
        let now = Instant::now();
        let (taken, low) = {
            let mut l = lock(&counter.local);
            let w = l.roll(window);
            let ok = l.lease_live(now) && l.consumed.saturating_add(cost) <= l.granted;
            if ok {
                l.consumed = l.consumed.saturating_add(cost);
            }
            let low = measure.windowed()
                && l.granted.saturating_sub(l.consumed) < chunk(limit, measure, cost) / 2
                || l.lease_until.is_some_and(|t| t < now + RENEW_BEFORE);
            (ok.then_some(w), low)
        };
        if taken.is_some() && low {
            let (me, counters, limit) = (self.clone(), counters.clone(), limit.clone());
            tokio::spawn(async move {
                let counter = &counters.measures[slot(measure)];
                if counter.call.try_lock().is_ok() {
                    me.refill(&counters, &limit, measure, 0).await;
                }
            });
        }
        taken
    }

    /// One lease call under the counter's single-flight lock, run in its own task so that a
    /// caller that goes away (a client hanging up) never drops the answer the control plane
    /// already acted on. Returns false when the control plane is unreachable.
    async fn refill(
        self: &Arc<Self>,
        counters: &Arc<LimitCounters>,
        limit: &Arc<RateLimit>,
        measure: Measure,
        need: i64,
    ) -> bool {
        let (me, counters, limit) = (self.clone(), counters.clone(), limit.clone());
        let task = tokio::spawn(async move {
            let counter = &counters.measures[slot(measure)];
            let _g = counter.call.lock().await;
            // Someone else's call may already have covered this: a minute's share comes in
            // chunks that serve many requests. Not a slot: a concurrency share grows one slot
            // at a time, and the slot another request's call just brought is that request's;
            // taking it here would send that one round again, and a request whose round
            // brought nothing new is refused (seen as a 429 under a limit with slots free).
            if need > 0 && measure.windowed() {
                let l = lock(&counter.local);
                if l.lease_live(Instant::now()) && l.consumed.saturating_add(need) <= l.granted {
                    return true;
                }
            }
            me.call(counter, &limit, measure, need).await
        });
        task.await.unwrap_or(false)
    }

    /// Gives every concurrency slot back to the control plane (at shutdown, after the node has
    /// drained), so the fleet does not wait out a lapsed lease's grace for them.
    pub async fn release_all(self: &Arc<Self>, limits: &[Arc<RateLimit>]) {
        for limit in limits.iter().filter(|l| l.max_concurrent > 0) {
            let Some(counters) = self.existing(&limit.id) else {
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
            self.call(counter, limit, Measure::Concurrent, 0).await;
        }
    }

    fn existing(&self, id: &str) -> Option<Arc<LimitCounters>> {
        self.counters.read().ok().and_then(|m| m.get(id).cloned())
    }

    /// Reports the slots this node holds, after lowering its own cap to what it uses plus a
    /// chunk (to nothing when idle) — so the control plane's count is never below the node's.
    async fn release_slots(&self, counters: &LimitCounters, limit: &RateLimit) {
        let counter = &counters.measures[slot(Measure::Concurrent)];
        let _g = counter.call.lock().await;
        {
            let mut l = lock(&counter.local);
            let keep = if l.consumed == 0 {
                0
            } else {
                l.consumed + chunk(limit, Measure::Concurrent, 1)
            };
            if l.granted <= keep {
                return;
            }
            l.granted = keep.max(l.consumed);
        }
        self.call(counter, limit, Measure::Concurrent, 0).await;
    }

    /// Runs until the process ends. Every few seconds it reports each minute count that moved
    /// since its last report, so the control plane always knows what the fleet took (a
    /// restarted one learns it within its warm-up). It also reports the slots of every
    /// concurrency limit this node holds or uses: this renews the lease while long requests
    /// run, gives back slots an idle node kept, and corrects the control plane after an answer
    /// was lost.
    pub async fn keep(self: Arc<Self>, runtime: crate::config::SharedRuntime) {
        let mut tick = tokio::time::interval(KEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let limits = runtime.load().rate_limits.clone();
            let now = unix_now();
            for limit in limits.iter() {
                let Some(counters) = self.existing(&limit.id) else {
                    continue;
                };
                for measure in limit.measures().filter(|m| m.windowed()) {
                    let counter = &counters.measures[slot(measure)];
                    let moved = {
                        let l = lock(&counter.local);
                        let stale = l
                            .reported_at
                            .is_none_or(|t| t.elapsed() >= REPORT_AT_LEAST_EVERY);
                        l.window == window_start(measure, now)
                            && l.consumed > 0
                            && (l.consumed != l.reported || stale)
                    };
                    if moved {
                        let _g = counter.call.lock().await;
                        self.call(counter, limit, measure, 0).await;
                    }
                }
                if limit.max_concurrent == 0 {
                    continue;
                }
                let counter = &counters.measures[slot(Measure::Concurrent)];
                let (busy, held) = {
                    let l = lock(&counter.local);
                    (l.consumed > 0, l.held(Measure::Concurrent) > 0)
                };
                if busy {
                    let _g = counter.call.lock().await;
                    self.call(counter, limit, Measure::Concurrent, 0).await;
                } else if held {
                    self.release_slots(&counters, limit).await;
                }
            }
        }
    }

    /// Reports to the control plane and asks for `chunk` more (at least `need`). Returns false
    /// when the control plane is unreachable. The caller holds the counter's call lock.
    async fn call(
        &self,
        counter: &Counter,
        limit: &RateLimit,
        measure: Measure,
        need: i64,
    ) -> bool {
        let (window, consumed, held) = {
            let mut l = lock(&counter.local);
            let consumed = if measure.windowed() {
                l.consumed
            } else {
                l.held(measure)
            };
            l.reported = l.consumed;
            l.reported_at = Some(Instant::now());
            (l.window, consumed, l.held(measure))
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
        // Per call: the channel is shared with long-lived streams, so it has no overall timeout.
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.allocate_rate(req))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")));
        match answer {
            Ok(resp) => {
                let resp = resp.into_inner();
                let mut l = lock(&counter.local);
                if resp.window_start == l.window {
                    // The control plane's count is the authority (it is never below what the
                    // node reported taking or holding).
                    l.granted = resp.granted_total;
                    let ttl = Duration::from_millis(u64::try_from(resp.lease_ttl_ms).unwrap_or(0));
                    l.lease_until = Some(sent + ttl);
                    l.unreachable_until = None;
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

/// The end (unix seconds) of the minute starting at `window`.
fn limits_window_end(window: i64) -> i64 {
    window + modelgate_shared::limits::WINDOW_SECS
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

#[cfg(test)]
mod tests;
