//! The audio surfaces end to end — `POST /v1/audio/transcriptions`, `/v1/audio/translations`
//! (multipart uploads) and `/v1/audio/speech` (audio streamed back) — against an upstream that
//! parses what the gateway sends (`support::audio_upstream`): the upload re-encoded with the
//! deployment's model and the file's real MIME type, usage rows by endpoint, unit and cost, and
//! bad input refused in OpenAI's error format with a usage row and no upstream call.

use futures_util::StreamExt;
use modelgate_data_plane::providers::mock::audio as sample;
use serde_json::{json, Value};

use crate::support::audio_upstream::{self as up, AudioUpstream};
use crate::support::{request_id, Gateway, AUDIO_CAP};

/// gpt-4o-transcribe style: 1000 µ$ an input token, 2000 an output token.
const PER_INPUT_TOKEN: i64 = 1_000;
const PER_OUTPUT_TOKEN: i64 = 2_000;
/// whisper: $0.006 a minute = 100 µ$ a second.
const PER_SECOND: i64 = 100;
/// tts-1: $15 per 1M characters.
const PER_MCHAR: i64 = 15_000_000;

struct Setup {
    gw: Gateway,
    upstream: AudioUpstream,
    key: String,
    key_id: String,
    /// A key limited to the `chat` endpoint family.
    chat_only_key: String,
}

/// Aliases `transcribe` (→ `gpt-4o-transcribe-up`, priced by tokens), `whisper`
/// (→ `whisper-up`, by seconds) and `tts` (→ `tts-up`, by characters) on an openai-compatible
/// account at the audio upstream.
async fn setup() -> Setup {
    let upstream = AudioUpstream::start().await;
    let gw = Gateway::start().await;
    let team = gw.create("/teams", json!({"name": "audio-team"})).await;
    let key = gw
        .create(
            "/keys",
            json!({"team_id": team["id"], "name": "app", "environment": "prod"}),
        )
        .await;
    let chat_only = gw
        .create(
            "/keys",
            json!({"team_id": team["id"], "name": "chat-only", "environment": "prod",
                   "endpoint_families": ["chat"]}),
        )
        .await;
    let provider = gw
        .create("/providers", json!({"name": "oa-audio", "kind": "openai-compatible", "base_url": upstream.base_url(), "credential": "sk-audio-1234"}))
        .await;
    for model in [
        json!({"model": "gpt-4o-transcribe-up", "family": "audio",
               "input_micros_per_mtok": PER_INPUT_TOKEN * 1_000_000,
               "output_micros_per_mtok": PER_OUTPUT_TOKEN * 1_000_000}),
        json!({"model": "whisper-up", "family": "audio", "input_micros_per_mtok": 0,
               "output_micros_per_mtok": 0, "per_second_micros": PER_SECOND}),
        json!({"model": "tts-up", "family": "audio", "input_micros_per_mtok": 0,
               "output_micros_per_mtok": 0, "per_mchar_micros": PER_MCHAR}),
    ] {
        gw.create("/models", model).await;
    }
    for (alias, model) in [
        ("transcribe", "gpt-4o-transcribe-up"),
        ("whisper", "whisper-up"),
        ("tts", "tts-up"),
    ] {
        gw.create(
            "/routes",
            json!({"alias": alias, "deployments": [{"provider_id": provider["id"], "model": model}]}),
        )
        .await;
    }
    gw.wait_for_config().await;
    Setup {
        upstream,
        key: key["key_secret"].as_str().unwrap().to_owned(),
        key_id: key["id"].as_str().unwrap().to_owned(),
        chat_only_key: chat_only["key_secret"].as_str().unwrap().to_owned(),
        gw,
    }
}

/// A multipart body as clients send it: every file part as `application/octet-stream`.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----client-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match file {
            Some(f) => format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            ),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Setup {
    async fn upload(
        &self,
        path: &str,
        key: &str,
        parts: &[(&str, Option<&str>, &[u8])],
    ) -> reqwest::Response {
        let (content_type, body) = multipart(parts);
        self.gw
            .http
            .post(format!("{}{path}", self.gw.base_url()))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    fn speech(&self, body: Value) -> reqwest::RequestBuilder {
        self.gw
            .http
            .post(format!("{}/audio/speech", self.gw.base_url()))
            .bearer_auth(&self.key)
            .json(&body)
    }
}

#[tokio::test]
async fn a_transcription_is_re_encoded_for_the_deployment_and_metered_by_reported_tokens() {
    let s = setup().await;
    let wav = sample::wav(16_000, 1_500);
    let resp = s
        .upload(
            "/audio/transcriptions",
            &s.key,
            &[
                ("model", None, b"transcribe"),
                ("file", Some("meeting.wav"), &wav),
                ("language", None, b"en"),
                ("prompt", None, b"ModelGate, gRPC"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["text"], "Hello from the audio upstream.");

    // What the upstream got: multipart, every part in order, the deployment's model, the
    // file's bytes untouched with the MIME type of what it is.
    let sent = s.upstream.last();
    assert_eq!(sent.path, "/v1/audio/transcriptions");
    assert!(
        sent.content_type
            .starts_with("multipart/form-data; boundary="),
        "{}",
        sent.content_type
    );
    assert_eq!(sent.authorization.as_deref(), Some("Bearer sk-audio-1234"));
    let names: Vec<&str> = sent.parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["model", "file", "language", "prompt"]);
    assert_eq!(sent.text("model"), "gpt-4o-transcribe-up");
    let file = sent.part("file");
    assert_eq!(file.file_name.as_deref(), Some("meeting.wav"));
    assert_eq!(file.content_type.as_deref(), Some("audio/wav"));
    assert_eq!(file.data.as_ref(), wav.as_slice());
    assert_eq!(sent.text("language"), "en");
    assert_eq!(sent.text("prompt"), "ModelGate, gRPC");

    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["endpoint"], "audio.transcriptions");
    assert_eq!(row["requested_model"], "transcribe");
    assert_eq!(row["served_model"], "gpt-4o-transcribe-up");
    assert_eq!(row["status"], 200);
    assert_eq!(row["input_tokens"], up::INPUT_TOKENS);
    assert_eq!(row["output_tokens"], up::OUTPUT_TOKENS);
    // The provider's report is the unit: the header's duration is not charged on top.
    assert_eq!(row["media_ms"], 0);
    assert_eq!(row["estimated"], false);
    assert_eq!(
        row["cost_micros"],
        up::INPUT_TOKENS as i64 * PER_INPUT_TOKEN + up::OUTPUT_TOKENS as i64 * PER_OUTPUT_TOKEN
    );
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_translation_is_metered_by_the_duration_the_provider_reports() {
    let s = setup().await;
    let mp3 = sample::mp3_silence(40);
    let resp = s
        .upload(
            "/audio/translations",
            &s.key,
            &[
                ("file", Some("rede.mp3"), &mp3),
                ("model", None, b"whisper"),
                ("response_format", None, b"verbose_json"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["duration"], up::VERBOSE_SECONDS);
    let sent = s.upstream.last();
    assert_eq!(sent.path, "/v1/audio/translations");
    assert_eq!(sent.text("model"), "whisper-up");
    assert_eq!(
        sent.part("file").content_type.as_deref(),
        Some("audio/mpeg")
    );
    assert_eq!(sent.text("response_format"), "verbose_json");

    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["endpoint"], "audio.translations");
    // 8.47 s reported (the file itself is 1.04 s: the provider's figure wins).
    assert_eq!(row["media_ms"], 8_470);
    assert_eq!(row["estimated"], false);
    // 8.47 s × 100 µ$/s = 847 µ$.
    assert_eq!(row["cost_micros"], 847);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn without_a_provider_report_the_duration_is_read_from_the_file_header() {
    let s = setup().await;
    // 2.5 s of 16 kHz WAV: exactly 2500 ms from its header.
    let wav = sample::wav(16_000, 2_500);
    // 100 MPEG-1 Layer III frames at 44.1 kHz: 100 × 1152 / 44100 s = 2612.24 ms.
    let mp3 = sample::mp3_silence(100);
    for (name, data, ms, cost) in [
        ("clip.wav", &wav, 2_500, 250),
        ("clip.MP3", &mp3, 2_612, 261),
    ] {
        let resp = s
            .upload(
                "/audio/transcriptions",
                &s.key,
                &[
                    ("model", None, b"whisper"),
                    ("response_format", None, b"text"),
                    ("file", Some(name), data),
                ],
            )
            .await;
        assert_eq!(resp.status(), 200, "{name}");
        let id = request_id(&resp);
        assert_eq!(
            resp.text().await.unwrap(),
            "Hello from the audio upstream.\n"
        );
        let row = s.gw.usage_row(&id).await;
        assert_eq!(row["media_ms"], ms, "{name}");
        // The gateway's own figure, not the provider's.
        assert_eq!(row["estimated"], true, "{name}");
        // 2.5 s × 100 = 250; 2.61224 s × 100 = 261.2 → 261 (rounded half up per line).
        assert_eq!(row["cost_micros"], cost, "{name}");
    }
    s.gw.shutdown().await;
}

#[tokio::test]
async fn speech_is_streamed_back_as_it_arrives_and_metered_by_characters() {
    let s = setup().await;
    let input = "Hello there, wörld!";
    let resp = s
        .speech(json!({"model": "tts", "input": input, "voice": "alloy", "response_format": "mp3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/mpeg");
    let id = request_id(&resp);
    let mut body = resp.bytes_stream();
    // The upstream holds the rest of its audio until released: the first chunk reaching the
    // client now proves the gateway does not wait for the whole answer.
    // (Bounded, so a gateway that buffers fails here instead of waiting forever.)
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), body.next())
        .await
        .expect("the first chunk must arrive while the upstream holds the rest")
        .unwrap()
        .unwrap();
    assert_eq!(first.as_ref(), up::SPEECH_FIRST);
    s.upstream.release();
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, up::SPEECH_REST);

    let sent = s.upstream.last();
    assert_eq!(sent.path, "/v1/audio/speech");
    assert_eq!(sent.content_type, "application/json");
    assert_eq!(sent.json["model"], "tts-up");
    assert_eq!(sent.json["input"], input);
    assert_eq!(sent.json["voice"], "alloy");

    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["endpoint"], "audio.speech");
    assert_eq!(row["status"], 200);
    assert_eq!(row["streamed"], true);
    // 19 characters (not bytes: `ö` is two), at 15 µ$ each.
    assert_eq!(row["characters"], 19);
    assert_eq!(row["estimated"], false);
    assert_eq!(row["cost_micros"], 19 * 15);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn bad_uploads_and_keys_without_audio_are_refused_with_a_usage_row_and_no_upstream_call() {
    let s = setup().await;
    let wav = sample::wav(16_000, 200);
    let text = b"these are meeting notes, not audio".to_vec();
    let oversize = vec![0u8; AUDIO_CAP + 1];
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, Option<&'a str>, &'a [u8])>,
        u16,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "no file",
            s.key.as_str(),
            vec![("model", None, b"whisper")],
            400,
            "bad_request",
            "you must provide a file",
        ),
        (
            "an unsupported extension",
            &s.key,
            vec![
                ("model", None, b"whisper"),
                ("file", Some("notes.txt"), &text),
            ],
            400,
            "bad_request",
            "unsupported file format",
        ),
        (
            "text named as audio",
            &s.key,
            vec![
                ("model", None, b"whisper"),
                ("file", Some("notes.mp3"), &text),
            ],
            400,
            "bad_request",
            "not audio in a supported format",
        ),
        (
            "WAV named as MP3",
            &s.key,
            vec![
                ("model", None, b"whisper"),
                ("file", Some("clip.mp3"), &wav),
            ],
            400,
            "bad_request",
            "named as mp3 but its content is wav",
        ),
        (
            "an upload over the cap",
            &s.key,
            vec![
                ("model", None, b"whisper"),
                ("file", Some("big.wav"), &oversize),
            ],
            413,
            "payload_too_large",
            "exceeds the gateway's limit",
        ),
        (
            "a key without the audio family",
            &s.chat_only_key,
            vec![
                ("model", None, b"whisper"),
                ("file", Some("clip.wav"), &wav),
            ],
            403,
            "permission",
            "may not call the `audio` endpoints",
        ),
    ];
    for (what, key, parts, status, class, message) in cases {
        let resp = s.upload("/audio/transcriptions", key, &parts).await;
        assert_eq!(resp.status(), status, "{what}");
        let id = request_id(&resp);
        let body: Value = resp.json().await.unwrap();
        let error = &body["error"];
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{what}: {body}"
        );
        assert!(error["type"].is_string(), "{what}: {body}");
        assert!(
            error.get("param").is_some() && error.get("code").is_some(),
            "{what}: {body}"
        );
        let row = s.gw.usage_row(&id).await;
        assert_eq!(row["endpoint"], "audio.transcriptions", "{what}");
        assert_eq!(row["status"], status, "{what}");
        assert_eq!(row["error_class"], class, "{what}");
        assert_eq!(row["cost_micros"], 0, "{what}");
    }
    // Speech without input, and with a key that may not call audio.
    let resp = s
        .speech(json!({"model": "tts", "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["param"], "input");
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["endpoint"], "audio.speech");
    assert_eq!(row["key_id"], s.key_id.as_str());
    let resp =
        s.gw.http
            .post(format!("{}/audio/speech", s.gw.base_url()))
            .bearer_auth(&s.chat_only_key)
            .json(&json!({"model": "tts", "input": "hi", "voice": "alloy"}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 403);

    assert_eq!(s.upstream.calls(), 0, "no bad request reached the upstream");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn the_audio_family_is_validated_on_keys_and_explained_like_the_data_plane_decides() {
    let s = setup().await;
    let team = s.gw.create("/teams", json!({"name": "family-team"})).await;
    let (status, v) = s
        .gw
        .admin(
            reqwest::Method::POST,
            "/keys",
            Some(json!({"team_id": team["id"], "name": "bad", "endpoint_families": ["audio", "sing"]})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "endpoint_families[1]", "{v}");
    let audio_only =
        s.gw.create(
            "/keys",
            json!({"team_id": team["id"], "name": "audio-only", "endpoint_families": ["audio"]}),
        )
        .await;
    s.gw.wait_for_config().await;
    let explain = |key_id: String, surface: &'static str| {
        let gw = &s.gw;
        async move {
            let (status, v) = gw
                .admin(
                    reqwest::Method::POST,
                    "/explain",
                    Some(json!({"key_id": key_id, "surface": surface,
                                "request": {"model": "tts", "input": "hi", "voice": "alloy"}})),
                )
                .await;
            assert_eq!(status, 200, "{v}");
            v
        }
    };
    let id = audio_only["id"].as_str().unwrap().to_owned();
    let v = explain(id.clone(), "audio").await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["group"]["alias"], "tts", "{v}");
    let v = explain(id, "chat").await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["status"], 403, "{v}");
    // The data plane agrees: the audio-only key speaks, and may not chat.
    let secret = audio_only["key_secret"].as_str().unwrap();
    let resp =
        s.gw.http
            .post(format!("{}/audio/speech", s.gw.base_url()))
            .bearer_auth(secret)
            .json(&json!({"model": "tts", "input": "hi", "voice": "alloy"}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    s.upstream.release();
    resp.bytes().await.unwrap();
    assert_eq!(s.gw.say_hi(secret, "tts").await.status(), 403);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn under_a_hard_budget_audio_reserves_its_seconds_and_characters() {
    let s = setup().await;
    // 1000 µ$ for the key, in total.
    let b =
        s.gw.create(
            "/budgets",
            json!({"scope": {"key_id": s.key_id}, "amount_micros": 1_000, "period": "total",
                   "enforcement": "hard"}),
        )
        .await;
    assert!(b["id"].is_string(), "{b}");
    s.gw.wait_for_config().await;
    // 100 characters at 15 µ$ = 1500 µ$: more than the budget, refused before any call.
    let resp = s
        .speech(json!({"model": "tts", "input": "x".repeat(100), "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["endpoint"], "audio.speech");
    assert_eq!(row["error_class"], "budget_exceeded");
    assert_eq!(s.upstream.calls(), 0);
    // A whisper transcription (no output price, so no output bound is needed) of 2.5 s: 250 µ$
    // reserved, admitted, and charged what the provider reports.
    let wav = sample::wav(16_000, 2_500);
    let resp = s
        .upload(
            "/audio/transcriptions",
            &s.key,
            &[
                ("model", None, b"whisper"),
                ("file", Some("clip.wav"), &wav),
                ("response_format", None, b"text"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let row = s.gw.usage_row(&request_id(&resp)).await;
    assert_eq!(row["cost_micros"], 250);
    assert_eq!(s.upstream.calls(), 1);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_listener_who_hangs_up_mid_speech_is_still_charged_its_characters() {
    let s = setup().await;
    let resp = s
        .speech(json!({"model": "tts", "input": "Goodbye, cruel world.", "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), body.next())
        .await
        .expect("the first chunk")
        .unwrap()
        .unwrap();
    assert_eq!(first.as_ref(), up::SPEECH_FIRST);
    // The client goes away while the upstream still holds the rest.
    drop(body);
    let row = s.gw.usage_row(&id).await;
    assert_eq!(row["endpoint"], "audio.speech");
    assert_eq!(row["status"], 499);
    assert_eq!(row["error_class"], "client_cancel");
    // The provider was asked to speak all 21 characters: they are charged.
    assert_eq!(row["characters"], 21);
    assert_eq!(row["cost_micros"], 21 * 15);
    s.upstream.release();
    s.gw.shutdown().await;
}
