//! Command-line interface (clap structs only). Every server flag also reads a `MODELGATE_…`
//! variable; the admin commands' structs live beside their code in `admin_cli`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use modelgate_data_plane::usage::spool::{FsyncPolicy, SpoolOptions, WhenFull};
use modelgate_listener::{HttpOptions, TlsFiles};
use secrecy::SecretString;

use crate::admin_cli::AdminCommand;

#[derive(Debug, Parser)]
#[command(name = "modelgate", version, about = "ModelGate: an AI API gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a complete gateway on this machine: control plane on embedded SQLite plus one data
    /// plane, seeded with the built-in mock provider and a demo key (works offline).
    Up(UpArgs),
    /// Run a control plane (admin API + config/usage gRPC).
    ControlPlane(ControlPlaneArgs),
    /// Run a data plane (the proxy).
    DataPlane(DataPlaneArgs),
    /// The admin CLI: `teams`, `users`, `keys`, `providers`, `models`, `routes`, `budgets`, `audit`, each
    /// a client of the admin REST API (`--admin-url`, `--admin-token`, `--output`).
    #[command(flatten)]
    Admin(AdminCommand),
    /// The pre-production acceptance plan against a running gateway: one success per endpoint
    /// family the key may use, an invalid request that must fail closed, an upstream failure
    /// and a budget refusal on a temporary key, and every request's ledger row read back.
    /// Exit code 1 when any step fails.
    Check(crate::check::CheckArgs),
    /// Offline maintenance against the control plane's database.
    #[command(name = "admin", subcommand)]
    Maintenance(MaintenanceCommand),
    /// The fleet's certificates for mutual TLS between the planes (offline): `init` makes the
    /// fleet CA, `issue` a node's or the control plane's certificate.
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a new fleet CA: `DIR/ca.pem` and `DIR/ca-key.pem` (key 0600, DIR 0700). Refuses to
    /// overwrite an existing CA.
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a certificate signed by the CA in DIR: `DIR/<node-id>.pem` + `DIR/<node-id>-key.pem`
    /// for a data plane, or `DIR/control-plane.pem` + `DIR/control-plane-key.pem` for the control
    /// plane. An existing pair of that name is replaced (rotation: the planes pick it up).
    Issue(CertsIssueArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["node_id", "control_plane"])))]
pub struct CertsIssueArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// A data plane's certificate for this node id (its identity at the control plane).
    #[arg(long)]
    pub node_id: Option<String>,
    /// A label the node's hello must carry, `key=value`, repeatable (e.g. `--label region=eu`).
    #[arg(long = "label", requires = "node_id")]
    pub labels: Vec<String>,
    /// The control plane's certificate.
    #[arg(long)]
    pub control_plane: bool,
    /// DNS names data planes dial the control plane by.
    #[arg(long, num_args = 1.., requires = "control_plane")]
    pub dns: Vec<String>,
    /// IP addresses data planes dial the control plane by.
    #[arg(long, num_args = 1.., requires = "control_plane")]
    pub ip: Vec<std::net::IpAddr>,
}

/// Mutual TLS on the gRPC channel between the planes.
#[derive(Debug, Args)]
pub struct GrpcTlsArgs {
    /// The fleet CA certificate (PEM) the other side's certificate must chain to.
    #[arg(long, env = "MODELGATE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This side's certificate (PEM), re-read when the file changes.
    #[arg(long, env = "MODELGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// This side's private key (PEM), re-read when the file changes.
    #[arg(long, env = "MODELGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Run gRPC between the planes without TLS: anyone who reaches the control plane's port gets
    /// every provider credential. Only for a trusted, private network.
    #[arg(long, env = "MODELGATE_INSECURE_PLAINTEXT_GRPC")]
    pub insecure_plaintext_grpc: bool,
}

impl GrpcTlsArgs {
    /// The TLS files, or `None` for explicit plaintext; an error for anything else.
    pub fn files(&self) -> anyhow::Result<Option<modelgate_shared::tls::TlsFiles>> {
        match (
            &self.tls_ca,
            &self.tls_cert,
            &self.tls_key,
            self.insecure_plaintext_grpc,
        ) {
            (Some(ca), Some(cert), Some(key), false) => Ok(Some(modelgate_shared::tls::TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None, None, true) => Ok(None),
            (_, _, _, true) => {
                anyhow::bail!("--insecure-plaintext-grpc and --tls-* both given: choose one")
            }
            (None, None, None, false) => anyhow::bail!(
                "gRPC between the planes needs mutual TLS: pass --tls-ca, --tls-cert and --tls-key \
                 (MODELGATE_TLS_CA, MODELGATE_TLS_CERT, MODELGATE_TLS_KEY; make them with \
                 `modelgate certs init` and `modelgate certs issue`), or --insecure-plaintext-grpc \
                 to run without TLS on a network you fully trust"
            ),
            _ => anyhow::bail!("--tls-ca, --tls-cert and --tls-key go together: give all three"),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceCommand {
    /// Re-seal every secret (provider credentials, the key-hash secret, sink secrets,
    /// idempotency records) under a new master key, in one transaction. Stop every control
    /// plane first; start them again with the new key.
    RotateMasterKey(RotateMasterKeyArgs),
}

#[derive(Debug, Args)]
pub struct RotateMasterKeyArgs {
    /// `postgres://user@host/db` or `sqlite://path?mode=rwc`.
    #[arg(long, env = "MODELGATE_DATABASE_URL")]
    pub database_url: String,
    /// The current master key (64 hex characters).
    #[arg(long, env = "MODELGATE_MASTER_KEY", hide_env_values = true, value_parser = secret)]
    pub master_key: Option<SecretString>,
    /// A file holding the current master key (used when `--master-key` is not given).
    #[arg(long, env = "MODELGATE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// The new master key (64 hex characters).
    #[arg(long, env = "MODELGATE_NEW_MASTER_KEY", hide_env_values = true, value_parser = secret)]
    pub new_master_key: Option<SecretString>,
    /// A file holding the new master key.
    #[arg(long, env = "MODELGATE_NEW_MASTER_KEY_FILE")]
    pub new_master_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the database, master key, last-known-good snapshot and usage spool live.
    #[arg(long, env = "MODELGATE_DATA_DIR", default_value = "./modelgate-data")]
    pub data_dir: PathBuf,
    /// The proxy's listen address (the OpenAI base URL is http://ADDR/v1).
    #[arg(long, env = "MODELGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The admin API's listen address.
    #[arg(long, env = "MODELGATE_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// The control plane's gRPC listen address.
    #[arg(long, env = "MODELGATE_GRPC_LISTEN", default_value = "127.0.0.1:9091")]
    pub grpc_listen: SocketAddr,
    /// Where the data plane serves `/metrics` (Prometheus text).
    #[arg(
        long,
        env = "MODELGATE_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: SocketAddr,
    /// Where the control plane serves its own `/metrics` (Prometheus text).
    #[arg(
        long,
        env = "MODELGATE_CP_METRICS_LISTEN",
        default_value = "127.0.0.1:9465"
    )]
    pub cp_metrics_listen: SocketAddr,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Registers OpenAI (route `gpt-4o-mini`) when set.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true, value_parser = secret)]
    pub openai_api_key: Option<SecretString>,
    /// Registers Anthropic (route `claude-haiku-4-5`) when set.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true, value_parser = secret)]
    pub anthropic_api_key: Option<SecretString>,
    /// Registers Gemini (route `gemini-2.5-flash`) when set.
    #[arg(long, env = "GEMINI_API_KEY", hide_env_values = true, value_parser = secret)]
    pub gemini_api_key: Option<SecretString>,
    /// The OpenAI account's base URL (default `https://api.openai.com/v1`), used when `up`
    /// first registers it. The SDK's own `OPENAI_BASE_URL` is not read: it often points at
    /// the gateway itself.
    #[arg(long, env = "MODELGATE_OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    /// The Anthropic account's base URL (default `https://api.anthropic.com`), used when `up`
    /// first registers it. `ANTHROPIC_BASE_URL` is not read.
    #[arg(long, env = "MODELGATE_ANTHROPIC_BASE_URL")]
    pub anthropic_base_url: Option<String>,
    /// The Gemini account's base URL (default `https://generativelanguage.googleapis.com`),
    /// used when `up` first registers it.
    #[arg(long, env = "MODELGATE_GEMINI_BASE_URL")]
    pub gemini_base_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ControlPlaneArgs {
    /// `postgres://user@host/db` or `sqlite://path?mode=rwc`.
    #[arg(long, env = "MODELGATE_DATABASE_URL")]
    pub database_url: String,
    /// 64 hex characters: the AES-256 key sealing secrets at rest.
    #[arg(long, env = "MODELGATE_MASTER_KEY", hide_env_values = true, value_parser = secret)]
    pub master_key: Option<SecretString>,
    /// A file holding the master key (used when `--master-key` is not given). Refused inside the
    /// directory of a SQLite database it protects, unless `--insecure-key-beside-data`.
    #[arg(long, env = "MODELGATE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Accept a master key file beside the SQLite database it seals (logged as a warning):
    /// whoever can read that directory can then open every secret in it.
    #[arg(long, env = "MODELGATE_INSECURE_KEY_BESIDE_DATA")]
    pub insecure_key_beside_data: bool,
    /// Write the bootstrap admin token (minted on a fresh database's first start) to this new
    /// file, mode 0600, instead of printing it.
    #[arg(long, env = "MODELGATE_BOOTSTRAP_TOKEN_FILE")]
    pub bootstrap_token_file: Option<PathBuf>,
    /// The admin API's and dashboard's listen address (`0.0.0.0:9090` behind a load balancer).
    #[arg(long, env = "MODELGATE_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// The gRPC listen address the data planes connect to (mutual TLS).
    #[arg(long, env = "MODELGATE_GRPC_LISTEN", default_value = "127.0.0.1:9091")]
    pub grpc_listen: SocketAddr,
    /// Where the control plane serves `/metrics` (Prometheus text); the admin port does not
    /// serve it.
    #[arg(
        long,
        env = "MODELGATE_METRICS_LISTEN",
        default_value = "127.0.0.1:9465"
    )]
    pub metrics_listen: SocketAddr,
    /// Days usage events stay in the ledger (unset: for ever). On Postgres whole weekly
    /// partitions are dropped once all their events are past it (and delivered to every export
    /// sink); daily aggregates and budgets are kept.
    #[arg(long, env = "MODELGATE_USAGE_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub usage_retention_days: Option<u32>,
    /// Seconds a connected data plane may serve another config than the one assigned to it
    /// before the fleet view and `modelgate_cp_node_config_drift` flag it as drifting.
    #[arg(
        long,
        env = "MODELGATE_CONFIG_DRIFT_AFTER_S",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub config_drift_after_s: u64,
    /// Hours after a month ends before its statements close (a closed month never changes;
    /// usage that arrives later lands in the next open month).
    #[arg(long, env = "MODELGATE_STATEMENT_GRACE_HOURS", default_value_t = 72)]
    pub statement_grace_hours: u64,
    #[command(flatten)]
    pub tls: GrpcTlsArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub http_tls: HttpTlsArgs,
}

#[derive(Debug, Args)]
pub struct DataPlaneArgs {
    /// The proxy's listen address (applications' base URL is http(s)://ADDR/v1).
    #[arg(long, env = "MODELGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where `/metrics` (Prometheus text) is served; the proxy port does not serve it.
    #[arg(
        long,
        env = "MODELGATE_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: SocketAddr,
    /// Threads serving the proxy port, each accepting its own connections and serving them to
    /// their end on a single-threaded runtime (no request is handed between threads); 0: one
    /// per CPU the process may use.
    #[arg(long, env = "MODELGATE_WORKERS", default_value_t = 0)]
    pub workers: usize,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub http_tls: HttpTlsArgs,
    /// The control plane's gRPC URL: `https://host:port` (the host must be a name or address on
    /// the control plane's certificate); `http://` only with `--insecure-plaintext-grpc`. Several
    /// control-plane replicas: their URLs comma-separated; the node connects to one and moves to
    /// another when it becomes unreachable.
    #[arg(
        long,
        alias = "control-plane-urls",
        env = "MODELGATE_CONTROL_PLANE_URL",
        default_value = "https://localhost:9091"
    )]
    pub control_plane_url: String,
    #[command(flatten)]
    pub tls: GrpcTlsArgs,
    /// This node's id (default: the one its certificate names; without TLS a new random one).
    /// Under TLS it must equal the certificate's.
    #[arg(long, env = "MODELGATE_NODE_ID")]
    pub node_id: Option<String>,
    /// Labels as `key=value`, repeatable (e.g. `--label region=eu-west`); default: the
    /// certificate's labels, which they must equal where the certificate carries any.
    #[arg(long = "label", env = "MODELGATE_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Holds the last-known-good snapshot and the usage spool.
    #[arg(
        long,
        env = "MODELGATE_DATA_DIR",
        default_value = "./modelgate-data/data-plane"
    )]
    pub data_dir: PathBuf,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MODELGATE_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest accepted audio upload (a transcription's or translation's whole multipart
    /// body), in bytes; larger ones are answered 413. OpenAI's own limit is 25 MB.
    #[arg(long, env = "MODELGATE_MAX_AUDIO_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub max_audio_bytes: usize,
    /// The response cache's shared store, `redis://host:port[/db]`, which the fleet shares;
    /// unset: each node caches in its own memory only.
    #[arg(long, env = "MODELGATE_CACHE_REDIS_URL")]
    pub cache_redis_url: Option<String>,
    /// Prefix of the response cache's keys in Redis.
    #[arg(
        long,
        env = "MODELGATE_CACHE_REDIS_PREFIX",
        default_value = "modelgate:cache:v1:"
    )]
    pub cache_redis_prefix: String,
    /// The longest a request waits on Redis before it is served uncached, in milliseconds.
    #[arg(long, env = "MODELGATE_CACHE_REDIS_TIMEOUT_MS", default_value_t = 50)]
    pub cache_redis_timeout_ms: u64,
    /// Bound on the response cache's in-process layer, in bytes (compressed entries).
    #[arg(long, env = "MODELGATE_CACHE_MEMORY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub cache_memory_bytes: usize,
    /// The largest answer the response cache stores, in bytes (uncompressed).
    #[arg(long, env = "MODELGATE_CACHE_MAX_ENTRY_BYTES", default_value_t = 1024 * 1024)]
    pub cache_max_entry_bytes: usize,
    /// With Redis, the longest the response cache's in-process layer keeps an entry, in
    /// seconds: a node serves an answer another node refreshed for at most this long.
    #[arg(long, env = "MODELGATE_CACHE_LOCAL_TTL_S", default_value_t = 10)]
    pub cache_local_ttl_s: u64,
    /// When the usage spool reaches stable storage: `always` (fsync before acknowledging each
    /// group write), `interval:<n>ms` (background fsync at most every n ms; a power loss takes at
    /// most that window) or `never` (a process crash still loses nothing).
    #[arg(long, env = "MODELGATE_SPOOL_FSYNC", default_value = "interval:10ms", value_parser = parse_fsync)]
    pub spool_fsync: FsyncPolicy,
    /// Bound on the usage spool's disk use, in bytes.
    #[arg(long, env = "MODELGATE_SPOOL_MAX_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub spool_max_bytes: u64,
    /// At the bound: `reject` new requests (503) or `serve-unmetered` (counted in
    /// `modelgate_usage_unmetered_total`).
    #[arg(long, env = "MODELGATE_SPOOL_WHEN_FULL", default_value = "reject", value_parser = parse_when_full)]
    pub spool_when_full: WhenFull,
    /// 64 hex characters sealing the last-known-good snapshot (it holds provider credentials).
    /// This, `--lkg-key-file` or `--insecure-key-beside-data` is required.
    #[arg(long, env = "MODELGATE_LKG_KEY", hide_env_values = true, value_parser = secret)]
    pub lkg_key: Option<SecretString>,
    /// A file holding the LKG key (used when `--lkg-key` is not given); it must lie outside the
    /// data directory.
    #[arg(long, env = "MODELGATE_LKG_KEY_FILE")]
    pub lkg_key_file: Option<PathBuf>,
    /// Without an LKG key, generate `lkg.key` in the data directory beside the snapshot it seals
    /// (logged as a warning): whoever can read that directory can read provider credentials.
    #[arg(long, env = "MODELGATE_INSECURE_KEY_BESIDE_DATA")]
    pub insecure_key_beside_data: bool,
    /// How often to report deployment health to the control plane (its fleet view), in ms.
    #[arg(long, env = "MODELGATE_HEALTH_REPORT_INTERVAL_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..))]
    pub health_report_interval_ms: u64,
    /// Failed authentications one source address (an IPv6 /64) may have per window before it
    /// gets 429 without its key being checked; 0 turns the throttle off. Behind a proxy every
    /// client shares the proxy's address: raise it or turn it off there.
    #[arg(long, env = "MODELGATE_AUTH_FAILURE_LIMIT", default_value_t = 20)]
    pub auth_failure_limit: u32,
    /// The throttle's window, in seconds.
    #[arg(long, env = "MODELGATE_AUTH_FAILURE_WINDOW_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub auth_failure_window_secs: u64,
    /// Export OpenTelemetry trace spans (one per request, one per upstream attempt, GenAI
    /// semantic-convention attributes) to this OTLP/gRPC collector, `http://host:4317`. Unset:
    /// no spans; a client's W3C `traceparent` is still passed to the upstream unchanged.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// A secret argument: kept in a `SecretString`, so the args' `Debug` shows no key.
fn secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s))
}

/// Limits of the HTTP listeners (proxy, admin API, metrics).
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Time a client has to send a complete request head, in ms; on HTTP/1.1 also the longest a
    /// keep-alive connection may idle between requests, and the bound on a TLS handshake.
    #[arg(long, env = "MODELGATE_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_ms: u64,
    /// A connection on which no request started for this long (ms) is closed gracefully.
    #[arg(long, env = "MODELGATE_HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_idle_timeout_ms: u64,
    /// Time (ms) a request body has to arrive in full after its head; later, the request is
    /// answered 408.
    #[arg(long, env = "MODELGATE_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_body_timeout_ms: u64,
    /// Open connections per listener at most; more wait in the kernel's accept queue.
    #[arg(long, env = "MODELGATE_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
}

/// HTTPS on the proxy or admin listener, for deployments that terminate TLS in ModelGate.
#[derive(Debug, Args)]
pub struct HttpTlsArgs {
    /// PEM certificate chain (leaf first) served on the HTTP listener.
    #[arg(long, env = "MODELGATE_HTTP_TLS_CERT", requires = "http_tls_key")]
    pub http_tls_cert: Option<PathBuf>,
    /// PEM private key of `--http-tls-cert`.
    #[arg(long, env = "MODELGATE_HTTP_TLS_KEY", requires = "http_tls_cert")]
    pub http_tls_key: Option<PathBuf>,
}

impl HttpArgs {
    pub fn options(&self, tls: Option<&HttpTlsArgs>) -> HttpOptions {
        let ms = std::time::Duration::from_millis;
        HttpOptions {
            header_timeout: ms(self.http_header_timeout_ms),
            idle_timeout: ms(self.http_idle_timeout_ms),
            body_timeout: ms(self.http_body_timeout_ms),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            tls: tls.and_then(HttpTlsArgs::files),
        }
    }
}

impl HttpTlsArgs {
    fn files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.http_tls_cert.clone()?,
            key: self.http_tls_key.clone()?,
        })
    }
}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    FsyncPolicy::parse(s).ok_or_else(|| "expected always, never or interval:<n>ms".to_owned())
}

fn parse_when_full(s: &str) -> Result<WhenFull, String> {
    WhenFull::parse(s).ok_or_else(|| "expected reject or serve-unmetered".to_owned())
}

impl DataPlaneArgs {
    pub fn spool_options(&self) -> SpoolOptions {
        SpoolOptions {
            fsync: self.spool_fsync,
            max_bytes: self.spool_max_bytes,
            when_full: self.spool_when_full,
        }
    }

    pub fn cache_settings(&self) -> modelgate_data_plane::cache::Settings {
        modelgate_data_plane::cache::Settings {
            redis_url: self.cache_redis_url.clone(),
            redis_prefix: self.cache_redis_prefix.clone(),
            redis_timeout: std::time::Duration::from_millis(self.cache_redis_timeout_ms),
            memory_bytes: self.cache_memory_bytes,
            max_entry_bytes: self.cache_max_entry_bytes,
            local_ttl: std::time::Duration::from_secs(self.cache_local_ttl_s),
        }
    }

    pub fn security_options(&self) -> modelgate_data_plane::security::Options {
        modelgate_data_plane::security::Options {
            auth_failure_limit: self.auth_failure_limit,
            auth_failure_window: std::time::Duration::from_secs(self.auth_failure_window_secs),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_defaults_parse() {
        let cli = Cli::try_parse_from(["modelgate", "up"]).unwrap();
        let Command::Up(a) = cli.command else {
            panic!("expected up")
        };
        assert_eq!(a.listen.port(), 8080);
        assert_eq!(a.data_dir, PathBuf::from("./modelgate-data"));
    }

    #[test]
    fn parsed_args_debug_shows_no_key() {
        let key = "ab".repeat(32);
        let cli = Cli::try_parse_from([
            "modelgate",
            "control-plane",
            "--database-url",
            "sqlite://x.db",
            "--master-key",
            &key,
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        assert!(!shown.contains(&key), "{shown}");
        let cli = Cli::try_parse_from(["modelgate", "data-plane", "--lkg-key", &key]).unwrap();
        assert!(!format!("{cli:?}").contains(&key));
        let cli = Cli::try_parse_from([
            "modelgate",
            "up",
            "--openai-api-key",
            "sk-openai-secret",
            "--anthropic-api-key",
            "sk-ant-secret",
            "--gemini-api-key",
            "gemini-secret",
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        for secret in ["sk-openai-secret", "sk-ant-secret", "gemini-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn http_flags_default_to_the_listener_defaults() {
        let cli = Cli::try_parse_from(["modelgate", "data-plane"]).unwrap();
        let Command::DataPlane(a) = cli.command else {
            panic!("expected data-plane")
        };
        let got = a.http.options(Some(&a.http_tls));
        let want = HttpOptions::default();
        assert_eq!(got.header_timeout, want.header_timeout);
        assert_eq!(got.idle_timeout, want.idle_timeout);
        assert_eq!(got.body_timeout, want.body_timeout);
        assert_eq!(got.max_connections, want.max_connections);
        assert!(got.tls.is_none());
        assert_eq!(a.metrics_listen.to_string(), "127.0.0.1:9464");
    }

    #[test]
    fn otlp_export_is_one_flag() {
        let cli = Cli::try_parse_from([
            "modelgate",
            "data-plane",
            "--otlp-endpoint",
            "http://collector:4317",
        ])
        .unwrap();
        let Command::DataPlane(a) = cli.command else {
            panic!("expected data-plane")
        };
        assert_eq!(a.otlp_endpoint.as_deref(), Some("http://collector:4317"));
    }

    #[test]
    fn an_http_tls_cert_needs_its_key() {
        assert!(Cli::try_parse_from([
            "modelgate",
            "control-plane",
            "--database-url",
            "x",
            "--http-tls-cert",
            "c.pem"
        ])
        .is_err());
        let cli = Cli::try_parse_from([
            "modelgate",
            "data-plane",
            "--http-tls-cert",
            "c.pem",
            "--http-tls-key",
            "k.pem",
        ])
        .unwrap();
        let Command::DataPlane(a) = cli.command else {
            panic!("expected data-plane")
        };
        let tls = a.http.options(Some(&a.http_tls)).tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("c.pem"));
        assert_eq!(tls.key, PathBuf::from("k.pem"));
    }

    #[test]
    fn data_plane_labels_parse() {
        let cli = Cli::try_parse_from([
            "modelgate",
            "data-plane",
            "--label",
            "region=eu",
            "--label",
            "env=prod",
        ])
        .unwrap();
        let Command::DataPlane(a) = cli.command else {
            panic!("expected data-plane")
        };
        assert_eq!(a.labels, vec!["region=eu", "env=prod"]);
    }

    #[test]
    fn the_auth_failure_throttle_is_tunable_and_on_by_default() {
        let parse = |extra: &[&str]| {
            let args = [&["modelgate", "data-plane"][..], extra].concat();
            let Command::DataPlane(a) = Cli::try_parse_from(args).unwrap().command else {
                panic!("expected data-plane")
            };
            a.security_options()
        };
        let default = parse(&[]);
        assert_eq!(default.auth_failure_limit, 20);
        assert_eq!(default.auth_failure_window.as_secs(), 60);
        let tuned = parse(&[
            "--auth-failure-limit",
            "0",
            "--auth-failure-window-secs",
            "5",
        ]);
        assert_eq!(tuned.auth_failure_limit, 0);
        assert_eq!(tuned.auth_failure_window.as_secs(), 5);
    }

    fn tls_of(args: &[&str]) -> anyhow::Result<Option<modelgate_shared::tls::TlsFiles>> {
        let mut all = vec!["modelgate", "control-plane", "--database-url", "sqlite://x"];
        all.extend_from_slice(args);
        let Command::ControlPlane(a) = Cli::try_parse_from(all).unwrap().command else {
            panic!("expected control-plane")
        };
        a.tls.files()
    }

    #[test]
    fn grpc_without_tls_material_needs_the_insecure_flag() {
        let e = tls_of(&[]).unwrap_err().to_string();
        assert!(e.contains("--insecure-plaintext-grpc"), "{e}");
        assert!(tls_of(&["--insecure-plaintext-grpc"]).unwrap().is_none());
        assert!(tls_of(&["--tls-ca", "a", "--tls-cert", "b"]).is_err());
        assert!(tls_of(&[
            "--tls-ca",
            "a",
            "--tls-cert",
            "b",
            "--tls-key",
            "c",
            "--insecure-plaintext-grpc"
        ])
        .is_err());
        let files = tls_of(&["--tls-ca", "a", "--tls-cert", "b", "--tls-key", "c"])
            .unwrap()
            .unwrap();
        assert_eq!(files.key, PathBuf::from("c"));
    }

    #[test]
    fn certs_issue_takes_a_node_or_the_control_plane() {
        assert!(Cli::try_parse_from(["modelgate", "certs", "issue", "--dir", "d"]).is_err());
        assert!(Cli::try_parse_from([
            "modelgate",
            "certs",
            "issue",
            "--dir",
            "d",
            "--node-id",
            "n",
            "--control-plane"
        ])
        .is_err());
        let cli = Cli::try_parse_from([
            "modelgate",
            "certs",
            "issue",
            "--dir",
            "d",
            "--control-plane",
            "--dns",
            "localhost",
            "cp.internal",
            "--ip",
            "127.0.0.1",
        ])
        .unwrap();
        let Command::Certs(CertsCommand::Issue(a)) = cli.command else {
            panic!("expected certs issue")
        };
        assert_eq!(a.dns, vec!["localhost", "cp.internal"]);
        assert_eq!(a.ip.len(), 1);
    }
}
