//! Video generation as asynchronous jobs, in OpenAI's video API shape:
//!
//! - `POST /v1/videos` creates a job on a deployment of the requested model (the plan's
//!   candidates in order; a deployment that cannot take video jobs, or fails with 408/429/5xx or
//!   a transport error, passes the request on to the next). The job object comes back with the
//!   gateway's own id, [`GatewayJobId`]: provider, deployment model, alias, team and upstream id,
//!   signed with the fleet's job-id key, so any data-plane node can route a poll without shared
//!   state and no client can alter it.
//! - `GET /v1/videos/{id}` polls the owning provider; the job's `id` is rewritten again.
//! - `GET /v1/videos/{id}/content` streams the finished video back (only `variant=` of the
//!   query is forwarded).
//!
//! A poll or download checks, before any upstream call, that the id carries the gateway's
//! signature, that the job belongs to the key's team (else 404 `video_not_found`, as for an id
//! that never existed; ids of the unsigned `mgv.` format of earlier versions included), and
//! that the key may use the alias the job was created through (else 403).
//!
//! Metering: every request leaves its own usage event, at no cost, except the poll that first
//! sees the job `completed`: that one carries `media_ms` (the job's `seconds`) priced at the
//! deployment model's `per_second_micros`. "Once" holds on a node through
//! [`MeteredJobs`](crate::usage::metered::MeteredJobs), and across nodes and restarts through
//! the event's id, derived from the job id: the control plane stores events by id, so a second
//! charging event for the same job is dropped at ingest.
//!
//! Supported providers: openai, openai-compatible and the built-in mock. Azure OpenAI and
//! Anthropic deployments are passed over for video jobs.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Request, StatusCode};
use modelgate_shared::key_view::KeyView;
use modelgate_shared::snapshot::ProviderKind;
use modelgate_shared::usage::{Attempt, ErrorClass};

use super::account;
use super::admit::{authenticate, prepare};
use super::answer::{reject, with_request_id};
use super::attempt::attempt_message;
use super::context::App;
use super::plan;
use crate::auth;
use crate::error::ProxyError;
use crate::providers::mock::openai as mock_openai;
use crate::providers::{self, Call, Endpoint, UpstreamResponse};
use crate::surfaces::openai_videos::{self, GatewayJobId};
use crate::surfaces::Surface;
use crate::time::now_ms;
use crate::translate::Usage;
use crate::usage::ServedBy;

const SURFACE: Surface = Surface::OpenAiVideos;
/// Connect timeout for polls and downloads (they have no routing group of their own).
const CONNECT_TIMEOUT_MS: u32 = 10_000;
/// Limit on a poll, and on a download's first byte.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The usage event id of a job's charge: a UUID derived from the gateway job id.
pub fn charge_event_id(job_id: &str) -> String {
    let hash = |seed: u64| {
        job_id.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hash(0xcbf2_9ce4_8422_2325).to_be_bytes());
    bytes[8..].copy_from_slice(&hash(0x84222325_cbf29ce4).to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8: custom
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    uuid::Uuid::from_bytes(bytes).to_string()
}

fn json_content_type() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

fn call<'a>(
    provider: &'a modelgate_shared::snapshot::ProviderAccount,
    model: &'a str,
    body: Bytes,
    stream: bool,
    request_id: &'a str,
) -> Call<'a> {
    Call {
        provider,
        endpoint: None,
        body,
        format: SURFACE,
        model,
        stream,
        request_id,
        anthropic_version: None,
        anthropic_beta: None,
        upload: None,
        trace: Default::default(),
    }
}

/// Reads a full upstream body (a stream is drained), at most `providers::MAX_ANSWER_BYTES`.
async fn full_body(body: providers::Body) -> Result<Bytes, providers::UpstreamError> {
    use futures_util::StreamExt;
    match body {
        providers::Body::Full(b) => Ok(b),
        providers::Body::Stream(mut s) => {
            let mut out = Vec::new();
            while let Some(chunk) = s.next().await {
                out.extend_from_slice(&chunk?);
                if out.len() > providers::MAX_ANSWER_BYTES {
                    return Err(providers::UpstreamError::TooLarge {
                        limit: providers::MAX_ANSWER_BYTES,
                    });
                }
            }
            Ok(Bytes::from(out))
        }
    }
}

/// A job object from upstream with its `id` replaced by the gateway's.
fn with_gateway_id(v: &mut serde_json::Value, id: &str) -> Option<()> {
    *v.get_mut("id")? = serde_json::Value::String(id.to_owned());
    Some(())
}

fn pass_through(status: StatusCode, content_type: Option<HeaderValue>, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, content_type.unwrap_or_else(json_content_type));
    r
}

/// `POST /v1/videos`: creates a job on the first deployment of the plan that takes it.
pub async fn create(app: App, uri: &http::Uri, headers: &HeaderMap, body: Body) -> Response {
    let request_id = modelgate_shared::new_id().to_string();
    let mut rec = account::open(&app, SURFACE.endpoint(), &request_id, headers);
    let runtime = app.runtime.load_full();
    let p = match prepare(&app, &runtime, SURFACE, headers, uri, body, &mut rec).await {
        Ok(p) => p,
        Err(e) => return reject(SURFACE, rec, e).await,
    };
    if let Err(e) = openai_videos::check_content_type(&p.raw, headers.get(CONTENT_TYPE)) {
        return reject(SURFACE, rec, e).await;
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(json_content_type);
    let plan = {
        let mut rng = rand::thread_rng();
        let request = plan::Request {
            class: p.class,
            data_class: p.data_class,
        };
        plan::plan(&runtime, p.group, request, now_ms(), &mut rng)
    };
    let mut tried: Vec<String> = plan
        .skipped
        .iter()
        .map(|s| format!("{} ({})", s.deployment_id, s.reason))
        .collect();
    for c in &plan.candidates {
        let kind = c.provider.kind;
        let endpoint = match (kind, runtime.endpoints.get(&c.provider.id)) {
            (ProviderKind::Mock, _) => None,
            (ProviderKind::OpenAi | ProviderKind::OpenAiCompatible, Some(Endpoint::OpenAi(e))) => {
                Some(e)
            }
            _ => {
                tried.push(format!(
                    "{}: video jobs are not supported for {kind} providers",
                    c.deployment_id
                ));
                continue;
            }
        };
        let model = c.deployment.model.as_str();
        // A form is always written out again (what the provider reads is what was read here).
        let body = if model == p.alias && !openai_videos::is_multipart(&p.raw) {
            p.raw.clone()
        } else {
            match openai_videos::with_model(&p.raw, model) {
                Ok(b) => b,
                Err(e) => return reject(SURFACE, rec, e).await,
            }
        };
        let started = std::time::Instant::now();
        let started_at_ms = now_ms();
        let result = match endpoint {
            None => Ok(mock_openai::create_video(&body, model)),
            Some(e) => {
                let mut req =
                    Request::post(e.videos.clone()).header(CONTENT_TYPE, content_type.clone());
                if let Some(auth) = &e.authorization {
                    req = req.header(AUTHORIZATION, auth.clone());
                }
                let limit = Duration::from_millis(u64::from(c.group.policy.total_timeout_ms));
                let send = providers::execute(
                    c.client,
                    req,
                    call(c.provider, model, body, false, &request_id),
                );
                match tokio::time::timeout(limit, send).await {
                    Ok(r) => r,
                    Err(_) => Err(providers::UpstreamError::Timeout),
                }
            }
        };
        let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let status = result.as_ref().map_or(0, |r| r.status.as_u16());
        let failed = !(200..300).contains(&status);
        rec.attempt(Attempt {
            deployment_id: c.deployment_id.to_owned(),
            provider_id: c.provider.id.clone(),
            model: model.to_owned(),
            status,
            error_class: failed.then_some(ErrorClass::ProviderError),
            latency_us,
            started_at_ms,
            error_message: match &result {
                Ok(_) if failed => status.to_string(),
                Ok(_) => String::new(),
                Err(e) => attempt_message(e.to_string()),
            },
        });
        let resp = match result {
            Ok(r) if !(r.status.is_server_error() || matches!(status, 408 | 429)) => r,
            Ok(_) => {
                tried.push(format!("{}: {status}", c.deployment_id));
                continue;
            }
            Err(e) => {
                tried.push(format!("{}: {e}", c.deployment_id));
                continue;
            }
        };
        rec.mark_first_byte();
        let fallback = c.backup || rec.attempts() > 1;
        rec.served_by(ServedBy {
            provider_id: &c.provider.id,
            model,
            deployment_id: c.deployment_id,
            fallback,
            price: None,
        });
        rec.answered(status);
        let UpstreamResponse {
            status: http_status,
            content_type,
            body,
            ..
        } = resp;
        let bytes = match full_body(body).await {
            Ok(b) => b,
            Err(e) => {
                return reject(SURFACE, rec, ProxyError::upstream(e.to_string(), false)).await
            }
        };
        if !http_status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            rec.fail(status, ErrorClass::ProviderError, &text);
            account::write(rec).await;
            return with_request_id(pass_through(http_status, content_type, bytes), &request_id);
        }
        let team_id = rec.team_id().to_owned();
        let job = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|mut v| {
                let upstream_id = v["id"].as_str()?.to_owned();
                let gid = GatewayJobId {
                    provider_id: c.provider.id.as_str().into(),
                    model: model.to_owned(),
                    alias: p.alias.clone(),
                    team_id: team_id.as_str().into(),
                    upstream_id: upstream_id.into(),
                };
                // Only ids the gateway can route back are handed out.
                let id = gid.encode(&runtime.video_job_key)?;
                with_gateway_id(&mut v, &id)?;
                Some(v)
            });
        let Some(job) = job else {
            let e = ProxyError::upstream("the provider's video job could not be read", false);
            return reject(SURFACE, rec, e).await;
        };
        // Creating a job costs nothing; the finished job is charged when first seen completed.
        rec.charge(Usage::default(), false, c.price);
        account::write(rec).await;
        return with_request_id(axum::Json(job).into_response(), &request_id);
    }
    let e = if plan.candidates.is_empty() || rec.attempts() == 0 {
        ProxyError::no_deployment(&p.alias, &tried.join(", "))
    } else {
        ProxyError::upstream(
            format!("every route for `{}` failed: {}", p.alias, tried.join("; ")),
            false,
        )
    };
    reject(SURFACE, rec, e).await
}

/// The only query parameter a download forwards upstream: OpenAI's `variant` (`video`,
/// `thumbnail`, `spritesheet`), and only a plain word. Anything else the caller put in the
/// query (a `key=` among them) never leaves the gateway.
fn content_variant(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("variant="))
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 32
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// A poll (`content: None`, `GET /v1/videos/{id}`) or a download (`content: Some(query)`,
/// `GET /v1/videos/{id}/content`).
pub async fn job_request(
    app: App,
    id: String,
    headers: &HeaderMap,
    content: Option<String>,
) -> Response {
    let request_id = modelgate_shared::new_id().to_string();
    let endpoint = if content.is_some() {
        "videos.content"
    } else {
        "videos.retrieve"
    };
    let mut rec = account::open(&app, endpoint, &request_id, headers);
    let runtime = app.runtime.load_full();
    if rec.refused() {
        return reject(SURFACE, rec, ProxyError::metering_unavailable()).await;
    }
    if runtime.version == 0 {
        return reject(SURFACE, rec, ProxyError::no_config()).await;
    }
    let presented = auth::presented_key(headers);
    let key = match authenticate(&mut rec, &runtime, presented, headers, SURFACE.family()) {
        Ok(k) => k.key(),
        Err(e) => return reject(SURFACE, rec, e).await,
    };
    // A forged or edited id, or another team's job, is not found: no upstream call.
    let Some(job) = GatewayJobId::decode(&id, &runtime.video_job_key)
        .filter(|job| job.team_id == key.team_id())
    else {
        return reject(SURFACE, rec, ProxyError::video_not_found(&id)).await;
    };
    if !key.may_use(&job.alias) {
        return reject(SURFACE, rec, ProxyError::model_not_allowed(&job.alias)).await;
    }
    let Some(provider) = runtime.providers.get(job.provider_id.as_ref()) else {
        return reject(SURFACE, rec, ProxyError::video_not_found(&id)).await;
    };
    rec.served_by(ServedBy {
        provider_id: &provider.id,
        model: &job.model,
        deployment_id: "",
        fallback: false,
        price: None,
    });
    rec.requested_model(&job.alias);
    let upstream = job.upstream_id.as_ref();
    let started = std::time::Instant::now();
    let started_at_ms = now_ms();
    let result = match (provider.kind, runtime.endpoints.get(&provider.id)) {
        (ProviderKind::Mock, _) => Ok(match content {
            Some(_) => mock_openai::video_content(upstream),
            None => mock_openai::poll_video(upstream, &job.model),
        }),
        (ProviderKind::OpenAi | ProviderKind::OpenAiCompatible, Some(Endpoint::OpenAi(e))) => {
            let uri = match content.as_deref().map(content_variant) {
                Some(Some(v)) => format!("{}/videos/{upstream}/content?variant={v}", e.base_url),
                Some(None) => format!("{}/videos/{upstream}/content", e.base_url),
                None => format!("{}/videos/{upstream}", e.base_url),
            };
            let mut req = Request::get(uri);
            if let Some(auth) = &e.authorization {
                req = req.header(AUTHORIZATION, auth.clone());
            }
            let client = runtime.clients.get(CONNECT_TIMEOUT_MS);
            let send = providers::execute(
                &client,
                req,
                call(
                    provider,
                    &job.model,
                    Bytes::new(),
                    content.is_some(),
                    &request_id,
                ),
            );
            match tokio::time::timeout(CALL_TIMEOUT, send).await {
                Ok(r) => r,
                Err(_) => Err(providers::UpstreamError::Timeout),
            }
        }
        _ => return reject(SURFACE, rec, ProxyError::video_not_found(&id)).await,
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            let timeout = matches!(e, providers::UpstreamError::Timeout);
            return reject(SURFACE, rec, ProxyError::upstream(e.to_string(), timeout)).await;
        }
    };
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let status = resp.status.as_u16();
    rec.mark_first_byte();
    rec.attempt(Attempt {
        deployment_id: String::new(),
        provider_id: provider.id.clone(),
        model: job.model.clone(),
        status,
        error_class: (!resp.status.is_success()).then_some(ErrorClass::ProviderError),
        latency_us,
        started_at_ms,
        error_message: if resp.status.is_success() {
            String::new()
        } else {
            status.to_string()
        },
    });
    rec.answered(status);
    let UpstreamResponse {
        status: http_status,
        content_type,
        body,
        ..
    } = resp;
    if !http_status.is_success() {
        let bytes = match full_body(body).await {
            Ok(b) => b,
            Err(e) => {
                return reject(SURFACE, rec, ProxyError::upstream(e.to_string(), false)).await
            }
        };
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
        rec.fail(status, ErrorClass::ProviderError, &text);
        account::write(rec).await;
        return with_request_id(pass_through(http_status, content_type, bytes), &request_id);
    }
    if content.is_some() {
        // The video itself: streamed through as it arrives.
        account::write(rec).await;
        let body = match body {
            providers::Body::Full(b) => Body::from(b),
            providers::Body::Stream(s) => Body::from_stream(s),
        };
        let mut r = Response::new(body);
        if let Some(ct) = content_type {
            r.headers_mut().insert(CONTENT_TYPE, ct);
        }
        return with_request_id(r, &request_id);
    }
    let bytes = match full_body(body).await {
        Ok(b) => b,
        Err(e) => return reject(SURFACE, rec, ProxyError::upstream(e.to_string(), false)).await,
    };
    let Some(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .filter(serde_json::Value::is_object)
    else {
        let e = ProxyError::upstream("the provider's video job could not be read", false);
        return reject(SURFACE, rec, e).await;
    };
    // The id as the client sent it: it verified, so it is the one this job was given.
    let gateway_id = id.as_str();
    let _ = with_gateway_id(&mut v, gateway_id);
    if v["status"] == "completed" && app.videos_metered.first(gateway_id) {
        let price = runtime.price(provider.kind, &job.model);
        let seconds = openai_videos::job_seconds(&v);
        let media_ms = seconds.map_or(0, |s| (s * 1000.0).round() as u64);
        rec.charge(
            Usage {
                media_ms,
                ..Usage::default()
            },
            seconds.is_none(),
            price,
        );
        rec.charge_once_as(charge_event_id(gateway_id));
    }
    account::write(rec).await;
    with_request_id(axum::Json(v).into_response(), &request_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::metered::MeteredJobs;

    #[test]
    fn a_job_is_metered_once_per_node_and_its_charge_event_id_is_stable() {
        let m = MeteredJobs::default();
        assert!(m.first("mgv.a.00.x"));
        assert!(!m.first("mgv.a.00.x"));
        assert!(m.first("mgv.a.00.y"));
        assert_eq!(charge_event_id("j1"), charge_event_id("j1"));
        assert_ne!(charge_event_id("j1"), charge_event_id("j2"));
        assert!(uuid::Uuid::parse_str(&charge_event_id("j1")).is_ok());
    }
}
