//! Usage: one event per request, written to the local spool ([`spool`]) and shipped to the
//! control plane ([`shipper`]). [`Recorder`] guarantees the "one per request": it is created when
//! a request arrives and either finished explicitly or, if the request future is dropped (the
//! client went away), records a `client_cancel` event from its `Drop`.

pub mod metered;
pub mod shipper;
pub mod spool;

use std::time::Instant;

use modelgate_shared::usage::{ErrorClass, UsageEvent, USAGE_SCHEMA_VERSION};

use self::spool::{Admission, Spool, SpoolError};
use crate::time::now_ms;

/// Where events come from: this node.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub node_id: String,
    /// The node's `region` label.
    pub region: String,
}

pub struct Recorder {
    event: Option<UsageEvent>,
    started: Instant,
    spool: Spool,
    admission: Admission,
    /// Budget reserved for this request; settled to the event's cost when it is written.
    reservation: Option<crate::quota::Reservation>,
    /// Rate-limit shares taken by this request: tokens settled to the event's count when it is
    /// written, slots given back then.
    limits: Option<crate::limits::Admission>,
}

impl Recorder {
    /// Starts a request's event. When the spool is at its disk bound the request is either
    /// refused ([`Recorder::refused`]) or served unmetered, per the spool's policy; in both cases
    /// no event is written (the spool counts them).
    pub fn start(spool: Spool, origin: &Origin, endpoint: &str, request_id: &str) -> Self {
        let admission = spool.admit();
        Recorder {
            event: Some(UsageEvent {
                schema_version: USAGE_SCHEMA_VERSION,
                id: modelgate_shared::new_id().to_string(),
                request_id: request_id.to_owned(),
                started_at_ms: now_ms(),
                node_id: origin.node_id.clone(),
                region: origin.region.clone(),
                endpoint: endpoint.to_owned(),
                traffic_class: "interactive".to_owned(),
                ..Default::default()
            }),
            started: Instant::now(),
            spool,
            admission,
            reservation: None,
            limits: None,
        }
    }

    /// Holds `r` until the event is written, then settles it to the event's cost. If the
    /// request is dropped before a cost is known, the whole reservation stays charged.
    pub fn hold(&mut self, r: crate::quota::Reservation) {
        if !r.is_empty() {
            self.reservation = Some(r);
        }
    }

    /// Holds the request's rate-limit shares until the event is written.
    pub fn hold_limits(&mut self, mut a: crate::limits::Admission) {
        if !a.is_empty() {
            a.keep();
            self.limits = Some(a);
        }
    }

    /// The spool is full and its policy is to refuse new requests.
    pub fn refused(&self) -> bool {
        self.admission == Admission::Refused
    }

    fn metered(&self) -> bool {
        self.admission == Admission::Metered
    }

    /// The event being filled in.
    pub fn event(&mut self) -> &mut UsageEvent {
        // `event` is only taken by `finish`, which consumes `self`.
        self.event.get_or_insert_with(UsageEvent::default)
    }

    pub fn elapsed_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn mark_first_byte(&mut self) {
        let us = self.elapsed_us();
        let e = self.event();
        if e.ttfb_us == 0 {
            e.ttfb_us = us.max(1);
            e.first_byte_at_ms = now_ms();
        }
    }

    pub fn fail(&mut self, status: u16, class: ErrorClass, message: &str) {
        let e = self.event();
        e.status = status;
        e.error_class = Some(class.as_str().to_owned());
        e.error_message = message.chars().take(500).collect();
    }

    fn seal(&mut self) -> Option<UsageEvent> {
        let latency = self.elapsed_us();
        let mut e = self.event.take()?;
        if let Some(r) = self.reservation.take() {
            // A request that ended without a metered cost (cancelled before any usage was
            // read) keeps its reservation: the upstream may still bill it.
            if e.error_class.as_deref() == Some(ErrorClass::ClientCancel.as_str())
                && e.cost_micros == 0
            {
                drop(r);
            } else {
                r.settle(e.cost_micros);
            }
        }
        if let Some(mut a) = self.limits.take() {
            // As with the reservation: a request cancelled before any usage was read keeps its
            // token estimate; any other is settled to what it used (nothing, if it was refused
            // before going upstream).
            let tokens = e.input_tokens + e.output_tokens;
            let cancelled = e.error_class.as_deref() == Some(ErrorClass::ClientCancel.as_str());
            if !(cancelled && tokens == 0) {
                a.settle_tokens(tokens);
            }
        }
        // Never before the start, even if the wall clock stepped back (or the start was read
        // from the injected clock): the control plane quarantines an event that ends first.
        e.ended_at_ms = now_ms().max(e.started_at_ms);
        e.latency_us = latency;
        Some(e)
    }

    /// Drops the event unwritten: the request is billable to no one (refused before its key
    /// was authenticated, R-5.1).
    pub fn discard(mut self) {
        self.event = None;
    }

    /// Writes the event to the spool and waits for the write.
    pub async fn finish(mut self) -> Result<(), SpoolError> {
        match self.seal() {
            Some(e) if self.metered() => self.spool.append(&e).await,
            _ => Ok(()),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.event.is_none() {
            return;
        }
        let status = self.event().status;
        if status == 0 || status < 400 {
            self.fail(
                499,
                ErrorClass::ClientCancel,
                "the client closed the connection",
            );
        }
        if let Some(e) = self.seal() {
            if self.metered() {
                self.spool.append_detached(&e);
            }
        }
    }
}
