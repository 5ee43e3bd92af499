//! hyper's timer for the listener's HTTP/1 connections: deadlines kept in one table per
//! listener and checked by a ticker task, instead of in tokio's timer wheel.
//!
//! hyper arms its header-read timer each time a keep-alive connection waits for its next
//! request head, and drops it once the head is in. Registered with tokio, that deadline is the
//! runtime's earliest (the body, attempt and idle timers all lie further out), and tokio wakes
//! its driver for a deadline earlier than the one it parked for: a `write` to the runtime's
//! eventfd, made even by the runtime's own thread, which is the one that will look at the
//! deadline next. On the proxy's worker threads (one runtime each) that was about one system
//! call in two requests, and the wheel's insertion and removal another ~1.8k instructions.
//!
//! Here a deadline is a slot in a table under an uncontended lock, taken when the sleep is
//! first polled and given back when it is dropped. The price is precision: a deadline fires on
//! the first tick after it passes, up to one tick late and never early. The ticker lives on the
//! runtime that started the timer (the listener's) and ends once the timer and every sleep made
//! from it are gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;
use tokio::time::MissedTickBehavior;

/// The tick for deadlines `timeout` apart: a twentieth of it, between 5 ms and 250 ms (the
/// default 10 s header timeout fires at most a quarter of a second late).
pub(crate) fn tick_for(timeout: Duration) -> Duration {
    (timeout / 20).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

/// A [`hyper::rt::Timer`] whose sleeps fire on a ticker's ticks.
#[derive(Clone)]
pub(crate) struct CoarseTimer {
    table: Arc<Table>,
}

struct Table {
    slots: Mutex<Slab<Slot>>,
}

struct Slot {
    deadline: Instant,
    /// Set by the ticker once the deadline has passed.
    fired: bool,
    waker: Option<Waker>,
}

impl Table {
    fn slots(&self) -> MutexGuard<'_, Slab<Slot>> {
        // A slot is a plain value: a panic elsewhere leaves nothing half-changed in it.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks every slot whose deadline is at or before `now` as fired and wakes its sleep.
    fn fire_due(&self, now: Instant) {
        let due: Vec<Waker> = {
            let mut slots = self.slots();
            slots
                .iter_mut()
                .filter(|(_, s)| !s.fired && s.deadline <= now)
                .filter_map(|(_, s)| {
                    s.fired = true;
                    s.waker.take()
                })
                .collect()
        };
        // Woken outside the lock: a woken task may be polled (and lock) at once.
        due.into_iter().for_each(Waker::wake);
    }
}

impl CoarseTimer {
    /// A timer ticking every `tick`, its ticker spawned on the current tokio runtime.
    pub(crate) fn start(tick: Duration) -> Self {
        let table = Arc::new(Table {
            slots: Mutex::new(Slab::new()),
        });
        tokio::spawn(tick_until_unused(Arc::downgrade(&table), tick));
        CoarseTimer { table }
    }

    fn sleep_until_instant(&self, deadline: Instant) -> CoarseSleep {
        CoarseSleep {
            table: self.table.clone(),
            deadline,
            slot: None,
        }
    }
}

async fn tick_until_unused(table: Weak<Table>, tick: Duration) {
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(table) = table.upgrade() else {
            return;
        };
        table.fire_due(Instant::now());
    }
}

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.sleep_until_instant(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.sleep_until_instant(deadline))
    }
}

/// A sleep of a [`CoarseTimer`]: ready once the ticker has seen its deadline pass.
pub(crate) struct CoarseSleep {
    table: Arc<Table>,
    deadline: Instant,
    /// Its slot in the table, from its first poll.
    slot: Option<usize>,
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut slots = this.table.slots();
        match this.slot {
            None => {
                this.slot = Some(slots.insert(Slot {
                    deadline: this.deadline,
                    fired: false,
                    waker: Some(cx.waker().clone()),
                }));
                Poll::Pending
            }
            Some(key) => {
                let slot = &mut slots[key];
                if slot.fired {
                    return Poll::Ready(());
                }
                if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        if let Some(key) = self.slot.take() {
            self.table.slots().remove(key);
        }
    }
}

impl hyper::rt::Sleep for CoarseSleep {}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending_slots(timer: &CoarseTimer) -> usize {
        timer.table.slots().len()
    }

    /// Awaits `sleep`, failing the test if no tick ends it within five seconds.
    async fn ends(sleep: impl Future<Output = ()>) {
        tokio::time::timeout(Duration::from_secs(5), sleep)
            .await
            .expect("the sleep did not end within 5 s of its deadline");
    }

    #[test]
    fn the_tick_is_a_twentieth_of_the_timeout_within_its_bounds() {
        assert_eq!(
            tick_for(Duration::from_secs(10)),
            Duration::from_millis(250)
        );
        assert_eq!(
            tick_for(Duration::from_millis(400)),
            Duration::from_millis(20)
        );
        assert_eq!(
            tick_for(Duration::from_millis(20)),
            Duration::from_millis(5)
        );
    }

    #[tokio::test]
    async fn a_sleep_ends_on_a_tick_after_its_deadline_and_never_before() {
        let timer = CoarseTimer::start(Duration::from_millis(10));
        let start = Instant::now();
        ends(timer.sleep_until_instant(start + Duration::from_millis(100))).await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert_eq!(
            pending_slots(&timer),
            0,
            "the ended sleep gave its slot back"
        );
    }

    #[tokio::test]
    async fn a_sleep_dropped_before_its_deadline_gives_its_slot_back_and_never_fires() {
        let timer = CoarseTimer::start(Duration::from_millis(5));
        let mut early =
            Box::pin(timer.sleep_until_instant(Instant::now() + Duration::from_secs(60)));
        let waker = std::task::Waker::noop();
        assert!(early
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending());
        assert_eq!(pending_slots(&timer), 1);
        drop(early);
        assert_eq!(pending_slots(&timer), 0);
        // A later sleep is not confused with the slot the first one left.
        let start = Instant::now();
        ends(timer.sleep_until_instant(start + Duration::from_millis(20))).await;
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[tokio::test]
    async fn sleeps_fire_in_deadline_order_each_on_its_own_tick() {
        let timer = CoarseTimer::start(Duration::from_millis(5));
        let start = Instant::now();
        let later = timer.sleep_until_instant(start + Duration::from_millis(300));
        let sooner = timer.sleep_until_instant(start + Duration::from_millis(30));
        let mut later = Box::pin(later);
        let waker = std::task::Waker::noop();
        assert!(later
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending());
        ends(sooner).await;
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(
            later
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending(),
            "the later deadline has not passed"
        );
        ends(later).await;
        assert!(start.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn the_ticker_ends_once_the_timer_and_its_sleeps_are_gone() {
        let timer = CoarseTimer::start(Duration::from_millis(5));
        let table = Arc::downgrade(&timer.table);
        let sleep = timer.sleep_until_instant(Instant::now() + Duration::from_secs(60));
        drop(timer);
        assert!(table.upgrade().is_some(), "a sleep still holds the table");
        drop(sleep);
        // The ticker holds the table only weakly, so nothing keeps it now; the ticker finds
        // it gone on its next tick and returns.
        assert!(table.upgrade().is_none());
    }
}
