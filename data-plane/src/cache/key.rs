//! The cache key of a request: SHA-256 over the surface, the model alias, the partition the
//! route names (the team, key or user id, or nothing) and the request body in a canonical form —
//! JSON with object members sorted by name and no insignificant whitespace, and without the
//! members that say only how the answer is delivered (`stream`, `stream_options`), so a
//! streamed and a non-streamed client share one answer. Each part is length-prefixed, so no two
//! different inputs hash the same bytes.
//!
//! Also here: whether a request is deterministic enough to cache (`temperature` explicitly 0,
//! or a `seed` — providers default temperature to 1); embeddings always are.

use modelgate_shared::cache::CachePartition;
use modelgate_shared::key_view::KeyView;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::surfaces::Surface;

/// A request's cache key (SHA-256), printed as lowercase hex in the shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        }
        s
    }
}

/// A request body parsed for the cache: its canonical bytes and whether it may be cached.
pub struct Canonical {
    pub bytes: Vec<u8>,
    pub deterministic: bool,
}

/// The canonical form of `body` (a JSON object), or `None` when it is not one (such a request
/// is not cached; the surface's own parser answers it).
pub fn canonical(surface: Surface, body: &[u8]) -> Option<Canonical> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object_mut()?;
    obj.remove("stream");
    obj.remove("stream_options");
    let deterministic = deterministic(surface, &value);
    let mut bytes = Vec::with_capacity(body.len());
    write_sorted(&value, &mut bytes);
    Some(Canonical {
        bytes,
        deterministic,
    })
}

/// Whether the request asks for a reproducible answer.
fn deterministic(surface: Surface, v: &Value) -> bool {
    let zero = |t: Option<&Value>| t.and_then(Value::as_f64).is_some_and(|t| t == 0.0);
    let seeded = |s: Option<&Value>| s.is_some_and(|s| !s.is_null());
    match surface {
        Surface::OpenAiEmbeddings => true,
        Surface::Gemini => {
            let g = v.get("generationConfig");
            zero(g.and_then(|g| g.get("temperature"))) || seeded(g.and_then(|g| g.get("seed")))
        }
        _ => zero(v.get("temperature")) || seeded(v.get("seed")),
    }
}

/// Writes `v` as compact JSON with every object's members sorted by name (whatever order the
/// client sent them in).
fn write_sorted(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(k.clone()), out);
                out.push(b':');
                write_sorted(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_sorted(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(v: &Value, out: &mut Vec<u8>) {
    // One number, one spelling: `0`, `0.0` and `0e0` are the same JSON number.
    if let Some(f) = v.as_f64().filter(|_| v.is_f64()) {
        if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
            // Integral and within f64's exact integers: the cast is exact.
            #[allow(clippy::cast_possible_truncation)]
            out.extend_from_slice((f as i64).to_string().as_bytes());
            return;
        }
    }
    // Writing a scalar JSON value to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// The identity the partition names for `key` (empty for `none`).
pub fn partition_id(partition: CachePartition, key: &crate::config::Key) -> String {
    match partition {
        CachePartition::Team => format!("team:{}", key.team_id()),
        CachePartition::Key => format!("key:{}", key.id()),
        // A key without an owner is a partition of its own, never "every ownerless key".
        CachePartition::User if key.owner_user_id().is_empty() => format!("key:{}", key.id()),
        CachePartition::User => format!("user:{}", key.owner_user_id()),
        CachePartition::None => String::new(),
    }
}

/// The cache key of a canonical request on `surface` for `alias` in `partition`.
pub fn key(surface: Surface, alias: &str, partition: &str, canonical: &[u8]) -> Key {
    let mut h = Sha256::new();
    h.update(b"modelgate response cache v1\0");
    for part in [
        surface.as_str().as_bytes(),
        alias.as_bytes(),
        partition.as_bytes(),
        canonical,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    Key(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> Canonical {
        canonical(Surface::OpenAiChat, s.as_bytes()).unwrap()
    }

    #[test]
    fn member_order_whitespace_and_streaming_do_not_change_the_canonical_form() {
        let a =
            canon(r#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#);
        let b = canon(
            "{ \"messages\" : [ {\"content\":\"hi\", \"role\":\"user\"} ],\n \"stream\": true, \
             \"stream_options\": {\"include_usage\": true}, \"temperature\": 0, \"model\": \"m\" }",
        );
        assert_eq!(a.bytes, b.bytes);
        let spelled = canon(
            r#"{"model":"m","temperature":0.0e0,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(a.bytes, spelled.bytes);
        // Array order is meaning (the conversation), and so is every other member.
        let c =
            canon(r#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi!"}]}"#);
        assert_ne!(a.bytes, c.bytes);
    }

    #[test]
    fn only_temperature_zero_or_a_seed_is_deterministic_and_embeddings_always_are() {
        assert!(canon(r#"{"temperature":0}"#).deterministic);
        assert!(canon(r#"{"temperature":0.0}"#).deterministic);
        assert!(canon(r#"{"seed":7}"#).deterministic);
        assert!(!canon(r#"{"temperature":0.2}"#).deterministic);
        assert!(!canon(r#"{"messages":[]}"#).deterministic);
        assert!(!canon(r#"{"seed":null}"#).deterministic);
        let gemini = |s: &str| {
            canonical(Surface::Gemini, s.as_bytes())
                .unwrap()
                .deterministic
        };
        assert!(gemini(r#"{"generationConfig":{"temperature":0}}"#));
        assert!(!gemini(r#"{"temperature":0}"#));
        assert!(
            canonical(Surface::OpenAiEmbeddings, br#"{"input":"x"}"#)
                .unwrap()
                .deterministic
        );
    }

    #[test]
    fn the_partition_surface_and_alias_each_change_the_key() {
        let body = canon(r#"{"temperature":0}"#).bytes;
        let base = key(Surface::OpenAiChat, "a", "team:t1", &body);
        assert_ne!(base, key(Surface::OpenAiChat, "a", "team:t2", &body));
        assert_ne!(base, key(Surface::OpenAiChat, "b", "team:t1", &body));
        assert_ne!(base, key(Surface::AnthropicMessages, "a", "team:t1", &body));
        // Length prefixes: moving bytes from one part to the next is another key.
        assert_ne!(
            key(Surface::OpenAiChat, "ab", "", &body),
            key(Surface::OpenAiChat, "a", "b", &body)
        );
        assert_eq!(base.hex().len(), 64);
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_not_cached() {
        assert!(canonical(Surface::OpenAiChat, b"[1,2]").is_none());
        assert!(canonical(Surface::OpenAiChat, b"{not json").is_none());
    }
}
