//! `modelgate check`: the pre-production acceptance plan against any running gateway,
//! through its public surfaces only — the proxy with the key under test, the admin REST API
//! with an admin token. Nothing here reads the database.
//!
//! The plan, in order:
//! 1. **Identify the key**: `GET /v1/models` with it, then its request-log row names the key,
//!    whose record (`GET /admin/v1/keys/{id}`) says which endpoint families and models it may
//!    use.
//! 2. **One success per endpoint family** the key may use, each with a model of the right kind
//!    (from the routes and the pricing catalog). Video jobs are long-running and not exercised
//!    (reported as skipped).
//! 3. **One invalid request** (a body that is not JSON): refused 4xx, no upstream attempt, no
//!    fallback, no charge — read from its ledger row.
//! 4. **Upstream failure**: a temporary key (in the key's team) on the route
//!    `modelgate-check-unreachable`, whose one deployment is a provider at a closed port:
//!    answered 5xx with the failed attempt in its ledger row.
//! 5. **Budget**: a hard budget of 1 µ$ on that temporary key: refused 429 `budget_exceeded`
//!    before any upstream call.
//! 6. **Clean up**: the budget is deleted and the temporary key revoked. The provider and route
//!    stay (the admin API deletes neither); a later run reuses them by name.
//! 7. **Readback**: every request's ledger row (bounded wait: usage is shipped asynchronously)
//!    must carry the key, the check's application mark, the status, and for a success its
//!    tokens (or other units) and a cost above zero.
//!
//! Every request carries `x-modelgate-check: 1`; the data plane records it as the application
//! `modelgate-check` on the usage event, so the request log and dashboards can leave check
//! traffic out (`?application=`).
//!
//! A change it makes is awaited through the admin API — the published snapshot that holds it
//! (`POST /explain` names its version), then every connected node's applied version
//! (`GET /nodes`) — never by retrying the new key, whose refusals would count against the
//! source's authentication-failure throttle.

mod gateway;
mod report;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use modelgate_shared::usage::CHECK_APPLICATION;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::admin_cli::client::AdminClient;
use crate::admin_cli::{AdminOptions, CliError, OutputFormat};
use gateway::{Answer, Gateway, CHAT_FAMILIES};
use report::{Ledger, Outcome, Report, Step};

/// The route (and provider) the upstream-failure scenario sends to.
pub const UNREACHABLE: &str = "modelgate-check-unreachable";
/// A port nothing listens on: TCP port 9 (discard) on the data plane's own loopback.
const UNREACHABLE_URL: &str = "http://127.0.0.1:9";

/// The endpoint families a key may be given, in the order the check runs them.
const FAMILIES: [&str; 9] = [
    "models",
    "chat",
    "messages",
    "responses",
    "generate_content",
    "embeddings",
    "images",
    "audio",
    "video",
];

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The proxy's base URL (what `modelgate up` prints as MODELGATE_BASE_URL, `…/v1`).
    #[arg(long, env = "MODELGATE_BASE_URL")]
    pub base_url: String,
    /// The gateway key to check (`mg-…`), as MODELGATE_API_KEY.
    #[arg(long, env = "MODELGATE_API_KEY", hide_env_values = true, value_parser = secret)]
    pub api_key: SecretString,
    #[command(flatten)]
    pub admin: AdminOptions,
    /// The chat model alias to use (default: the first chat model the key may use).
    #[arg(long, env = "MODELGATE_CHECK_MODEL")]
    pub model: Option<String>,
    /// How long to wait for config changes to reach the data planes and for each request's
    /// ledger row to be ingested, in seconds.
    #[arg(long, env = "MODELGATE_CHECK_WAIT_SECS", default_value_t = 60)]
    pub wait_secs: u64,
}

fn secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s))
}

/// Runs the plan and prints the report; exit code 1 when any step failed.
pub async fn run(args: CheckArgs) -> ExitCode {
    let format = args.admin.output;
    let report = match Check::new(&args) {
        Ok(check) => check.run().await,
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "{}", e.render());
            return ExitCode::FAILURE;
        }
    };
    let text = match format {
        OutputFormat::Json => {
            let mut t = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
            t.push('\n');
            t
        }
        OutputFormat::Table => report.to_table(),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The key under test, as the admin API describes it.
struct KeyInfo {
    id: String,
    team_id: String,
    families: Vec<String>,
}

impl KeyInfo {
    fn may_call(&self, family: &str) -> bool {
        self.families.is_empty() || self.families.iter().any(|f| f == family)
    }
}

/// What a route alias serves, from its first deployment's catalog row.
#[derive(Debug, Default)]
struct Kinds {
    /// family (catalog) → aliases the key may use, in alias order.
    by_family: BTreeMap<String, Vec<String>>,
    /// Aliases of speech models (audio family, priced per character).
    speech: Vec<String>,
}

struct Check<'a> {
    args: &'a CheckArgs,
    key: &'a str,
    proxy: Gateway,
    admin: AdminClient,
    wait: Duration,
    report: Report,
}

impl<'a> Check<'a> {
    fn new(args: &'a CheckArgs) -> Result<Check<'a>, CliError> {
        let proxy = Gateway::new(&args.base_url).map_err(CliError::Usage)?;
        let admin = AdminClient::new(
            &args.admin.admin_url,
            args.admin
                .admin_token
                .as_ref()
                .map(ExposeSecret::expose_secret),
        )?;
        Ok(Check {
            args,
            key: args.api_key.expose_secret(),
            proxy,
            admin,
            wait: Duration::from_secs(args.wait_secs),
            report: Report::default(),
        })
    }

    async fn run(mut self) -> Report {
        // 1. Identify the key.
        let models = self.proxy.models(self.key).await;
        let mut step = self.sent(Step::new("identify key"), models);
        let key = match self.identify(&mut step).await {
            Ok(k) => k,
            Err(detail) => {
                self.report.steps.push(step.fail(detail));
                return self.report;
            }
        };
        let kinds = match self.kinds(&key).await {
            Ok(k) => k,
            Err(e) => {
                self.report
                    .steps
                    .push(Step::new("read routes and catalog").fail(e.to_string()));
                return self.report;
            }
        };
        // The models request doubled as the `models` family's success when the key may call it.
        if key.may_call("models") {
            let status = step.status;
            let step = if status == 200 {
                step.pass("GET /v1/models answered 200")
            } else {
                step.fail(format!("GET /v1/models answered {status}"))
            };
            self.report.steps.push(Step {
                name: "family models".into(),
                ..step
            });
        } else {
            self.report
                .steps
                .push(step.pass(format!("key {} (team {})", key.id, key.team_id)));
        }

        // 2. One success per family.
        let chat_model = self
            .args
            .model
            .clone()
            .or_else(|| kinds.by_family.get("chat").and_then(|a| a.first().cloned()));
        for family in FAMILIES.iter().filter(|f| **f != "models") {
            let name = format!("family {family}");
            if !key.may_call(family) {
                continue;
            }
            let model = if CHAT_FAMILIES.contains(family) {
                chat_model.clone()
            } else if *family == "audio" {
                kinds.speech.first().cloned()
            } else {
                kinds
                    .by_family
                    .get(*family)
                    .and_then(|a| a.first().cloned())
            };
            if *family == "video" {
                self.report.steps.push(
                    Step::new(name).skip("video jobs are long-running; not exercised by check"),
                );
                continue;
            }
            let Some(model) = model else {
                self.report.steps.push(
                    Step::new(name).skip(format!("no {family} model the key may use is routed")),
                );
                continue;
            };
            let answer = self.proxy.family(family, self.key, &model).await;
            let step = self.sent(Step::new(name), answer);
            let step = match step.status {
                200 => step.pass(format!("served by `{model}`")),
                0 => step,
                s => step.fail(format!("`{model}` answered {s}")),
            };
            self.report.steps.push(step);
        }

        // 3. One invalid request.
        let answer = self
            .proxy
            .chat_raw(
                self.key,
                b"{\"model\": \"modelgate-check\", \"messages\": [",
            )
            .await;
        let step = self.sent(Step::new("invalid request"), answer);
        let step = match step.status {
            s @ 400..=499 => {
                let code = step.detail.clone();
                step.pass(format!("refused {s} {code}"))
            }
            0 => step,
            s => step.fail(format!("a body that is not JSON was answered {s}, not 4xx")),
        };
        self.report.steps.push(step);

        // 4.–6. The scenarios on a temporary key.
        self.scenarios(&key, chat_model.as_deref()).await;

        // 7. Readback.
        self.readback(&key).await;
        self.report
    }

    /// Records what a request got back; a request with no answer fails its step.
    fn sent(&self, mut step: Step, answer: Result<Answer, gateway::Unanswered>) -> Step {
        match answer {
            Ok(a) => {
                step.status = a.status;
                step.request_id.clone_from(&a.request_id);
                if a.request_id.is_none() {
                    return step.fail("the answer carried no x-request-id");
                }
                if let Some(code) = a.error_code() {
                    step.detail = code.to_owned();
                }
                step
            }
            Err(e) => step.fail(format!("no answer: {e}")),
        }
    }

    /// The key of the identifying request, from its ledger row.
    async fn identify(&self, step: &mut Step) -> Result<KeyInfo, String> {
        let Some(request_id) = step.request_id.clone() else {
            return Err(step.detail.clone());
        };
        if step.status == 401 {
            // Refused before a key was known: a security-log record, not a ledger row.
            return Err(format!(
                "the gateway did not recognise the key (answered 401 {})",
                step.detail
            ));
        }
        let row = self.ledger_row(&request_id).await?;
        let ledger = Ledger::from_row(&row);
        step.ledger = Some(ledger.clone());
        if ledger.key_id.is_empty() {
            return Err(format!(
                "the gateway did not recognise the key (answered {}): its ledger row names no key",
                step.status
            ));
        }
        let key = self
            .admin
            .get(&["keys", &ledger.key_id])
            .await
            .map_err(|e| format!("reading key {}: {e}", ledger.key_id))?;
        let families = key
            .get("endpoint_families")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(KeyInfo {
            id: ledger.key_id,
            team_id: ledger.team_id,
            families,
        })
    }

    /// The routes the key may use, grouped by the catalog family of their first deployment's
    /// model. The key's allowed models come from the admin API's key record.
    async fn kinds(&self, key: &KeyInfo) -> Result<Kinds, CliError> {
        let record = self.admin.get(&["keys", &key.id]).await?;
        let allowed: Vec<String> = record
            .get("allowed_models")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let routes = self.admin.list(&["routes"], &[], None, 1000).await?;
        let catalog = self.admin.list(&["models"], &[], None, 1000).await?;
        let mut kinds = Kinds::default();
        for route in &routes {
            let Some(alias) = route.get("alias").and_then(Value::as_str) else {
                continue;
            };
            if alias.starts_with(UNREACHABLE)
                || !(allowed.is_empty() || allowed.iter().any(|a| a == alias))
            {
                continue;
            }
            let Some(model) = route
                .get("deployments")
                .and_then(Value::as_array)
                .and_then(|d| d.first())
                .and_then(|d| d.get("model"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let Some(row) = catalog
                .iter()
                .find(|r| r.get("model").and_then(Value::as_str) == Some(model))
            else {
                continue;
            };
            let family = row.get("family").and_then(Value::as_str).unwrap_or("chat");
            if family == "audio"
                && row
                    .get("per_mchar_micros")
                    .and_then(Value::as_i64)
                    .is_some_and(|p| p > 0)
            {
                kinds.speech.push(alias.to_owned());
            }
            kinds
                .by_family
                .entry(family.to_owned())
                .or_default()
                .push(alias.to_owned());
        }
        Ok(kinds)
    }

    /// The request log's row of `request_id`, waiting up to the bound for it to be ingested.
    async fn ledger_row(&self, request_id: &str) -> Result<Value, String> {
        let deadline = Instant::now() + self.wait;
        loop {
            match self.admin.get(&["requests", request_id]).await {
                Ok(row) => return Ok(row),
                // Not ingested yet (404): wait. Any other refusal (a token that may not read
                // usage) fails at once.
                Err(CliError::Api { message, .. })
                    if message.contains("not found") && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(CliError::Api { message, .. }) => {
                    return Err(format!(
                        "no ledger row for request {request_id} within {} s ({message})",
                        self.wait.as_secs()
                    ))
                }
                Err(e) => return Err(format!("reading request {request_id}: {e}")),
            }
        }
    }

    /// The highest config version the connected data planes applied, and how many there are.
    async fn applied_versions(&self) -> Result<Vec<i64>, CliError> {
        let nodes = self.admin.list(&["nodes"], &[], None, 1000).await?;
        Ok(nodes
            .iter()
            .filter(|n| n.get("connected").and_then(Value::as_bool) == Some(true))
            .filter_map(|n| n.get("applied_version").and_then(Value::as_i64))
            .collect())
    }

    /// Waits until the control plane publishes a snapshot in which the temporary key `key_id`
    /// (and, with `budget`, a budget on it) is present — read through `POST /explain`, which
    /// answers from the published snapshot and names its version — and then until every
    /// connected data plane applied that version.
    async fn await_served(
        &self,
        key_id: &str,
        model: &str,
        budget: Option<&str>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + self.wait;
        let request = json!({"key_id": key_id, "request": {"model": model}});
        let published = loop {
            let explained = self.admin.post(&["explain"], Some(&request)).await;
            if let Ok(e) = &explained {
                let key_known = e.get("key").is_some_and(|k| !k.is_null());
                let budget_known = budget.is_none_or(|b| {
                    e.get("budgets")
                        .and_then(Value::as_array)
                        .is_some_and(|all| {
                            all.iter()
                                .any(|x| x.get("id").and_then(Value::as_str) == Some(b))
                        })
                });
                if key_known && budget_known {
                    break e
                        .get("snapshot_version")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the control plane did not publish the change within {} s ({})",
                    self.wait.as_secs(),
                    explained.map_or_else(|e| e.to_string(), |v| v.to_string())
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        loop {
            let versions = self
                .applied_versions()
                .await
                .map_err(|e| format!("reading the data planes: {e}"))?;
            if versions.is_empty() {
                return Err("no data plane is connected to the control plane".into());
            }
            if versions.iter().all(|v| *v >= published) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the data planes did not apply config version {published} within {} s \
                     (applied: {versions:?})",
                    self.wait.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The upstream-failure and budget scenarios on a temporary key, then the clean-up.
    async fn scenarios(&mut self, key: &KeyInfo, chat_model: Option<&str>) {
        let setup = Step::new("setup temporary key");
        if let Err(e) = self.ensure_unreachable_route().await {
            self.report
                .steps
                .push(setup.fail(format!("creating the route `{UNREACHABLE}`: {e}")));
            return;
        }
        let mut allowed = vec![UNREACHABLE.to_owned()];
        if let Some(m) = chat_model {
            allowed.push(m.to_owned());
        }
        let name = format!(
            "modelgate-check-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        );
        let created = self
            .admin
            .post(
                &["keys"],
                Some(&json!({
                    "team_id": key.team_id,
                    "name": name,
                    "allowed_models": allowed,
                    "endpoint_families": ["chat"],
                    "application": CHECK_APPLICATION,
                    "metadata": {"created_by": "modelgate check"},
                })),
            )
            .await;
        let (temp_id, temp_secret) = match created {
            Ok(v) => match (
                v.get("id").and_then(Value::as_str),
                v.get("key_secret").and_then(Value::as_str),
            ) {
                (Some(id), Some(secret)) => (id.to_owned(), SecretString::from(secret)),
                _ => {
                    self.report
                        .steps
                        .push(setup.fail("the created key has no id or secret"));
                    return;
                }
            },
            Err(e) => {
                self.report
                    .steps
                    .push(setup.fail(format!("creating a temporary key: {e}")));
                return;
            }
        };
        let outcome = self
            .with_temporary_key(&temp_id, temp_secret.expose_secret(), chat_model)
            .await;
        self.report.steps.push(match outcome {
            Ok(()) => setup.pass(format!("key {temp_id} in team {}", key.team_id)),
            Err(e) => setup.fail(e),
        });
        let cleanup = Step::new("cleanup");
        let revoked = self.admin.post(&["keys", &temp_id, "revoke"], None).await;
        self.report.steps.push(match revoked {
            Ok(_) => cleanup.pass(format!("temporary key {temp_id} revoked")),
            Err(e) => cleanup.fail(format!("revoking temporary key {temp_id}: {e}")),
        });
    }

    /// The two scenarios; the budget it creates is deleted whatever happens.
    async fn with_temporary_key(
        &mut self,
        temp_id: &str,
        secret: &str,
        chat_model: Option<&str>,
    ) -> Result<(), String> {
        self.await_served(temp_id, UNREACHABLE, None).await?;
        // 4. Upstream failure.
        let answer = self.proxy.chat(secret, UNREACHABLE).await;
        let step = self.sent(Step::new("upstream failure"), answer);
        let step = match step.status {
            s @ 500..=599 => step.pass(format!("answered {s} (deployment unreachable)")),
            0 => step,
            s => step.fail(format!(
                "a route to a closed port was answered {s}, not 5xx"
            )),
        };
        self.report.steps.push(step);

        // 5. Budget.
        let step = Step::new("budget");
        let Some(model) = chat_model else {
            self.report
                .steps
                .push(step.skip("no chat model the key may use is routed"));
            return Ok(());
        };
        let budget = self
            .admin
            .post(
                &["budgets"],
                Some(&json!({
                    "scope": {"key_id": temp_id},
                    "amount_micros": 1,
                    "period": "total",
                    "enforcement": "hard",
                })),
            )
            .await
            .map_err(|e| format!("creating a budget on the temporary key: {e}"))?;
        let budget_id = budget
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let sent = match self.await_served(temp_id, model, Some(&budget_id)).await {
            Ok(()) => {
                let answer = self.proxy.chat(secret, model).await;
                let step = self.sent(step, answer);
                let code = step.detail.clone();
                match (step.status, code.as_str()) {
                    (429, "budget_exceeded") => {
                        step.pass("refused 429 budget_exceeded before any upstream call")
                    }
                    (0, _) => step,
                    (s, code) => step.fail(format!(
                        "over a 1 µ$ budget the request was answered {s} {code}, not 429 budget_exceeded"
                    )),
                }
            }
            Err(e) => step.fail(e),
        };
        self.report.steps.push(sent);
        let deleted = self.admin.delete(&["budgets", &budget_id]).await;
        deleted
            .map(|_| ())
            .map_err(|e| format!("deleting the temporary budget {budget_id}: {e}"))
    }

    /// The provider at a closed port and the route to it, created once and reused by name.
    async fn ensure_unreachable_route(&self) -> Result<(), CliError> {
        let providers = self.admin.list(&["providers"], &[], None, 1000).await?;
        let existing = providers
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(UNREACHABLE))
            .and_then(|p| p.get("id").and_then(Value::as_str))
            .map(str::to_owned);
        let provider_id = match existing {
            Some(id) => id,
            None => self
                .admin
                .post(
                    &["providers"],
                    Some(&json!({
                        "name": UNREACHABLE,
                        "kind": "openai-compatible",
                        "base_url": UNREACHABLE_URL,
                        "credential": "modelgate-check",
                    })),
                )
                .await?
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        };
        let routes = self.admin.list(&["routes"], &[], None, 1000).await?;
        if routes
            .iter()
            .any(|r| r.get("alias").and_then(Value::as_str) == Some(UNREACHABLE))
        {
            return Ok(());
        }
        self.admin
            .post(
                &["routes"],
                Some(&json!({
                    "alias": UNREACHABLE,
                    "deployments": [{"provider_id": provider_id, "model": UNREACHABLE}],
                    "policy": {
                        "max_retries": 0,
                        "connect_timeout_ms": 2000,
                        "total_timeout_ms": 10000,
                        "missing_price": "allow_and_flag",
                    },
                })),
            )
            .await?;
        Ok(())
    }

    /// Reads back every request's ledger row and judges it against what its step expected.
    async fn readback(&mut self, key: &KeyInfo) {
        let mut steps = std::mem::take(&mut self.report.steps);
        for step in &mut steps {
            let Some(request_id) = step.request_id.clone() else {
                continue;
            };
            if step.ledger.is_none() {
                match self.ledger_row(&request_id).await {
                    Ok(row) => step.ledger = Some(Ledger::from_row(&row)),
                    Err(e) => {
                        if step.outcome != Outcome::Fail {
                            *step = step.clone().fail(e);
                        }
                        continue;
                    }
                }
            }
            if step.outcome == Outcome::Fail {
                continue;
            }
            let Some(ledger) = step.ledger.clone() else {
                continue;
            };
            if let Err(why) = judge(step, &ledger, key) {
                *step = step.clone().fail(format!("ledger row: {why}"));
            }
        }
        self.report.steps = steps;
    }
}

/// Whether a request's ledger row is what its step expects.
fn judge(step: &Step, l: &Ledger, key: &KeyInfo) -> Result<(), String> {
    if l.status != i64::from(step.status) {
        return Err(format!(
            "status {} where the client saw {}",
            l.status, step.status
        ));
    }
    if l.application != CHECK_APPLICATION {
        return Err(format!(
            "application `{}`, not the check mark `{CHECK_APPLICATION}`",
            l.application
        ));
    }
    let temporary = matches!(step.name.as_str(), "upstream failure" | "budget");
    if !temporary && l.key_id != key.id {
        return Err(format!("key {} where {} was used", l.key_id, key.id));
    }
    if temporary && l.team_id != key.team_id {
        return Err(format!("team {} where {} was used", l.team_id, key.team_id));
    }
    match step.name.as_str() {
        "invalid request" | "budget" => {
            if l.attempts != 0 || l.fallback_used || l.cost_micros != 0 {
                return Err(format!(
                    "{} upstream attempts, fallback {}, cost {} µ$: it did not fail closed",
                    l.attempts, l.fallback_used, l.cost_micros
                ));
            }
            if step.name == "budget" && l.error_class.as_deref() != Some("budget_exceeded") {
                return Err(format!(
                    "error class {:?}, not budget_exceeded",
                    l.error_class
                ));
            }
        }
        "upstream failure" if l.attempts == 0 || l.error_class.is_none() || l.cost_micros != 0 => {
            return Err(format!(
                "{} attempts, error class {:?}, cost {} µ$: not a recorded upstream failure",
                l.attempts, l.error_class, l.cost_micros
            ));
        }
        name if name.starts_with("family ") && name != "family models" => {
            if l.input_tokens + l.output_tokens + l.units <= 0 {
                return Err("no tokens or other units metered".into());
            }
            if l.cost_micros <= 0 {
                return Err(format!(
                    "cost {} µ$ (flag `{}`): the request was not charged",
                    l.cost_micros, l.cost_flag
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        Ledger {
            key_id: "k".into(),
            team_id: "t".into(),
            application: CHECK_APPLICATION.into(),
            endpoint: "chat.completions".into(),
            model: "m".into(),
            served_model: "m".into(),
            deployment_id: "d".into(),
            status: 200,
            error_class: None,
            input_tokens: 5,
            output_tokens: 3,
            units: 0,
            cost_micros: 9,
            cost_flag: String::new(),
            attempts: 1,
            fallback_used: false,
        }
    }

    fn key() -> KeyInfo {
        KeyInfo {
            id: "k".into(),
            team_id: "t".into(),
            families: vec![],
        }
    }

    fn step(name: &str, status: u16) -> Step {
        Step {
            status,
            ..Step::new(name)
        }
    }

    #[test]
    fn a_served_request_must_be_metered_charged_and_marked() {
        assert!(judge(&step("family chat", 200), &ledger(), &key()).is_ok());
        let free = Ledger {
            cost_micros: 0,
            ..ledger()
        };
        assert!(judge(&step("family chat", 200), &free, &key())
            .unwrap_err()
            .contains("not charged"));
        let unmarked = Ledger {
            application: "web".into(),
            ..ledger()
        };
        assert!(judge(&step("family chat", 200), &unmarked, &key()).is_err());
        assert!(judge(&step("family chat", 502), &ledger(), &key()).is_err());
    }

    #[test]
    fn an_invalid_request_must_fail_closed() {
        let refused = Ledger {
            status: 400,
            attempts: 0,
            cost_micros: 0,
            error_class: Some("bad_request".into()),
            ..ledger()
        };
        assert!(judge(&step("invalid request", 400), &refused, &key()).is_ok());
        let forwarded = Ledger {
            attempts: 1,
            ..refused.clone()
        };
        assert!(judge(&step("invalid request", 400), &forwarded, &key()).is_err());
        let fell_back = Ledger {
            fallback_used: true,
            ..refused
        };
        assert!(judge(&step("invalid request", 400), &fell_back, &key()).is_err());
    }

    #[test]
    fn the_budget_refusal_must_name_the_budget_and_call_nothing() {
        let refused = Ledger {
            key_id: "temp".into(),
            status: 429,
            attempts: 0,
            cost_micros: 0,
            error_class: Some("budget_exceeded".into()),
            ..ledger()
        };
        assert!(judge(&step("budget", 429), &refused, &key()).is_ok());
        let rate_limited = Ledger {
            error_class: Some("rate_limited".into()),
            ..refused
        };
        assert!(judge(&step("budget", 429), &rate_limited, &key()).is_err());
    }
}
