//! Requests refused before a key is authenticated (R-5.1): billable to no one, so they never
//! reach the metered usage spool (an anonymous flood must not fill it). Each is counted by
//! reason in the metrics and, sampled, recorded in the security log ([`log`]). Failed
//! authentication is throttled per source address ([`throttle`]): past the limit, the source
//! gets 429 before its key is hashed. Per-source state lives in fixed-bound tables, so an
//! attacker rotating addresses cannot grow memory.
//!
//! A key that is known but revoked, disabled or expired is identified: its refusal stays a
//! usage event billable to its team (it still counts as a failed authentication here).

pub mod log;
pub mod refusal;
mod table;
mod throttle;

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use self::log::{Record, Sampler};
use self::throttle::Throttle;

/// Tunables, with production defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// Failed authentications a source address may have per window before it gets 429
    /// (0: no throttle). Sources behind one NAT share the count.
    pub auth_failure_limit: u32,
    pub auth_failure_window: Duration,
    /// Source addresses remembered by the throttle and by the sampler (each).
    pub max_sources: usize,
    /// Security-log records a second per source address (bursts of twice as many).
    pub log_per_source_per_sec: u32,
    /// Security-log records a second in all (bursts of twice as many).
    pub log_global_per_sec: u32,
    /// Size at which `security.log` is rotated to `security.log.1`.
    pub log_max_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auth_failure_limit: 20,
            auth_failure_window: Duration::from_secs(60),
            max_sources: 65_536,
            log_per_source_per_sec: 2,
            log_global_per_sec: 50,
            log_max_bytes: 10 * 1024 * 1024,
        }
    }
}

/// Who sent a request, as the throttle and the sampler count it: the IPv4 address, or the
/// IPv6 /64 (one host usually holds a whole /64). `Unknown` when the server did not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
    Unknown,
}

impl Source {
    pub fn of(addr: Option<IpAddr>) -> Self {
        match addr {
            None => Source::Unknown,
            Some(IpAddr::V4(a)) => Source::V4(a.octets()),
            Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let o = a.octets();
                    Source::V6Prefix([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

/// Why a request was refused before a key was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MissingKey,
    InvalidKey,
    /// Too many failed authentications from the source.
    Throttled,
    UnknownRoute,
    /// A malformed request refused before its key was read (a bad Gemini model path).
    BadRequest,
    /// The node has no config yet, so no key can be checked.
    NoConfig,
    /// The usage spool is full and refusing.
    MeteringUnavailable,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::MissingKey,
        Reason::InvalidKey,
        Reason::Throttled,
        Reason::UnknownRoute,
        Reason::BadRequest,
        Reason::NoConfig,
        Reason::MeteringUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingKey => "missing_key",
            Reason::InvalidKey => "invalid_key",
            Reason::Throttled => "throttled",
            Reason::UnknownRoute => "unknown_route",
            Reason::BadRequest => "bad_request",
            Reason::NoConfig => "no_config",
            Reason::MeteringUnavailable => "metering_unavailable",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The node's guard against anonymous traffic: throttle, sampler, log writer and counters.
pub struct Guard {
    throttle: Mutex<Throttle>,
    sampler: Mutex<Sampler>,
    log: mpsc::Sender<Record>,
    refused: [AtomicU64; Reason::ALL.len()],
    /// Records not written because their source or the node was over its sampling rate.
    sampled_out: AtomicU64,
    /// Records lost because the writer was behind or the write failed.
    dropped: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Guard {
    /// A guard writing its log in `data_dir` (spawns the writer task: call within a runtime).
    pub fn start(data_dir: &Path, options: &Options) -> Arc<Guard> {
        let dropped = Arc::new(AtomicU64::new(0));
        let (log, _writer) = log::spawn_writer(data_dir, options.log_max_bytes, dropped.clone());
        Arc::new(Guard {
            throttle: Mutex::new(Throttle::new(
                options.auth_failure_limit,
                options.auth_failure_window,
                options.max_sources,
            )),
            sampler: Mutex::new(Sampler::new(
                options.log_per_source_per_sec,
                options.log_global_per_sec,
                options.max_sources,
                Instant::now(),
            )),
            log,
            refused: std::array::from_fn(|_| AtomicU64::new(0)),
            sampled_out: AtomicU64::new(0),
            dropped,
        })
    }

    /// How long `source` must wait before it may try a key again, if it is throttled. An
    /// unknown source is never throttled: it would be everyone at once.
    pub fn throttled(&self, source: Source) -> Option<Duration> {
        if source == Source::Unknown {
            return None;
        }
        lock(&self.throttle).blocked(source, Instant::now())
    }

    /// Counts a failed authentication of `source` (a missing, unknown or refused key).
    pub fn auth_failed(&self, source: Source) {
        if source != Source::Unknown {
            lock(&self.throttle).failed(source, Instant::now());
        }
    }

    /// Counts a request refused before its key was authenticated and, if the sampler lets it
    /// through, queues its record for the security log. Never blocks.
    pub fn refused(&self, source: Source, reason: Reason, record: impl FnOnce() -> Record) {
        self.refused[reason.index()].fetch_add(1, Relaxed);
        if !lock(&self.sampler).admit(source, Instant::now()) {
            self.sampled_out.fetch_add(1, Relaxed);
            return;
        }
        if self.log.try_send(record()).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Refusals of `reason` so far.
    pub fn refused_total(&self, reason: Reason) -> u64 {
        self.refused[reason.index()].load(Relaxed)
    }

    /// The guard's counters, for the metrics (`crate::metrics`).
    pub fn counts(&self) -> Counts {
        Counts {
            refused: Reason::ALL.map(|r| (r, self.refused_total(r))),
            sampled_out: self.sampled_out.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            throttle_sources: lock(&self.throttle).tracked() as u64,
        }
    }
}

/// What the guard has counted so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Refusals before authentication, by reason.
    pub refused: [(Reason, u64); Reason::ALL.len()],
    /// Records not written because their source or the node was over its sampling rate.
    pub sampled_out: u64,
    /// Records lost because the writer was behind or the write failed.
    pub dropped: u64,
    /// Source addresses the failed-authentication throttle remembers.
    pub throttle_sources: u64,
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn guard(limit: u32) -> (Arc<Guard>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("mg-guard-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = Options {
            auth_failure_limit: limit,
            ..Options::default()
        };
        (Guard::start(&dir, &options), dir)
    }

    #[tokio::test]
    async fn a_request_without_a_known_address_is_counted_but_never_throttles_everyone() {
        let (g, dir) = guard(2);
        for _ in 0..10 {
            g.auth_failed(Source::Unknown);
        }
        assert_eq!(g.throttled(Source::Unknown), None);
        let known = Source::of(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        g.auth_failed(known);
        g.auth_failed(known);
        assert!(g.throttled(known).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn refusals_are_counted_by_reason() {
        let (g, dir) = guard(2);
        let source = Source::of(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let record = || {
            Record::new(
                chrono::Utc::now(),
                "127.0.0.1",
                "GET",
                "/x",
                "unknown_route",
                "",
                "r",
            )
        };
        for _ in 0..10 {
            g.refused(source, Reason::UnknownRoute, record);
        }
        let counts = g.counts();
        let refused = |reason| counts.refused.iter().find(|(r, _)| *r == reason).unwrap().1;
        assert_eq!(refused(Reason::UnknownRoute), 10);
        assert_eq!(refused(Reason::MissingKey), 0);
        assert_eq!(counts.sampled_out, 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
