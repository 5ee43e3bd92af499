//! The rate-limit lease ledger's arithmetic. The ledger itself is kept in the database (see
//! `super::stored`): each allocation loads its measure's window here, grants, and writes the
//! caller's lease back in one transaction.
//!
//! **Invariant (windowed measures: requests, tokens).** For one limit, measure and minute the
//! ledger keeps, per data-plane incarnation, the cumulative amount granted and the amount it
//! last reported taken. A live lease claims its whole grant, an expired one what it reported. A
//! grant is made only from `limit − Σ claims`, so `Σ claims ≤ limit`; a data plane admits a
//! request only by taking from its own grant before its lease ends, so the fleet admits at most
//! `limit` requests in a minute. Tokens are taken as an estimate and settled to the actual count,
//! so the token bound holds up to the estimate's error on requests in flight.
//!
//! **Invariant (concurrent slots).** A node's grant is the number of slots it may hold. It only
//! ever lowers it itself (after lowering its own local cap, so it never holds more in flight
//! than the ledger counts); the ledger raises it only from `limit − Σ other claims`. An expired
//! lease keeps claiming its slots for [`SLOT_GRACE`] (its requests may still be running), then
//! nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use modelgate_shared::limits::Measure;
use serde::Serialize;

/// How long a grant stays valid without a renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How long a restarted ledger only learns: every lease its predecessor granted has lapsed, and
/// every node that took from one has reported (data planes report a moving count every few
/// seconds, and any count at least every 5 s).
pub const WARM_UP: Duration = Duration::from_secs(15);
/// How long an expired concurrency lease still counts its slots: the longest a request admitted
/// under it may reasonably still be running.
pub const SLOT_GRACE: Duration = Duration::from_secs(600);

/// A data plane's report and ask for one measure of one limit.
#[derive(Debug, Clone)]
pub struct RateAsk {
    pub node: String,
    pub limit_id: String,
    pub measure: Measure,
    pub window_start: i64,
    /// Taken in the window (windowed) or slots now held (concurrent).
    pub consumed: i64,
    pub want: i64,
    pub need: i64,
    /// What the node holds (cumulative grant in the window, or slots).
    pub held: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateGrant {
    pub granted_total: i64,
    pub window_start: i64,
    pub lease_ttl: Duration,
    pub remaining: i64,
}

/// One node's share of a measure, for the admin view.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeShare {
    pub node: String,
    pub granted: i64,
    pub consumed: i64,
    pub lease_live: bool,
}

struct Lease {
    granted: i64,
    consumed: i64,
    expires: Instant,
}

struct Window {
    start: i64,
    nodes: HashMap<String, Lease>,
}

/// The ledger is still learning what nodes hold (after a restart): no new grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmingUp;

/// One holder's lease as stored: cumulative grant, reported taken, lease end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredLease {
    pub granted: i64,
    pub consumed: i64,
    pub expires: Instant,
}

#[derive(Default)]
pub struct Ledger {
    /// One allocation at a time in this process (the window above is the one it just read).
    pub(crate) serial: tokio::sync::Mutex<()>,
    /// By limit id and measure: the current window only (an older one is dropped when a newer
    /// one starts).
    windows: Mutex<HashMap<(String, Measure), Window>>,
    /// Until then, reports re-adopt what nodes hold but nothing new is granted.
    warm_until: Mutex<Option<Instant>>,
}

impl Lease {
    /// What the holder may be using: a minute's grant counts until the minute ends (a node may
    /// take from it without reporting, lease or no lease); slots count while the lease lives
    /// and for [`SLOT_GRACE`] after.
    fn claim(&self, measure: Measure, now: Instant) -> i64 {
        if measure.windowed() || self.expires + SLOT_GRACE > now {
            self.granted
        } else {
            0
        }
    }
}

impl Ledger {
    /// Replaces what this process knew of one measure's window with the stored leases.
    pub fn install(
        &self,
        limit_id: &str,
        measure: Measure,
        start: i64,
        leases: impl IntoIterator<Item = (String, StoredLease)>,
    ) {
        let nodes = leases
            .into_iter()
            .map(|(node, l)| {
                (
                    node,
                    Lease {
                        granted: l.granted,
                        consumed: l.consumed,
                        expires: l.expires,
                    },
                )
            })
            .collect();
        let mut windows = match self.windows.lock() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        windows.insert((limit_id.to_owned(), measure), Window { start, nodes });
    }

    /// One holder's lease in a measure's window, to store.
    pub fn lease_of(&self, limit_id: &str, measure: Measure, node: &str) -> Option<StoredLease> {
        let windows = match self.windows.lock() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        let l = windows
            .get(&(limit_id.to_owned(), measure))?
            .nodes
            .get(node)?;
        Some(StoredLease {
            granted: l.granted,
            consumed: l.consumed,
            expires: l.expires,
        })
    }

    /// A control plane that starts while rate limits exist may have had a predecessor that
    /// leased shares still live at data planes; it learns them from the nodes' reports (`held`)
    /// and grants nothing new until every such lease has either reported or lapsed.
    pub fn warm_up(&self, now: Instant) {
        if let Ok(mut w) = self.warm_until.lock() {
            *w = Some(now + WARM_UP);
        }
    }

    /// Granted and reported-taken totals and the per-node shares of one measure's window.
    pub fn state(
        &self,
        limit_id: &str,
        measure: Measure,
        start: i64,
    ) -> (i64, i64, Vec<NodeShare>) {
        let now = Instant::now();
        let Ok(windows) = self.windows.lock() else {
            return (0, 0, Vec::new());
        };
        let Some(w) = windows
            .get(&(limit_id.to_owned(), measure))
            .filter(|w| w.start == start)
        else {
            return (0, 0, Vec::new());
        };
        let mut shares: Vec<NodeShare> = w
            .nodes
            .iter()
            .map(|(node, l)| NodeShare {
                node: node.clone(),
                granted: l.granted,
                consumed: l.consumed,
                lease_live: l.expires > now,
            })
            .collect();
        shares.sort_by(|a, b| a.node.cmp(&b.node));
        let granted = w.nodes.values().map(|l| l.claim(measure, now)).sum();
        let consumed = w.nodes.values().map(|l| l.consumed).sum();
        (granted, consumed, shares)
    }

    /// Records the node's report and grants from what is left of `amount` in the window that
    /// starts at `start` (the control plane's clock decides the window).
    pub fn grant(
        &self,
        amount: i64,
        ask: &RateAsk,
        start: i64,
        now: Instant,
    ) -> Result<RateGrant, WarmingUp> {
        let warming = self
            .warm_until
            .lock()
            .ok()
            .and_then(|w| *w)
            .is_some_and(|t| t > now);
        let mut windows = match self.windows.lock() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        let w = windows
            .entry((ask.limit_id.clone(), ask.measure))
            .or_insert_with(|| Window {
                start,
                nodes: HashMap::new(),
            });
        if w.start < start {
            *w = Window {
                start,
                nodes: HashMap::new(),
            };
        }
        if ask.window_start != w.start {
            // The node counts in another minute than this control plane (clock skew at a
            // boundary): record nothing, grant nothing; it asks again in the right one.
            return Ok(RateGrant {
                granted_total: 0,
                window_start: w.start,
                lease_ttl: LEASE_TTL,
                remaining: 0,
            });
        }
        let others: i64 = w
            .nodes
            .iter()
            .filter(|(n, _)| **n != ask.node)
            .map(|(_, l)| l.claim(ask.measure, now))
            .sum();
        let me = w.nodes.entry(ask.node.clone()).or_insert(Lease {
            granted: 0,
            consumed: 0,
            expires: now,
        });
        let reported = ask.consumed.max(0);
        if ask.measure.windowed() {
            if warming {
                // Re-adopt what a predecessor of this control plane granted, within what the
                // other nodes' claims leave.
                me.granted = me.granted.max(ask.held.min(amount - others).max(0));
            }
            // What a node took is a fact (even past its grant: fail_open, or tokens settled
            // above their estimate): it counts.
            me.consumed = reported;
            me.granted = me.granted.max(reported);
        } else {
            // The node's count of slots is the truth: lower after a release (it lowered its own
            // cap first), higher while it served past its grant (fail_open).
            me.granted = reported;
            me.consumed = reported;
        }
        me.expires = now + LEASE_TTL;
        if warming {
            return Err(WarmingUp);
        }
        let (mut claims, mut live, mut taken) = (0i64, 0i64, 0i64);
        for l in w.nodes.values() {
            claims += l.claim(ask.measure, now);
            live += i64::from(l.expires > now);
            taken += l.consumed;
        }
        let available = (amount - claims).max(0);
        let mut granted_total = 0;
        let mut left = available;
        if let Some(me) = w.nodes.get_mut(&ask.node) {
            // Size: the node's share of what the window has taken so far (an equal share of
            // the live nodes while nothing is), at least what it needs now.
            let share = i128::from(available) * i128::from(me.consumed + 1)
                / i128::from(taken + live.max(1));
            let share = i64::try_from(share).unwrap_or(available);
            let size = share.min(ask.want.max(0)).max(ask.need.max(0));
            let extra = if size <= available {
                size
            } else if ask.need <= available {
                available
            } else {
                0
            };
            me.granted += extra;
            left -= extra;
            granted_total = me.granted;
        }
        Ok(RateGrant {
            granted_total,
            window_start: w.start,
            lease_ttl: LEASE_TTL,
            remaining: left,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(node: &str, measure: Measure, consumed: i64, want: i64, need: i64) -> RateAsk {
        RateAsk {
            node: node.into(),
            limit_id: "l".into(),
            measure,
            window_start: 60,
            consumed,
            want,
            need,
            held: 0,
        }
    }

    #[test]
    fn a_window_never_grants_more_than_the_limit() {
        let l = Ledger::default();
        let now = Instant::now();
        for _ in 0..40 {
            for node in ["a", "b", "c"] {
                l.grant(30, &ask(node, Measure::Requests, 0, 3, 1), 60, now)
                    .unwrap();
            }
        }
        let (granted, _, shares) = l.state("l", Measure::Requests, 60);
        assert_eq!(granted, 30);
        assert_eq!(shares.iter().map(|s| s.granted).sum::<i64>(), 30);
    }

    #[test]
    fn a_new_minute_starts_from_nothing() {
        let l = Ledger::default();
        let now = Instant::now();
        let g = l
            .grant(10, &ask("a", Measure::Requests, 0, 10, 1), 60, now)
            .unwrap();
        assert_eq!(g.granted_total, 10);
        let mut next = ask("a", Measure::Requests, 10, 10, 1);
        next.window_start = 120;
        let g = l.grant(10, &next, 120, now).unwrap();
        assert_eq!((g.granted_total, g.window_start), (10, 120));
        assert_eq!(l.state("l", Measure::Requests, 60).0, 0);
    }

    #[test]
    fn a_minute_s_grant_counts_until_the_minute_ends_even_after_its_lease_lapses() {
        let l = Ledger::default();
        let now = Instant::now();
        l.grant(10, &ask("a", Measure::Requests, 0, 10, 1), 60, now)
            .unwrap();
        // a took 1 without reporting; its lease lapses; b still gets nothing this minute.
        let later = now + LEASE_TTL + Duration::from_secs(1);
        let g = l
            .grant(10, &ask("b", Measure::Requests, 0, 10, 1), 60, later)
            .unwrap();
        assert_eq!(g.granted_total, 0);
        let mut next = ask("b", Measure::Requests, 0, 10, 1);
        next.window_start = 120;
        assert_eq!(l.grant(10, &next, 120, later).unwrap().granted_total, 10);
    }

    #[test]
    fn what_a_node_took_past_its_grant_counts() {
        let l = Ledger::default();
        let now = Instant::now();
        l.grant(10, &ask("a", Measure::Requests, 0, 2, 1), 60, now)
            .unwrap();
        // a served 7 on its own while the control plane was away (fail_open).
        l.grant(10, &ask("a", Measure::Requests, 7, 0, 0), 60, now)
            .unwrap();
        let g = l
            .grant(10, &ask("b", Measure::Requests, 0, 10, 3), 60, now)
            .unwrap();
        assert_eq!((g.granted_total, g.remaining), (3, 0));
    }

    #[test]
    fn an_ask_for_another_minute_gets_nothing() {
        let l = Ledger::default();
        let now = Instant::now();
        let mut skewed = ask("a", Measure::Requests, 0, 10, 1);
        skewed.window_start = 0;
        let g = l.grant(10, &skewed, 60, now).unwrap();
        assert_eq!((g.granted_total, g.window_start), (0, 60));
        assert_eq!(l.state("l", Measure::Requests, 60).0, 0);
    }

    #[test]
    fn slots_given_back_go_to_another_node() {
        let l = Ledger::default();
        let now = Instant::now();
        let mut a = ask("a", Measure::Concurrent, 0, 4, 1);
        a.window_start = 0;
        assert_eq!(l.grant(4, &a, 0, now).unwrap().granted_total, 4);
        let mut b = ask("b", Measure::Concurrent, 0, 1, 1);
        b.window_start = 0;
        assert_eq!(l.grant(4, &b, 0, now).unwrap().granted_total, 0);
        // a keeps one slot and gives three back.
        let mut release = ask("a", Measure::Concurrent, 1, 0, 0);
        release.window_start = 0;
        assert_eq!(l.grant(4, &release, 0, now).unwrap().granted_total, 1);
        assert_eq!(l.grant(4, &b, 0, now).unwrap().granted_total, 1);
        // A node that served past its grant (fail_open) reports what it holds: it counts.
        let mut over = ask("b", Measure::Concurrent, 3, 0, 0);
        over.window_start = 0;
        assert_eq!(l.grant(4, &over, 0, now).unwrap().granted_total, 3);
        assert_eq!(l.state("l", Measure::Concurrent, 0).0, 4);
    }

    #[test]
    fn after_a_restart_holdings_are_re_adopted_and_nothing_new_is_granted_for_a_lease() {
        let l = Ledger::default();
        let now = Instant::now();
        l.warm_up(now);
        let mut a = ask("a", Measure::Requests, 3, 5, 1);
        a.held = 8;
        assert_eq!(l.grant(10, &a, 60, now), Err(WarmingUp));
        assert_eq!(l.state("l", Measure::Requests, 60).0, 8);
        let later = now + WARM_UP + Duration::from_secs(1);
        // a renewed its lease meanwhile: it still claims its 8.
        l.grant(
            10,
            &ask("a", Measure::Requests, 3, 0, 0),
            60,
            later - Duration::from_secs(2),
        )
        .unwrap_err();
        let g = l
            .grant(10, &ask("b", Measure::Requests, 0, 10, 2), 60, later)
            .unwrap();
        assert_eq!((g.granted_total, g.remaining), (2, 0));
    }

    #[test]
    fn an_expired_slot_lease_claims_its_slots_until_the_grace_ends() {
        let l = Ledger::default();
        let now = Instant::now();
        let mut a = ask("a", Measure::Concurrent, 0, 2, 2);
        a.window_start = 0;
        l.grant(2, &a, 0, now).unwrap();
        let mut b = ask("b", Measure::Concurrent, 0, 1, 1);
        b.window_start = 0;
        let later = now + LEASE_TTL + Duration::from_secs(1);
        assert_eq!(l.grant(2, &b, 0, later).unwrap().granted_total, 0);
        let much_later = now + LEASE_TTL + SLOT_GRACE + Duration::from_secs(1);
        assert_eq!(l.grant(2, &b, 0, much_later).unwrap().granted_total, 1);
    }
}
