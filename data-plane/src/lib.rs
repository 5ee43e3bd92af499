//! The ModelGate data plane: a stateless proxy. It authenticates gateway keys against the
//! current config snapshot, routes to a provider deployment, streams the answer back, and writes
//! one usage event per request to a local spool that is shipped to the control plane.
//!
//! Layout, lowest first — a module imports only modules listed before it, never one that uses
//! it (no circle of imports spans two folders: `tests/import_layers.rs`):
//!
//! - `error` (`ProxyError`, the typed refusal), `time` (clock readings), `sse` (event framing),
//!   `channel` (the one mutual-TLS gRPC channel to the control plane), `metrics/` (the
//!   Prometheus registry: request metrics recorded when a usage event is sealed, node readings
//!   at scrape time);
//! - `surfaces/` (one module per client-facing format: request peek, error rendering),
//!   `estimate/` (tokenizer counts when a provider reports no usage), `translate/` (between
//!   OpenAI chat, Anthropic Messages and Gemini: requests, answers, streams), `providers/` (one
//!   module per provider wire format; the built-in mock apart in `providers/mock/`);
//! - `routing/` (deployment health, retry budget), `config/` (snapshot subscriber, runtime
//!   index, last-known-good), `auth/` (the key a secret belongs to), `limits` and `quota` (the
//!   node's rate-limit shares and budget slices), `usage/` (recorder, spool, shipper),
//!   `security/` (refusals before authentication: throttle, security log), `cache/` (the
//!   response cache: canonical keys, the in-process layer, Redis, streams made from answers);
//! - `pipeline/`: the request path, one module per stage — accept → authenticate → parse →
//!   admit (the decision is `modelgate_shared::admission`) → plan → attempt → answer or pump →
//!   account;
//! - `server/`: the HTTP edge (routes over the pipeline, the anonymous guard, the metrics
//!   listener's `/metrics`, the worker threads that serve the proxy port).
//!
//! `trace` (OpenTelemetry spans and the W3C trace context, R-7.3) sits beside `metrics`, at the
//! bottom: the usage recorder owns a request's trace, the attempt stage starts each attempt's.

pub mod auth;
pub mod cache;
pub mod channel;
pub mod config;
pub mod error;
pub mod estimate;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod providers;
pub mod quota;
pub mod routing;
pub mod security;
pub mod server;
pub mod sse;
pub mod surfaces;
pub mod time;
pub mod trace;
pub mod translate;
pub mod usage;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use modelgate_listener::{HttpOptions, Listener};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::config::lkg::LkgKey;
use crate::config::{lkg, subscriber::Subscriber, Runtime};
use crate::usage::spool::{Spool, SpoolOptions};

/// How to run a data plane.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Timeouts, connection cap and optional TLS of the proxy listener (the metrics listener
    /// takes the same limits, never TLS).
    pub http: HttpOptions,
    /// Where `/metrics` is served (loopback by default; not on the proxy port).
    pub metrics_listen: SocketAddr,
    /// Threads serving the proxy listener, each with its own single-threaded runtime (see
    /// [`server::workers`]); 0: one per CPU.
    pub workers: usize,
    /// The control plane's gRPC endpoint, e.g. `https://cp.internal:9091`, or several replicas'
    /// comma-separated (see [`channel::connect`]).
    pub control_plane_url: String,
    /// Mutual TLS to the control plane (or, explicitly, none). Under TLS the control plane
    /// attributes every call to the node id its certificate names; `node_id` must equal it.
    pub grpc_security: channel::ControlPlaneSecurity,
    pub node_id: String,
    pub labels: HashMap<String, String>,
    /// Holds the last-known-good snapshot and the usage spool.
    pub data_dir: PathBuf,
    pub max_body_bytes: usize,
    /// The cap on a transcription or translation upload, the whole multipart body (OpenAI's
    /// own limit is 25 MB).
    pub max_audio_bytes: usize,
    /// Durability and disk bound of the usage spool.
    pub spool: SpoolOptions,
    /// The key sealing the last-known-good file (see [`LkgKey`]: generated beside the data only
    /// for `modelgate up` or when the operator insists).
    pub lkg_key: LkgKey,
    /// How often the node reports its deployments' health to the control plane.
    pub health_report_interval: Duration,
    /// Wall-clock time for budget periods (`modelgate_shared::clock::system()` in production).
    pub clock: modelgate_shared::clock::SharedClock,
    /// Refusals before authentication: the per-address throttle and the security log.
    pub security: security::Options,
    /// The response cache: its in-process bound and its shared store (Redis), if any.
    pub cache: cache::Settings,
    /// Where to export OpenTelemetry trace spans (OTLP over gRPC, `http://host:4317`); `None`
    /// (the default) exports nothing and still passes the client's `traceparent` upstream.
    pub otlp_endpoint: Option<String>,
}

pub struct RunningDataPlane {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub runtime: config::SharedRuntime,
    pub spool: Spool,
    shutdown: CancellationToken,
    workers: server::workers::Workers,
    streams: tokio_util::task::TaskTracker,
    /// The usage shipper, stopped by its own token after the drain (see [`Self::shutdown`]).
    shipper: JoinHandle<()>,
    stop_shipping: CancellationToken,
    background: Vec<JoinHandle<()>>,
    /// Rate-limit shares, whose concurrency slots go back to the control plane at shutdown.
    limits: Arc<limits::Limits>,
    /// Full snapshots and deltas applied, resyncs asked for.
    config_updates: Arc<config::delta::UpdateCounts>,
    /// Flushed at shutdown, after the last request's span has ended.
    tracer: trace::Tracer,
}

/// How long shutdown waits for in-flight requests and streams, and then for the control plane
/// to acknowledge the spooled usage.
const DRAIN: Duration = Duration::from_secs(10);

pub async fn start(settings: Settings) -> anyhow::Result<RunningDataPlane> {
    if matches!(settings.lkg_key, LkgKey::InsecureBesideData) {
        tracing::warn!(
            data_dir = %settings.data_dir.display(),
            "insecure: the last-known-good key is kept beside the snapshot it seals \
             (--insecure-key-beside-data); whoever can read the data directory can read provider \
             credentials; set MODELGATE_LKG_KEY or MODELGATE_LKG_KEY_FILE instead"
        );
    }
    modelgate_shared::secret_fs::create_private_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    let lkg_sealer = lkg::sealer(&settings.data_dir, &settings.lkg_key)
        .context("loading the last-known-good key")?;
    let initial = match lkg::load(&settings.data_dir, &lkg_sealer) {
        Ok(Some(snapshot)) => {
            tracing::info!(
                version = snapshot.version,
                "serving from the last-known-good snapshot until the control plane answers"
            );
            let runtime = Runtime::build(snapshot);
            // The whole file, its decoded message and config are gone: give their pages back.
            config::subscriber::release_free_memory();
            runtime
        }
        Ok(None) => Runtime::default(),
        Err(e) => {
            tracing::error!(error = %e, "ignoring an unreadable last-known-good snapshot");
            Runtime::default()
        }
    };
    let runtime: config::SharedRuntime = Arc::new(ArcSwap::from_pointee(initial));
    let spool_dir = settings.data_dir.join("spool");
    let spool = Spool::open(&spool_dir, settings.spool).context("opening the usage spool")?;
    let shutdown = CancellationToken::new();
    let stop_shipping = CancellationToken::new();
    if let channel::ControlPlaneSecurity::Tls(files) = &settings.grpc_security {
        check_identity(&settings, files)?;
    }
    let control_plane = channel::connect(&settings.control_plane_url, &settings.grpc_security)
        .context("the control plane channel")?;

    let metrics = Arc::new(metrics::Metrics::new(runtime.clone()));
    let config_updates = Arc::new(config::delta::UpdateCounts::default());
    let subscriber = Subscriber {
        updates: config_updates.clone(),
        traffic: metrics.traffic(),
        channel: control_plane.clone(),
        node_id: settings.node_id.clone(),
        labels: settings.labels.clone(),
        data_dir: settings.data_dir.clone(),
        lkg_sealer,
        runtime: runtime.clone(),
        shutdown: shutdown.clone(),
        health_report_interval: settings.health_report_interval,
    };
    let shipper = usage::shipper::Shipper {
        channel: control_plane.clone(),
        node_id: settings.node_id.clone(),
        spool: spool.clone(),
        committed: spool.committed(),
        // Not the listeners' token: at shutdown the shipper outlives the drain, to hand over
        // the usage of the requests that finished during it.
        shutdown: stop_shipping.clone(),
    };

    let tracer = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let t = trace::Tracer::otlp(endpoint, &settings.node_id)?;
            tracing::info!(%endpoint, "exporting trace spans over OTLP");
            t
        }
        None => trace::Tracer::off(),
    };
    let tasks = tokio_util::task::TaskTracker::new();
    let cache = Arc::new(
        cache::Cache::new(&settings.cache, metrics.clone()).context("the response cache")?,
    );
    let app = Arc::new(pipeline::AppState {
        config_updates: config_updates.clone(),
        cache,
        runtime: runtime.clone(),
        spool: spool.clone(),
        origin: Arc::new(usage::Origin {
            node_id: settings.node_id.clone(),
            region: settings.labels.get("region").cloned().unwrap_or_default(),
            metrics: metrics.clone(),
            tracer: tracer.clone(),
        }),
        max_body_bytes: settings.max_body_bytes,
        max_audio_bytes: settings.max_audio_bytes,
        tasks: tasks.clone(),
        retry_budget: Arc::default(),
        videos_metered: Arc::default(),
        quotas: quota::Quotas::new(&settings.node_id, control_plane.clone()),
        limits: limits::Limits::new(&settings.node_id, control_plane),
        clock: settings.clock.clone(),
        security: security::Guard::start(&settings.data_dir, &settings.security),
    });
    let app_limits = app.limits.clone();
    let listener = Listener::bind(settings.listen, settings.http.clone())
        .await
        .context("the proxy listener")?
        .nodelay();
    let addr = listener.local_addr()?;
    let metrics_listener = Listener::bind(
        settings.metrics_listen,
        HttpOptions {
            tls: None,
            ..settings.http.clone()
        },
    )
    .await
    .context("the metrics listener")?;
    let metrics_addr = metrics_listener.local_addr()?;
    let certificates = match &settings.grpc_security {
        channel::ControlPlaneSecurity::Tls(files) => Some(files.clone()),
        channel::ControlPlaneSecurity::InsecurePlaintext => None,
    };
    let metrics_task = tokio::spawn(metrics_listener.serve(
        server::metrics_router(app.clone(), certificates),
        shutdown.clone(),
    ));
    let worker_count = match settings.workers {
        0 => server::workers::default_count(),
        n => n,
    };
    let workers =
        server::workers::Workers::start(listener, worker_count, server::Proxy::new(app), &shutdown)
            .context("the proxy's worker threads")?;
    let shipper = tokio::spawn(shipper.run());
    let background = vec![
        metrics_task,
        tokio::spawn(subscriber.run()),
        tokio::spawn(app_limits.clone().keep(runtime.clone())),
        tokio::spawn(channel::warn_while_plaintext(
            settings.grpc_security.clone(),
            shutdown.clone(),
        )),
    ];
    tracing::info!(%addr, %metrics_addr, node = %settings.node_id, workers = worker_count, "data plane started");
    Ok(RunningDataPlane {
        config_updates,
        addr,
        metrics_addr,
        limits: app_limits,
        tracer,
        runtime,
        spool,
        shutdown,
        workers,
        streams: tasks,
        shipper,
        stop_shipping,
        background,
    })
}

/// Under TLS the control plane knows this node by its certificate: refuse to start with another
/// node id, or other labels than a certificate that carries labels.
fn check_identity(
    settings: &Settings,
    files: &modelgate_shared::tls::TlsFiles,
) -> anyhow::Result<()> {
    let id = channel::certificate_identity(files)
        .with_context(|| format!("reading the node identity from {}", files.cert.display()))?;
    if id.node_id != settings.node_id {
        anyhow::bail!(
            "the node id is `{}` but the certificate {} is for node `{}`",
            settings.node_id,
            files.cert.display(),
            id.node_id
        );
    }
    let labels: std::collections::BTreeMap<_, _> = settings
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !id.labels.is_empty() && labels != id.labels {
        anyhow::bail!(
            "the labels {labels:?} differ from the ones the certificate {} carries: {:?}",
            files.cert.display(),
            id.labels
        );
    }
    Ok(())
}

impl RunningDataPlane {
    /// Stops accepting (new connections are refused), lets in-flight requests and streams
    /// finish (bounded), writes every pending usage event to the spool, lets the shipper hand
    /// the spool to the control plane until it acknowledged everything (bounded), then stops
    /// the background tasks. Events still unacknowledged then (the control plane unreachable)
    /// stay on disk and are shipped by the next start.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if tokio::time::timeout(DRAIN, self.workers.drained())
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests still running after the drain period");
        }
        self.streams.close();
        if tokio::time::timeout(DRAIN, self.streams.wait())
            .await
            .is_err()
        {
            tracing::warn!("streams still running after the drain period");
        }
        if let Err(e) = self.spool.flush().await {
            tracing::error!(error = %e, "could not flush the usage spool");
        }
        let deadline = tokio::time::Instant::now() + DRAIN;
        let mut backlog = usage::shipper::backlog_bytes(&self.spool);
        while backlog > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            backlog = usage::shipper::backlog_bytes(&self.spool);
        }
        if backlog > 0 {
            tracing::warn!(
                backlog_bytes = backlog,
                "usage not yet acknowledged by the control plane stays in the spool for the next start"
            );
        }
        self.stop_shipping.cancel();
        if tokio::time::timeout(Duration::from_secs(1), &mut self.shipper)
            .await
            .is_err()
        {
            self.shipper.abort();
        }
        self.tracer.shutdown().await;
        let limits = self.runtime.load().rate_limits.clone();
        self.limits.release_all(&limits).await;
        for task in self.background {
            task.abort();
        }
        self.workers.stop().await;
    }

    /// Bytes of usage events spooled and not yet acknowledged by the control plane.
    pub fn usage_backlog_bytes(&self) -> u64 {
        usage::shipper::backlog_bytes(&self.spool)
    }

    /// Whether request spans are exported (an OTLP endpoint was given).
    pub fn exports_traces(&self) -> bool {
        self.tracer.is_exporting()
    }

    /// How the served config got here: full snapshots and deltas applied, resyncs asked for.
    pub fn config_updates(&self) -> &config::delta::UpdateCounts {
        &self.config_updates
    }

    /// The version of the snapshot being served (0 before the first).
    pub fn config_version(&self) -> u64 {
        self.runtime.load().version
    }
}
