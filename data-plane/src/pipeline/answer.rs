//! Answer: what the client gets, in its own format — the deployment's answer (whole, or
//! pumped event by event), the last rate-limited provider answer, or the gateway's refusal —
//! each after (or, for a stream, while) its usage event is written.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use modelgate_shared::usage::ErrorClass;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::account;
use super::admit::Prepared;
use super::attempt::Served;
use super::cached::{self, Capture};
use super::context::App;
use super::plan::Candidate;
use super::pump::{pass_through, pump};
use crate::cache::Plan;
use crate::error::ProxyError;
use crate::estimate::{self, Encoding, Produced};
use crate::providers::{self, UpstreamResponse};
use crate::security::refusal::Refusal;
use crate::surfaces::openai_audio::Media;
use crate::surfaces::{self, Surface};
use crate::translate::{self, stream::StreamTranslator, Usage};
use crate::usage::{Recorder, ServedBy};

pub static ROUTE_HEADER: HeaderName = HeaderName::from_static("x-modelgate-route");
pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
pub static FALLBACK_HEADER: HeaderName = HeaderName::from_static("x-modelgate-fallback");
/// Set when the request was translated to another wire format: `openai-chat->anthropic-messages`.
pub static TRANSLATED_HEADER: HeaderName = HeaderName::from_static("x-modelgate-translated");
/// Micro-USD left of the key's tightest hard budget (the control plane's last figure less what
/// this node has reserved since), on answers to keys that have one.
pub static BUDGET_REMAINING_HEADER: HeaderName =
    HeaderName::from_static("x-modelgate-budget-remaining");

pub fn with_request_id(mut resp: Response, request_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER.clone(), v);
    }
    resp
}

/// Answers a request the gateway refuses, in the caller's format, after writing its usage
/// event if its key is known. A request refused before that is billable to no one: its
/// event is dropped unwritten, and the HTTP edge (`server::anonymous`) counts and logs it.
pub async fn reject(surface: Surface, mut rec: Recorder, e: ProxyError) -> Response {
    let request_id = rec.request_id().to_owned();
    let identified = rec.identified();
    // Failed either way: an anonymous refusal is not written, but it is counted in the metrics
    // with its status and class when the event is sealed.
    rec.fail(e.status.as_u16(), e.class, &e.message);
    if identified {
        account::write(rec).await;
    } else {
        rec.discard();
    }
    let mut resp = with_request_id(surface.error_response(&e), &request_id);
    resp.extensions_mut().insert(Refusal::of(&e, identified));
    resp
}

fn translated_header(from: Surface, to: Surface) -> Option<HeaderValue> {
    use Surface::{AnthropicMessages as A, Gemini as G, OpenAiChat as O};
    let v = match (from, to) {
        (O, A) => "openai-chat->anthropic-messages",
        (A, O) => "anthropic-messages->openai-chat",
        (O, G) => "openai-chat->gemini",
        (G, O) => "gemini->openai-chat",
        (A, G) => "anthropic-messages->gemini",
        (G, A) => "gemini->anthropic-messages",
        // Same format, or a pass-through surface (responses, embeddings, images, videos).
        _ => return None,
    };
    Some(HeaderValue::from_static(v))
}

/// `group=<alias>; deployment=<provider>/<model>; attempts=<n>`, written into one buffer of
/// its size that becomes the header's bytes (`format!` and `from_str` cost a copy and most of
/// a microsecond more). Names that are not visible ASCII leave the header out, as `from_str`
/// would.
fn route_header(p: &Prepared<'_>, c: &Candidate<'_>, attempts: u32) -> Option<HeaderValue> {
    let parts: [&[u8]; 6] = [
        b"group=",
        p.group.alias.as_bytes(),
        b"; deployment=",
        c.provider.name.as_bytes(),
        b"/",
        c.deployment.model.as_bytes(),
    ];
    if !parts
        .iter()
        .all(|part| part.iter().all(|b| (b' '..=b'~').contains(b)))
    {
        return None;
    }
    let mut v = Vec::with_capacity(parts.iter().map(|part| part.len()).sum::<usize>() + 20);
    for part in parts {
        v.extend_from_slice(part);
    }
    v.extend_from_slice(b"; attempts=");
    v.extend_from_slice(itoa::Buffer::new().format(attempts).as_bytes());
    HeaderValue::from_maybe_shared(Bytes::from(v)).ok()
}

/// The deployment answered (success or a client error): meter it and hand it back — whole, or
/// pumped event by event by a task that outlives the handler.
pub async fn served(
    app: &App,
    mut rec: Recorder,
    p: &Prepared<'_>,
    served: Served<'_, '_>,
    request_id: &str,
    cache: Option<&Plan>,
) -> Response {
    let Served {
        candidate: c,
        response: upstream,
        attempts,
        in_flight,
    } = served;
    rec.mark_first_byte();
    rec.served_by(ServedBy {
        provider_id: &c.provider.id,
        model: &c.deployment.model,
        deployment_id: c.deployment_id,
        fallback: c.backup || attempts > 1,
        price: c.price.as_ref(),
    });
    let format = p.surface.upstream_for(c.provider.kind);
    let basis = estimate::Basis {
        request: p.raw.clone(),
        client: p.surface,
        upstream: format,
        encoding: Encoding::for_model(&c.deployment.model),
    };
    let translated = translated_header(format, p.surface);
    let UpstreamResponse {
        status,
        mut content_type,
        body,
        ..
    } = upstream;
    let mut resp = match body {
        providers::Body::Full(bytes) => {
            rec.answered(status.as_u16());
            let usage = match format {
                Surface::OpenAiChat => translate::response::openai_usage(&bytes),
                Surface::AnthropicMessages => translate::response::anthropic_usage(&bytes),
                Surface::OpenAiResponses => surfaces::openai_responses::usage(&bytes),
                Surface::OpenAiEmbeddings => surfaces::openai_embeddings::usage(&bytes),
                Surface::OpenAiImages => surfaces::openai_images::usage(&bytes),
                // Video jobs are served by `pipeline::videos`, never by the ladder.
                Surface::OpenAiVideos => None,
                Surface::Gemini => translate::gemini::gemini_usage(&bytes),
                // Metered below, by the provider's report or the gateway's own figure.
                Surface::OpenAiTranscriptions
                | Surface::OpenAiTranslations
                | Surface::OpenAiSpeech => None,
            };
            let audio = p.surface.is_audio().then(|| audio_usage(p, &bytes));
            // Only an answer without usage keeps the provider's own bytes, to count them.
            let unmetered = (usage.is_none() && status.is_success()).then(|| bytes.clone());
            let (status, bytes) = if translated.is_some() {
                content_type = Some(HeaderValue::from_static("application/json"));
                translate::full(format, p.surface, status, &bytes)
            } else {
                (status, bytes)
            };
            if let (true, Some((u, estimated))) = (status.is_success(), audio) {
                rec.charge(u, estimated, c.price);
            } else if status.is_success() {
                match (usage, unmetered) {
                    (Some(u), _) => rec.charge(u, false, c.price),
                    (None, answer) => {
                        let produced = match (p.surface, answer) {
                            // Embeddings and images have no output tokens to estimate.
                            (Surface::OpenAiEmbeddings | Surface::OpenAiImages, _) | (_, None) => {
                                Produced::Nothing
                            }
                            (_, Some(body)) => Produced::Answer(body),
                        };
                        let u = estimate::estimate_usage(basis, produced).await;
                        rec.charge(u, true, c.price);
                    }
                }
            } else {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
                rec.fail(status.as_u16(), ErrorClass::ProviderError, &text);
            }
            if status.is_success() {
                cached::store_whole(app, cache, &rec, &bytes);
            }
            account::write(rec).await;
            drop(in_flight);
            let mut r = Response::new(Body::from(bytes));
            *r.status_mut() = status;
            r
        }
        providers::Body::Stream(upstream) if p.surface == Surface::OpenAiSpeech => {
            // Speech is metered by its input's characters, known before the first byte.
            rec.answered(status.as_u16());
            if let Some((u, estimated)) = speech_usage(p) {
                rec.charge(u, estimated, c.price);
            }
            let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
            let idle = Duration::from_millis(u64::from(c.group.policy.stream_idle_timeout_ms));
            let pumped = pass_through(upstream, tx, rec, idle);
            app.tasks.spawn(async move {
                pumped.await;
                drop(in_flight);
            });
            let mut r = Response::new(Body::from_stream(ReceiverStream::new(rx)));
            *r.status_mut() = status;
            r
        }
        providers::Body::Stream(upstream) => {
            rec.answered(status.as_u16());
            let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
            let idle = Duration::from_millis(u64::from(c.group.policy.stream_idle_timeout_ms));
            if p.json_array {
                content_type = Some(HeaderValue::from_static("application/json; charset=UTF-8"));
            } else if translated.is_some() {
                content_type = Some(HeaderValue::from_static("text/event-stream"));
            }
            let translator = StreamTranslator::new(format, p.surface, p.client_wants_usage);
            let capture = cache
                .filter(|plan| plan.write && status.is_success())
                .map(|plan| Capture::new(app.cache.clone(), plan.clone()));
            // Boxed where it is made: the pump's state (the usage event, the translator, the
            // splitter) is kilobytes, and unboxed it was copied three times on its way into
            // the task (into the spawned block, into the task's cell, and over by its output).
            let pumped = Box::pin(pump(
                upstream,
                tx,
                rec,
                p.surface,
                translator,
                c.price,
                basis,
                idle,
                p.json_array,
                capture,
            ));
            app.tasks.spawn(async move {
                pumped.await;
                drop(in_flight);
            });
            let mut r = Response::new(Body::from_stream(ReceiverStream::new(rx)));
            *r.status_mut() = status;
            r.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            r
        }
    };
    let h = resp.headers_mut();
    if let Some(ct) = content_type {
        h.insert(http::header::CONTENT_TYPE, ct);
    }
    if let Some(v) = route_header(p, c, attempts) {
        h.insert(ROUTE_HEADER.clone(), v);
    }
    if let Some(v) = translated {
        h.insert(TRANSLATED_HEADER.clone(), v);
    }
    if c.backup {
        if let Ok(v) = HeaderValue::from_str(&c.group.alias) {
            h.insert(FALLBACK_HEADER.clone(), v);
        }
    }
    with_request_id(resp, request_id)
}

/// Speech: the characters of its input, counted by the gateway (the provider reports none
/// for `tts-1` and kin), so the usage row is not marked estimated.
fn speech_usage(p: &Prepared<'_>) -> Option<(Usage, bool)> {
    match p.media {
        Media::Speech { characters } => Some((
            Usage {
                characters,
                ..Usage::default()
            },
            false,
        )),
        _ => None,
    }
}

/// An audio answer's usage: a transcription's or translation's as the provider reports it
/// (tokens, or seconds), else the upload's duration from its header, marked estimated (0 when
/// the header records none); speech by its characters.
fn audio_usage(p: &Prepared<'_>, answer: &[u8]) -> (Usage, bool) {
    if let Some(speech) = speech_usage(p) {
        return speech;
    }
    if let Some(u) = surfaces::openai_audio::transcription_usage(answer) {
        return (u, false);
    }
    let media_ms = p.media.upload().and_then(|u| u.media_ms).unwrap_or(0);
    (
        Usage {
            media_ms,
            ..Usage::default()
        },
        true,
    )
}

/// Every deployment rate-limited the request: the last provider answer goes back as is (429,
/// with its body), so the client's own backoff logic sees what the provider said.
pub async fn rate_limited(
    mut rec: Recorder,
    p: &Prepared<'_>,
    from: Surface,
    upstream: UpstreamResponse,
    attempts: u32,
    request_id: &str,
) -> Response {
    let status = upstream.status;
    let mut content_type = upstream.content_type;
    let bytes = match upstream.body {
        providers::Body::Full(b) => b,
        providers::Body::Stream(_) => Bytes::new(),
    };
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    rec.fail(status.as_u16(), ErrorClass::ProviderError, &text);
    account::write(rec).await;
    // The body is in the last deployment's format; the client gets its own.
    let bytes = if from != p.surface {
        content_type = Some(HeaderValue::from_static("application/json"));
        translate::full(from, p.surface, status, &bytes).1
    } else {
        bytes
    };
    let mut resp = (status, bytes).into_response();
    let h = resp.headers_mut();
    if let Some(ct) = content_type {
        h.insert(http::header::CONTENT_TYPE, ct);
    }
    if let Some(secs) = upstream.retry_after_secs {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            h.insert(http::header::RETRY_AFTER, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("group={}; attempts={attempts}", p.group.alias)) {
        h.insert(ROUTE_HEADER.clone(), v);
    }
    with_request_id(resp, request_id)
}
