//! The wire encoding of a [`UsageEvent`], written straight from the domain event: the bytes
//! `wire::UsageEvent::from(event).encode(..)` writes, without building the wire message (which
//! copies every string of the event). The data plane frames one event per request into its
//! spool with it.
//!
//! Each field is written under its tag in `usage.proto`, in tag order, and skipped at its
//! proto3 default (empty string, zero, `false`), as prost does; the typed fields are written as
//! their names (`as_str`). One list of fields ([`event_fields`]) serves both the length and the
//! bytes, so the two cannot disagree; the tests hold the bytes to prost's encoding of the wire
//! message for a fully populated event, so the list cannot drift from the proto.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

use super::{Attempt, UsageEvent};
use crate::routing::TrafficClass;
use crate::snapshot::Environment;

impl UsageEvent {
    /// The length of the event's wire encoding ([`UsageEvent::encode_wire`]).
    pub fn wire_len(&self) -> usize {
        let mut len = Len(0);
        event_fields(self, &mut len);
        len.0
    }

    /// Appends the event's wire encoding (a `modelgate.usage.v1.UsageEvent`) to `buf`.
    pub fn encode_wire(&self, buf: &mut Vec<u8>) {
        event_fields(self, &mut Bytes(buf));
    }
}

/// Where the fields go: counted ([`Len`]) or written ([`Bytes`]).
trait Sink {
    /// A varint field (uint32, uint64, int64 as its two's complement, bool); skipped at 0.
    fn varint(&mut self, tag: u32, value: u64);
    /// A string field; skipped when empty.
    fn string(&mut self, tag: u32, value: &str);
    /// The key and length of an embedded message of `len` bytes (its fields follow).
    fn message(&mut self, tag: u32, len: usize);
}

struct Len(usize);

impl Sink for Len {
    fn varint(&mut self, tag: u32, value: u64) {
        if value != 0 {
            self.0 += key_len(tag) + encoded_len_varint(value);
        }
    }

    fn string(&mut self, tag: u32, value: &str) {
        if !value.is_empty() {
            self.0 += key_len(tag) + encoded_len_varint(value.len() as u64) + value.len();
        }
    }

    fn message(&mut self, tag: u32, len: usize) {
        self.0 += key_len(tag) + encoded_len_varint(len as u64);
    }
}

struct Bytes<'a>(&'a mut Vec<u8>);

impl Sink for Bytes<'_> {
    fn varint(&mut self, tag: u32, value: u64) {
        if value != 0 {
            encode_key(tag, WireType::Varint, self.0);
            encode_varint(value, self.0);
        }
    }

    fn string(&mut self, tag: u32, value: &str) {
        if !value.is_empty() {
            encode_key(tag, WireType::LengthDelimited, self.0);
            encode_varint(value.len() as u64, self.0);
            self.0.extend_from_slice(value.as_bytes());
        }
    }

    fn message(&mut self, tag: u32, len: usize) {
        encode_key(tag, WireType::LengthDelimited, self.0);
        encode_varint(len as u64, self.0);
    }
}

/// An `int64` on the wire: its two's complement as a varint (10 bytes when negative).
fn int64(v: i64) -> u64 {
    v as u64
}

/// The fields of `UsageEvent` in `usage.proto`, in tag order.
fn event_fields(e: &UsageEvent, s: &mut impl Sink) {
    s.string(1, &e.id);
    s.string(2, &e.request_id);
    s.varint(3, int64(e.started_at_ms));
    s.varint(4, int64(e.ended_at_ms));
    s.string(5, &e.node_id);
    s.string(6, &e.key_id);
    s.string(7, &e.team_id);
    s.string(8, &e.endpoint);
    s.string(9, &e.requested_model);
    s.string(10, &e.provider_id);
    s.string(11, &e.served_model);
    s.varint(12, u64::from(e.status));
    s.string(13, e.error_class.map_or("", |c| c.as_str()));
    s.varint(14, e.latency_us);
    s.varint(15, e.ttfb_us);
    s.varint(16, e.input_tokens);
    s.varint(17, e.output_tokens);
    s.varint(18, int64(e.cost_micros));
    s.varint(19, e.price_version);
    s.varint(20, u64::from(e.streamed));
    s.varint(21, u64::from(e.estimated));
    s.string(22, &e.error_message);
    s.varint(23, u64::from(e.schema_version));
    s.varint(24, int64(e.first_byte_at_ms));
    s.string(25, &e.region);
    s.string(26, &e.user_id);
    s.string(27, &e.application);
    s.string(28, e.environment.map_or("", Environment::as_str));
    s.string(29, &e.deployment_id);
    for a in &e.attempts {
        let mut len = Len(0);
        attempt_fields(a, &mut len);
        s.message(30, len.0);
        attempt_fields(a, s);
    }
    s.varint(31, e.cached_input_tokens);
    s.varint(32, e.reasoning_tokens);
    s.varint(33, e.images);
    s.varint(34, e.media_ms);
    s.varint(35, u64::from(e.fallback_used));
    s.string(36, e.traffic_class.map_or("", TrafficClass::as_str));
    s.string(37, e.cost_flag.as_str());
    s.varint(38, e.characters);
    s.varint(39, u64::from(e.cache_hit));
    s.string(45, &e.trace_id);
}

/// The fields of `Attempt` in `usage.proto`, in tag order.
fn attempt_fields(a: &Attempt, s: &mut impl Sink) {
    s.string(1, &a.deployment_id);
    s.string(2, &a.provider_id);
    s.string(3, &a.model);
    s.varint(4, u64::from(a.status));
    s.string(5, a.error_class.map_or("", |c| c.as_str()));
    s.varint(6, a.latency_us);
    s.varint(7, int64(a.started_at_ms));
    s.string(8, &a.error_message);
}
