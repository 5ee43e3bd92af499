//! The request log: the usage ledger read as one row per request, newest first, with filters
//! (time range, key, team, user, application, environment, model alias, provider, status, error
//! class, fallback, streamed, minimum latency, minimum cost), and one request with every upstream
//! attempt. The admin API (`GET /admin/v1/requests`, `GET /admin/v1/requests/{request_id}`) and
//! the dashboard both call [`list`] and [`get`].
//!
//! **Pagination** is keyset on `(started_at_ms, seq)`, descending (`seq`, the ingest sequence,
//! is unique and 8 bytes: the indexes stay small): the cursor is the last row's pair, opaque to
//! clients (hex of `v1:{ms}:{seq}`). A page is the rows strictly below the
//! cursor, so events ingested meanwhile never shift or repeat a page: one that started after the
//! first page's top is simply not in this walk, one that started earlier (a late batch) appears
//! where it belongs if the walk has not passed it yet.
//!
//! **Indexes** (migrations `m20261206_000014_request_log`, `…_000038_…` and
//! `m20261208_000043_usage_index_diet`): `(started_at_ms, seq)` for the unfiltered log and the
//! filters no index serves; `(key_id | user_id | requested_model, started_at_ms, seq)`;
//! `(team_id, started_at_ms, seq, requested_model)` for a team, and a team and an alias (the
//! page reads the team's range and checks the alias in each index entry); and a partial
//! `(error_class, started_at_ms, seq)` over failed requests. Each filtered page is then one
//! index range read backwards from the cursor (or from `to`), stopping after `limit + 1`
//! matches. The figures at 10M rows are in ARCHITECTURE.md ("The request log").
//!
//! **Scope**: a team-scoped actor sees its team's requests only; another team's request is
//! "not found", as everywhere else.

use modelgate_shared::usage::ErrorClass;
use sea_orm::{
    ColumnTrait, Condition, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Select, Statement,
};
use serde::{Deserialize, Serialize};

use super::query::UsageRow;
use crate::service::authz::{Action, Actor};
use crate::service::{page, Page, PageParams, ServiceError, Services};
use crate::store::usage_event::{self, Column as C};

/// The request log's filters. Every field is optional; given ones are combined with AND.
/// Values are strings on the wire and checked here, so an error names the parameter.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestFilter {
    /// Started at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Started before this time (RFC 3339).
    pub to: Option<String>,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub application: Option<String>,
    /// `prod`, `staging`, `dev`, … as the key's environment.
    pub environment: Option<String>,
    /// The model alias the client asked for.
    pub model: Option<String>,
    /// The provider that served (or last tried) the request.
    pub provider_id: Option<String>,
    /// An HTTP status (`429`) or a class of them (`4xx`, `5xx`).
    pub status: Option<String>,
    /// An error class (`rate_limited`, `provider_error`, …), `none` for successes or `any`
    /// for every failure.
    pub error_class: Option<String>,
    /// `true`: only requests served after a retry or by another deployment; `false`: only
    /// requests that were not.
    pub fallback_used: Option<String>,
    /// `true` or `false`.
    pub streamed: Option<String>,
    /// Only requests that took at least this many milliseconds.
    pub min_latency_ms: Option<String>,
    /// Only requests that cost at least this many micro-USD.
    pub min_cost_micros: Option<String>,
    /// `true`: only check traffic (`modelgate check`'s requests, application
    /// `modelgate-check`); `false`: every request but those.
    pub check_traffic: Option<String>,
}

/// One request in the log (its attempts are counted here, listed by [`get`]).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequestSummary {
    pub request_id: String,
    /// The usage event's id.
    pub id: String,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub node_id: String,
    pub key_id: String,
    pub team_id: String,
    pub user_id: String,
    pub application: String,
    pub environment: String,
    /// The endpoint family (`chat.completions`, `messages`, …).
    pub endpoint: String,
    /// The model alias the client asked for.
    pub model: String,
    pub served_model: String,
    pub provider_id: String,
    pub deployment_id: String,
    pub status: i32,
    pub error_class: Option<String>,
    pub error_message: String,
    pub latency_us: i64,
    pub ttfb_us: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
    pub streamed: bool,
    pub fallback_used: bool,
    pub estimated: bool,
    /// Upstream attempts made (0: refused before any).
    pub attempts: usize,
}

impl From<usage_event::Model> for RequestSummary {
    fn from(m: usage_event::Model) -> Self {
        let attempts =
            serde_json::from_str::<Vec<serde::de::IgnoredAny>>(&m.attempts).map_or(0, |a| a.len());
        RequestSummary {
            request_id: m.request_id,
            id: m.id,
            started_at_ms: m.started_at_ms,
            ended_at_ms: m.ended_at_ms,
            node_id: m.node_id,
            key_id: m.key_id,
            team_id: m.team_id,
            user_id: m.user_id,
            application: m.application,
            environment: m.environment,
            endpoint: m.endpoint,
            model: m.requested_model,
            served_model: m.served_model,
            provider_id: m.provider_id,
            deployment_id: m.deployment_id,
            status: m.status,
            error_class: m.error_class,
            error_message: m.error_message,
            latency_us: m.latency_us,
            ttfb_us: m.ttfb_us,
            input_tokens: m.input_tokens,
            output_tokens: m.output_tokens,
            cost_micros: m.cost_micros,
            streamed: m.streamed,
            fallback_used: m.fallback_used,
            estimated: m.estimated,
            attempts,
        }
    }
}

/// Where a page starts: strictly below this `(started_at_ms, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    started_at_ms: i64,
    seq: i64,
}

impl Cursor {
    fn encode(&self) -> String {
        hex::encode(format!("v1:{}:{}", self.started_at_ms, self.seq))
    }

    fn decode(text: &str) -> Result<Cursor, ServiceError> {
        let bad = || ServiceError::invalid("after", "must be a cursor returned by this API");
        let raw = hex::decode(text).map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let rest = raw.strip_prefix("v1:").ok_or_else(bad)?;
        let (ms, seq) = rest.split_once(':').ok_or_else(bad)?;
        Ok(Cursor {
            started_at_ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

fn time_ms(param: &str, v: &str) -> Result<i64, ServiceError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ServiceError::invalid(
                param,
                "must be a time in RFC 3339, e.g. 2026-12-06T05:00:00Z",
            )
        })
}

pub(super) fn flag(param: &str, v: &str) -> Result<bool, ServiceError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ServiceError::invalid(param, "must be true or false")),
    }
}

fn whole(param: &str, v: &str) -> Result<i64, ServiceError> {
    v.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ServiceError::invalid(param, "must be a whole number, 0 or more"))
}

/// `429` → exactly that status; `4xx` → 400..=499.
fn status_range(v: &str) -> Result<(i32, i32), ServiceError> {
    let bad = || {
        ServiceError::invalid(
            "status",
            "must be an HTTP status (e.g. 429) or a class (2xx, 4xx, 5xx)",
        )
    };
    let b = v.as_bytes();
    if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && b[1..].eq_ignore_ascii_case(b"xx") {
        let low = i32::from(b[0] - b'0') * 100;
        return Ok((low, low + 99));
    }
    let code: i32 = v.parse().map_err(|_| bad())?;
    if (100..=999).contains(&code) {
        Ok((code, code))
    } else {
        Err(bad())
    }
}

/// The filter as one SQL condition (scope included).
fn condition(actor: &Actor, f: &RequestFilter) -> Result<Condition, ServiceError> {
    let mut c = Condition::all();
    if let Some(team) = actor.scope() {
        c = c.add(C::TeamId.eq(team));
    }
    let from = f.from.as_deref().map(|v| time_ms("from", v)).transpose()?;
    let to = f.to.as_deref().map(|v| time_ms("to", v)).transpose()?;
    if let (Some(from), Some(to)) = (from, to) {
        if from >= to {
            return Err(ServiceError::invalid("to", "must be after `from`"));
        }
    }
    if let Some(ms) = from {
        c = c.add(C::StartedAtMs.gte(ms));
    }
    if let Some(ms) = to {
        c = c.add(C::StartedAtMs.lt(ms));
    }
    for (col, value) in [
        (C::KeyId, &f.key_id),
        (C::TeamId, &f.team_id),
        (C::UserId, &f.user_id),
        (C::Application, &f.application),
        (C::Environment, &f.environment),
        (C::RequestedModel, &f.model),
        (C::ProviderId, &f.provider_id),
    ] {
        if let Some(v) = value {
            c = c.add(col.eq(v.as_str()));
        }
    }
    if let Some(v) = &f.status {
        let (low, high) = status_range(v)?;
        c = c.add(if low == high {
            C::Status.eq(low)
        } else {
            C::Status.between(low, high)
        });
    }
    match f.error_class.as_deref() {
        None => {}
        Some("none") => c = c.add(C::ErrorClass.is_null()),
        Some("any") => c = c.add(C::ErrorClass.is_not_null()),
        Some(v) => {
            let class = ErrorClass::parse(v).ok_or_else(|| {
                let known: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
                ServiceError::invalid(
                    "error_class",
                    format!("must be none, any or one of {}", known.join(", ")),
                )
            })?;
            c = c.add(C::ErrorClass.eq(class.as_str()));
        }
    }
    if let Some(v) = &f.fallback_used {
        c = c.add(C::FallbackUsed.eq(flag("fallback_used", v)?));
    }
    if let Some(v) = &f.streamed {
        c = c.add(C::Streamed.eq(flag("streamed", v)?));
    }
    if let Some(v) = &f.min_latency_ms {
        let ms = whole("min_latency_ms", v)?;
        c = c.add(C::LatencyUs.gte(ms.saturating_mul(1000)));
    }
    if let Some(v) = &f.min_cost_micros {
        c = c.add(C::CostMicros.gte(whole("min_cost_micros", v)?));
    }
    if let Some(v) = &f.check_traffic {
        let check = modelgate_shared::usage::CHECK_APPLICATION;
        c = c.add(if flag("check_traffic", v)? {
            C::Application.eq(check)
        } else {
            C::Application.ne(check)
        });
    }
    Ok(c)
}

/// The query of one page: the filter, the scope and the cursor as one condition, newest
/// first, `limit + 1` rows (the extra one says whether a next page exists).
fn select(
    actor: &Actor,
    params: &PageParams,
    filter: &RequestFilter,
) -> Result<(Select<usage_event::Entity>, u64), ServiceError> {
    let limit = params.limit()?;
    let mut cond = condition(actor, filter)?;
    if let Some(after) = params.after.as_deref().filter(|a| !a.is_empty()) {
        let cur = Cursor::decode(after)?;
        // The first bound lets the database start its index range at the cursor; the second
        // breaks the tie on the millisecond.
        cond = cond.add(C::StartedAtMs.lte(cur.started_at_ms)).add(
            Condition::any()
                .add(C::StartedAtMs.lt(cur.started_at_ms))
                .add(C::Seq.lt(cur.seq)),
        );
    }
    let q = usage_event::Entity::find()
        .filter(cond)
        .order_by_desc(C::StartedAtMs)
        .order_by_desc(C::Seq)
        .limit(limit + 1);
    Ok((q, limit))
}

/// The SQL [`list`] runs for this page, on `backend` (for `modelgate-bench request-log`, which
/// runs it under `EXPLAIN ANALYZE`).
pub fn page_statement(
    actor: &Actor,
    params: &PageParams,
    filter: &RequestFilter,
    backend: DbBackend,
) -> Result<Statement, ServiceError> {
    Ok(select(actor, params, filter)?.0.build(backend))
}

/// A page of the request log, newest first. `params.after` is the `next_cursor` of the page
/// before.
pub async fn list(
    s: &Services,
    actor: &Actor,
    params: PageParams,
    filter: RequestFilter,
) -> Result<Page<RequestSummary>, ServiceError> {
    actor.require(Action::ReadUsage)?;
    let (q, limit) = select(actor, &params, &filter)?;
    let rows = q.all(&s.db).await?;
    Ok(page(
        rows,
        limit,
        |r| {
            Cursor {
                started_at_ms: r.started_at_ms,
                seq: r.seq.unwrap_or_default(),
            }
            .encode()
        },
        RequestSummary::from,
    ))
}

/// The `after` that continues a walk below `(started_at_ms, seq)` (for tools that build one).
pub fn cursor_after(started_at_ms: i64, seq: i64) -> String {
    Cursor { started_at_ms, seq }.encode()
}

/// One request with every upstream attempt (deployment, provider, model, status, error class
/// and message, start time, latency), by the `x-request-id` its answer carried.
pub async fn get(s: &Services, actor: &Actor, request_id: &str) -> Result<UsageRow, ServiceError> {
    actor.require(Action::ReadUsage)?;
    let mut q = usage_event::Entity::find().filter(C::RequestId.eq(request_id));
    if let Some(team) = actor.scope() {
        q = q.filter(C::TeamId.eq(team));
    }
    q.one(&s.db)
        .await?
        .map(UsageRow::from)
        .ok_or_else(|| ServiceError::NotFound("request".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_round_trip_and_a_forged_one_is_refused() {
        let c = Cursor {
            started_at_ms: 1_765_000_000_123,
            seq: 987_654_321,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in [
            "",
            "zz",
            &hex::encode("v2:1:2"),
            &hex::encode("v1:abc:2"),
            &hex::encode("v1:1:x"),
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_takes_a_code_or_a_class() {
        assert_eq!(status_range("429").unwrap(), (429, 429));
        assert_eq!(status_range("4xx").unwrap(), (400, 499));
        assert_eq!(status_range("5XX").unwrap(), (500, 599));
        for bad in ["6xx", "42", "abc", "1000", "-1"] {
            assert!(status_range(bad).is_err(), "{bad}");
        }
    }
}
