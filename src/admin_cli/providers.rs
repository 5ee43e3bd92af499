//! `modelgate providers create|set-credential|list`. A credential goes to the API once and is
//! never shown again (the API answers only its last 4 characters).

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::table::{field, time, Column, NONE};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Register a provider account.
    Create {
        /// The account's name (unique).
        #[arg(long)]
        name: String,
        /// `openai`, `openai-compatible`, `anthropic`, `azure-openai`, `gemini` or `mock`.
        #[arg(long)]
        kind: String,
        /// The API base URL, e.g. `http://127.0.0.1:8000/v1` (required for
        /// `openai-compatible`; the others have a default). For `anthropic` it is the host root,
        /// e.g. `https://api.anthropic.com`: the gateway calls `{base_url}/v1/messages`; for
        /// `gemini` too (`https://generativelanguage.googleapis.com`, the default): the gateway
        /// calls `{base_url}/v1beta/models/{model}:generateContent`. For `azure-openai` it is the
        /// resource root, `https://{resource}.openai.azure.com`, optionally with
        /// `?api-version=...` (default 2024-10-21).
        #[arg(long)]
        base_url: Option<String>,
        /// The provider API key. Prefer the environment variable, which keeps it out of the
        /// shell history and the process list.
        #[arg(long, env = "MODELGATE_PROVIDER_CREDENTIAL", hide_env_values = true)]
        credential: Option<String>,
    },
    /// Replace a provider account's credential (an upstream key rotated or leaked). Every data
    /// plane uses the new one at once, also during a staged rollout.
    SetCredential {
        /// The provider account's id.
        id: String,
        /// The new provider API key. Prefer the environment variable, which keeps it out of
        /// the shell history and the process list.
        #[arg(long, env = "MODELGATE_PROVIDER_CREDENTIAL", hide_env_values = true)]
        credential: String,
    },
    /// List provider accounts.
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
        header: "KIND",
        cell: |v| field(v, "kind"),
    },
    Column {
        header: "BASE URL",
        cell: |v| field(v, "base_url"),
    },
    Column {
        header: "CREDENTIAL",
        cell: credential,
    },
    Column {
        header: "CREATED",
        cell: |v| time(v, "created_at"),
    },
];

/// `…1234` from `credential_last4`, or `-` when the account has none.
fn credential(v: &Value) -> String {
    match v.get("credential_last4").and_then(Value::as_str) {
        Some(last4) if !last4.is_empty() => format!("…{last4}"),
        _ => NONE.to_owned(),
    }
}

impl Run for ProvidersCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            ProvidersCommand::Create {
                name,
                kind,
                base_url,
                credential,
            } => {
                let mut body = Map::new();
                body.insert("name".into(), json!(name));
                body.insert("kind".into(), json!(kind));
                if let Some(url) = base_url {
                    body.insert("base_url".into(), json!(url));
                }
                if let Some(credential) = credential {
                    body.insert("credential".into(), json!(credential));
                }
                let value = client
                    .post(&["providers"], Some(&Value::Object(body)))
                    .await?;
                Ok(Reply::One {
                    value,
                    columns: COLUMNS,
                })
            }
            ProvidersCommand::SetCredential { id, credential } => {
                let value = client
                    .call(
                        Method::PUT,
                        &["providers", &id, "credential"],
                        &[],
                        Some(&json!({"credential": credential})),
                    )
                    .await?;
                Ok(Reply::One {
                    value,
                    columns: COLUMNS,
                })
            }
            ProvidersCommand::List(args) => list(client, &["providers"], &[], &args, COLUMNS).await,
        }
    }
}
