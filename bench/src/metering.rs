//! Metering figures (printed, never asserted):
//!
//! * `ingest` — usage ingest throughput into the control plane's database over the real gRPC
//!   `UsageService` stream: events/s at a given batch size and number of concurrent streams.
//!   By default each stream is a data plane's own shipper reading its own spool, filled before
//!   the clock starts (`--sender shipper`: the sender's work is what a node does, a spool read
//!   and a copy of already-encoded records); `--sender client` instead sends prost-built
//!   batches through the generated client, one call per batch, at any `--batch` size.
//! * `spool` — the data plane's spool append cost: events/s and µs per event with many
//!   concurrent appenders (group commit), and the latency of a lone appender.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use modelgate_control_plane::grpc::transport::GrpcSecurity;
use modelgate_data_plane::channel::{self, ControlPlaneSecurity};
use modelgate_data_plane::usage::spool::{FsyncPolicy, Spool, SpoolOptions};
use modelgate_proto::usage::v1::{
    usage_service_client::UsageServiceClient, UsageBatch, UsageEvent,
};
use modelgate_shared::tls::{issue, Reloading, TlsFiles};
use modelgate_shared::usage::{Attempt, UsageEvent as DomainEvent, USAGE_SCHEMA_VERSION};
use sea_orm::{ConnectionTrait, Database};

use crate::procstat;

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// A Postgres server URL (a fresh database is created on it and dropped afterwards), or a
    /// `sqlite://` URL.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub database_url: String,
    /// Events per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Concurrent gRPC streams (data planes).
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// Events in all.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Who ships: `shipper` (a data plane's shipper over a filled spool per stream; batches of
    /// the shipper's own size, `--batch` is ignored) or `client` (the generated gRPC client
    /// sending prost-encoded batches of `--batch` events).
    #[arg(long, value_enum, default_value_t = Sender::Shipper)]
    pub sender: Sender,
    /// Ingest into `--database-url` as it is, kept afterwards (e.g. the scratch database the
    /// request-log bench filled with 10M rows), instead of a fresh database dropped at the end.
    #[arg(long)]
    pub existing_database: bool,
    /// The control plane's master key (64 hex digits); a new one each run by default. An
    /// `--existing-database` needs the same key on every run after its first.
    #[arg(long, env = "MODELGATE_MASTER_KEY")]
    pub master_key: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Shipper,
    Client,
}

/// Key `i % keys.len()` with its team: ingest quarantines events of keys that do not exist.
fn sample_event(i: usize, keys: &[(String, String)]) -> DomainEvent {
    let (key_id, team_id) = keys[i % keys.len()].clone();
    let now = chrono::Utc::now().timestamp_millis();
    DomainEvent {
        schema_version: USAGE_SCHEMA_VERSION,
        id: modelgate_shared::new_id().to_string(),
        request_id: modelgate_shared::new_id().to_string(),
        started_at_ms: now - 250,
        first_byte_at_ms: now - 200,
        ended_at_ms: now,
        node_id: "bench-node".into(),
        region: "eu-west".into(),
        key_id,
        team_id,
        environment: Some(modelgate_shared::usage::Environment::Prod),
        endpoint: "chat.completions".into(),
        requested_model: "smart".into(),
        provider_id: "prov-1".into(),
        served_model: format!("gpt-4o-mini-{}", i % 3),
        deployment_id: "prov-1/gpt-4o-mini".into(),
        attempts: vec![Attempt {
            deployment_id: "prov-1/gpt-4o-mini".into(),
            provider_id: "prov-1".into(),
            model: "gpt-4o-mini".into(),
            status: 200,
            error_class: None,
            latency_us: 200_000,
            ..Default::default()
        }],
        status: 200,
        latency_us: 250_000,
        ttfb_us: 50_000,
        input_tokens: 120,
        output_tokens: 40,
        cost_micros: 42,
        price_version: 1,
        traffic_class: Some(modelgate_shared::usage::TrafficClass::Interactive),
        ..Default::default()
    }
}

/// 50 keys in 5 teams, made through the service layer: (key id, team id). Team names carry the
/// run's own suffix, so runs can share an `--existing-database`.
async fn bench_keys(
    s: &modelgate_control_plane::service::Services,
) -> anyhow::Result<Vec<(String, String)>> {
    use modelgate_control_plane::service::{authz::Actor, keys, teams};
    let actor = Actor::system();
    let mut teams_made = Vec::new();
    let run = modelgate_shared::new_id().simple().to_string();
    for t in 0..5 {
        let name = format!("bench-team-{t}-{}", &run[run.len() - 8..]);
        teams_made.push(
            teams::create(s, &actor, teams::CreateTeam { name })
                .await?
                .id,
        );
    }
    let mut out = Vec::new();
    for k in 0..50 {
        let team_id = teams_made[k % teams_made.len()].clone();
        let input = keys::CreateKey {
            team_id: team_id.clone(),
            name: format!("bench-key-{k}"),
            environment: Some("prod".into()),
            ..Default::default()
        };
        out.push((keys::create(s, &actor, input).await?.key.id, team_id));
    }
    Ok(out)
}

/// The bench's fleet: a throwaway CA and certificates under `pki`, the control plane's gRPC
/// endpoint, and the keys the events name.
struct Fleet {
    pki: std::path::PathBuf,
    endpoint: String,
    keys: Vec<(String, String)>,
    now: chrono::DateTime<chrono::Utc>,
}

impl Fleet {
    fn files(&self, name: &str) -> TlsFiles {
        TlsFiles {
            ca: self.pki.join("ca.pem"),
            cert: self.pki.join(format!("{name}.pem")),
            key: self.pki.join(format!("{name}-key.pem")),
        }
    }

    /// A channel to the control plane as data plane `node`, with a certificate of its own.
    fn node_channel(&self, node: &str) -> anyhow::Result<tonic::transport::Channel> {
        issue::issue_node(&self.pki, node, &Default::default(), self.now)?;
        Ok(channel::connect(
            &self.endpoint,
            &ControlPlaneSecurity::Tls(self.files(node)),
        )?)
    }
}

pub async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let (url, cleanup) = if args.database_url.starts_with("postgres") && !args.existing_database {
        let name = format!("mg_bench_{}", modelgate_shared::new_id().simple());
        let admin = Database::connect(&args.database_url)
            .await
            .context("connecting to Postgres")?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        let (prefix, _) = args
            .database_url
            .rsplit_once('/')
            .context("a database URL ends in /<database>")?;
        (format!("{prefix}/{name}"), Some((admin, name)))
    } else {
        (args.database_url.clone(), None)
    };
    // Mutual TLS as in production: a throwaway fleet CA, one node certificate per stream.
    let pki = std::env::temp_dir().join(format!(
        "mg-bench-pki-{}",
        modelgate_shared::new_id().simple()
    ));
    let now = chrono::Utc::now();
    issue::init_ca(&pki, now)?;
    issue::issue_control_plane(&pki, &["localhost".to_owned()], &[], now)?;
    let mut fleet = Fleet {
        pki,
        endpoint: String::new(),
        keys: Vec::new(),
        now,
    };
    let cp = modelgate_control_plane::start(modelgate_control_plane::Settings {
        database_url: url,
        master_key_hex: args
            .master_key
            .clone()
            .unwrap_or_else(modelgate_control_plane::crypto::Sealer::generate_master_key_hex)
            .into(),
        admin_listen: "127.0.0.1:0".parse()?,
        admin_http: Default::default(),
        grpc_listen: "127.0.0.1:0".parse()?,
        grpc_security: GrpcSecurity::Tls(Arc::new(Reloading::server(
            fleet.files("control-plane"),
        )?)),
        grpc_limits: Default::default(),
        metrics_listen: None,
        clock: modelgate_shared::clock::system(),
        usage_retention: None,
        config_drift_after: modelgate_control_plane::service::DEFAULT_CONFIG_DRIFT_AFTER,
        statement_grace: modelgate_control_plane::service::statements::DEFAULT_GRACE,
    })
    .await?;
    fleet.keys = bench_keys(&cp.services).await?;
    fleet.endpoint = format!("https://localhost:{}", cp.grpc_addr.port());
    let per_stream = args.events / args.streams.max(1);
    let total = per_stream * args.streams;
    let measured = match args.sender {
        Sender::Shipper => ship_from_spools(&args, &fleet).await?,
        Sender::Client => send_batches(&args, &fleet).await?,
    };
    let Measured {
        elapsed,
        mut latencies,
        cpu_before,
        cpu_after,
    } = measured;
    let batch = match args.sender {
        Sender::Shipper => modelgate_data_plane::usage::shipper::BATCH,
        Sender::Client => args.batch,
    };
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let what = match args.sender {
        Sender::Shipper => "stream drained at",
        Sender::Client => "batch ack",
    };
    println!(
        "ingest ({:?}): {total} events, batch {batch}, {} streams: {:.0} events/s in {:.2} s; {what} p50 {:.1} ms, p99 {:.1} ms",
        args.sender,
        args.streams,
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    // Where the CPU went, per event: Postgres (every `postgres` process on the machine), this
    // process (the control plane and the clients standing in for data planes), and how busy
    // the whole machine was (other work included).
    let per_event_us =
        |ticks: u64| ticks as f64 / procstat::CLOCK_TICKS_PER_SEC * 1e6 / total.max(1) as f64;
    let busy = match (cpu_before.2, cpu_after.2) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            format!("{:.0} %", (b1 - b0) as f64 * 100.0 / (t1 - t0) as f64)
        }
        _ => "unknown".into(),
    };
    println!(
        "ingest CPU per event: Postgres {:.1} µs, control plane + clients {:.1} µs; machine busy {busy}",
        per_event_us(cpu_after.1.saturating_sub(cpu_before.1)),
        per_event_us(cpu_after.0.saturating_sub(cpu_before.0)),
    );
    cp.shutdown().await;
    let _ = std::fs::remove_dir_all(&fleet.pki);
    if let Some((admin, name)) = cleanup {
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
    }
    Ok(())
}

/// CPU readings: this process's ticks, every `postgres` process's ticks, and the machine's
/// (busy, total) ticks.
type CpuReading = (u64, u64, Option<(u64, u64)>);

fn cpu_now() -> anyhow::Result<CpuReading> {
    Ok((
        procstat::cpu_ticks(std::process::id())?,
        procstat::cpu_ticks_named("postgres"),
        procstat::machine_ticks(),
    ))
}

/// One run's clock, batch acknowledgement times and CPU readings around it.
struct Measured {
    elapsed: Duration,
    latencies: Vec<Duration>,
    cpu_before: CpuReading,
    cpu_after: CpuReading,
}

/// `--sender shipper`: each stream is a node's spool, filled with its share of the events
/// before the clock starts, and the node's own shipper sending it to the control plane. The
/// clock stops when every spool is acknowledged to its end.
async fn ship_from_spools(args: &IngestArgs, fleet: &Fleet) -> anyhow::Result<Measured> {
    use modelgate_data_plane::usage::shipper::{backlog_bytes, Shipper};
    let per_stream = args.events / args.streams.max(1);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut nodes = Vec::new();
    for s in 0..args.streams {
        let node = format!("bench-{s}");
        let dir = fleet.pki.join(format!("spool-{s}"));
        let spool = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Never))?;
        for j in 0..per_stream {
            let mut e = sample_event(s * per_stream + j, &fleet.keys);
            e.node_id.clone_from(&node);
            spool.append(&e).await?;
        }
        let channel = fleet.node_channel(&node)?;
        nodes.push((node, spool, channel));
    }
    let cpu_before = cpu_now()?;
    let started = Instant::now();
    let mut shippers = Vec::new();
    let mut spools = Vec::new();
    for (node_id, spool, channel) in nodes {
        shippers.push(tokio::spawn(
            Shipper {
                channel,
                node_id,
                committed: spool.committed(),
                spool: spool.clone(),
                shutdown: shutdown.clone(),
            }
            .run(),
        ));
        spools.push(spool);
    }
    // Each spool's backlog is read from its cursor file and segment sizes: a few system calls
    // every 20 ms (to within 0.5 % of a run of several seconds).
    let mut drained_at = vec![None; spools.len()];
    while drained_at.iter().any(Option::is_none) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (spool, at) in spools.iter().zip(drained_at.iter_mut()) {
            if at.is_none() && backlog_bytes(spool) == 0 {
                *at = Some(started.elapsed());
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the spools were not drained within 10 minutes"
        );
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu_now()?;
    shutdown.cancel();
    for s in shippers {
        s.await?;
    }
    Ok(Measured {
        elapsed,
        // The shipper does not expose per-batch times; each stream's time to drain stands in.
        latencies: drained_at.into_iter().flatten().collect(),
        cpu_before,
        cpu_after,
    })
}

/// `--sender client`: prost-built batches of `--batch` events sent through the generated
/// client, one call and one batch in flight per stream.
async fn send_batches(args: &IngestArgs, fleet: &Fleet) -> anyhow::Result<Measured> {
    let per_stream = args.events / args.streams.max(1);
    // Build every batch first so the measurement is the ingest, not the generator.
    let mut work = Vec::new();
    for s in 0..args.streams {
        let mut batches = Vec::new();
        let mut i = 0;
        while i < per_stream {
            let n = args.batch.min(per_stream - i);
            let events: Vec<UsageEvent> = (i..i + n)
                .map(|j| {
                    let mut e = UsageEvent::from(&sample_event(s * per_stream + j, &fleet.keys));
                    e.node_id = format!("bench-{s}");
                    e
                })
                .collect();
            batches.push(UsageBatch {
                batch_id: modelgate_shared::new_id().to_string(),
                node_id: format!("bench-{s}"),
                resent: false,
                events,
            });
            i += n;
        }
        let node = format!("bench-{s}");
        let channel = fleet.node_channel(&node)?;
        work.push((channel, batches));
    }
    let cpu_before = cpu_now()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (channel, batches) in work {
        tasks.push(tokio::spawn(async move {
            let mut client = UsageServiceClient::new(channel);
            let mut latencies = Vec::with_capacity(batches.len());
            // One batch in flight per stream, as a data plane's shipper does.
            for batch in batches {
                let t = Instant::now();
                let mut acks = client
                    .report(tokio_stream::iter(vec![batch]))
                    .await?
                    .into_inner();
                let ack = acks.message().await?.context("acknowledgement")?;
                anyhow::ensure!(
                    ack.quarantined == 0,
                    "{} bench events were quarantined",
                    ack.quarantined
                );
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu_now()?;
    Ok(Measured {
        elapsed,
        latencies,
        cpu_before,
        cpu_after,
    })
}

#[derive(Args, Debug)]
pub struct SpoolArgs {
    /// Directory for the spool (a fresh subdirectory is used and removed).
    #[arg(long, default_value = "/tmp")]
    pub dir: std::path::PathBuf,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Events in all.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// always, never or interval:<n>ms.
    #[arg(long, default_value = "interval:10ms")]
    pub fsync: String,
}

pub async fn spool(args: SpoolArgs) -> anyhow::Result<()> {
    let fsync =
        FsyncPolicy::parse(&args.fsync).context("--fsync: always, never or interval:<n>ms")?;
    let dir = args.dir.join(format!(
        "mg-spool-bench-{}",
        modelgate_shared::new_id().simple()
    ));
    let spool = Spool::open(&dir, SpoolOptions::with_fsync(fsync))?;
    let event = sample_event(0, &[("key-0".into(), "team-0".into())]);
    let size = prost::Message::encoded_len(&UsageEvent::from(&event));

    // A lone appender: the latency a request adds at low load.
    let mut lone = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        spool.append(&event).await?;
        lone.push(t.elapsed());
    }
    lone.sort();

    let per_task = args.events / args.concurrency.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (spool, event) = (spool.clone(), event.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                spool.append(&event).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let total = per_task * args.concurrency;
    println!(
        "spool ({fsync}): {total} events of {size} B from {} appenders: {:.0} events/s, {:.2} µs per event; lone appender p50 {:.1} µs, p99 {:.1} µs",
        args.concurrency,
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / total as f64,
        micros(lone[lone.len() / 2]),
        micros(lone[lone.len() * 99 / 100]),
    );
    drop(spool);
    std::thread::sleep(Duration::from_millis(50));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
