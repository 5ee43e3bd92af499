//! `modelgate rollouts list|show|diff|promote|pause|resume|rollback|policy|set-policy|clear-policy`:
//! staged rollouts of policy changes and the rollout policy they follow.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::table::{field, time, Column};
use super::{AdminClient, CliError, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum RolloutsCommand {
    /// List the latest rollouts, newest first.
    List,
    /// Show one rollout: its waves, their nodes, the gates' last reading.
    Show {
        /// The rollout's id.
        id: String,
    },
    /// Preview what the rollout's new version changes (routes, providers, prices, budgets,
    /// rate limits added, changed or removed).
    Diff {
        /// The rollout's id.
        id: String,
    },
    /// Start the next wave now (completes the rollout after its last wave).
    Promote {
        /// The rollout's id.
        id: String,
    },
    /// Stop the rollout where it is (security changes still reach every node).
    Pause {
        /// The rollout's id.
        id: String,
    },
    /// Run a paused rollout again; the current wave bakes afresh.
    Resume {
        /// The rollout's id.
        id: String,
    },
    /// Put every node back on the old content.
    Rollback {
        /// The rollout's id.
        id: String,
    },
    /// Show the rollout policy in effect.
    Policy,
    /// Configure the rollout policy from a JSON file: `{"waves": [{"selector": "canary=true",
    /// "bake_s": 300}, ...], "gates": {...}, "on_failure": "rollback"}`.
    SetPolicy {
        /// The plan's JSON file (`-` for standard input).
        file: PathBuf,
    },
    /// Remove the rollout policy: every change goes to every node at once again.
    ClearPolicy,
}

const COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        cell: |v| field(v, "id"),
    },
    Column {
        header: "STATUS",
        cell: |v| field(v, "status"),
    },
    Column {
        header: "WAVE",
        cell: wave_cell,
    },
    Column {
        header: "OLD",
        cell: |v| field(v, "old_version"),
    },
    Column {
        header: "NEW",
        cell: |v| field(v, "new_version"),
    },
    Column {
        header: "GATES",
        cell: gates_cell,
    },
    Column {
        header: "REASON",
        cell: |v| field(v, "reason"),
    },
    Column {
        header: "STARTED",
        cell: |v| time(v, "created_at"),
    },
];

const CHANGE_COLUMNS: &[Column] = &[
    Column {
        header: "KIND",
        cell: |v| field(v, "kind"),
    },
    Column {
        header: "ID",
        cell: |v| field(v, "id"),
    },
    Column {
        header: "CHANGE",
        cell: |v| field(v, "change"),
    },
];

const POLICY_COLUMNS: &[Column] = &[Column {
    header: "PLAN",
    cell: |v| {
        if v["plan"].is_null() {
            "none (every change goes to every node at once)".to_owned()
        } else {
            v["plan"].to_string()
        }
    },
}];

/// `2/3 (region=eu-west)`: the wave reached, of how many, and its selector.
fn wave_cell(v: &Value) -> String {
    let reached = v["wave"].as_u64().unwrap_or(0) as usize;
    let waves = v["waves"].as_array().map_or(0, Vec::len);
    let selector = v["waves"][reached]["selector"].as_str().unwrap_or_default();
    format!("{}/{} ({selector})", reached + 1, waves)
}

fn gates_cell(v: &Value) -> String {
    let g = &v["gates"]["verdict"];
    match (g["verdict"].as_str(), g["reason"].as_str()) {
        (Some(verdict), Some(reason)) => format!("{verdict}: {reason}"),
        (Some(verdict), None) => verdict.to_owned(),
        _ => String::new(),
    }
}

impl Run for RolloutsCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        let one = |value| Reply::One {
            value,
            columns: COLUMNS,
        };
        Ok(match self {
            RolloutsCommand::List => {
                let page = client.get(&["rollouts"]).await?;
                Reply::Many {
                    rows: page["data"].as_array().cloned().unwrap_or_default(),
                    columns: COLUMNS,
                }
            }
            RolloutsCommand::Show { id } => one(client.get(&["rollouts", &id]).await?),
            RolloutsCommand::Diff { id } => {
                let diff = client.get(&["rollouts", &id, "diff"]).await?;
                Reply::Many {
                    rows: diff["changes"].as_array().cloned().unwrap_or_default(),
                    columns: CHANGE_COLUMNS,
                }
            }
            RolloutsCommand::Promote { id } => {
                one(client.post(&["rollouts", &id, "promote"], None).await?)
            }
            RolloutsCommand::Pause { id } => {
                one(client.post(&["rollouts", &id, "pause"], None).await?)
            }
            RolloutsCommand::Resume { id } => {
                one(client.post(&["rollouts", &id, "resume"], None).await?)
            }
            RolloutsCommand::Rollback { id } => {
                one(client.post(&["rollouts", &id, "rollback"], None).await?)
            }
            RolloutsCommand::Policy => Reply::One {
                value: client.get(&["rollouts", "policy"]).await?,
                columns: POLICY_COLUMNS,
            },
            RolloutsCommand::SetPolicy { file } => {
                let text = if file.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())
                } else {
                    std::fs::read_to_string(&file)
                }
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
                let plan: Value = serde_json::from_str(&text)
                    .map_err(|e| CliError::Usage(format!("{} is not JSON: {e}", file.display())))?;
                Reply::One {
                    value: client
                        .call(Method::PUT, &["rollouts", "policy"], &[], Some(&plan))
                        .await?,
                    columns: POLICY_COLUMNS,
                }
            }
            RolloutsCommand::ClearPolicy => Reply::One {
                value: client.delete(&["rollouts", "policy"]).await?,
                columns: POLICY_COLUMNS,
            },
        })
    }
}
