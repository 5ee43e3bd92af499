//! The `modelgate` binary: parses the command line, sets up logging, and runs the chosen part
//! (a server, or an admin command against the admin API).

mod admin_cli;
mod cli;

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use modelgate_control_plane::crypto::Sealer;
use modelgate_data_plane::usage::spool::SpoolOptions;

use cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Up(args) => up(args).await.map(|()| ExitCode::SUCCESS),
        Command::ControlPlane(args) => control_plane(args).await.map(|()| ExitCode::SUCCESS),
        Command::DataPlane(args) => data_plane(args).await.map(|()| ExitCode::SUCCESS),
        Command::Admin(command) => Ok(admin_cli::run(command).await),
        Command::Maintenance(cli::MaintenanceCommand::RotateMasterKey(args)) => {
            rotate_master_key(args).await.map(|()| ExitCode::SUCCESS)
        }
    }
}

/// Reads the master key file, or creates it (0600) with a new random key.
fn master_key_from_file(path: &Path, create: bool) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key = Sealer::generate_master_key_hex();
            std::fs::write(path, &key).with_context(|| format!("writing {}", path.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `https` when the listener serves TLS.
fn scheme(tls: &cli::HttpTlsArgs) -> &'static str {
    if tls.http_tls_cert.is_some() {
        "https"
    } else {
        "http"
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

async fn up(args: cli::UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let master_key = match std::env::var("MODELGATE_MASTER_KEY") {
        Ok(k) if !k.is_empty() => k,
        _ => master_key_from_file(&data_dir.join("master.key"), true)?,
    };
    let db_path = data_dir.join("modelgate.db");
    let cp = modelgate_control_plane::start(modelgate_control_plane::Settings {
        database_url: format!("sqlite://{}?mode=rwc", db_path.display()),
        master_key_hex: master_key,
        admin_listen: args.admin_listen,
        // `up` keeps plain HTTP on loopback so the SDK quick start stays one line.
        admin_http: args.http.options(None),
        grpc_listen: args.grpc_listen,
        grpc_limits: Default::default(),
        clock: modelgate_shared::clock::system(),
    })
    .await?;
    let demo =
        modelgate_control_plane::service::bootstrap::seed_demo(&cp.services, args.openai_api_key)
            .await?;
    let dp = modelgate_data_plane::start(modelgate_data_plane::Settings {
        listen: args.listen,
        http: args.http.options(None),
        metrics_listen: args.metrics_listen,
        control_plane_url: format!("http://{}", cp.grpc_addr),
        node_id: "local".into(),
        labels: HashMap::from([("region".to_owned(), "local".to_owned())]),
        data_dir: data_dir.join("data-plane"),
        max_body_bytes: 10 * 1024 * 1024,
        spool: SpoolOptions::default(),
        lkg_key_hex: None,
        health_report_interval: std::time::Duration::from_secs(5),
        clock: modelgate_shared::clock::system(),
    })
    .await?;

    // Announce only once the data plane serves the seeded config, so the printed key works.
    let want = cp
        .services
        .publisher
        .latest()
        .map_or(0, |p| p.snapshot.version);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while dp.config_version() < want {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the data plane did not receive its config within 30 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let base = format!("http://{}/v1", dp.addr);
    let banner = format!(
        "ModelGate is up (control plane on embedded SQLite, one data plane, mock provider).\n\n\
         MODELGATE_BASE_URL={base}\n\
         MODELGATE_API_KEY={key}\n\
         MODELGATE_ADMIN_URL=http://{admin}\n\
         MODELGATE_METRICS_URL=http://{metrics}/metrics\n\
         MODELGATE_ADMIN_TOKEN={token}\n\n\
         Try it:\n\
         curl -s {base}/chat/completions -H \"Authorization: Bearer {key}\" -H 'Content-Type: application/json' \\\n  \
         -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'\n\n\
         The key and admin token above are shown once; a restart issues new ones. Ctrl-C stops.\n",
        key = demo.api_key,
        admin = cp.admin_addr,
        token = demo.admin_token,
        metrics = dp.metrics_addr,
        model = demo.model,
    );
    // One write; a closed stdout (e.g. a script that read what it needed) must not stop the gateway.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }

    shutdown_signal().await;
    tracing::info!("shutting down");
    dp.shutdown().await;
    cp.shutdown().await;
    Ok(())
}

fn key_from(
    what: &str,
    value: Option<String>,
    file: Option<std::path::PathBuf>,
) -> anyhow::Result<Sealer> {
    let hex = match (value, file) {
        (Some(k), _) => k,
        (None, Some(path)) => master_key_from_file(&path, false)?,
        (None, None) => anyhow::bail!("the {what} is required"),
    };
    Sealer::from_hex(&hex).with_context(|| format!("the {what}"))
}

async fn rotate_master_key(args: cli::RotateMasterKeyArgs) -> anyhow::Result<()> {
    let old = key_from("current master key", args.master_key, args.master_key_file)?;
    let new = key_from(
        "new master key",
        args.new_master_key,
        args.new_master_key_file,
    )?;
    let n = modelgate_control_plane::service::maintenance::rotate_master_key(
        &args.database_url,
        &old,
        &new,
    )
    .await
    .context("re-sealing under the new master key (nothing was changed)")?;
    println!(
        "re-sealed under the new master key: {} provider credentials, {} settings, {} sink secrets, {} idempotency records",
        n.provider_credentials, n.settings, n.sink_secrets, n.idempotency_records
    );
    println!("start every control plane with the new key now");
    Ok(())
}

async fn control_plane(args: cli::ControlPlaneArgs) -> anyhow::Result<()> {
    let master_key = match (args.master_key, args.master_key_file) {
        (Some(k), _) => k,
        (None, Some(path)) => master_key_from_file(&path, false)?,
        (None, None) => anyhow::bail!(
            "a master key is required: set MODELGATE_MASTER_KEY (64 hex characters) or MODELGATE_MASTER_KEY_FILE"
        ),
    };
    let cp = modelgate_control_plane::start(modelgate_control_plane::Settings {
        database_url: args.database_url,
        master_key_hex: master_key,
        admin_listen: args.admin_listen,
        admin_http: args.http.options(Some(&args.http_tls)),
        grpc_listen: args.grpc_listen,
        grpc_limits: Default::default(),
        clock: modelgate_shared::clock::system(),
    })
    .await?;
    let admin_scheme = scheme(&args.http_tls);
    if let Some(token) = &cp.bootstrap_admin_token {
        println!("MODELGATE_ADMIN_TOKEN={token}");
        println!("(bootstrap admin token: shown once, store it now)");
    }
    println!("MODELGATE_ADMIN_URL={admin_scheme}://{}", cp.admin_addr);
    shutdown_signal().await;
    cp.shutdown().await;
    Ok(())
}

async fn data_plane(args: cli::DataPlaneArgs) -> anyhow::Result<()> {
    let mut labels = HashMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("label `{l}` must be key=value"))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    let spool = args.spool_options();
    let dp = modelgate_data_plane::start(modelgate_data_plane::Settings {
        listen: args.listen,
        http: args.http.options(Some(&args.http_tls)),
        metrics_listen: args.metrics_listen,
        control_plane_url: args.control_plane_url,
        node_id: args
            .node_id
            .unwrap_or_else(|| format!("dp-{}", modelgate_shared::new_id().simple())),
        labels,
        data_dir: args.data_dir,
        max_body_bytes: args.max_body_bytes,
        spool,
        lkg_key_hex: args.lkg_key,
        health_report_interval: std::time::Duration::from_millis(args.health_report_interval_ms),
        clock: modelgate_shared::clock::system(),
    })
    .await?;
    println!(
        "MODELGATE_BASE_URL={}://{}/v1",
        scheme(&args.http_tls),
        dp.addr
    );
    println!("MODELGATE_METRICS_URL=http://{}/metrics", dp.metrics_addr);
    shutdown_signal().await;
    dp.shutdown().await;
    Ok(())
}
