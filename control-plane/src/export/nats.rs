//! NATS JetStream delivery: one message per event on the sink's subject, the CloudEvent as the
//! body, `Nats-Msg-Id` = the event id so JetStream drops a redelivered event within its
//! duplicate window. A batch counts as delivered when JetStream acknowledged every message.

use async_nats::jetstream;

use super::cloudevents::CloudEvent;
use super::ExportError;
use crate::service::usage::{sinks, UsageRow};

pub struct NatsSink {
    js: jetstream::Context,
    subject: String,
}

fn err(e: impl std::fmt::Display) -> ExportError {
    ExportError::Delivery(e.to_string())
}

impl NatsSink {
    /// Connects; when `stream` is set and no stream captures the subject, creates it. The URL's
    /// credentials go to the client as options, never in the address it may print or log.
    pub async fn connect(url: &str, subject: String, stream: &str) -> Result<Self, ExportError> {
        let (bare, credentials) = sinks::split_credentials(url);
        let mut options =
            async_nats::ConnectOptions::new().connection_timeout(std::time::Duration::from_secs(5));
        options = match credentials {
            Some((user, Some(password))) => options.user_and_password(user, password),
            Some((token, None)) => options.token(token),
            None => options,
        };
        let client = options.connect(bare.as_str()).await.map_err(|e| {
            ExportError::Delivery(sinks::redact(&format!("connecting to {bare}: {e}"), url))
        })?;
        let js = jetstream::new(client);
        if !stream.is_empty() {
            js.get_or_create_stream(jetstream::stream::Config {
                name: stream.to_owned(),
                subjects: vec![subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| ExportError::Delivery(format!("stream {stream}: {e}")))?;
        }
        Ok(NatsSink { js, subject })
    }

    pub async fn deliver(&self, rows: &[UsageRow]) -> Result<(), ExportError> {
        // Publish everything, then wait for every acknowledgement (pipelined).
        let mut acks = Vec::with_capacity(rows.len());
        for row in rows {
            let body = serde_json::to_vec(&CloudEvent::of(row)).map_err(err)?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", row.id.as_str());
            headers.insert("Content-Type", "application/cloudevents+json");
            let ack = self
                .js
                .publish_with_headers(self.subject.clone(), headers, body.into())
                .await
                .map_err(err)?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(err)?;
        }
        Ok(())
    }
}
