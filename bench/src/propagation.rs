//! `propagation`: how long a committed config change takes to be applied by every node of a
//! fleet (printed, never asserted; issue rollouts' "100 data-plane clients" figure).
//!
//! 1. Makes a fleet CA, the control plane's certificate and one client certificate per node
//!    (`node-000`…, labelled `region=eu-west` or `region=us-east`, the first tenth also
//!    `canary=true`), and seeds a fresh SQLite database with a team, two providers and a route.
//! 2. Starts `modelgate control-plane` on it (mutual TLS) and, in this process, one data plane's
//!    config subscriber per node — the data plane's own `config::Subscriber`, each on its own
//!    gRPC channel and certificate, validating, sealing its last-known-good file and swapping its
//!    runtime exactly as a data-plane process does. Only the HTTP listeners are left out.
//! 3. Watches every node's served version with a 1 ms poll and, for each change, takes the time
//!    from sending the admin call to the moment each node serves a newer version.
//!
//! Scenario A: `--changes` key creations with no rollout policy (every change everywhere).
//! Scenario B: a rollout policy whose first wave is the canaries with a bake time of a day, a
//! route change that starts a rollout, the rollout paused in its first wave, then `--changes`
//! key revocations (security changes, which must reach both tracks).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use modelgate_control_plane::service::authz::Actor;
use modelgate_control_plane::service::{bootstrap, providers, routes, teams, Services};
use modelgate_data_plane::channel::{self, ControlPlaneSecurity};
use modelgate_data_plane::config::delta::UpdateCounts;
use modelgate_data_plane::config::{lkg, subscriber::Subscriber, Runtime, SharedRuntime};
use modelgate_shared::tls::{issue, TlsFiles};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::bigconfig::{memory_mb, wait_for_line, Children};
use crate::load;
use crate::stats::percentile_ms;

#[derive(Args, Debug)]
pub struct PropagationArgs {
    /// The `modelgate` binary (its control plane is measured).
    #[arg(long, default_value = "target/release/modelgate")]
    pub modelgate: std::path::PathBuf,
    /// Data-plane config subscribers.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Changes per scenario.
    #[arg(long, default_value_t = 20)]
    pub changes: usize,
    /// Pause between changes.
    #[arg(long, default_value = "300ms", value_parser = crate::parse_duration)]
    pub gap: Duration,
    #[arg(long, default_value = "127.0.0.1:18291")]
    pub admin_listen: String,
    #[arg(long, default_value = "127.0.0.1:18292")]
    pub grpc_listen: String,
}

/// One node of the fleet as the bench sees it: its served version and how its updates came.
struct Node {
    runtime: SharedRuntime,
    updates: Arc<UpdateCounts>,
}

impl Node {
    fn version(&self) -> u64 {
        self.runtime.load().version
    }
}

/// The admin API over plain HTTP (the bench's control plane serves it without TLS).
struct Admin {
    addr: String,
    token: String,
}

impl Admin {
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let sock: std::net::SocketAddr = self.addr.parse()?;
        let mut sender = load::connect(sock).await?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let req = http::Request::builder()
            .method(method.clone())
            .uri(format!("/admin/v1{path}"))
            .header(http::header::HOST, &self.addr)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload)))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)?
        })
    }
}

/// Times one change: sends it, then waits until every node in `nodes` serves a version above
/// what it served before. Returns each node's delay from the send, in ns.
async fn timed_change<F, Fut>(nodes: &[Node], change: F) -> anyhow::Result<Vec<u64>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Value>>,
{
    let before: Vec<u64> = nodes.iter().map(Node::version).collect();
    let sent = Instant::now();
    change().await?;
    let mut delays: Vec<Option<u64>> = vec![None; nodes.len()];
    let deadline = sent + Duration::from_secs(30);
    loop {
        let now = Instant::now();
        for (i, node) in nodes.iter().enumerate() {
            if delays[i].is_none() && node.version() > before[i] {
                delays[i] = Some(now.duration_since(sent).as_nanos() as u64);
            }
        }
        if delays.iter().all(Option::is_some) {
            return Ok(delays.into_iter().flatten().collect());
        }
        if now > deadline {
            let missing = delays.iter().filter(|d| d.is_none()).count();
            bail!(
                "{missing} of {} nodes did not apply the change within 30 s",
                nodes.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Prints one scenario's table: the time until the last node applied, and every node's delay.
fn report(name: &str, per_change: &[Vec<u64>]) {
    let mut all_nodes: Vec<u64> = per_change.iter().flatten().copied().collect();
    let mut last_node: Vec<u64> = per_change
        .iter()
        .filter_map(|d| d.iter().max().copied())
        .collect();
    all_nodes.sort_unstable();
    last_node.sort_unstable();
    let f = |v: &[u64], p: f64| percentile_ms(v, p).map_or("-".to_owned(), |x| format!("{x:.1}"));
    println!("\n{name}");
    println!("| measure | n | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    println!(
        "| send → applied on the last node (per change) | {} | {} | {} | {} |",
        last_node.len(),
        f(&last_node, 50.0),
        f(&last_node, 99.0),
        f(&last_node, 100.0)
    );
    println!(
        "| send → applied, each node | {} | {} | {} | {} |",
        all_nodes.len(),
        f(&all_nodes, 50.0),
        f(&all_nodes, 99.0),
        f(&all_nodes, 100.0)
    );
}

pub async fn run(args: PropagationArgs) -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!(
        "mg-propagation-{}",
        modelgate_shared::new_id().simple()
    ));
    std::fs::create_dir_all(&work)?;
    let result = run_in(&args, &work).await;
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        println!("work directory kept: {}", work.display());
    }
    result
}

fn node_labels(i: usize, nodes: usize) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let region = if i.is_multiple_of(2) {
        "eu-west"
    } else {
        "us-east"
    };
    labels.insert("region".to_owned(), region.to_owned());
    if i < nodes.div_ceil(10) {
        labels.insert("canary".to_owned(), "true".to_owned());
    }
    labels
}

async fn run_in(args: &PropagationArgs, work: &Path) -> anyhow::Result<()> {
    let mg = std::fs::canonicalize(&args.modelgate)
        .with_context(|| format!("the modelgate binary {}", args.modelgate.display()))?;
    let now = chrono::Utc::now();
    let certs = work.join("certs");
    issue::init_ca(&certs, now)?;
    issue::issue_control_plane(&certs, &["localhost".to_owned()], &[], now)?;
    for i in 0..args.nodes {
        issue::issue_node(
            &certs,
            &format!("node-{i:03}"),
            &node_labels(i, args.nodes),
            now,
        )?;
    }
    let pem = |n: &str| certs.join(n);

    // The database: a team to make keys in, two providers, the route `smart` on the first.
    let master_key = modelgate_control_plane::crypto::Sealer::generate_master_key_hex();
    let db_url = format!("sqlite://{}?mode=rwc", work.join("cp.db").display());
    let (token, team_id, second_provider) = {
        let db = modelgate_control_plane::store::connect(&db_url).await?;
        let s = Services::new(
            db,
            modelgate_control_plane::crypto::Sealer::from_hex(&master_key)?,
            modelgate_shared::clock::system(),
        );
        let token = bootstrap::ensure_initialized(&s)
            .await?
            .context("a fresh database mints a bootstrap token")?;
        let actor = Actor::system();
        let mut provider_ids = Vec::new();
        for p in 0..2 {
            let input = serde_json::from_value(json!({
                "name": format!("bench-upstream-{p}"),
                "kind": "openai-compatible",
                "base_url": "http://127.0.0.1:9/v1",
                "credential": format!("sk-bench-{p}"),
            }))?;
            provider_ids.push(providers::create(&s, &actor, input).await?.id);
        }
        let route = serde_json::from_value(json!({
            "alias": "smart",
            "deployments": [{"provider_id": provider_ids[0], "model": "gpt-4o-mini"}],
        }))?;
        routes::create(&s, &actor, route).await?;
        let team = teams::create(
            &s,
            &actor,
            serde_json::from_value(json!({"name": "bench"}))?,
        )
        .await?;
        s.db.close().await?;
        (token, team.id, provider_ids[1].clone())
    };

    let mut children = Children::default();
    let cp_log = work.join("cp.log");
    let mut cp = Command::new(&mg);
    cp.args(["control-plane", "--database-url", &db_url])
        .args([
            "--admin-listen",
            &args.admin_listen,
            "--grpc-listen",
            &args.grpc_listen,
        ])
        .arg("--tls-ca")
        .arg(pem("ca.pem"))
        .arg("--tls-cert")
        .arg(pem("control-plane.pem"))
        .arg("--tls-key")
        .arg(pem("control-plane-key.pem"))
        .env("MODELGATE_MASTER_KEY", &master_key);
    let cp_pid = children.spawn("control plane", cp, &cp_log)?;
    wait_for_line(
        &mut children,
        cp_pid,
        &cp_log,
        "MODELGATE_ADMIN_URL=",
        Duration::from_secs(120),
    )
    .await?;
    let admin = Admin {
        addr: args.admin_listen.clone(),
        token,
    };

    // The fleet.
    let grpc_port = args.grpc_listen.rsplit(':').next().unwrap_or_default();
    let url = format!("https://localhost:{grpc_port}");
    let shutdown = CancellationToken::new();
    let mut nodes = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let node_id = format!("node-{i:03}");
        let files = TlsFiles {
            ca: pem("ca.pem"),
            cert: pem(&format!("{node_id}.pem")),
            key: pem(&format!("{node_id}-key.pem")),
        };
        let channel = channel::connect(&url, &ControlPlaneSecurity::Tls(files))?;
        let data_dir = work.join("nodes").join(&node_id);
        modelgate_shared::secret_fs::create_private_dir_all(&data_dir)?;
        let lkg_sealer = lkg::sealer(&data_dir, &lkg::LkgKey::GeneratedBesideData)?;
        let runtime: SharedRuntime = Arc::new(ArcSwap::from_pointee(Runtime::default()));
        let updates = Arc::new(UpdateCounts::default());
        let subscriber = Subscriber {
            channel,
            node_id,
            labels: node_labels(i, args.nodes).into_iter().collect(),
            data_dir,
            lkg_sealer,
            runtime: runtime.clone(),
            shutdown: shutdown.clone(),
            health_report_interval: Duration::from_secs(5),
            traffic: Arc::default(),
            updates: updates.clone(),
        };
        tokio::spawn(subscriber.run());
        nodes.push(Node { runtime, updates });
    }
    let started = Instant::now();
    loop {
        let served = nodes.iter().filter(|n| n.version() > 0).count();
        if served == nodes.len() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "only {served} of {} nodes received a snapshot within 60 s",
                nodes.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "{} nodes connected over mutual TLS and serving in {:.2} s; control plane RSS {:.0} MB",
        nodes.len(),
        started.elapsed().as_secs_f64(),
        memory_mb(cp_pid).map_or(0.0, |m| m.0)
    );

    // Scenario A: key creations, no rollout policy.
    let mut created = Vec::new();
    let mut per_change = Vec::new();
    for i in 0..args.changes {
        let mut key_id = String::new();
        let delays = timed_change(&nodes, || async {
            let v = admin
                .call(
                    http::Method::POST,
                    "/keys",
                    Some(json!({"team_id": team_id, "name": format!("bench-{i}"), "environment": "prod"})),
                )
                .await?;
            key_id = v["id"].as_str().unwrap_or_default().to_owned();
            Ok(v)
        })
        .await?;
        created.push(key_id);
        per_change.push(delays);
        tokio::time::sleep(args.gap).await;
    }
    report(
        &format!(
            "A. key created (no rollout policy): {} changes, {} nodes",
            args.changes,
            nodes.len()
        ),
        &per_change,
    );

    // Scenario B: a rollout paused in its canary wave, then key revocations.
    admin
        .call(
            http::Method::PUT,
            "/rollouts/policy",
            Some(json!({
                "waves": [
                    {"selector": "canary=true", "bake_s": 86_400},
                    {"selector": "region=*", "bake_s": 86_400},
                ],
                "on_failure": "pause",
            })),
        )
        .await?;
    let canaries = args.nodes.div_ceil(10);
    let before: Vec<u64> = nodes.iter().map(Node::version).collect();
    admin
        .call(
            http::Method::PUT,
            "/routes/smart",
            Some(json!({"alias": "smart", "deployments": [{"provider_id": second_provider, "model": "gpt-4o-mini"}]})),
        )
        .await?;
    let rollout = admin.call(http::Method::GET, "/rollouts", None).await?;
    let rollout_id = rollout["data"][0]["id"]
        .as_str()
        .context("the route change started a rollout")?
        .to_owned();
    admin
        .call(
            http::Method::POST,
            &format!("/rollouts/{rollout_id}/pause"),
            None,
        )
        .await?;
    let waited = Instant::now();
    while (0..canaries).any(|i| nodes[i].version() <= before[i]) {
        if waited.elapsed() > Duration::from_secs(30) {
            bail!("the canaries did not receive the rollout's version within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let moved = (canaries..nodes.len())
        .filter(|&i| nodes[i].version() > before[i])
        .count();
    if moved > 0 {
        bail!("{moved} nodes outside the canary wave received the rollout's version");
    }
    let mut per_change = Vec::new();
    for key_id in &created {
        let path = format!("/keys/{key_id}/revoke");
        let delays = timed_change(&nodes, || admin.call(http::Method::POST, &path, None)).await?;
        per_change.push(delays);
        tokio::time::sleep(args.gap).await;
    }
    report(
        &format!(
            "B. key revoked during a rollout paused in its canary wave ({canaries} canaries on the \
             new version, {} on the old): {} changes",
            nodes.len() - canaries,
            created.len()
        ),
        &per_change,
    );
    let sum = |f: fn(&UpdateCounts) -> u64| nodes.iter().map(|n| f(&n.updates)).sum::<u64>();
    println!(
        "\nupdates applied by the fleet: {} full snapshots, {} deltas, {} resyncs asked for",
        sum(UpdateCounts::full),
        sum(UpdateCounts::deltas),
        sum(UpdateCounts::resyncs)
    );
    println!(
        "control plane RSS {:.0} MB (peak {:.0} MB)",
        memory_mb(cp_pid).map_or(0.0, |m| m.0),
        memory_mb(cp_pid).map_or(0.0, |m| m.1)
    );
    shutdown.cancel();
    Ok(())
}
