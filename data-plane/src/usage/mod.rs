//! Usage: one event per request, written to the local spool ([`spool`]) and shipped to the
//! control plane ([`shipper`]). [`Recorder`] guarantees the "one per request": it is created when
//! a request arrives and either finished explicitly or, if the request future is dropped (the
//! client went away), records a `client_cancel` event from its `Drop`.

pub mod shipper;
pub mod spool;

use std::time::Instant;

use modelgate_shared::usage::{ErrorClass, UsageEvent};

use self::spool::{Spool, SpoolError};

pub struct Recorder {
    event: Option<UsageEvent>,
    started: Instant,
    spool: Spool,
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Recorder {
    pub fn start(spool: Spool, node_id: &str, endpoint: &str, request_id: &str) -> Self {
        Recorder {
            event: Some(UsageEvent {
                id: modelgate_shared::new_id().to_string(),
                request_id: request_id.to_owned(),
                started_at_ms: now_ms(),
                node_id: node_id.to_owned(),
                endpoint: endpoint.to_owned(),
                ..Default::default()
            }),
            started: Instant::now(),
            spool,
        }
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
        e.ended_at_ms = now_ms();
        e.latency_us = latency;
        Some(e)
    }

    /// Writes the event to the spool and waits for the write.
    pub async fn finish(mut self) -> Result<(), SpoolError> {
        match self.seal() {
            Some(e) => self.spool.append(&e).await,
            None => Ok(()),
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
            self.spool.append_detached(&e);
        }
    }
}
