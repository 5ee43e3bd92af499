//! OpenAI video jobs (`POST /v1/videos`, `GET /v1/videos/{id}`, `GET /v1/videos/{id}/content`).
//! A create request is JSON or `multipart/form-data` (as OpenAI's SDKs send it); the gateway
//! reads its `model` (required here: the gateway routes by it) and, when the deployment's model
//! differs, rewrites that one field, leaving every other byte as the client sent it.
//!
//! Job ids the gateway hands out embed where the job lives, so any node can route a poll:
//! `mgv.{provider_id}.{hex(deployment model)}.{upstream job id}` (see [`GatewayJobId`]).

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::Bytes;
use serde::Deserialize;

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

/// A job id as the gateway hands it out: which provider account holds the job, for which
/// deployment model (its price), and the provider's own id.
#[derive(Debug, PartialEq, Eq)]
pub struct GatewayJobId<'a> {
    pub provider_id: Cow<'a, str>,
    pub model: String,
    pub upstream_id: Cow<'a, str>,
}

const PREFIX: &str = "mgv.";

/// Provider job ids the gateway accepts (they go into a URL path).
fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl GatewayJobId<'_> {
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(
            PREFIX.len()
                + self.provider_id.len()
                + 2 * self.model.len()
                + self.upstream_id.len()
                + 2,
        );
        s.push_str(PREFIX);
        s.push_str(&self.provider_id);
        s.push('.');
        for b in self.model.bytes() {
            let _ = write!(s, "{b:02x}");
        }
        s.push('.');
        s.push_str(&self.upstream_id);
        s
    }

    /// `None` for anything that is not a gateway job id with a safe provider job id.
    pub fn decode(id: &str) -> Option<GatewayJobId<'_>> {
        let rest = id.strip_prefix(PREFIX)?;
        let mut parts = rest.splitn(3, '.');
        let provider_id = parts.next()?;
        let model_hex = parts.next()?;
        let upstream_id = parts.next()?;
        if provider_id.is_empty() || model_hex.len() % 2 != 0 || !safe_id(upstream_id) {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..model_hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(model_hex.get(i..i + 2)?, 16).ok())
            .collect();
        Some(GatewayJobId {
            provider_id: Cow::Borrowed(provider_id),
            model: String::from_utf8(bytes?).ok()?,
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

    #[test]
    fn gateway_job_ids_round_trip_and_reject_unsafe_upstream_ids() {
        let id = GatewayJobId {
            provider_id: "p-1".into(),
            model: "sora:2/x".into(),
            upstream_id: "video_abc".into(),
        };
        let s = id.encode();
        assert_eq!(GatewayJobId::decode(&s), Some(id));
        assert!(GatewayJobId::decode("mgv.p.00.../etc").is_none());
        assert!(GatewayJobId::decode("video_abc").is_none());
    }
}
