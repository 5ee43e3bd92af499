//! `modelgate nodes list|revoke`.

use clap::Subcommand;

use super::table::{field, time, Column};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// List data-plane nodes: assigned and applied config versions, drift, request and error
    /// rates, last seen.
    List(ListArgs),
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
        header: "LAST SEEN",
        cell: |v| time(v, "last_seen"),
    },
];

impl Run for NodesCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            NodesCommand::List(args) => list(client, &["nodes"], &[], &args, LIST_COLUMNS).await,
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
