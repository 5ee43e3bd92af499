//! Keeping the parts of a split listener even.
//!
//! The parts of [`Listener::split`](crate::Listener::split) accept from one socket, and which
//! part takes a connection is a race: the first thread to wake. A client that opens its
//! keep-alive connections in a burst (an SDK's pool, a load balancer) often finds one part
//! awake and the other asleep, and the awake one accepts most of them; since a connection stays
//! with the part that took it, the node then serves that client from one core while the other
//! idles. Measured on the peer bench's two cores (`wrk` c=32, four runs): runs split about 1:2
//! between the two proxy threads reached ~21.7k requests/s at ~41 µs of CPU each, even splits
//! ~24k at ~37.5 µs.
//!
//! So each part counts the connections it serves, and a part that accepts a connection while
//! it already serves well above the least busy part ([`slack`]) hands the connection to that
//! part instead, through the part's inbox. One hand-off costs a connection two `epoll_ctl`s
//! and a wake-up of the other thread, once, not per request; the slack keeps a client that
//! opens and closes a connection per request from paying it often. A connection handed to a
//! part waits for that part's thread, so a part must never block its thread (the proxy's never
//! does; it is the rule of its workers anyway).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// A connection accepted by one part for another.
struct Handoff {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// What the parts of one split listener share.
struct Balance {
    /// The connections each part serves now (handed-off ones counted from the hand-off).
    open: Box<[AtomicUsize]>,
    /// Each part's inbox.
    inboxes: Box<[mpsc::UnboundedSender<Handoff>]>,
}

/// One part's end of the balance.
pub(crate) struct Part {
    index: usize,
    balance: Arc<Balance>,
    inbox: mpsc::UnboundedReceiver<Handoff>,
}

#[cfg(test)]
impl Part {
    /// Connections placed and not yet ended, over all parts.
    pub(crate) fn placed(&self) -> usize {
        self.balance
            .open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }
}

impl Drop for Part {
    /// Connections still in the inbox of a part that stopped are closed; they stop counting.
    fn drop(&mut self) {
        self.inbox.close();
        while self.inbox.try_recv().is_ok() {
            self.balance.open[self.index].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Counts one connection for a part until it is dropped (when the connection has ended).
pub(crate) struct Counted {
    balance: Arc<Balance>,
    index: usize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.balance.open[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a freshly accepted connection is served.
pub(crate) enum Placed {
    /// By the part that accepted it.
    Here(TcpStream, OwnedSemaphorePermit, Counted),
    /// Handed to another part.
    Away,
}

/// How many connections more than the least busy part's `fewest` a part may serve before it
/// hands a new one on: two, and a quarter of `fewest` beyond that. A burst of keep-alive
/// connections still ends close to even (32 of them split 18 / 14); clients that open a
/// connection per request, whose counts wander by a few all the time, are seldom moved (with
/// a slack of two alone, a third of their connections were handed on under `wrk` c=32).
fn slack(fewest: usize) -> usize {
    2 + fewest / 4
}

/// The balance of `parts` parts, one [`Part`] each.
pub(crate) fn parts(parts: usize) -> Vec<Part> {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..parts).map(|_| mpsc::unbounded_channel()).unzip();
    let balance = Arc::new(Balance {
        open: (0..parts).map(|_| AtomicUsize::new(0)).collect(),
        inboxes: senders.into_boxed_slice(),
    });
    receivers
        .into_iter()
        .enumerate()
        .map(|(index, inbox)| Part {
            index,
            balance: balance.clone(),
            inbox,
        })
        .collect()
}

impl Part {
    /// The next connection another part handed to this one, registered with this thread's
    /// runtime, with its permit and this part's count of it.
    pub(crate) async fn handed(
        &mut self,
    ) -> Option<std::io::Result<(TcpStream, SocketAddr, OwnedSemaphorePermit, Counted)>> {
        let h = self.inbox.recv().await?;
        let counted = Counted {
            balance: self.balance.clone(),
            index: self.index,
        };
        Some(TcpStream::from_std(h.stream).map(|s| (s, h.peer, h.permit, counted)))
    }

    /// Places a connection this part accepted: kept here, or handed to the least busy part if
    /// this one serves [`slack`] or more connections above it.
    pub(crate) fn place(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> Placed {
        let open = &self.balance.open;
        let mine = open[self.index].load(Ordering::Relaxed);
        let (least, fewest) = open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .enumerate()
            .min_by_key(|&(_, n)| n)
            .unwrap_or((self.index, mine));
        if least == self.index || mine < fewest + slack(fewest) {
            return Placed::Here(stream, permit, self.count(self.index));
        }
        match self.hand_to(least, stream, peer, permit) {
            None => Placed::Away,
            // That part has stopped: serve it here.
            Some((stream, permit)) => Placed::Here(stream, permit, self.count(self.index)),
        }
    }

    /// Counts a connection for part `index`.
    fn count(&self, index: usize) -> Counted {
        self.balance.open[index].fetch_add(1, Ordering::Relaxed);
        Counted {
            balance: self.balance.clone(),
            index,
        }
    }

    /// Sends the connection to part `to`; gives it back if that part has stopped.
    fn hand_to(
        &self,
        to: usize,
        stream: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> Option<(TcpStream, OwnedSemaphorePermit)> {
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                // Taken off this runtime but not given back: the socket is closed and the
                // client sees a reset before its first request. Not expected to happen.
                tracing::warn!(error = %e, "a connection could not leave its worker");
                return None;
            }
        };
        // Counted before it is sent, so that the next decision sees it.
        self.balance.open[to].fetch_add(1, Ordering::Relaxed);
        let handoff = Handoff {
            stream,
            peer,
            permit,
        };
        let mpsc::error::SendError(back) = self.balance.inboxes[to].send(handoff).err()?;
        self.balance.open[to].fetch_sub(1, Ordering::Relaxed);
        match TcpStream::from_std(back.stream) {
            Ok(s) => Some((s, back.permit)),
            Err(e) => {
                tracing::warn!(error = %e, "a connection could not return to its worker");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    /// `n` server ends of loopback connections, with a permit each.
    async fn accepted(n: usize) -> Vec<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let permits = Arc::new(Semaphore::new(n));
        let mut out = Vec::new();
        for _ in 0..n {
            let _client = std::net::TcpStream::connect(addr).unwrap();
            let (stream, peer) = listener.accept().await.unwrap();
            out.push((stream, peer, permits.clone().try_acquire_owned().unwrap()));
        }
        out
    }

    fn open(part: &Part) -> Vec<usize> {
        part.balance
            .open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn the_slack_is_two_and_a_quarter_of_the_least_busy_parts_count() {
        assert_eq!(slack(0), 2);
        assert_eq!(slack(7), 3);
        assert_eq!(slack(16), 6);
    }

    #[tokio::test]
    async fn a_part_two_ahead_hands_on_and_counts_drop_when_connections_end_or_a_part_stops() {
        let mut parts = parts(2);
        let other = parts.pop().unwrap();
        let this = parts.pop().unwrap();
        let mut kept = Vec::new();
        for (stream, peer, permit) in accepted(3).await {
            match this.place(stream, peer, permit) {
                Placed::Here(_, _, counted) => kept.push(counted),
                Placed::Away => {}
            }
        }
        assert_eq!(kept.len(), 2, "the third is handed on");
        assert_eq!(open(&this), [2, 1]);
        drop(kept.pop());
        assert_eq!(open(&this), [1, 1], "an ended connection stops counting");
        // The other part stops with the handed connection still in its inbox.
        drop(other);
        assert_eq!(open(&this), [1, 0]);
        // And a part that has stopped is handed nothing: this one keeps what it accepts.
        for (stream, peer, permit) in accepted(2).await {
            assert!(matches!(this.place(stream, peer, permit), Placed::Here(..)));
        }
    }

    #[tokio::test]
    async fn a_handed_connection_is_served_by_the_receiving_part_and_counted_there() {
        let mut parts = parts(2);
        let mut other = parts.pop().unwrap();
        let this = parts.pop().unwrap();
        let mut kept = Vec::new();
        for (stream, peer, permit) in accepted(3).await {
            if let Placed::Here(_, _, counted) = this.place(stream, peer, permit) {
                kept.push(counted);
            }
        }
        let (_stream, _peer, _permit, counted) =
            tokio::time::timeout(std::time::Duration::from_secs(5), other.handed())
                .await
                .expect("the third connection is in the other part's inbox")
                .unwrap()
                .unwrap();
        assert_eq!(open(&this), [2, 1]);
        drop(counted);
        assert_eq!(open(&this), [2, 0]);
    }
}
