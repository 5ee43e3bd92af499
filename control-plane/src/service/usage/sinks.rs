//! Export sinks: where usage events go for billing. A webhook sink receives CloudEvents batches
//! signed with a per-sink secret (returned once at creation, sealed at rest); a NATS sink
//! publishes each event to a JetStream subject. Each sink has its own cursor in the ingest
//! sequence, advanced only after a delivery succeeded.
//!
//! A sink's URL may carry credentials (`nats://user:password@host`, a token as user name):
//! only organisation-wide owners and admins, who manage sinks, read sinks at all, and no
//! response, audit row, log line or stored error ever shows the userinfo ([`redact`]).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel, QueryOrder, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use crate::service::audit::{self, Change};
use crate::service::authz::{Action, Actor};
use crate::service::{require_name, unique_violation, ServiceError, Services};
use crate::store::export_sink;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Webhook,
    Nats,
}

impl SinkKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(Self::Webhook),
            "nats" => Some(Self::Nats),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Nats => "nats",
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSink {
    pub name: String,
    pub kind: String,
    pub url: String,
    /// NATS: the subject to publish to.
    #[serde(default)]
    pub subject: Option<String>,
    /// NATS: a JetStream stream to create over the subject if none captures it.
    #[serde(default)]
    pub stream: Option<String>,
    /// Webhook: the signing secret; generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// Start after this ingest sequence number (default 0: export everything stored).
    #[serde(default)]
    pub after: Option<i64>,
}

// Hand-written so the signing secret can never reach a log through `{:?}`.
impl std::fmt::Debug for CreateSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateSink")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &redact(&self.url, &self.url))
            .field("subject", &self.subject)
            .field("stream", &self.stream)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Sink {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub subject: String,
    pub stream: String,
    /// Ingest sequence of the last event delivered.
    pub cursor: i64,
    pub delivered: i64,
    pub failures: i64,
    pub last_error: Option<String>,
    pub last_delivery_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<export_sink::Model> for Sink {
    fn from(m: export_sink::Model) -> Self {
        Sink {
            id: m.id,
            name: m.name,
            kind: m.kind,
            url: redact(&m.url, &m.url),
            subject: m.subject,
            stream: m.stream,
            cursor: m.cursor,
            delivered: m.delivered,
            failures: m.failures,
            last_error: m.last_error,
            last_delivery_at: m.last_delivery_at,
            created_at: m.created_at,
        }
    }
}

/// A created sink with its signing secret, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedSink {
    #[serde(flatten)]
    pub sink: Sink,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn valid_subject(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|t| {
            !t.is_empty()
                && t != "*"
                && t != ">"
                && t.chars().all(|c| !c.is_whitespace() && !c.is_control())
        })
}

pub async fn create(
    s: &Services,
    actor: &Actor,
    input: CreateSink,
) -> Result<CreatedSink, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let name = require_name("name", &input.name)?;
    let kind = SinkKind::parse(&input.kind)
        .ok_or_else(|| ServiceError::invalid("kind", "must be one of: webhook, nats"))?;
    let url = input.url.trim().to_owned();
    let scheme_ok = match kind {
        SinkKind::Webhook => url.starts_with("http://") || url.starts_with("https://"),
        SinkKind::Nats => url.starts_with("nats://") || url.starts_with("tls://"),
    };
    if !scheme_ok || url.len() > 2000 {
        let expected = match kind {
            SinkKind::Webhook => "an http:// or https:// URL",
            SinkKind::Nats => "a nats:// or tls:// URL",
        };
        return Err(ServiceError::invalid("url", format!("must be {expected}")));
    }
    let (subject, stream) = match kind {
        SinkKind::Webhook => (String::new(), String::new()),
        SinkKind::Nats => {
            let subject = input.subject.unwrap_or_default();
            if !valid_subject(&subject) {
                return Err(ServiceError::invalid(
                    "subject",
                    "must be a NATS subject without wildcards",
                ));
            }
            let stream = input.stream.unwrap_or_default();
            if !stream.is_empty()
                && !stream
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ServiceError::invalid(
                    "stream",
                    "must be letters, digits, '_' or '-'",
                ));
            }
            (subject, stream)
        }
    };
    let secret = match kind {
        SinkKind::Webhook => Some(match input.secret {
            Some(secret) if secret.len() < 16 => {
                return Err(ServiceError::invalid(
                    "secret",
                    "must be at least 16 characters",
                ))
            }
            Some(secret) => secret,
            None => modelgate_shared::keys::generate_signing_secret(),
        }),
        SinkKind::Nats => None,
    };
    let after = input.after.unwrap_or(0);
    if after < 0 {
        return Err(ServiceError::invalid("after", "must not be negative"));
    }
    let id = modelgate_shared::new_id().to_string();
    let secret_ciphertext = secret
        .as_deref()
        .map(|v| {
            s.sealer
                .seal_bound(v.as_bytes(), &crate::crypto::sink_secret(&id))
        })
        .unwrap_or_default();
    let txn = s.db.begin().await?;
    let model = export_sink::ActiveModel {
        id: Set(id),
        name: Set(name),
        kind: Set(kind.as_str().to_owned()),
        url: Set(url),
        subject: Set(subject),
        stream: Set(stream),
        secret_ciphertext: Set(secret_ciphertext),
        cursor: Set(after),
        delivered: Set(0),
        failures: Set(0),
        last_error: Set(None),
        last_delivery_at: Set(None),
        created_at: Set(Utc::now()),
    }
    .insert(&txn)
    .await
    .map_err(|e| unique_violation(e, "a sink with this name"))?;
    let sink = Sink::from(model);
    audit::record(
        &txn,
        actor,
        Change {
            action: "sink.create",
            resource_type: "sink",
            resource_id: &sink.id,
            team_id: None,
            before: None,
            after: audit::view(&sink),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(CreatedSink { sink, secret })
}

/// Sinks are read only by those who manage them (their URLs may name a billing system's
/// credentials, redacted or not).
pub async fn list(s: &Services, actor: &Actor) -> Result<Vec<Sink>, ServiceError> {
    actor.require(Action::ManageOrg)?;
    let rows = export_sink::Entity::find()
        .order_by_asc(export_sink::Column::Id)
        .all(&s.db)
        .await?;
    Ok(rows.into_iter().map(Sink::from).collect())
}

pub async fn get(s: &Services, actor: &Actor, id: &str) -> Result<Sink, ServiceError> {
    actor.require(Action::ManageOrg)?;
    Ok(find(s, id).await?.into())
}

async fn find(s: &Services, id: &str) -> Result<export_sink::Model, ServiceError> {
    export_sink::Entity::find_by_id(id)
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound("sink".into()))
}

pub async fn delete(s: &Services, actor: &Actor, id: &str) -> Result<(), ServiceError> {
    actor.require(Action::ManageOrg)?;
    let txn = s.db.begin().await?;
    let before = export_sink::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound("sink".into()))?;
    export_sink::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(
        &txn,
        actor,
        Change {
            action: "sink.delete",
            resource_type: "sink",
            resource_id: id,
            team_id: None,
            before: audit::view(&Sink::from(before)),
            after: None,
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rewind {
    /// Re-export every event after this ingest sequence number.
    pub after: i64,
}

/// Moves a sink's cursor back (or forward) to re-deliver from a point; consumers deduplicate by
/// event id.
pub async fn rewind(
    s: &Services,
    actor: &Actor,
    id: &str,
    input: Rewind,
) -> Result<Sink, ServiceError> {
    actor.require(Action::ManageOrg)?;
    if input.after < 0 {
        return Err(ServiceError::invalid("after", "must not be negative"));
    }
    let before = find(s, id).await?;
    let txn = s.db.begin().await?;
    let mut m = before.clone().into_active_model();
    m.cursor = Set(input.after);
    let after = Sink::from(m.update(&txn).await?);
    audit::record(
        &txn,
        actor,
        Change {
            action: "sink.rewind",
            resource_type: "sink",
            resource_id: id,
            team_id: None,
            before: audit::view(&Sink::from(before)),
            after: audit::view(&after),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

/// The userinfo of a URL (`user:password` or a token before the `@` of its authority).
fn userinfo(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let (info, _host) = authority.rsplit_once('@')?;
    (!info.is_empty()).then_some(info)
}

/// `%XX` escapes decoded (lossily), as a library may print a credential it decoded.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The credentials of a sink URL as separate parts: the URL without its userinfo, and the
/// decoded user name and password (a user name alone is a token).
pub fn split_credentials(url: &str) -> (String, Option<(String, Option<String>)>) {
    let Some(info) = userinfo(url) else {
        return (url.to_owned(), None);
    };
    let bare = url.replacen(&format!("{info}@"), "", 1);
    let creds = match info.split_once(':') {
        Some((user, password)) => (percent_decoded(user), Some(percent_decoded(password))),
        None => (percent_decoded(info), None),
    };
    (bare, Some(creds))
}

/// `text` with the credentials of `url` (its userinfo, the password alone, and their decoded
/// forms) replaced by `***`. `redact(url, url)` is the URL to show (`nats://***@host:4222`);
/// `redact(message, url)` is an error message safe to log and store. The one redaction of sink
/// credentials: responses, audit rows, `last_error` and logs all go through it.
pub fn redact(text: &str, url: &str) -> String {
    let Some(info) = userinfo(url) else {
        return text.to_owned();
    };
    let mut secrets = vec![info.to_owned(), percent_decoded(info)];
    if let Some((_, password)) = info.split_once(':') {
        secrets.push(password.to_owned());
        secrets.push(percent_decoded(password));
    }
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    let mut out = text.to_owned();
    for secret in &secrets {
        out = out.replace(secret.as_str(), "***");
    }
    out
}

/// A sink as the exporter needs it: with its secret opened.
pub struct SinkTarget {
    pub id: String,
    pub name: String,
    pub kind: SinkKind,
    pub url: String,
    pub subject: String,
    pub stream: String,
    pub secret: Vec<u8>,
    pub cursor: i64,
}

pub async fn targets(s: &Services) -> Result<Vec<SinkTarget>, ServiceError> {
    let rows = export_sink::Entity::find().all(&s.db).await?;
    let mut out = Vec::with_capacity(rows.len());
    for m in rows {
        let Some(kind) = SinkKind::parse(&m.kind) else {
            continue;
        };
        let secret = if m.secret_ciphertext.is_empty() {
            Vec::new()
        } else {
            s.sealer
                .open_bound(&m.secret_ciphertext, &crate::crypto::sink_secret(&m.id))?
        };
        out.push(SinkTarget {
            id: m.id,
            name: m.name,
            kind,
            url: m.url,
            subject: m.subject,
            stream: m.stream,
            secret,
            cursor: m.cursor,
        });
    }
    Ok(out)
}

/// The sink's current cursor (it may have been rewound by an operator).
pub async fn cursor(s: &Services, id: &str) -> Result<Option<i64>, ServiceError> {
    Ok(export_sink::Entity::find_by_id(id)
        .one(&s.db)
        .await?
        .map(|m| m.cursor))
}

/// Records a successful delivery of events up to `cursor`, unless the cursor was moved since
/// the batch was read (`from`), in which case the operator's rewind wins.
pub async fn delivered(
    s: &Services,
    id: &str,
    from: i64,
    cursor: i64,
    count: u64,
) -> Result<(), ServiceError> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, QueryFilter};
    export_sink::Entity::update_many()
        .col_expr(export_sink::Column::Cursor, Expr::value(cursor))
        .col_expr(
            export_sink::Column::Delivered,
            Expr::col(export_sink::Column::Delivered).add(i64::try_from(count).unwrap_or(0)),
        )
        .col_expr(export_sink::Column::Failures, Expr::value(0))
        .col_expr(
            export_sink::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            export_sink::Column::LastDeliveryAt,
            Expr::value(Some(Utc::now())),
        )
        .filter(export_sink::Column::Id.eq(id))
        .filter(export_sink::Column::Cursor.eq(from))
        .exec(&s.db)
        .await?;
    Ok(())
}

/// Records a failed delivery attempt.
pub async fn failed(s: &Services, id: &str, error: &str) -> Result<(), ServiceError> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, QueryFilter};
    let error: String = error.chars().take(500).collect();
    export_sink::Entity::update_many()
        .col_expr(
            export_sink::Column::Failures,
            Expr::col(export_sink::Column::Failures).add(1),
        )
        .col_expr(export_sink::Column::LastError, Expr::value(Some(error)))
        .filter(export_sink::Column::Id.eq(id))
        .exec(&s.db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_shows_no_userinfo() {
        assert_eq!(
            redact(
                "nats://user:s3cret@nats.example:4222",
                "nats://user:s3cret@nats.example:4222"
            ),
            "nats://***@nats.example:4222"
        );
        let token = "https://tok3n@hooks.example/in?x=a@b";
        assert_eq!(redact(token, token), "https://***@hooks.example/in?x=a@b");
        let plain = "https://hooks.example/in?x=a@b";
        assert_eq!(redact(plain, plain), plain);
    }

    #[test]
    fn an_error_loses_the_password_in_every_form() {
        let url = "nats://bob:p%40ss@127.0.0.1:1";
        let message =
            "connecting to nats://bob:p%40ss@127.0.0.1:1: auth failed for bob/p@ss (p%40ss)";
        let shown = redact(message, url);
        assert!(!shown.contains("p%40ss"), "{shown}");
        assert!(!shown.contains("p@ss"), "{shown}");
        assert!(
            shown.starts_with("connecting to nats://***@127.0.0.1:1"),
            "{shown}"
        );
    }

    #[test]
    fn credentials_split_off_the_url_decoded() {
        assert_eq!(
            split_credentials("nats://bob:p%40ss@h:4222"),
            (
                "nats://h:4222".to_owned(),
                Some(("bob".to_owned(), Some("p@ss".to_owned())))
            )
        );
        assert_eq!(
            split_credentials("nats://tok@h"),
            ("nats://h".to_owned(), Some(("tok".to_owned(), None)))
        );
        assert_eq!(split_credentials("nats://h"), ("nats://h".to_owned(), None));
    }
}
