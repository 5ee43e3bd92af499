//! Wall-clock readings for the request path's timestamps (usage event times, health windows,
//! key expiry). Budget periods are read from the injected clock (`Settings::clock`) instead.
//! Kept below every module that stamps a time, so none of them imports the usage recorder for
//! the hour.
//!
//! Read from `SystemTime` as a duration since the epoch: a request takes a dozen of these, and
//! going through `chrono::Utc::now()` split each reading into a date and a time of day only to
//! join them again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Since the Unix epoch; a clock set before 1970 reads as the epoch.
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    i64::try_from(since_epoch().as_micros()).unwrap_or(i64::MAX)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    i64::try_from(since_epoch().as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readings_agree_with_chrono_in_every_unit() {
        let before = chrono::Utc::now();
        let (ms, us, s) = (now_ms(), now_us(), unix_now());
        let after = chrono::Utc::now();
        assert!((before.timestamp_millis()..=after.timestamp_millis()).contains(&ms));
        assert!((before.timestamp_micros()..=after.timestamp_micros()).contains(&us));
        assert!((before.timestamp()..=after.timestamp()).contains(&s));
    }
}
