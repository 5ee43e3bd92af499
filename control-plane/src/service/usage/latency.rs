//! Latency percentiles per UTC day, for the dashboard's overview. The daily aggregates
//! (`usage_daily`) hold counts, tokens and spend exactly but no latency, and a percentile cannot
//! be summed, so this reads the events themselves: the `latency_us` of at most [`SAMPLE_CAP`]
//! of the newest events in the range (two columns, by `started_at_ms`; a team-scoped actor's
//! through the `(team_id, started_at_ms)` index), and ranks them here, the same way on Postgres
//! and SQLite. Past the cap the older days of the range show no figure and the answer says so.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;

use crate::service::authz::{Action, Actor};
use crate::service::{ServiceError, Services};
use crate::store::usage_event;

/// Events read at most per call.
pub const SAMPLE_CAP: u64 = 200_000;

/// One day's percentiles (nearest rank), in microseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LatencyDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub requests: u64,
    pub p50_us: i64,
    pub p99_us: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Days of the range that had events read, oldest first.
    pub days: Vec<LatencyDay>,
    /// Over every event read.
    pub p50_us: i64,
    pub p99_us: i64,
    /// The cap was reached: the oldest events of the range were not read.
    pub capped: bool,
}

/// The nearest-rank percentile `p` (0..=100) of sorted values; 0 for none.
pub fn percentile(sorted: &[i64], p: u32) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1);
    sorted[(rank as usize - 1).min(sorted.len() - 1)]
}

/// Percentiles of request latency for each day from `from` to `to` (inclusive, UTC), and over
/// the whole range; a team-scoped actor's team only. `check_traffic`: `Some(false)` leaves out
/// `modelgate check`'s requests, `Some(true)` reads only those.
pub async fn latency_by_day(
    s: &Services,
    actor: &Actor,
    from: NaiveDate,
    to: NaiveDate,
    check_traffic: Option<bool>,
) -> Result<Latency, ServiceError> {
    actor.require(Action::ReadUsage)?;
    if to < from {
        return Err(ServiceError::invalid("to", "must not be before from"));
    }
    let start_ms = from
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis();
    let end_ms = to
        .succ_opt()
        .unwrap_or(to)
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis();
    let mut q = usage_event::Entity::find()
        .select_only()
        .column(usage_event::Column::StartedAtMs)
        .column(usage_event::Column::LatencyUs)
        .filter(usage_event::Column::StartedAtMs.gte(start_ms))
        .filter(usage_event::Column::StartedAtMs.lt(end_ms));
    if let Some(team) = actor.scope() {
        q = q.filter(usage_event::Column::TeamId.eq(team));
    }
    let check = modelgate_shared::usage::CHECK_APPLICATION;
    match check_traffic {
        Some(true) => q = q.filter(usage_event::Column::Application.eq(check)),
        Some(false) => q = q.filter(usage_event::Column::Application.ne(check)),
        None => {}
    }
    let rows: Vec<(i64, i64)> = q
        .order_by_desc(usage_event::Column::StartedAtMs)
        .limit(SAMPLE_CAP)
        .into_tuple()
        .all(&s.db)
        .await?;
    Ok(summarise(rows, SAMPLE_CAP))
}

/// Groups `(started_at_ms, latency_us)` rows by UTC day and ranks them.
fn summarise(rows: Vec<(i64, i64)>, cap: u64) -> Latency {
    let capped = rows.len() as u64 >= cap;
    let mut all: Vec<i64> = rows.iter().map(|(_, l)| *l).collect();
    all.sort_unstable();
    let mut by_day: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for (at, latency) in rows {
        let day = DateTime::<Utc>::from_timestamp_millis(at)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        by_day.entry(day).or_default().push(latency);
    }
    let days = by_day
        .into_iter()
        .map(|(day, mut v)| {
            v.sort_unstable();
            LatencyDay {
                day,
                requests: v.len() as u64,
                p50_us: percentile(&v, 50),
                p99_us: percentile(&v, 99),
            }
        })
        .collect();
    Latency {
        days,
        p50_us: percentile(&all, 50),
        p99_us: percentile(&all, 99),
        capped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[1, 2, 3], 50), 2);
    }

    #[test]
    fn rows_are_grouped_by_utc_day() {
        let day1 = 1_764_979_200_000; // 2025-12-06T00:00:00Z
        let rows = vec![
            (day1 + 1, 10),
            (day1 + 2, 30),
            (day1 + 3, 20),
            (day1 + 86_400_000, 500),
        ];
        let l = summarise(rows, 10);
        assert!(!l.capped);
        assert_eq!(l.days.len(), 2);
        assert_eq!(l.days[0].day, "2025-12-06");
        assert_eq!(
            (l.days[0].requests, l.days[0].p50_us, l.days[0].p99_us),
            (3, 20, 30)
        );
        assert_eq!((l.days[1].p50_us, l.days[1].p99_us), (500, 500));
        assert_eq!((l.p50_us, l.p99_us), (20, 500));
        assert!(summarise(vec![(day1, 1)], 1).capped);
    }
}
