use super::*;

/// A 16 kHz mono 16-bit WAV of `ms` milliseconds of silence.
fn wav(ms: u32) -> Vec<u8> {
    container::tests::wav(16_000, 1, 16 * ms)
}

fn multipart(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Bytes {
    let mut v = Vec::new();
    for (name, file, data) in parts {
        v.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => v.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => v.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        v.extend_from_slice(data);
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Bytes::from(v)
}

fn ct(boundary: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}")).unwrap()
}

async fn peek(parts: &[(&str, Option<&str>, &[u8])]) -> Result<Peeked, ProxyError> {
    peek_upload(multipart("XyZ", parts), Some(&ct("XyZ"))).await
}

#[tokio::test]
async fn an_upload_is_judged_by_name_and_bytes_and_its_duration_read() {
    let audio = wav(1_250);
    let p = peek(&[
        ("model", None, b"whisper-1"),
        ("file", Some("talk.wav"), &audio),
        ("language", None, b"en"),
    ])
    .await
    .unwrap();
    assert_eq!(p.model, "whisper-1");
    let u = p.media.upload().unwrap();
    assert_eq!(u.container, Container::Wav);
    assert_eq!(u.media_ms, Some(1_250));
    assert_eq!(u.file_name(), "talk.wav");
    assert_eq!(u.field("language").as_deref(), Some("en"));
}

#[tokio::test]
async fn bad_uploads_are_refused_naming_the_file() {
    let audio = wav(100);
    type Parts<'a> = &'a [(&'a str, Option<&'a str>, &'a [u8])];
    let cases: [(Parts, &str, &str); 5] = [
        (&[("model", None, b"m")], "file", "you must provide a file"),
        (
            &[("model", None, b"m"), ("file", Some("notes.txt"), b"hello")],
            "file",
            "unsupported file format",
        ),
        (
            &[
                ("model", None, b"m"),
                ("file", Some("a.mp3"), b"plain text, no audio"),
            ],
            "file",
            "not audio",
        ),
        (
            &[("model", None, b"m"), ("file", Some("a.mp3"), &audio)],
            "file",
            "named as mp3 but its content is wav",
        ),
        (
            &[("file", Some("a.wav"), &audio)],
            "model",
            "you must provide a model",
        ),
    ];
    for (parts, param, message) in cases {
        let e = peek(parts).await.unwrap_err();
        assert_eq!(e.status, 400, "{message}");
        assert_eq!(e.param.as_deref(), Some(param), "{message}");
        assert!(e.message.contains(message), "{}: {message}", e.message);
    }
    // Not multipart at all.
    let e = peek_upload(
        Bytes::from_static(b"{}"),
        Some(&HeaderValue::from_static("application/json")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status, 400);
}

#[tokio::test]
async fn an_upload_is_re_encoded_with_the_deployment_model_and_the_container_mime() {
    let audio = wav(200);
    let p = peek(&[
        ("file", Some("voix d'été.wav"), &audio),
        ("model", None, b"alias"),
        ("response_format", None, b"verbose_json"),
    ])
    .await
    .unwrap();
    let u = p.media.upload().unwrap();
    let body = u.encode("whisper-large");
    let ct = u.content_type();
    // Read back with the same parser the gateway uses.
    let again = peek_upload(body, Some(&ct)).await.unwrap();
    assert_eq!(again.model, "whisper-large");
    let v = again.media.upload().unwrap();
    let names: Vec<_> = v.parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["file", "model", "response_format"]);
    assert_eq!(v.parts[0].data.as_ref(), audio.as_slice());
    assert_eq!(v.file_name(), "voix d'été.wav");
    // Quotes and line breaks in a name cannot end its parameter early.
    assert_eq!(quoted("a \"b\"\r\n.wav"), "a %22b%22%0D%0A.wav");
    assert_eq!(v.field("response_format").as_deref(), Some("verbose_json"));
}

#[test]
fn speech_counts_the_characters_of_its_input() {
    let p = peek_speech(br#"{"model":"tts-1","input":"h\u00e9llo","voice":"alloy"}"#).unwrap();
    assert!(matches!(p.media, Media::Speech { characters: 5 }));
    assert!(p.stream);
    let e = peek_speech(br#"{"model":"tts-1","voice":"alloy"}"#).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("input"));
}

#[test]
fn transcription_usage_reads_tokens_seconds_or_duration() {
    let tokens = br#"{"text":"hi","usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":0,"audio_tokens":14},"output_tokens":45,"total_tokens":59}}"#;
    let u = transcription_usage(tokens).unwrap();
    assert_eq!((u.input, u.output, u.media_ms), (14, 45, 0));
    let seconds = br#"{"text":"hi","usage":{"type":"duration","seconds":9}}"#;
    assert_eq!(transcription_usage(seconds).unwrap().media_ms, 9_000);
    let verbose = br#"{"task":"transcribe","language":"english","duration":8.470000267028809,"text":"hi","segments":[]}"#;
    assert_eq!(transcription_usage(verbose).unwrap().media_ms, 8_470);
    assert_eq!(transcription_usage(br#"{"text":"hi"}"#), None);
    assert_eq!(transcription_usage(b"plain text answer"), None);
}

/// Not an assertion: prints what reading an upload at the 25 MiB cap costs — the MP3 frame walk,
/// the WAV header, the multipart parse with the duration, and the re-encoding
/// (`cargo test --release -p modelgate-data-plane openai_audio::tests::timing -- --nocapture`).
#[tokio::test]
async fn timing() {
    const CAP: usize = 25 * 1024 * 1024;
    let mut mp3 = Vec::with_capacity(CAP);
    while mp3.len() + 417 <= CAP {
        mp3.extend_from_slice(&[0xFF, 0xFB, 0x90, 0xC4]);
        mp3.resize(mp3.len() + 413, 0);
    }
    let wav = container::tests::wav(16_000, 1, (CAP as u32 - 64) / 2);
    // One round in the debug suite (its figures mean nothing there), twenty in release.
    let rounds = if cfg!(debug_assertions) { 1 } else { 20u32 };
    let time = |c: Container, data: &[u8]| {
        let t = std::time::Instant::now();
        let mut ms = 0;
        for _ in 0..rounds {
            ms = c.duration_ms(std::hint::black_box(data)).unwrap();
        }
        (t.elapsed() / rounds, ms)
    };
    let (mp3_t, mp3_ms) = time(Container::Mp3, &mp3);
    let (wav_t, wav_ms) = time(Container::Wav, &wav);
    let body = multipart(
        "XyZ",
        &[
            ("model", None, b"whisper-1"),
            ("file", Some("big.mp3"), &mp3),
        ],
    );
    let t = std::time::Instant::now();
    let mut peeked = None;
    for _ in 0..rounds {
        peeked = Some(peek_upload(body.clone(), Some(&ct("XyZ"))).await.unwrap());
    }
    let peek_t = t.elapsed() / rounds;
    let upload = peeked.unwrap().media;
    let upload = upload.upload().unwrap();
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(upload.encode("whisper-1"));
    }
    let encode_t = t.elapsed() / rounds;
    println!(
        "25 MiB: mp3 frame walk {mp3_t:?} ({} frames, {mp3_ms} ms of audio); wav header {wav_t:?} \
         ({wav_ms} ms); multipart peek with the mp3 walk {peek_t:?}; re-encode {encode_t:?}",
        mp3.len() / 417
    );
}
