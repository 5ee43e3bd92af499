//! `modelgate nodes list|revoke`.

use clap::Subcommand;

use serde_json::{json, Value};

use super::client::PAGE_SIZE;
use super::table::{field, time, Column};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// List data-plane nodes: assigned and applied config versions, drift, request and error
    /// rates, last seen.
    List(ListArgs),
    /// Wait until every connected data plane serves the config as it is now, every change
    /// committed so far included (changes reach the nodes within about a second; scripts that
    /// change config and then send traffic run this in between).
    Wait {
        /// Give up (exit 1, naming the nodes behind) after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
    /// Revoke a data-plane node: its streams are closed and it is refused from now on, by
    /// every control plane.
    Revoke {
        /// The node id its certificate names.
        id: String,
    },
}

const COLUMNS: &[Column] = &[
    Column {
        header: "NODE",
        cell: |v| field(v, "node_id"),
    },
    Column {
        header: "REVOKED",
        cell: |v| time(v, "revoked_at"),
    },
    Column {
        header: "BY",
        cell: |v| field(v, "revoked_by"),
    },
];

const LIST_COLUMNS: &[Column] = &[
    Column {
        header: "NODE",
        cell: |v| field(v, "node_id"),
    },
    Column {
        header: "CONNECTED",
        cell: |v| field(v, "connected"),
    },
    Column {
        header: "ASSIGNED",
        cell: |v| field(v, "assigned_version"),
    },
    Column {
        header: "APPLIED",
        cell: |v| field(v, "applied_version"),
    },
    Column {
        header: "DRIFTING",
        cell: |v| field(v, "drifting"),
    },
    Column {
        header: "REQ/S",
        cell: |v| format!("{:.2}", v["request_rate"].as_f64().unwrap_or(0.0)),
    },
    Column {
        header: "ERR/S",
        cell: |v| format!("{:.2}", v["error_rate"].as_f64().unwrap_or(0.0)),
    },
    Column {
        header: "VERSION",
        cell: |v| field(v, "software_version"),
    },
    Column {
        header: "REPLICA",
        cell: |v| field(v, "replica"),
    },
    Column {
        header: "LAST SEEN",
        cell: |v| time(v, "last_seen"),
    },
];

impl Run for NodesCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            NodesCommand::List(args) => list(client, &["nodes"], &[], &args, LIST_COLUMNS).await,
            NodesCommand::Wait { timeout_secs } => wait(client, timeout_secs).await,
            NodesCommand::Revoke { id } => {
                let value = client.post(&["nodes", &id, "revoke"], None).await?;
                Ok(Reply::One {
                    value,
                    columns: COLUMNS,
                })
            }
        }
    }
}

/// The connected nodes whose applied version is below their target, as `node (applied/target)`.
fn behind(nodes: &[Value]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n["connected"].as_bool() == Some(true))
        .filter(|n| n["applied_version"].as_i64() < n["target_version"].as_i64())
        .map(|n| {
            format!(
                "{} (applied {}, due {})",
                field(n, "node_id"),
                field(n, "applied_version"),
                field(n, "target_version")
            )
        })
        .collect()
}

async fn wait(client: &AdminClient, timeout_secs: u64) -> Result<Reply, CliError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_secs);
    loop {
        let nodes = client.list(&["nodes"], &[], None, PAGE_SIZE).await?;
        let late = behind(&nodes);
        if late.is_empty() {
            let connected: Vec<&Value> = nodes
                .iter()
                .filter(|n| n["connected"].as_bool() == Some(true))
                .collect();
            let text = format!(
                "{} connected node{} serve{} the current config\n",
                connected.len(),
                if connected.len() == 1 { "" } else { "s" },
                if connected.len() == 1 { "s" } else { "" },
            );
            return Ok(Reply::Text {
                value: json!({"connected": connected.len(), "in_sync": true}),
                text,
            });
        }
        if std::time::Instant::now() >= deadline {
            return Err(CliError::Usage(format!(
                "after {timeout_secs} s these nodes still serve an older config: {}",
                late.join(", ")
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connected_node_below_its_target_is_behind_and_a_disconnected_one_is_not() {
        let nodes = [
            json!({"node_id": "eu-1", "connected": true, "applied_version": 6, "target_version": 7}),
            json!({"node_id": "eu-2", "connected": true, "applied_version": 7, "target_version": 7}),
            json!({"node_id": "us-1", "connected": false, "applied_version": 2, "target_version": 0}),
        ];
        assert_eq!(behind(&nodes), ["eu-1 (applied 6, due 7)"]);
        assert!(behind(&nodes[1..]).is_empty());
    }
}
