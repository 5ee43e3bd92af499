//! Wall-clock time as an input. Budget periods are computed from "now"; production passes
//! [`SystemClock`], tests a [`SettableClock`] they can move across a UTC boundary. Both planes
//! take the clock from outside (their `Settings`), so the whole system sees one time.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The clock every plane uses unless told otherwise.
pub type SharedClock = Arc<dyn Clock>;

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock shifted by a settable offset: after [`SettableClock::set`] it reads the
/// given instant and then keeps running at real speed (leases and backoffs still elapse).
#[derive(Debug, Default)]
pub struct SettableClock {
    offset_ms: AtomicI64,
}

impl SettableClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// From now on `now()` reads `at` plus the real time elapsed since this call.
    pub fn set(&self, at: DateTime<Utc>) {
        let offset = at.timestamp_millis() - Utc::now().timestamp_millis();
        self.offset_ms.store(offset, Ordering::SeqCst);
    }
}

impl Clock for SettableClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settable_clock_reads_what_it_was_set_to_and_keeps_running() {
        let c = SettableClock::new();
        let at: DateTime<Utc> = "2026-11-30T23:59:50Z".parse().unwrap();
        c.set(at);
        let read = c.now();
        assert!(
            read >= at && read < at + chrono::Duration::seconds(5),
            "{read}"
        );
    }
}
