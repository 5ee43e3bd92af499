//! `modelgate routes create|list`: model alias → deployments.

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
