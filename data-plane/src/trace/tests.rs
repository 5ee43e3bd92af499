use http::{HeaderMap, HeaderValue};
use modelgate_shared::snapshot::ProviderKind;

use super::*;

const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn check(value: &str, valid: bool) {
    assert_eq!(
        valid_traceparent(&HeaderValue::from_str(value).unwrap()),
        valid,
        "{value}"
    );
}

#[test]
fn a_traceparent_is_read_as_w3c_writes_it() {
    check(CLIENT, true);
    check(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        true,
    );
    // A later version may append fields.
    check(
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        true,
    );
    // Version 00 has exactly four fields.
    check(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        false,
    );
    check(
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        false,
    );
    check(
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        false,
    );
    check(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        false,
    );
    check(
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        false,
    );
    check(
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        false,
    );
    check(
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        false,
    );
    check("", false);
    check("garbage", false);
}

#[test]
fn with_export_off_the_clients_trace_context_goes_upstream_unchanged() {
    let mut headers = HeaderMap::new();
    headers.insert(&TRACEPARENT, HeaderValue::from_static(CLIENT));
    headers.insert(&TRACESTATE, HeaderValue::from_static("vendor=abc"));
    let trace = Tracer::off().request(&headers, "chat.completions");
    assert!(trace.trace_id().is_none(), "no span when export is off");
    let attempt = trace.attempt(ProviderKind::OpenAi, "gpt-x", "p/gpt-x");
    let up = attempt.headers();
    assert_eq!(up.traceparent.unwrap(), CLIENT);
    assert_eq!(up.tracestate.unwrap(), "vendor=abc");
}

#[test]
fn with_export_off_a_request_without_or_with_a_bad_trace_context_carries_none() {
    let none = Tracer::off().request(&HeaderMap::new(), "chat.completions");
    assert!(matches!(none, RequestTrace::Off));
    let mut headers = HeaderMap::new();
    headers.insert(&TRACEPARENT, HeaderValue::from_static("00-bad"));
    headers.insert(&TRACESTATE, HeaderValue::from_static("vendor=abc"));
    let bad = Tracer::off().request(&headers, "chat.completions");
    let attempt = bad.attempt(ProviderKind::OpenAi, "gpt-x", "p/gpt-x");
    let up = attempt.headers();
    assert!(up.traceparent.is_none() && up.tracestate.is_none());
}

#[test]
fn an_oversized_or_repeated_tracestate_is_dropped() {
    let mut headers = HeaderMap::new();
    headers.insert(&TRACEPARENT, HeaderValue::from_static(CLIENT));
    let long = format!("v={}", "a".repeat(TRACESTATE_MAX));
    headers.insert(&TRACESTATE, HeaderValue::from_str(&long).unwrap());
    assert!(tracestate(&headers).is_none());
    headers.insert(&TRACESTATE, HeaderValue::from_static("a=1"));
    headers.append(&TRACESTATE, HeaderValue::from_static("b=2"));
    assert!(tracestate(&headers).is_none());
}

#[test]
fn an_otlp_endpoint_must_be_plain_http() {
    let err = Tracer::otlp("https://collector:4317", "n1").unwrap_err();
    assert!(matches!(err, TraceError::NotHttp(_)), "{err}");
}

#[test]
fn provider_kinds_map_to_the_conventions_names() {
    assert_eq!(provider_name(ProviderKind::OpenAi), "openai");
    assert_eq!(provider_name(ProviderKind::Anthropic), "anthropic");
    assert_eq!(provider_name(ProviderKind::Gemini), "gcp.gemini");
    assert_eq!(provider_name(ProviderKind::AzureOpenAi), "azure.ai.openai");
    assert_eq!(operation("chat.completions"), "chat");
    assert_eq!(operation("messages"), "chat");
    assert_eq!(operation("embeddings"), "embeddings");
    assert_eq!(operation("generate_content"), "generate_content");
}
