//! Budget alerts: a budget with an `alert_webhook_url` is told when its period's spend
//! crosses 50 %, 80 % and 100 % of the amount — once per threshold per period.
//!
//! **Claim, then deliver.** Usage ingest adds spend to the period row and, in the same
//! transaction, claims every newly crossed threshold with a conditional `UPDATE … SET
//! alerts_fired = new WHERE alerts_fired = old` and writes one outbox row per claimed
//! threshold. Concurrent ingests (and several control planes on one database) serialise on the
//! period row, and the compare on the old bitmask lets exactly one of them claim a threshold;
//! the outbox row commits with the claim or not at all.
//!
//! **Delivery** is a background task (never the ingest path): it claims a due outbox row for
//! [`CLAIM_FOR`] (so two control planes never post the same alert at once), POSTs the JSON body,
//! and marks it delivered on a 2xx; otherwise it backs off (0.5 s doubling to 60 s) and retries
//! until [`GIVE_UP_AFTER`], then marks it failed. A control plane that stops mid-delivery
//! leaves the row undelivered: once its claim lapses any control plane sends it again, so a
//! receiver can see a repeat of an alert it already got (same `id`, also in the
//! `x-modelgate-alert-id` header) but never loses one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{ServiceError, Services};
use crate::store::{budget, budget_alert, budget_period};

/// The thresholds, in percent of the amount, and their bit in `alerts_fired`.
pub const THRESHOLDS: [(i64, i64); 3] = [(50, 1), (80, 2), (100, 4)];
/// How long a worker owns an outbox row it is delivering.
const CLAIM_FOR: Duration = Duration::from_secs(30);
/// Delivery is retried for this long after the threshold was crossed.
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Ingest wakes the worker when it queues an alert; this poll catches retries that came due
/// and alerts queued by another control plane.
const POLL: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(10);
pub const ALERT_ID_HEADER: &str = "x-modelgate-alert-id";

/// The alert's JSON body. Figures only: no key material, no webhook URL.
#[derive(Debug, Serialize)]
struct AlertBody<'a> {
    id: &'a str,
    kind: &'static str,
    budget_id: &'a str,
    scope: super::budgets::Scope,
    period: &'a str,
    /// Unix seconds of the period start (UTC).
    period_start: i64,
    period_start_at: DateTime<Utc>,
    threshold_percent: i64,
    enforcement: &'a str,
    amount_micros: i64,
    spent_micros: i64,
}

/// The threshold bits `spent` has reached for `amount` (integer arithmetic).
pub fn crossed(spent: i64, amount: i64) -> i64 {
    THRESHOLDS
        .iter()
        .filter(|(pct, _)| i128::from(spent) * 100 >= i128::from(*pct) * i128::from(amount))
        .fold(0, |bits, (_, bit)| bits | bit)
}

/// Inside the ingest transaction, after spend was added: claims the thresholds each touched
/// period newly crossed and writes their outbox rows. Returns how many alerts were queued.
pub(crate) async fn claim_crossed<C: ConnectionTrait>(
    txn: &C,
    budgets: &[budget::Model],
    touched: &[(String, i64)],
    now: DateTime<Utc>,
) -> Result<usize, ServiceError> {
    use budget_period::Column as P;
    let mut queued = 0;
    for (id, start) in touched {
        let Some(b) = budgets.iter().find(|b| &b.id == id) else {
            continue;
        };
        let Some(url) = b.alert_webhook_url.as_deref().filter(|u| !u.is_empty()) else {
            continue;
        };
        let Some(row) = budget_period::Entity::find_by_id((id.clone(), *start))
            .one(txn)
            .await?
        else {
            continue;
        };
        let new = crossed(row.spent_micros, b.amount_micros) & !row.alerts_fired;
        if new == 0 {
            continue;
        }
        let claimed = budget_period::Entity::update_many()
            .col_expr(P::AlertsFired, Expr::value(row.alerts_fired | new))
            .filter(P::BudgetId.eq(id.as_str()))
            .filter(P::PeriodStart.eq(*start))
            .filter(P::AlertsFired.eq(row.alerts_fired))
            .exec(txn)
            .await?;
        if claimed.rows_affected != 1 {
            continue; // someone else claimed first
        }
        for (pct, _) in THRESHOLDS.iter().filter(|(_, bit)| new & bit != 0) {
            let alert_id = modelgate_shared::new_id().to_string();
            let body = AlertBody {
                id: &alert_id,
                kind: if b.kind == super::balances::BALANCE {
                    "balance.threshold_crossed"
                } else {
                    "budget.threshold_crossed"
                },
                budget_id: &b.id,
                scope: super::budgets::scope_of(b),
                period: &b.period,
                period_start: *start,
                period_start_at: DateTime::from_timestamp(*start, 0).unwrap_or_default(),
                threshold_percent: *pct,
                enforcement: &b.enforcement,
                amount_micros: b.amount_micros,
                spent_micros: row.spent_micros,
            };
            let body = serde_json::to_string(&body)
                .map_err(|e| ServiceError::Conflict(format!("alert body: {e}")))?;
            let now_ms = now.timestamp_millis();
            budget_alert::Entity::insert(budget_alert::ActiveModel {
                id: Set(alert_id),
                budget_id: Set(b.id.clone()),
                period_start: Set(*start),
                threshold_percent: Set(*pct),
                url: Set(url.to_owned()),
                body: Set(body),
                attempts: Set(0),
                next_attempt_ms: Set(now_ms),
                claimed_until_ms: Set(0),
                give_up_at_ms: Set(now_ms + millis(GIVE_UP_AFTER)),
                delivered_at_ms: Set(None),
                failed_at_ms: Set(None),
                last_error: Set(None),
            })
            .exec_without_returning(txn)
            .await?;
            queued += 1;
        }
    }
    Ok(queued)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Backoff before attempt `attempts + 1`: 0.5 s doubling, at most 60 s.
fn backoff(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 7)).unwrap_or(7);
    Duration::from_millis(500 * 2u64.pow(exp)).min(Duration::from_secs(60))
}

/// The delivery worker: runs until `shutdown`.
pub async fn run(s: Services, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "budget alerts: no HTTP client");
            return;
        }
    };
    loop {
        if let Err(e) = deliver_due(&s, &client, &shutdown).await {
            tracing::warn!(error = %e, "budget alerts: delivery pass failed");
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = s.alert_wakeup.notified() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn deliver_due(
    s: &Services,
    client: &reqwest::Client,
    shutdown: &CancellationToken,
) -> Result<(), ServiceError> {
    use budget_alert::Column as A;
    let now_ms = Utc::now().timestamp_millis();
    let due = budget_alert::Entity::find()
        .filter(A::DeliveredAtMs.is_null())
        .filter(A::FailedAtMs.is_null())
        .filter(A::NextAttemptMs.lte(now_ms))
        .filter(A::ClaimedUntilMs.lte(now_ms))
        .order_by_asc(A::Id)
        .limit(50)
        .all(&s.db)
        .await?;
    for row in due {
        let claimed = budget_alert::Entity::update_many()
            .col_expr(A::ClaimedUntilMs, Expr::value(now_ms + millis(CLAIM_FOR)))
            .filter(A::Id.eq(row.id.as_str()))
            .filter(A::ClaimedUntilMs.eq(row.claimed_until_ms))
            .filter(A::DeliveredAtMs.is_null())
            .exec(&s.db)
            .await?;
        if claimed.rows_affected != 1 {
            continue; // another control plane has it
        }
        let (s, client, shutdown) = (s.clone(), client.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                r = deliver_one(&s, &client, row) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "budget alerts: recording a delivery failed");
                    }
                }
                // The claim lapses and another pass (here or elsewhere) sends it.
                () = shutdown.cancelled() => {}
            }
        });
    }
    Ok(())
}

async fn deliver_one(
    s: &Services,
    client: &reqwest::Client,
    row: budget_alert::Model,
) -> Result<(), ServiceError> {
    use budget_alert::Column as A;
    let outcome = client
        .post(&row.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(ALERT_ID_HEADER, &row.id)
        .body(row.body.clone())
        .send()
        .await;
    let error = match outcome {
        Ok(resp) if resp.status().is_success() => None,
        Ok(resp) => Some(format!("HTTP {}", resp.status().as_u16())),
        // Without the URL: it may carry a token.
        Err(e) => Some(format!("{}", e.without_url())),
    };
    let now_ms = Utc::now().timestamp_millis();
    let update = budget_alert::Entity::update_many().filter(A::Id.eq(row.id.as_str()));
    let update = match error {
        None => update
            .col_expr(A::DeliveredAtMs, Expr::value(now_ms))
            .col_expr(A::Attempts, Expr::value(row.attempts + 1)),
        Some(err) => {
            let gave_up = now_ms >= row.give_up_at_ms;
            tracing::warn!(
                alert = %row.id, budget = %row.budget_id, threshold = row.threshold_percent,
                attempts = row.attempts + 1, gave_up, error = %err,
                "budget alert delivery failed"
            );
            let mut u = update
                .col_expr(A::Attempts, Expr::value(row.attempts + 1))
                .col_expr(
                    A::NextAttemptMs,
                    Expr::value(now_ms + millis(backoff(row.attempts))),
                )
                .col_expr(A::ClaimedUntilMs, Expr::value(0i64))
                .col_expr(A::LastError, Expr::value(err));
            if gave_up {
                u = u.col_expr(A::FailedAtMs, Expr::value(now_ms));
            }
            u
        }
    };
    update.exec(&s.db).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_crossed_at_exactly_50_80_and_100_percent() {
        let check = |spent, want| assert_eq!(crossed(spent, 1_000), want, "spent {spent}");
        check(0, 0);
        check(499, 0);
        check(500, 1);
        check(799, 1);
        check(800, 3);
        check(999, 3);
        check(1_000, 7);
        check(5_000, 7);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }
}
