//! Chat completions through the gateway, JSON and SSE, and the usage row each one leaves.

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::upstream::{self, COMPLETION_TOKENS, PROMPT_TOKENS};
use crate::support::Gateway;
use crate::support::{gateway_with_smart_route, request_id};

/// 21 input tokens at $2.50/M and 7 output tokens at $10.00/M, rounded half up per line:
/// 52.5 -> 53 and 70 -> 70 micro-USD.
const EXPECTED_COST_MICROS: i64 = 53 + 70;

#[tokio::test]
async fn json_completion_is_passed_through_byte_for_byte_and_metered_at_exact_cost() {
    let (upstream, gw, p) = gateway_with_smart_route().await;

    let resp = gw
        .chat(&p.key, json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}], "vendor_extension": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = request_id(&resp);
    let route = resp.headers()["x-modelgate-route"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        route.contains("group=smart") && route.contains("gpt-4o-2024"),
        "{route}"
    );
    let body = resp.text().await.unwrap();
    assert_eq!(
        body,
        upstream::completion_body("gpt-4o-2024"),
        "the response body must be byte-faithful"
    );

    // The upstream saw the provider model, and unknown fields survived.
    let sent = upstream.last_body();
    assert_eq!(sent["model"], "gpt-4o-2024");
    assert_eq!(sent["vendor_extension"], 7);

    let row = gw.usage_row(&request_id).await;
    assert_eq!(row["status"], 200);
    assert_eq!(row["key_id"], p.key_id.as_str());
    assert_eq!(row["team_id"], p.team_id.as_str());
    assert_eq!(row["requested_model"], "smart");
    assert_eq!(row["served_model"], "gpt-4o-2024");
    assert_eq!(row["provider_id"], p.provider_id.as_str());
    assert_eq!(row["input_tokens"], PROMPT_TOKENS);
    assert_eq!(row["output_tokens"], COMPLETION_TOKENS);
    assert_eq!(row["cost_micros"], EXPECTED_COST_MICROS);
    assert_eq!(row["price_version"], 1);
    assert_eq!(row["streamed"], false);
    assert_eq!(row["estimated"], false);
    assert!(row["error_class"].is_null());
    gw.shutdown().await;
}

async fn read_sse(resp: reqwest::Response) -> Vec<String> {
    let mut text = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn streamed_completion_is_metered_from_the_injected_usage_chunk_which_the_client_never_sees()
{
    let (upstream, gw, p) = gateway_with_smart_route().await;

    let resp = gw
        .chat(&p.key, json!({"model": "smart", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let request_id = request_id(&resp);
    let events = read_sse(resp).await;

    assert_eq!(
        upstream.last_body()["stream_options"]["include_usage"],
        true,
        "usage must be requested upstream"
    );
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "the client did not ask for usage"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, upstream::REPLY);

    let row = gw.usage_row(&request_id).await;
    assert_eq!(row["streamed"], true);
    assert_eq!(row["input_tokens"], PROMPT_TOKENS);
    assert_eq!(row["output_tokens"], COMPLETION_TOKENS);
    assert_eq!(row["cost_micros"], EXPECTED_COST_MICROS);
    assert_eq!(row["estimated"], false);
    assert!(row["ttfb_us"].as_i64().unwrap() > 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn streamed_completion_keeps_the_usage_chunk_when_the_client_asked_for_it() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;

    let resp = gw
        .chat(
            &p.key,
            json!({"model": "smart", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    let events = read_sse(resp).await;
    let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], PROMPT_TOKENS);
    gw.shutdown().await;
}

#[tokio::test]
async fn streamed_usage_is_requested_even_when_the_client_sent_null_stream_options() {
    let (upstream, gw, p) = gateway_with_smart_route().await;
    let resp = gw
        .chat(
            &p.key,
            json!({"model": "smart", "stream": true, "stream_options": null, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    let request_id = request_id(&resp);
    read_sse(resp).await;
    assert_eq!(
        upstream.last_body()["stream_options"]["include_usage"],
        true
    );
    let row = gw.usage_row(&request_id).await;
    assert_eq!(row["input_tokens"], PROMPT_TOKENS);
    assert_eq!(row["estimated"], false);
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_error_status_is_returned_as_is_with_one_upstream_call_and_a_usage_row() {
    let (upstream, gw, p) = gateway_with_smart_route().await;
    upstream.fail_with(Some(400));

    let resp = gw.say_hi(&p.key, "smart").await;
    assert_eq!(resp.status(), 400);
    let request_id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "mock upstream failure");
    assert_eq!(upstream.calls(), 1, "a client error is never retried");

    let row = gw.usage_row(&request_id).await;
    assert_eq!(row["status"], 400);
    assert_eq!(row["error_class"], "provider_error");
    gw.shutdown().await;
}

#[tokio::test]
async fn unreachable_upstream_gets_a_502_in_openai_format_and_a_usage_row() {
    let gw = Gateway::start().await;
    // Nothing listens on port 9 of loopback.
    let p = gw
        .provision("http://127.0.0.1:9/v1", "smart", "gpt-4o-2024")
        .await;
    let resp = gw.say_hi(&p.key, "smart").await;
    assert_eq!(resp.status(), 502);
    let request_id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    let row = gw.usage_row(&request_id).await;
    assert_eq!(row["error_class"], "provider_error");
    gw.shutdown().await;
}

#[tokio::test]
async fn models_list_shows_only_the_aliases_the_key_may_use() {
    let (upstream, gw, p) = gateway_with_smart_route().await;
    let other = gw
        .provision(&upstream.base_url(), "other", "gpt-4o-mini")
        .await;
    let _ = other;
    let resp = gw
        .http
        .get(format!("{}/models", gw.base_url()))
        .bearer_auth(&p.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["smart"]);
    gw.shutdown().await;
}

/// A provider answer larger than the gateway reads whole (`MAX_ANSWER_BYTES`, 32 MiB) is a
/// 502 naming why, with its usage row; the gateway does not buffer it.
#[tokio::test]
async fn an_upstream_answer_over_the_cap_is_a_502_with_a_usage_row() {
    let (upstream, gw, p) = gateway_with_smart_route().await;
    let cap = modelgate_data_plane::providers::MAX_ANSWER_BYTES;
    upstream.behave(upstream::Behavior::HugeAnswer(cap + 1));
    let resp = gw
        .chat(
            &p.key,
            json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    let id = request_id(&resp);
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_unavailable", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("larger than {cap} bytes")),
        "{message}"
    );
    let row = gw.usage_row(&id).await;
    assert_eq!(row["status"], 502);
    assert_eq!(row["error_class"], "provider_error");
    gw.shutdown().await;
}
