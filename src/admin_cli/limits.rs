//! `modelgate limits create|list|show|delete`: rate limits on a key, team, user or model alias.

use clap::{ArgGroup, Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::table::{field, Column};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Create a rate limit (requests/min, tokens/min, concurrent requests), held across every
    /// data plane.
    Create(CreateArgs),
    /// List rate limits with what the fleet holds of each measure now.
    List(ListArgs),
    /// Show one rate limit with each measure's current window and per-node shares.
    Show {
        /// The limit's id.
        id: String,
    },
    /// Delete a rate limit; data planes stop applying it with the next snapshot.
    Delete {
        /// The limit's id.
        id: String,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["key_id", "team_id", "user_id", "model_alias"])))]
pub struct CreateArgs {
    /// Limit one key.
    #[arg(long)]
    key_id: Option<String>,
    /// Limit a team (every key of it together).
    #[arg(long)]
    team_id: Option<String>,
    /// Limit a user (every key they own together).
    #[arg(long)]
    user_id: Option<String>,
    /// Limit every request for a model alias, whoever makes it.
    #[arg(long)]
    model_alias: Option<String>,
    /// With --key-id, --team-id or --user-id: count only requests for this alias.
    #[arg(long)]
    only_model: Option<String>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// Input plus output tokens per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// Requests in flight at once.
    #[arg(long)]
    max_concurrent: Option<u32>,
    /// fail_open (each node holds the whole limit alone) or fail_closed, while the control
    /// plane is unreachable.
    #[arg(long)]
    when_unreachable: Option<String>,
}

fn scope_cell(v: &Value) -> String {
    let s = &v["scope"];
    for (name, label) in [
        ("key_id", "key"),
        ("team_id", "team"),
        ("user_id", "user"),
        ("model", "model"),
    ] {
        if let Some(id) = s[name].as_str() {
            return match v["model"].as_str() {
                Some(m) => format!("{label} {id} ({m})"),
                None => format!("{label} {id}"),
            };
        }
    }
    String::new()
}

/// `taken/limit` per limited measure in the current window.
fn usage_cell(v: &Value) -> String {
    v["state"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    format!(
                        "{} {}/{}",
                        m["measure"].as_str().unwrap_or_default(),
                        m["consumed"],
                        m["limit"]
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

const COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        cell: |v| field(v, "id"),
    },
    Column {
        header: "SCOPE",
        cell: scope_cell,
    },
    Column {
        header: "RPM",
        cell: |v| field(v, "rpm"),
    },
    Column {
        header: "TPM",
        cell: |v| field(v, "tpm"),
    },
    Column {
        header: "CONCURRENT",
        cell: |v| field(v, "max_concurrent"),
    },
    Column {
        header: "UNREACHABLE",
        cell: |v| field(v, "when_unreachable"),
    },
    Column {
        header: "NOW (TAKEN/LIMIT)",
        cell: usage_cell,
    },
];

impl CreateArgs {
    fn body(self) -> Value {
        let scope = match (self.key_id, self.team_id, self.user_id, self.model_alias) {
            (Some(id), ..) => json!({ "key_id": id }),
            (_, Some(id), ..) => json!({ "team_id": id }),
            (_, _, Some(id), _) => json!({ "user_id": id }),
            (.., Some(alias)) => json!({ "model": alias }),
            _ => json!({}),
        };
        let mut body = json!({ "scope": scope });
        if let Some(m) = self.only_model {
            body["model"] = json!(m);
        }
        if let Some(v) = self.rpm {
            body["rpm"] = json!(v);
        }
        if let Some(v) = self.tpm {
            body["tpm"] = json!(v);
        }
        if let Some(v) = self.max_concurrent {
            body["max_concurrent"] = json!(v);
        }
        if let Some(v) = self.when_unreachable {
            body["when_unreachable"] = json!(v);
        }
        body
    }
}

impl Run for LimitsCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            LimitsCommand::Create(args) => {
                let value = client.post(&["rate-limits"], Some(&args.body())).await?;
                Ok(Reply::One {
                    value,
                    columns: COLUMNS,
                })
            }
            LimitsCommand::List(args) => list(client, &["rate-limits"], &[], &args, COLUMNS).await,
            LimitsCommand::Show { id } => Ok(Reply::One {
                value: client.get(&["rate-limits", &id]).await?,
                columns: COLUMNS,
            }),
            LimitsCommand::Delete { id } => {
                client
                    .call(Method::DELETE, &["rate-limits", &id], &[], None)
                    .await?;
                Ok(Reply::Text {
                    value: json!({ "deleted": id }),
                    text: format!("deleted rate limit {id}\n"),
                })
            }
        }
    }
}
