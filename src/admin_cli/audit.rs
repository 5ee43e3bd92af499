//! `modelgate audit list`: who changed what.

use clap::Subcommand;

use super::table::{field, first, time, Column};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit log entries, oldest first.
    List {
        /// Only entries about this kind of resource (e.g. `key`, `team`).
        #[arg(long)]
        resource_type: Option<String>,
        /// Only entries about this resource id.
        #[arg(long)]
        resource_id: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
}

const COLUMNS: &[Column] = &[
    Column {
        header: "TIME",
        cell: |v| time(v, "created_at"),
    },
    Column {
        header: "ACTOR",
        cell: |v| first(v, &["actor_id", "actor"]),
    },
    Column {
        header: "ACTION",
        cell: |v| field(v, "action"),
    },
    Column {
        header: "RESOURCE TYPE",
        cell: |v| field(v, "resource_type"),
    },
    Column {
        header: "RESOURCE ID",
        cell: |v| field(v, "resource_id"),
    },
    Column {
        header: "REQUEST ID",
        cell: |v| field(v, "request_id"),
    },
];

impl Run for AuditCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            AuditCommand::List {
                resource_type,
                resource_id,
                list: args,
            } => {
                let mut filters = Vec::new();
                if let Some(t) = resource_type {
                    filters.push(("resource_type", t));
                }
                if let Some(id) = resource_id {
                    filters.push(("resource_id", id));
                }
                list(client, &["audit"], &filters, &args, COLUMNS).await
            }
        }
    }
}
