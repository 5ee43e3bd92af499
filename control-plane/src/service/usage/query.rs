//! Reading usage: the pull API (events in ingest-sequence order after a cursor) and the daily
//! aggregates.

use modelgate_shared::usage::Attempt;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

use crate::service::authz::{Action, Actor};
use crate::service::{page, Page, PageParams, ServiceError, Services};
use crate::store::{usage_daily, usage_event};

/// A stored usage event as the admin API and the exporters show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    pub id: String,
    /// Ingest sequence: resume a pull after the last `seq` seen.
    pub seq: i64,
    pub schema_version: i32,
    pub request_id: String,
    pub started_at_ms: i64,
    pub first_byte_at_ms: i64,
    pub ended_at_ms: i64,
    pub node_id: String,
    pub region: String,
    pub key_id: String,
    pub team_id: String,
    pub user_id: String,
    pub application: String,
    pub environment: String,
    pub endpoint: String,
    pub requested_model: String,
    pub provider_id: String,
    pub served_model: String,
    pub deployment_id: String,
    /// Every upstream attempt: deployment_id, provider_id, model, status, error_class, latency_us.
    #[schema(value_type = Vec<Object>)]
    pub attempts: Vec<Attempt>,
    pub status: i32,
    pub error_class: Option<String>,
    pub error_message: String,
    pub latency_us: i64,
    pub ttfb_us: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub reasoning_tokens: i64,
    pub images: i64,
    pub media_ms: i64,
    /// Characters of text-to-speech input.
    pub characters: i64,
    pub cost_micros: i64,
    pub price_version: i64,
    pub streamed: bool,
    pub estimated: bool,
    pub fallback_used: bool,
    pub traffic_class: String,
    /// `""`, `"price_missing"` or `"cost_unbounded"`: served under `allow_and_flag`.
    pub cost_flag: String,
    /// Answered from the response cache (no upstream call; cost per the route's hit cost).
    pub cache_hit: bool,
    /// The request's OpenTelemetry trace id when its node exported spans, else empty.
    pub trace_id: String,
}

impl From<usage_event::Model> for UsageRow {
    fn from(m: usage_event::Model) -> Self {
        UsageRow {
            attempts: serde_json::from_str(&m.attempts).unwrap_or_default(),
            id: m.id,
            seq: m.seq.unwrap_or_default(),
            schema_version: m.schema_version,
            request_id: m.request_id,
            started_at_ms: m.started_at_ms,
            first_byte_at_ms: m.first_byte_at_ms,
            ended_at_ms: m.ended_at_ms,
            node_id: m.node_id,
            region: m.region,
            key_id: m.key_id,
            team_id: m.team_id,
            user_id: m.user_id,
            application: m.application,
            environment: m.environment,
            endpoint: m.endpoint,
            requested_model: m.requested_model,
            provider_id: m.provider_id,
            served_model: m.served_model,
            deployment_id: m.deployment_id,
            status: m.status,
            error_class: m.error_class,
            error_message: m.error_message,
            latency_us: m.latency_us,
            ttfb_us: m.ttfb_us,
            input_tokens: m.input_tokens,
            output_tokens: m.output_tokens,
            cached_input_tokens: m.cached_input_tokens,
            reasoning_tokens: m.reasoning_tokens,
            images: m.images,
            media_ms: m.media_ms,
            characters: m.characters,
            cost_micros: m.cost_micros,
            price_version: m.price_version,
            streamed: m.streamed,
            estimated: m.estimated,
            fallback_used: m.fallback_used,
            traffic_class: m.traffic_class,
            cost_flag: m.cost_flag,
            cache_hit: m.cache_hit,
            trace_id: m.trace_id,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageFilter {
    pub request_id: Option<String>,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
}

fn parse_seq(after: Option<&str>) -> Result<i64, ServiceError> {
    match after {
        None | Some("") => Ok(0),
        Some(a) => {
            a.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ServiceError::invalid("after", "must be a cursor returned by this API")
            })
        }
    }
}

/// Only the sequence numbers below every block still pending (see [`super::sequence`]): an
/// event committed later always has a higher number than any this condition lets through.
fn visible() -> sea_orm::sea_query::SimpleExpr {
    sea_orm::sea_query::Expr::cust(format!("seq < {}", super::sequence::VISIBLE_BELOW))
}

/// Events in ingest-sequence order after the cursor: the pull API for billing consumers. Pages
/// end below the lowest sequence block still being stored, so a consumer that pages to the end
/// and later resumes from the last `seq` never misses an event, in whatever order writers
/// commit.
pub async fn list(
    s: &Services,
    actor: &Actor,
    params: PageParams,
    filter: UsageFilter,
) -> Result<Page<UsageRow>, ServiceError> {
    actor.require(Action::ReadUsage)?;
    let limit = params.limit()?;
    let after = parse_seq(params.after.as_deref())?;
    let mut q = usage_event::Entity::find()
        .filter(usage_event::Column::Seq.gt(after))
        .filter(visible())
        .order_by_asc(usage_event::Column::Seq);
    if let Some(team) = actor.scope() {
        q = q.filter(usage_event::Column::TeamId.eq(team));
    }
    if let Some(v) = &filter.request_id {
        q = q.filter(usage_event::Column::RequestId.eq(v.as_str()));
    }
    if let Some(v) = &filter.key_id {
        q = q.filter(usage_event::Column::KeyId.eq(v.as_str()));
    }
    if let Some(v) = &filter.team_id {
        q = q.filter(usage_event::Column::TeamId.eq(v.as_str()));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(
        rows,
        limit,
        |r| r.seq.unwrap_or_default().to_string(),
        UsageRow::from,
    ))
}

/// Up to `limit` events with a sequence number above `after`, in order (for exporters).
pub async fn events_after(
    s: &Services,
    after: i64,
    limit: u64,
) -> Result<Vec<UsageRow>, ServiceError> {
    let rows = usage_event::Entity::find()
        .filter(usage_event::Column::Seq.gt(after))
        .filter(visible())
        .order_by_asc(usage_event::Column::Seq)
        .limit(limit)
        .all(&s.db)
        .await?;
    Ok(rows.into_iter().map(UsageRow::from).collect())
}

/// One aggregate row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DailyRow {
    pub day: String,
    pub key_id: String,
    pub team_id: String,
    pub user_id: String,
    pub model: String,
    pub provider_id: String,
    /// Requests of acceptance runs (`modelgate check`, application `modelgate-check`), which
    /// are aggregated apart from the rest.
    pub check_traffic: bool,
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub reasoning_tokens: i64,
    pub images: i64,
    pub media_ms: i64,
    /// Characters of text-to-speech input.
    pub characters: i64,
    pub cost_micros: i64,
}

impl From<usage_daily::Model> for DailyRow {
    fn from(m: usage_daily::Model) -> Self {
        DailyRow {
            day: m.day,
            key_id: m.key_id,
            team_id: m.team_id,
            user_id: m.user_id,
            model: m.model,
            provider_id: m.provider_id,
            check_traffic: m.check_traffic,
            requests: m.requests,
            errors: m.errors,
            input_tokens: m.input_tokens,
            output_tokens: m.output_tokens,
            cached_input_tokens: m.cached_input_tokens,
            reasoning_tokens: m.reasoning_tokens,
            images: m.images,
            media_ms: m.media_ms,
            characters: m.characters,
            cost_micros: m.cost_micros,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DailyFilter {
    pub team_id: Option<String>,
    pub key_id: Option<String>,
    pub model: Option<String>,
    /// First day, inclusive (`YYYY-MM-DD`).
    pub from: Option<String>,
    /// Last day, inclusive (`YYYY-MM-DD`).
    pub to: Option<String>,
    /// `true`: only check traffic (`modelgate check`'s requests); `false`: every request but
    /// those. Both by default.
    pub check_traffic: Option<String>,
}

fn check_day(param: &str, v: &str) -> Result<(), ServiceError> {
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map(|_| ())
        .map_err(|_| ServiceError::invalid(param, "must be a date as YYYY-MM-DD"))
}

/// Daily aggregates matching the filter, by day then key.
pub async fn daily(
    s: &Services,
    actor: &Actor,
    f: DailyFilter,
) -> Result<Vec<DailyRow>, ServiceError> {
    actor.require(Action::ReadUsage)?;
    let mut q = usage_daily::Entity::find()
        .order_by_asc(usage_daily::Column::Day)
        .order_by_asc(usage_daily::Column::KeyId)
        .order_by_asc(usage_daily::Column::Model)
        .order_by_asc(usage_daily::Column::CheckTraffic);
    if let Some(team) = actor.scope() {
        q = q.filter(usage_daily::Column::TeamId.eq(team));
    }
    if let Some(v) = &f.team_id {
        q = q.filter(usage_daily::Column::TeamId.eq(v.as_str()));
    }
    if let Some(v) = &f.key_id {
        q = q.filter(usage_daily::Column::KeyId.eq(v.as_str()));
    }
    if let Some(v) = &f.model {
        q = q.filter(usage_daily::Column::Model.eq(v.as_str()));
    }
    if let Some(v) = &f.from {
        check_day("from", v)?;
        q = q.filter(usage_daily::Column::Day.gte(v.as_str()));
    }
    if let Some(v) = &f.to {
        check_day("to", v)?;
        q = q.filter(usage_daily::Column::Day.lte(v.as_str()));
    }
    if let Some(v) = &f.check_traffic {
        let check = super::requests::flag("check_traffic", v)?;
        q = q.filter(usage_daily::Column::CheckTraffic.eq(check));
    }
    // A day-range bound keeps this from being an unbounded scan in practice; cap regardless.
    let rows = q.limit(10_000).all(&s.db).await?;
    Ok(rows.into_iter().map(DailyRow::from).collect())
}
