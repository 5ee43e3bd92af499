//! A full snapshot decoded in parts. At 100k keys the message is about 20 MB, its decoded wire
//! form three times that, and the domain `Config` as much again; decoding it whole held all of
//! them at once (a peak of 250 MB for a runtime of 25). Instead the subscriber receives the
//! message's bytes as they came ([`RawSnapshots`]: no decoding by tonic, no re-encoding for
//! the last-known-good), and [`split`] separates them — by protobuf field, without decoding the
//! keys — into the snapshot without its keys (decoded as usual: everything but the keys is small)
//! and each key's bytes (slices of the message, not copies). The runtime then decodes,
//! validates and compacts the keys one at a time (`Runtime::build_from_parts`), and checks the
//! content hash over the compact keys, so no whole `Config` of keys ever exists.
//!
//! Only the two field numbers below are special; every other field, present or future, goes
//! through the generated decoder. A delta (small) is decoded whole.

use std::ops::Range;

use bytes::{Buf, Bytes};
use modelgate_proto::config::v1 as wire;
use prost::Message;
use thiserror::Error;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// `Snapshot.config` (`proto/modelgate/config/v1/config.proto`).
const SNAPSHOT_CONFIG: u32 = 4;
/// `Config.keys`.
const CONFIG_KEYS: u32 = 2;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

#[derive(Debug, Error)]
pub enum PartsError {
    #[error("malformed snapshot message at byte {at}: {problem}")]
    Malformed { at: usize, problem: &'static str },
    #[error("decoding the snapshot: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// A full snapshot's message in parts.
#[derive(Debug)]
pub struct Parts {
    /// The snapshot with no keys in its config.
    pub top: wire::Snapshot,
    /// Each key's encoding (a `wire::ApiKey`), in message order.
    pub keys: Vec<Bytes>,
}

/// One field of a message: its number, wire type, the bytes of its value (without the length
/// of a length-delimited one) and of the whole field.
struct Field {
    tag: u32,
    wire_type: u8,
    value: Range<usize>,
    whole: Range<usize>,
}

fn malformed(at: usize, problem: &'static str) -> PartsError {
    PartsError::Malformed { at, problem }
}

fn varint(buf: &[u8], at: &mut usize) -> Result<u64, PartsError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf
            .get(*at)
            .ok_or_else(|| malformed(*at, "truncated varint"))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(malformed(*at, "varint too long"))
}

fn put_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The fields of the message `buf[range]`, in order (offsets into `buf`).
fn fields(buf: &[u8], range: Range<usize>) -> Result<Vec<Field>, PartsError> {
    let mut out = Vec::new();
    let mut at = range.start;
    let end = range.end;
    while at < end {
        let start = at;
        let key = varint(buf, &mut at)?;
        let tag = u32::try_from(key >> 3).map_err(|_| malformed(start, "field number"))?;
        let wire_type = (key & 7) as u8;
        let value_start;
        match wire_type {
            VARINT => {
                value_start = at;
                varint(buf, &mut at)?;
            }
            FIXED64 => {
                value_start = at;
                at += 8;
            }
            FIXED32 => {
                value_start = at;
                at += 4;
            }
            LEN => {
                let len =
                    usize::try_from(varint(buf, &mut at)?).map_err(|_| malformed(at, "length"))?;
                value_start = at;
                at = at.checked_add(len).ok_or_else(|| malformed(at, "length"))?;
            }
            _ => return Err(malformed(start, "unsupported wire type")),
        }
        if at > end {
            return Err(malformed(start, "field past the end of its message"));
        }
        out.push(Field {
            tag,
            wire_type,
            value: value_start..at,
            whole: start..at,
        });
    }
    Ok(out)
}

/// Splits a full snapshot's message into the snapshot without keys and each key's bytes.
pub fn split(raw: &Bytes) -> Result<Parts, PartsError> {
    let mut top = Vec::new();
    let mut config: Option<Vec<u8>> = None;
    let mut keys = Vec::new();
    for f in fields(raw, 0..raw.len())? {
        if f.tag != SNAPSHOT_CONFIG || f.wire_type != LEN {
            top.extend_from_slice(&raw[f.whole]);
            continue;
        }
        // A message field given more than once is merged: its parts concatenated.
        let rest = config.get_or_insert_with(Vec::new);
        for g in fields(raw, f.value)? {
            if g.tag == CONFIG_KEYS && g.wire_type == LEN {
                keys.push(raw.slice(g.value));
            } else {
                rest.extend_from_slice(&raw[g.whole]);
            }
        }
    }
    if let Some(rest) = config {
        put_varint(u64::from(SNAPSHOT_CONFIG << 3 | u32::from(LEN)), &mut top);
        put_varint(rest.len() as u64, &mut top);
        top.extend_from_slice(&rest);
    }
    Ok(Parts {
        top: wire::Snapshot::decode(top.as_slice())?,
        keys,
    })
}

/// The `Subscribe` stream's codec: requests encoded as usual, snapshots handed over as the
/// bytes they came in (zero-copy from tonic's buffer).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawSnapshots;

impl Codec for RawSnapshots {
    type Encode = wire::SubscribeRequest;
    type Decode = Bytes;
    type Encoder = RequestEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RequestEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

#[derive(Debug)]
pub struct RequestEncoder;

impl Encoder for RequestEncoder {
    type Item = wire::SubscribeRequest;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, buf: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a subscribe request: {e}")))
    }
}

#[derive(Debug)]
pub struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Runtime;
    use modelgate_shared::snapshot::{InvalidSnapshot, Snapshot};

    fn built_from_parts(wire: &wire::Snapshot) -> Result<Runtime, InvalidSnapshot> {
        let parts = split(&Bytes::from(wire.encode_to_vec())).unwrap();
        Runtime::build_from_parts(parts, &Runtime::default())
    }

    #[test]
    fn a_runtime_built_from_parts_equals_one_built_from_the_whole_snapshot() {
        let mut config = crate::config::delta::tests::config();
        config.keys[3].previous = Some(([9; 32], 1_900_000_000));
        config.keys[4].allowed_models = vec!["b".into(), "a".into()];
        config.keys.reverse();
        let snapshot = Snapshot::new(7, config);
        let mut wire = snapshot.to_wire();
        // Keys out of canonical order on the wire hash the same.
        wire.config.as_mut().unwrap().keys.reverse();
        let from_parts = built_from_parts(&wire).unwrap();
        let whole = Runtime::build(Snapshot::try_from(wire).unwrap());
        assert_eq!(
            (
                from_parts.version,
                &from_parts.content_hash,
                from_parts.digest
            ),
            (whole.version, &whole.content_hash, whole.digest)
        );
        assert_eq!(from_parts.to_config(), whole.to_config());
        assert_eq!(from_parts.keys.len(), whole.keys.len());
        assert_eq!(from_parts.routes.len(), whole.routes.len());
        assert_eq!(from_parts.prices, whole.prices);
    }

    #[test]
    fn a_snapshot_in_parts_is_refused_as_a_whole_one_would_be() {
        let snapshot = Snapshot::new(7, crate::config::delta::tests::config());
        let tampered = |change: fn(&mut wire::Snapshot)| {
            let mut wire = snapshot.to_wire();
            change(&mut wire);
            let whole = Snapshot::try_from(wire.clone()).map(|_| ()).unwrap_err();
            let parts = built_from_parts(&wire).map(|_| ()).unwrap_err();
            (whole.to_string(), parts.to_string())
        };
        let (whole, parts) = tampered(|w| w.config.as_mut().unwrap().keys[5].revoked = true);
        assert!(parts.contains("content hash mismatch"), "{parts}");
        assert_eq!(whole, parts);
        let (whole, parts) =
            tampered(|w| w.config.as_mut().unwrap().keys[5].environment = "moon".into());
        assert!(parts.contains("keys[5].environment"), "{parts}");
        assert_eq!(whole, parts);
        let (_, parts) = tampered(|w| {
            let c = w.config.as_mut().unwrap();
            c.keys[6].id = c.keys[5].id.clone();
        });
        assert!(
            parts.contains("keys[6].id: another key has this id"),
            "{parts}"
        );
        let (whole, parts) = tampered(|w| w.min_protocol_version = 1_000);
        assert_eq!(whole, parts);
    }

    #[test]
    fn a_snapshot_split_and_its_keys_decoded_equals_the_snapshot_decoded_whole() {
        let mut config = crate::config::delta::tests::config();
        config.keys[3].previous = Some(([9; 32], 1_900_000_000));
        config.keys[4].allowed_models = vec!["b".into(), "a".into()];
        let snapshot = modelgate_shared::snapshot::Snapshot::new(7, config);
        let whole = snapshot.to_wire();
        let raw = Bytes::from(whole.encode_to_vec());
        let parts = split(&raw).unwrap();
        assert_eq!(parts.keys.len(), 20);
        let mut rebuilt = parts.top.clone();
        let c = rebuilt.config.as_mut().unwrap();
        assert!(c.keys.is_empty());
        c.keys = parts
            .keys
            .iter()
            .map(|k| wire::ApiKey::decode(k.clone()).unwrap())
            .collect();
        assert_eq!(rebuilt, whole);
        // The keys are slices of the message, not copies.
        let within = raw.as_ptr_range();
        assert!(parts.keys.iter().all(|k| within.contains(&k.as_ptr())));
    }

    #[test]
    fn a_config_field_given_twice_is_merged_and_a_truncated_message_refused() {
        let mut a = wire::Snapshot {
            version: 3,
            config: Some(wire::Config {
                key_hash_secret: vec![1; 32],
                keys: vec![wire::ApiKey {
                    id: "k1".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let second = wire::Snapshot {
            config: Some(wire::Config {
                keys: vec![wire::ApiKey {
                    id: "k2".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut raw = a.encode_to_vec();
        raw.extend_from_slice(&second.encode_to_vec());
        let merged = wire::Snapshot::decode(raw.as_slice()).unwrap();
        let parts = split(&Bytes::from(raw.clone())).unwrap();
        assert_eq!(parts.keys.len(), 2);
        a.config.as_mut().unwrap().keys.clear();
        assert_eq!(parts.top, a);
        assert_eq!(merged.config.unwrap().keys.len(), 2);
        raw.truncate(raw.len() - 1);
        assert!(split(&Bytes::from(raw)).is_err());
    }
}
