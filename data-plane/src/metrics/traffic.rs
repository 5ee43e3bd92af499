//! What this node served, for a staged rollout's health gates: requests, 5xx answers and
//! request latencies by the shared buckets (`modelgate_shared::rollout::LATENCY_BUCKETS_MS`),
//! cumulative since start. The config subscriber sends them in every health report with the
//! version it serves; the control plane differences consecutive reports. Recording is three
//! relaxed atomic adds, no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};

use modelgate_shared::rollout::{latency_bucket, LATENCY_BUCKET_COUNT};

#[derive(Debug, Default)]
pub struct ServedTraffic {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKET_COUNT],
}

/// A reading of [`ServedTraffic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficReading {
    pub requests: u64,
    pub errors: u64,
    pub latency_buckets: Vec<u64>,
}

impl ServedTraffic {
    /// Counts one finished request answered with `status` after `latency_us`.
    pub fn record(&self, status: u16, latency_us: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[latency_bucket(latency_us / 1000)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> TrafficReading {
        TrafficReading {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency_buckets: self
                .latency
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}
