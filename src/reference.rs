//! The configuration reference in `docs/reference/`, generated from the code so it cannot
//! drift: `cli.md` (the long help of every command), `environment.md` (every environment
//! variable the binary reads) and `admin-api.md` (the admin API's OpenAPI document).
//!
//! A unit test renders the three files and compares them with the committed ones;
//! `MODELGATE_UPDATE_REFERENCE=1 cargo test -p modelgate --bin modelgate reference` rewrites
//! them. Only the tests use this module, so it is compiled for them alone.
//!
//! The output depends on nothing of the machine: the help is wrapped at a fixed width, never
//! the terminal's (the binary is built without clap's `wrap_help` and prints it unwrapped),
//! and the current value of a variable is never shown (clap prints it in `[env: NAME=value]`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use clap::{Arg, Command, CommandFactory};
use serde_json::Value;

use crate::cli::Cli;

/// How to regenerate, as each file's first line and the failing test's message say it.
const REGENERATE: &str =
    "MODELGATE_UPDATE_REFERENCE=1 cargo test -p modelgate --bin modelgate reference";

/// The help width: fixed, so the text is the same on every machine. [`wrap`] wraps to it; clap
/// would too, were its `wrap_help` feature on.
const WIDTH: usize = 100;

/// The files under `docs/reference/` and their text.
pub fn render() -> Vec<(&'static str, String)> {
    vec![
        ("cli.md", cli()),
        ("environment.md", environment()),
        ("admin-api.md", admin_api()),
    ]
}

fn generated_line() -> String {
    format!(
        "_Generated from the code by `src/reference.rs`; do not edit. To regenerate: \
         `{REGENERATE}`._\n\n"
    )
}

/// The command tree as the reference shows it: every variable's current value hidden.
fn command_tree() -> Command {
    fn hide_env_values(command: Command) -> Command {
        command
            .mut_args(|arg| arg.hide_env_values(true))
            .mut_subcommands(hide_env_values)
    }
    hide_env_values(Cli::command())
        .term_width(WIDTH)
        .max_term_width(WIDTH)
}

/// The commands a reader can run: not hidden, not clap's `help`.
fn visible_subcommands(command: &Command) -> impl Iterator<Item = &Command> {
    command
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
}

// ---- cli.md ----

fn cli() -> String {
    let mut root = command_tree();
    root.build();
    let mut out = generated_line();
    out.push_str("# Command-line reference\n\n");
    out.push_str(
        "The `--help` of every `modelgate` command, wrapped at 100 columns. Where a flag reads \
         an environment variable, the help shows it as `[env: NAME]`; \
         [environment.md](environment.md) lists them all.\n",
    );
    cli_command(&mut out, &root, root.get_name());
    out
}

fn cli_command(out: &mut String, command: &Command, path: &str) {
    let help = command.clone().render_long_help().to_string();
    let mut lines = Vec::new();
    for line in help.lines() {
        wrap(line.trim_end(), &mut lines);
    }
    let help = lines;
    let _ = write!(
        out,
        "\n## {path}\n\n```text\n{}\n```\n",
        help.join("\n").trim_end()
    );
    for sub in visible_subcommands(command) {
        cli_command(out, sub, &format!("{path} {}", sub.get_name()));
    }
}

/// Wraps a help line longer than [`WIDTH`] at spaces. The continuation lines start under the
/// description of a `name  description` line (a command list), else at the line's own indent.
fn wrap(line: &str, out: &mut Vec<String>) {
    if line.chars().count() <= WIDTH {
        out.push(line.to_owned());
        return;
    }
    let indent = line.len() - line.trim_start().len();
    let body = &line[indent..];
    let hang = match body.find("  ") {
        Some(i) if !body[..i].contains(' ') => {
            indent + i + (body[i..].len() - body[i..].trim_start().len())
        }
        _ => indent,
    };
    let mut current = line[..hang].to_owned();
    let mut empty = true;
    for word in line[hang..].split(' ').filter(|w| !w.is_empty()) {
        if !empty && current.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push(std::mem::replace(&mut current, " ".repeat(hang)));
            empty = true;
        }
        if !empty {
            current.push(' ');
        }
        current.push_str(word);
        empty = false;
    }
    out.push(current);
}

// ---- environment.md ----

/// A variable the binary reads outside clap.
struct OutsideClap {
    name: &'static str,
    /// The source file that reads it, relative to the workspace root.
    file: &'static str,
    /// The text in `file` that reads it (a test checks it is there).
    reads: &'static str,
    /// The commands it affects.
    read_by: &'static str,
    meaning: &'static str,
}

/// Every variable read outside clap. A test greps the sources for `env::var("…")` and
/// `env::var_os("…")` and fails on a name in neither this table nor [`TEST_ONLY`].
const OUTSIDE_CLAP: &[OutsideClap] = &[
    OutsideClap {
        name: "RUST_LOG",
        file: "src/main.rs",
        reads: "EnvFilter::try_from_default_env()",
        read_by: "every command",
        meaning: "Which log lines are written to standard error, in `tracing-subscriber` \
                  `EnvFilter` syntax (e.g. `debug`, `info,modelgate_data_plane=debug`). \
                  Unset or invalid: `info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn`.",
    },
    OutsideClap {
        name: "MODELGATE_MASTER_KEY",
        file: "src/main.rs",
        reads: "std::env::var(\"MODELGATE_MASTER_KEY\")",
        read_by: "`up`",
        meaning: "The master key (64 hex characters) sealing secrets at rest. Unset or empty: \
                  `up` reads `master.key` in its data directory, and creates it (0600) with a \
                  new random key on the first run. `control-plane` and `admin rotate-master-key` \
                  read it through their `--master-key` flag (above).",
    },
];

/// Variables read only by unit tests inside the scanned sources, not by the binary.
const TEST_ONLY: &[&str] = &["MODELGATE_TEST_DATABASE_URL"];

/// The source directories of the crates linked into the binary, scanned for `env::var`.
const SCANNED: &[&str] = &[
    "src",
    "control-plane/src",
    "data-plane/src",
    "shared/src",
    "listener/src",
    "migrations/src",
    "proto/src",
];

/// One row of the clap table: a variable with one flag, default and meaning, and the commands
/// that read it so.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct EnvRow {
    name: String,
    flag: String,
    default: String,
    meaning: String,
}

fn environment() -> String {
    let mut rows: BTreeMap<EnvRow, Vec<String>> = BTreeMap::new();
    // Unbuilt, so a global flag is listed once, on the command that declares it (it applies to
    // that command's subcommands too).
    let root = command_tree();
    collect_env(&root, root.get_name(), &mut rows);

    let mut out = generated_line();
    out.push_str("# Environment variables\n\n");
    out.push_str(
        "Every environment variable `modelgate` reads. A flag given on the command line wins over \
         its variable. The same variable can mean a different default on different commands; \
         each such pair has its own row. A switch (a flag that takes no value) reads `true` or \
         `false` from its variable. Values are never shown here.\n\n",
    );
    out.push_str("## Flags\n\n");
    out.push_str("| Variable | Commands | Flag | Default | Meaning |\n");
    out.push_str("|---|---|---|---|---|\n");
    for (row, commands) in &rows {
        let commands: Vec<String> = commands.iter().map(|c| format!("`{c}`")).collect();
        let default = if row.default.is_empty() {
            String::new()
        } else {
            format!("`{}`", row.default)
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            row.name,
            commands.join(", "),
            row.flag,
            default,
            cell(&row.meaning)
        );
    }
    out.push_str("\n## Read outside the flags\n\n");
    out.push_str("| Variable | Read by | Where | Meaning |\n");
    out.push_str("|---|---|---|---|\n");
    for v in OUTSIDE_CLAP {
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | {} |",
            v.name,
            v.read_by,
            v.file,
            cell(v.meaning)
        );
    }
    out.push_str(
        "\n## Read by libraries\n\n\
         - The HTTP clients of the admin commands, `check`, the usage export webhooks and the \
         budget alert webhooks use a proxy from `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and \
         `NO_PROXY` (or their lower-case forms) when those are set (reqwest's system proxy).\n\
         - With `--otlp-endpoint`, the OpenTelemetry SDK and its OTLP exporter read their own \
         `OTEL_*` variables as the OpenTelemetry specification defines them, e.g. \
         `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*` and \
         `OTEL_EXPORTER_OTLP_HEADERS`. The endpoint itself comes from the flag.\n",
    );
    out
}

fn collect_env(command: &Command, path: &str, rows: &mut BTreeMap<EnvRow, Vec<String>>) {
    for arg in command.get_arguments() {
        let Some(name) = arg.get_env() else { continue };
        let row = EnvRow {
            name: name.to_string_lossy().into_owned(),
            flag: flag_of(arg),
            default: arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(","),
            meaning: first_sentence(
                &arg.get_long_help()
                    .or(arg.get_help())
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
        };
        let commands = rows.entry(row).or_default();
        let path = path.strip_prefix("modelgate ").unwrap_or(path).to_owned();
        if !commands.contains(&path) {
            commands.push(path);
        }
    }
    for sub in visible_subcommands(command) {
        collect_env(sub, &format!("{path} {}", sub.get_name()), rows);
    }
}

/// The flag in backticks, and the separator when the variable holds several values.
fn flag_of(arg: &Arg) -> String {
    let flag = match arg.get_long() {
        Some(long) => format!("`--{long}`"),
        None => format!(
            "`{}`",
            arg.get_value_names()
                .and_then(|names| names.first())
                .map_or_else(|| arg.get_id().to_string(), |n| n.to_string())
        ),
    };
    match arg.get_value_delimiter() {
        Some(delimiter) => format!("{flag}, values separated by `{delimiter}`"),
        None => flag,
    }
}

/// The text up to the first full stop that ends a sentence (followed by a space and a capital
/// letter, or by the end), on one line, ending in a full stop.
fn first_sentence(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices(". ") {
        if bytes.get(i + 2).is_some_and(u8::is_ascii_uppercase) {
            return text[..=i].to_owned();
        }
    }
    if text.is_empty() || text.ends_with(['.', '?', '!']) {
        text
    } else {
        format!("{text}.")
    }
}

/// Text for a Markdown table cell: one line, no column breaks.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

// ---- admin-api.md ----

const METHODS: &[&str] = &[
    "get", "put", "post", "patch", "delete", "head", "options", "trace",
];

fn admin_api() -> String {
    let doc =
        serde_json::to_value(modelgate_control_plane::admin::openapi()).unwrap_or(Value::Null);
    let base = doc["servers"][0]["url"].as_str().unwrap_or("");
    let mut out = generated_line();
    out.push_str("# Admin API reference\n\n");
    let _ = writeln!(
        out,
        "From the OpenAPI document the control plane serves at `{base}/openapi.json` (no token \
         needed for it). Paths are relative to `{base}` on the admin listener. Operations marked \
         _bearer_ take `Authorization: Bearer <admin token>`. Bodies are JSON unless a media type \
         is named. Errors answer `{{\"error\": {{\"type\", \"message\", \"param\"?}}}}` \
         ([ErrorBody](#errorbody)). Schemas are listed at the end."
    );

    // tag → (path, method) → operation
    let mut groups: BTreeMap<String, Vec<(&str, &str, &Value)>> = BTreeMap::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(*method) else {
                    continue;
                };
                let tag = op["tags"][0].as_str().map_or_else(
                    || {
                        path.trim_start_matches('/')
                            .split('/')
                            .next()
                            .unwrap_or("")
                            .to_owned()
                    },
                    str::to_owned,
                );
                groups.entry(tag).or_default().push((path, method, op));
            }
        }
    }
    for (tag, mut ops) in groups {
        ops.sort_by_key(|(path, method, _)| (*path, METHODS.iter().position(|m| m == method)));
        let _ = write!(out, "\n## {tag}\n");
        for (path, method, op) in ops {
            operation(&mut out, &doc, path, method, op);
        }
    }

    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        out.push_str("\n## Schemas\n");
        for (name, schema) in schemas {
            schema_section(&mut out, name, schema);
        }
    }
    out
}

fn operation(out: &mut String, doc: &Value, path: &str, method: &str, op: &Value) {
    let _ = write!(out, "\n### `{} {path}`\n\n", method.to_uppercase());
    let text: Vec<&str> = ["summary", "description"]
        .iter()
        .filter_map(|k| op[*k].as_str())
        .collect();
    if !text.is_empty() {
        let _ = write!(out, "{}\n\n", text.join("\n\n"));
    }
    let bearer = op["security"]
        .as_array()
        .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
    if bearer {
        out.push_str("Auth: _bearer_.\n\n");
    }
    // Parameters declared on the path item apply to every operation under it.
    let mut params: Vec<&Value> = doc["paths"][path]["parameters"]
        .as_array()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    params.extend(op["parameters"].as_array().into_iter().flatten());
    if !params.is_empty() {
        out.push_str("| Parameter | In | Type | Required | Description |\n");
        out.push_str("|---|---|---|---|---|\n");
        for p in params {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                p["name"].as_str().unwrap_or(""),
                p["in"].as_str().unwrap_or(""),
                cell(&type_of(&p["schema"])),
                if p["required"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                cell(p["description"].as_str().unwrap_or(""))
            );
        }
        out.push('\n');
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        let bodies = bodies(content);
        let required = if op["requestBody"]["required"].as_bool() == Some(true) {
            ""
        } else {
            ", optional"
        };
        let _ = write!(out, "Request body{required}: {}.\n\n", bodies.join(", "));
    }
    if let Some(responses) = op["responses"].as_object() {
        out.push_str("| Status | Body | Description |\n");
        out.push_str("|---|---|---|\n");
        for (status, r) in responses {
            let body = r["content"].as_object().map(bodies).unwrap_or_default();
            let _ = writeln!(
                out,
                "| {status} | {} | {} |",
                cell(&body.join(", ")),
                cell(r["description"].as_str().unwrap_or(""))
            );
        }
    }
}

/// A body's schema per media type; `application/json` goes without saying.
fn bodies(content: &serde_json::Map<String, Value>) -> Vec<String> {
    content
        .iter()
        .map(|(media, c)| match media.as_str() {
            "application/json" => type_of(&c["schema"]),
            media => format!("{} (`{media}`)", type_of(&c["schema"])),
        })
        .collect()
}

fn schema_section(out: &mut String, name: &str, schema: &Value) {
    let _ = write!(out, "\n### {name}\n\n");
    if let Some(description) = schema["description"].as_str() {
        let _ = write!(out, "{}\n\n", description.trim());
    }
    let Some(properties) = schema["properties"].as_object() else {
        let _ = writeln!(out, "{}", cell(&type_of(schema)));
        return;
    };
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("| Field | Type | Required | Description |\n");
    out.push_str("|---|---|---|---|\n");
    for (field, p) in properties {
        let _ = writeln!(
            out,
            "| `{field}` | {} | {} | {} |",
            cell(&type_of(p)),
            if required.contains(field.as_str()) {
                "yes"
            } else {
                "no"
            },
            cell(p["description"].as_str().unwrap_or(""))
        );
    }
}

/// A schema as a short type: a component's name (a link to its section), `string
/// (date-time)`, `array of Key`, `string or null`, the allowed values of an enum.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    for (key, joiner) in [("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")] {
        if let Some(parts) = schema[key].as_array() {
            return parts.iter().map(type_of).collect::<Vec<_>>().join(joiner);
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        return values
            .iter()
            .map(|v| match v {
                Value::String(s) => format!("`{s}`"),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ");
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if types.is_empty() {
        return "any".to_owned();
    }
    types
        .iter()
        .map(|t| match *t {
            "array" => format!("array of {}", type_of(&schema["items"])),
            "object" => match &schema["additionalProperties"] {
                Value::Object(_) => {
                    format!("map of {}", type_of(&schema["additionalProperties"]))
                }
                _ => "object".to_owned(),
            },
            "null" => "null".to_owned(),
            t => match schema["format"].as_str() {
                Some(format) => format!("{t} ({format})"),
                None => t.to_owned(),
            },
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn reference_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference")
    }

    #[test]
    fn the_committed_reference_matches_the_code() {
        let dir = reference_dir();
        let update = std::env::var_os("MODELGATE_UPDATE_REFERENCE").is_some_and(|v| v == "1");
        if update {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let mut stale = Vec::new();
        for (name, text) in render() {
            let path = dir.join(name);
            if update {
                std::fs::write(&path, &text).unwrap();
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != text {
                let line = committed
                    .lines()
                    .zip(text.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| committed.lines().count().min(text.lines().count()));
                stale.push(format!(
                    "docs/reference/{name} differs from the code from line {}",
                    line + 1
                ));
            }
        }
        assert!(
            stale.is_empty(),
            "{}\nRegenerate with: {REGENERATE}",
            stale.join("\n")
        );
    }

    /// Every `env::var("…")` / `env::var_os("…")` literal in a source file.
    fn env_reads(text: &str) -> Vec<String> {
        let mut names = Vec::new();
        for call in ["env::var(", "env::var_os("] {
            for (i, _) in text.match_indices(call) {
                let rest = text[i + call.len()..].trim_start();
                if let Some(literal) = rest.strip_prefix('"') {
                    if let Some(end) = literal.find('"') {
                        names.push(literal[..end].to_owned());
                    }
                }
            }
        }
        names
    }

    fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }

    #[test]
    fn every_variable_read_outside_clap_is_in_the_table() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in SCANNED {
            rust_files(&root.join(dir), &mut files);
        }
        assert!(
            files.iter().any(|f| f.ends_with("src/main.rs")),
            "the scan found no sources"
        );
        let listed: BTreeSet<&str> = OUTSIDE_CLAP
            .iter()
            .map(|v| v.name)
            .chain(TEST_ONLY.iter().copied())
            .collect();
        let mut missing = Vec::new();
        // This file's own reads are its tests' (`MODELGATE_UPDATE_REFERENCE`), and its scanner's
        // examples are not reads.
        for file in files.iter().filter(|f| !f.ends_with("src/reference.rs")) {
            let text = std::fs::read_to_string(file).unwrap();
            for name in env_reads(&text) {
                if !listed.contains(name.as_str()) {
                    missing.push(format!("{name} (read in {})", file.display()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "add these to OUTSIDE_CLAP in src/reference.rs (or TEST_ONLY): {missing:?}"
        );
    }

    #[test]
    fn every_variable_in_the_table_is_still_read_where_it_says() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for v in OUTSIDE_CLAP {
            let text = std::fs::read_to_string(root.join(v.file)).unwrap();
            assert!(
                text.contains(v.reads),
                "{} is no longer read by `{}` in {}",
                v.name,
                v.reads,
                v.file
            );
        }
    }

    #[test]
    fn env_reads_finds_literal_names_across_a_line_break() {
        let text = "let a = std::env::var(\"A\");\nlet b = env::var_os(\n    \"B\",\n);\n\
                    let c = env::var(name);";
        assert_eq!(env_reads(text), ["A", "B"]);
    }

    #[test]
    fn the_reference_shows_no_value_of_the_environment() {
        // The test process's own environment: whatever the variable holds, the help and the
        // table name it only.
        let text = cli();
        assert!(
            text.contains("[env: MODELGATE_ADMIN_URL]"),
            "an env value is shown"
        );
        assert!(!text.contains("[env: MODELGATE_ADMIN_URL="));
    }

    #[test]
    fn long_help_lines_wrap_under_their_text() {
        let mut out = Vec::new();
        let words = "word ".repeat(30);
        wrap(&format!("  up             {words}"), &mut out);
        wrap(&format!("          {words}"), &mut out);
        wrap("short  line", &mut out);
        assert!(out.iter().all(|l| l.chars().count() <= WIDTH), "{out:#?}");
        assert!(out[0].starts_with("  up             word"), "{out:#?}");
        assert!(
            out[1].starts_with(&format!("{}word", " ".repeat(17))),
            "{out:#?}"
        );
        let option = out
            .iter()
            .position(|l| l.starts_with("          word"))
            .unwrap();
        assert!(out[option + 1].starts_with(&format!("{}word", " ".repeat(10))));
        assert_eq!(out.last().unwrap(), "short  line");
        let joined: usize = out.iter().map(|l| l.matches("word").count()).sum();
        assert_eq!(joined, 60, "a word was lost");
    }

    #[test]
    fn first_sentences_end_at_a_full_stop_before_a_capital() {
        assert_eq!(
            first_sentence("Labels as `key=value` (e.g. `--label a=b`). Default:\n the rest."),
            "Labels as `key=value` (e.g. `--label a=b`)."
        );
        assert_eq!(first_sentence("One line"), "One line.");
        assert_eq!(first_sentence(""), "");
    }
}
