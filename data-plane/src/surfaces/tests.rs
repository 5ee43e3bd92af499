use http::StatusCode;

use super::*;

#[test]
fn one_error_renders_in_each_surface_format_with_the_same_status() {
    let e = ProxyError::invalid_key();
    let openai = Surface::OpenAiChat.error_body(&e);
    assert_eq!(openai["error"]["code"], "invalid_api_key");
    assert_eq!(openai["error"]["type"], "invalid_request_error");
    let anthropic = Surface::AnthropicMessages.error_body(&e);
    assert_eq!(anthropic["type"], "error");
    assert_eq!(anthropic["error"]["type"], "authentication_error");
    assert_eq!(anthropic["error"]["message"], e.message.as_str());
    assert_eq!(
        Surface::AnthropicMessages.error_response(&e).status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn anthropic_error_types_follow_the_status() {
    let check = |e: ProxyError, want: &str| {
        assert_eq!(
            Surface::AnthropicMessages.error_body(&e)["error"]["type"],
            want
        );
    };
    check(ProxyError::invalid_json("x"), "invalid_request_error");
    check(
        ProxyError::endpoint_not_allowed("messages"),
        "permission_error",
    );
    check(ProxyError::model_not_found("m"), "not_found_error");
    check(ProxyError::body_too_large(1), "request_too_large");
    check(ProxyError::upstream("x", false), "api_error");
    check(ProxyError::no_config(), "overloaded_error");
}

#[test]
fn a_failed_stream_ends_with_an_error_event_in_the_callers_format() {
    let e = ProxyError::upstream("cut", false);
    let a = Surface::AnthropicMessages.error_event(&e);
    assert!(a.starts_with(b"event: error\ndata: {"), "{a:?}");
    let o = Surface::OpenAiChat.error_event(&e);
    assert!(o.starts_with(b"data: {\"error\""), "{o:?}");
}

#[test]
fn anthropic_peek_requires_max_tokens_and_model() {
    let e = anthropic_messages::peek(br#"{"model":"m","messages":[]}"#).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("max_tokens"));
    let e = anthropic_messages::peek(br#"{"max_tokens":5,"messages":[]}"#).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("model"));
    let p = anthropic_messages::peek(br#"{"model":"m","max_tokens":5,"stream":true}"#).unwrap();
    assert!(p.stream && p.client_wants_usage);
    assert_eq!(p.model, "m");
}

#[test]
fn gemini_errors_use_googles_shape_and_status_names() {
    let check = |e: ProxyError, code: u16, status: &str| {
        let v = Surface::Gemini.error_body(&e);
        assert_eq!(v["error"]["code"], code);
        assert_eq!(v["error"]["status"], status);
        assert_eq!(v["error"]["message"], e.message.as_str());
    };
    check(ProxyError::invalid_json("x"), 400, "INVALID_ARGUMENT");
    check(ProxyError::invalid_key(), 401, "UNAUTHENTICATED");
    check(ProxyError::model_not_allowed("m"), 403, "PERMISSION_DENIED");
    check(ProxyError::model_not_found("m"), 404, "NOT_FOUND");
    check(ProxyError::upstream("x", false), 502, "UNAVAILABLE");
    check(ProxyError::upstream("x", true), 504, "DEADLINE_EXCEEDED");
    let event = Surface::Gemini.error_event(&ProxyError::upstream("cut", false));
    assert!(event.starts_with(b"data: {\"error\""));
}

#[test]
fn gemini_paths_name_the_model_and_the_method() {
    let c = gemini::parse_path("gemini-2.0-flash:generateContent", None).unwrap();
    assert_eq!(
        (c.model.as_str(), c.stream, c.key),
        ("gemini-2.0-flash", false, None)
    );
    let c = gemini::parse_path(
        "team%2Fmodel:streamGenerateContent",
        Some("alt=sse&key=mg-123"),
    )
    .unwrap();
    assert_eq!(c.model, "team/model");
    assert!(c.stream && !c.array);
    assert_eq!(c.key.as_deref(), Some("mg-123"));
    let c = gemini::parse_path("m:streamGenerateContent", None).unwrap();
    assert!(
        c.stream && c.array,
        "without alt=sse the stream is a JSON array"
    );
    let c = gemini::parse_path("m:generateContent", Some("alt=json")).unwrap();
    assert!(!c.stream && !c.array);
    let e = gemini::parse_path("m:countTokens", None).unwrap_err();
    assert_eq!(e.status, StatusCode::NOT_FOUND);
    assert!(gemini::parse_path("no-method", None).is_err());
}

#[test]
fn gemini_array_framing_makes_one_json_array_of_the_events() {
    let mut f = gemini::ArrayFramer::default();
    assert_eq!(f.close(), "[]");
    let mut body = Vec::new();
    for e in [
        &b"data: {\"a\":1}\r\n\r\n"[..],
        b": a comment\n\n",
        b"data: {\"b\":2}\n\n",
        b"data: {\"error\":{\"code\":502}}\r\n\r\n",
    ] {
        if let Some(el) = f.element(e) {
            body.extend_from_slice(&el);
        }
    }
    body.extend_from_slice(&f.close());
    assert_eq!(
        body,
        b"[{\"a\":1}\n,\r\n{\"b\":2}\n,\r\n{\"error\":{\"code\":502}}\n]"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
}

#[test]
fn gemini_peek_requires_contents() {
    let call = gemini::parse_path("m:generateContent", None).unwrap();
    assert!(gemini::peek(br#"{"contents":[{"parts":[{"text":"x"}]}]}"#, &call).is_ok());
    let e = gemini::peek(br#"{"contents":[]}"#, &call).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("contents"));
    assert!(gemini::peek(br#"{"generationConfig":{}}"#, &call).is_err());
    assert!(gemini::peek(b"{\"contents\": ", &call).is_err());
}

#[test]
fn responses_stream_events_yield_usage_only_from_terminal_events() {
    use openai_responses::{stream_event, StreamEvent};
    assert_eq!(
        stream_event(br#"{"type":"response.output_text.delta","delta":"usage"}"#),
        StreamEvent::Other
    );
    let done = br#"{"type":"response.completed","response":{"usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":2},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":1}}}}"#;
    let StreamEvent::Terminal(Some(u)) = stream_event(done) else {
        panic!("expected a terminal event with usage");
    };
    assert_eq!(
        (u.input, u.cached_input, u.output, u.reasoning),
        (7, 2, 5, 1)
    );
    assert_eq!(
        stream_event(br#"{"type":"error","message":"boom"}"#),
        StreamEvent::Error("boom".into())
    );
}

#[test]
fn images_are_counted_from_data_and_tokens_taken_when_reported() {
    let u =
        openai_images::usage(br#"{"data":[{},{}],"usage":{"input_tokens":3,"output_tokens":9}}"#)
            .unwrap();
    assert_eq!((u.images, u.input, u.output), (2, 3, 9));
    assert!(openai_images::usage(br#"{"error":{}}"#).is_none());
    let e = openai_embeddings::usage(br#"{"usage":{"prompt_tokens":4,"total_tokens":4}}"#).unwrap();
    assert_eq!((e.input, e.output), (4, 0));
}
