//! Rollout actions sent to any replica. Only the replica holding the `rollouts` lease changes a
//! rollout; another replica that receives an operator's promote, pause, resume or rollback
//! stores it as a request (`rollout_requests`), which the driver claims on its next tick
//! (`serve`), carries out and answers; the receiver waits for the answer and returns it as if it
//! had acted itself. A request the driver has not claimed within [`WAIT`] is withdrawn by the
//! receiver (the operator gets 503 and nothing happened) and never carried out later.

use std::time::Duration;

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::Action;
use crate::service::{ServiceError, Services};
use crate::store::{rollout as row, rollout_request as request};

/// How long a receiver waits for the driver to claim its request.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long it waits for the outcome of a claimed request (the driver acts under the
/// publisher's lock, which a rebuild may hold for a while on a large config).
const CLAIMED_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Rollback => "rollback",
        }
    }

    fn parse(text: &str) -> Option<Action> {
        Some(match text {
            "promote" => Action::Promote,
            "pause" => Action::Pause,
            "resume" => Action::Resume,
            "rollback" => Action::Rollback,
            _ => return None,
        })
    }
}

fn unix_ms(s: &Services) -> i64 {
    s.clock.now().timestamp_millis()
}

/// On a replica that does not drive rollouts: has the driver carry out `action` and returns the
/// rollout's row afterwards, or the driver's error.
pub(crate) async fn request(
    s: &Services,
    id: &str,
    action: Action,
    reason: Option<String>,
) -> Result<row::Model, ServiceError> {
    let request_id = modelgate_shared::new_id().to_string();
    request::Entity::insert(request::ActiveModel {
        id: Set(request_id.clone()),
        rollout_id: Set(id.to_owned()),
        action: Set(action.as_str().to_owned()),
        reason: Set(reason),
        requested_at_ms: Set(unix_ms(s)),
        claimed_at_ms: Set(None),
        outcome: Set(None),
        message: Set(None),
    })
    .exec_without_returning(&s.db)
    .await?;
    let started = tokio::time::Instant::now();
    loop {
        let Some(r) = request::Entity::find_by_id(&request_id).one(&s.db).await? else {
            return Err(ServiceError::Unavailable(
                "the rollout request disappeared before the driving replica answered".into(),
            ));
        };
        if let Some(outcome) = &r.outcome {
            request::Entity::delete_by_id(&request_id)
                .exec(&s.db)
                .await?;
            let message = r.message.clone().unwrap_or_default();
            return match outcome.as_str() {
                "ok" => row::Entity::find_by_id(id)
                    .one(&s.db)
                    .await?
                    .ok_or_else(|| ServiceError::NotFound(format!("rollout `{id}`"))),
                "not_found" => Err(ServiceError::NotFound(format!("rollout `{id}`"))),
                "conflict" => Err(ServiceError::Conflict(message)),
                _ => Err(ServiceError::Unavailable(format!(
                    "the replica that drives rollouts could not carry out the {}: {message}",
                    action.as_str()
                ))),
            };
        }
        let waited = started.elapsed();
        if r.claimed_at_ms.is_none() && waited >= WAIT {
            // Withdraw it unless the driver claimed it in the meantime.
            let withdrawn = request::Entity::delete_many()
                .filter(request::Column::Id.eq(&request_id))
                .filter(request::Column::ClaimedAtMs.is_null())
                .exec(&s.db)
                .await?
                .rows_affected;
            if withdrawn == 1 {
                return Err(ServiceError::Unavailable(format!(
                    "no control-plane replica took the rollout {} within {} s (the replica \
                     that drives rollouts may be starting or gone); nothing was changed, retry",
                    action.as_str(),
                    WAIT.as_secs()
                )));
            }
        } else if waited >= WAIT + CLAIMED_WAIT {
            return Err(ServiceError::Unavailable(format!(
                "the replica that drives rollouts took the {} but has not answered; read the \
                 rollout to see whether it happened",
                action.as_str()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// On the replica that drives rollouts (on Postgres): claims and carries out every pending
/// request, oldest first. Requests older than [`WAIT`] are left to their receivers, which withdraw them.
pub(crate) async fn serve(s: &Services) -> Result<(), ServiceError> {
    // Only replicas sharing a database relay: on SQLite (one control plane) there is nothing to
    // read, and its one connection is better left to the rest.
    if !s.replica.shared_database() {
        return Ok(());
    }
    let now = unix_ms(s);
    let oldest = now - i64::try_from(WAIT.as_millis()).unwrap_or(i64::MAX);
    let pending = request::Entity::find()
        .filter(request::Column::ClaimedAtMs.is_null())
        .filter(request::Column::RequestedAtMs.gte(oldest))
        .order_by_asc(request::Column::RequestedAtMs)
        .all(&s.db)
        .await?;
    for r in pending {
        let claimed = request::Entity::update_many()
            .col_expr(request::Column::ClaimedAtMs, Some(unix_ms(s)).into())
            .filter(request::Column::Id.eq(&r.id))
            .filter(request::Column::ClaimedAtMs.is_null())
            .exec(&s.db)
            .await?
            .rows_affected;
        if claimed == 0 {
            continue; // withdrawn meanwhile
        }
        let result = match Action::parse(&r.action) {
            Some(action) => super::act_as_driver(s, &r.rollout_id, action, r.reason.clone())
                .await
                .map(|_| ()),
            None => Err(ServiceError::Conflict(format!(
                "unknown rollout action `{}`",
                r.action
            ))),
        };
        let (outcome, message) = match result {
            Ok(()) => ("ok", None),
            Err(ServiceError::NotFound(m)) => ("not_found", Some(m)),
            Err(ServiceError::Conflict(m)) => ("conflict", Some(m)),
            Err(e) => ("error", Some(e.to_string())),
        };
        request::Entity::update_many()
            .col_expr(request::Column::Outcome, Some(outcome.to_owned()).into())
            .col_expr(request::Column::Message, message.into())
            .filter(request::Column::Id.eq(&r.id))
            .exec(&s.db)
            .await?;
    }
    Ok(())
}
