//! Authenticate, parse and admit: everything between accepting a request and planning it, in
//! this order — spool and config present; the key, found by its secret (the Gemini URL may
//! carry it) and cleared by the first part of the admission decision (its state, its endpoint
//! families) before the body is read; the body and its peek; the rest of the decision (the
//! key's policy for the model, the price-and-bound policy); then what needs this node's state:
//! the rate limits (its leased shares) and the budget reservation. The first check that fails
//! is the answer; nothing here calls upstream.
//!
//! The decision itself is `modelgate_shared::admission` — one pure function of the key, the
//! request and the group's catalog facts, whose order the control plane's explain calls too.
//! [`refused`] is the one place a refusal becomes this plane's [`ProxyError`].

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use modelgate_shared::admission::{self, Cost, KeyAdmitted, Refusal};
use modelgate_shared::snapshot::RoutingGroup;

use super::account;
use super::context::App;
use super::parse;
use crate::auth;
use crate::cache::{Directive, CACHE_HEADER};
use crate::config::{Key, Runtime};
use crate::error::ProxyError;
use crate::routing::TrafficClass;
use crate::surfaces::openai_audio::Media;
use crate::surfaces::Surface;
use crate::time::unix_now;
use crate::usage::Recorder;

/// A request that passed every gateway check, ready for the plan and the failure ladder.
pub struct Prepared<'r> {
    /// The format the client speaks (requests in, answers and errors out).
    pub surface: Surface,
    /// The key the request was admitted under.
    pub key: &'r Key,
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
    /// An audio surface's upload (parsed, judged, its duration read) or speech input.
    pub media: Media,
    /// What `x-modelgate-cache` asks (checked before the limits and the budget).
    pub cache: Directive,
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
    // Authenticate.
    let gemini_call = parse::gemini_call(surface, uri)?;
    let presented = match &gemini_call {
        Some(call) => auth::presented_google_key(headers, call.key.as_deref()),
        None => auth::presented_key(headers),
    };
    let cleared = authenticate(rec, runtime, presented, headers, surface.family())?;
    let key = cleared.key();
    // Parse what is needed.
    let peek;
    let raw = if surface.is_upload() {
        let raw = parse::read_body(body, app.max_audio_bytes).await?;
        peek = parse::peek_upload(raw, headers).await?;
        // The upload's parts are kept; the request's own bytes are not needed again.
        Bytes::new()
    } else {
        let raw = parse::read_body(body, app.max_body_bytes).await?;
        peek = parse::peek(surface, &raw, gemini_call.as_ref())?;
        raw
    };
    let (media_ms, characters) = match &peek.media {
        Media::Upload(u) => (u.media_ms.unwrap_or(0), 0),
        Media::Speech { characters } => (0, *characters),
        Media::None => (0, 0),
    };
    let alias = peek.model.as_str();
    rec.requested_model(alias);
    // Admit: the key's policy for the model, the price-and-bound policy.
    let group = runtime.groups.get(alias);
    let facts = group
        .zip(runtime.routes.get(alias))
        .map(|(group, index)| admission::Group {
            group,
            prices: &index.prices,
            output_limits: &index.output_limits,
        });
    let decision = cleared
        .admit(&admission::Request {
            alias,
            group: facts,
            class: parse::traffic_class(headers),
            hard_budget: crate::quota::any_hard(&runtime.budgets, key),
            // An upload's prompt is its optional `prompt` field, not its audio bytes.
            prompt_bytes: match &peek.media {
                Media::Upload(u) => u.field("prompt").map_or(0, |p| p.len() as u64),
                _ => raw.len() as u64,
            },
            max_output_tokens: peek.max_output_tokens,
            media_ms,
            characters,
        })
        .map_err(refused)?;
    // The decision found the group.
    let Some(group) = group else {
        return Err(ProxyError::model_not_found(alias));
    };
    // A bad cache directive is the client's error: refused before any limit or budget is taken.
    let cache = Directive::of_request(surface, &group.policy.cache, headers.get(&CACHE_HEADER))
        .map_err(|e| ProxyError::invalid_param(CACHE_HEADER.as_str(), e.to_string()))?;
    // Limits: this node's leased shares.
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
    // Budget: the worst case reserved from every hard budget of the key.
    let budget_remaining = reserve(app, runtime, rec, key, decision.cost).await?;
    rec.admitted(decision.traffic_class, peek.stream, decision.cost);
    let (anthropic_version, anthropic_beta) = parse::anthropic_headers(surface, headers);
    Ok(Prepared {
        surface,
        key,
        group,
        raw,
        stream: peek.stream,
        alias: peek.model,
        json_array: gemini_call.as_ref().is_some_and(|c| c.array),
        client_wants_usage: peek.client_wants_usage,
        class: decision.traffic_class,
        data_class: decision.data_class,
        anthropic_version,
        anthropic_beta,
        budget_remaining,
        media: peek.media,
        cache,
    })
}

/// Authenticate: the key the presented secret belongs to (named in the usage event even when it
/// is then refused), cleared by the decision's first part — its state and whether it may call
/// `family`.
pub fn authenticate<'r>(
    rec: &mut Recorder,
    runtime: &'r Runtime,
    presented: Option<&str>,
    headers: &HeaderMap,
    family: &'static str,
) -> Result<KeyAdmitted<'r, Key>, ProxyError> {
    let now = unix_now();
    let check = account::is_check(headers);
    let key = account::identify(rec, auth::find_key(runtime, presented, now), check)?;
    admission::admit_key(key, family, now).map_err(refused)
}

/// The data plane's answer to each refusal of the admission decision.
pub fn refused(r: Refusal<'_>) -> ProxyError {
    match r {
        Refusal::KeyRevoked => ProxyError::revoked_key(),
        Refusal::KeyDisabled => ProxyError::disabled_key(),
        Refusal::KeyExpired => ProxyError::expired_key(),
        Refusal::EndpointNotAllowed { family } => ProxyError::endpoint_not_allowed(family),
        Refusal::ModelNotAllowed { alias } => ProxyError::model_not_allowed(alias),
        Refusal::ModelNotFound { alias } => ProxyError::model_not_found(alias),
        Refusal::TrafficClassInvalid => ProxyError::invalid_param(
            parse::TRAFFIC_CLASS_HEADER,
            "must be one of interactive, batch, eval, media",
        ),
        Refusal::TrafficClassNotAllowed { requested } => {
            ProxyError::traffic_class_not_allowed(requested)
        }
        Refusal::DataClassNotAllowed { alias, data_class } => {
            ProxyError::data_class_not_allowed(alias, data_class)
        }
        Refusal::PriceMissing { alias } => ProxyError::price_missing(alias),
        Refusal::CostNotEstimable { .. } => ProxyError::cost_not_estimable(
            "no max_tokens, and the catalog has no output limit for the model",
        ),
    }
}

/// The budget reservation: the worst case the decision priced, taken from the node's
/// slice of every hard budget of the key. Returns what is left of the key's tightest budget.
async fn reserve(
    app: &App,
    runtime: &Runtime,
    rec: &mut Recorder,
    key: &Key,
    cost: Cost,
) -> Result<Option<i64>, ProxyError> {
    // The event's time is the time the budget check used, so the spend lands in the period
    // the reservation was taken from (both read the injected clock).
    let now = app.clock.now();
    rec.started_at(now.timestamp_millis());
    let Cost::Reserve(worst_case) = cost else {
        return Ok(None);
    };
    let reservation = app
        .quotas
        .reserve(&runtime.budgets, key, worst_case, now)
        .await
        .map_err(|r| match r {
            crate::quota::Refusal::Exceeded { budget_id } => {
                ProxyError::budget_exceeded(&budget_id, 60)
            }
            crate::quota::Refusal::InsufficientBalance { team_id } => {
                ProxyError::insufficient_balance(&team_id)
            }
        })?;
    rec.hold(reservation);
    Ok(app.quotas.remaining(&runtime.budgets, key))
}
