//! An OpenAI-compatible provider that reports no usage at all: the gateway counts the prompt
//! and the answer with the model's BPE tokenizer, flags the row `estimated`, and prices it.
//!
//! Expected counts were obtained by running OpenAI's tokenizer (o200k_base for `gpt-4o-*`,
//! cl100k_base for `gpt-4-*`) on the texts below; the chat overhead is 3 tokens per message
//! plus its role, and 3 to prime the reply (see `data_plane::estimate`).

use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::{request_id, Gateway};

/// A Russian prompt: the two encodings count it differently (o200k_base has more non-English
/// tokens), so the rows prove which one was used.
const PROMPT: &str = "Пожалуйста, переведите это предложение.";
const REPLY: &str = "The capital of Portugal is Lisbon.";

/// Tokens of `PROMPT` and `REPLY` in each encoding (`"user"` is one token in both).
const PROMPT_O200K: u64 = 10;
const REPLY_O200K: u64 = 7;
const PROMPT_CL100K: u64 = 16;
const REPLY_CL100K: u64 = 7;

/// One user message: 3 + "user" (1) + the text, then 3 to prime the reply.
fn chat_prompt(text_tokens: u64) -> u64 {
    3 + 1 + text_tokens + 3
}

/// The provisioned price: $2.50 per million input tokens, $10 per million output tokens, each
/// line rounded half up to a micro-USD.
fn cost(input: u64, output: u64) -> i64 {
    ((input * 5).div_ceil(2) + output * 10) as i64
}

/// A real HTTP server speaking OpenAI's chat format that never sends `usage`, not even when the
/// request asks for it with `stream_options.include_usage`.
async fn silent_upstream() -> String {
    async fn chat(body: axum::body::Bytes) -> axum::response::Response {
        let req: Value = serde_json::from_slice(&body).unwrap();
        let model = req["model"].as_str().unwrap().to_owned();
        if req["stream"] != json!(true) {
            let answer = json!({
                "id": "chatcmpl-silent-1", "object": "chat.completion", "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
            });
            return axum::Json(answer).into_response();
        }
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-silent-2", "object": "chat.completion.chunk", "created": 1_700_000_000,
                       "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        let mut sse = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
        // Split inside words: the estimate must count the rejoined text, not the pieces.
        for piece in ["The capi", "tal of Portu", "gal is Lis", "bon."] {
            sse += &chunk(json!({"content": piece}), Value::Null);
        }
        sse += &chunk(json!({}), json!("stop"));
        sse += "data: [DONE]\n\n";
        (
            [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
            sse,
        )
            .into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/v1/chat/completions", post(chat));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

fn ask(stream: bool, alias: &str) -> Value {
    json!({"model": alias, "stream": stream, "messages": [{"role": "user", "content": PROMPT}]})
}

#[tokio::test]
async fn an_answer_without_usage_is_counted_with_the_o200k_tokenizer_and_flagged_estimated() {
    let base = silent_upstream().await;
    let gw = Gateway::start().await;
    let p = gw.provision(&base, "quiet", "gpt-4o-2024-08-06").await;

    let resp = gw.chat(&p.key, ask(false, "quiet")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);

    let row = gw.usage_row(&id).await;
    assert_eq!(row["estimated"], true);
    assert_eq!(row["input_tokens"], chat_prompt(PROMPT_O200K));
    assert_eq!(row["output_tokens"], REPLY_O200K);
    assert_eq!(
        row["cost_micros"],
        cost(chat_prompt(PROMPT_O200K), REPLY_O200K)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_stream_without_a_usage_chunk_is_counted_once_at_the_end_with_the_cl100k_tokenizer() {
    let base = silent_upstream().await;
    let gw = Gateway::start().await;
    let p = gw.provision(&base, "quiet-old", "gpt-4-0613").await;

    let resp = gw
        .chat(&p.key, ask(true, "quiet-old"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    let row = gw.usage_row(&id).await;
    assert_eq!(row["streamed"], true);
    assert_eq!(row["estimated"], true);
    assert_eq!(row["input_tokens"], chat_prompt(PROMPT_CL100K));
    assert_eq!(row["output_tokens"], REPLY_CL100K);
    assert_eq!(
        row["cost_micros"],
        cost(chat_prompt(PROMPT_CL100K), REPLY_CL100K)
    );
    assert!(row["error_class"].is_null());
    gw.shutdown().await;
}
