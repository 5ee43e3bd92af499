//! `modelgate teams|users|keys|providers|models|routes|budgets|balances|statements|limits|audit|nodes|usage|requests|rollouts …`:
//! the admin CLI.
//! Every command is
//! one or more calls to the admin REST API (never the database), printed as an aligned table,
//! as the API's JSON, or as the `--field`s a script asked for (tab-separated, no `jq` needed).
//!
//! Layout: this module holds the shared options, the command tree and the dispatch; `client`
//! the HTTP client and error mapping; `table` the formatter; one module per resource with its
//! subcommands, request bodies and table columns.

mod audit;
mod balances;
mod budgets;
pub mod client;
mod keys;
mod limits;
mod models;
mod nodes;
mod providers;
mod requests;
mod rollouts;
mod routes;
mod statements;
pub mod table;
mod teams;
mod usage;
mod users;

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

pub use client::CliError;
use client::{AdminClient, PAGE_SIZE};
use table::Column;

/// The admin commands, flattened into the binary's top-level commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Teams (admin API): create, list.
    Teams(Resource<teams::TeamsCommand>),
    /// Users (admin API): create, list.
    Users(Resource<users::UsersCommand>),
    /// Gateway keys (admin API): create, list, get, revoke, rotate, disable, enable.
    Keys(Resource<keys::KeysCommand>),
    /// Provider accounts (admin API): create, list, set-credential.
    Providers(Resource<providers::ProvidersCommand>),
    /// The pricing catalog (admin API): set, list, versions, import.
    Models(Resource<models::ModelsCommand>),
    /// Routes, model alias → deployments (admin API): create, list, explain.
    Routes(Resource<routes::RoutesCommand>),
    /// Budgets on keys, teams, users, environments (admin API): create, list, show, update,
    /// delete.
    Budgets(Resource<budgets::BudgetsCommand>),
    /// Prepaid team balances (admin API): show, adjust (top-ups and adjustments).
    Balances(Resource<balances::BalancesCommand>),
    /// Monthly statements per team (admin API): show, as a table, JSON or CSV.
    Statements(Resource<statements::StatementsCommand>),
    /// The audit log of admin changes (admin API): list.
    Audit(Resource<audit::AuditCommand>),
    /// Rate limits on keys, teams, users, model aliases (admin API): create, list, show,
    /// delete.
    Limits(Resource<limits::LimitsCommand>),
    /// Data-plane nodes (admin API): list, wait (until every node serves the current config),
    /// revoke.
    Nodes(Resource<nodes::NodesCommand>),
    /// Usage (admin API): quarantine, the events ingest refused to count.
    Usage(Resource<usage::UsageCommand>),
    /// The request log (admin API): list with filters, show one request's attempts.
    Requests(Resource<requests::RequestsCommand>),
    /// Staged rollouts of policy changes (admin API): list, show, diff, promote, pause,
    /// resume, rollback; the rollout policy: policy, set-policy, clear-policy.
    Rollouts(Resource<rollouts::RolloutsCommand>),
}

/// A resource's subcommands with the options every admin command takes.
#[derive(Debug, Args)]
pub struct Resource<C: Subcommand> {
    #[command(flatten)]
    pub options: AdminOptions,
    #[command(subcommand)]
    pub command: C,
}

/// Where the admin API is, how to authenticate, how to print.
#[derive(Debug, Args)]
pub struct AdminOptions {
    /// The admin API's base URL (what `modelgate up` prints as MODELGATE_ADMIN_URL).
    #[arg(
        long,
        env = "MODELGATE_ADMIN_URL",
        default_value = "http://127.0.0.1:9090",
        global = true
    )]
    pub admin_url: String,
    /// An admin token (`mgadm-…`), sent as `Authorization: Bearer`.
    #[arg(
        long,
        env = "MODELGATE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true,
        value_parser = |s: &str| Ok::<_, std::convert::Infallible>(secrecy::SecretString::from(s))
    )]
    pub admin_token: Option<secrecy::SecretString>,
    /// `table` for people, `json` for scripts (the API's JSON; a list prints one JSON array of
    /// every row). `--field` takes precedence.
    #[arg(
        long,
        env = "MODELGATE_OUTPUT",
        value_enum,
        default_value_t = OutputFormat::Table,
        global = true
    )]
    pub output: OutputFormat,
    /// Print only this top-level field of the result instead of the table or JSON (repeatable):
    /// the fields tab-separated in the order given, one line per row. Strings print as they are
    /// (as a JSON string when they hold a control character), null as nothing, other values as
    /// compact JSON. A field no row has is an error. Give every `--field` on the same side of
    /// the subcommand. E.g. `read -r ID KEY < <(modelgate keys create … --field id --field
    /// key_secret)`.
    #[arg(long = "field", value_name = "NAME", global = true)]
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned human-readable table.
    Table,
    /// The admin API's JSON, pretty-printed.
    Json,
}

/// Options of every `list` command.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print at most this many rows (default: every row; pages are followed through
    /// `next_cursor`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// What a command got back from the API, before printing.
pub enum Reply {
    /// One object (created, fetched or changed).
    One {
        value: Value,
        columns: &'static [Column],
    },
    /// One object carrying a one-time `key_secret` (a created or rotated key).
    WithSecret {
        value: Value,
        columns: &'static [Column],
    },
    /// Every row of a list.
    Many {
        rows: Vec<Value>,
        columns: &'static [Column],
    },
    /// A value with its own text rendering (an import diff).
    Text { value: Value, text: String },
}

/// What to print: `stdout`, and a notice for stderr.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Printed {
    pub stdout: String,
    pub notice: Option<String>,
}

const SECRET_NOTICE: &str =
    "Store this key secret now: it is shown once and cannot be retrieved again.";

impl Reply {
    pub fn render(&self, format: OutputFormat) -> Printed {
        match (self, format) {
            (Reply::One { value, .. }, OutputFormat::Json) => Printed {
                stdout: pretty(value),
                notice: None,
            },
            (Reply::WithSecret { value, .. }, OutputFormat::Json) => Printed {
                stdout: pretty(value),
                notice: Some(format!("note: `key_secret` is shown once. {SECRET_NOTICE}")),
            },
            (Reply::Many { rows, .. }, OutputFormat::Json) => Printed {
                stdout: pretty(&Value::Array(rows.clone())),
                notice: None,
            },
            (Reply::One { value, columns }, OutputFormat::Table) => Printed {
                stdout: table::record(columns, value),
                notice: None,
            },
            (Reply::WithSecret { value, columns }, OutputFormat::Table) => {
                let mut stdout = table::record(columns, value);
                if let Some(secret) = value.get("key_secret").and_then(Value::as_str) {
                    stdout.push_str(&format!("\nkey_secret: {secret}\n{SECRET_NOTICE}\n"));
                }
                Printed {
                    stdout,
                    notice: None,
                }
            }
            (Reply::Many { rows, columns }, OutputFormat::Table) => Printed {
                stdout: table::rows(columns, rows),
                notice: None,
            },
            (Reply::Text { value, .. }, OutputFormat::Json) => Printed {
                stdout: pretty(value),
                notice: None,
            },
            (Reply::Text { text, .. }, OutputFormat::Table) => Printed {
                stdout: text.clone(),
                notice: None,
            },
        }
    }
}

impl Reply {
    /// The rows `--field` reads: the one object, every row of a list, or (for a text reply)
    /// the elements of an array value or the value itself.
    fn field_rows(&self) -> Vec<&Value> {
        match self {
            Reply::One { value, .. } | Reply::WithSecret { value, .. } => vec![value],
            Reply::Many { rows, .. } => rows.iter().collect(),
            Reply::Text {
                value: Value::Array(rows),
                ..
            } => rows.iter().collect(),
            Reply::Text { value, .. } => vec![value],
        }
    }

    /// `--field NAME…`: the named top-level fields of each row, tab-separated, one line per
    /// row. A name no row has is an error naming the fields that exist (an empty list prints
    /// nothing, as there is no row to check against). A one-time `key_secret` keeps its
    /// notice on stderr, and one that was not asked for is reported as lost.
    pub fn render_fields(&self, names: &[String]) -> Result<Printed, CliError> {
        let rows = self.field_rows();
        if !rows.is_empty() {
            if let Some(missing) = names
                .iter()
                .find(|name| !rows.iter().any(|row| row.get(name.as_str()).is_some()))
            {
                let existing: std::collections::BTreeSet<&str> = rows
                    .iter()
                    .filter_map(|row| row.as_object())
                    .flat_map(|object| object.keys().map(String::as_str))
                    .collect();
                let existing = if existing.is_empty() {
                    "none: the result is not an object".to_owned()
                } else {
                    existing.into_iter().collect::<Vec<_>>().join(", ")
                };
                return Err(CliError::Usage(format!(
                    "--field {missing}: the result has no field `{missing}` (its fields: \
                     {existing}); the request itself succeeded"
                )));
            }
        }
        let mut stdout = String::new();
        for row in rows {
            let cells: Vec<String> = names
                .iter()
                .map(|name| field_text(row.get(name.as_str())))
                .collect();
            stdout.push_str(&cells.join("\t"));
            stdout.push('\n');
        }
        let notice = match self {
            Reply::WithSecret { .. } if names.iter().any(|n| n == "key_secret") => {
                Some(format!("note: `key_secret` is shown once. {SECRET_NOTICE}"))
            }
            Reply::WithSecret { .. } => Some(
                "note: the one-time `key_secret` was not among the --field names and cannot be \
                 retrieved again; `keys rotate` issues a new one."
                    .to_owned(),
            ),
            _ => None,
        };
        Ok(Printed { stdout, notice })
    }
}

/// One `--field` cell: a string as it is (as a JSON string when it holds a control character,
/// so a row stays one line and sends no escape sequence), nothing for null or absent, and
/// compact JSON for anything else.
fn field_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.chars().any(|c| c < ' ') => {
            Value::String(s.clone()).to_string()
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

/// Runs one admin command: its output on stdout, or `error: …` on stderr and exit code 1.
pub async fn run(command: AdminCommand) -> ExitCode {
    match execute(command).await {
        Ok(printed) => {
            // A closed stdout (`| head`) is not an error worth a panic or a message.
            let mut out = std::io::stdout().lock();
            let _ = out
                .write_all(printed.stdout.as_bytes())
                .and_then(|()| out.flush());
            if let Some(notice) = printed.notice {
                let _ = writeln!(std::io::stderr().lock(), "{notice}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "{}", e.render());
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: AdminCommand) -> Result<Printed, CliError> {
    match command {
        AdminCommand::Teams(r) => r.execute().await,
        AdminCommand::Users(r) => r.execute().await,
        AdminCommand::Keys(r) => r.execute().await,
        AdminCommand::Providers(r) => r.execute().await,
        AdminCommand::Models(r) => r.execute().await,
        AdminCommand::Routes(r) => r.execute().await,
        AdminCommand::Budgets(r) => r.execute().await,
        AdminCommand::Balances(r) => r.execute().await,
        AdminCommand::Statements(r) => r.execute().await,
        AdminCommand::Audit(r) => r.execute().await,
        AdminCommand::Limits(r) => r.execute().await,
        AdminCommand::Nodes(r) => r.execute().await,
        AdminCommand::Usage(r) => r.execute().await,
        AdminCommand::Requests(r) => r.execute().await,
        AdminCommand::Rollouts(r) => r.execute().await,
    }
}

/// A resource's subcommand: the API calls it makes and what came back.
pub trait Run {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError>;
}

impl<C: Subcommand + Run> Resource<C> {
    async fn execute(self) -> Result<Printed, CliError> {
        let client = AdminClient::new(
            &self.options.admin_url,
            self.options
                .admin_token
                .as_ref()
                .map(secrecy::ExposeSecret::expose_secret),
        )?;
        let reply = self.command.run(&client).await?;
        if self.options.fields.is_empty() {
            Ok(reply.render(self.options.output))
        } else {
            reply.render_fields(&self.options.fields)
        }
    }
}

/// Lists every row of `segments` (up to `limit`) as a [`Reply::Many`].
async fn list(
    client: &AdminClient,
    segments: &[&str],
    filters: &[(&str, String)],
    args: &ListArgs,
    columns: &'static [Column],
) -> Result<Reply, CliError> {
    let rows = client
        .list(segments, filters, args.limit, PAGE_SIZE)
        .await?;
    Ok(Reply::Many { rows, columns })
}

#[cfg(test)]
mod tests;
