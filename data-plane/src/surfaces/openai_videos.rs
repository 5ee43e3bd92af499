//! OpenAI video jobs (`POST /v1/videos`, `GET /v1/videos/{id}`, `GET /v1/videos/{id}/content`).
//! A create request is JSON or `multipart/form-data` (as OpenAI's SDKs send it); the gateway
//! reads its `model` (required here: the gateway routes by it) and sets the deployment's model.
//! A JSON body is rewritten only when the model differs; a form is parsed with `multer` and
//! always written out again canonically (same boundary, parts, names and values), so the
//! provider reads exactly the form the gateway read.
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
use crate::error::ProxyError;

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    prompt: Option<Cow<'a, str>>,
}

/// Whether a body is multipart (it starts with its boundary line).
pub fn is_multipart(raw: &[u8]) -> bool {
    raw.starts_with(b"--")
}

/// The boundary a multipart body opens with (`--{boundary}\r\n`; RFC 2046: 1 to 70 characters).
fn boundary_of(raw: &[u8]) -> Option<&str> {
    let rest = raw.strip_prefix(b"--")?;
    let end = memchr::memmem::find(rest, b"\r\n")?;
    let boundary = std::str::from_utf8(&rest[..end]).ok()?;
    (1..=70).contains(&boundary.len()).then_some(boundary)
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    name: String,
    file_name: Option<String>,
    content_type: Option<String>,
    data: Bytes,
}

/// A `multipart/form-data` body as parsed by `multer`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Form {
    boundary: String,
    parts: Vec<Part>,
}

fn form_error(detail: impl std::fmt::Display) -> ProxyError {
    ProxyError::invalid_param(
        "body",
        format!("the multipart/form-data body could not be read: {detail}"),
    )
}

/// Names go back into a `Content-Disposition` header between quotes.
fn quotable(s: &str) -> bool {
    !s.bytes().any(|b| matches!(b, b'"' | b'\\' | b'\r' | b'\n'))
}

impl Form {
    /// Parses a whole body (already in memory) with the boundary it opens with. Every part
    /// must be named; the `model` field may appear once, and not as a file.
    fn parse(raw: &[u8]) -> Result<Form, ProxyError> {
        use futures_util::FutureExt;
        let boundary = boundary_of(raw)
            .ok_or_else(|| form_error("it does not open with a boundary line"))?
            .to_owned();
        let body = Bytes::copy_from_slice(raw);
        let stream =
            futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
        let mut multipart = multer::Multipart::new(stream, boundary.clone());
        let parts = async {
            let mut parts = Vec::new();
            while let Some(field) = multipart.next_field().await? {
                let name = field.name().map(str::to_owned);
                let file_name = field.file_name().map(str::to_owned);
                let content_type = field
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let data = field.bytes().await?;
                parts.push((name, file_name, content_type, data));
            }
            Ok::<_, multer::Error>(parts)
        }
        // The whole body is at hand: parsing never waits.
        .now_or_never()
        .ok_or_else(|| form_error("it ended early"))?
        .map_err(form_error)?;
        let mut form = Form {
            boundary,
            parts: Vec::with_capacity(parts.len()),
        };
        for (name, file_name, content_type, data) in parts {
            let name = name.ok_or_else(|| form_error("a part has no name"))?;
            if !quotable(&name) || !file_name.as_deref().is_none_or(quotable) {
                return Err(form_error("a part's name has a quote or a line break"));
            }
            form.parts.push(Part {
                name,
                file_name,
                content_type,
                data,
            });
        }
        let models: Vec<&Part> = form.parts.iter().filter(|p| p.name == "model").collect();
        match models.as_slice() {
            [] => {}
            [m] if m.file_name.is_none() => {}
            [_] => {
                return Err(ProxyError::invalid_param(
                    "model",
                    "model must be a form field, not a file",
                ))
            }
            _ => {
                return Err(ProxyError::invalid_param(
                    "model",
                    "the form names model more than once",
                ))
            }
        }
        Ok(form)
    }

    /// The value of the (non-file) field `name`, if any.
    fn field(&self, name: &str) -> Option<String> {
        self.parts
            .iter()
            .find(|p| p.name == name && p.file_name.is_none())
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    }

    /// The form written out again, canonically, with the same boundary: what the provider
    /// receives is exactly what the gateway read (no second parser can see another `model`).
    fn write(&self) -> Bytes {
        let size: usize = self
            .parts
            .iter()
            .map(|p| p.data.len() + p.name.len() + 128)
            .sum();
        let mut out = Vec::with_capacity(size + self.boundary.len() + 8);
        for p in &self.parts {
            out.extend_from_slice(b"--");
            out.extend_from_slice(self.boundary.as_bytes());
            out.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
            out.extend_from_slice(p.name.as_bytes());
            out.push(b'"');
            if let Some(f) = &p.file_name {
                out.extend_from_slice(b"; filename=\"");
                out.extend_from_slice(f.as_bytes());
                out.push(b'"');
            }
            if let Some(ct) = &p.content_type {
                out.extend_from_slice(b"\r\nContent-Type: ");
                out.extend_from_slice(ct.as_bytes());
            }
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(&p.data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--");
        out.extend_from_slice(self.boundary.as_bytes());
        out.extend_from_slice(b"--\r\n");
        Bytes::from(out)
    }
}

/// The value of the form field `name` in a multipart body (`None` for an unreadable form).
pub fn form_field(raw: &[u8], name: &str) -> Option<String> {
    Form::parse(raw).ok()?.field(name)
}

/// Refuses a body that does not match its `Content-Type`: a multipart body must be declared
/// `multipart/form-data` with the boundary it opens with, and a declared form must be one. The
/// provider parses by the header, the gateway by the body: they must agree.
pub fn check_content_type(
    raw: &[u8],
    content_type: Option<&http::HeaderValue>,
) -> Result<(), ProxyError> {
    let declared = content_type
        .and_then(|v| v.to_str().ok())
        .filter(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        })
        .map(|ct| multer::parse_boundary(ct).ok());
    let body = is_multipart(raw).then(|| boundary_of(raw));
    match (declared, body) {
        (None, None) => Ok(()),
        (Some(Some(a)), Some(Some(b))) if a == b => Ok(()),
        _ => Err(ProxyError::invalid_param(
            "body",
            "the body does not match its Content-Type (a multipart/form-data body must open \
             with the boundary its Content-Type names)",
        )),
    }
}

pub fn peek(raw: &[u8]) -> Result<Peeked, ProxyError> {
    let (model, prompt) = if is_multipart(raw) {
        let form = Form::parse(raw)?;
        (form.field("model"), form.field("prompt"))
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
        media: super::openai_audio::Media::None,
    })
}

/// The create body with `model` set to `model`: a JSON body rewritten, a multipart one written
/// out again canonically from its parsed form (see [`check_content_type`]).
pub fn with_model(raw: &Bytes, model: &str) -> Result<Bytes, ProxyError> {
    if !is_multipart(raw) {
        return super::rewrite::rewrite(raw, Some(model), false);
    }
    let mut form = Form::parse(raw)?;
    let field = form
        .parts
        .iter_mut()
        .find(|p| p.name == "model")
        .ok_or_else(|| ProxyError::invalid_param("model", "you must provide a model parameter"))?;
    field.data = Bytes::copy_from_slice(model.as_bytes());
    Ok(form.write())
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
        // The canonical form of an SDK's form is the same bytes, the model aside.
        let want = String::from_utf8_lossy(FORM).replace("\r\n\r\nvid\r\n", "\r\n\r\nsora-2\r\n");
        assert_eq!(String::from_utf8_lossy(&out), want);
        assert_eq!(form_field(&out, "model").as_deref(), Some("sora-2"));
        assert_eq!(form_field(&out, "seconds").as_deref(), Some("8"));
        assert!(form_field(&out, "nothing").is_none());
    }

    #[test]
    fn a_crafted_form_that_ended_mid_part_is_a_400_not_a_panic() {
        // The hand-written reader sliced past the end of this body.
        for raw in [
            &b"--B\r\nH\r\n\r\nv\r\n--B"[..],
            b"--B\r\n",
            b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nvid",
            b"--\r\n",
            b"--",
        ] {
            let e = peek(raw).unwrap_err();
            assert_eq!(e.status, http::StatusCode::BAD_REQUEST, "{raw:?}");
            assert!(with_model(&Bytes::copy_from_slice(raw), "m").is_err());
        }
    }

    #[test]
    fn a_form_naming_model_twice_or_as_a_file_is_refused() {
        let twice = b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ncheap\r\n--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\np\r\n--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ndear\r\n--B--\r\n";
        assert_eq!(peek(twice).unwrap_err().param.as_deref(), Some("model"));
        let file = b"--B\r\nContent-Disposition: form-data; name=\"model\"; filename=\"m.txt\"\r\n\r\ncheap\r\n--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\np\r\n--B--\r\n";
        assert_eq!(peek(file).unwrap_err().param.as_deref(), Some("model"));
    }

    #[test]
    fn a_multipart_body_must_match_the_boundary_its_content_type_names() {
        let ct = |v: &'static str| http::HeaderValue::from_static(v);
        let form = Some(ct("multipart/form-data; boundary=XyZ"));
        assert!(check_content_type(FORM, form.as_ref()).is_ok());
        let other = Some(ct("multipart/form-data; boundary=Other"));
        assert!(check_content_type(FORM, other.as_ref()).is_err());
        let json = Some(ct("application/json"));
        assert!(check_content_type(FORM, json.as_ref()).is_err());
        assert!(check_content_type(br#"{"model":"m"}"#, form.as_ref()).is_err());
        assert!(check_content_type(br#"{"model":"m"}"#, json.as_ref()).is_ok());
        assert!(check_content_type(br#"{"model":"m"}"#, None).is_ok());
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
