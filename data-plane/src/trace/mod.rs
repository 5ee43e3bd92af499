//! OpenTelemetry traces: one server span per request and one client span per upstream
//! attempt, exported over OTLP/gRPC when an endpoint is configured, and the W3C trace context
//! (`traceparent`, `tracestate`) carried from the client to every upstream attempt.
//!
//! | export | client sent a valid `traceparent` | what the upstream gets                          | spans |
//! |--------|-----------------------------------|-------------------------------------------------|-------|
//! | off    | no                                | no trace headers                                | none  |
//! | off    | yes                               | the client's `traceparent` and `tracestate`, unchanged | none |
//! | on     | no                                | a `traceparent` of a new trace, the attempt span's id   | request + attempts |
//! | on     | yes                               | the client's trace id, the attempt span's id, the client's `tracestate` | request (child of the client's span) + attempts |
//!
//! With export off the request path pays one header lookup and, when the client sent a trace
//! context, the clone of two header values (reference counts): no span, no allocation. With it
//! on, the SDK's spans go to a batch span processor running on the tokio runtime, which exports
//! them in batches over the tonic channel of the OTLP exporter; a full queue drops spans, never
//! blocks a request.
//!
//! Attributes follow the OpenTelemetry GenAI semantic conventions (`gen_ai.*`), plus HTTP's
//! `http.response.status_code` and `error.type`, plus `modelgate.*` for what the conventions do
//! not name (alias, deployment, cost in micro-USD, cache hit, …). Never a secret, never prompt or
//! answer content: every value comes from the request's usage event, which holds none.
//!
//! This module is low in the data plane's layers: it names no other module of the crate.

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use modelgate_shared::snapshot::ProviderKind;
use modelgate_shared::usage::{Attempt, UsageEvent};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use thiserror::Error;

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The longest `tracestate` carried on (W3C asks to propagate at least 512 characters; a longer
/// one is dropped rather than cut, as the specification allows).
const TRACESTATE_MAX: usize = 512;

/// The service name of the exported spans (`service.name`).
const SERVICE_NAME: &str = "modelgate-data-plane";

/// How long shutdown waits for the last batch to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum TraceError {
    #[error(
        "the OTLP endpoint `{0}` must be an `http://host:port` URL (OTLP over plain-text gRPC, \
         to a collector on the node or in the cluster)"
    )]
    NotHttp(String),
    #[error("building the OTLP exporter for `{endpoint}`: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The node's tracer: off (the default), or exporting spans to an OTLP collector.
#[derive(Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<Exporting>>,
}

struct Exporting {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.inner.is_some() {
            "Tracer(otlp)"
        } else {
            "Tracer(off)"
        })
    }
}

impl Tracer {
    /// No export: trace context is still passed through to upstreams.
    pub fn off() -> Tracer {
        Tracer::default()
    }

    /// Exports to the OTLP/gRPC collector at `endpoint` (`http://host:4317`), naming this node
    /// as `service.instance.id`. Must be called on the tokio runtime (the batch processor and
    /// the exporter's channel run on it).
    pub fn otlp(endpoint: &str, node_id: &str) -> Result<Tracer, TraceError> {
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_otlp::WithExportConfig as _;
        use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;

        if !endpoint.starts_with("http://") {
            return Err(TraceError::NotHttp(endpoint.to_owned()));
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| TraceError::Exporter {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        let processor =
            BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(SERVICE_NAME)
            .with_attribute(KeyValue::new("service.instance.id", node_id.to_owned()))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        // The SDK shuts a provider down when its last handle is dropped, blocking the dropping
        // thread on the batch task, which runs on the runtime: dropped on a runtime thread (a
        // span ending in a task torn down with the runtime), that never returns. So the provider
        // is never dropped; [`Tracer::shutdown`] flushes and stops it, off the runtime's threads.
        std::mem::forget(provider.clone());
        let tracer = provider.tracer(SERVICE_NAME);
        Ok(Tracer {
            inner: Some(Arc::new(Exporting { provider, tracer })),
        })
    }

    pub fn is_exporting(&self) -> bool {
        self.inner.is_some()
    }

    /// The trace of a request that came in with `headers` on `endpoint` (its family names the
    /// span until the model is known).
    pub fn request(&self, headers: &HeaderMap, endpoint: &'static str) -> RequestTrace {
        let incoming = headers.get(&TRACEPARENT).filter(|v| valid_traceparent(v));
        let Some(exporting) = &self.inner else {
            return match incoming {
                Some(tp) => RequestTrace::PassThrough {
                    traceparent: tp.clone(),
                    tracestate: tracestate(headers),
                },
                None => RequestTrace::Off,
            };
        };
        let parent = match incoming {
            Some(_) => opentelemetry_sdk::propagation::TraceContextPropagator::new()
                .extract(&Headers(headers)),
            None => Context::new(),
        };
        let tracer = &exporting.tracer;
        let span = tracer
            .span_builder(operation(endpoint))
            .with_kind(SpanKind::Server)
            .start_with_context(tracer, &parent);
        RequestTrace::Exported(Box::new(Live {
            cx: parent.with_span(span),
            tracer: tracer.clone(),
            tracestate: incoming.and_then(|_| tracestate(headers)),
            endpoint,
            provider: None,
        }))
    }

    /// Exports what is queued and stops the exporter (waits at most a few seconds). The
    /// SDK's flush blocks its thread until the batch task answers, so it runs on a blocking
    /// thread, never on the runtime's own.
    pub async fn shutdown(&self) {
        let Some(exporting) = &self.inner else {
            return;
        };
        let provider = exporting.provider.clone();
        let flush = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(FLUSH_TIMEOUT, flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the last trace spans were not exported"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the trace exporter's shutdown failed"),
            Err(_) => tracing::warn!("the trace exporter did not shut down in time"),
        }
    }
}

/// The trace side of one request.
#[derive(Default)]
pub enum RequestTrace {
    /// Export off and no trace context from the client: nothing to do.
    #[default]
    Off,
    /// Export off: the client's trace context goes to every upstream attempt as it came.
    PassThrough {
        traceparent: HeaderValue,
        tracestate: Option<HeaderValue>,
    },
    /// Export on: the request's server span, the parent of every attempt's span.
    Exported(Box<Live>),
}

pub struct Live {
    /// The request span, in a context whose children the attempts are.
    cx: Context,
    tracer: SdkTracer,
    /// The client's `tracestate`, carried on unchanged.
    tracestate: Option<HeaderValue>,
    endpoint: &'static str,
    /// The provider of the last attempt, the one whose answer the client gets.
    provider: Option<&'static str>,
}

/// The trace side of one upstream attempt: the headers the upstream gets, and the span (with
/// export on) that the attempt's outcome ends.
#[derive(Default)]
pub enum AttemptTrace {
    #[default]
    Off,
    PassThrough {
        traceparent: HeaderValue,
        tracestate: Option<HeaderValue>,
    },
    /// Boxed: a span is large, and only export pays for it.
    Exported(Box<LiveAttempt>),
}

pub struct LiveAttempt {
    span: opentelemetry_sdk::trace::Span,
    traceparent: HeaderValue,
    tracestate: Option<HeaderValue>,
    provider: &'static str,
}

/// The trace headers of one upstream call.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamHeaders<'a> {
    pub traceparent: Option<&'a HeaderValue>,
    pub tracestate: Option<&'a HeaderValue>,
}

impl UpstreamHeaders<'_> {
    /// Adds the headers to an upstream request being built.
    pub fn apply(self, mut req: http::request::Builder) -> http::request::Builder {
        if let Some(v) = self.traceparent {
            req = req.header(&TRACEPARENT, v.clone());
        }
        if let Some(v) = self.tracestate {
            req = req.header(&TRACESTATE, v.clone());
        }
        req
    }
}

impl RequestTrace {
    /// The request's trace id (32 hex digits) when its spans are exported.
    pub fn trace_id(&self) -> Option<String> {
        match self {
            RequestTrace::Exported(live) => {
                Some(live.cx.span().span_context().trace_id().to_string())
            }
            _ => None,
        }
    }

    /// Starts one upstream attempt to a `kind` provider's `model`.
    pub fn attempt(&self, kind: ProviderKind, model: &str, deployment_id: &str) -> AttemptTrace {
        match self {
            RequestTrace::Off => AttemptTrace::Off,
            RequestTrace::PassThrough {
                traceparent,
                tracestate,
            } => AttemptTrace::PassThrough {
                traceparent: traceparent.clone(),
                tracestate: tracestate.clone(),
            },
            RequestTrace::Exported(live) => {
                let provider = provider_name(kind);
                let op = operation(live.endpoint);
                let span = live
                    .tracer
                    .span_builder(format!("{op} {model}"))
                    .with_kind(SpanKind::Client)
                    .with_attributes([
                        KeyValue::new("gen_ai.operation.name", op),
                        KeyValue::new("gen_ai.provider.name", provider),
                        KeyValue::new("gen_ai.system", provider),
                        KeyValue::new("gen_ai.request.model", model.to_owned()),
                        KeyValue::new("modelgate.deployment_id", deployment_id.to_owned()),
                    ])
                    .start_with_context(&live.tracer, &live.cx);
                let traceparent = traceparent_of(span.span_context());
                AttemptTrace::Exported(Box::new(LiveAttempt {
                    span,
                    traceparent,
                    tracestate: live.tracestate.clone(),
                    provider,
                }))
            }
        }
    }

    /// An attempt ended as `a` records it: its span gets the outcome and ends.
    pub fn attempt_ended(&mut self, trace: AttemptTrace, a: &Attempt) {
        let AttemptTrace::Exported(live_attempt) = trace else {
            return;
        };
        let LiveAttempt {
            mut span, provider, ..
        } = *live_attempt;
        if let RequestTrace::Exported(live) = self {
            live.provider = Some(provider);
        }
        span.set_attribute(KeyValue::new(
            "modelgate.provider_id",
            a.provider_id.clone(),
        ));
        if a.status != 0 {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(a.status),
            ));
        }
        if let Some(class) = a.error_class {
            span.set_attribute(KeyValue::new("error.type", class.as_str()));
            span.set_status(Status::error(Cow::Owned(a.error_message.clone())));
        }
        span.end();
    }

    /// The request is over, as its usage event `e` says: the request span gets its outcome and
    /// ends.
    pub fn end(self, e: &UsageEvent) {
        let RequestTrace::Exported(live) = self else {
            return;
        };
        let span = live.cx.span();
        let op = operation(live.endpoint);
        if !e.requested_model.is_empty() {
            span.update_name(format!("{op} {}", e.requested_model));
            span.set_attribute(KeyValue::new(
                "gen_ai.request.model",
                e.requested_model.clone(),
            ));
            span.set_attribute(KeyValue::new("modelgate.alias", e.requested_model.clone()));
        }
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", op),
            KeyValue::new("modelgate.endpoint", live.endpoint),
            KeyValue::new("modelgate.request_id", e.request_id.clone()),
            KeyValue::new("http.response.status_code", i64::from(e.status)),
            KeyValue::new("modelgate.cache_hit", e.cache_hit),
            KeyValue::new("modelgate.streamed", e.streamed),
            KeyValue::new("modelgate.fallback_used", e.fallback_used),
            KeyValue::new(
                "modelgate.attempts",
                i64::try_from(e.attempts.len()).unwrap_or(i64::MAX),
            ),
        ];
        let text =
            |k: &'static str, v: &String| (!v.is_empty()).then(|| KeyValue::new(k, v.clone()));
        attrs.extend(
            [
                text("gen_ai.response.model", &e.served_model),
                text("modelgate.key_id", &e.key_id),
                text("modelgate.team_id", &e.team_id),
                text("modelgate.deployment_id", &e.deployment_id),
                text("modelgate.provider_id", &e.provider_id),
            ]
            .into_iter()
            .flatten(),
        );
        if let Some(p) = live.provider.filter(|_| !e.provider_id.is_empty()) {
            attrs.push(KeyValue::new("gen_ai.provider.name", p));
            attrs.push(KeyValue::new("gen_ai.system", p));
        }
        let served = !e.served_model.is_empty() || e.cache_hit;
        if served {
            attrs.push(KeyValue::new(
                "gen_ai.usage.input_tokens",
                i64::try_from(e.input_tokens).unwrap_or(i64::MAX),
            ));
            attrs.push(KeyValue::new(
                "gen_ai.usage.output_tokens",
                i64::try_from(e.output_tokens).unwrap_or(i64::MAX),
            ));
            attrs.push(KeyValue::new("modelgate.cost_micro_usd", e.cost_micros));
        }
        if let Some(class) = e.error_class {
            attrs.push(KeyValue::new("error.type", class.as_str()));
        }
        span.set_attributes(attrs);
        // A server span is in error for the gateway's own failures (5xx), not for refusals of
        // the client's request (4xx), as the HTTP conventions say.
        if e.status >= 500 {
            span.set_status(Status::error(Cow::Owned(e.error_message.clone())));
        }
        span.end();
    }
}

impl AttemptTrace {
    /// The trace headers this attempt's upstream call carries.
    pub fn headers(&self) -> UpstreamHeaders<'_> {
        match self {
            AttemptTrace::Off => UpstreamHeaders::default(),
            AttemptTrace::PassThrough {
                traceparent,
                tracestate,
            } => UpstreamHeaders {
                traceparent: Some(traceparent),
                tracestate: tracestate.as_ref(),
            },
            AttemptTrace::Exported(a) => UpstreamHeaders {
                traceparent: Some(&a.traceparent),
                tracestate: a.tracestate.as_ref(),
            },
        }
    }
}

/// `gen_ai.operation.name` for an endpoint family: the conventions' names where they have one.
fn operation(endpoint: &'static str) -> &'static str {
    match endpoint {
        "chat.completions" | "messages" | "responses" => "chat",
        "embeddings" => "embeddings",
        other => other,
    }
}

/// `gen_ai.provider.name` (and the older `gen_ai.system`) for a provider kind: the conventions'
/// well-known values, a `modelgate.` name for what they do not list.
pub fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "openai",
        ProviderKind::AzureOpenAi => "azure.ai.openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::OpenAiCompatible => "modelgate.openai_compatible",
        ProviderKind::Mock => "modelgate.mock",
    }
}

/// `00-{trace id}-{span id}-{flags}` for a span context.
fn traceparent_of(sc: &opentelemetry::trace::SpanContext) -> HeaderValue {
    let text = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    // Hex digits and dashes only: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A W3C `traceparent` in the form of any version this build can read: `vv-` 32 hex digits `-`
/// 16 hex digits `-ff` (lowercase), version not `ff`, ids not all zero. Checked without
/// allocating; a client's malformed one is ignored (a new trace starts, or none is passed on).
pub fn valid_traceparent(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    let hex = |s: &[u8]| {
        s.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let nonzero = |s: &[u8]| s.iter().any(|&c| c != b'0');
    // Version 00 is exactly 55 bytes; a later version may append `-…` fields.
    let fits = b.len() == 55 || (b.len() > 55 && b[55] == b'-' && b[..2] != *b"00");
    fits && b[2] == b'-'
        && b[35] == b'-'
        && b[52] == b'-'
        && hex(&b[..2])
        && &b[..2] != b"ff"
        && hex(&b[3..35])
        && nonzero(&b[3..35])
        && hex(&b[36..52])
        && nonzero(&b[36..52])
        && hex(&b[53..55])
}

/// The client's `tracestate`, when it is one header within the length W3C asks to carry.
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut all = headers.get_all(&TRACESTATE).iter();
    let first = all.next()?;
    (all.next().is_none() && first.len() <= TRACESTATE_MAX).then(|| first.clone())
}

/// A request's headers, as the W3C propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}
