//! `modelgate models set|list`: the pricing catalog.

use clap::Subcommand;
use serde_json::json;

use super::table::{field, time, Column};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Set a provider model's price (creates it, or updates it with a new price version).
    Set {
        /// The provider's model name, as deployments name it (e.g. `gpt-4o-2024-08-06`).
        #[arg(long)]
        model: String,
        /// Input price in integer micro-USD per 1M tokens (2500000 = $2.50).
        #[arg(long)]
        input_micros_per_mtok: i64,
        /// Output price in integer micro-USD per 1M tokens.
        #[arg(long)]
        output_micros_per_mtok: i64,
    },
    /// List model prices.
    List(ListArgs),
}

const COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        cell: |v| field(v, "id"),
    },
    Column {
        header: "MODEL",
        cell: |v| field(v, "model"),
    },
    Column {
        header: "INPUT MICROS/MTOK",
        cell: |v| field(v, "input_micros_per_mtok"),
    },
    Column {
        header: "OUTPUT MICROS/MTOK",
        cell: |v| field(v, "output_micros_per_mtok"),
    },
    Column {
        header: "PRICE VERSION",
        cell: |v| field(v, "price_version"),
    },
    Column {
        header: "CREATED",
        cell: |v| time(v, "created_at"),
    },
];

impl Run for ModelsCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            ModelsCommand::Set {
                model,
                input_micros_per_mtok,
                output_micros_per_mtok,
            } => {
                let body = json!({
                    "model": model,
                    "input_micros_per_mtok": input_micros_per_mtok,
                    "output_micros_per_mtok": output_micros_per_mtok,
                });
                let value = client.post(&["models"], Some(&body)).await?;
                Ok(Reply::One {
                    value,
                    columns: COLUMNS,
                })
            }
            ModelsCommand::List(args) => list(client, &["models"], &[], &args, COLUMNS).await,
        }
    }
}
