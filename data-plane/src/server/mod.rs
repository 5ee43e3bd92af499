//! The HTTP server: `POST /v1/chat/completions` (OpenAI), `POST /v1/messages` (Anthropic),
//! `POST /v1/responses`, `POST /v1/embeddings`, `POST /v1/images/generations` (OpenAI,
//! pass-through), `GET /v1/models`. What differs per client format (peeking a request, rendering an error) lives
//! in `crate::surfaces`; translation between formats in `crate::translate`.
//! Every request whose key is identified, accepted or rejected, leaves exactly one usage event
//! (see `usage::Recorder`); one refused before that is billable to no one and goes to
//! `crate::security` instead (see `anonymous`).

mod anonymous;
mod ladder;
pub mod videos;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use http_body_util::BodyExt;
use modelgate_shared::pricing::{cost_micros, Price};
use modelgate_shared::snapshot::{MissingPricePolicy, RoutingGroup};
use modelgate_shared::usage::ErrorClass;
use tokio::sync::mpsc;

use crate::auth;
use crate::config::{Runtime, SharedRuntime};
use crate::error::ProxyError;
use crate::estimate::{self, Produced};
use crate::providers;
use crate::routing::budget::RetryBudget;
use crate::routing::health::HealthView;
use crate::routing::TrafficClass;
use crate::sse;
use crate::surfaces::{self, Surface};
use crate::time::unix_now;
use crate::translate::stream::StreamTranslator;
use crate::translate::Usage;
use crate::usage::spool::Spool;
use crate::usage::{Origin, Recorder};

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    pub runtime: SharedRuntime,
    pub spool: Spool,
    pub origin: Arc<Origin>,
    pub max_body_bytes: usize,
    /// Stream pumps outlive their handler; shutdown waits for them.
    pub tasks: tokio_util::task::TaskTracker,
    pub retry_budget: Arc<RetryBudget>,
    /// Video jobs this node has already metered.
    pub videos_metered: Arc<videos::MeteredJobs>,
    /// This node's budget slices (leased from the control plane).
    pub quotas: Arc<crate::quota::Quotas>,
    /// This node's rate-limit shares (leased from the control plane).
    pub limits: Arc<crate::limits::Limits>,
    /// Wall-clock time for budget periods (injected).
    pub clock: modelgate_shared::clock::SharedClock,
    /// Refusals before authentication: throttle, counters, security log.
    pub security: Arc<crate::security::Guard>,
}

pub fn router(app: App) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages))
        .route("/v1/responses", post(responses))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/images/generations", post(images_generations))
        .route("/v1/videos", post(videos::create))
        .route("/v1/videos/{id}", get(videos::retrieve))
        .route("/v1/videos/{id}/content", get(videos::content))
        .route("/v1beta/models/{*rest}", post(generate_content))
        // Google's stable version (the google-genai SDK's default) has the same wire format.
        .route("/v1/models/{*rest}", post(generate_content))
        .route("/v1/models", get(list_models))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(unknown_route)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            anonymous::guard,
        ))
        .with_state(app)
}

/// The metrics listener's routes (`--metrics-listen`, loopback by default): `/metrics` is not
/// served on the proxy port.
pub fn metrics_router(app: App) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(app)
}

static ROUTE_HEADER: HeaderName = HeaderName::from_static("x-modelgate-route");
static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
static FALLBACK_HEADER: HeaderName = HeaderName::from_static("x-modelgate-fallback");
/// Set when the request was translated to another wire format: `openai-chat->anthropic-messages`.
static TRANSLATED_HEADER: HeaderName = HeaderName::from_static("x-modelgate-translated");
/// Micro-USD left of the key's tightest hard budget (the control plane's last figure less what
/// this node has reserved since), on answers to keys that have one.
static BUDGET_REMAINING_HEADER: HeaderName =
    HeaderName::from_static("x-modelgate-budget-remaining");
const TRAFFIC_CLASS_HEADER: &str = "x-modelgate-traffic-class";

fn with_request_id(mut resp: Response, request_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER.clone(), v);
    }
    resp
}

/// Answers a request the gateway refuses, in the caller's format, after writing its usage
/// event if its key is known. A request refused before that is billable to no one: its
/// event is dropped unwritten, and `anonymous::guard` counts and logs it.
async fn reject(surface: Surface, mut rec: Recorder, e: ProxyError) -> Response {
    let request_id = rec.event().request_id.clone();
    let identified = !rec.event().key_id.is_empty();
    if identified {
        rec.fail(e.status.as_u16(), e.class, &e.message);
        if let Err(err) = rec.finish().await {
            tracing::error!(error = %err, "usage event not written");
        }
    } else {
        rec.discard();
    }
    let mut resp = with_request_id(surface.error_response(&e), &request_id);
    resp.extensions_mut()
        .insert(anonymous::Refusal::of(&e, identified));
    resp
}

/// The request's key, copied into its usage event. A key that is known but refused (revoked,
/// disabled, expired, rotated away) is described too: its refusal is billable to its team.
pub(crate) fn identify<'r>(
    rec: &mut Recorder,
    auth: Result<&'r modelgate_shared::snapshot::ApiKey, auth::Refused<'r>>,
) -> Result<&'r modelgate_shared::snapshot::ApiKey, ProxyError> {
    match auth {
        Ok(key) => {
            describe_key(rec, key);
            Ok(key)
        }
        Err(refused) => {
            if let Some(key) = refused.key {
                describe_key(rec, key);
            }
            Err(refused.error)
        }
    }
}

/// Copies who is calling into the usage event.
fn describe_key(rec: &mut Recorder, key: &modelgate_shared::snapshot::ApiKey) {
    let e = rec.event();
    e.key_id.clone_from(&key.id);
    e.team_id.clone_from(&key.team_id);
    e.user_id.clone_from(&key.owner_user_id);
    e.application.clone_from(&key.application);
    e.environment = key.environment.as_str().to_owned();
}

/// A per-deployment gauge: name, help text, and how to read it from a deployment's health.
type DeploymentGauge = (&'static str, &'static str, fn(&HealthView) -> f64);

/// Prometheus text exposition of the node's own gauges and counters.
async fn metrics(State(app): State<App>) -> Response {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    let stats = app.spool.stats();
    let backlog = {
        let spool = app.spool.clone();
        tokio::task::spawn_blocking(move || crate::usage::shipper::backlog_bytes(&spool))
            .await
            .unwrap_or(0)
    };
    let mut out = String::with_capacity(1024);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    metric(
        "modelgate_config_version",
        "gauge",
        "Version of the config snapshot being served.",
        app.runtime.load().version,
    );
    metric(
        "modelgate_usage_spool_disk_bytes",
        "gauge",
        "Bytes of usage spool segments on disk.",
        stats.disk_bytes.load(Relaxed),
    );
    metric(
        "modelgate_usage_spool_max_bytes",
        "gauge",
        "Disk bound of the usage spool.",
        app.spool.max_bytes(),
    );
    metric(
        "modelgate_usage_spool_backlog_bytes",
        "gauge",
        "Spooled usage bytes not yet acknowledged by the control plane.",
        backlog,
    );
    metric(
        "modelgate_usage_spool_refused_total",
        "counter",
        "Requests refused because the usage spool was full.",
        stats.refused.load(Relaxed),
    );
    metric(
        "modelgate_usage_unmetered_total",
        "counter",
        "Requests served without a usage event because the usage spool was full.",
        stats.unmetered.load(Relaxed),
    );
    metric(
        "modelgate_retry_budget_denied_total",
        "counter",
        "Retries or fallbacks refused by the node's retry budget.",
        app.retry_budget.denied(),
    );
    app.security.render_metrics(&mut out);
    let health = app.runtime.load().health.snapshot(crate::time::now_ms());
    let per_deployment: [DeploymentGauge; 4] = [
        (
            "modelgate_deployment_ejected",
            "1 while a deployment is ejected by outlier detection.",
            |h| f64::from(u8::from(h.ejected)),
        ),
        (
            "modelgate_deployment_consecutive_failures",
            "Consecutive failed attempts.",
            |h| f64::from(h.consecutive_failures),
        ),
        (
            "modelgate_deployment_in_flight",
            "Attempts in progress.",
            |h| f64::from(h.in_flight),
        ),
        (
            "modelgate_deployment_ttfb_ewma_seconds",
            "Moving average time to first byte.",
            |h| h.ewma_ttfb_us as f64 / 1e6,
        ),
    ];
    if !health.is_empty() {
        for (name, help, value) in per_deployment {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
            for h in &health {
                let label = h.deployment_id.replace(['"', '\\', '\n'], "_");
                let _ = writeln!(out, "{name}{{deployment=\"{label}\"}} {}", value(h));
            }
        }
    }
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn unknown_route(State(app): State<App>, req: Request) -> Response {
    let request_id = modelgate_shared::new_id().to_string();
    let rec = Recorder::start(app.spool.clone(), &app.origin, "unknown", &request_id);
    reject(
        Surface::OpenAiChat,
        rec,
        ProxyError::not_found_route(req.uri().path()),
    )
    .await
}

async fn list_models(State(app): State<App>, headers: HeaderMap) -> Response {
    let request_id = modelgate_shared::new_id().to_string();
    let mut rec = Recorder::start(app.spool.clone(), &app.origin, "models", &request_id);
    if rec.refused() {
        return reject(Surface::OpenAiChat, rec, ProxyError::metering_unavailable()).await;
    }
    let runtime = app.runtime.load_full();
    let key = match identify(&mut rec, auth::authenticate(&runtime, &headers, unix_now())) {
        Ok(k) => k,
        Err(e) => return reject(Surface::OpenAiChat, rec, e).await,
    };
    if !key.may_call("models") {
        return reject(
            Surface::OpenAiChat,
            rec,
            ProxyError::endpoint_not_allowed("models"),
        )
        .await;
    }
    rec.event().status = 200;
    let mut aliases: Vec<&str> = runtime
        .groups
        .keys()
        .map(String::as_str)
        .filter(|a| key.may_use(a))
        .collect();
    aliases.sort_unstable();
    let data: Vec<_> = aliases
        .into_iter()
        .map(|a| serde_json::json!({"id": a, "object": "model", "created": 0, "owned_by": "modelgate"}))
        .collect();
    if let Err(err) = rec.finish().await {
        tracing::error!(error = %err, "usage event not written");
    }
    let body = serde_json::json!({"object": "list", "data": data});
    with_request_id(axum::Json(body).into_response(), &request_id)
}

/// A request that passed every gateway check, ready for the failure ladder.
pub(crate) struct Prepared<'r> {
    /// The format the client speaks (requests in, answers and errors out).
    pub surface: Surface,
    pub group: &'r RoutingGroup,
    /// The client's body, as received.
    pub raw: Bytes,
    pub alias: String,
    pub stream: bool,
    /// A Gemini stream written as a JSON array (`:streamGenerateContent` without `alt=sse`).
    pub json_array: bool,
    pub client_wants_usage: bool,
    pub class: TrafficClass,
    /// Rank of the key's data class.
    pub data_class: usize,
    /// An Anthropic client's `anthropic-version` and `anthropic-beta`, forwarded to Anthropic.
    pub anthropic_version: Option<HeaderValue>,
    pub anthropic_beta: Option<HeaderValue>,
    /// What is left of the key's tightest hard budget, as this node knows it.
    pub budget_remaining: Option<i64>,
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ProxyError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ProxyError::body_too_large(limit))
        }
        Err(e) if modelgate_listener::is_body_timeout(&*e) => Err(ProxyError::body_timeout()),
        Err(e) => Err(ProxyError::invalid_json(&format!(
            "could not read the body: {e}"
        ))),
    }
}

async fn prepare<'r>(
    app: &App,
    runtime: &'r Runtime,
    surface: Surface,
    headers: &HeaderMap,
    uri: &http::Uri,
    body: Body,
    rec: &mut Recorder,
) -> Result<Prepared<'r>, ProxyError> {
    if rec.refused() {
        return Err(ProxyError::metering_unavailable());
    }
    if runtime.version == 0 {
        return Err(ProxyError::no_config());
    }
    // Gemini names the model and the method in the URL, and may carry the key in the query.
    let gemini_call = match surface {
        Surface::Gemini => {
            let path = uri.path();
            let rest = path
                .strip_prefix("/v1beta/models/")
                .or_else(|| path.strip_prefix("/v1/models/"))
                .unwrap_or_default();
            Some(surfaces::gemini::parse_path(rest, uri.query())?)
        }
        _ => None,
    };
    let presented = match &gemini_call {
        Some(call) => auth::presented_google_key(headers, call.key.as_deref()),
        None => auth::presented_key(headers),
    };
    let key = identify(
        rec,
        auth::authenticate_presented(runtime, presented, unix_now()),
    )?;
    if !key.may_call(surface.family()) {
        return Err(ProxyError::endpoint_not_allowed(surface.family()));
    }
    let raw = read_body(body, app.max_body_bytes).await?;
    let peek = match (surface, &gemini_call) {
        (Surface::Gemini, Some(call)) => surfaces::gemini::peek(&raw, call)?,
        _ => surface.peek(&raw)?,
    };
    let alias = peek.model.as_str();
    rec.event().requested_model = alias.to_owned();
    if !key.may_use(alias) {
        return Err(ProxyError::model_not_allowed(alias));
    }
    let group = runtime
        .groups
        .get(alias)
        .ok_or_else(|| ProxyError::model_not_found(alias))?;
    let requested = match headers.get(TRAFFIC_CLASS_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(TrafficClass::parse)
                .ok_or_else(|| {
                    ProxyError::invalid_param(
                        TRAFFIC_CLASS_HEADER,
                        "must be one of interactive, batch, eval, media",
                    )
                })?,
        ),
    };
    let class = key
        .traffic_class_for(requested)
        .ok_or_else(|| ProxyError::traffic_class_not_allowed(requested.unwrap_or_default()))?;
    let data_class = modelgate_shared::snapshot::data_class_rank(&key.data_class);
    if data_class > group.policy.max_data_class {
        return Err(ProxyError::data_class_not_allowed(alias, &key.data_class));
    }
    if !runtime.rate_limits.is_empty() {
        // Tokens are estimated (prompt bytes / 4 plus the output bound) and settled to the
        // actual count when the usage event is written. Saturating: a `max_tokens` near
        // u64::MAX is more than any limit, never a wrapped small number.
        let tokens = (raw.len() as u64 / 4).saturating_add(peek.max_output_tokens.unwrap_or(0));
        let admission = app
            .limits
            .admit(&runtime.rate_limits, key, alias, tokens, unix_now())
            .await
            .map_err(|hit| ProxyError::rate_limit_exceeded(&hit))?;
        rec.hold_limits(admission);
    }
    let budget_remaining =
        admit_cost(app, runtime, rec, key, group, &raw, peek.max_output_tokens).await?;
    let stream = peek.stream;
    let e = rec.event();
    e.streamed = stream;
    e.traffic_class = class.as_str().to_owned();
    let (anthropic_version, anthropic_beta) = match surface {
        Surface::AnthropicMessages => (
            headers.get(&providers::anthropic::VERSION).cloned(),
            headers.get(&providers::anthropic::BETA).cloned(),
        ),
        _ => (None, None),
    };
    Ok(Prepared {
        surface,
        group,
        raw,
        alias: peek.model,
        stream,
        json_array: gemini_call.as_ref().is_some_and(|c| c.array),
        client_wants_usage: peek.client_wants_usage,
        class,
        data_class,
        anthropic_version,
        anthropic_beta,
        budget_remaining,
    })
}

/// The price-and-bound check and the budget reservation, before forwarding.
///
/// A group with an unpriced deployment, or a request under a hard budget whose worst case
/// cannot be bounded, follows the group's `missing_price` policy: `reject` refuses here (no
/// upstream call; the refusal is the usage event), `allow_and_flag` serves it without a
/// reservation and flags the usage row. Returns what is left of the key's tightest budget.
async fn admit_cost(
    app: &App,
    runtime: &Runtime,
    rec: &mut Recorder,
    key: &modelgate_shared::snapshot::ApiKey,
    group: &RoutingGroup,
    raw: &[u8],
    max_output_tokens: Option<u64>,
) -> Result<Option<i64>, ProxyError> {
    // The event's time is the time the budget check used, so the spend lands in the period
    // the reservation was taken from (both read the injected clock).
    let now = app.clock.now();
    rec.event().started_at_ms = now.timestamp_millis();
    let Some(index) = runtime.routes.get(&group.alias) else {
        return Ok(None);
    };
    let allow = group.policy.missing_price == MissingPricePolicy::AllowAndFlag;
    if index.unpriced {
        if !allow {
            return Err(ProxyError::price_missing(&group.alias));
        }
        rec.event().cost_flag = COST_FLAG_PRICE_MISSING.to_owned();
        return Ok(None);
    }
    if !crate::quota::any_hard(&runtime.budgets, key) {
        return Ok(None);
    }
    let Some(cost) = worst_case(index, raw, max_output_tokens) else {
        if !allow {
            return Err(ProxyError::cost_not_estimable(
                "no max_tokens, and the catalog has no output limit for the model",
            ));
        }
        rec.event().cost_flag = COST_FLAG_UNBOUNDED.to_owned();
        return Ok(None);
    };
    let reservation = app
        .quotas
        .reserve(&runtime.budgets, key, cost, now)
        .await
        .map_err(|r| match r {
            crate::quota::Refusal::Exceeded { budget_id } => {
                ProxyError::budget_exceeded(&budget_id, 60)
            }
        })?;
    rec.hold(reservation);
    Ok(app.quotas.remaining(&runtime.budgets, key))
}

/// Usage row flags (`UsageEvent::cost_flag`).
pub(crate) const COST_FLAG_PRICE_MISSING: &str = "price_missing";
pub(crate) const COST_FLAG_UNBOUNDED: &str = "cost_unbounded";

/// The most a request can cost on any deployment of its group: every prompt byte as an input
/// token plus the output bound (the client's `max_tokens`, else the deployment's catalog output
/// limit), at each deployment's price; the dearest wins. `None` when some deployment has no
/// price or no output bound.
fn worst_case(
    index: &crate::config::GroupIndex,
    raw: &[u8],
    max_output_tokens: Option<u64>,
) -> Option<i64> {
    let mut worst: Option<i64> = None;
    for (price, limit) in index.prices.iter().zip(&index.output_limits) {
        let bound = max_output_tokens.or(*limit)?;
        let c = modelgate_shared::quota::worst_case_cost(
            price.as_ref()?,
            raw.len() as u64,
            Some(bound),
        )?;
        worst = Some(worst.map_or(c, |w| w.max(c)));
    }
    worst
}

/// Meters a request: tokens by type, and their cost at the deployment's catalog price (cached
/// input and reasoning at their own rates where the catalog has them).
pub(crate) fn charge(rec: &mut Recorder, usage: Usage, estimated: bool, price: Option<Price>) {
    let e = rec.event();
    e.input_tokens = usage.input;
    e.output_tokens = usage.output;
    e.cached_input_tokens = usage.cached_input;
    e.reasoning_tokens = usage.reasoning;
    e.images = usage.images;
    e.media_ms = usage.media_ms;
    e.estimated = estimated;
    if let Some(p) = price {
        e.cost_micros = cost_micros(usage, &p);
    }
}

async fn chat_completions(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    serve(app, Surface::OpenAiChat, headers, body).await
}

async fn messages(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    serve(app, Surface::AnthropicMessages, headers, body).await
}

async fn responses(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    serve(app, Surface::OpenAiResponses, headers, body).await
}

async fn embeddings(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    serve(app, Surface::OpenAiEmbeddings, headers, body).await
}

async fn images_generations(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    serve(app, Surface::OpenAiImages, headers, body).await
}

async fn generate_content(
    State(app): State<App>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve_at(app, Surface::Gemini, headers, &uri, body).await
}

async fn serve(app: App, surface: Surface, headers: HeaderMap, body: Body) -> Response {
    serve_at(app, surface, headers, &http::Uri::from_static("/"), body).await
}

async fn serve_at(
    app: App,
    surface: Surface,
    headers: HeaderMap,
    uri: &http::Uri,
    body: Body,
) -> Response {
    let request_id = modelgate_shared::new_id().to_string();
    let mut rec = Recorder::start(
        app.spool.clone(),
        &app.origin,
        surface.endpoint(),
        &request_id,
    );
    let runtime = app.runtime.load_full();
    let p = match prepare(&app, &runtime, surface, &headers, uri, body, &mut rec).await {
        Ok(p) => p,
        Err(e) => return reject(surface, rec, e).await,
    };
    let remaining = p.budget_remaining;
    let mut resp = ladder::run(&app, &runtime, rec, p, &request_id).await;
    if let Some(r) = remaining {
        resp.headers_mut()
            .insert(BUDGET_REMAINING_HEADER.clone(), HeaderValue::from(r));
    }
    resp
}

/// Forwards an upstream SSE stream event by event through `translator` (pass-through or
/// translation to the client's format), reading usage from it, and holding back the stream's
/// last event until the usage event is written. Ends the client stream with an error event in
/// the client's format if upstream breaks off.
///
/// The upstream reads at hand go to the client as one write: the events they held are forwarded
/// together as soon as they are translated (nothing waits for reads still to come), so a
/// provider that sends many events per packet costs one client write, not one per event.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn pump(
    mut upstream: futures_util::stream::BoxStream<'static, Result<Bytes, providers::UpstreamError>>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    mut rec: Recorder,
    client: Surface,
    mut translator: StreamTranslator,
    price: Option<Price>,
    basis: estimate::Basis,
    idle_timeout: std::time::Duration,
    json_array: bool,
) {
    let mut framer = json_array.then(surfaces::gemini::ArrayFramer::default);
    let mut splitter = sse::SseSplitter::default();
    let mut failure: Option<String> = None;
    let mut client_gone = false;
    let mut out: Vec<Bytes> = Vec::with_capacity(4);
    let mut batch = Batch::default();
    let mut ended = false;
    loop {
        let mut next = tokio::select! {
            n = tokio::time::timeout(idle_timeout, upstream.next()) => match n {
                Ok(n) => n,
                Err(_) => {
                    failure = Some("the provider's stream went idle for too long".into());
                    break;
                }
            },
            () = tx.closed() => { client_gone = true; break },
        };
        // Take this read and every one already waiting (an HTTP chunk per event is common)
        // into one client write.
        loop {
            let events = match next {
                Some(Ok(chunk)) => splitter.push(&chunk),
                Some(Err(e)) => {
                    failure = Some(e.to_string());
                    break;
                }
                // The stream is over; an unterminated last event still counts.
                None => {
                    ended = true;
                    splitter.remainder().into_iter().collect()
                }
            };
            for event in events {
                translator.event(event, &mut out);
                batch.extend(out.drain(..).filter_map(|e| frame(&mut framer, e)));
            }
            if let Some(e) = splitter.too_large() {
                failure = Some(e.to_string());
                break;
            }
            if ended {
                translator.end(&mut out);
                batch.extend(out.drain(..).filter_map(|e| frame(&mut framer, e)));
            }
            if ended || translator.terminal.is_some() || batch.full() {
                break;
            }
            // The provider's connection task decodes one HTTP chunk per poll of the body: let it
            // run once, then take what it has ready without waiting.
            tokio::task::yield_now().await;
            match upstream.next().now_or_never() {
                Some(n) => next = n,
                None => break,
            }
        }
        if let Some(write) = batch.take() {
            if tx.send(Ok(write)).await.is_err() {
                client_gone = true;
                break;
            }
        }
        // The last event is in: what follows (a lingering connection) cannot change the answer.
        if failure.is_some() || ended || translator.terminal.is_some() {
            break;
        }
    }
    drop(upstream);
    // An error event the provider sent was already forwarded (in the client's format).
    let reported = translator.upstream_error.is_some();
    if failure.is_none() && !client_gone && (translator.terminal.is_none() || reported) {
        failure = Some(match translator.upstream_error.take() {
            Some(e) => format!("the provider reported an error in the stream: {e}"),
            None => "the provider's stream ended before its last event".into(),
        });
    }
    let complete = translator.terminal.is_some();
    let (usage, estimated) = match translator.usage {
        // A complete stream's own report is the truth.
        Some(u) if complete => (u, false),
        // Cut short (client gone, provider broke off): the report may predate most of the
        // output (Anthropic's `message_start` says 1 output token), so take at least the
        // estimate from what was streamed, and say it is an estimate.
        Some(u) => {
            let streamed = std::mem::take(&mut translator.streamed);
            let estimate = estimate::estimate_usage(basis, Produced::Stream(streamed)).await;
            (
                Usage {
                    output: u.output.max(estimate.output),
                    ..u
                },
                true,
            )
        }
        None => {
            let streamed = std::mem::take(&mut translator.streamed);
            (
                estimate::estimate_usage(basis, Produced::Stream(streamed)).await,
                true,
            )
        }
    };
    charge(&mut rec, usage, estimated, price);
    if client_gone {
        rec.fail(
            499,
            ErrorClass::ClientCancel,
            "the client closed the stream",
        );
    } else if let Some(f) = &failure {
        rec.fail(502, ErrorClass::ProviderError, f);
    }
    if let Err(err) = rec.finish().await {
        tracing::error!(error = %err, "usage event not written");
    }
    if client_gone {
        return;
    }
    let last = match (failure, translator.terminal.take()) {
        (None, Some(done)) => Some(done),
        // The provider's error was forwarded; an OpenAI stream still ends with `[DONE]`, an
        // Anthropic one ends at its `error` event.
        (Some(_), Some(done)) if reported && client == Surface::OpenAiChat => Some(done),
        (Some(_), _) if reported => None,
        (Some(f), _) => Some(client.error_event(&ProxyError::upstream(f, false))),
        (None, None) => None,
    };
    if let Some(last) = last.and_then(|l| frame(&mut framer, l)) {
        let _ = tx.send(Ok(last)).await;
    }
    if let Some(f) = &framer {
        let _ = tx.send(Ok(f.close())).await;
    }
}

/// Client-bound events of the upstream reads at hand, joined into one write.
#[derive(Default)]
struct Batch {
    events: Vec<Bytes>,
    bytes: usize,
    joined: BytesMut,
}

impl Batch {
    /// Past this many bytes the batch is written without waiting for more ready reads.
    const MAX_BYTES: usize = 64 * 1024;

    fn extend(&mut self, events: impl Iterator<Item = Bytes>) {
        for e in events {
            self.bytes += e.len();
            self.events.push(e);
        }
    }

    fn full(&self) -> bool {
        self.bytes >= Self::MAX_BYTES
    }

    /// The events gathered since the last call as one buffer (the event itself when there is
    /// only one: no copy), or `None` when there are none.
    fn take(&mut self) -> Option<Bytes> {
        let bytes = std::mem::take(&mut self.bytes);
        match self.events.len() {
            0 => None,
            1 => self.events.pop(),
            _ => {
                self.joined.reserve(bytes);
                for e in self.events.drain(..) {
                    self.joined.extend_from_slice(&e);
                }
                Some(self.joined.split().freeze())
            }
        }
    }
}

/// An event as the client gets it: as is (SSE), or as the next element of a JSON array.
fn frame(framer: &mut Option<surfaces::gemini::ArrayFramer>, event: Bytes) -> Option<Bytes> {
    match framer {
        None => Some(event),
        Some(f) => f.element(&event),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use tokio::sync::mpsc;

    use super::pump;
    use crate::estimate::{Basis, Encoding};
    use crate::providers::UpstreamError;
    use crate::surfaces::Surface;
    use crate::translate::stream::StreamTranslator;
    use crate::usage::spool::{Spool, SpoolOptions};
    use crate::usage::{Origin, Recorder};

    const HELLO: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
    const WORLD: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    type Chunk = Result<Bytes, UpstreamError>;

    /// Pumps `upstream` (OpenAI chat to an OpenAI client) in a task; returns the client's side.
    fn start(
        upstream: futures_util::stream::BoxStream<'static, Chunk>,
    ) -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
        let dir = std::env::temp_dir().join(format!("mg-pump-{}", uuid::Uuid::now_v7()));
        let spool = Spool::open(&dir, SpoolOptions::default()).unwrap();
        let rec = Recorder::start(spool, &Origin::default(), "chat", "req-pump");
        let basis = Basis {
            request: Bytes::from_static(b"{}"),
            client: Surface::OpenAiChat,
            upstream: Surface::OpenAiChat,
            encoding: Encoding::O200kBase,
        };
        let translator = StreamTranslator::new(Surface::OpenAiChat, Surface::OpenAiChat, false);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(pump(
            upstream,
            tx,
            rec,
            Surface::OpenAiChat,
            translator,
            None,
            basis,
            Duration::from_secs(30),
            false,
        ));
        rx
    }

    async fn next_write(rx: &mut mpsc::Receiver<Result<Bytes, std::io::Error>>) -> String {
        // A guard against a hang, not a timing claim.
        let write = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the pump wrote nothing")
            .expect("the pump ended")
            .unwrap();
        String::from_utf8(write.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn events_read_together_reach_the_client_in_one_write() {
        let chunks: Vec<Chunk> = [HELLO, WORLD]
            .into_iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        // Both chunks are ready at once; the stream then ends with `[DONE]` on its own.
        let ready = futures_util::stream::iter(chunks);
        let done = futures_util::stream::once(async { Ok(Bytes::from_static(DONE.as_bytes())) });
        let mut rx = start(ready.chain(done).boxed());
        let first = next_write(&mut rx).await;
        assert!(
            first.starts_with(&format!("{HELLO}{WORLD}")),
            "one write carries both events: {first:?}"
        );
        let mut rest = first[HELLO.len() + WORLD.len()..].to_owned();
        while let Some(Ok(w)) = rx.recv().await {
            rest.push_str(std::str::from_utf8(&w).unwrap());
        }
        assert_eq!(rest, DONE, "the stream ends with its terminal event");
    }

    #[tokio::test]
    async fn an_upstream_event_over_the_cap_ends_the_stream_with_an_error_event() {
        let big = format!("data: {}", "x".repeat(crate::sse::MAX_EVENT_BYTES));
        let mut chunks: Vec<Chunk> = vec![Ok(Bytes::from_static(HELLO.as_bytes()))];
        chunks.extend(
            Bytes::from(big)
                .chunks(64 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c))),
        );
        // What would follow is never read.
        chunks.push(Ok(Bytes::from_static(DONE.as_bytes())));
        let mut rx = start(futures_util::stream::iter(chunks).boxed());
        let mut all = String::new();
        while let Some(Ok(w)) = rx.recv().await {
            all.push_str(std::str::from_utf8(&w).unwrap());
        }
        assert!(all.starts_with(HELLO), "{all:?}");
        let last = &all[HELLO.len()..];
        assert!(last.starts_with("data: {\"error\""), "{last:?}");
        assert!(last.contains("larger than 1048576 bytes"), "{last:?}");
        assert!(!all.contains("[DONE]"), "{all:?}");
    }

    #[tokio::test]
    async fn an_event_is_forwarded_without_waiting_for_the_next_one() {
        let (up_tx, up_rx) = mpsc::channel::<Chunk>(4);
        let mut rx = start(tokio_stream::wrappers::ReceiverStream::new(up_rx).boxed());
        up_tx
            .send(Ok(Bytes::from_static(HELLO.as_bytes())))
            .await
            .unwrap();
        // The second event has not been sent: the first must reach the client anyway.
        assert_eq!(next_write(&mut rx).await, HELLO);
        up_tx
            .send(Ok(Bytes::from_static(WORLD.as_bytes())))
            .await
            .unwrap();
        assert_eq!(next_write(&mut rx).await, WORLD);
        up_tx
            .send(Ok(Bytes::from_static(DONE.as_bytes())))
            .await
            .unwrap();
        assert_eq!(next_write(&mut rx).await, DONE);
    }
}
