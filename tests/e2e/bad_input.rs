//! Bad input: each refusal has the right status and OpenAI-format error, leaves a usage row
//! (or, refused before a key is authenticated, a security-log record and a metric: R-5.1), and
//! never reaches the upstream.

use serde_json::{json, Value};

use crate::anonymous::{assert_no_usage_rows, assert_security_logged, metric, refused_metric};
use crate::support::{gateway_with_smart_route, request_id};

struct Case {
    name: &'static str,
    key: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    error_class: &'static str,
}

#[tokio::test]
async fn bad_requests_get_openai_errors_and_usage_rows_or_security_records_without_upstream_calls()
{
    let (upstream, gw, p) = gateway_with_smart_route().await;
    // A route the key is not allowed to use.
    gw.provision(&upstream.base_url(), "forbidden", "gpt-4o-mini")
        .await;

    let chat = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .into_bytes()
    };
    let cases = vec![
        Case {
            name: "missing key",
            key: None,
            body: chat("smart"),
            status: 401,
            code: "missing_api_key",
            error_class: "auth",
        },
        Case {
            name: "wrong key",
            key: Some("mg-not-a-real-key"),
            body: chat("smart"),
            status: 401,
            code: "invalid_api_key",
            error_class: "auth",
        },
        Case {
            name: "malformed JSON",
            key: Some("VALID"),
            body: b"{\"model\": ".to_vec(),
            status: 400,
            code: "invalid_json",
            error_class: "bad_request",
        },
        Case {
            name: "wrong type",
            key: Some("VALID"),
            body: br#"{"model": 42}"#.to_vec(),
            status: 400,
            code: "invalid_value",
            error_class: "bad_request",
        },
        Case {
            name: "missing model",
            key: Some("VALID"),
            body: br#"{"messages": []}"#.to_vec(),
            status: 400,
            code: "invalid_value",
            error_class: "bad_request",
        },
        Case {
            name: "unknown model",
            key: Some("VALID"),
            body: chat("no-such-model"),
            status: 403,
            code: "model_not_allowed",
            error_class: "permission",
        },
        Case {
            name: "model not allowed",
            key: Some("VALID"),
            body: chat("forbidden"),
            status: 403,
            code: "model_not_allowed",
            error_class: "permission",
        },
        Case {
            name: "oversize body",
            key: Some("VALID"),
            body: vec![b' '; 65 * 1024],
            status: 413,
            code: "request_too_large",
            error_class: "payload_too_large",
        },
        Case {
            name: "overlong model name",
            key: Some("VALID"),
            body: chat(&"m".repeat(300)),
            status: 400,
            code: "invalid_value",
            error_class: "bad_request",
        },
        Case {
            name: "NUL in model name",
            key: Some("VALID"),
            body: br#"{"model": "smart\u0000"}"#.to_vec(),
            status: 400,
            code: "invalid_value",
            error_class: "bad_request",
        },
    ];

    let mut anonymous = Vec::new();
    for case in cases {
        let mut req = gw
            .http
            .post(format!("{}/chat/completions", gw.base_url()))
            .body(case.body);
        match case.key {
            Some("VALID") => req = req.bearer_auth(&p.key),
            Some(k) => req = req.bearer_auth(k),
            None => {}
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), case.status, "{}", case.name);
        let request_id = request_id(&resp);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.name);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            case.name
        );
        assert!(body["error"]["type"].is_string(), "{}", case.name);
        match case.key {
            // Billable to no one: no usage row, a security-log record and a metric instead.
            None => anonymous.push((request_id, "missing_key")),
            Some(k) if k != "VALID" => anonymous.push((request_id, "invalid_key")),
            Some(_) => {
                let row = gw.usage_row(&request_id).await;
                assert_eq!(row["status"], case.status, "{}", case.name);
                assert_eq!(row["error_class"], case.error_class, "{}", case.name);
            }
        }
    }
    assert_eq!(anonymous.len(), 2);
    assert_security_logged(&gw, &anonymous).await;
    for reason in ["missing_key", "invalid_key"] {
        assert_eq!(metric(&gw, &refused_metric(reason)).await, 1, "{reason}");
    }
    assert_eq!(
        upstream.calls(),
        0,
        "no refused request may reach the upstream"
    );
    let ids: Vec<String> = anonymous.into_iter().map(|(id, _)| id).collect();
    assert_no_usage_rows(&gw, &p.key, "smart", &ids).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn unknown_model_for_an_unrestricted_key_is_a_404_model_not_found() {
    let (upstream, gw, p) = gateway_with_smart_route().await;
    let key = gw
        .create("/keys", json!({"team_id": p.team_id, "name": "all models"}))
        .await;
    let resp = gw
        .chat(
            key["key_secret"].as_str().unwrap(),
            json!({"model": "nope", "messages": []}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(body["error"]["param"], "model");
    assert_eq!(upstream.calls(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_known_path_asked_with_another_method_is_a_405_naming_the_allowed_one_with_a_security_record(
) {
    let (upstream, gw, p) = gateway_with_smart_route().await;
    let resp = gw
        .http
        .get(format!("{}/chat/completions", gw.base_url()))
        .header("authorization", format!("Bearer {}", p.key))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let request_id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    // Refused before the key is read: no upstream call, a security record, no usage row.
    assert_eq!(upstream.calls(), 0);
    assert_security_logged(&gw, &[(request_id.clone(), "bad_request")]).await;
    assert_eq!(metric(&gw, &refused_metric("bad_request")).await, 1);
    assert_no_usage_rows(&gw, &p.key, "smart", &[request_id]).await;

    // A `GET` route names both methods it takes.
    let resp = gw
        .http
        .post(format!("{}/models", gw.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
    gw.shutdown().await;
}

#[tokio::test]
async fn unknown_surface_is_a_404_in_openai_format_with_a_security_record_and_no_usage_row() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let resp = gw
        .http
        .post(format!("{}/nope", gw.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let request_id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_url");
    assert_security_logged(&gw, &[(request_id.clone(), "unknown_route")]).await;
    assert_eq!(metric(&gw, &refused_metric("unknown_route")).await, 1);
    assert_no_usage_rows(&gw, &p.key, "smart", &[request_id]).await;
    gw.shutdown().await;
}
