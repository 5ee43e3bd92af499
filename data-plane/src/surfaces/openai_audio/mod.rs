//! OpenAI audio: `POST /v1/audio/transcriptions` and `/v1/audio/translations` (a
//! `multipart/form-data` upload: the audio `file` and text fields — `model`, `language`,
//! `prompt`, `response_format`, …) and `POST /v1/audio/speech` (JSON in, audio out, streamed).
//! Passed through to OpenAI-format deployments (openai, openai-compatible, the mock).
//!
//! An upload is read whole under the gateway's audio cap, parsed (multer), and its file judged
//! by its name's extension and its leading bytes ([`container`]), never by the part's content
//! type: an unknown extension, bytes no accepted container starts with, or an extension that
//! names another container than the bytes are, is a 400 on `file`, before any upstream call.
//! Each attempt sends the upload re-encoded ([`Upload::encode`]): the same parts in the same
//! order, `model` the deployment's, the file with its container's MIME type, under a fresh
//! boundary.
//!
//! Metering: a transcription or translation by the provider's report when it gives one —
//! `usage` of type `tokens` (`input_tokens`, `output_tokens`: gpt-4o-transcribe and kin) or
//! `duration` (`seconds`: whisper), or verbose_json's `duration` — else by the file's duration
//! read from its header (marked estimated); speech by the characters of its `input`.

pub mod container;

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;
use memchr::memmem;
use serde::Deserialize;

use super::{check_model, parse_error, Peeked};
use crate::error::ProxyError;
use container::{Container, Extension, EXTENSIONS};
use modelgate_shared::pricing::Tokens as Usage;

/// One part of an upload, kept to be sent on.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub data: Bytes,
}

/// A transcription or translation upload, parsed and judged.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Every part, in the client's order (the file among them).
    pub parts: Vec<Part>,
    /// Index of the `file` part in `parts`.
    pub file: usize,
    pub container: Container,
    /// The duration the file's header records.
    pub media_ms: Option<u64>,
    /// The boundary [`Upload::encode`] writes (chosen so no part contains it).
    boundary: String,
}

/// What a request on an audio surface carries beyond [`Peeked`]'s common fields.
#[derive(Debug, Clone, Default)]
pub enum Media {
    #[default]
    None,
    Upload(Box<Upload>),
    /// Text-to-speech: the characters of the input text.
    Speech {
        characters: u64,
    },
}

impl Media {
    pub fn upload(&self) -> Option<&Upload> {
        match self {
            Media::Upload(u) => Some(u),
            _ => None,
        }
    }
}

fn bad_file(message: impl Into<String>) -> ProxyError {
    ProxyError::invalid_param_owned("file".to_owned(), message.into())
}

/// Peeks a transcription or translation upload: the multipart body (`content_type` names its
/// boundary), its `model`, its `file` judged by name and leading bytes, the file's duration.
pub async fn peek_upload(
    raw: Bytes,
    content_type: Option<&HeaderValue>,
) -> Result<Peeked, ProxyError> {
    let content_type = content_type.and_then(|v| v.to_str().ok()).unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ProxyError::invalid_param(
            "content-type",
            "the body must be multipart/form-data with a boundary",
        )
    })?;
    let body = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(raw) });
    let mut multipart = multer::Multipart::new(body, boundary);
    let malformed = |e: multer::Error| {
        ProxyError::invalid_param_owned(
            "body".to_owned(),
            format!("the multipart body could not be read: {e}"),
        )
    };
    let mut parts = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let data = field.bytes().await.map_err(malformed)?;
        parts.push(Part {
            name,
            file_name,
            data,
        });
    }
    let text = |name: &str| {
        parts
            .iter()
            .find(|p| p.name == name && p.file_name.is_none())
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    };
    let model = check_model(text("model").as_deref())?;
    if text("stream").is_some_and(|s| s.trim().eq_ignore_ascii_case("true")) {
        return Err(ProxyError::invalid_param(
            "stream",
            "streamed transcription is not supported by the gateway",
        ));
    }
    let Some(file) = parts.iter().position(|p| p.name == "file") else {
        return Err(bad_file("you must provide a file"));
    };
    let part = &parts[file];
    if part.data.is_empty() {
        return Err(bad_file("the file is empty"));
    }
    let container = judge(part.file_name.as_deref().unwrap_or(""), &part.data)?;
    let media_ms = container.duration_ms(&part.data);
    let boundary = boundary_for(&parts);
    Ok(Peeked {
        model,
        stream: false,
        client_wants_usage: false,
        max_output_tokens: None,
        media: Media::Upload(Box::new(Upload {
            parts,
            file,
            container,
            media_ms,
            boundary,
        })),
    })
}

/// The container of an uploaded file: what its leading bytes are, which its name's extension
/// must agree with (a name without an extension leaves it to the bytes).
pub fn judge(file_name: &str, data: &[u8]) -> Result<Container, ProxyError> {
    let sniffed = Container::sniff(data);
    match (Container::from_file_name(file_name), sniffed) {
        (Extension::Unknown, _) => Err(bad_file(format!(
            "unsupported file format `{file_name}`; supported formats: {EXTENSIONS}"
        ))),
        (_, None) => Err(bad_file(format!(
            "the file `{file_name}` is not audio in a supported format ({EXTENSIONS})"
        ))),
        (Extension::Known(named), Some(found)) if named != found => Err(bad_file(format!(
            "the file `{file_name}` is named as {} but its content is {}",
            named.as_str(),
            found.as_str()
        ))),
        (_, Some(found)) => Ok(found),
    }
}

/// A boundary no part contains.
fn boundary_for(parts: &[Part]) -> String {
    loop {
        let b = format!("modelgate-{:032x}", rand::random::<u128>());
        let found = parts
            .iter()
            .any(|p| memmem::find(&p.data, b.as_bytes()).is_some());
        if !found {
            return b;
        }
    }
}

/// A name or file name in a `Content-Disposition` parameter: quotes and line breaks
/// percent-encoded, as browsers do.
fn quoted(s: &str) -> Cow<'_, str> {
    if s.contains(['"', '\r', '\n']) {
        Cow::Owned(
            s.replace('"', "%22")
                .replace('\r', "%0D")
                .replace('\n', "%0A"),
        )
    } else {
        Cow::Borrowed(s)
    }
}

impl Upload {
    /// `multipart/form-data; boundary=…` for the encoded body.
    pub fn content_type(&self) -> HeaderValue {
        HeaderValue::from_str(&format!("multipart/form-data; boundary={}", self.boundary))
            .unwrap_or_else(|_| HeaderValue::from_static("multipart/form-data"))
    }

    /// The file's name as the client sent it.
    pub fn file_name(&self) -> &str {
        self.parts[self.file].file_name.as_deref().unwrap_or("")
    }

    pub fn file_len(&self) -> usize {
        self.parts[self.file].data.len()
    }

    /// A text field's value.
    pub fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        self.parts
            .iter()
            .find(|p| p.name == name && p.file_name.is_none())
            .map(|p| String::from_utf8_lossy(&p.data))
    }

    /// The upload re-encoded for a deployment: every part in order, `model` set to `model`, the
    /// file with its container's MIME type.
    pub fn encode(&self, model: &str) -> Bytes {
        let size: usize = self.parts.iter().map(|p| p.data.len() + 160).sum();
        let mut out = BytesMut::with_capacity(size + 64);
        for (i, p) in self.parts.iter().enumerate() {
            out.put_slice(b"--");
            out.put_slice(self.boundary.as_bytes());
            out.put_slice(b"\r\nContent-Disposition: form-data; name=\"");
            out.put_slice(quoted(&p.name).as_bytes());
            out.put_slice(b"\"");
            if let Some(f) = &p.file_name {
                out.put_slice(b"; filename=\"");
                out.put_slice(quoted(f).as_bytes());
                out.put_slice(b"\"");
            }
            if i == self.file {
                out.put_slice(b"\r\nContent-Type: ");
                out.put_slice(self.container.mime().as_bytes());
            }
            out.put_slice(b"\r\n\r\n");
            if p.name == "model" && p.file_name.is_none() {
                out.put_slice(model.as_bytes());
            } else {
                out.put_slice(&p.data);
            }
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"--");
        out.put_slice(self.boundary.as_bytes());
        out.put_slice(b"--\r\n");
        out.freeze()
    }
}

#[derive(Deserialize)]
struct SpeechPeek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<Cow<'a, str>>,
}

/// Peeks a speech request: its model, and the characters of its `input` (required).
pub fn peek_speech(raw: &[u8]) -> Result<Peeked, ProxyError> {
    let p: SpeechPeek<'_> = serde_json::from_slice(raw).map_err(|e| parse_error(&e))?;
    let model = check_model(p.model.as_deref())?;
    let Some(input) = p.input.filter(|i| !i.is_empty()) else {
        return Err(ProxyError::invalid_param(
            "input",
            "you must provide an input parameter",
        ));
    };
    Ok(Peeked {
        model,
        // The audio comes back as it is made.
        stream: true,
        client_wants_usage: false,
        // Priced per character, not per output token.
        max_output_tokens: Some(0),
        media: Media::Speech {
            characters: input.chars().count() as u64,
        },
    })
}

#[derive(Deserialize)]
struct TranscriptionUsage {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    seconds: Option<f64>,
}

#[derive(Deserialize)]
struct TranscriptionPeek {
    #[serde(default)]
    usage: Option<TranscriptionUsage>,
    /// verbose_json's duration of the input, in seconds.
    #[serde(default)]
    duration: Option<f64>,
}

fn seconds_to_ms(s: f64) -> Option<u64> {
    // A measurement turned into integer milliseconds once; the cost is integer arithmetic.
    (0.0..1e12)
        .contains(&s)
        .then(|| (s * 1000.0).round() as u64)
}

/// The usage a transcription or translation answer reports: tokens, or seconds. `None` for an
/// answer without (text, srt and vtt formats, or a provider that reports nothing).
pub fn transcription_usage(json: &[u8]) -> Option<Usage> {
    let peek: TranscriptionPeek = serde_json::from_slice(json).ok()?;
    match peek.usage {
        Some(u) if u.kind.as_deref() == Some("tokens") || u.input_tokens + u.output_tokens > 0 => {
            Some(Usage {
                input: u.input_tokens,
                output: u.output_tokens,
                ..Usage::default()
            })
        }
        Some(TranscriptionUsage {
            seconds: Some(s), ..
        }) => Some(Usage {
            media_ms: seconds_to_ms(s)?,
            ..Usage::default()
        }),
        _ => peek.duration.and_then(seconds_to_ms).map(|media_ms| Usage {
            media_ms,
            ..Usage::default()
        }),
    }
}

#[cfg(test)]
mod tests;
