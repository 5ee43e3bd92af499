//! `modelgate nodes revoke`.

use clap::Subcommand;

use super::table::{field, time, Column};
use super::{AdminClient, CliError, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
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

impl Run for NodesCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
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
