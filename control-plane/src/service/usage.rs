//! Usage ingest (deduplicated by event id, in one transaction per batch) and the pull API.

use chrono::Utc;
use modelgate_shared::usage::UsageEvent;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde::Serialize;

use super::{page, Page, PageParams, ServiceError, Services};
use crate::store::usage_event;

/// Rows per INSERT statement (23 columns each stays under SQLite's bound-parameter limit).
const CHUNK: usize = 500;

/// Outcome of ingesting one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub inserted: u64,
    pub duplicates: u64,
}

/// Stores a batch; events whose id is already stored are skipped. Commits before returning, so
/// the caller may acknowledge the batch.
pub async fn ingest(s: &Services, events: Vec<UsageEvent>) -> Result<Ingested, ServiceError> {
    let total = events.len() as u64;
    if events.is_empty() {
        return Ok(Ingested {
            inserted: 0,
            duplicates: 0,
        });
    }
    let now = Utc::now();
    let txn = s.db.begin().await?;
    let mut inserted = 0;
    let mut rows: Vec<usage_event::ActiveModel> = events.into_iter().map(|e| row(e, now)).collect();
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(CHUNK));
        let chunk = std::mem::replace(&mut rows, rest);
        inserted += usage_event::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::column(usage_event::Column::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(Ingested {
        inserted,
        duplicates: total - inserted,
    })
}

/// Postgres text cannot hold NUL; one such event must never block its batch forever.
fn clean(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn row(e: UsageEvent, now: chrono::DateTime<Utc>) -> usage_event::ActiveModel {
    usage_event::ActiveModel {
        id: Set(clean(e.id)),
        request_id: Set(clean(e.request_id)),
        started_at_ms: Set(e.started_at_ms),
        ended_at_ms: Set(e.ended_at_ms),
        node_id: Set(clean(e.node_id)),
        key_id: Set(clean(e.key_id)),
        team_id: Set(clean(e.team_id)),
        endpoint: Set(clean(e.endpoint)),
        requested_model: Set(clean(e.requested_model)),
        provider_id: Set(clean(e.provider_id)),
        served_model: Set(clean(e.served_model)),
        status: Set(i32::from(e.status)),
        error_class: Set(e.error_class.map(clean)),
        error_message: Set(clean(e.error_message)),
        latency_us: Set(to_i64(e.latency_us)),
        ttfb_us: Set(to_i64(e.ttfb_us)),
        input_tokens: Set(to_i64(e.input_tokens)),
        output_tokens: Set(to_i64(e.output_tokens)),
        cost_micros: Set(e.cost_micros),
        price_version: Set(to_i64(e.price_version)),
        streamed: Set(e.streamed),
        estimated: Set(e.estimated),
        ingested_at: Set(now),
    }
}

/// A stored usage event as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct UsageRow {
    pub id: String,
    pub request_id: String,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub node_id: String,
    pub key_id: String,
    pub team_id: String,
    pub endpoint: String,
    pub requested_model: String,
    pub provider_id: String,
    pub served_model: String,
    pub status: i32,
    pub error_class: Option<String>,
    pub error_message: String,
    pub latency_us: i64,
    pub ttfb_us: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
    pub price_version: i64,
    pub streamed: bool,
    pub estimated: bool,
}

impl From<usage_event::Model> for UsageRow {
    fn from(m: usage_event::Model) -> Self {
        UsageRow {
            id: m.id,
            request_id: m.request_id,
            started_at_ms: m.started_at_ms,
            ended_at_ms: m.ended_at_ms,
            node_id: m.node_id,
            key_id: m.key_id,
            team_id: m.team_id,
            endpoint: m.endpoint,
            requested_model: m.requested_model,
            provider_id: m.provider_id,
            served_model: m.served_model,
            status: m.status,
            error_class: m.error_class,
            error_message: m.error_message,
            latency_us: m.latency_us,
            ttfb_us: m.ttfb_us,
            input_tokens: m.input_tokens,
            output_tokens: m.output_tokens,
            cost_micros: m.cost_micros,
            price_version: m.price_version,
            streamed: m.streamed,
            estimated: m.estimated,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct UsageFilter {
    pub request_id: Option<String>,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
}

/// Events in id (time) order after the cursor: the pull API for billing consumers.
pub async fn list(
    s: &Services,
    params: PageParams,
    filter: UsageFilter,
) -> Result<Page<UsageRow>, ServiceError> {
    let limit = params.limit()?;
    let mut q = usage_event::Entity::find().order_by_asc(usage_event::Column::Id);
    if let Some(after) = &params.after {
        q = q.filter(usage_event::Column::Id.gt(after.as_str()));
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
    Ok(page(rows, limit, |r| r.id.clone(), UsageRow::from))
}
