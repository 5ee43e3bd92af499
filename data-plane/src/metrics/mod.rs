//! The node's Prometheus metrics, through `prometheus-client` (OpenMetrics text): one
//! [`Metrics`] registry per data plane, built once at start. ARCHITECTURE.md's "Metrics" section
//! is the table of names, labels and units; the observability work builds on it.
//!
//! Two kinds of metric live here:
//! - **per request**, recorded in one place only: when a request's usage event is sealed
//!   (`usage::Recorder`), from the event itself ([`Metrics::record`]). So every request that
//!   reached a handler is counted exactly once, served, refused, cancelled or unmetered alike,
//!   and the figures agree with the usage ledger: a client's in the request series, an
//!   acceptance run's (`modelgate check`, [`Caller::Check`]) in its own counter. Label values
//!   are `&'static str`, small enums or names interned once per config version ([`labels`]):
//!   recording allocates nothing.
//! - **read at scrape time** from the state other modules own (spool, retry budget, security
//!   guard, deployment health): the scrape handler (`crate::scrape`) reads them into
//!   [`NodeReadings`] and [`Metrics::render`] encodes them with the registry ([`node`]).
//!
//! This module imports nothing else of the crate, so every module may record into it without an
//! import circle.

pub mod labels;
mod node;
pub mod traffic;

use std::sync::{Arc, Mutex, PoisonError};

use modelgate_shared::usage::UsageEvent;
use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use self::labels::{
    Class, Interner, ModelLabels, ProviderLabels, RequestLabels, SurfaceLabels, TokenLabels,
    TokenType,
};
pub use self::labels::{LabelSource, Names, NoConfig};
use self::node::NodeCollector;
pub use self::node::{DeploymentReading, NodeReadings};

/// The media type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the request duration buckets: from a refusal (well under a
/// millisecond) to a long generation or a stream of several minutes.
const DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Upper bounds (seconds) of the upstream answer time buckets: a first token typically arrives
/// in 0.1–2 s, a whole JSON answer in up to a minute or two.
const UPSTREAM_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn upstream_histogram() -> Histogram {
    Histogram::new(UPSTREAM_BUCKETS)
}

/// Whose request a sealed usage event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Caller {
    #[default]
    Client,
    /// Check traffic (`x-modelgate-check: 1`, sent by `modelgate check`). An acceptance run
    /// fails some requests on purpose (an unreachable deployment): its requests are counted in
    /// `modelgate_check_requests_total` only, not in the request series, the upstream timings
    /// or the rollout gates' readings, so that they neither trip an alert nor fail a rollout.
    /// What they spent (tokens, cost) is counted as any other spend.
    Check,
}

/// The registry and the handles the request path records into.
pub struct Metrics {
    registry: Registry,
    /// Serialises scrapes: the node readings are set, then encoded.
    scrape: Mutex<()>,
    node: Arc<NodeCollector>,
    interner: Interner,
    requests: Family<RequestLabels, Counter>,
    duration: Family<SurfaceLabels, Histogram, fn() -> Histogram>,
    upstream: Family<ProviderLabels, Histogram, fn() -> Histogram>,
    upstream_duration: Family<ProviderLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    /// One counter per token type, taken from the family once (they share its cells).
    tokens: [Counter; TokenType::ALL.len()],
    cost: Counter,
    fallbacks: Family<ModelLabels, Counter>,
    check_requests: Counter,
    cache: CacheCounters,
    /// Requests, 5xx answers and latencies for the rollout gates (see [`traffic`]).
    traffic: Arc<traffic::ServedTraffic>,
}

/// The response cache's counters (`crate::cache`).
#[derive(Default)]
struct CacheCounters {
    hits: Counter,
    misses: Counter,
    stored: Counter,
    too_large: Counter,
    store_errors: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    /// Metrics that know no config (every model label is `other`): for tests and tools.
    fn default() -> Self {
        Metrics::new(Arc::new(NoConfig))
    }
}

impl Metrics {
    /// Builds the registry. `config` names the aliases and providers that may appear as label
    /// values (the data plane's runtime: `crate::config`).
    pub fn new(config: Arc<dyn LabelSource>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "modelgate_requests",
            "Requests that reached a handler, by surface, requested alias (`other` when not \
             configured, `none` when not named), serving provider (`none` when none served), \
             HTTP status code and error class (`none` on success); counted once, when the \
             request's usage event is sealed",
            requests.clone(),
        );
        let duration = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "modelgate_request_duration",
            "Time from a request's arrival to its usage event being sealed (a stream's last \
             byte), by surface",
            Unit::Seconds,
            duration.clone(),
        );
        let upstream = Family::new_with_constructor(upstream_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "modelgate_upstream_ttfb",
            "Time from an upstream attempt's start until its answer was in hand (the headers of \
             a stream, the whole body of a JSON answer), for every attempt that got an HTTP \
             answer, by provider id",
            Unit::Seconds,
            upstream.clone(),
        );
        let upstream_duration =
            Family::new_with_constructor(upstream_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "modelgate_upstream_duration",
            "Time from an upstream attempt's start to its end: the last byte of the answer that \
             served the request (a stream's end), the answer in hand for any other attempt that \
             got an HTTP answer, by provider id",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "modelgate_requests_in_flight",
            "Requests whose usage event is not sealed yet (streams until their last byte)",
            in_flight.clone(),
        );
        let token_family = Family::<TokenLabels, Counter>::default();
        registry.register(
            "modelgate_tokens",
            "Tokens metered, by type (input, output, cached_input, reasoning), as in the usage \
             events (estimated counts included)",
            token_family.clone(),
        );
        let tokens =
            TokenType::ALL.map(|t| token_family.get_or_create(&TokenLabels::of(t)).clone());
        let cost = Counter::default();
        registry.register_with_unit(
            "modelgate_cost",
            "Cost metered at catalog prices, in micro-USD, as in the usage events",
            Unit::Other("micro_usd".into()),
            cost.clone(),
        );
        let fallbacks = Family::<ModelLabels, Counter>::default();
        registry.register(
            "modelgate_fallbacks",
            "Requests served after a retry, by another deployment or by a backup group, by \
             requested alias",
            fallbacks.clone(),
        );
        let check_requests = Counter::default();
        registry.register(
            "modelgate_check_requests",
            "Requests marked as check traffic (`modelgate check`), left out of the other request \
             series; their tokens and cost are counted with everyone's",
            check_requests.clone(),
        );
        let cache = CacheCounters::default();
        registry.register(
            "modelgate_cache_hits",
            "Requests answered from the response cache (no upstream call)",
            cache.hits.clone(),
        );
        registry.register(
            "modelgate_cache_misses",
            "Cache lookups that found no usable answer (the request went upstream)",
            cache.misses.clone(),
        );
        registry.register(
            "modelgate_cache_stored",
            "Answers written to the response cache",
            cache.stored.clone(),
        );
        registry.register(
            "modelgate_cache_too_large",
            "Successful answers not cached because they exceed the entry bound",
            cache.too_large.clone(),
        );
        registry.register(
            "modelgate_cache_store_errors",
            "Reads or writes of the shared cache store (Redis) that failed, timed out or were \
             skipped after a recent failure; the request was served uncached",
            cache.store_errors.clone(),
        );
        let node = Arc::new(NodeCollector::default());
        registry.register_collector(Box::new(node.clone()));
        Metrics {
            registry,
            scrape: Mutex::new(()),
            node,
            interner: Interner::new(config),
            requests,
            duration,
            upstream,
            upstream_duration,
            in_flight,
            tokens,
            cost,
            fallbacks,
            check_requests,
            cache,
            traffic: Arc::default(),
        }
    }

    /// The node's served traffic, which its health reports carry to the rollout gates.
    pub fn traffic(&self) -> Arc<traffic::ServedTraffic> {
        self.traffic.clone()
    }

    pub fn cache_hit(&self) {
        self.cache.hits.inc();
    }

    pub fn cache_miss(&self) {
        self.cache.misses.inc();
    }

    pub fn cache_stored(&self) {
        self.cache.stored.inc();
    }

    pub fn cache_too_large(&self) {
        self.cache.too_large.inc();
    }

    pub fn cache_store_error(&self) {
        self.cache.store_errors.inc();
    }

    /// A request arrived (its usage event is started).
    pub fn started(&self) {
        self.in_flight.inc();
    }

    /// Counts a finished request from its sealed usage event (`surface`: the endpoint family it
    /// came in on; `caller`: whose request it was). Called exactly once per
    /// [`Metrics::started`]. Allocates nothing.
    pub fn record(&self, surface: &'static str, e: &UsageEvent, caller: Caller) {
        self.in_flight.dec();
        self.spent(e);
        if caller == Caller::Check {
            self.check_requests.inc();
            return;
        }
        self.traffic.record(e.status, e.latency_us);
        let names = self.interner.current();
        let model = names.model(&e.requested_model);
        let labels = RequestLabels {
            surface,
            model: model.clone(),
            provider: names.provider(&e.provider_id),
            status: e.status,
            error_class: Class(e.error_class),
        };
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&SurfaceLabels { surface })
            .observe(e.latency_us as f64 / 1e6);
        let last = e.attempts.len().saturating_sub(1);
        for (i, a) in e.attempts.iter().enumerate().filter(|(_, a)| a.status != 0) {
            let labels = ProviderLabels {
                provider: names.provider(&a.provider_id),
            };
            self.upstream
                .get_or_create(&labels)
                .observe(a.latency_us as f64 / 1e6);
            self.upstream_duration
                .get_or_create(&labels)
                .observe(upstream_duration_us(e, i == last, a) as f64 / 1e6);
        }
        if e.fallback_used {
            self.fallbacks.get_or_create(&ModelLabels { model }).inc();
        }
    }

    /// The tokens and cost a request's event metered.
    fn spent(&self, e: &UsageEvent) {
        let counts = [
            e.input_tokens,
            e.output_tokens,
            e.cached_input_tokens,
            e.reasoning_tokens,
        ];
        for (counter, n) in self.tokens.iter().zip(counts) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        if e.cost_micros > 0 {
            self.cost.inc_by(e.cost_micros.unsigned_abs());
        }
    }

    /// The registry in the OpenMetrics text format, with the node's scrape-time readings.
    pub fn render(&self, readings: NodeReadings) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.node.set(readings);
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }
}

/// How long an attempt held its upstream: the attempt's own time, except for the last attempt
/// of a request it served (`provider_id` set, status below 400), which lasted until the
/// request's end (a stream's last byte): the request's duration less the attempt's start
/// offset (milliseconds, from the attempt's `started_at_ms`; an event from an older node has
/// none and counts the attempt's own time).
fn upstream_duration_us(e: &UsageEvent, last: bool, a: &modelgate_shared::usage::Attempt) -> u64 {
    if !last || a.started_at_ms == 0 || e.provider_id.is_empty() || e.status >= 400 {
        return a.latency_us;
    }
    let offset_us = u64::try_from(a.started_at_ms - e.started_at_ms)
        .unwrap_or(0)
        .saturating_mul(1000);
    e.latency_us.saturating_sub(offset_us).max(a.latency_us)
}

#[cfg(test)]
mod tests;
