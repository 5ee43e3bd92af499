//! Wall-clock readings for the request path's timestamps (usage event times, health windows,
//! key expiry). Budget periods are read from the injected clock (`Settings::clock`) instead.
//! Kept below every module that stamps a time, so none of them imports the usage recorder for
//! the hour.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}
