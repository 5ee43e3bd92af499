//! Usage export to billing: every sink gets every stored usage event at least once, in
//! ingest-sequence order, as CloudEvents with stable ids. One worker per sink reads events after
//! the sink's cursor, delivers a batch, and advances the cursor only after the sink
//! acknowledged it. A failing sink is retried with capped, jittered exponential backoff and
//! never holds back ingest or the other sinks.

pub mod cloudevents;
pub mod nats;
pub mod webhook;

use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::service::usage::{
    self,
    sinks::{self, SinkKind, SinkTarget},
};
use crate::service::{ServiceError, Services};

/// Events per delivery.
const BATCH: u64 = 200;
/// How often an idle worker looks for new events, and the supervisor for new sinks.
const POLL: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("{0}")]
    Delivery(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Runs one worker per configured sink until `shutdown`; picks up sinks added later and stops
/// workers of deleted ones.
pub async fn run(services: Services, shutdown: CancellationToken) {
    let mut workers: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        match sinks::targets(&services).await {
            Ok(targets) => {
                workers.retain(|_, w| !w.is_finished());
                for t in targets {
                    if !workers.contains_key(&t.id) {
                        let id = t.id.clone();
                        let worker = tokio::spawn(work(services.clone(), t, shutdown.clone()));
                        workers.insert(id, worker);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "export: could not list sinks"),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL * 4) => {}
            () = shutdown.cancelled() => break,
        }
    }
    for (_, w) in workers {
        w.abort();
    }
}

enum Target {
    Webhook(webhook::WebhookSink),
    Nats(nats::NatsSink),
}

impl Target {
    async fn connect(t: &SinkTarget) -> Result<Self, ExportError> {
        Ok(match t.kind {
            SinkKind::Webhook => {
                Target::Webhook(webhook::WebhookSink::new(t.url.clone(), t.secret.clone())?)
            }
            SinkKind::Nats => {
                Target::Nats(nats::NatsSink::connect(&t.url, t.subject.clone(), &t.stream).await?)
            }
        })
    }

    async fn deliver(&self, rows: &[usage::UsageRow]) -> Result<(), ExportError> {
        match self {
            Target::Webhook(w) => w.deliver(rows).await,
            Target::Nats(n) => n.deliver(rows).await,
        }
    }
}

/// One sink's delivery loop; returns when the sink is deleted or on shutdown.
async fn work(s: Services, sink: SinkTarget, shutdown: CancellationToken) {
    let mut target: Option<Target> = None;
    let mut backoff = Duration::from_millis(500);
    loop {
        let wait = match step(&s, &sink, &mut target).await {
            Ok(Step::Delivered) => {
                backoff = Duration::from_millis(500);
                continue;
            }
            Ok(Step::Idle) => POLL,
            Ok(Step::Deleted) => return,
            Err(e) => {
                // Whatever a client library put in its error, the sink's credentials stay out
                // of the log and of `last_error`.
                let msg = sinks::redact(&e.to_string(), &sink.url);
                tracing::warn!(sink = %sink.name, error = %msg, "export delivery failed; will retry");
                if let ExportError::Delivery(_) = &e {
                    if let Err(e) = sinks::failed(&s, &sink.id, &msg).await {
                        tracing::warn!(error = %e, "export: could not record a failure");
                    }
                    // Reconnect next time (a NATS connection may be the problem).
                    target = None;
                }
                let jittered = backoff.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
                backoff = (backoff * 2).min(MAX_BACKOFF);
                jittered
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

enum Step {
    Delivered,
    Idle,
    Deleted,
}

async fn step(
    s: &Services,
    sink: &SinkTarget,
    target: &mut Option<Target>,
) -> Result<Step, ExportError> {
    // Read the cursor each time: an operator may have rewound it.
    let Some(cursor) = sinks::cursor(s, &sink.id).await? else {
        return Ok(Step::Deleted);
    };
    let rows = usage::events_after(s, cursor, BATCH).await?;
    let Some(last) = rows.last().map(|r| r.seq) else {
        return Ok(Step::Idle);
    };
    if target.is_none() {
        *target = Some(Target::connect(sink).await?);
    }
    if let Some(t) = target.as_ref() {
        t.deliver(&rows).await?;
    }
    sinks::delivered(s, &sink.id, cursor, last, rows.len() as u64).await?;
    Ok(Step::Delivered)
}
