//! `modelgate teams create|list`.

use clap::Subcommand;
use serde_json::json;

use super::table::{field, time, Column};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// Create a team.
    Create {
        /// The team's name (unique).
        #[arg(long)]
        name: String,
    },
    /// List teams.
    List(ListArgs),
}

const COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        cell: |v| field(v, "id"),
    },
    Column {
        header: "NAME",
        cell: |v| field(v, "name"),
    },
    Column {
        header: "CREATED",
        cell: |v| time(v, "created_at"),
    },
];

impl Run for TeamsCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            TeamsCommand::Create { name } => {
                let value = client
                    .post(&["teams"], Some(&json!({ "name": name })))
                    .await?;
                Ok(Reply::One {
                    value,
                    columns: COLUMNS,
                })
            }
            TeamsCommand::List(args) => list(client, &["teams"], &[], &args, COLUMNS).await,
        }
    }
}
