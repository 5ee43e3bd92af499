//! The ModelGate control plane: the system of record (teams, keys, provider accounts, prices,
//! routing groups) in Postgres or embedded SQLite, the admin REST API, the snapshot builder that
//! streams versioned config to data planes over gRPC, and usage ingest.
//!
//! Layout: `admin/` (axum handlers), `dashboard/` (the web dashboard at `/`), `grpc/` (tonic services), `service/` (business rules),
//! `store/` (sea-orm entities), `snapshot/` (build + publish), `crypto` (sealing secrets).

pub mod admin;
pub mod crypto;
pub mod dashboard;
pub mod export;
pub mod grpc;
pub mod metrics;
pub mod replica;
pub mod rollout;
#[cfg(test)]
mod scratch_db;
pub mod service;
pub mod snapshot;
pub mod store;

use std::net::SocketAddr;

use anyhow::Context;
use modelgate_listener::{HttpOptions, Listener};
use modelgate_proto::config::v1::config_service_server::ConfigServiceServer;
use modelgate_proto::quota::v1::quota_service_server::QuotaServiceServer;
use modelgate_proto::usage::v1::usage_service_server::UsageServiceServer;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::crypto::Sealer;
use crate::service::Services;

const REBUILD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// How to run a control plane.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `postgres://…` or `sqlite://path?mode=rwc`.
    pub database_url: String,
    /// 64 hex characters (AES-256 key) sealing secrets at rest (redacted in `Debug`).
    pub master_key_hex: SecretString,
    pub admin_listen: SocketAddr,
    /// Timeouts, connection cap and optional TLS of the admin listener.
    pub admin_http: HttpOptions,
    pub grpc_listen: SocketAddr,
    /// Mutual TLS on the gRPC listener (or, explicitly, none).
    pub grpc_security: grpc::transport::GrpcSecurity,
    pub grpc_limits: GrpcLimits,
    /// Where the control plane's `/metrics` is served (its own listener, loopback by default;
    /// the admin port does not serve it). `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// Wall-clock time for budget periods (`modelgate_shared::clock::system()` in production).
    pub clock: modelgate_shared::clock::SharedClock,
    /// How long usage events stay in the ledger (`None`: for ever). Applied hourly: whole
    /// partitions on Postgres (a week each), rows on SQLite; see `service::usage::partitions`.
    pub usage_retention: Option<std::time::Duration>,
    /// A node whose applied config differs from its assignment longer than this is flagged as
    /// drifting (fleet view and `modelgate_cp_node_config_drift`).
    pub config_drift_after: std::time::Duration,
    /// How long after a month ends its statements close
    /// (`service::statements::DEFAULT_GRACE`, 72 h).
    pub statement_grace: std::time::Duration,
}

/// Bounds on the gRPC server's work per connection.
#[derive(Debug, Clone)]
pub struct GrpcLimits {
    /// Requests a connection may have in flight at once (a stream counts until its handler
    /// returned it, not while it runs).
    pub concurrency_per_connection: usize,
    /// HTTP/2 streams a connection may have open at once (config, usage and quota streams
    /// included).
    pub max_concurrent_streams: u32,
    /// A handler must answer (a stream: start) within this.
    pub timeout: std::time::Duration,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        GrpcLimits {
            concurrency_per_connection: 64,
            max_concurrent_streams: 128,
            timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// A started control plane. Dropping it does not stop it; call [`RunningControlPlane::shutdown`].
pub struct RunningControlPlane {
    pub admin_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// The metrics listener's address, when one was asked for.
    pub metrics_addr: Option<SocketAddr>,
    pub services: Services,
    /// Minted on first start only (no admin token existed); shown once.
    pub bootstrap_admin_token: Option<String>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Connects to the database, migrates, initialises, publishes the current snapshot and starts
/// the admin (HTTP) and gRPC listeners.
pub async fn start(settings: Settings) -> anyhow::Result<RunningControlPlane> {
    let sealer =
        Sealer::from_hex(settings.master_key_hex.expose_secret()).context("invalid master key")?;
    let db = store::connect(&settings.database_url)
        .await
        .context("connecting to the database")?;
    if let Some(n) = service::maintenance::bind_sealed_values(&db, &sealer)
        .await
        .context("binding sealed values to their rows (under this master key)")?
    {
        tracing::info!(
            provider_credentials = n.provider_credentials,
            settings = n.settings,
            sink_secrets = n.sink_secrets,
            idempotency_records = n.idempotency_records,
            "sealed values are now bound to their table, column and row"
        );
    }
    let mut services = Services::new(db, sealer, settings.clock.clone());
    services.config_drift_after = settings.config_drift_after;
    services.statement_grace = settings.statement_grace;
    replica::claim_database(&services).await?;
    let bootstrap_admin_token = service::bootstrap::ensure_initialized(&services).await?;
    service::limits::warm_up_if_needed(&services).await?;
    services.publisher.rebuild(&services).await?;
    service::revocations::load(&services).await?;

    let shutdown = CancellationToken::new();
    let admin_listener = Listener::bind(settings.admin_listen, settings.admin_http.clone())
        .await
        .context("the admin API listener")?;
    let grpc_listener = TcpListener::bind(settings.grpc_listen)
        .await
        .with_context(|| format!("binding gRPC on {}", settings.grpc_listen))?;
    let admin_addr = admin_listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;

    let admin_app = admin::router(services.clone()).merge(dashboard::router(
        services.clone(),
        settings.admin_http.tls.is_some(),
    ));
    let admin_task = tokio::spawn(admin_listener.serve(admin_app, shutdown.clone()));
    let mut tasks = Vec::new();
    let metrics_addr = match settings.metrics_listen {
        Some(addr) => {
            // Plain HTTP with the admin listener's timeouts: a scraper on the operator network.
            let options = HttpOptions {
                tls: None,
                ..settings.admin_http.clone()
            };
            let listener = Listener::bind(addr, options)
                .await
                .context("the metrics listener")?;
            let bound = listener.local_addr()?;
            let app = admin::metrics_router(services.clone(), settings.grpc_security.clone());
            tasks.push(tokio::spawn(listener.serve(app, shutdown.clone())));
            Some(bound)
        }
        None => None,
    };

    let grpc_router = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(settings.grpc_limits.concurrency_per_connection)
        .max_concurrent_streams(settings.grpc_limits.max_concurrent_streams)
        .timeout(settings.grpc_limits.timeout)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .add_service(ConfigServiceServer::new(grpc::ConfigStream {
            services: services.clone(),
            shutdown: shutdown.clone(),
        }))
        .add_service(
            UsageServiceServer::new(grpc::UsageIngest {
                services: services.clone(),
                shutdown: shutdown.clone(),
            })
            .max_decoding_message_size(64 * 1024 * 1024),
        )
        .add_service(QuotaServiceServer::new(grpc::QuotaAllocator {
            services: services.clone(),
        }));
    let grpc_shutdown = shutdown.clone();
    let incoming = grpc::transport::incoming(
        grpc_listener,
        settings.grpc_security.clone(),
        services.revoked.clone(),
        shutdown.clone(),
    );
    let grpc_task = tokio::spawn(async move {
        let result = grpc_router
            .serve_with_incoming_shutdown(incoming, async move { grpc_shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    });

    // Safety net: a change whose publish failed after commit (e.g. a database blip during the
    // rebuild) is still published within this interval. No-op when nothing changed.
    let rebuild_services = services.clone();
    let rebuild_shutdown = shutdown.clone();
    let rebuild_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(REBUILD_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = rebuild_shutdown.cancelled() => return,
            }
            if let Err(e) = rebuild_services.publisher.refresh(&rebuild_services).await {
                tracing::warn!(error = %e, "periodic snapshot rebuild failed");
            }
        }
    });

    let export_task = tokio::spawn(export::run(services.clone(), shutdown.clone()));
    let revocations_task = tokio::spawn(service::revocations::follow(
        services.clone(),
        shutdown.clone(),
    ));
    let insecure_task = tokio::spawn(warn_while_plaintext(
        settings.grpc_security.clone(),
        shutdown.clone(),
    ));
    let alerts_task = tokio::spawn(service::budget_alerts::run(
        services.clone(),
        shutdown.clone(),
    ));
    let ledger_task = tokio::spawn(service::usage::partitions::run(
        services.clone(),
        settings.usage_retention,
        shutdown.clone(),
    ));
    let rollout_task = tokio::spawn(rollout::drive(services.clone(), shutdown.clone()));
    let leases_task = tokio::spawn(replica::hold_leases(services.clone(), shutdown.clone()));
    let listen_task = tokio::spawn(replica::listen(services.clone(), shutdown.clone()));
    let refresh_task = tokio::spawn(replica::refresh(services.clone(), shutdown.clone()));
    let nodes_task = tokio::spawn(service::nodes::keep_fresh(
        services.clone(),
        shutdown.clone(),
    ));

    let statements_task = tokio::spawn(service::statements::run_closer(
        services.clone(),
        shutdown.clone(),
    ));

    tracing::info!(%admin_addr, %grpc_addr, ?metrics_addr, "control plane started");
    tasks.extend([
        admin_task,
        grpc_task,
        rebuild_task,
        export_task,
        alerts_task,
        ledger_task,
        statements_task,
        revocations_task,
        insecure_task,
        rollout_task,
        nodes_task,
        leases_task,
        listen_task,
        refresh_task,
    ]);
    Ok(RunningControlPlane {
        admin_addr,
        grpc_addr,
        metrics_addr,
        services,
        bootstrap_admin_token,
        shutdown,
        tasks,
    })
}

/// How often a plaintext gRPC listener says so again.
const INSECURE_WARNING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Logs a warning at start and every [`INSECURE_WARNING_INTERVAL`] while gRPC runs without TLS.
async fn warn_while_plaintext(
    security: grpc::transport::GrpcSecurity,
    shutdown: CancellationToken,
) {
    if !matches!(security, grpc::transport::GrpcSecurity::InsecurePlaintext) {
        return;
    }
    let mut tick = tokio::time::interval(INSECURE_WARNING_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => tracing::warn!(
                "gRPC runs WITHOUT TLS (--insecure-plaintext-grpc): anyone who reaches the port \
                 receives every provider credential and can report usage as any node"
            ),
            () = shutdown.cancelled() => return,
        }
    }
}

impl RunningControlPlane {
    /// Stops accepting, ends every config stream, and waits (bounded) for the servers to stop.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn settings_debug_shows_no_master_key() {
        let key = Sealer::generate_master_key_hex();
        let settings = Settings {
            database_url: "sqlite::memory:".into(),
            master_key_hex: key.clone().into(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            admin_http: Default::default(),
            grpc_limits: Default::default(),
            grpc_listen: "127.0.0.1:0".parse().unwrap(),
            grpc_security: grpc::transport::GrpcSecurity::InsecurePlaintext,
            metrics_listen: None,
            clock: modelgate_shared::clock::system(),
            usage_retention: None,
            config_drift_after: service::DEFAULT_CONFIG_DRIFT_AFTER,
            statement_grace: service::statements::DEFAULT_GRACE,
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains(&key), "{shown}");
        assert!(shown.contains("sqlite::memory:"));
    }
}
