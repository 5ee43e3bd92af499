//! Failed authentication, throttled per source: after `limit` failures within a fixed window,
//! the source is refused (429) until the window ends, before its key is even hashed.

use std::time::{Duration, Instant};

use super::table::Table;
use super::Source;

#[derive(Debug)]
pub(crate) struct Throttle {
    /// Failures a source may have per window; 0 turns the throttle off.
    limit: u32,
    window: Duration,
    sources: Table<Source, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

impl Throttle {
    pub(crate) fn new(limit: u32, window: Duration, capacity: usize) -> Self {
        Throttle {
            limit,
            window,
            sources: Table::new(capacity),
        }
    }

    /// How long `source` must wait, if it has used up its failures in the current window.
    pub(crate) fn blocked(&self, source: Source, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let w = self.sources.get(&source)?;
        let end = w.start + self.window;
        (w.failures >= self.limit && now < end).then(|| end - now)
    }

    /// Counts one failed authentication of `source`.
    pub(crate) fn failed(&mut self, source: Source, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let window = self.window;
        let w = self.sources.entry(source, || Window {
            start: now,
            failures: 0,
        });
        if now >= w.start + window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    pub(crate) fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(n: u32) -> Source {
        Source::of(Some(IpAddr::V4(Ipv4Addr::from(n))))
    }

    #[test]
    fn a_source_is_blocked_after_its_failures_until_the_window_ends() {
        let mut t = Throttle::new(3, Duration::from_secs(60), 16);
        let start = Instant::now();
        for _ in 0..2 {
            t.failed(v4(1), start);
        }
        assert_eq!(t.blocked(v4(1), start), None, "two failures of three");
        t.failed(v4(1), start);
        let wait = t.blocked(v4(1), start + Duration::from_secs(10));
        assert_eq!(wait, Some(Duration::from_secs(50)));
        assert_eq!(
            t.blocked(v4(2), start),
            None,
            "another source is not blocked"
        );
        assert_eq!(
            t.blocked(v4(1), start + Duration::from_secs(60)),
            None,
            "the window is over"
        );
        // A failure in a new window starts a new count.
        t.failed(v4(1), start + Duration::from_secs(61));
        assert_eq!(t.blocked(v4(1), start + Duration::from_secs(61)), None);
    }

    #[test]
    fn a_limit_of_zero_never_blocks() {
        let mut t = Throttle::new(0, Duration::from_secs(60), 16);
        let now = Instant::now();
        for _ in 0..100 {
            t.failed(v4(1), now);
        }
        assert_eq!(t.blocked(v4(1), now), None);
        assert_eq!(t.tracked(), 0, "nothing is remembered when off");
    }

    #[test]
    fn rotating_addresses_cannot_grow_the_table_past_its_bound() {
        let mut t = Throttle::new(3, Duration::from_secs(60), 1_000);
        let now = Instant::now();
        for n in 0..100_000 {
            t.failed(v4(n), now);
            assert!(t.tracked() <= 1_000, "{} entries after {n}", t.tracked());
        }
        // IPv6: one /64 is one source, however many addresses it holds.
        let mut t = Throttle::new(3, Duration::from_secs(60), 1_000);
        for n in 0..10_000u128 {
            let addr = Ipv6Addr::from((0x2001_0db8_u128 << 96) | n);
            t.failed(Source::of(Some(IpAddr::V6(addr))), now);
        }
        assert_eq!(t.tracked(), 1);
        let other = Ipv6Addr::from((0x2001_0db8_u128 << 96) | (1 << 64));
        assert_eq!(t.blocked(Source::of(Some(IpAddr::V6(other))), now), None);
        let same = Ipv6Addr::from((0x2001_0db8_u128 << 96) | 12_345);
        assert!(t.blocked(Source::of(Some(IpAddr::V6(same))), now).is_some());
    }

    #[test]
    fn a_source_still_failing_survives_a_flood_of_fresh_addresses() {
        // The attacker's rotation evicts idle entries, not the ones in use.
        let mut t = Throttle::new(3, Duration::from_secs(60), 100);
        let now = Instant::now();
        let noisy = v4(u32::MAX);
        for n in 0..10_000 {
            t.failed(v4(n), now);
            if n % 10 == 0 {
                t.failed(noisy, now);
            }
        }
        assert!(t.blocked(noisy, now).is_some());
    }
}
