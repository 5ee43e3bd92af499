//! OpenAI video jobs (`POST /v1/videos`, `GET /v1/videos/{id}`, `GET /v1/videos/{id}/content`).
//! A create request is JSON or `multipart/form-data` (as OpenAI's SDKs send it); the gateway
//! reads its `model` (required here: the gateway routes by it) and, when the deployment's model
//! differs, rewrites that one field, leaving every other byte as the client sent it.
//!
//! Job ids the gateway hands out embed where the job lives, so any node can route a poll, and
//! are signed, so no client can edit them or use another team's (see [`GatewayJobId`]).

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{check_model, parse_error, Peeked};
use crate::server::error::ProxyError;

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    prompt: Option<Cow<'a, str>>,
}

/// Whether a body is multipart (it starts with its boundary line).
fn is_multipart(raw: &[u8]) -> bool {
    raw.starts_with(b"--")
}

/// The byte range of the value of the form field `name` in a multipart body.
pub fn multipart_field(raw: &[u8], name: &str) -> Option<std::ops::Range<usize>> {
    let line_end = memchr::memmem::find(raw, b"\r\n")?;
    let delimiter = [b"\r\n", &raw[..line_end]].concat();
    let disposition = format!("name=\"{name}\"");
    let mut at = line_end + 2;
    loop {
        let headers_end = at + memchr::memmem::find(&raw[at..], b"\r\n\r\n")?;
        let value_start = headers_end + 4;
        let value_end = value_start + memchr::memmem::find(&raw[value_start..], &delimiter)?;
        let headers = &raw[at..headers_end];
        let named = memchr::memmem::find(headers, disposition.as_bytes()).is_some();
        if named && memchr::memmem::find(headers, b"filename=").is_none() {
            return Some(value_start..value_end);
        }
        // Past the delimiter line to the next part's headers (or the closing `--`).
        let next = value_end + delimiter.len();
        if raw.get(next..next + 2) == Some(b"--") {
            return None;
        }
        at = next + 2;
    }
}

pub fn peek(raw: &[u8]) -> Result<Peeked, ProxyError> {
    let (model, prompt) = if is_multipart(raw) {
        let field = |n: &str| {
            multipart_field(raw, n).map(|r| String::from_utf8_lossy(&raw[r]).into_owned())
        };
        (field("model"), field("prompt"))
    } else {
        let p: Peek<'_> = serde_json::from_slice(raw).map_err(|e| parse_error(&e))?;
        (p.model.map(Cow::into_owned), p.prompt.map(Cow::into_owned))
    };
    let model = check_model(model.as_deref())?;
    if prompt.as_deref().is_none_or(str::is_empty) {
        return Err(ProxyError::invalid_param(
            "prompt",
            "you must provide a prompt parameter",
        ));
    }
    Ok(Peeked {
        model,
        stream: false,
        client_wants_usage: false,
        // Priced per second when the job completes: not bounded up front.
        max_output_tokens: None,
    })
}

/// The create body with `model` set to `model` (JSON or multipart).
pub fn with_model(raw: &Bytes, model: &str) -> Result<Bytes, ProxyError> {
    if !is_multipart(raw) {
        return crate::server::rewrite(raw, Some(model), false);
    }
    let range = multipart_field(raw, "model")
        .ok_or_else(|| ProxyError::invalid_param("model", "you must provide a model parameter"))?;
    let mut out = Vec::with_capacity(raw.len() + model.len());
    out.extend_from_slice(&raw[..range.start]);
    out.extend_from_slice(model.as_bytes());
    out.extend_from_slice(&raw[range.end..]);
    Ok(Bytes::from(out))
}

/// The secret that signs gateway job ids: `HMAC-SHA-256(key_hash_secret, "modelgate video job
/// id v1")`. Every data plane of a fleet receives the same key-hash secret in its snapshot, so
/// every node derives the same key (once per snapshot, in `config::Runtime`); clients never see
/// it, and it is never used for anything else.
#[derive(Clone, Default)]
pub struct JobIdKey([u8; 32]);

impl std::fmt::Debug for JobIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobIdKey(redacted)")
    }
}

const JOB_ID_LABEL: &[u8] = b"modelgate video job id v1";

impl JobIdKey {
    pub fn derive(key_hash_secret: &[u8]) -> JobIdKey {
        let mut key = [0u8; 32];
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key_hash_secret) {
            mac.update(JOB_ID_LABEL);
            key.copy_from_slice(&mac.finalize().into_bytes());
        }
        JobIdKey(key)
    }

    fn mac(&self, signed: &str) -> Option<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).ok()?;
        mac.update(signed.as_bytes());
        Some(mac)
    }
}

/// A job id as the gateway hands it out: which provider account holds the job, for which
/// deployment model (its price), through which alias (the key's permission), for which team,
/// and the provider's own id — all bound together by a truncated HMAC ([`JobIdKey`]), so a
/// client can neither edit a field nor use another team's job:
/// `mgv2.{provider_id}.{hex(model)}.{hex(alias)}.{team_id}.{upstream_id}.{hex(tag)}`, the tag
/// being the first 128 bits of the HMAC of everything before its final `.`.
#[derive(Debug, PartialEq, Eq)]
pub struct GatewayJobId<'a> {
    pub provider_id: Cow<'a, str>,
    pub model: String,
    pub alias: String,
    pub team_id: Cow<'a, str>,
    pub upstream_id: Cow<'a, str>,
}

const PREFIX: &str = "mgv2.";
/// Bytes of the HMAC kept in the id.
const TAG_BYTES: usize = 16;

/// Provider job ids the gateway accepts (they go into a URL path).
fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Gateway ids of providers and teams (UUIDs): no `.`, nothing to escape.
fn plain_id(id: &str) -> bool {
    id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
}

/// Lower-case hex only (an id has one spelling).
fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

impl GatewayJobId<'_> {
    /// The signed id; `None` when a part cannot be carried (a provider or team id with a `.`,
    /// an upstream id unsafe in a URL path).
    pub fn encode(&self, key: &JobIdKey) -> Option<String> {
        if self.provider_id.is_empty()
            || !plain_id(&self.provider_id)
            || !plain_id(&self.team_id)
            || !safe_id(&self.upstream_id)
        {
            return None;
        }
        let mut s = String::with_capacity(
            PREFIX.len()
                + self.provider_id.len()
                + 2 * (self.model.len() + self.alias.len())
                + self.team_id.len()
                + self.upstream_id.len()
                + 2 * TAG_BYTES
                + 5,
        );
        s.push_str(PREFIX);
        s.push_str(&self.provider_id);
        s.push('.');
        push_hex(&mut s, self.model.as_bytes());
        s.push('.');
        push_hex(&mut s, self.alias.as_bytes());
        s.push('.');
        s.push_str(&self.team_id);
        s.push('.');
        s.push_str(&self.upstream_id);
        let tag = key.mac(&s)?.finalize().into_bytes();
        s.push('.');
        push_hex(&mut s, &tag[..TAG_BYTES]);
        Some(s)
    }

    /// The job an id names, if the gateway signed it with `key`; `None` for anything else: an
    /// id of another format (the unsigned `mgv.` ids of earlier versions included), an edited
    /// field, a wrong tag (compared in constant time).
    pub fn decode<'i>(id: &'i str, key: &JobIdKey) -> Option<GatewayJobId<'i>> {
        let (signed, tag) = id.rsplit_once('.')?;
        let tag = from_hex(tag).filter(|t| t.len() == TAG_BYTES)?;
        key.mac(signed)?.verify_truncated_left(&tag).ok()?;
        let rest = signed.strip_prefix(PREFIX)?;
        let mut parts = rest.splitn(5, '.');
        let provider_id = parts.next()?;
        let model = String::from_utf8(from_hex(parts.next()?)?).ok()?;
        let alias = String::from_utf8(from_hex(parts.next()?)?).ok()?;
        let team_id = parts.next()?;
        let upstream_id = parts.next()?;
        if provider_id.is_empty()
            || !plain_id(provider_id)
            || !plain_id(team_id)
            || !safe_id(upstream_id)
        {
            return None;
        }
        Some(GatewayJobId {
            provider_id: Cow::Borrowed(provider_id),
            model,
            alias,
            team_id: Cow::Borrowed(team_id),
            upstream_id: Cow::Borrowed(upstream_id),
        })
    }
}

/// A job object's `seconds` (OpenAI sends a string such as `"8"`; a number is accepted too).
pub fn job_seconds(v: &serde_json::Value) -> Option<f64> {
    match &v["seconds"] {
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Number(n) => n.as_f64(),
        _ => None,
    }
    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na cat\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nvid\r\n--XyZ\r\nContent-Disposition: form-data; name=\"seconds\"\r\n\r\n8\r\n--XyZ--\r\n";

    #[test]
    fn a_multipart_create_is_peeked_and_its_model_rewritten_in_place() {
        let p = peek(FORM).unwrap();
        assert_eq!(p.model, "vid");
        let out = with_model(&Bytes::from_static(FORM), "sora-2").unwrap();
        let range = multipart_field(&out, "model").unwrap();
        assert_eq!(&out[range], b"sora-2");
        let range = multipart_field(&out, "seconds").unwrap();
        assert_eq!(&out[range], b"8");
        assert!(multipart_field(&out, "nothing").is_none());
    }

    fn job(upstream: &str) -> GatewayJobId<'_> {
        GatewayJobId {
            provider_id: "p-1".into(),
            model: "sora:2/x".into(),
            alias: "vid".into(),
            team_id: "team-1".into(),
            upstream_id: upstream.into(),
        }
    }

    #[test]
    fn gateway_job_ids_round_trip_and_reject_unsafe_upstream_ids() {
        let key = JobIdKey::derive(b"fleet secret");
        let id = job("video_abc.v2");
        let s = id.encode(&key).unwrap();
        assert!(s.starts_with("mgv2.p-1."), "{s}");
        assert_eq!(GatewayJobId::decode(&s, &key), Some(id));
        assert!(job("../etc").encode(&key).is_none());
        assert!(job("").encode(&key).is_none());
        assert!(GatewayJobId::decode("video_abc", &key).is_none());
    }

    #[test]
    fn a_job_id_with_any_field_edited_or_signed_by_another_fleet_is_refused() {
        let key = JobIdKey::derive(b"fleet secret");
        let s = job("video_abc").encode(&key).unwrap();
        let parts: Vec<&str> = s.split('.').collect();
        assert_eq!(parts.len(), 7, "{s}");
        let mut hex_free = String::new();
        push_hex(&mut hex_free, b"free");
        for (i, edit) in [
            (1, "p-2"),
            (2, hex_free.as_str()),
            (3, hex_free.as_str()),
            (4, "team-2"),
            (5, "video_abd"),
        ] {
            let mut forged = parts.clone();
            forged[i] = edit;
            let forged = forged.join(".");
            assert!(GatewayJobId::decode(&forged, &key).is_none(), "{forged}");
        }
        // A flipped tag bit, an upper-case tag, a short tag, another fleet's key.
        let (signed, tag) = s.rsplit_once('.').unwrap();
        let mut flipped = from_hex(tag).unwrap();
        flipped[15] ^= 1;
        let mut flipped_hex = String::new();
        push_hex(&mut flipped_hex, &flipped);
        for forged in [
            format!("{signed}.{flipped_hex}"),
            format!("{signed}.{}", tag.to_uppercase()),
            format!("{signed}.{}", &tag[..30]),
        ] {
            assert!(GatewayJobId::decode(&forged, &key).is_none(), "{forged}");
        }
        assert!(GatewayJobId::decode(&s, &JobIdKey::derive(b"other fleet")).is_none());
        // The unsigned ids of earlier versions are not accepted.
        assert!(GatewayJobId::decode("mgv.p-1.76.video_abc", &key).is_none());
        assert!(format!("{:?}", key).contains("redacted"));
    }
}
