//! The node's retry budget: retries may be at most a fraction of requests over a sliding window
//! (two 10-second buckets), plus a small floor so a quiet node can still retry. During a total
//! outage this caps the load the gateway adds to a failing provider.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BUCKET: Duration = Duration::from_secs(10);
/// Retries allowed per request over the window.
const RATIO: f64 = 0.2;
/// Retries always allowed per window.
const FLOOR: u64 = 10;

#[derive(Debug)]
pub struct RetryBudget {
    started: Instant,
    /// (bucket number, requests, retries) for the current and the previous bucket.
    buckets: Mutex<[(u64, u64, u64); 2]>,
    denied: AtomicU64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            started: Instant::now(),
            buckets: Mutex::new([(0, 0, 0); 2]),
            denied: AtomicU64::new(0),
        }
    }
}

impl RetryBudget {
    fn bucket_now(&self) -> u64 {
        self.started.elapsed().as_secs() / BUCKET.as_secs()
    }

    fn with_current<T>(&self, f: impl FnOnce(&mut (u64, u64, u64), (u64, u64)) -> T) -> Option<T> {
        let now = self.bucket_now();
        let mut b = self.buckets.lock().ok()?;
        let slot = (now % 2) as usize;
        if b[slot].0 != now {
            b[slot] = (now, 0, 0);
        }
        let other = b[1 - slot];
        let previous = if other.0 + 1 == now {
            (other.1, other.2)
        } else {
            (0, 0)
        };
        Some(f(&mut b[slot], previous))
    }

    pub fn record_request(&self) {
        self.with_current(|cur, _| cur.1 += 1);
    }

    /// Takes one retry from the budget, or says no.
    pub fn try_retry(&self) -> bool {
        let allowed = self
            .with_current(|cur, (prev_requests, prev_retries)| {
                let requests = cur.1 + prev_requests;
                let retries = cur.2 + prev_retries;
                let limit = FLOOR + (requests as f64 * RATIO) as u64;
                if retries < limit {
                    cur.2 += 1;
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if !allowed {
            self.denied.fetch_add(1, Ordering::Relaxed);
        }
        allowed
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
}
