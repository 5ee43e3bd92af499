//! Webhook delivery: one POST per batch, a JSON array of CloudEvents, signed so the receiver can
//! verify origin and freshness:
//!
//! `x-modelgate-signature: t=<unix seconds>,v1=<hex HMAC-SHA-256(secret, "<t>.<body>")>`
//!
//! Any 2xx acknowledges the batch; anything else (or no answer in time) is a failed delivery,
//! retried by the exporter with backoff.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::cloudevents::{CloudEvent, BATCH_CONTENT_TYPE};
use super::ExportError;
use crate::service::usage::{sinks, UsageRow};

pub const SIGNATURE_HEADER: &str = "x-modelgate-signature";
pub const DELIVERY_HEADER: &str = "x-modelgate-delivery";
const TIMEOUT: Duration = Duration::from_secs(10);

/// `t=<t>,v1=<hex>` for a body signed at unix time `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
    /// The URL as errors show it (without credentials).
    shown: String,
    secret: Vec<u8>,
}

impl WebhookSink {
    pub fn new(url: String, secret: Vec<u8>) -> Result<Self, ExportError> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| ExportError::Delivery(e.to_string()))?;
        Ok(WebhookSink {
            client,
            shown: sinks::redact(&url, &url),
            url,
            secret,
        })
    }

    pub async fn deliver(&self, rows: &[UsageRow]) -> Result<(), ExportError> {
        let events: Vec<CloudEvent<'_>> = rows.iter().map(CloudEvent::of).collect();
        let body = serde_json::to_vec(&events).map_err(|e| ExportError::Delivery(e.to_string()))?;
        let sig = signature(&self.secret, chrono::Utc::now().timestamp(), &body);
        let resp = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
            .header(SIGNATURE_HEADER, sig)
            .header(DELIVERY_HEADER, modelgate_shared::new_id().to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let message = format!("POST {}: {e}", self.shown);
                ExportError::Delivery(sinks::redact(&message, &self.url))
            })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(ExportError::Delivery(format!(
                "POST {} answered {status}",
                self.shown
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_time_and_body() {
        let a = signature(b"secret", 1_700_000_000, b"[]");
        assert!(a.starts_with("t=1700000000,v1="));
        assert_eq!(a.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(a, signature(b"secret", 1_700_000_001, b"[]"));
        assert_ne!(a, signature(b"secret", 1_700_000_000, b"[ ]"));
        assert_ne!(a, signature(b"other", 1_700_000_000, b"[]"));
    }
}
