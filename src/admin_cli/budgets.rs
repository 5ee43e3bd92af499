//! `modelgate budgets create|list|show|update|delete`.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::table::{field, Column};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum BudgetsCommand {
    /// Create a budget on one scope.
    Create(CreateArgs),
    /// List budgets (optionally of one scope) with the current period's figures.
    List {
        #[command(flatten)]
        scope: ScopeArgs,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one budget: spent, reserved, remaining and per-node allocations.
    Show {
        /// The budget's id.
        id: String,
    },
    /// Change a budget's amount, enforcement, webhook or unreachable policy.
    Update(UpdateArgs),
    /// Delete a budget.
    Delete {
        /// The budget's id.
        id: String,
    },
}

/// Exactly one scope for `create`; at most one for `list`.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long)]
    pub team_id: Option<String>,
    #[arg(long)]
    pub user_id: Option<String>,
    /// dev | staging | prod
    #[arg(long)]
    pub environment: Option<String>,
}

impl ScopeArgs {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("key_id", &self.key_id),
            ("team_id", &self.team_id),
            ("user_id", &self.user_id),
            ("environment", &self.environment),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// The amount per period in micro-USD (1 USD = 1 000 000).
    #[arg(long)]
    pub amount_micros: i64,
    /// day | week | month | total
    #[arg(long)]
    pub period: String,
    /// hard | soft
    #[arg(long)]
    pub enforcement: String,
    /// fail_closed | fail_open
    #[arg(long)]
    pub when_unreachable: Option<String>,
    #[arg(long)]
    pub fail_open_allowance_micros: Option<i64>,
    /// POSTed a JSON alert at 50, 80 and 100 % of the amount.
    #[arg(long)]
    pub alert_webhook_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The budget's id.
    pub id: String,
    #[arg(long)]
    pub amount_micros: Option<i64>,
    /// hard | soft
    #[arg(long)]
    pub enforcement: Option<String>,
    /// fail_closed | fail_open
    #[arg(long)]
    pub when_unreachable: Option<String>,
    #[arg(long)]
    pub fail_open_allowance_micros: Option<i64>,
    /// An empty value removes the webhook.
    #[arg(long)]
    pub alert_webhook_url: Option<String>,
}

const COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        cell: |v| field(v, "id"),
    },
    Column {
        header: "SCOPE",
        cell: |v| {
            let s = &v["scope"];
            ["key_id", "team_id", "user_id", "environment"]
                .iter()
                .find_map(|k| {
                    s.get(*k)
                        .and_then(Value::as_str)
                        .map(|id| format!("{k}={id}"))
                })
                .unwrap_or_default()
        },
    },
    Column {
        header: "PERIOD",
        cell: |v| field(v, "period"),
    },
    Column {
        header: "ENFORCEMENT",
        cell: |v| field(v, "enforcement"),
    },
    Column {
        header: "AMOUNT_MICROS",
        cell: |v| field(v, "amount_micros"),
    },
    Column {
        header: "SPENT_MICROS",
        cell: |v| field(v, "spent_micros"),
    },
    Column {
        header: "REMAINING_MICROS",
        cell: |v| field(v, "remaining_micros"),
    },
];

fn put(body: &mut Map<String, Value>, name: &str, v: Option<Value>) {
    if let Some(v) = v {
        body.insert(name.to_owned(), v);
    }
}

impl Run for BudgetsCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        let one = |value| Reply::One {
            value,
            columns: COLUMNS,
        };
        match self {
            BudgetsCommand::Create(a) => {
                let scope: Map<String, Value> = a
                    .scope
                    .pairs()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Value::String(v)))
                    .collect();
                let mut body = Map::new();
                body.insert("scope".into(), Value::Object(scope));
                body.insert("amount_micros".into(), json!(a.amount_micros));
                body.insert("period".into(), json!(a.period));
                body.insert("enforcement".into(), json!(a.enforcement));
                put(
                    &mut body,
                    "when_unreachable",
                    a.when_unreachable.map(Value::String),
                );
                put(
                    &mut body,
                    "fail_open_allowance_micros",
                    a.fail_open_allowance_micros.map(|v| json!(v)),
                );
                put(
                    &mut body,
                    "alert_webhook_url",
                    a.alert_webhook_url.map(Value::String),
                );
                Ok(one(client
                    .post(&["budgets"], Some(&Value::Object(body)))
                    .await?))
            }
            BudgetsCommand::List { scope, list: args } => {
                list(client, &["budgets"], &scope.pairs(), &args, COLUMNS).await
            }
            BudgetsCommand::Show { id } => Ok(one(client.get(&["budgets", &id]).await?)),
            BudgetsCommand::Update(a) => {
                let mut body = Map::new();
                put(
                    &mut body,
                    "amount_micros",
                    a.amount_micros.map(|v| json!(v)),
                );
                put(&mut body, "enforcement", a.enforcement.map(Value::String));
                put(
                    &mut body,
                    "when_unreachable",
                    a.when_unreachable.map(Value::String),
                );
                put(
                    &mut body,
                    "fail_open_allowance_micros",
                    a.fail_open_allowance_micros.map(|v| json!(v)),
                );
                put(
                    &mut body,
                    "alert_webhook_url",
                    a.alert_webhook_url.map(Value::String),
                );
                Ok(one(client
                    .patch(&["budgets", &a.id], &Value::Object(body))
                    .await?))
            }
            BudgetsCommand::Delete { id } => {
                client.delete(&["budgets", &id]).await?;
                Ok(Reply::Text {
                    value: json!({"deleted": id}),
                    text: format!("deleted budget {id}\n"),
                })
            }
        }
    }
}
