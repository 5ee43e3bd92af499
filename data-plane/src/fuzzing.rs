//! Entry points for fuzzing the parsers that read untrusted bytes: client request bodies
//! (JSON, and the video and audio surfaces' `multipart/form-data`, audio files' headers),
//! provider answers and error bodies, and provider SSE streams. Each takes arbitrary bytes and
//! must never panic. The cargo-fuzz targets in `fuzz/` call these under libFuzzer (nightly);
//! `data-plane/tests/fuzz.rs` runs them for a bounded number of seeded inputs on the stable
//! toolchain as part of the test suite.

use bytes::Bytes;
use http::StatusCode;

use crate::sse::{self, SseSplitter};
use crate::surfaces::openai_audio::{self, container::Container};
use crate::surfaces::{anthropic_messages, openai_chat, openai_videos, Surface};
use crate::translate::{request, response, stream::StreamTranslator};

const SURFACES: [Surface; 2] = [Surface::OpenAiChat, Surface::AnthropicMessages];

/// An upstream SSE stream, arriving in chunks of a size the first byte picks. Checks that the
/// events framed (and, under a small event cap, where the stream stops) do not depend on where
/// the stream was split, then runs them through every stream translation.
pub fn sse_stream(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 31) + 1;
    let (whole, _) = frame(body, body.len().max(1), sse::MAX_EVENT_BYTES);
    let (chunked, _) = frame(body, chunk, sse::MAX_EVENT_BYTES);
    assert_eq!(
        whole, chunked,
        "SSE framing must not depend on chunk boundaries"
    );
    // With a small event cap, where the stream stops must not depend on them either.
    let cap = usize::from(first % 7) * 16 + 8;
    assert_eq!(
        frame(body, body.len().max(1), cap),
        frame(body, chunk, cap),
        "the SSE event cap must not depend on chunk boundaries"
    );
    for event in &whole {
        let _ = sse::data_of(event);
    }
    for upstream in SURFACES {
        for client in SURFACES {
            for wants_usage in [false, true] {
                let mut t = StreamTranslator::new(upstream, client, wants_usage);
                let mut out = Vec::new();
                for event in &whole {
                    t.event(event.clone(), &mut out);
                }
            }
        }
    }
}

/// The events framed, and whether the stream stopped at an over-cap event.
fn frame(body: &[u8], chunk: usize, max_event: usize) -> (Vec<Bytes>, bool) {
    let mut splitter = SseSplitter::with_max_event(max_event);
    let mut events = Vec::new();
    for part in body.chunks(chunk) {
        events.extend(splitter.push(part));
    }
    let too_large = splitter.too_large().is_some();
    events.extend(splitter.remainder());
    (events, too_large)
}

/// A request body as a client would send it, and a response or error body as a provider
/// would: every peek, translation and usage reader over the same bytes.
pub fn bodies(data: &[u8]) {
    let _ = openai_chat::peek(data);
    let _ = anthropic_messages::peek(data);
    for drop in [false, true] {
        let _ = request::openai_to_anthropic(data, "m", drop);
        let _ = request::anthropic_to_openai(data, "m", drop);
    }
    let _ = response::anthropic_to_openai(data);
    let _ = response::openai_to_anthropic(data);
    let _ = response::openai_usage(data);
    let _ = response::anthropic_usage(data);
    let _ = response::error_message(data);
    for status in [StatusCode::BAD_REQUEST, StatusCode::TOO_MANY_REQUESTS] {
        let _ = response::error_to_openai(status, data);
        let _ = response::error_to_anthropic(status, data);
    }
}

/// A video create body as a client would send it, JSON or `multipart/form-data`: the peek, the
/// model rewrite and the field reader. A form that reads is written out so that it reads again
/// with the new model and every other field unchanged.
pub fn multipart(data: &[u8]) {
    let peeked = openai_videos::peek(data);
    let _ = openai_videos::check_content_type(data, None);
    let Ok(rewritten) = openai_videos::with_model(&Bytes::copy_from_slice(data), "m2") else {
        return;
    };
    if !openai_videos::is_multipart(data) {
        return;
    }
    assert_eq!(
        openai_videos::form_field(&rewritten, "model").as_deref(),
        Some("m2"),
        "the rewritten form names the new model"
    );
    if peeked.is_ok() {
        assert_eq!(
            openai_videos::form_field(data, "prompt"),
            openai_videos::form_field(&rewritten, "prompt"),
            "the rewrite keeps every other field"
        );
        assert!(openai_videos::peek(&rewritten).is_ok());
    }
}

/// An audio upload as a client would send it (`multipart/form-data` with boundary `XyZ`), and
/// the same bytes as an audio file, a speech request and a transcription answer: every reader.
/// An upload that reads is re-encoded for another model and must read again, the same parts in
/// the same order with only `model` changed.
pub fn audio(data: &[u8]) {
    for c in [
        Container::Wav,
        Container::Mp3,
        Container::Flac,
        Container::Ogg,
        Container::Mp4,
        Container::Webm,
    ] {
        let _ = c.duration_ms(data);
    }
    let _ = Container::sniff(data);
    for name in ["a.wav", "a.mp3", "a.txt", "a"] {
        let _ = openai_audio::judge(name, data);
    }
    let _ = openai_audio::peek_speech(data);
    let _ = openai_audio::transcription_usage(data);
    let content_type = http::HeaderValue::from_static("multipart/form-data; boundary=XyZ");
    let read = |body: Bytes, ct: &http::HeaderValue| {
        futures_util::FutureExt::now_or_never(openai_audio::peek_upload(body, Some(ct)))
    };
    let Some(Ok(peeked)) = read(Bytes::copy_from_slice(data), &content_type) else {
        return;
    };
    let Some(upload) = peeked.media.upload() else {
        return;
    };
    let again = read(upload.encode("m2"), &upload.content_type());
    let reread = match &again {
        Some(Ok(p)) => p.media.upload().map(|u| (p.model.as_str(), u)),
        _ => None,
    };
    assert!(reread.is_some(), "a re-encoded upload reads again at once");
    let Some((model, reread)) = reread else {
        return;
    };
    assert_eq!(model, "m2");
    let plain = |s: &str| !s.contains(['"', '\r', '\n']);
    assert_eq!(upload.parts.len(), reread.parts.len(), "every part is kept");
    for (a, b) in upload.parts.iter().zip(&reread.parts) {
        if plain(&a.name) && a.file_name.as_deref().is_none_or(plain) {
            assert_eq!((&a.name, &a.file_name), (&b.name, &b.file_name));
        }
        if a.name != "model" {
            assert_eq!(a.data, b.data, "only the model changes");
        }
    }
}
