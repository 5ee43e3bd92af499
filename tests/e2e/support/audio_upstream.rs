//! A mock upstream for OpenAI's audio endpoints, over real HTTP: `/v1/audio/transcriptions`
//! and `/v1/audio/translations` parse the multipart body they get (with multer, as a server
//! would) and record every part; they answer by `response_format` — `json` with gpt-4o-transcribe
//! style token usage, `verbose_json` with whisper's `duration` and no usage, `text` as plain text
//! with no usage at all. `/v1/audio/speech` records its JSON body and streams audio back in
//! chunks: the first at once, the rest only after the test calls [`AudioUpstream::release`], so a
//! test can prove the gateway forwards the first chunk before the upstream has finished.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// Token usage the `json` answer reports.
pub const INPUT_TOKENS: u64 = 14;
pub const OUTPUT_TOKENS: u64 = 45;
/// The duration the `verbose_json` answer reports, in seconds.
pub const VERBOSE_SECONDS: f64 = 8.47;
/// The first chunk of every speech answer, and the rest.
pub const SPEECH_FIRST: &[u8] = b"ID3-first-chunk-of-audio";
pub const SPEECH_REST: &[u8] = b"-and-the-rest-of-the-audio";

#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub content_type: String,
    pub authorization: Option<String>,
    /// Multipart requests.
    pub parts: Vec<Part>,
    /// JSON requests.
    pub json: Value,
}

impl Recorded {
    pub fn part(&self, name: &str) -> &Part {
        self.parts
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no part `{name}` in {:?}", self.parts))
    }

    pub fn text(&self, name: &str) -> String {
        String::from_utf8(self.part(name).data.to_vec()).unwrap()
    }
}

#[derive(Clone)]
pub struct AudioUpstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Recorded>>>,
    release: Arc<Semaphore>,
}

impl AudioUpstream {
    pub async fn start() -> AudioUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = AudioUpstream {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            release: Arc::new(Semaphore::new(0)),
        };
        let app = Router::new()
            .route("/v1/audio/transcriptions", post(transcribe))
            .route("/v1/audio/translations", post(transcribe))
            .route("/v1/audio/speech", post(speech))
            .with_state(up.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        up
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn last(&self) -> Recorded {
        self.received.lock().unwrap().last().cloned().unwrap()
    }

    /// Lets one held speech answer send the rest of its audio.
    pub fn release(&self) {
        self.release.add_permits(1);
    }

    fn record(&self, r: Recorded) {
        self.received.lock().unwrap().push(r);
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    super::header_text(headers, name)
}

async fn transcribe(
    State(up): State<AudioUpstream>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = header(&headers, "content-type").unwrap_or_default();
    let boundary = multer::parse_boundary(&content_type).unwrap();
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    while let Some(field) = multipart.next_field().await.unwrap() {
        parts.push(Part {
            name: field.name().unwrap_or_default().to_owned(),
            file_name: field.file_name().map(str::to_owned),
            content_type: field.content_type().map(ToString::to_string),
            data: field.bytes().await.unwrap(),
        });
    }
    let format = parts
        .iter()
        .find(|p| p.name == "response_format")
        .map(|p| String::from_utf8_lossy(&p.data).into_owned())
        .unwrap_or_else(|| "json".into());
    up.record(Recorded {
        path: uri.path().to_owned(),
        content_type,
        authorization: header(&headers, "authorization"),
        parts,
        json: Value::Null,
    });
    let text = "Hello from the audio upstream.";
    match format.as_str() {
        "verbose_json" => axum::Json(json!({
            "task": "transcribe", "language": "english", "duration": VERBOSE_SECONDS,
            "text": text, "segments": []
        }))
        .into_response(),
        "text" => (
            [("content-type", "text/plain; charset=utf-8")],
            format!("{text}\n"),
        )
            .into_response(),
        _ => axum::Json(json!({
            "text": text,
            "usage": {"type": "tokens", "input_tokens": INPUT_TOKENS,
                      "input_token_details": {"text_tokens": 0, "audio_tokens": INPUT_TOKENS},
                      "output_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
        }))
        .into_response(),
    }
}

async fn speech(
    State(up): State<AudioUpstream>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    up.record(Recorded {
        path: uri.path().to_owned(),
        content_type: header(&headers, "content-type").unwrap_or_default(),
        authorization: header(&headers, "authorization"),
        parts: Vec::new(),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let release = up.release.clone();
    let chunks = async_stream(release);
    Response::builder()
        .header("content-type", "audio/mpeg")
        .body(Body::from_stream(chunks))
        .unwrap()
}

/// The first chunk at once; the rest once released.
fn async_stream(
    release: Arc<Semaphore>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(0u8, move |step| {
        let release = release.clone();
        async move {
            match step {
                0 => Some((Ok(Bytes::from_static(SPEECH_FIRST)), 1)),
                1 => {
                    release.acquire().await.unwrap().forget();
                    Some((Ok(Bytes::from_static(SPEECH_REST)), 2))
                }
                _ => None,
            }
        }
    })
}
