//! OpenTelemetry traces through the real gateway, exported to a real OTLP/gRPC receiver:
//! an in-test tonic server implementing the collector's `TraceService`, which records every span
//! the data plane exports. A request is one server span, each upstream attempt a client span
//! under it, with the GenAI semantic conventions' attributes; the client's W3C trace context is
//! continued, and each upstream call carries the trace id and its attempt's span id. With export
//! off (the default) nothing is exported and the client's `traceparent` reaches the upstream
//! unchanged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Value};

use crate::support::upstream::MockUpstream;
use crate::support::{request_id, start_data_plane_custom, Gateway};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const PROMPT: &str = "the launch code is purple-falcon-42";

fn client_traceparent() -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
}

/// An exported span with its resource's attributes.
type Received = (Span, BTreeMap<String, Value>);

/// An OTLP/gRPC trace receiver: every exported span, with its resource's attributes.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let resource = attributes(&rs.resource.map(|r| r.attributes).unwrap_or_default());
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((span, resource.clone()));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves on a loopback port; returns the receiver and its `http://` endpoint.
    async fn start() -> (Collector, String) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        (collector, format!("http://{addr}"))
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

/// OTLP attributes as JSON values (strings, integers, booleans).
fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => json!(s),
                Some(Any::IntValue(i)) => json!(i),
                Some(Any::BoolValue(b)) => json!(b),
                Some(Any::DoubleValue(d)) => json!(d),
                other => json!(format!("{other:?}")),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Two deployments of `smart`, a (tier 0) and b (tier 1), no retries: a failing request falls
/// back from a to b in exactly two attempts. Returns the gateway, a, b, and a key's secret.
async fn fallback_gateway() -> (Gateway, MockUpstream, MockUpstream, String) {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gateway::start().await;
    let (_, _, key) = gw.two_tier_route("traced", &a, &b, 0).await;
    gw.wait_for_config().await;
    (gw, a, b, key["key_secret"].as_str().unwrap().to_owned())
}

/// Replaces the gateway's data plane by one exporting spans to `endpoint`.
async fn export_to(gw: &mut Gateway, endpoint: &str) {
    gw.stop_data_plane().await;
    let clock: modelgate_shared::clock::SharedClock = gw.clock.clone();
    let endpoint = endpoint.to_owned();
    gw.dp = Some(
        start_data_plane_custom(gw.grpc_addr, &gw.dp_dir, |s| {
            s.clock = clock;
            s.otlp_endpoint = Some(endpoint);
        })
        .await,
    );
    gw.wait_for_config().await;
}

fn body(stream: bool) -> Value {
    json!({"model": "smart", "stream": stream, "messages": [{"role": "user", "content": PROMPT}]})
}

#[tokio::test]
async fn a_request_is_one_server_span_with_a_client_span_per_attempt_continuing_the_clients_trace()
{
    let (collector, endpoint) = Collector::start().await;
    let (mut gw, a, b, key) = fallback_gateway().await;
    export_to(&mut gw, &endpoint).await;

    // The client sends its trace context; a (503) fails, b answers.
    a.fail_with(Some(503));
    let resp = gw
        .chat(&key, body(false))
        .header("traceparent", client_traceparent())
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let traced_id = request_id(&resp);
    resp.text().await.unwrap();
    let row = gw.usage_row(&traced_id).await;
    assert_eq!(row["attempts"].as_array().unwrap().len(), 2, "{row}");

    // A streamed request without a trace context: a new trace, ended with the stream.
    a.fail_with(None);
    let resp = gw.chat(&key, body(true)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let streamed_id = request_id(&resp);
    let text = resp.text().await.unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    let streamed_row = gw.usage_row(&streamed_id).await;

    // Shutdown exports what is queued.
    gw.stop_data_plane().await;
    let spans = collector.spans();
    let by_request = |id: &str| {
        spans
            .iter()
            .find(|(s, _)| {
                attributes(&s.attributes).get("modelgate.request_id") == Some(&json!(id))
            })
            .unwrap_or_else(|| panic!("no span for request {id}: {spans:#?}"))
            .clone()
    };

    // The traced request: a server span, child of the client's span, in the client's trace.
    let (server, resource) = by_request(&traced_id);
    assert_eq!(resource["service.name"], "modelgate-data-plane");
    assert!(resource["service.instance.id"]
        .as_str()
        .unwrap()
        .starts_with("node-"));
    assert_eq!(hex(&server.trace_id), CLIENT_TRACE);
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN);
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(server.name, "chat smart");
    let s = attributes(&server.attributes);
    assert_eq!(s["gen_ai.operation.name"], "chat");
    assert_eq!(s["gen_ai.request.model"], "smart");
    assert_eq!(s["gen_ai.response.model"], "gpt-x");
    assert_eq!(s["gen_ai.provider.name"], "modelgate.openai_compatible");
    assert_eq!(s["gen_ai.system"], "modelgate.openai_compatible");
    assert_eq!(s["gen_ai.usage.input_tokens"], row["input_tokens"]);
    assert_eq!(s["gen_ai.usage.output_tokens"], row["output_tokens"]);
    assert_eq!(s["modelgate.cost_micro_usd"], row["cost_micros"]);
    assert_eq!(s["http.response.status_code"], 200);
    assert_eq!(s["modelgate.alias"], "smart");
    assert_eq!(s["modelgate.deployment_id"], row["deployment_id"]);
    assert_eq!(s["modelgate.key_id"], row["key_id"]);
    assert_eq!(s["modelgate.team_id"], row["team_id"]);
    assert_eq!(s["modelgate.cache_hit"], false);
    assert_eq!(s["modelgate.fallback_used"], true);
    assert_eq!(s["modelgate.attempts"], 2);
    assert!(!s.contains_key("error.type"), "{s:?}");
    // The request log links the request to its trace.
    assert_eq!(row["trace_id"], CLIENT_TRACE);

    // Its two attempts: client spans under it, in the order the ladder made them.
    let mut attempts: Vec<&Span> = spans
        .iter()
        .map(|(sp, _)| sp)
        .filter(|sp| sp.parent_span_id == server.span_id)
        .collect();
    attempts.sort_by_key(|sp| sp.start_time_unix_nano);
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    let row_attempts = row["attempts"].as_array().unwrap();
    for (span, recorded) in attempts.iter().zip(row_attempts) {
        assert_eq!(hex(&span.trace_id), CLIENT_TRACE);
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(span.name, "chat gpt-x");
        let at = attributes(&span.attributes);
        assert_eq!(at["gen_ai.operation.name"], "chat");
        assert_eq!(at["gen_ai.request.model"], "gpt-x");
        assert_eq!(at["gen_ai.provider.name"], "modelgate.openai_compatible");
        assert_eq!(at["modelgate.deployment_id"], recorded["deployment_id"]);
        assert_eq!(at["http.response.status_code"], recorded["status"]);
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
        assert!(span.start_time_unix_nano >= server.start_time_unix_nano);
        assert!(span.end_time_unix_nano <= server.end_time_unix_nano);
    }
    let failed = attributes(&attempts[0].attributes);
    assert_eq!(failed["http.response.status_code"], 503);
    assert_eq!(failed["error.type"], "provider_error");
    assert!(!attributes(&attempts[1].attributes).contains_key("error.type"));

    // Each upstream got the client's trace id with its own attempt's span id, and the
    // client's tracestate.
    let (to_a, to_b) = (a.targets(), b.targets());
    let sent = [&to_a[0], &to_b[0]];
    for (target, span) in sent.iter().zip(&attempts) {
        assert_eq!(
            target.traceparent.as_deref(),
            Some(format!("00-{CLIENT_TRACE}-{}-01", hex(&span.span_id)).as_str())
        );
        assert_eq!(target.tracestate.as_deref(), Some("vendor=abc"));
    }

    // The streamed request: its own new trace, one attempt, tokens read from the stream.
    let (streamed, _) = by_request(&streamed_id);
    assert_ne!(hex(&streamed.trace_id), CLIENT_TRACE);
    assert!(streamed.parent_span_id.is_empty());
    let st = attributes(&streamed.attributes);
    assert_eq!(st["modelgate.streamed"], true);
    assert_eq!(streamed_row["trace_id"], hex(&streamed.trace_id));
    assert_eq!(
        st["gen_ai.usage.output_tokens"],
        streamed_row["output_tokens"]
    );
    let streamed_attempt = spans
        .iter()
        .map(|(sp, _)| sp)
        .find(|sp| sp.parent_span_id == streamed.span_id)
        .unwrap();
    assert_eq!(
        a.targets().last().unwrap().traceparent.as_deref(),
        Some(
            format!(
                "00-{}-{}-01",
                hex(&streamed.trace_id),
                hex(&streamed_attempt.span_id)
            )
            .as_str()
        )
    );
    assert_eq!(a.targets().last().unwrap().tracestate, None);

    // No prompt text and no secret in any exported attribute.
    for (span, resource) in &spans {
        let all = format!("{:?} {resource:?}", attributes(&span.attributes));
        for secret in [PROMPT, key.as_str(), "sk-upstream-secret-1234"] {
            assert!(!all.contains(secret), "`{secret}` exported: {all}");
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_refused_request_is_a_span_with_its_error_type_and_no_attempt() {
    let (collector, endpoint) = Collector::start().await;
    let (mut gw, a, _b, key) = fallback_gateway().await;
    export_to(&mut gw, &endpoint).await;
    let resp = gw
        .chat(
            &key,
            json!({"model": "no-such-alias", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .header("traceparent", client_traceparent())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert!((400..500).contains(&status), "{status}");
    let id = request_id(&resp);
    gw.stop_data_plane().await;
    let spans = collector.spans();
    let (span, _) = spans
        .iter()
        .find(|(s, _)| attributes(&s.attributes).get("modelgate.request_id") == Some(&json!(id)))
        .unwrap();
    assert_eq!(hex(&span.trace_id), CLIENT_TRACE);
    let at = attributes(&span.attributes);
    assert_eq!(at["http.response.status_code"], json!(status));
    assert!(at.contains_key("error.type"), "{at:?}");
    assert!(!spans.iter().any(|(s, _)| s.parent_span_id == span.span_id));
    assert_eq!(a.calls(), 0);
    gw.shutdown().await;
}

/// With export off there is no span to send anywhere (the request's trace is only the client's
/// context, `modelgate_data_plane::trace` unit tests); what remains to see from outside is
/// that the context still reaches the upstream as it came.
#[tokio::test]
async fn with_export_off_the_clients_traceparent_reaches_the_upstream_unchanged() {
    // The default data plane: no OTLP endpoint.
    let (gw, a, _b, key) = fallback_gateway().await;
    assert!(!gw.dp().exports_traces());
    let resp = gw
        .chat(&key, body(false))
        .header("traceparent", client_traceparent())
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let target = a.last_target();
    assert_eq!(target.traceparent, Some(client_traceparent()));
    assert_eq!(target.tracestate.as_deref(), Some("vendor=abc"));
    // No span, so no trace id in the request log.
    assert_eq!(gw.usage_row(&request_id(&resp)).await["trace_id"], "");

    // A malformed one is not passed on; without one, the upstream gets none.
    let resp = gw
        .chat(&key, body(false))
        .header("traceparent", "00-not-a-trace")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(a.last_target().traceparent, None);
    let resp = gw.chat(&key, body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(a.last_target().traceparent, None);
    gw.shutdown().await;
}
