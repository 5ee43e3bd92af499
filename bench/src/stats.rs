//! Latency percentiles and the summary printed by `load` (and consumed by `compare`).

use serde::Serialize;

/// Nearest-rank percentile of an ascending-sorted slice of nanoseconds, in milliseconds.
pub fn percentile_ms(sorted_ns: &[u64], p: f64) -> Option<f64> {
    if sorted_ns.is_empty() {
        return None;
    }
    let n = sorted_ns.len();
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let idx = rank.clamp(1, n) - 1;
    sorted_ns.get(idx).map(|&ns| ns as f64 / 1e6)
}

/// Mean of a slice of nanoseconds, in milliseconds.
pub fn mean_ms(ns: &[u64]) -> Option<f64> {
    if ns.is_empty() {
        return None;
    }
    let sum: u128 = ns.iter().map(|&v| u128::from(v)).sum();
    Some(sum as f64 / ns.len() as f64 / 1e6)
}

/// Result of one measured load run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub url: String,
    /// "closed" (fixed concurrency) or "open" (fixed rate).
    pub mode: &'static str,
    pub concurrency: usize,
    /// Target rate for open loop runs.
    pub target_rps: Option<f64>,
    pub duration_s: f64,
    /// 2xx responses per second of wall time (from the first send to the last response).
    pub rps: f64,
    /// 2xx responses.
    pub ok: u64,
    /// Failed requests: non-2xx responses plus transport errors/timeouts.
    pub err: u64,
    pub non2xx: u64,
    pub transport_errors: u64,
    /// Connections re-opened because the server closed the previous one.
    pub reconnects: u64,
    /// 2xx responses that were `text/event-stream`.
    pub streams: u64,
    /// Open loop: requests sent later than their scheduled time because every worker was busy.
    pub behind_schedule: u64,
    pub response_bytes: u64,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Time to first body byte, for event-stream responses only.
    pub ttfb_p50_ms: Option<f64>,
    pub ttfb_p90_ms: Option<f64>,
    pub ttfb_p99_ms: Option<f64>,
    /// utime+stime of `--pid` (and descendants) during the measurement, per 2xx response.
    pub cpu_us_per_req: Option<f64>,
    /// CPU cores used by `--pid` on average during the measurement.
    pub cpu_cores: Option<f64>,
    /// Resident set size of `--pid` (and descendants) at the end of the run.
    pub rss_mb: Option<f64>,
    /// First transport error seen, for diagnosis.
    pub first_error: Option<String>,
    /// First non-2xx status and body prefix seen, for diagnosis.
    pub first_non2xx: Option<String>,
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) => format!("{x:.decimals$}"),
        None => "-".to_string(),
    }
}

impl Summary {
    /// One `key=value` line: `rps=… ok=… err=… p50_ms=… p90_ms=… p99_ms=… [ttfb_…] [cpu_us_per_req=…]`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "rps={:.1} ok={} err={} p50_ms={} p90_ms={} p99_ms={}",
            self.rps,
            self.ok,
            self.err,
            fmt_opt(self.p50_ms, 3),
            fmt_opt(self.p90_ms, 3),
            fmt_opt(self.p99_ms, 3),
        );
        if self.streams > 0 {
            s.push_str(&format!(
                " ttfb_p50_ms={} ttfb_p99_ms={}",
                fmt_opt(self.ttfb_p50_ms, 3),
                fmt_opt(self.ttfb_p99_ms, 3)
            ));
        }
        if let Some(cpu) = self.cpu_us_per_req {
            s.push_str(&format!(" cpu_us_per_req={cpu:.1}"));
        }
        s
    }

    /// Explains failures on stderr (the summary line itself only has the count).
    pub fn report_failures(&self) {
        if self.err == 0 {
            return;
        }
        eprintln!(
            "warning: {} failed requests ({} non-2xx, {} transport errors)",
            self.err, self.non2xx, self.transport_errors
        );
        if let Some(e) = &self.first_non2xx {
            eprintln!("  first non-2xx: {e}");
        }
        if let Some(e) = &self.first_error {
            eprintln!("  first error: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        assert_eq!(percentile_ms(&v, 50.0), Some(50.0));
        assert_eq!(percentile_ms(&v, 99.0), Some(99.0));
        assert_eq!(percentile_ms(&v, 100.0), Some(100.0));
        assert_eq!(percentile_ms(&v, 0.0), Some(1.0));
        assert_eq!(percentile_ms(&[], 50.0), None);
        assert_eq!(percentile_ms(&[7_000_000], 99.9), Some(7.0));
        assert_eq!(mean_ms(&[1_000_000, 3_000_000]), Some(2.0));
    }
}
