//! The built-in mock's audio answers, offline: a transcription or translation names what it
//! heard (the file, its container and duration) in the `response_format` asked for (`json`,
//! `verbose_json`, `text`, `srt`, `vtt`), reporting whisper-style usage (`duration`, seconds)
//! in the JSON forms; speech streams back a short valid audio file — a quiet 440 Hz tone as
//! 16 kHz mono WAV (`wav`), the same samples headerless (`pcm`, 24 kHz as OpenAI's), or silent
//! MPEG-1 Layer III frames (`mp3`, the default) — about 60 ms of audio per input character,
//! at most 5 s. Other formats (opus, aac, flac) are answered with a 400, as the mock cannot
//! encode them.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::providers::{Body, UpstreamResponse};
use crate::surfaces::openai_audio::Upload;

const LABEL: &str = "This is a ModelGate mock transcription";

/// `ms` milliseconds of a quiet 440 Hz tone as a 16-bit mono WAV file at `rate` Hz.
pub fn wav(rate: u32, ms: u32) -> Vec<u8> {
    let pcm = tone(rate, ms);
    let mut v = Vec::with_capacity(44 + pcm.len());
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&1u16.to_le_bytes()); // mono
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 2).to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    v.extend_from_slice(&pcm);
    v
}

/// 16-bit little-endian samples of a 440 Hz tone at about -20 dBFS.
fn tone(rate: u32, ms: u32) -> Vec<u8> {
    let n = u64::from(rate) * u64::from(ms) / 1000;
    let mut out = Vec::with_capacity(n as usize * 2);
    for i in 0..n {
        let t = i as f64 / f64::from(rate);
        let s = (std::f64::consts::TAU * 440.0 * t).sin() * 3_000.0;
        out.extend_from_slice(&(s as i16).to_le_bytes());
    }
    out
}

/// `n` silent MPEG-1 Layer III frames (128 kb/s, 44.1 kHz, mono; 1152 samples, 417 bytes each):
/// all-zero side information decodes to silence.
pub fn mp3_silence(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * 417);
    for _ in 0..n {
        v.extend_from_slice(&[0xFF, 0xFB, 0x90, 0xC4]);
        v.resize(v.len() + 413, 0);
    }
    v
}

fn error(message: &str, param: &str) -> UpstreamResponse {
    let body = json!({"error": {"message": message, "type": "invalid_request_error",
                                "param": param, "code": null}});
    UpstreamResponse {
        status: StatusCode::BAD_REQUEST,
        content_type: Some(HeaderValue::from_static("application/json")),
        retry_after_secs: None,
        body: Body::Full(Bytes::from(body.to_string())),
    }
}

fn full(content_type: &'static str, body: String) -> UpstreamResponse {
    UpstreamResponse {
        status: StatusCode::OK,
        content_type: Some(HeaderValue::from_static(content_type)),
        retry_after_secs: None,
        body: Body::Full(Bytes::from(body)),
    }
}

/// `hh:mm:ss{sep}mmm`.
fn timestamp(ms: u64, sep: char) -> String {
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    format!("{h:02}:{m:02}:{s:02}{sep}{:03}", ms % 1000)
}

/// Answers a transcription (`translate`: a translation into English) of `upload`.
pub fn transcription(upload: Option<&Upload>, translate: bool) -> UpstreamResponse {
    let Some(u) = upload else {
        return error("you must provide a file", "file");
    };
    let ms = u.media_ms.unwrap_or(0);
    let seconds = ms.div_ceil(1000);
    let language = if translate {
        "english".to_owned()
    } else {
        u.field("language")
            .map_or_else(|| "english".to_owned(), |l| l.into_owned())
    };
    let text = format!(
        "{LABEL}{} of `{}`: {} bytes of {} audio, {}.{:03} seconds long.",
        if translate { " (translated)" } else { "" },
        u.file_name(),
        u.file_len(),
        u.container.as_str(),
        ms / 1000,
        ms % 1000
    );
    let usage = json!({"type": "duration", "seconds": seconds});
    let format = u.field("response_format");
    match format.as_deref().unwrap_or("json") {
        "json" => full(
            "application/json",
            json!({"text": text, "usage": usage}).to_string(),
        ),
        "verbose_json" => {
            let task = if translate { "translate" } else { "transcribe" };
            let segment = json!({"id": 0, "seek": 0, "start": 0.0, "end": ms as f64 / 1000.0,
                                 "text": text, "tokens": [], "temperature": 0.0,
                                 "avg_logprob": -0.1, "compression_ratio": 1.0,
                                 "no_speech_prob": 0.0});
            full(
                "application/json",
                json!({"task": task, "language": language, "duration": ms as f64 / 1000.0,
                       "text": text, "segments": [segment], "usage": usage})
                .to_string(),
            )
        }
        "text" => full("text/plain; charset=utf-8", format!("{text}\n")),
        "srt" => full(
            "text/plain; charset=utf-8",
            format!(
                "1\n{} --> {}\n{text}\n\n",
                timestamp(0, ','),
                timestamp(ms, ',')
            ),
        ),
        "vtt" => full(
            "text/vtt; charset=utf-8",
            format!(
                "WEBVTT\n\n{} --> {}\n{text}\n\n",
                timestamp(0, '.'),
                timestamp(ms, '.')
            ),
        ),
        other => error(
            &format!("unsupported response_format `{other}`"),
            "response_format",
        ),
    }
}

/// Answers a speech request: a short audio file, streamed in chunks.
pub fn speech(body: &[u8]) -> UpstreamResponse {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let characters = request["input"].as_str().map_or(0, |s| s.chars().count());
    let ms = (characters as u32).saturating_mul(60).clamp(200, 5_000);
    let (content_type, audio) = match request["response_format"].as_str().unwrap_or("mp3") {
        "mp3" => ("audio/mpeg", mp3_silence(ms as usize * 441 / 11_520 + 1)),
        "wav" => ("audio/wav", wav(16_000, ms)),
        "pcm" => ("audio/pcm", tone(24_000, ms)),
        other => {
            return error(
                &format!("the mock cannot encode `{other}`; ask for mp3, wav or pcm"),
                "response_format",
            )
        }
    };
    let audio = Bytes::from(audio);
    let chunks: Vec<Result<Bytes, crate::providers::UpstreamError>> = (0..audio.len())
        .step_by(4096)
        .map(|at| Ok(audio.slice(at..(at + 4096).min(audio.len()))))
        .collect();
    UpstreamResponse {
        status: StatusCode::OK,
        content_type: Some(HeaderValue::from_static(content_type)),
        retry_after_secs: None,
        body: Body::Stream(futures_util::stream::iter(chunks).boxed()),
    }
}
