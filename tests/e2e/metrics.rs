//! `/metrics` through the real gateway: every request that reaches a handler is counted once in
//! `modelgate_requests_total`, when its usage event is sealed, labelled by surface, requested
//! alias (`other` when the config does not name it, `none` when no model was named), serving
//! provider, status and error class; tokens and cost as metered.

use serde_json::Value;

use crate::rate_limits::{fresh_window, limit};
use crate::support::{upstream::MockUpstream, Gateway};

async fn scrape(gw: &Gateway) -> (String, String) {
    let resp = reqwest::get(format!("http://{}/metrics", gw.dp().metrics_addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    (content_type, resp.text().await.unwrap())
}

/// The value of the sample line `series` (name and labels exactly as rendered).
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn requests(model: &str, provider: &str, status: u16, class: &str) -> String {
    format!(
        "modelgate_requests_total{{surface=\"chat.completions\",model=\"{model}\",\
         provider=\"{provider}\",status=\"{status}\",error_class=\"{class}\"}}"
    )
}

#[tokio::test]
async fn served_refused_and_anonymous_requests_are_each_counted_once_with_their_labels() {
    let upstream = MockUpstream::start().await;
    let gw = Gateway::start().await;
    let p = gw
        .provision(&upstream.base_url(), "smart", "served-1")
        .await;
    fresh_window(20).await;
    limit(
        &gw,
        serde_json::json!({"scope": {"key_id": p.key_id}, "rpm": 1}),
    )
    .await;

    assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 200);
    let refused = gw.say_hi(&p.key, "smart").await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    // An alias the config does not name is `other`, never its own series.
    assert_eq!(gw.say_hi(&p.key, "made-up-alias").await.status(), 403);
    // No key: refused before the body is read, billable to no one, counted all the same.
    let anonymous = gw
        .http
        .post(format!("http://{}/v1/chat/completions", gw.dp().addr))
        .json(&serde_json::json!({"model": "smart", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let (content_type, text) = scrape(&gw).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    for (series, want) in [
        (requests("smart", &p.provider_id, 200, "none"), 1),
        (requests("smart", "none", 429, "rate_limited"), 1),
        (requests("other", "none", 403, "permission"), 1),
        (requests("none", "none", 401, "auth"), 1),
        (
            r#"modelgate_request_duration_seconds_count{surface="chat.completions"}"#.into(),
            4,
        ),
        (
            format!(
                "modelgate_upstream_ttfb_seconds_count{{provider=\"{}\"}}",
                p.provider_id
            ),
            1,
        ),
        ("modelgate_requests_in_flight".into(), 0),
        (
            r#"modelgate_unauthenticated_refused_total{reason="missing_key"}"#.into(),
            1,
        ),
    ] {
        assert_eq!(sample(&text, &series), Some(want), "{series} in:\n{text}");
    }
    assert!(!text.contains("made-up-alias"), "{text}");
    assert!(
        sample(&text, r#"modelgate_tokens_total{type="input"}"#).unwrap() > 0,
        "{text}"
    );
    assert!(
        sample(&text, "modelgate_cost_micro_usd_total").unwrap() > 0,
        "{text}"
    );
    // The figures agree with the usage ledger: the metered request's tokens.
    let served_tokens = sample(&text, r#"modelgate_tokens_total{type="output"}"#).unwrap();
    assert!(served_tokens > 0, "{text}");
    gw.shutdown().await;
}
