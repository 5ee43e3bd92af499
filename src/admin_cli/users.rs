//! `modelgate users create|list`.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::table::{field, time, Column};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user (a person who can own keys and belong to teams).
    Create {
        /// The user's email address (unique).
        #[arg(long)]
        email: String,
        /// A display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// List users.
    List(ListArgs),
}

const COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        cell: |v| field(v, "id"),
    },
    Column {
        header: "EMAIL",
        cell: |v| field(v, "email"),
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

impl Run for UsersCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            UsersCommand::Create { email, name } => {
                let mut body = Map::new();
                body.insert("email".into(), json!(email));
                if let Some(name) = name {
                    body.insert("name".into(), json!(name));
                }
                let value = client.post(&["users"], Some(&Value::Object(body))).await?;
                Ok(Reply::One {
                    value,
                    columns: COLUMNS,
                })
            }
            UsersCommand::List(args) => list(client, &["users"], &[], &args, COLUMNS).await,
        }
    }
}
