//! Passive outlier detection per deployment, on this node: consecutive failures (5xx, timeouts,
//! connect errors) eject a deployment for a cooldown that doubles on every failed probe up to a
//! cap; when the cooldown ends one request probes it (half-open) and its outcome decides. A 429
//! with `retry-after` parks the deployment until then without counting as a failure. State is
//! atomics per deployment; the table is only written when a deployment is first seen.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use foldhash::HashMap;
use modelgate_shared::snapshot::RoutePolicy;

#[derive(Debug, Default)]
pub struct DeploymentHealth {
    consecutive_failures: AtomicU32,
    /// Unix ms until which the deployment is ejected; 0 = not ejected.
    ejected_until_ms: AtomicI64,
    /// The cooldown the next ejection uses.
    cooldown_ms: AtomicU64,
    /// A half-open probe is in flight.
    probing: AtomicBool,
    /// Unix ms until which the provider asked us to back off (429 + retry-after).
    rate_limited_until_ms: AtomicI64,
    /// Attempts to this deployment in progress on this node.
    in_flight: AtomicU32,
    /// Moving average of time to first byte, µs (0 = no sample yet).
    ewma_ttfb_us: AtomicU64,
    /// The deployment's own rate limit (GCRA): the theoretical arrival time of the next
    /// attempt, in µs since the Unix epoch.
    rate_tat_us: AtomicI64,
}

/// Counts an attempt in flight until dropped.
pub struct InFlight(Arc<DeploymentHealth>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a deployment may take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Healthy,
    /// Its cooldown ended: this request is the one probe.
    Probe,
    Ejected,
    RateLimited,
}

impl DeploymentHealth {
    pub fn check(&self, now_ms: i64) -> Availability {
        if self.rate_limited_until_ms.load(Ordering::Relaxed) > now_ms {
            return Availability::RateLimited;
        }
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return Availability::Healthy;
        }
        if until > now_ms || self.probing.load(Ordering::Relaxed) {
            return Availability::Ejected;
        }
        // Cooldown over: one request may probe (claimed with `claim` when it is attempted).
        Availability::Probe
    }

    /// Just before an attempt: true for a healthy deployment; for one whose cooldown ended,
    /// true for exactly one caller (the half-open probe), which must end in `record_success`,
    /// `record_failure`, `record_rate_limited` or `release_probe`.
    pub fn claim(&self, now_ms: i64) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        if until > now_ms {
            return false;
        }
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// A claimed probe that was not attempted after all: the next request may probe.
    pub fn release_probe(&self) {
        if self.ejected_until_ms.load(Ordering::Relaxed) != 0 {
            self.probing.store(false, Ordering::Release);
        }
    }

    pub fn is_ejected(&self, now_ms: i64) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && (until > now_ms || self.probing.load(Ordering::Relaxed))
    }

    pub fn record_success(&self, policy: &RoutePolicy) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejected_until_ms.store(0, Ordering::Relaxed);
        self.cooldown_ms
            .store(u64::from(policy.base_cooldown_ms), Ordering::Relaxed);
        self.probing.store(false, Ordering::Release);
    }

    pub fn record_failure(&self, policy: &RoutePolicy, now_ms: i64) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let was_probe = self.probing.swap(false, Ordering::AcqRel);
        if was_probe || failures >= policy.eject_after {
            let base = u64::from(policy.base_cooldown_ms);
            let current = match self.cooldown_ms.load(Ordering::Relaxed) {
                0 => base,
                c => c,
            };
            let cooldown = if was_probe {
                current
                    .saturating_mul(2)
                    .min(u64::from(policy.max_cooldown_ms))
            } else {
                current
            };
            self.cooldown_ms.store(cooldown, Ordering::Relaxed);
            let until = now_ms.saturating_add(i64::try_from(cooldown).unwrap_or(i64::MAX));
            self.ejected_until_ms.store(until, Ordering::Relaxed);
            tracing::warn!(cooldown_ms = cooldown, failures, "deployment ejected");
        }
    }

    /// The provider said 429: park until `until_ms` (siblings take the traffic).
    pub fn record_rate_limited(&self, until_ms: i64) {
        self.rate_limited_until_ms
            .fetch_max(until_ms, Ordering::Relaxed);
        self.probing.store(false, Ordering::Release);
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Starts an attempt if the deployment's own limits allow it on this node: fewer than
    /// `max_in_flight` attempts in progress (0 = no limit) and a token in its `rpm` bucket
    /// (0 = no limit). `None` when either is spent; nothing is taken then.
    pub fn try_start(
        self: &Arc<Self>,
        max_in_flight: u32,
        rpm: u32,
        now_us: i64,
    ) -> Option<InFlight> {
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(self.clone());
        if max_in_flight > 0 && before >= max_in_flight {
            return None;
        }
        if rpm > 0 && !self.take_rate_token(rpm, now_us) {
            return None;
        }
        Some(guard)
    }

    /// GCRA: each attempt advances the theoretical arrival time by 60 s / `rpm`; an attempt is
    /// allowed while that time is at most a full minute ahead of now, so a burst of `rpm` goes
    /// through at once and the bucket then refills evenly. Lock-free (one CAS loop).
    fn take_rate_token(&self, rpm: u32, now_us: i64) -> bool {
        let interval = 60_000_000 / i64::from(rpm.max(1));
        let tolerance = 60_000_000 - interval;
        let mut tat = self.rate_tat_us.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now_us);
            if start - now_us > tolerance {
                return false;
            }
            match self.rate_tat_us.compare_exchange_weak(
                tat,
                start + interval,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }

    /// Folds a time-to-first-byte sample into the average (weight 1/5).
    pub fn record_ttfb(&self, us: u64) {
        let old = self.ewma_ttfb_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            us.max(1)
        } else {
            (old * 4 + us) / 5
        };
        self.ewma_ttfb_us.store(new.max(1), Ordering::Relaxed);
    }

    /// When a 429 parking ends, if the deployment is parked at `now_ms` (0 otherwise).
    pub fn rate_limited_until(&self, now_ms: i64) -> i64 {
        let until = self.rate_limited_until_ms.load(Ordering::Relaxed);
        if until > now_ms {
            until
        } else {
            0
        }
    }

    pub fn ewma_ttfb_us(&self) -> u64 {
        self.ewma_ttfb_us.load(Ordering::Relaxed)
    }
}

/// One deployment's health as metrics show it.
#[derive(Debug, Clone)]
pub struct HealthView {
    pub deployment_id: String,
    pub consecutive_failures: u32,
    pub ejected: bool,
    /// Parked after a 429 until this unix millisecond; 0 when not parked.
    pub rate_limited_until_ms: i64,
    pub in_flight: u32,
    pub ewma_ttfb_us: u64,
}

/// Health of every deployment this node has routed to, by deployment id.
#[derive(Debug, Default)]
pub struct HealthTable {
    map: RwLock<HashMap<String, Arc<DeploymentHealth>>>,
}

impl HealthTable {
    pub fn get(&self, deployment_id: &str) -> Arc<DeploymentHealth> {
        if let Ok(map) = self.map.read() {
            if let Some(h) = map.get(deployment_id) {
                return h.clone();
            }
        }
        match self.map.write() {
            Ok(mut map) => map.entry(deployment_id.to_owned()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Every known deployment's health, by id.
    pub fn snapshot(&self, now_ms: i64) -> Vec<HealthView> {
        let Ok(map) = self.map.read() else {
            return Vec::new();
        };
        let mut out: Vec<_> = map
            .iter()
            .map(|(id, h)| HealthView {
                deployment_id: id.clone(),
                consecutive_failures: h.consecutive_failures(),
                ejected: h.is_ejected(now_ms),
                rate_limited_until_ms: h.rate_limited_until(now_ms),
                in_flight: h.in_flight(),
                ewma_ttfb_us: h.ewma_ttfb_us(),
            })
            .collect();
        out.sort_by(|a, b| a.deployment_id.cmp(&b.deployment_id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RoutePolicy {
        RoutePolicy {
            eject_after: 3,
            base_cooldown_ms: 1000,
            max_cooldown_ms: 4000,
            ..RoutePolicy::default()
        }
    }

    #[test]
    fn consecutive_failures_eject_and_a_failed_probe_doubles_the_cooldown_up_to_the_cap() {
        let h = DeploymentHealth::default();
        let p = policy();
        for _ in 0..2 {
            h.record_failure(&p, 0);
        }
        assert_eq!(
            h.check(0),
            Availability::Healthy,
            "two failures are not enough"
        );
        h.record_failure(&p, 0);
        assert_eq!(h.check(500), Availability::Ejected);
        assert_eq!(
            h.check(1000),
            Availability::Probe,
            "cooldown over: one probe"
        );
        assert_eq!(
            h.check(1000),
            Availability::Probe,
            "planning claims nothing"
        );
        assert!(h.claim(1000), "the attempt claims the probe");
        assert!(!h.claim(1000), "only one probe at a time");
        assert_eq!(h.check(1000), Availability::Ejected);
        h.record_failure(&p, 1000);
        assert_eq!(
            h.check(2999),
            Availability::Ejected,
            "cooldown doubled to 2 s"
        );
        assert_eq!(h.check(3000), Availability::Probe);
        assert!(h.claim(3000));
        h.record_failure(&p, 3000);
        assert_eq!(h.check(3000 + 3999), Availability::Ejected);
        assert_eq!(h.check(3000 + 4000), Availability::Probe);
        assert!(h.claim(7000));
        h.record_failure(&p, 7000);
        assert_eq!(h.check(7000 + 4000), Availability::Probe, "capped at 4 s");
        h.record_success(&p);
        assert_eq!(
            h.check(11_000),
            Availability::Healthy,
            "a good probe closes it"
        );
    }

    #[test]
    fn a_probe_listed_in_a_plan_but_never_attempted_does_not_eject_for_good() {
        let h = DeploymentHealth::default();
        let p = policy();
        for _ in 0..3 {
            h.record_failure(&p, 0);
        }
        // Plans list it (cooldown over) but serve from a sibling: nothing is claimed.
        for _ in 0..5 {
            assert_eq!(h.check(1000), Availability::Probe);
        }
        // A claimed probe that is not attempted is given back.
        assert!(h.claim(1000));
        h.release_probe();
        assert!(h.claim(1000), "the next request may probe");
        h.record_success(&p);
        assert_eq!(h.check(1000), Availability::Healthy);
    }

    #[test]
    fn a_429_parks_the_deployment_without_ejecting_it() {
        let h = DeploymentHealth::default();
        h.record_rate_limited(5000);
        assert_eq!(h.check(4999), Availability::RateLimited);
        assert_eq!(h.check(5000), Availability::Healthy);
        assert_eq!(h.consecutive_failures(), 0);
    }

    #[test]
    fn the_rate_bucket_lets_a_burst_of_rpm_through_then_refills_evenly() {
        let h = Arc::new(DeploymentHealth::default());
        let t0 = 1_000_000_000_000;
        let admitted = (0..5).filter(|_| h.try_start(0, 3, t0).is_some()).count();
        assert_eq!(admitted, 3, "a burst of rpm");
        // One token comes back every 20 s.
        assert!(h.try_start(0, 3, t0 + 19_999_000).is_none());
        assert!(h.try_start(0, 3, t0 + 20_000_000).is_some());
        assert!(h.try_start(0, 3, t0 + 20_000_000).is_none());
    }

    #[test]
    fn in_flight_is_capped_and_a_refused_start_takes_nothing() {
        let h = Arc::new(DeploymentHealth::default());
        let first = h.try_start(2, 0, 0).expect("first");
        let second = h.try_start(2, 0, 0).expect("second");
        assert!(h.try_start(2, 0, 0).is_none());
        assert_eq!(h.in_flight(), 2, "the refused start was undone");
        drop(first);
        assert!(h.try_start(2, 0, 0).is_some());
        drop(second);
    }
}
