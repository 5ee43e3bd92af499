//! `big-config`: the data plane with a large config (printed, never asserted).
//!
//! 1. Seeds a fresh SQLite control-plane database: providers pointing at the mock, a priced
//!    model and a route per routing group, teams with a hard budget and a rate limit each
//!    (through the service layer, as the admin API would), and the keys in bulk (rows written
//!    as `service::keys::create` writes them — HMAC of a fresh secret under the database's
//!    key-hash secret — a thousand per statement, without the per-key audit row and snapshot
//!    rebuild that would make 100k keys take hours).
//! 2. Starts `modelgate control-plane` on that database and a separate `modelgate data-plane`
//!    (mutual TLS with certificates from `modelgate certs`), with the mock upstream
//!    (`modelgate-bench mock-upstream`) as every provider.
//! 3. Waits until the data plane serves the snapshot and prints its RSS (VmRSS, VmHWM) and how
//!    long the first apply took.
//! 4. Runs the same fixed-rate load at the mock directly, then through the gateway with many
//!    keys while config changes (a key created through the admin API) make the control plane
//!    publish new versions; splits the gateway's requests into steady state, those in
//!    flight during a change (admin call until the data plane applied it) and those in flight
//!    while the data plane itself was applying, and prints their latency and the RSS peak.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use modelgate_control_plane::service::authz::Actor;
use modelgate_control_plane::service::{
    bootstrap, budgets, limits, models, providers, routes, teams, Services,
};
use modelgate_control_plane::store::api_key;
use sea_orm::{ActiveValue::Set, EntityTrait, TransactionTrait};
use serde_json::json;

use crate::load::{self, RequestTemplate};
use crate::stats::percentile_ms;

#[derive(Args, Debug)]
pub struct BigConfigArgs {
    /// The `modelgate` binary.
    #[arg(long, default_value = "target/release/modelgate")]
    pub modelgate: PathBuf,
    /// Gateway keys in the config.
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
    /// Teams the keys are spread over (each with a hard budget and a rate limit).
    #[arg(long, default_value_t = 100)]
    pub teams: usize,
    /// Routing groups, each with its own priced model and two deployments.
    #[arg(long, default_value_t = 1_000)]
    pub routes: usize,
    /// Provider accounts (all pointing at the mock).
    #[arg(long, default_value_t = 10)]
    pub providers: usize,
    /// Keys the load uses, one after the other.
    #[arg(long, default_value_t = 300)]
    pub load_keys: usize,
    /// Requests per second (open loop).
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Load connections.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub concurrency: usize,
    /// Length of the gateway load (the changes are spread over it).
    #[arg(long, short = 'd', default_value = "40s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// Length of the same load sent to the mock directly (the baseline).
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub direct_duration: Duration,
    /// Config changes during the gateway load (each publishes a full new snapshot).
    #[arg(long, default_value_t = 5)]
    pub changes: usize,
    /// Request body (the model must be `gpt-4o-mini`, the route every load key may use).
    #[arg(long, default_value = "bench/chat_request.json")]
    pub body_file: PathBuf,
    #[arg(long, default_value = "127.0.0.1:18180")]
    pub mock_listen: String,
    #[arg(long, default_value = "127.0.0.1:18191")]
    pub admin_listen: String,
    #[arg(long, default_value = "127.0.0.1:18192")]
    pub grpc_listen: String,
    #[arg(long, default_value = "127.0.0.1:18193")]
    pub dp_listen: String,
    #[arg(long, default_value = "127.0.0.1:18195")]
    pub dp_metrics_listen: String,
    /// Keep the work directory (database, logs) afterwards.
    #[arg(long)]
    pub keep_work: bool,
}

/// Child processes, stopped (TERM, then KILL) when dropped.
#[derive(Default)]
pub(crate) struct Children(Vec<(String, Child)>);

impl Children {
    pub(crate) fn spawn(
        &mut self,
        name: &str,
        mut cmd: Command,
        log: &Path,
    ) -> anyhow::Result<u32> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id();
        self.0.push((name.to_owned(), child));
        Ok(pid)
    }

    pub(crate) fn alive(&mut self, pid: u32) -> bool {
        self.0
            .iter_mut()
            .find(|(_, c)| c.id() == pid)
            .is_some_and(|(_, c)| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in self.0.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..50 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) async fn wait_for_line(
    children: &mut Children,
    pid: u32,
    log: &Path,
    needle: &str,
    within: Duration,
) -> anyhow::Result<String> {
    let until = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return Ok(line.to_owned());
        }
        if !children.alive(pid) {
            bail!("process {pid} exited; see {}", log.display());
        }
        if Instant::now() > until {
            bail!("no `{needle}` in {} within {within:?}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn run_ok(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// VmRSS and VmHWM of a process, in MiB.
pub(crate) fn memory_mb(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the process's VmHWM to its current RSS (Linux `clear_refs` 5); false if refused.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(v)?)
}

struct Seeded {
    admin_token: String,
    /// Secrets of the keys the load uses.
    load_secrets: Vec<String>,
    /// A team new keys are created in during the load.
    team_id: String,
}

/// Seeds the database at `url` (see the module doc).
async fn seed(url: &str, master_key_hex: &str, args: &BigConfigArgs) -> anyhow::Result<Seeded> {
    use modelgate_shared::keys;
    let db = modelgate_control_plane::store::connect(url).await?;
    let s = Services::new(
        db,
        modelgate_control_plane::crypto::Sealer::from_hex(master_key_hex)?,
        modelgate_shared::clock::system(),
    );
    let admin_token = bootstrap::ensure_initialized(&s)
        .await?
        .context("a fresh database mints a bootstrap token")?;
    let actor = Actor::system();

    let started = Instant::now();
    let mut provider_ids = Vec::new();
    for p in 0..args.providers.max(1) {
        let input = from_json(json!({
            "name": format!("bench-mock-{p}"),
            "kind": "openai-compatible",
            "base_url": format!("http://{}/v1", args.mock_listen),
            "credential": format!("sk-bench-{p}"),
        }))?;
        provider_ids.push(providers::create(&s, &actor, input).await?.id);
    }
    for r in 0..args.routes.max(1) {
        // Route 0 is what the load asks for.
        let (alias, model) = if r == 0 {
            ("gpt-4o-mini".to_owned(), "gpt-4o-mini".to_owned())
        } else {
            (format!("bench-route-{r}"), format!("bench-model-{r}"))
        };
        let price = from_json(json!({
            "model": model,
            "provider": "openai-compatible",
            "input_micros_per_mtok": 150_000 + r,
            "output_micros_per_mtok": 600_000 + r,
            "max_output_tokens": 16_384,
        }))?;
        models::upsert(&s, &actor, price).await?;
        let first = &provider_ids[r % provider_ids.len()];
        let second = &provider_ids[(r + 1) % provider_ids.len()];
        let route = from_json(json!({
            "alias": alias,
            "deployments": [
                {"provider_id": first, "model": model},
                {"provider_id": second, "model": model, "tier": 1},
            ],
        }))?;
        routes::create(&s, &actor, route).await?;
    }
    println!(
        "seeded {} providers, {} priced models and routes in {:.1} s",
        provider_ids.len(),
        args.routes.max(1),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut team_ids = Vec::new();
    for t in 0..args.teams.max(1) {
        let team = teams::create(
            &s,
            &actor,
            from_json(json!({"name": format!("bench-team-{t}")}))?,
        )
        .await?;
        let budget = from_json(json!({
            "scope": {"team_id": team.id},
            "amount_micros": 1_000_000_000_000_i64,
            "period": "month",
            "enforcement": "hard",
        }))?;
        budgets::create(&s, &actor, budget).await?;
        let limit = from_json(json!({"scope": {"team_id": team.id}, "rpm": 100_000_000}))?;
        limits::create(&s, &actor, limit).await?;
        team_ids.push(team.id);
    }
    println!(
        "seeded {} teams, each with a hard budget and a rate limit, in {:.1} s",
        team_ids.len(),
        started.elapsed().as_secs_f64()
    );

    // The keys: the rows `service::keys::create` writes, a thousand per statement.
    let started = Instant::now();
    let server_secret = bootstrap::key_hash_secret(&s).await?;
    let applications = [
        "checkout",
        "search",
        "support-bot",
        "analytics",
        "billing",
        "onboarding",
        "docs",
        "mobile",
        "web",
        "batch-eval",
    ];
    let environments = ["dev", "staging", "prod"];
    let now = chrono::Utc::now();
    let mut load_secrets = Vec::new();
    let txn = s.db.begin().await?;
    let mut rows = Vec::with_capacity(1000);
    for i in 0..args.keys {
        let secret = keys::generate_key();
        let team_id = &team_ids[i % team_ids.len()];
        // The load's keys may use every alias; the others a few each, as teams tend to.
        let allowed: Vec<String> = if i < args.load_keys || i % 2 == 0 {
            Vec::new()
        } else {
            (0..3)
                .map(|j| match (i * 7 + j * 13) % args.routes.max(1) {
                    0 => "gpt-4o-mini".to_owned(),
                    r => format!("bench-route-{r}"),
                })
                .collect()
        };
        rows.push(api_key::ActiveModel {
            id: Set(modelgate_shared::new_id().to_string()),
            team_id: Set(team_id.clone()),
            name: Set(format!("bench-key-{i}")),
            key_hash: Set(hex_encode(&keys::hash_key(&server_secret, &secret.secret))),
            prefix: Set(secret.display_prefix),
            environment: Set(environments[i % environments.len()].to_owned()),
            allowed_models: Set(serde_json::to_string(&allowed)?),
            expires_at: Set(None),
            revoked_at: Set(None),
            created_at: Set(now),
            owner_user_id: Set(None),
            application: Set(applications[i % applications.len()].to_owned()),
            data_class: Set("internal".to_owned()),
            endpoint_families: Set("[]".to_owned()),
            metadata: Set("{}".to_owned()),
            traffic_class: Set("interactive".to_owned()),
            allowed_traffic_classes: Set("[]".to_owned()),
            cache: Set("route".to_owned()),
            disabled_at: Set(None),
            previous_key_hash: Set(None),
            previous_expires_at: Set(None),
            version: Set(1),
            revision: Set(0),
        });
        if i < args.load_keys {
            load_secrets.push(secret.secret);
        }
        if rows.len() == 1000 {
            api_key::Entity::insert_many(std::mem::take(&mut rows))
                .exec_without_returning(&txn)
                .await?;
        }
    }
    if !rows.is_empty() {
        api_key::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    println!(
        "seeded {} keys over {} teams in {:.1} s",
        args.keys,
        team_ids.len(),
        started.elapsed().as_secs_f64()
    );

    // What the control plane does on every change from here on.
    let started = Instant::now();
    let published = s.publisher.rebuild(&s).await?;
    println!(
        "control plane snapshot build (read tables, canonicalise, hash, store the version): \
         {:.0} ms; wire size {:.1} MB",
        started.elapsed().as_secs_f64() * 1e3,
        prost::Message::encoded_len(&published.snapshot.to_wire()) as f64 / 1e6
    );
    s.db.close().await?;
    Ok(Seeded {
        admin_token,
        load_secrets,
        team_id: team_ids.first().cloned().unwrap_or_default(),
    })
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// POSTs JSON to the admin API; returns the status and body.
async fn admin_post(
    addr: &str,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<(u16, String)> {
    let sock: std::net::SocketAddr = addr.parse()?;
    let mut sender = load::connect(sock).await?;
    let req = http::Request::post(path)
        .header(http::header::HOST, addr)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A `snapshot applied` or `delta applied` line of the data plane's log.
#[derive(Debug, Clone, Copy)]
struct Applied {
    /// Wall-clock time of the line.
    at: chrono::DateTime<chrono::Utc>,
    version: u64,
    /// The data plane's own measure of the apply (`apply_ms`), if it logs one.
    apply_ms: Option<f64>,
    /// A delta (else a full snapshot).
    delta: bool,
    /// The message's encoded size, if logged.
    bytes: Option<u64>,
    /// For a delta: the indexing and the last-known-good journal's parts of the apply.
    index_ms: Option<f64>,
    journal_ms: Option<f64>,
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

fn applied_lines(log: &Path) -> Vec<Applied> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(strip_ansi)
        .filter(|l| l.contains("snapshot applied") || l.contains("delta applied"))
        .filter_map(|l| {
            let at = chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next()?)
                .ok()?
                .with_timezone(&chrono::Utc);
            let ms = |name: &str| field(&l, name).and_then(|v| v.parse().ok());
            Some(Applied {
                at,
                version: field(&l, "version")?.parse().ok()?,
                apply_ms: ms("apply_ms"),
                delta: l.contains("delta applied"),
                bytes: field(&l, "bytes").and_then(|v| v.parse().ok()),
                index_ms: ms("index_ms"),
                journal_ms: ms("journal_ms"),
            })
        })
        .collect()
}

/// One config change made during the load.
struct Change {
    /// Offsets from the clock's anchor, in ns.
    sent: i64,
    answered: i64,
    status: u16,
}

/// Latency figures of a set of requests.
fn row(name: &str, mut lat_ns: Vec<u64>, failed: usize) -> String {
    lat_ns.sort_unstable();
    let f = |p: f64| percentile_ms(&lat_ns, p).map_or("-".to_owned(), |v| format!("{v:.3}"));
    format!(
        "| {name} | {} | {} | {} | {} | {} | {failed} |",
        lat_ns.len(),
        f(50.0),
        f(99.0),
        f(99.9),
        f(100.0)
    )
}

pub async fn run(args: BigConfigArgs) -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!(
        "mg-bigconfig-{}",
        modelgate_shared::new_id().simple()
    ));
    std::fs::create_dir_all(&work)?;
    let result = run_in(&args, &work).await;
    match (&result, args.keep_work) {
        (Ok(()), false) => {
            let _ = std::fs::remove_dir_all(&work);
        }
        _ => println!("work directory kept: {}", work.display()),
    }
    result
}

async fn run_in(args: &BigConfigArgs, work: &Path) -> anyhow::Result<()> {
    let mg = std::fs::canonicalize(&args.modelgate)
        .with_context(|| format!("the modelgate binary {}", args.modelgate.display()))?;
    let body = Bytes::from(
        std::fs::read(&args.body_file)
            .with_context(|| format!("reading {}", args.body_file.display()))?,
    );
    let mut children = Children::default();

    // The mock upstream.
    let mock_log = work.join("mock.log");
    let mut mock = Command::new(std::env::current_exe()?);
    mock.args(["mock-upstream", "--listen", &args.mock_listen]);
    let mock_pid = children.spawn("mock", mock, &mock_log)?;
    wait_for_line(
        &mut children,
        mock_pid,
        &mock_log,
        "listening on",
        Duration::from_secs(10),
    )
    .await?;

    // The fleet's certificates.
    let certs = work.join("certs");
    let certs_s = certs.to_string_lossy().into_owned();
    run_ok(Command::new(&mg).args(["certs", "init", "--dir", &certs_s]))?;
    run_ok(Command::new(&mg).args([
        "certs",
        "issue",
        "--dir",
        &certs_s,
        "--control-plane",
        "--dns",
        "localhost",
    ]))?;
    run_ok(Command::new(&mg).args(["certs", "issue", "--dir", &certs_s, "--node-id", "bench-dp"]))?;
    let pem = |n: &str| certs.join(n).to_string_lossy().into_owned();

    // The database.
    let master_key = modelgate_control_plane::crypto::Sealer::generate_master_key_hex();
    let db_url = format!("sqlite://{}?mode=rwc", work.join("cp.db").display());
    let seeded = seed(&db_url, &master_key, args).await?;

    // The control plane.
    let cp_log = work.join("cp.log");
    let mut cp = Command::new(&mg);
    cp.args([
        "control-plane",
        "--database-url",
        &db_url,
        "--admin-listen",
        &args.admin_listen,
        "--grpc-listen",
        &args.grpc_listen,
        "--tls-ca",
        &pem("ca.pem"),
        "--tls-cert",
        &pem("control-plane.pem"),
        "--tls-key",
        &pem("control-plane-key.pem"),
    ])
    .env("MODELGATE_MASTER_KEY", &master_key);
    let cp_started = Instant::now();
    let cp_pid = children.spawn("control plane", cp, &cp_log)?;
    wait_for_line(
        &mut children,
        cp_pid,
        &cp_log,
        "MODELGATE_ADMIN_URL=",
        Duration::from_secs(300),
    )
    .await?;
    println!(
        "control plane up (migrations, snapshot build) in {:.1} s, RSS {:.0} MB",
        cp_started.elapsed().as_secs_f64(),
        memory_mb(cp_pid).map_or(0.0, |m| m.0)
    );

    // The data plane.
    let dp_log = work.join("dp.log");
    let mut dp = Command::new(&mg);
    let grpc_port = args.grpc_listen.rsplit(':').next().unwrap_or_default();
    dp.args([
        "data-plane",
        "--listen",
        &args.dp_listen,
        "--metrics-listen",
        &args.dp_metrics_listen,
        "--control-plane-url",
        &format!("https://localhost:{grpc_port}"),
        "--node-id",
        "bench-dp",
        "--data-dir",
        &work.join("dp").to_string_lossy(),
        "--tls-ca",
        &pem("ca.pem"),
        "--tls-cert",
        &pem("bench-dp.pem"),
        "--tls-key",
        &pem("bench-dp-key.pem"),
    ])
    .env(
        "MODELGATE_LKG_KEY",
        modelgate_control_plane::crypto::Sealer::generate_master_key_hex(),
    );
    let dp_started = Instant::now();
    let dp_pid = children.spawn("data plane", dp, &dp_log)?;
    wait_for_line(
        &mut children,
        dp_pid,
        &dp_log,
        "MODELGATE_BASE_URL=",
        Duration::from_secs(30),
    )
    .await?;
    let (rss_empty, _) = memory_mb(dp_pid).unwrap_or_default();

    let gateway_url = format!("http://{}/v1/chat/completions", args.dp_listen);
    let mut templates = Vec::new();
    for secret in &seeded.load_secrets {
        templates.push(
            RequestTemplate::new(
                &gateway_url,
                &[format!("Authorization: Bearer {secret}")],
                None,
                Some(body.clone()),
            )
            .await?,
        );
    }
    let probe = templates
        .first()
        .context("--load-keys must be at least 1")?;
    let until = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(ex) = load::probe(probe, Duration::from_secs(5)).await {
            if ex.status.is_success() {
                break;
            }
        }
        if !children.alive(dp_pid) {
            bail!("the data plane exited; see {}", dp_log.display());
        }
        let log = std::fs::read_to_string(&dp_log).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("message length too large")) {
            bail!(
                "the data plane cannot receive the snapshot: {}",
                strip_ansi(line)
            );
        }
        if Instant::now() > until {
            bail!(
                "the data plane did not serve the big snapshot within 300 s; see {}",
                dp_log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = dp_started.elapsed();
    let first = applied_lines(&dp_log).first().copied();
    let first_apply = first.and_then(|a| a.apply_ms);
    let (rss_loaded, hwm_loaded) = memory_mb(dp_pid).unwrap_or_default();
    println!();
    println!(
        "## Data plane with {} keys, {} routes, {} teams",
        args.keys, args.routes, args.teams
    );
    println!();
    println!(
        "- first snapshot: data plane start → first request served {:.2} s; apply (as the data \
         plane logs it) {}",
        ready.as_secs_f64(),
        first_apply.map_or("-".to_owned(), |ms| format!("{ms:.0} ms"))
    );
    println!(
        "- full snapshot: {} bytes on the wire",
        first
            .and_then(|a| a.bytes)
            .map_or("-".to_owned(), |b| b.to_string())
    );
    println!(
        "- RSS: {rss_empty:.1} MB before the snapshot, {rss_loaded:.1} MB once served, peak \
         (VmHWM) {hwm_loaded:.1} MB"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_settled, _) = memory_mb(dp_pid).unwrap_or_default();
    println!("- RSS 3 s later: {rss_settled:.1} MB");

    // A control plane that starts with rate limits defined learns the fleet's holdings for 15 s
    // before it grants shares; measure after that.
    tokio::time::sleep_until((cp_started + Duration::from_secs(16)).into()).await;

    // The baseline: the same load at the mock directly.
    let direct = RequestTemplate::new(
        &format!("http://{}/v1/chat/completions", args.mock_listen),
        &["Authorization: Bearer sk-bench".to_owned()],
        None,
        Some(body.clone()),
    )
    .await?;
    let timeout = Duration::from_secs(30);
    load::run_timed(
        vec![direct.clone()],
        args.concurrency,
        Duration::from_secs(1),
        Some(args.rate),
        timeout,
    )
    .await?;
    let direct_run = load::run_timed(
        vec![direct],
        args.concurrency,
        args.direct_duration,
        Some(args.rate),
        timeout,
    )
    .await?;

    // Warm the gateway's connections and leases, then measure with changes.
    load::run_timed(
        templates.clone(),
        args.concurrency,
        Duration::from_secs(2),
        Some(args.rate),
        timeout,
    )
    .await?;
    let applied_before = applied_lines(&dp_log).len();
    let peak_reset = reset_peak(dp_pid);
    let anchor = (Instant::now(), chrono::Utc::now());
    let offset = |t: Instant| -> i64 {
        i64::try_from(t.saturating_duration_since(anchor.0).as_nanos()).unwrap_or(i64::MAX)
    };

    let done = Arc::new(AtomicBool::new(false));
    let max_rss_kb = Arc::new(AtomicU64::new(0));
    let sampler = {
        let done = done.clone();
        let max_rss_kb = max_rss_kb.clone();
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some((rss, _)) = memory_mb(dp_pid) {
                    max_rss_kb.fetch_max((rss * 1024.0) as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let changer = {
        let every = args.duration / u32::try_from(args.changes + 1).unwrap_or(1);
        let admin = args.admin_listen.clone();
        let token = seeded.admin_token.clone();
        let team = seeded.team_id.clone();
        let changes = args.changes;
        tokio::spawn(async move {
            let mut made = Vec::new();
            for n in 0..changes {
                tokio::time::sleep_until(
                    (anchor.0 + every * (u32::try_from(n).unwrap_or(0) + 1)).into(),
                )
                .await;
                let sent = Instant::now();
                let r = admin_post(
                    &admin,
                    &token,
                    "/admin/v1/keys",
                    json!({"team_id": team, "name": format!("bench-change-{n}")}),
                )
                .await;
                let answered = Instant::now();
                made.push((sent, answered, r.map(|(s, _)| s).unwrap_or(0)));
            }
            made
        })
    };
    let gw = load::run_timed(
        templates,
        args.concurrency,
        args.duration,
        Some(args.rate),
        timeout,
    )
    .await?;
    let made = changer.await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    let (rss_after, hwm_after) = memory_mb(dp_pid).unwrap_or_default();

    let changes: Vec<Change> = made
        .iter()
        .map(|(sent, answered, status)| Change {
            sent: offset(*sent),
            answered: offset(*answered),
            status: *status,
        })
        .collect();
    let wall_offset = |at: chrono::DateTime<chrono::Utc>| -> i64 {
        (at - anchor.1).num_nanoseconds().unwrap_or(i64::MAX)
    };
    let applied: Vec<Applied> = applied_lines(&dp_log)
        .into_iter()
        .skip(applied_before)
        .collect();
    // Each change's window: from the admin call to the data plane's `applied` line (+20 ms),
    // and within it the data plane's own apply.
    let mut change_windows = Vec::new();
    let mut apply_windows = Vec::new();
    println!();
    println!("| change | admin call (commit + control-plane rebuild) | admin → applied on the data plane | data plane apply | sent as | bytes | index + journal | version |");
    println!("|---|---|---|---|---|---|---|---|");
    for (n, c) in changes.iter().enumerate() {
        // The admin call answers once the change is published; the first snapshot the data
        // plane applies after that carries it (several changes may share one).
        let Some(a) = applied.iter().find(|a| wall_offset(a.at) >= c.answered) else {
            println!(
                "| {n} | {:.0} ms (HTTP {}) | not applied | - | - | - | - | - |",
                (c.answered - c.sent) as f64 / 1e6,
                c.status
            );
            continue;
        };
        let at = wall_offset(a.at);
        change_windows.push((c.sent, at + 20_000_000));
        if let Some(ms) = a.apply_ms {
            apply_windows.push((at - (ms * 1e6) as i64, at));
        }
        println!(
            "| {n} | {:.0} ms (HTTP {}) | {:.0} ms | {} | {} | {} | {} | {} |",
            (c.answered - c.sent) as f64 / 1e6,
            c.status,
            (at - c.sent) as f64 / 1e6,
            a.apply_ms
                .map_or("-".to_owned(), |ms| format!("{ms:.2} ms")),
            if a.delta { "delta" } else { "full" },
            a.bytes.map_or("-".to_owned(), |b| b.to_string()),
            match (a.index_ms, a.journal_ms) {
                (Some(i), Some(j)) => format!("{i:.2} + {j:.2} ms"),
                _ => "-".to_owned(),
            },
            a.version
        );
    }

    // Split the gateway's requests.
    let base = offset(gw.start);
    let overlaps =
        |windows: &[(i64, i64)], s: i64, e: i64| windows.iter().any(|&(a, b)| s <= b && e >= a);
    let (mut steady, mut in_change, mut in_apply) = (Vec::new(), Vec::new(), Vec::new());
    for &(start, lat) in &gw.ok {
        let s = base + i64::try_from(start).unwrap_or(i64::MAX);
        let e = s + i64::try_from(lat).unwrap_or(i64::MAX);
        if overlaps(&apply_windows, s, e) {
            in_apply.push(lat);
        }
        if overlaps(&change_windows, s, e) {
            in_change.push(lat);
        } else {
            steady.push(lat);
        }
    }
    let failed_in = |windows: &[(i64, i64)]| {
        gw.failed_at_ns
            .iter()
            .filter(|&&s| {
                let s = base + i64::try_from(s).unwrap_or(i64::MAX);
                overlaps(windows, s, s)
            })
            .count()
    };
    let failed_change = failed_in(&change_windows);
    println!();
    println!(
        "Fixed rate {:.0} req/s, c={}, {} keys in turn; gateway {:.0} s with {} config changes \
         (a key created through the admin API → a new version, sent as a delta); direct {:.0} s.",
        args.rate,
        args.concurrency,
        args.load_keys,
        gw.elapsed.as_secs_f64(),
        args.changes,
        direct_run.elapsed.as_secs_f64()
    );
    println!();
    println!("| requests | n | p50 ms | p99 ms | p99.9 ms | max ms | failed |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "{}",
        row(
            "direct (mock)",
            direct_run.ok.iter().map(|&(_, l)| l).collect(),
            direct_run.failed_at_ns.len()
        )
    );
    println!(
        "{}",
        row(
            "gateway, steady state",
            steady,
            gw.failed_at_ns.len() - failed_change
        )
    );
    println!(
        "{}",
        row(
            "gateway, in flight during a change (admin call → applied)",
            in_change,
            failed_change
        )
    );
    println!(
        "{}",
        row(
            "gateway, in flight during the data plane's apply",
            in_apply,
            failed_in(&apply_windows)
        )
    );
    if let Some(e) = gw.first_non2xx.as_ref().or(gw.first_error.as_ref()) {
        println!("first failure: {e}");
    }
    println!();
    println!(
        "- load generator behind schedule: {} direct, {} gateway",
        direct_run.behind_schedule, gw.behind_schedule
    );
    println!(
        "- data plane RSS during the load: sampled max {:.1} MB, {} {:.1} MB; at the end {:.1} MB",
        max_rss_kb.load(Ordering::Relaxed) as f64 / 1024.0,
        if peak_reset {
            "VmHWM (reset before the load)"
        } else {
            "VmHWM (since start)"
        },
        hwm_after,
        rss_after
    );
    Ok(())
}
