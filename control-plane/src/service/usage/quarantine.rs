//! The usage quarantine: events ingest refused to count ([`super::validate`]), kept as received
//! with the reporting node and the reason. Written in the ingest transaction, one row per event
//! id (a replayed batch adds nothing); read by organisation admins and billing.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use modelgate_shared::usage::{Field, UnknownValue, UsageEvent};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, EntityTrait, QueryOrder, QuerySelect, QueryTrait,
};
use serde::Serialize;

use super::validate::Refusal;
use crate::service::authz::{Action, Actor};
use crate::service::{page, Page, PageParams, ServiceError, Services};
use crate::store::usage_quarantine;

/// Rows per INSERT statement.
const CHUNK: usize = 400;

/// A quarantined event as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QuarantinedEvent {
    pub id: String,
    pub event_id: String,
    /// The node that reported the batch.
    pub node_id: String,
    pub reason: String,
    /// The event as received.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    pub quarantined_at: DateTime<Utc>,
}

impl From<usage_quarantine::Model> for QuarantinedEvent {
    fn from(m: usage_quarantine::Model) -> Self {
        QuarantinedEvent {
            event: serde_json::from_str(&m.event).unwrap_or(serde_json::Value::Null),
            id: m.id,
            event_id: m.event_id,
            node_id: m.node_id,
            reason: m.reason,
            quarantined_at: m.quarantined_at,
        }
    }
}

/// The event as the node sent it, as JSON: an event refused for values this build does not know
/// was decoded with those fields empty, so they are put back as they arrived. (serde_json
/// escapes NUL, so the text is storable as it is.)
fn as_received(e: &UsageEvent, why: &Refusal) -> String {
    let Ok(mut json) = serde_json::to_value(e) else {
        return "null".into();
    };
    if let Refusal::UnknownValues(unknown) = why {
        for u in unknown {
            put_back(&mut json, u);
        }
    }
    json.to_string()
}

fn put_back(json: &mut serde_json::Value, u: &UnknownValue) {
    let value = serde_json::Value::from(u.value.as_str());
    match u.field {
        Field::AttemptErrorClass(i) => {
            if let Some(attempt) = json
                .get_mut("attempts")
                .and_then(|a| a.get_mut(i))
                .and_then(serde_json::Value::as_object_mut)
            {
                attempt.insert("error_class".into(), value);
            }
        }
        field => {
            if let Some(event) = json.as_object_mut() {
                event.insert(field.to_string(), value);
            }
        }
    }
}

/// Stores the refused events; returns how many were not already quarantined.
pub(super) async fn store<C: ConnectionTrait>(
    txn: &C,
    node_id: &str,
    refused: &[(UsageEvent, Refusal)],
    now: DateTime<Utc>,
) -> Result<u64, ServiceError> {
    let mut rows: Vec<usage_quarantine::ActiveModel> = refused
        .iter()
        .map(|(e, why)| usage_quarantine::ActiveModel {
            id: Set(modelgate_shared::new_id().to_string()),
            event_id: Set(super::ingest::clean(&e.id)),
            node_id: Set(super::ingest::clean(node_id)),
            reason: Set(super::ingest::clean(&why.to_string())),
            event: Set(as_received(e, why)),
            quarantined_at: Set(now),
        })
        .collect();
    let mut stored = HashSet::new();
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(CHUNK));
        let chunk = std::mem::replace(&mut rows, rest);
        let mut insert = usage_quarantine::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::column(usage_quarantine::Column::EventId)
                    .do_nothing()
                    .to_owned(),
            )
            .into_query();
        insert.returning_col(usage_quarantine::Column::EventId);
        let backend = txn.get_database_backend();
        for r in txn.query_all(backend.build(&insert)).await? {
            stored.insert(r.try_get::<String>("", "event_id")?);
        }
    }
    Ok(stored.len() as u64)
}

/// Quarantined events, oldest first, after the cursor (the last `id` seen).
pub async fn list(
    s: &Services,
    actor: &Actor,
    params: PageParams,
) -> Result<Page<QuarantinedEvent>, ServiceError> {
    actor.require(Action::ReadQuarantine)?;
    let limit = params.limit()?;
    let mut q = usage_quarantine::Entity::find().order_by_asc(usage_quarantine::Column::Id);
    if let Some(after) = &params.after {
        use sea_orm::{ColumnTrait, QueryFilter};
        q = q.filter(usage_quarantine::Column::Id.gt(after.as_str()));
    }
    let rows = q.limit(limit + 1).all(&s.db).await?;
    Ok(page(rows, limit, |r| r.id.clone(), QuarantinedEvent::from))
}

#[cfg(test)]
mod tests {
    use modelgate_proto::usage::v1 as wire;
    use modelgate_shared::usage::{Attempt, ErrorClass, UsageEvent};

    use super::*;

    #[test]
    fn an_event_with_unknown_values_is_quarantined_with_them_as_they_arrived() {
        let sent = wire::UsageEvent::from(&UsageEvent {
            id: "e1".into(),
            status: 502,
            attempts: vec![Attempt {
                status: 503,
                error_class: Some(ErrorClass::ProviderError),
                ..Default::default()
            }],
            ..Default::default()
        });
        let sent = wire::UsageEvent {
            traffic_class: "bulk".into(),
            attempts: vec![wire::Attempt {
                error_class: "teapot".into(),
                ..sent.attempts[0].clone()
            }],
            ..sent
        };
        let Err(undecodable) = UsageEvent::try_from(sent) else {
            panic!("decoded an unknown traffic class");
        };
        let why = Refusal::UnknownValues(undecodable.unknown);
        assert_eq!(
            why.to_string(),
            "attempts[0].error_class `teapot` is not a value this build knows; \
             traffic_class `bulk` is not a value this build knows"
        );
        let stored: serde_json::Value =
            serde_json::from_str(&as_received(&undecodable.event, &why)).unwrap();
        assert_eq!(stored["id"], "e1");
        assert_eq!(stored["traffic_class"], "bulk");
        assert_eq!(stored["attempts"][0]["error_class"], "teapot");
        assert_eq!(stored["attempts"][0]["status"], 503);
    }

    #[test]
    fn an_event_refused_for_a_figure_is_kept_as_it_was_decoded() {
        let e = UsageEvent {
            id: "e2".into(),
            cost_micros: -1,
            error_class: Some(ErrorClass::Timeout),
            ..Default::default()
        };
        let stored: serde_json::Value =
            serde_json::from_str(&as_received(&e, &Refusal::NegativeCost(-1))).unwrap();
        assert_eq!(stored["cost_micros"], -1);
        assert_eq!(stored["error_class"], "timeout");
        assert_eq!(stored["cost_flag"], "");
    }
}
