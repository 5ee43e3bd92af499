//! `modelgate keys create|list|get|revoke|rotate|disable|enable`. Tables never show a key's
//! secret; `create` and `rotate` print the one-time `key_secret` with a "store it now" line.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::table::{field, time, Column};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a gateway key for a team; prints its secret once.
    Create {
        /// The team the key belongs to (its usage is billed to the team).
        #[arg(long)]
        team_id: String,
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// `dev` (the default), `staging` or `prod`.
        #[arg(long)]
        environment: Option<String>,
        /// A model alias the key may use (repeatable); without any, the key may use every
        /// alias.
        #[arg(long = "allowed-model", value_name = "ALIAS")]
        allowed_models: Vec<String>,
        /// When the key stops working, in Unix seconds (UTC).
        #[arg(long, value_name = "UNIX_SECONDS")]
        expires_at: Option<i64>,
        /// The traffic class of requests that name none: interactive (the default), batch,
        /// eval or media.
        #[arg(long)]
        traffic_class: Option<String>,
        /// A class requests may ask for with `x-modelgate-traffic-class` (repeatable); without
        /// any, every class.
        #[arg(long = "allow-traffic-class", value_name = "CLASS")]
        allowed_traffic_classes: Vec<String>,
        /// The key's response-cache override: route (the default: follow the route's
        /// policy.cache), off (never read nor stored) or refresh (never read; answers stored).
        #[arg(long)]
        cache: Option<String>,
    },
    /// List keys (never their secrets).
    List(ListArgs),
    /// Show one key.
    Get {
        /// The key's id.
        id: String,
    },
    /// Revoke a key for good; data planes refuse it within about a second.
    Revoke {
        /// The key's id.
        id: String,
    },
    /// Issue a new secret for a key; prints it once. The old secret keeps working for the
    /// grace period.
    Rotate {
        /// The key's id.
        id: String,
        /// How long the old secret stays valid, in seconds (default: the API's).
        #[arg(long)]
        grace_seconds: Option<u64>,
    },
    /// Disable a key (reversible with `enable`).
    Disable {
        /// The key's id.
        id: String,
    },
    /// Enable a disabled key.
    Enable {
        /// The key's id.
        id: String,
    },
}

/// `active`, or why the key does not work: the API's `status` when it has one, else
/// `revoked`, `disabled` or `expired` from the timestamps.
fn status(v: &Value) -> String {
    if let Some(s) = v.get("status").and_then(Value::as_str) {
        return s.to_owned();
    }
    let set = |name: &str| v.get(name).is_some_and(|x| !x.is_null());
    if set("revoked_at") {
        return "revoked".to_owned();
    }
    if set("disabled_at") || v.get("disabled").and_then(Value::as_bool) == Some(true) {
        return "disabled".to_owned();
    }
    let expired = v
        .get("expires_at")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .is_some_and(|t| t <= chrono::Utc::now());
    if expired { "expired" } else { "active" }.to_owned()
}

pub(super) const LIST_COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        cell: |v| field(v, "id"),
    },
    Column {
        header: "NAME",
        cell: |v| field(v, "name"),
    },
    Column {
        header: "TEAM",
        cell: |v| field(v, "team_id"),
    },
    Column {
        header: "ENV",
        cell: |v| field(v, "environment"),
    },
    Column {
        header: "PREFIX",
        cell: |v| field(v, "prefix"),
    },
    Column {
        header: "STATUS",
        cell: status,
    },
    Column {
        header: "EXPIRES",
        cell: |v| time(v, "expires_at"),
    },
    Column {
        header: "CREATED",
        cell: |v| time(v, "created_at"),
    },
];

pub(super) const DETAIL_COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        cell: |v| field(v, "id"),
    },
    Column {
        header: "NAME",
        cell: |v| field(v, "name"),
    },
    Column {
        header: "TEAM",
        cell: |v| field(v, "team_id"),
    },
    Column {
        header: "ENVIRONMENT",
        cell: |v| field(v, "environment"),
    },
    Column {
        header: "PREFIX",
        cell: |v| field(v, "prefix"),
    },
    Column {
        header: "STATUS",
        cell: status,
    },
    Column {
        header: "ALLOWED MODELS",
        cell: |v| match field(v, "allowed_models").as_str() {
            "-" => "(all)".to_owned(),
            models => models.to_owned(),
        },
    },
    Column {
        header: "TRAFFIC CLASS",
        cell: |v| field(v, "traffic_class"),
    },
    Column {
        header: "EXPIRES",
        cell: |v| time(v, "expires_at"),
    },
    Column {
        header: "REVOKED",
        cell: |v| time(v, "revoked_at"),
    },
    Column {
        header: "DISABLED",
        cell: |v| time(v, "disabled_at"),
    },
    Column {
        header: "CREATED",
        cell: |v| time(v, "created_at"),
    },
];

/// `--expires-at` (Unix seconds) as the RFC 3339 timestamp the API takes.
fn rfc3339_from_unix(seconds: i64) -> Result<String, CliError> {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .ok_or_else(|| CliError::Usage(format!("--expires-at {seconds} is out of range")))
}

fn one(value: Value) -> Reply {
    Reply::One {
        value,
        columns: DETAIL_COLUMNS,
    }
}

impl Run for KeysCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            KeysCommand::Create {
                team_id,
                name,
                environment,
                allowed_models,
                expires_at,
                traffic_class,
                allowed_traffic_classes,
                cache,
            } => {
                let mut body = Map::new();
                body.insert("team_id".into(), json!(team_id));
                body.insert("name".into(), json!(name));
                if let Some(env) = environment {
                    body.insert("environment".into(), json!(env));
                }
                if let Some(class) = traffic_class {
                    body.insert("traffic_class".into(), json!(class));
                }
                if let Some(mode) = cache {
                    body.insert("cache".into(), json!(mode));
                }
                if !allowed_traffic_classes.is_empty() {
                    body.insert(
                        "allowed_traffic_classes".into(),
                        json!(allowed_traffic_classes),
                    );
                }
                if !allowed_models.is_empty() {
                    body.insert("allowed_models".into(), json!(allowed_models));
                }
                if let Some(seconds) = expires_at {
                    body.insert("expires_at".into(), json!(rfc3339_from_unix(seconds)?));
                }
                let value = client.post(&["keys"], Some(&Value::Object(body))).await?;
                Ok(Reply::WithSecret {
                    value,
                    columns: DETAIL_COLUMNS,
                })
            }
            KeysCommand::List(args) => list(client, &["keys"], &[], &args, LIST_COLUMNS).await,
            KeysCommand::Get { id } => Ok(one(client.get(&["keys", &id]).await?)),
            KeysCommand::Revoke { id } => {
                Ok(one(client.post(&["keys", &id, "revoke"], None).await?))
            }
            KeysCommand::Rotate { id, grace_seconds } => {
                let mut body = Map::new();
                if let Some(s) = grace_seconds {
                    body.insert("grace_seconds".into(), json!(s));
                }
                let value = client
                    .post(&["keys", &id, "rotate"], Some(&Value::Object(body)))
                    .await?;
                Ok(Reply::WithSecret {
                    value,
                    columns: DETAIL_COLUMNS,
                })
            }
            KeysCommand::Disable { id } => {
                Ok(one(client.post(&["keys", &id, "disable"], None).await?))
            }
            KeysCommand::Enable { id } => {
                Ok(one(client.post(&["keys", &id, "enable"], None).await?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_the_api_status_or_the_timestamps() {
        let t = "2020-01-01T00:00:00Z";
        assert_eq!(status(&json!({"status": "rotating"})), "rotating");
        assert_eq!(
            status(&json!({"revoked_at": t, "disabled_at": t})),
            "revoked"
        );
        assert_eq!(
            status(&json!({"revoked_at": null, "disabled_at": t})),
            "disabled"
        );
        assert_eq!(status(&json!({"expires_at": t})), "expired");
        assert_eq!(
            status(&json!({"expires_at": "2999-01-01T00:00:00Z"})),
            "active"
        );
        assert_eq!(
            status(&json!({"revoked_at": null, "expires_at": null})),
            "active"
        );
    }

    #[test]
    fn expires_at_is_sent_as_rfc3339() {
        assert_eq!(
            rfc3339_from_unix(1_700_000_000).unwrap(),
            "2023-11-14T22:13:20Z"
        );
        assert!(matches!(
            rfc3339_from_unix(i64::MAX),
            Err(CliError::Usage(_))
        ));
    }
}
