//! Authenticate, parse and admit: everything between accepting a request and planning it, in
//! this order — spool and config present; the key (found by its secret, then its state and its
//! endpoint families), before the body is read; the body and its peek; the key's policy for the
//! model (allowed, exists, traffic class, data class); the rate limits (the node's leased
//! shares); the price-and-bound policy and the budget reservation. The first check that fails
//! is the answer; nothing here calls upstream.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use modelgate_shared::snapshot::{ApiKey, MissingPricePolicy, RoutingGroup};

use super::account;
use super::context::App;
use super::parse;
use crate::auth;
use crate::config::{GroupIndex, Runtime};
use crate::error::ProxyError;
use crate::routing::TrafficClass;
use crate::surfaces::Surface;
use crate::time::unix_now;
use crate::usage::{Recorder, COST_FLAG_PRICE_MISSING, COST_FLAG_UNBOUNDED};

/// A request that passed every gateway check, ready for the plan and the failure ladder.
pub struct Prepared<'r> {
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

/// Authenticates, parses and admits one request.
pub async fn prepare<'r>(
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
    // Authenticate (the Gemini URL may carry the key).
    let gemini_call = parse::gemini_call(surface, uri)?;
    let presented = match &gemini_call {
        Some(call) => auth::presented_google_key(headers, call.key.as_deref()),
        None => auth::presented_key(headers),
    };
    let key = account::identify(
        rec,
        auth::authenticate_presented(runtime, presented, unix_now()),
    )?;
    if !key.may_call(surface.family()) {
        return Err(ProxyError::endpoint_not_allowed(surface.family()));
    }
    // Parse what is needed.
    let raw = parse::read_body(body, app.max_body_bytes).await?;
    let peek = parse::peek(surface, &raw, gemini_call.as_ref())?;
    let alias = peek.model.as_str();
    rec.requested_model(alias);
    // The key's policy for this model.
    if !key.may_use(alias) {
        return Err(ProxyError::model_not_allowed(alias));
    }
    let group = runtime
        .groups
        .get(alias)
        .ok_or_else(|| ProxyError::model_not_found(alias))?;
    let requested = parse::traffic_class(headers)?;
    let class = key
        .traffic_class_for(requested)
        .ok_or_else(|| ProxyError::traffic_class_not_allowed(requested.unwrap_or_default()))?;
    let data_class = modelgate_shared::snapshot::data_class_rank(&key.data_class);
    if data_class > group.policy.max_data_class {
        return Err(ProxyError::data_class_not_allowed(alias, &key.data_class));
    }
    // Limits.
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
    // Budget.
    let budget_remaining =
        admit_cost(app, runtime, rec, key, group, &raw, peek.max_output_tokens).await?;
    let stream = peek.stream;
    rec.admitted(class, stream);
    let (anthropic_version, anthropic_beta) = parse::anthropic_headers(surface, headers);
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
    key: &ApiKey,
    group: &RoutingGroup,
    raw: &[u8],
    max_output_tokens: Option<u64>,
) -> Result<Option<i64>, ProxyError> {
    // The event's time is the time the budget check used, so the spend lands in the period
    // the reservation was taken from (both read the injected clock).
    let now = app.clock.now();
    rec.started_at(now.timestamp_millis());
    let Some(index) = runtime.routes.get(&group.alias) else {
        return Ok(None);
    };
    let allow = group.policy.missing_price == MissingPricePolicy::AllowAndFlag;
    if index.unpriced {
        if !allow {
            return Err(ProxyError::price_missing(&group.alias));
        }
        rec.flag_cost(COST_FLAG_PRICE_MISSING);
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
        rec.flag_cost(COST_FLAG_UNBOUNDED);
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

/// The most a request can cost on any deployment of its group: every prompt byte as an input
/// token plus the output bound (the client's `max_tokens`, else the deployment's catalog output
/// limit), at each deployment's price; the dearest wins. `None` when some deployment has no
/// price or no output bound.
fn worst_case(index: &GroupIndex, raw: &[u8], max_output_tokens: Option<u64>) -> Option<i64> {
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
