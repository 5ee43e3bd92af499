//! `modelgate usage quarantine`: usage events the control plane refused to count, with the node
//! that reported each and the reason.

use clap::Subcommand;

use super::table::{field, time, Column};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// List quarantined usage events, oldest first (owner, admin or billing tokens without a
    /// team scope).
    Quarantine {
        #[command(flatten)]
        list: ListArgs,
    },
}

const COLUMNS: &[Column] = &[
    Column {
        header: "TIME",
        cell: |v| time(v, "quarantined_at"),
    },
    Column {
        header: "NODE",
        cell: |v| field(v, "node_id"),
    },
    Column {
        header: "EVENT ID",
        cell: |v| field(v, "event_id"),
    },
    Column {
        header: "REASON",
        cell: |v| field(v, "reason"),
    },
];

impl Run for UsageCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            UsageCommand::Quarantine { list: args } => {
                list(client, &["usage", "quarantine"], &[], &args, COLUMNS).await
            }
        }
    }
}
