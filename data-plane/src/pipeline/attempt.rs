//! Attempt: the failure ladder walks the request's plan, attempt by attempt, recording
//! each in the usage event and in the deployment's health, and hands back the answer to serve
//! or why there is none. It answers nothing itself (that is `answer`, above it).
//!
//! | outcome of an attempt                         | next step                                   |
//! |-----------------------------------------------|---------------------------------------------|
//! | 2xx                                           | answer (a stream is never retried after)    |
//! | 4xx other than 408/429                        | answer as is: a client error is never retried |
//! | 429                                           | park the deployment until `retry-after`, next deployment |
//! | 408, 5xx, connect error, timeout, read error  | count against health; retry the same deployment up to `max_retries` with jittered backoff, then the next |
//! | next deployment: rest of the tier, later tiers, then approved backup groups (if the class allows) | every retry and every move takes from the node's retry budget |
//! | nothing left, or the budget or the total timeout is spent | fail closed: 429 if every attempt was rate-limited, 504 if the last timed out, else 502 — listing what was tried |
//!
//! Each attempt speaks the deployment's wire format: the client's body is forwarded as is (or
//! with the model renamed) when the formats match, and translated (`crate::translate`) when they
//! differ; the answer — JSON, error body or stream, event by event — is translated back to the
//! client's format by `answer` and marked with `x-modelgate-translated`.
//!
//! Each attempt is traced (`crate::trace`): the upstream gets the request's trace context (the
//! attempt's own span id when spans are exported), and the attempt's span ends with its outcome.

use std::time::{Duration, Instant};

use bytes::Bytes;
use modelgate_shared::snapshot::ProviderKind;
use modelgate_shared::usage::{Attempt, ErrorClass};

use super::admit::Prepared;
use super::context::App;
use super::plan::{Candidate, Plan};
use crate::config::Runtime;
use crate::error::ProxyError;
use crate::providers::{self, Call, UpstreamError, UpstreamResponse};
use crate::routing::health::InFlight;
use crate::surfaces::{self, Surface};
use crate::time::{now_ms, now_us};
use crate::translate;
use crate::usage::Recorder;

/// A deployment answered (success or a client error): what `answer` needs to hand it back.
pub struct Served<'p, 'r> {
    pub candidate: &'p Candidate<'r>,
    pub response: UpstreamResponse,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// The attempt stays in flight until its answer (a whole stream) is done.
    pub in_flight: InFlight,
}

/// Why the ladder ended without an answer to hand back.
pub enum Failed {
    /// The gateway's own refusal (nothing could be tried, or every attempt failed).
    Refused(ProxyError),
    /// Every attempt was told to back off: the last provider answer goes back as is.
    RateLimited {
        /// The format of `response` (the last deployment's).
        from: Surface,
        response: UpstreamResponse,
        attempts: u32,
    },
}

/// How one attempt ended, for the ladder's decision.
enum Outcome {
    Answer(UpstreamResponse),
    /// Retryable on the same deployment.
    Transient {
        status: u16,
        class: ErrorClass,
        message: String,
    },
    RateLimited {
        retry_after_secs: u64,
        response: UpstreamResponse,
    },
}

/// At most this many bytes of an attempt's failure reason are kept in its usage event.
const ATTEMPT_MESSAGE_MAX: usize = 200;

/// An attempt's failure reason as its usage event keeps it: cut at a character boundary.
pub(super) fn attempt_message(mut message: String) -> String {
    if message.len() > ATTEMPT_MESSAGE_MAX {
        let mut end = ATTEMPT_MESSAGE_MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Walks `plan` until a deployment answers, recording every attempt in `rec`.
pub async fn ladder<'p, 'r>(
    app: &App,
    runtime: &Runtime,
    rec: &mut Recorder,
    p: &Prepared<'_>,
    plan: &'p Plan<'r>,
    request_id: &str,
) -> Result<Served<'p, 'r>, Failed> {
    if plan.candidates.is_empty() {
        let skipped: Vec<String> = plan
            .skipped
            .iter()
            .map(|s| format!("{} ({})", s.deployment_id, s.reason))
            .collect();
        let e = ProxyError::no_deployment(&p.alias, &skipped.join(", "));
        return Err(Failed::Refused(e));
    }
    app.retry_budget.record_request();
    let policy = p.group.policy;
    let deadline = Instant::now() + Duration::from_millis(u64::from(policy.total_timeout_ms));
    let inject_usage = p.stream && !p.client_wants_usage;
    let mut tried: Vec<String> = Vec::new();
    let mut all_rate_limited = true;
    let mut last_timed_out = false;
    let mut last_rate_limited: Option<(Surface, UpstreamResponse)> = None;
    let mut attempts = 0u32;
    let mut bodies = Bodies::default();

    let mut at_limit: Vec<String> = Vec::new();
    // Why the first deployment whose format cannot carry the request refused it; the answer if
    // no deployment could be tried at all.
    let mut untranslatable: Option<ProxyError> = None;
    'candidates: for c in &plan.candidates {
        let mut tries_here = 0u32;
        loop {
            if attempts > 0 && !app.retry_budget.try_retry() {
                tried.push("retry budget exhausted".into());
                break 'candidates;
            }
            if tries_here > 0 {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let backoff = Duration::from_millis(25u64 << tries_here.min(6))
                    .mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..1.5));
                tokio::time::sleep(backoff.min(remaining)).await;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                tried.push("total timeout reached".into());
                last_timed_out = true;
                break 'candidates;
            }
            let body = match bodies.get(p, c, inject_usage) {
                Ok(b) => b,
                // This deployment's format cannot carry the request: another may.
                Err(e) => {
                    tried.push(format!("{}: {}", c.deployment_id, e.message));
                    untranslatable.get_or_insert(e);
                    continue 'candidates;
                }
            };
            // An ejected deployment whose cooldown ended is tried by one request only (the
            // half-open probe), claimed here, where the attempt is sure to follow.
            if !c.health.claim(now_ms()) {
                tried.push(format!("{}: ejected", c.deployment_id));
                continue 'candidates;
            }
            // The deployment's own limits on this node: at its limit it is passed over, like a
            // rate-limited one, without an attempt.
            let Some(in_flight) =
                c.health
                    .try_start(c.deployment.max_in_flight, c.deployment.rpm, now_us())
            else {
                c.health.release_probe();
                at_limit.push(format!("{} (deployment_limit)", c.deployment_id));
                continue 'candidates;
            };
            attempts += 1;
            tries_here += 1;
            let started = Instant::now();
            let started_at_ms = now_ms();
            let trace = rec.start_attempt(c.provider.kind, &c.deployment.model, c.deployment_id);
            let outcome = attempt(runtime, c, p, body, request_id, remaining, &trace).await;
            let latency_us = micros(started.elapsed());
            let record = |status: u16, class: Option<ErrorClass>, error_message: String| {
                let a = Attempt {
                    deployment_id: c.deployment_id.to_owned(),
                    provider_id: c.provider.id.clone(),
                    model: c.deployment.model.clone(),
                    status,
                    error_class: class,
                    latency_us,
                    started_at_ms,
                    error_message,
                };
                rec.attempt_traced(a, trace);
            };
            match outcome {
                Ok(Outcome::Answer(resp)) => {
                    let status = resp.status.as_u16();
                    let ok = resp.status.is_success();
                    let why = if ok {
                        String::new()
                    } else {
                        status.to_string()
                    };
                    record(status, (!ok).then_some(ErrorClass::ProviderError), why);
                    // A client error says nothing about the deployment's health.
                    c.health.record_success(&policy);
                    c.health.record_ttfb(latency_us);
                    return Ok(Served {
                        candidate: c,
                        response: resp,
                        attempts,
                        in_flight,
                    });
                }
                Ok(Outcome::RateLimited {
                    retry_after_secs,
                    response,
                }) => {
                    record(429, Some(ErrorClass::ProviderError), "429".to_owned());
                    let secs = retry_after_secs.clamp(1, 300);
                    c.health
                        .record_rate_limited(now_ms() + i64::try_from(secs * 1000).unwrap_or(0));
                    tried.push(format!("{}: 429", c.deployment_id));
                    last_rate_limited = Some((p.surface.upstream_for(c.provider.kind), response));
                    last_timed_out = false;
                    continue 'candidates;
                }
                Ok(Outcome::Transient {
                    status,
                    class,
                    message,
                }) => {
                    tried.push(format!("{}: {message}", c.deployment_id));
                    record(status, Some(class), attempt_message(message));
                    all_rate_limited = false;
                    last_timed_out = class == ErrorClass::Timeout;
                    c.health.record_failure(&policy, now_ms());
                    if tries_here > policy.max_retries {
                        continue 'candidates;
                    }
                }
                Err(e) => {
                    c.health.release_probe();
                    return Err(Failed::Refused(e));
                }
            }
        }
    }

    // Fail closed.
    if attempts == 0 {
        if let Some(e) = untranslatable {
            // No deployment could carry the request: a client error, with no upstream call.
            return Err(Failed::Refused(e));
        }
    }
    if attempts == 0 && !at_limit.is_empty() {
        // Every deployment was at its own limit: nothing was tried upstream.
        let e = ProxyError::no_deployment(&p.alias, &at_limit.join(", "));
        return Err(Failed::Refused(e));
    }
    tried.extend(at_limit);
    if all_rate_limited {
        if let Some((from, response)) = last_rate_limited {
            // Every attempt was told to back off: pass the provider's answer through.
            return Err(Failed::RateLimited {
                from,
                response,
                attempts,
            });
        }
    }
    let message = format!(
        "every route for `{}` failed after {attempts} attempt(s): {}",
        p.alias,
        tried.join("; ")
    );
    Err(Failed::Refused(ProxyError::upstream(
        message,
        last_timed_out,
    )))
}

/// One call to one deployment, classified.
async fn attempt(
    runtime: &Runtime,
    c: &Candidate<'_>,
    p: &Prepared<'_>,
    body: Bytes,
    request_id: &str,
    remaining: Duration,
    trace: &crate::trace::AttemptTrace,
) -> Result<Outcome, ProxyError> {
    let format = p.surface.upstream_for(c.provider.kind);
    // A stream's attempt ends at its first byte (headers); a JSON answer's at its last byte.
    let policy = &c.group.policy;
    let limit = if p.stream {
        Duration::from_millis(u64::from(policy.first_byte_timeout_ms))
    } else {
        Duration::from_millis(u64::from(policy.total_timeout_ms))
    }
    .min(remaining);
    let call = providers::send(
        c.client,
        Call {
            provider: c.provider,
            endpoint: runtime.endpoints.get(&c.provider.id),
            body,
            format,
            model: &c.deployment.model,
            stream: p.stream,
            request_id,
            anthropic_version: p.anthropic_version.as_ref(),
            anthropic_beta: p.anthropic_beta.as_ref(),
            upload: p.media.upload(),
            trace: trace.headers(),
        },
    );
    let result = match tokio::time::timeout(limit, call).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout),
    };
    Ok(match result {
        Ok(resp) => {
            let status = resp.status.as_u16();
            if status == 429 {
                Outcome::RateLimited {
                    retry_after_secs: resp.retry_after_secs.unwrap_or(1),
                    response: resp,
                }
            } else if status == 408 || resp.status.is_server_error() {
                Outcome::Transient {
                    status,
                    class: ErrorClass::ProviderError,
                    message: format!("{status}"),
                }
            } else {
                Outcome::Answer(resp)
            }
        }
        Err(e) => Outcome::Transient {
            status: 0,
            class: if matches!(e, UpstreamError::Timeout) {
                ErrorClass::Timeout
            } else {
                ErrorClass::ProviderError
            },
            message: e.to_string(),
        },
    })
}

/// Request bodies already rewritten or translated for this request, by (format, provider
/// model), so retries and moves to a deployment of the same format and model reuse them. The
/// client's own body is never stored (it is a cheap clone), so a pass-through allocates nothing.
#[derive(Default)]
/// Bodies already built for this request, by (format, model, drop_unsupported).
struct Bodies<'r>(Vec<(Surface, &'r str, bool, Bytes)>);

impl<'r> Bodies<'r> {
    fn get(
        &mut self,
        p: &Prepared<'_>,
        c: &Candidate<'r>,
        inject_usage: bool,
    ) -> Result<Bytes, ProxyError> {
        let format = p.surface.upstream_for(c.provider.kind);
        let model = c.deployment.model.as_str();
        let drop = c.group.policy.drop_unsupported;
        if let Some((.., b)) = self
            .0
            .iter()
            .find(|(f, m, d, _)| *f == format && *m == model && *d == drop)
        {
            return Ok(b.clone());
        }
        let body = body_for(p, c, format, inject_usage)?;
        if body.as_ptr() != p.raw.as_ptr() {
            self.0.push((format, model, drop, body.clone()));
        }
        Ok(body)
    }
}

/// The body for one deployment: the client's own when the format and model match, the model
/// renamed (and, for an OpenAI stream, usage requested) when only that differs, else translated.
fn body_for(
    p: &Prepared<'_>,
    c: &Candidate<'_>,
    format: Surface,
    inject_usage: bool,
) -> Result<Bytes, ProxyError> {
    let model = c.deployment.model.as_str();
    let drop = c.group.policy.drop_unsupported;
    let takes_it = match c.provider.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Mock => true,
        // The Azure adapter speaks JSON only: no multipart uploads, no audio streamed back.
        ProviderKind::AzureOpenAi => !p.surface.is_audio(),
        ProviderKind::Anthropic | ProviderKind::Gemini => false,
    };
    if p.surface.passthrough_only() && !takes_it {
        return Err(ProxyError::invalid_param_owned(
            "model".to_owned(),
            format!(
                "`{}` is served by an `{}` provider, which has no {} endpoint; \
                 route this model to an OpenAI-format deployment",
                p.alias,
                c.provider.kind,
                p.surface.endpoint()
            ),
        ));
    }
    // An upload goes as multipart, re-encoded with the deployment's model.
    if let Some(upload) = p.media.upload() {
        return Ok(upload.encode(model));
    }
    use translate::gemini as g;
    let translated = match (p.surface, format) {
        (Surface::OpenAiChat, Surface::AnthropicMessages) => {
            translate::request::openai_to_anthropic(&p.raw, model, drop)?
        }
        (Surface::AnthropicMessages, Surface::OpenAiChat) => {
            let mut v = translate::request::anthropic_to_openai(&p.raw, model, drop)?;
            if c.provider.kind == modelgate_shared::snapshot::ProviderKind::OpenAi {
                translate::request::use_max_completion_tokens(&mut v);
            }
            v
        }
        (Surface::OpenAiChat, Surface::Gemini) => g::openai_to_gemini(&p.raw, drop)?,
        (Surface::Gemini, Surface::OpenAiChat) => {
            g::gemini_to_openai(&p.raw, model, p.stream, drop)?
        }
        // Anthropic ⇄ Gemini pivots through the OpenAI chat form.
        (Surface::AnthropicMessages, Surface::Gemini) => {
            let chat = translate::request::anthropic_to_openai(&p.raw, model, drop)?;
            match chat {
                serde_json::Value::Object(m) => g::openai_map_to_gemini(&m, drop)?,
                _ => return Err(ProxyError::invalid_json("the body must be a JSON object")),
            }
        }
        (Surface::Gemini, Surface::AnthropicMessages) => {
            let chat = g::gemini_to_openai(&p.raw, model, p.stream, drop)?;
            let chat =
                serde_json::to_vec(&chat).map_err(|e| ProxyError::invalid_json(&e.to_string()))?;
            translate::request::openai_to_anthropic(&chat, model, drop)?
        }
        // The model is in Gemini's URL, and Gemini streams always carry usage: the client's
        // body goes as it is.
        (Surface::Gemini, Surface::Gemini) => return Ok(p.raw.clone()),
        (from, to) if from == to => {
            let model_differs = model != p.alias;
            let inject = inject_usage && format == Surface::OpenAiChat;
            return if model_differs || inject {
                surfaces::rewrite::rewrite(&p.raw, model_differs.then_some(model), inject)
            } else {
                Ok(p.raw.clone())
            };
        }
        // Pass-through surfaces are never translated (`Surface::upstream_for`).
        (from, to) => {
            return Err(ProxyError::upstream(
                format!("no translation from {} to {}", from.as_str(), to.as_str()),
                false,
            ))
        }
    };
    serde_json::to_vec(&translated)
        .map(Bytes::from)
        .map_err(|e| ProxyError::invalid_json(&e.to_string()))
}
