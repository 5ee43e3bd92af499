//! `modelgate routes create|list|explain`: model alias → deployments, and what the gateway would
//! do with a request.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::table::{field, time, Column, NONE};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// Route a model alias to one or more deployments.
    Create {
        /// The model name applications send (e.g. `smart`).
        #[arg(long)]
        alias: String,
        /// A deployment as `PROVIDER_ID:MODEL[:WEIGHT]` (repeatable; traffic splits by weight,
        /// default 1). A trailing `:N` is read as the weight, so a model name ending in `:N`
        /// needs an explicit weight (`PROVIDER_ID:llama3:8b:1`).
        #[arg(
            long = "deployment",
            value_name = "PROVIDER_ID:MODEL[:WEIGHT]",
            required = true,
            value_parser = parse_deployment
        )]
        deployments: Vec<Deployment>,
    },
    /// List routes.
    List(ListArgs),
    /// What would happen to a request with this key: allowed or why not, and the ordered
    /// deployments it may try with their price and fleet health. Calls no upstream.
    Explain {
        /// The gateway key's id.
        #[arg(long)]
        key_id: String,
        /// The model alias the request names.
        #[arg(long)]
        model: String,
        /// The endpoint family (chat, responses, embeddings, images, messages,
        /// generate_content, video, audio).
        #[arg(long, default_value = "chat")]
        surface: String,
        /// As if sent with `x-modelgate-traffic-class`.
        #[arg(long)]
        traffic_class: Option<String>,
    },
}

/// One `--deployment` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub provider_id: String,
    pub model: String,
    pub weight: Option<u32>,
}

impl Deployment {
    fn to_json(&self) -> Value {
        let mut d = Map::new();
        d.insert("provider_id".into(), json!(self.provider_id));
        d.insert("model".into(), json!(self.model));
        if let Some(weight) = self.weight {
            d.insert("weight".into(), json!(weight));
        }
        Value::Object(d)
    }
}

pub fn parse_deployment(s: &str) -> Result<Deployment, String> {
    const SHAPE: &str = "expected PROVIDER_ID:MODEL[:WEIGHT]";
    let (provider_id, rest) = s.split_once(':').ok_or(SHAPE)?;
    let (model, weight) = match rest.rsplit_once(':') {
        Some((model, weight))
            if !weight.is_empty() && weight.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let weight = weight
                .parse::<u32>()
                .map_err(|_| format!("weight `{weight}` is too large"))?;
            (model, Some(weight))
        }
        _ => (rest, None),
    };
    if provider_id.trim().is_empty() || model.trim().is_empty() {
        return Err(SHAPE.to_owned());
    }
    Ok(Deployment {
        provider_id: provider_id.trim().to_owned(),
        model: model.trim().to_owned(),
        weight,
    })
}

/// `provider/model×weight, …`
fn deployments(v: &Value) -> String {
    let Some(list) = v.get("deployments").and_then(Value::as_array) else {
        return NONE.to_owned();
    };
    list.iter()
        .map(|d| {
            let weight = d.get("weight").and_then(Value::as_u64).unwrap_or(1);
            format!(
                "{}/{} ×{weight}",
                field(d, "provider_id"),
                field(d, "model")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        cell: |v| field(v, "id"),
    },
    Column {
        header: "ALIAS",
        cell: |v| field(v, "alias"),
    },
    Column {
        header: "DEPLOYMENTS (PROVIDER/MODEL ×WEIGHT)",
        cell: deployments,
    },
    Column {
        header: "CREATED",
        cell: |v| time(v, "created_at"),
    },
];

/// `1. provider/model (group, tier 0, 75.0%, unavailable)`, one per line.
fn candidates(v: &Value) -> String {
    let Some(list) = v.get("candidates").and_then(Value::as_array) else {
        return NONE.to_owned();
    };
    if list.is_empty() {
        return NONE.to_owned();
    }
    list.iter()
        .map(|c| {
            let mut notes = vec![field(c, "group"), format!("tier {}", field(c, "tier"))];
            if let Some(share) = c.get("weight_share_milli").and_then(Value::as_u64) {
                notes.push(format!("{}.{}%", share / 10, share % 10));
            }
            if c.get("backup").and_then(Value::as_bool) == Some(true) {
                notes.push("backup".into());
            }
            if c.pointer("/health/available").and_then(Value::as_bool) == Some(false) {
                notes.push("unavailable".into());
            }
            format!(
                "{}. {} ({})",
                field(c, "position"),
                field(c, "deployment_id"),
                notes.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `deployment: reason`, one per line.
fn skipped(v: &Value) -> String {
    match v.get("skipped").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|s| format!("{}: {}", field(s, "deployment_id"), field(s, "reason")))
            .collect::<Vec<_>>()
            .join("; "),
        _ => NONE.to_owned(),
    }
}

const EXPLAIN_COLUMNS: &[Column] = &[
    Column {
        header: "ALLOWED",
        cell: |v| field(v, "allowed"),
    },
    Column {
        header: "REASON",
        cell: |v| field(v, "reason"),
    },
    Column {
        header: "MESSAGE",
        cell: |v| field(v, "message"),
    },
    Column {
        header: "TRAFFIC CLASS",
        cell: |v| field(v, "traffic_class"),
    },
    Column {
        header: "CANDIDATES",
        cell: candidates,
    },
    Column {
        header: "SKIPPED",
        cell: skipped,
    },
];

impl Run for RoutesCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            RoutesCommand::Create { alias, deployments } => {
                let body = json!({
                    "alias": alias,
                    "deployments": deployments.iter().map(Deployment::to_json).collect::<Vec<_>>(),
                });
                let value = client.post(&["routes"], Some(&body)).await?;
                Ok(Reply::One {
                    value,
                    columns: COLUMNS,
                })
            }
            RoutesCommand::List(args) => list(client, &["routes"], &[], &args, COLUMNS).await,
            RoutesCommand::Explain {
                key_id,
                model,
                surface,
                traffic_class,
            } => {
                let mut body = json!({
                    "key_id": key_id,
                    "surface": surface,
                    "request": {"model": model},
                });
                if let Some(class) = traffic_class {
                    body["traffic_class"] = json!(class);
                }
                let value = client.post(&["explain"], Some(&body)).await?;
                Ok(Reply::One {
                    value,
                    columns: EXPLAIN_COLUMNS,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_parse_with_and_without_a_weight() {
        let check = |s: &str, provider: &str, model: &str, weight: Option<u32>| {
            assert_eq!(
                parse_deployment(s),
                Ok(Deployment {
                    provider_id: provider.to_owned(),
                    model: model.to_owned(),
                    weight
                }),
                "{s}"
            );
        };
        check("p1:gpt-4o", "p1", "gpt-4o", None);
        check("p1:gpt-4o:3", "p1", "gpt-4o", Some(3));
        check("p1:llama3:8b:1", "p1", "llama3:8b", Some(1));
        check("p1:llama3:latest", "p1", "llama3:latest", None);
        for bad in ["p1", ":gpt-4o", "p1:", "p1::2", "p1:m:99999999999"] {
            assert!(parse_deployment(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn deployment_cells_show_provider_model_and_weight() {
        let route = json!({"deployments": [
            {"provider_id": "p1", "model": "a", "weight": 3},
            {"provider_id": "p2", "model": "b"}
        ]});
        assert_eq!(deployments(&route), "p1/a ×3, p2/b ×1");
        assert_eq!(deployments(&json!({})), "-");
    }
}
