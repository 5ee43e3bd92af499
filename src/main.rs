//! The `modelgate` binary: parses the command line, sets up logging, and runs the chosen part
//! (a server, or an admin command against the admin API).

mod admin_cli;
mod check;
mod cli;
/// The generated reference in `docs/reference/`; only its tests use it.
#[cfg(test)]
mod reference;
mod up_env;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use modelgate_control_plane::crypto::Sealer;
use modelgate_control_plane::grpc::transport::GrpcSecurity;
use modelgate_control_plane::service::bootstrap;
use modelgate_data_plane::channel::ControlPlaneSecurity;
use modelgate_data_plane::usage::spool::SpoolOptions;
use modelgate_data_plane::LkgKey;
use modelgate_shared::secret_fs;
use modelgate_shared::tls::{issue as tls_issue, Reloading, TlsFiles};
use secrecy::{ExposeSecret, SecretString};

use cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Cli::parse().command {
        Command::Up(args) => up(args).await.map(|()| ExitCode::SUCCESS),
        Command::ControlPlane(args) => control_plane(args).await.map(|()| ExitCode::SUCCESS),
        Command::DataPlane(args) => data_plane(args).await.map(|()| ExitCode::SUCCESS),
        Command::Admin(command) => Ok(admin_cli::run(command).await),
        Command::Check(args) => Ok(check::run(args).await),
        Command::Maintenance(cli::MaintenanceCommand::RotateMasterKey(args)) => {
            rotate_master_key(args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Certs(command) => certs(command).map(|()| ExitCode::SUCCESS),
    }
}

/// `modelgate certs init|issue`.
fn certs(command: cli::CertsCommand) -> anyhow::Result<()> {
    let now = modelgate_shared::clock::system().now();
    let written = match command {
        cli::CertsCommand::Init { dir } => tls_issue::init_ca(&dir, now)?,
        cli::CertsCommand::Issue(a) => match a.node_id {
            Some(node_id) => {
                let mut labels = std::collections::BTreeMap::new();
                for l in &a.labels {
                    let (k, v) = modelgate_shared::tls::validate_label(l)?;
                    labels.insert(k.to_owned(), v.to_owned());
                }
                tls_issue::issue_node(&a.dir, &node_id, &labels, now)?
            }
            None => tls_issue::issue_control_plane(&a.dir, &a.dns, &a.ip, now)?,
        },
    };
    println!("{}", written.cert.display());
    println!("{}", written.key.display());
    Ok(())
}

/// `up`'s own fleet PKI in `DATA_DIR/certs` (0700, keys 0600): a CA, the control plane's
/// certificate for the loopback names and `grpc_ip`, and the node `local`'s. Reused on restart;
/// the control plane's certificate is issued again when it listens on a non-loopback address.
fn up_pki(data_dir: &Path, grpc_ip: std::net::IpAddr) -> anyhow::Result<(TlsFiles, TlsFiles)> {
    let dir = data_dir.join("certs");
    let now = modelgate_shared::clock::system().now();
    if !tls_issue::has_ca(&dir) {
        tls_issue::init_ca(&dir, now)?;
    }
    let files = |name: &str| TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    let (cp, node) = (files("control-plane"), files("local"));
    let loopback = grpc_ip.is_loopback() || grpc_ip.is_unspecified();
    if !cp.cert.exists() || !cp.key.exists() || !loopback {
        let mut ips: Vec<std::net::IpAddr> = vec![
            std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::Ipv6Addr::LOCALHOST.into(),
        ];
        if !loopback {
            ips.push(grpc_ip);
        }
        tls_issue::issue_control_plane(&dir, &["localhost".to_owned()], &ips, now)?;
    }
    if !node.cert.exists() || !node.key.exists() {
        let labels = std::collections::BTreeMap::from([("region".to_owned(), "local".to_owned())]);
        tls_issue::issue_node(&dir, "local", &labels, now)?;
    }
    Ok((cp, node))
}

fn server_security(tls: &cli::GrpcTlsArgs) -> anyhow::Result<GrpcSecurity> {
    Ok(match tls.files()? {
        Some(files) => GrpcSecurity::Tls(Arc::new(
            Reloading::server(files).context("loading the gRPC TLS files")?,
        )),
        None => GrpcSecurity::InsecurePlaintext,
    })
}

/// Reads a key file (64 hex characters; surrounding whitespace ignored).
fn read_key_file(path: &Path) -> anyhow::Result<SecretString> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(SecretString::from(text.trim()))
}

/// `modelgate up`'s master key: `master.key` in its data directory, created (0600 from the
/// start) with a new random key on first run. Only `up` keeps its key beside its data: it is
/// the local, zero-setup path, and its data directory is the whole installation.
fn up_master_key(data_dir: &Path) -> anyhow::Result<SecretString> {
    let path = data_dir.join("master.key");
    if path.exists() {
        return read_key_file(&path);
    }
    let key = Sealer::generate_master_key_hex();
    secret_fs::write_new_secret_file(&path, key.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key.into())
}

/// Whether `key_file` may be used to protect `protected_dir`: outside it, or inside it with
/// `--insecure-key-beside-data` (then a warning is logged). `what` names the key and its flags.
fn check_key_file_apart(
    key_file: &Path,
    protected_dir: &Path,
    insecure_ok: bool,
    what: &str,
) -> anyhow::Result<()> {
    let inside = secret_fs::is_inside(key_file, protected_dir)
        .with_context(|| format!("reading {}", key_file.display()))?;
    if !inside {
        return Ok(());
    }
    if insecure_ok {
        tracing::warn!(
            key_file = %key_file.display(),
            dir = %protected_dir.display(),
            "insecure: the {what} is kept beside the data it seals (--insecure-key-beside-data)"
        );
        return Ok(());
    }
    anyhow::bail!(
        "the {what} file {} lies inside {}, the directory it protects: keep it elsewhere, pass \
         the key itself, or accept the risk with --insecure-key-beside-data \
         (MODELGATE_INSECURE_KEY_BESIDE_DATA=true)",
        key_file.display(),
        protected_dir.display()
    )
}

/// The directory of a SQLite database URL's file (`sqlite://path?mode=rwc`), if it names one.
fn sqlite_dir(database_url: &str) -> Option<std::path::PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or_default();
    if file.is_empty() || file == ":memory:" {
        return None;
    }
    let parent = Path::new(file).parent()?;
    Some(if parent.as_os_str().is_empty() {
        Path::new(".").to_owned()
    } else {
        parent.to_owned()
    })
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
    secret_fs::create_private_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let master_key = match std::env::var("MODELGATE_MASTER_KEY") {
        Ok(k) if !k.is_empty() => SecretString::from(k),
        _ => up_master_key(&data_dir)?,
    };
    let db_path = data_dir.join("modelgate.db");
    let (cp_tls, node_tls) = up_pki(&data_dir, args.grpc_listen.ip())?;
    let cp = modelgate_control_plane::start(modelgate_control_plane::Settings {
        database_url: format!("sqlite://{}?mode=rwc", db_path.display()),
        master_key_hex: master_key,
        admin_listen: args.admin_listen,
        // `up` keeps plain HTTP on loopback so the SDK quick start stays one line.
        admin_http: args.http.options(None),
        grpc_listen: args.grpc_listen,
        grpc_security: GrpcSecurity::Tls(Arc::new(Reloading::server(cp_tls)?)),
        grpc_limits: Default::default(),
        metrics_listen: Some(args.cp_metrics_listen),
        clock: modelgate_shared::clock::system(),
        usage_retention: None,
        config_drift_after: modelgate_control_plane::service::DEFAULT_CONFIG_DRIFT_AFTER,
        statement_grace: modelgate_control_plane::service::statements::DEFAULT_GRACE,
    })
    .await?;
    // Dial the address the control plane listens on (its certificate names it), loopback when
    // it listens on every address.
    let grpc_dial = if cp.grpc_addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), cp.grpc_addr.port())
    } else {
        cp.grpc_addr
    };
    let upstream = |key: Option<SecretString>, base_url: Option<String>| {
        key.map(|k| bootstrap::DemoUpstream {
            credential: k.expose_secret().to_owned(),
            base_url,
        })
    };
    let demo = bootstrap::seed_demo(
        &cp.services,
        bootstrap::DemoUpstreams {
            openai: upstream(args.openai_api_key, args.openai_base_url),
            anthropic: upstream(args.anthropic_api_key, args.anthropic_base_url),
            gemini: upstream(args.gemini_api_key, args.gemini_base_url),
        },
    )
    .await?;
    let dp = modelgate_data_plane::start(modelgate_data_plane::Settings {
        listen: args.listen,
        http: args.http.options(None),
        metrics_listen: args.metrics_listen,
        // `up` is the laptop path: one thread per CPU, as in production.
        workers: 0,
        control_plane_url: format!("https://{grpc_dial}"),
        grpc_security: ControlPlaneSecurity::Tls(node_tls),
        node_id: "local".into(),
        labels: HashMap::from([("region".to_owned(), "local".to_owned())]),
        data_dir: data_dir.join("data-plane"),
        max_body_bytes: 10 * 1024 * 1024,
        max_audio_bytes: 25 * 1024 * 1024,
        spool: SpoolOptions::default(),
        // `up` is the local zero-setup path: its LKG key lives in its own data directory.
        lkg_key: LkgKey::GeneratedBesideData,
        health_report_interval: std::time::Duration::from_secs(5),
        clock: modelgate_shared::clock::system(),
        security: Default::default(),
        // In-process only: `up` runs offline, with no Redis to share.
        cache: Default::default(),
        otlp_endpoint: None,
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
    let exports = up_env::export_lines(&[
        ("MODELGATE_BASE_URL", base.clone()),
        ("MODELGATE_API_KEY", demo.api_key.clone()),
        ("MODELGATE_ADMIN_URL", format!("http://{}", cp.admin_addr)),
        ("MODELGATE_GRPC_ADDR", grpc_dial.to_string()),
        (
            "MODELGATE_METRICS_URL",
            format!("http://{}/metrics", dp.metrics_addr),
        ),
        (
            "MODELGATE_CP_METRICS_URL",
            cp.metrics_addr
                .map_or_else(|| "-".to_owned(), |a| format!("http://{a}/metrics")),
        ),
        ("MODELGATE_ADMIN_TOKEN", demo.admin_token.clone()),
    ]);
    let env_file = data_dir.join(up_env::ENV_FILE);
    up_env::write_env_file(&env_file, &exports)
        .with_context(|| format!("writing {}", env_file.display()))?;
    let banner = up_env::Banner {
        exports: &exports,
        env_file: &env_file,
        routes: &demo.routes,
        base_url: &base,
        api_key: &demo.api_key,
        model: &demo.model,
    }
    .render();
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
    value: Option<SecretString>,
    file: Option<std::path::PathBuf>,
) -> anyhow::Result<Sealer> {
    let hex = match (value, file) {
        (Some(k), _) => k,
        (None, Some(path)) => read_key_file(&path)?,
        (None, None) => anyhow::bail!("the {what} is required"),
    };
    Sealer::from_hex(hex.expose_secret()).with_context(|| format!("the {what}"))
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
        (None, Some(path)) => {
            if let Some(dir) = sqlite_dir(&args.database_url) {
                check_key_file_apart(
                    &path,
                    &dir,
                    args.insecure_key_beside_data,
                    "master key (MODELGATE_MASTER_KEY_FILE)",
                )?;
            }
            read_key_file(&path)?
        }
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
        grpc_security: server_security(&args.tls)?,
        grpc_limits: Default::default(),
        metrics_listen: Some(args.metrics_listen),
        clock: modelgate_shared::clock::system(),
        usage_retention: args
            .usage_retention_days
            .map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400)),
        config_drift_after: std::time::Duration::from_secs(args.config_drift_after_s),
        statement_grace: std::time::Duration::from_secs(
            args.statement_grace_hours.saturating_mul(3600),
        ),
    })
    .await?;
    let admin_scheme = scheme(&args.http_tls);
    match (&cp.bootstrap_admin_token, &args.bootstrap_token_file) {
        (Some(token), Some(path)) => {
            if let Err(e) = secret_fs::write_new_secret_file(path, token.as_bytes()) {
                // Not written: withdraw it, so that the next start mints another one.
                bootstrap::withdraw_admin_token(&cp.services, token).await?;
                cp.shutdown().await;
                return Err(e).with_context(|| {
                    format!(
                        "writing the bootstrap admin token to {} (a new file; nothing was kept)",
                        path.display()
                    )
                });
            }
            println!(
                "bootstrap admin token written to {} (mode 0600, shown nowhere else)",
                path.display()
            );
        }
        (Some(token), None) => {
            println!("MODELGATE_ADMIN_TOKEN={token}");
            println!("(bootstrap admin token: shown once, store it now)");
        }
        (None, _) => {}
    }
    println!("MODELGATE_ADMIN_URL={admin_scheme}://{}", cp.admin_addr);
    println!("MODELGATE_GRPC_ADDR={}", cp.grpc_addr);
    if let Some(addr) = cp.metrics_addr {
        println!("MODELGATE_CP_METRICS_URL=http://{addr}/metrics");
    }
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
    let security = args.security_options();
    let cache = args.cache_settings();
    let files = args.tls.files()?;
    // Under TLS the certificate says who this node is; flags may only repeat it.
    let cert_identity = match &files {
        Some(f) => Some(
            modelgate_data_plane::channel::certificate_identity(f)
                .with_context(|| format!("reading the node identity from {}", f.cert.display()))?,
        ),
        None => None,
    };
    if labels.is_empty() {
        if let Some(id) = &cert_identity {
            labels = id.labels.clone().into_iter().collect();
        }
    }
    let node_id = match (args.node_id, &cert_identity) {
        (Some(n), _) => n,
        (None, Some(id)) => id.node_id.clone(),
        (None, None) => format!("dp-{}", modelgate_shared::new_id().simple()),
    };
    let lkg_key = match (args.lkg_key, args.lkg_key_file) {
        (Some(k), _) => LkgKey::Given(k),
        (None, Some(path)) => {
            check_key_file_apart(
                &path,
                &args.data_dir,
                args.insecure_key_beside_data,
                "LKG key (MODELGATE_LKG_KEY_FILE)",
            )?;
            LkgKey::Given(read_key_file(&path)?)
        }
        (None, None) if args.insecure_key_beside_data => LkgKey::InsecureBesideData,
        (None, None) => anyhow::bail!(
            "the data plane needs a last-known-good key kept apart from its data directory {}: \
             set MODELGATE_LKG_KEY (--lkg-key, 64 hex characters) or MODELGATE_LKG_KEY_FILE \
             (--lkg-key-file, outside the data directory); --insecure-key-beside-data \
             (MODELGATE_INSECURE_KEY_BESIDE_DATA=true) generates lkg.key in the data directory \
             instead, which protects nothing from whoever can read it",
            args.data_dir.display()
        ),
    };
    let dp = modelgate_data_plane::start(modelgate_data_plane::Settings {
        listen: args.listen,
        http: args.http.options(Some(&args.http_tls)),
        metrics_listen: args.metrics_listen,
        workers: args.workers,
        control_plane_url: args.control_plane_url,
        grpc_security: match files {
            Some(f) => ControlPlaneSecurity::Tls(f),
            None => ControlPlaneSecurity::InsecurePlaintext,
        },
        node_id,
        labels,
        data_dir: args.data_dir,
        max_body_bytes: args.max_body_bytes,
        max_audio_bytes: args.max_audio_bytes,
        spool,
        lkg_key,
        health_report_interval: std::time::Duration::from_millis(args.health_report_interval_ms),
        clock: modelgate_shared::clock::system(),
        security,
        cache,
        otlp_endpoint: args.otlp_endpoint,
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
