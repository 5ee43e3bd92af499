//! Ledger rows in Postgres's binary `COPY` format: the fast path of ingest on Postgres.
//!
//! A group's events are written straight from the decoded [`UsageEvent`]s into one buffer —
//! no value is copied into an intermediate array or string — and sent as one `COPY
//! usage_events (…) FROM STDIN (FORMAT binary)`. Postgres then inserts the rows in batches per
//! partition instead of one at a time. `COPY` cannot skip a row whose id is already stored, so
//! a group that carries one (a batch replayed after a lost acknowledgement) fails as a whole
//! with a unique violation and is stored again by `INSERT … ON CONFLICT (id) DO NOTHING` (see
//! `super::ingest`); a replay is rare, a new event is the rule. The same holds for text with a
//! NUL, which Postgres refuses: the `INSERT` stores it with U+FFFD in its place.
//!
//! The format (PostgreSQL documentation, "COPY", binary format): an 11-byte signature, a 32-bit
//! flags field and a 32-bit header-extension length; then per row a 16-bit field count and per
//! field a 32-bit length (−1 for NULL) followed by the value in the type's binary form
//! (network byte order); then a 16-bit −1.

use chrono::{DateTime, Utc};
use modelgate_shared::usage::{Environment, ErrorClass, TrafficClass, UsageEvent};

/// The columns a row carries, in the order [`encode`] writes them.
pub(super) const COLUMNS: [&str; 42] = [
    "id",
    "seq",
    "schema_version",
    "request_id",
    "started_at_ms",
    "first_byte_at_ms",
    "ended_at_ms",
    "node_id",
    "region",
    "key_id",
    "team_id",
    "user_id",
    "application",
    "environment",
    "endpoint",
    "requested_model",
    "provider_id",
    "served_model",
    "deployment_id",
    "attempts",
    "status",
    "error_class",
    "error_message",
    "latency_us",
    "ttfb_us",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "images",
    "media_ms",
    "characters",
    "cost_micros",
    "price_version",
    "streamed",
    "estimated",
    "fallback_used",
    "traffic_class",
    "cost_flag",
    "cache_hit",
    "trace_id",
    "ingested_at",
];

/// The number of columns [`encode`] writes per row.
const FIELDS: usize = COLUMNS.len();

/// The statement the encoded rows are the input of.
pub(super) fn statement() -> String {
    format!(
        "COPY usage_events ({}) FROM STDIN (FORMAT binary)",
        COLUMNS.join(", ")
    )
}

/// Microseconds from the Unix epoch to Postgres's (2000-01-01 00:00 UTC).
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;

/// The input of [`statement`] for `rows` (each event with its sequence number), stored at `now`.
pub(super) fn encode(rows: &[(&UsageEvent, i64)], now: DateTime<Utc>) -> Vec<u8> {
    // ~40 bytes of framing and numbers per field is generous for most rows.
    let mut out = Vec::with_capacity(19 + rows.len() * 640);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    let ingested_at = now.timestamp_micros() - POSTGRES_EPOCH_US;
    let mut attempts = Vec::new();
    for &(e, seq) in rows {
        let mut row = Row::start(&mut out);
        row.text(&e.id);
        row.int8(seq);
        row.int4(i32::try_from(e.schema_version).unwrap_or(i32::MAX));
        row.text(&e.request_id);
        row.int8(e.started_at_ms);
        row.int8(e.first_byte_at_ms);
        row.int8(e.ended_at_ms);
        row.text(&e.node_id);
        row.text(&e.region);
        row.text(&e.key_id);
        row.text(&e.team_id);
        row.text(&e.user_id);
        row.text(&e.application);
        row.text(e.environment.map_or("", Environment::as_str));
        row.text(&e.endpoint);
        row.text(&e.requested_model);
        row.text(&e.provider_id);
        row.text(&e.served_model);
        row.text(&e.deployment_id);
        attempts.clear();
        if serde_json::to_writer(&mut attempts, &e.attempts).is_err() {
            attempts.clear();
            attempts.extend_from_slice(b"[]");
        }
        // serde_json writes valid UTF-8 and escapes NUL, so the bytes are text as they are.
        row.bytes(&attempts);
        row.int4(i32::from(e.status));
        match e.error_class {
            Some(class) => row.text(ErrorClass::as_str(class)),
            None => row.null(),
        }
        row.text(&e.error_message);
        row.unsigned(e.latency_us);
        row.unsigned(e.ttfb_us);
        row.unsigned(e.input_tokens);
        row.unsigned(e.output_tokens);
        row.unsigned(e.cached_input_tokens);
        row.unsigned(e.reasoning_tokens);
        row.unsigned(e.images);
        row.unsigned(e.media_ms);
        row.unsigned(e.characters);
        row.int8(e.cost_micros);
        row.unsigned(e.price_version);
        row.bool(e.streamed);
        row.bool(e.estimated);
        row.bool(e.fallback_used);
        row.text(e.traffic_class.map_or("", TrafficClass::as_str));
        row.text(e.cost_flag.as_str());
        row.bool(e.cache_hit);
        row.text(&e.trace_id);
        row.int8(ingested_at);
        row.finish();
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// One row being written; [`Row::finish`] checks it has every field.
struct Row<'a> {
    out: &'a mut Vec<u8>,
    fields: usize,
}

impl<'a> Row<'a> {
    fn start(out: &'a mut Vec<u8>) -> Self {
        out.extend_from_slice(&(FIELDS as i16).to_be_bytes());
        Row { out, fields: 0 }
    }

    fn value(&mut self, bytes: &[u8]) {
        self.fields += 1;
        self.out
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.out.extend_from_slice(bytes);
    }

    /// Text, as it is. Postgres text cannot hold NUL: a row with one makes the `COPY` fail
    /// (SQLSTATE 22021), and the group is stored by `INSERT`, which replaces each NUL with
    /// U+FFFD (`ingest::clean`) — so no value is scanned for NUL here, where none is the rule.
    fn text(&mut self, s: &str) {
        self.value(s.as_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.value(b);
    }

    fn int8(&mut self, v: i64) {
        self.value(&v.to_be_bytes());
    }

    /// A count the event carries unsigned, stored as `int8` (saturating, as `INSERT` does).
    fn unsigned(&mut self, v: u64) {
        self.int8(i64::try_from(v).unwrap_or(i64::MAX));
    }

    fn int4(&mut self, v: i32) {
        self.value(&v.to_be_bytes());
    }

    fn bool(&mut self, v: bool) {
        self.value(&[u8::from(v)]);
    }

    fn null(&mut self) {
        self.fields += 1;
        self.out.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn finish(self) {
        debug_assert_eq!(self.fields, FIELDS, "a COPY row has one value per column");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_one_value_per_named_column() {
        let event = UsageEvent {
            id: "01900000-0000-7000-8000-000000000001".into(),
            error_class: Some(ErrorClass::Timeout),
            ..UsageEvent::default()
        };
        let bytes = encode(&[(&event, 7), (&event, 8)], Utc::now());
        // Walk the rows as Postgres would: every row announces FIELDS values and holds them.
        let mut at = 19;
        for _ in 0..2 {
            let count = i16::from_be_bytes([bytes[at], bytes[at + 1]]);
            assert_eq!(count as usize, FIELDS);
            at += 2;
            for _ in 0..FIELDS {
                let len = i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
                at += 4 + usize::try_from(len).unwrap_or(0);
            }
        }
        assert_eq!(&bytes[at..], &(-1i16).to_be_bytes());
        assert!(statement().contains("(id, seq, schema_version,"));
        assert!(statement().ends_with("ingested_at) FROM STDIN (FORMAT binary)"));
    }
}
