//! Traffic reports and NACKs shared between control-plane replicas. A node reports to the one
//! replica it is connected to, but the rollout gates are judged by the replica that drives
//! rollouts: each replica on Postgres appends what its nodes report to `node_reports`, and the
//! driver reads the other replicas' rows into `NodeStates` (its remote view) on each tick. Rows
//! are kept for [`KEEP`], longer than any evaluation window the gates use by default.

use std::sync::atomic::Ordering;

use chrono::Duration;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::nodes::Sample;
use crate::service::{ServiceError, Services};
use crate::store::node_report as report;

/// How long reports are kept.
pub const KEEP: Duration = Duration::hours(1);
/// Rows read per tick at most (an hour of reports of ~100 nodes every 5 s is 72 000: a driver
/// that just took over catches up over a few ticks).
const BATCH: u64 = 20_000;

fn row(s: &Services, node_id: &str, kind: &str, version: u64) -> report::ActiveModel {
    report::ActiveModel {
        seq: Default::default(),
        node_id: Set(node_id.to_owned()),
        replica: Set(s.replica.id.clone()),
        at_ms: Set(s.clock.now().timestamp_millis()),
        kind: Set(kind.to_owned()),
        version: Set(i64::try_from(version).unwrap_or(i64::MAX)),
        requests: Set(0),
        errors: Set(0),
        latency_buckets: Set("[]".to_owned()),
        reason: Set(None),
    }
}

async fn insert(s: &Services, row: report::ActiveModel) {
    if let Err(e) = report::Entity::insert(row)
        .exec_without_returning(&s.db)
        .await
    {
        tracing::warn!(error = %e, "could not share a node's report with the other replicas");
    }
}

/// Shares a traffic report a connected node sent (Postgres only; in the background).
pub fn traffic(s: &Services, node_id: &str, sample: &Sample) {
    if !s.replica.shared_database() {
        return;
    }
    let mut r = row(s, node_id, "traffic", sample.version);
    r.requests = Set(i64::try_from(sample.requests).unwrap_or(i64::MAX));
    r.errors = Set(i64::try_from(sample.errors).unwrap_or(i64::MAX));
    r.latency_buckets = Set(serde_json::to_string(&sample.latency_buckets).unwrap_or_default());
    let s = s.clone();
    tokio::spawn(async move { insert(&s, r).await });
}

/// Shares a NACK a connected node sent (Postgres only; in the background).
pub fn nack(s: &Services, node_id: &str, version: u64, reason: &str) {
    if !s.replica.shared_database() {
        return;
    }
    let mut r = row(s, node_id, "nack", version);
    r.reason = Set(Some(reason.to_owned()));
    let s = s.clone();
    tokio::spawn(async move { insert(&s, r).await });
}

/// On the driving replica: reads the other replicas' new rows into the remote view, and drops
/// rows older than [`KEEP`] about once a minute.
pub async fn sync(s: &Services) -> Result<(), ServiceError> {
    if !s.replica.shared_database() {
        return Ok(());
    }
    let states = &s.node_states;
    let after = states.remote_cursor.load(Ordering::Relaxed);
    let rows = report::Entity::find()
        .filter(report::Column::Seq.gt(after))
        .order_by_asc(report::Column::Seq)
        .limit(BATCH)
        .all(&s.db)
        .await?;
    let Some(last) = rows.last().map(|r| r.seq) else {
        return Ok(());
    };
    let oldest = (s.clock.now() - KEEP).timestamp_millis();
    for r in rows.into_iter().filter(|r| r.replica != s.replica.id) {
        let version = u64::try_from(r.version).unwrap_or(0);
        match r.kind.as_str() {
            "nack" => states.remote_nacked(&r.node_id, version, r.reason.unwrap_or_default()),
            _ if r.at_ms < oldest => {}
            _ => states.remote_reported(
                &r.node_id,
                Sample {
                    at: chrono::DateTime::from_timestamp_millis(r.at_ms).unwrap_or_default(),
                    version,
                    requests: u64::try_from(r.requests).unwrap_or(0),
                    errors: u64::try_from(r.errors).unwrap_or(0),
                    latency_buckets: serde_json::from_str(&r.latency_buckets).unwrap_or_default(),
                },
            ),
        }
    }
    states.remote_cursor.store(last, Ordering::Relaxed);
    // Once a minute.
    let minute = s.clock.now().timestamp() / 60;
    if states.pruned_minute.swap(minute, Ordering::Relaxed) != minute {
        report::Entity::delete_many()
            .filter(report::Column::AtMs.lt(oldest))
            .exec(&s.db)
            .await?;
    }
    Ok(())
}
