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
