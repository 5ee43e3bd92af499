//! Zero-latency mock OpenAI upstream (hyper, HTTP/1.1 with keep-alive).
//!
//! * `POST /v1/chat/completions` — a fixed `chat.completion` with `usage`; when the body has
//!   `"stream": true`, `text/event-stream` with `chat.completion.chunk` events, a usage chunk
//!   (`choices: []`) if `stream_options.include_usage` is true, then `data: [DONE]`.
//! * `GET /v1/models` — a model list.
//! * `GET /` and `GET /health` — `ok`.
//!
//! Every response body is built once at start-up; per request the mock only parses the JSON
//! body (to see `stream`/`stream_options`) and copies reference-counted buffers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

#[derive(Args, Debug)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: SocketAddr,
    /// Pause between SSE events (0 = send them all at once, like the peer nginx mock).
    #[arg(long, default_value = "0ms", value_parser = crate::parse_duration)]
    pub stream_interval: Duration,
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Pre-rendered response bodies.
struct Canned {
    chat: Bytes,
    models: Bytes,
    /// SSE events without the usage chunk and without `[DONE]`.
    chunks: Vec<Bytes>,
    usage_chunk: Bytes,
    done: Bytes,
    stream_interval: Duration,
}

const COMPLETION_ID: &str = "chatcmpl-mgbench00000000000000000001";
const CREATED: u64 = 1_750_000_000;
const MODEL: &str = "gpt-4o-mini-2024-07-18";
const FINGERPRINT: &str = "fp_mgbench01";
/// 19 content deltas: with the role, finish, usage and `[DONE]` events a stream has 23 `data:`
/// events, as many as the peer benchmark's nginx mock, so per-event costs compare.
const ANSWER_PIECES: [&str; 19] = [
    "Central",
    "ized",
    " keys",
    " and",
    " budgets",
    " plus",
    " provider",
    " failover",
    " and",
    " usage",
    " tracking",
    " without",
    " changing",
    " any",
    " client",
    " code",
    " at",
    " all",
    ".",
];
const PROMPT_TOKENS: u64 = 31;

impl Canned {
    /// Bodies are written out by hand (not via `json!`, which would sort the keys) so the field
    /// order matches what OpenAI sends: `id` first, `usage` last.
    fn new(stream_interval: Duration) -> anyhow::Result<Self> {
        let answer = serde_json::to_string(&ANSWER_PIECES.concat())?;
        let completion_tokens = ANSWER_PIECES.len() as u64;
        let total_tokens = PROMPT_TOKENS + completion_tokens;
        let usage = format!(
            r#"{{"prompt_tokens":{PROMPT_TOKENS},"completion_tokens":{completion_tokens},"total_tokens":{total_tokens},"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}"#
        );
        let chat = format!(
            r#"{{"id":"{COMPLETION_ID}","object":"chat.completion","created":{CREATED},"model":"{MODEL}","choices":[{{"index":0,"message":{{"role":"assistant","content":{answer},"refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{usage},"service_tier":"default","system_fingerprint":"{FINGERPRINT}"}}"#
        );
        let event = |choices: &str, usage: &str| {
            Bytes::from(
                format!(
                    r#"data: {{"id":"{COMPLETION_ID}","object":"chat.completion.chunk","created":{CREATED},"model":"{MODEL}","service_tier":"default","system_fingerprint":"{FINGERPRINT}","choices":{choices},"usage":{usage}}}"#
                ) + "\n\n",
            )
        };

        let mut chunks = Vec::with_capacity(ANSWER_PIECES.len() + 2);
        chunks.push(event(
            r#"[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]"#,
            "null",
        ));
        for piece in ANSWER_PIECES {
            let piece = serde_json::to_string(piece)?;
            chunks.push(event(
                &format!(r#"[{{"index":0,"delta":{{"content":{piece}}},"logprobs":null,"finish_reason":null}}]"#),
                "null",
            ));
        }
        chunks.push(event(
            r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#,
            "null",
        ));
        let usage_chunk = event("[]", &usage);

        let models = r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"},{"id":"gpt-4o","object":"model","created":1715367049,"owned_by":"system"},{"id":"text-embedding-3-small","object":"model","created":1705948997,"owned_by":"system"}]}"#;

        Ok(Self {
            chat: Bytes::from(chat),
            models: Bytes::from_static(models.as_bytes()),
            chunks,
            usage_chunk,
            done: Bytes::from_static(b"data: [DONE]\n\n"),
            stream_interval,
        })
    }
}

/// The part of a chat request the mock looks at.
#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).boxed_unsync()
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("openai-processing-ms", HeaderValue::from_static("1"));
    h.insert("openai-version", HeaderValue::from_static("2020-10-01"));
    h.insert("x-request-id", HeaderValue::from_static("req_mgbench"));
    resp
}

fn error_response(status: StatusCode, message: &str, kind: &str) -> Response<Body> {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    json_response(status, Bytes::from(body.to_string()))
}

fn stream_response(canned: &Canned, include_usage: bool) -> Response<Body> {
    let mut events: Vec<Bytes> = canned.chunks.clone();
    if include_usage {
        events.push(canned.usage_chunk.clone());
    }
    events.push(canned.done.clone());
    let interval = canned.stream_interval;
    let stream = futures_util::stream::unfold(
        (events.into_iter(), true),
        move |(mut it, first)| async move {
            let next = it.next()?;
            if !first && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            Some((Ok::<_, Infallible>(Frame::data(next)), (it, false)))
        },
    );
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("openai-processing-ms", HeaderValue::from_static("1"));
    h.insert("openai-version", HeaderValue::from_static("2020-10-01"));
    h.insert("x-request-id", HeaderValue::from_static("req_mgbench"));
    resp
}

async fn handle(canned: Arc<Canned>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    let is_chat = path == "/v1/chat/completions" || path == "/chat/completions";
    let resp = match (req.method(), is_chat) {
        (&Method::POST, true) => {
            let body = match req.into_body().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    return Ok(error_response(
                        StatusCode::BAD_REQUEST,
                        &format!("could not read request body: {e}"),
                        "invalid_request_error",
                    ))
                }
            };
            match serde_json::from_slice::<ChatRequest>(&body) {
                Ok(chat) if chat.stream == Some(true) => {
                    let include_usage = chat
                        .stream_options
                        .and_then(|o| o.include_usage)
                        .unwrap_or(false);
                    stream_response(&canned, include_usage)
                }
                Ok(_) => json_response(StatusCode::OK, canned.chat.clone()),
                Err(e) => error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("request body is not a valid chat request: {e}"),
                    "invalid_request_error",
                ),
            }
        }
        (_, true) => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST for /v1/chat/completions",
            "invalid_request_error",
        ),
        (&Method::GET, false) if path == "/v1/models" || path == "/models" => {
            json_response(StatusCode::OK, canned.models.clone())
        }
        (&Method::GET, false) if path == "/" || path == "/health" => {
            let mut resp = Response::new(full(Bytes::from_static(b"ok\n")));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            resp
        }
        _ => error_response(
            StatusCode::NOT_FOUND,
            &format!("unknown route {} {path}", req.method()),
            "invalid_request_error",
        ),
    };
    Ok(resp)
}

pub async fn run(args: MockArgs) -> anyhow::Result<()> {
    let canned = Arc::new(Canned::new(args.stream_interval)?);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    println!("listening on {local}");
    // stdout may be a pipe read by a script waiting for the line above.
    use std::io::Write as _;
    std::io::stdout().flush()?;

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // e.g. EMFILE: back off instead of spinning.
                        eprintln!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let canned = Arc::clone(&canned);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&canned), req));
                    // Errors here are client disconnects; nothing to do about them.
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = tokio::signal::ctrl_c() => {
                eprintln!("mock upstream: interrupted, exiting");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_bodies_are_valid() -> anyhow::Result<()> {
        let c = Canned::new(Duration::ZERO)?;
        let chat: serde_json::Value = serde_json::from_slice(&c.chat)?;
        assert!(c.chat.starts_with(b"{\"id\":"));
        let models: serde_json::Value = serde_json::from_slice(&c.models)?;
        assert_eq!(models["data"][0]["id"], "gpt-4o-mini");
        assert_eq!(chat["object"], "chat.completion");
        assert_eq!(
            chat["usage"]["total_tokens"],
            PROMPT_TOKENS + ANSWER_PIECES.len() as u64
        );
        for ev in c.chunks.iter().chain(std::iter::once(&c.usage_chunk)) {
            let text = std::str::from_utf8(ev)?;
            let payload = text
                .strip_prefix("data: ")
                .and_then(|t| t.strip_suffix("\n\n"))
                .ok_or_else(|| anyhow::anyhow!("bad SSE framing: {text:?}"))?;
            let v: serde_json::Value = serde_json::from_str(payload)?;
            assert_eq!(v["object"], "chat.completion.chunk");
        }
        let usage: serde_json::Value = serde_json::from_str(
            std::str::from_utf8(&c.usage_chunk)?
                .trim_start_matches("data: ")
                .trim_end(),
        )?;
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["prompt_tokens"], PROMPT_TOKENS);
        Ok(())
    }

    #[test]
    fn stream_flag_parsing() {
        let parse = |s: &str| serde_json::from_slice::<ChatRequest>(s.as_bytes()).ok();
        let r = parse(r#"{"model":"m","stream" :  true,"stream_options":{"include_usage":true}}"#);
        assert!(matches!(
            r,
            Some(ChatRequest {
                stream: Some(true),
                ..
            })
        ));
        let r = parse(r#"{"model":"m","messages":[]}"#);
        assert!(matches!(r, Some(ChatRequest { stream: None, .. })));
    }
}
