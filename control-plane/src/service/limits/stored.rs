//! The rate-limit ledger in the database, so that every control-plane replica over one Postgres
//! grants from the same one (and a restarted control plane forgets nothing).
//!
//! Each `AllocateRate` call (per refill or keeper report, never per request) is one
//! transaction: it locks the measure's marker row in `rate_grants` (the empty holder, which
//! names the current window; `SELECT … FOR UPDATE` on Postgres, SQLite having one writer),
//! starts a new window when the minute moved on (dropping the old one's rows), reads every
//! holder's lease into [`Ledger`], grants there, and writes the caller's lease back before
//! committing. Lease ends are Unix milliseconds of the database's clock on Postgres (every
//! replica shares it), mapped to this process's monotonic clock for the arithmetic.

use std::time::{Duration, Instant};

use chrono::Utc;
use modelgate_shared::limits::window_start;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, Statement, TransactionTrait,
};

use super::ledger::{Ledger, RateAsk, RateGrant, StoredLease, WarmingUp};
use crate::service::{ServiceError, Services};
use crate::store::rate_grant;

/// The holder name of a measure's marker row.
const MARKER: &str = "";

/// Grants `ask` from what is left of `amount`, over the stored ledger.
pub async fn allocate(
    s: &Services,
    ledger: &Ledger,
    amount: i64,
    ask: &RateAsk,
) -> Result<Result<RateGrant, WarmingUp>, ServiceError> {
    use rate_grant::Column as R;
    let _serial = ledger.serial.lock().await;
    let txn = s.db.begin().await?;
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    let now_ms = if postgres {
        database_now_ms(&txn).await?
    } else {
        Utc::now().timestamp_millis()
    };
    let now = Instant::now();
    let measure = ask.measure.as_str();
    let mut start = window_start(ask.measure, now_ms.div_euclid(1000));
    rate_grant::Entity::insert(rate_grant::ActiveModel {
        limit_id: Set(ask.limit_id.clone()),
        measure: Set(measure.to_owned()),
        holder: Set(MARKER.to_owned()),
        window_start: Set(start),
        granted: Set(0),
        consumed: Set(0),
        expires_at_ms: Set(0),
    })
    .on_conflict(
        OnConflict::columns([R::LimitId, R::Measure, R::Holder])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    let mut marker = rate_grant::Entity::find()
        .filter(R::LimitId.eq(ask.limit_id.as_str()))
        .filter(R::Measure.eq(measure))
        .filter(R::Holder.eq(MARKER));
    if postgres {
        marker = marker.lock_exclusive();
    }
    let marker = marker.one(&txn).await?.ok_or_else(|| {
        ServiceError::Unavailable("the rate-limit ledger's marker is missing".into())
    })?;
    if marker.window_start < start {
        // A new minute: the old one's leases no longer claim anything.
        rate_grant::Entity::delete_many()
            .filter(R::LimitId.eq(ask.limit_id.as_str()))
            .filter(R::Measure.eq(measure))
            .filter(R::Holder.ne(MARKER))
            .exec(&txn)
            .await?;
        rate_grant::Entity::update_many()
            .col_expr(R::WindowStart, sea_orm::sea_query::Expr::value(start))
            .filter(R::LimitId.eq(ask.limit_id.as_str()))
            .filter(R::Measure.eq(measure))
            .filter(R::Holder.eq(MARKER))
            .exec(&txn)
            .await?;
    } else {
        start = marker.window_start;
    }
    let leases = rate_grant::Entity::find()
        .filter(R::LimitId.eq(ask.limit_id.as_str()))
        .filter(R::Measure.eq(measure))
        .filter(R::Holder.ne(MARKER))
        .all(&txn)
        .await?
        .into_iter()
        .map(|r| {
            (
                r.holder,
                StoredLease {
                    granted: r.granted,
                    consumed: r.consumed,
                    expires: instant_at(now, now_ms, r.expires_at_ms),
                },
            )
        });
    ledger.install(&ask.limit_id, ask.measure, start, leases);
    let granted = ledger.grant(amount, ask, start, now);
    if let Some(lease) = ledger.lease_of(&ask.limit_id, ask.measure, &ask.node) {
        let expires_at_ms = match lease.expires.checked_duration_since(now) {
            Some(ahead) => now_ms.saturating_add(i64::try_from(ahead.as_millis()).unwrap_or(0)),
            None => {
                now_ms.saturating_sub(i64::try_from((now - lease.expires).as_millis()).unwrap_or(0))
            }
        };
        rate_grant::Entity::insert(rate_grant::ActiveModel {
            limit_id: Set(ask.limit_id.clone()),
            measure: Set(measure.to_owned()),
            holder: Set(ask.node.clone()),
            window_start: Set(start),
            granted: Set(lease.granted),
            consumed: Set(lease.consumed),
            expires_at_ms: Set(expires_at_ms),
        })
        .on_conflict(
            OnConflict::columns([R::LimitId, R::Measure, R::Holder])
                .update_columns([R::WindowStart, R::Granted, R::Consumed, R::ExpiresAtMs])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    // Committed before the data plane hears of the grant.
    txn.commit().await?;
    Ok(granted)
}

/// The instant of this process's monotonic clock at Unix millisecond `at_ms`, given that `now`
/// is `now_ms`. A time too far back to represent is taken as `now`, which only makes a lapsed
/// lease claim its slots longer (the safe side).
fn instant_at(now: Instant, now_ms: i64, at_ms: i64) -> Instant {
    let delta = Duration::from_millis(at_ms.abs_diff(now_ms));
    if at_ms >= now_ms {
        now + delta
    } else {
        now.checked_sub(delta).unwrap_or(now)
    }
}

/// The database's clock in Unix milliseconds (Postgres).
async fn database_now_ms(db: &impl ConnectionTrait) -> Result<i64, ServiceError> {
    let row = db
        .query_one(Statement::from_string(
            DbBackend::Postgres,
            "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS now_ms",
        ))
        .await?
        .ok_or_else(|| ServiceError::Unavailable("the database did not tell its time".into()))?;
    Ok(row.try_get::<i64>("", "now_ms")?)
}

/// What the admin view shows of `limit_ids` where replicas share the database: the stored
/// ledger (every holder's lease, whichever replica granted it), not the windows this replica
/// last allocated. One read of those limits' rows; lease ends by the database's clock. Returns
/// the view and the database's time (Unix seconds), which names the current windows.
pub async fn fleet_view(s: &Services, limit_ids: &[String]) -> Result<(Ledger, i64), ServiceError> {
    use rate_grant::Column as R;
    use std::collections::HashMap;
    let now_ms = database_now_ms(&s.db).await?;
    let now = Instant::now();
    let rows = rate_grant::Entity::find()
        .filter(R::LimitId.is_in(limit_ids.iter().map(String::as_str)))
        .all(&s.db)
        .await?;
    // By limit and measure: the marker's window, and every holder's lease with its window.
    type Leases = Vec<(String, StoredLease, i64)>;
    let mut windows: HashMap<(String, String), (i64, Leases)> = HashMap::new();
    for r in rows {
        let w = windows
            .entry((r.limit_id.clone(), r.measure.clone()))
            .or_insert((i64::MIN, Vec::new()));
        if r.holder == MARKER {
            w.0 = r.window_start;
        } else {
            let lease = StoredLease {
                granted: r.granted,
                consumed: r.consumed,
                expires: instant_at(now, now_ms, r.expires_at_ms),
            };
            w.1.push((r.holder, lease, r.window_start));
        }
    }
    let view = Ledger::default();
    for ((limit_id, measure), (start, leases)) in windows {
        let Some(measure) = modelgate_shared::limits::Measure::ALL
            .into_iter()
            .find(|m| m.as_str() == measure)
        else {
            continue;
        };
        let leases = leases
            .into_iter()
            .filter(|(_, _, at)| *at == start)
            .map(|(holder, lease, _)| (holder, lease));
        view.install(&limit_id, measure, start, leases);
    }
    Ok((view, now_ms.div_euclid(1000)))
}
