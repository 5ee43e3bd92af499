//! The node's retry budget: retries may be at most a fraction of requests over a sliding window
//! (the current and the previous 10-second bucket), plus a small floor so a quiet node can still
//! retry. During a total outage this caps the load the gateway adds to a failing provider.
//!
//! Counting is lock-free (atomics; every request touches it): a bucket rollover races benignly,
//! at worst miscounting a few requests at the edge of a window, which a budget tolerates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BUCKET: Duration = Duration::from_secs(10);
/// Retries allowed per request over the window.
const RATIO_PERCENT: u64 = 20;
/// Retries always allowed per window.
const FLOOR: u64 = 10;

#[derive(Debug)]
pub struct RetryBudget {
    started: Instant,
    /// The bucket number `current_*` counts.
    bucket: AtomicU64,
    current_requests: AtomicU64,
    current_retries: AtomicU64,
    previous_requests: AtomicU64,
    previous_retries: AtomicU64,
    denied: AtomicU64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            started: Instant::now(),
            bucket: AtomicU64::new(0),
            current_requests: AtomicU64::new(0),
            current_retries: AtomicU64::new(0),
            previous_requests: AtomicU64::new(0),
            previous_retries: AtomicU64::new(0),
            denied: AtomicU64::new(0),
        }
    }
}

impl RetryBudget {
    /// Moves to the current bucket if time has passed.
    fn roll(&self) {
        let now = self.started.elapsed().as_secs() / BUCKET.as_secs();
        let seen = self.bucket.load(Ordering::Acquire);
        if seen == now {
            return;
        }
        if self
            .bucket
            .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let (requests, retries) = if seen + 1 == now {
                (
                    self.current_requests.swap(0, Ordering::AcqRel),
                    self.current_retries.swap(0, Ordering::AcqRel),
                )
            } else {
                self.current_requests.store(0, Ordering::Release);
                self.current_retries.store(0, Ordering::Release);
                (0, 0)
            };
            self.previous_requests.store(requests, Ordering::Release);
            self.previous_retries.store(retries, Ordering::Release);
        }
    }

    pub fn record_request(&self) {
        self.roll();
        self.current_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget, or says no.
    pub fn try_retry(&self) -> bool {
        self.roll();
        let requests = self.current_requests.load(Ordering::Relaxed)
            + self.previous_requests.load(Ordering::Relaxed);
        let limit = FLOOR + requests * RATIO_PERCENT / 100;
        let taken = self.current_retries.fetch_add(1, Ordering::AcqRel)
            + self.previous_retries.load(Ordering::Relaxed);
        if taken < limit {
            true
        } else {
            self.current_retries.fetch_sub(1, Ordering::AcqRel);
            self.denied.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_capped_at_a_fifth_of_requests_plus_the_floor() {
        let b = RetryBudget::default();
        for _ in 0..100 {
            b.record_request();
        }
        let granted = (0..1000).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 10 + 20);
        assert_eq!(b.denied(), 1000 - 30);
    }

    #[test]
    fn concurrent_retries_never_exceed_the_budget() {
        let b = std::sync::Arc::new(RetryBudget::default());
        for _ in 0..100 {
            b.record_request();
        }
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..500).filter(|_| b.try_retry()).count())
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(granted, 30);
    }
}
