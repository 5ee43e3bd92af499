//! `modelgate-bench`: load benchmark for the ModelGate data plane.
//!
//! * `mock-upstream` — a zero-latency mock OpenAI upstream (hyper, HTTP/1.1 keep-alive).
//! * `load` — a load generator (one keep-alive hyper connection per worker; closed loop at a
//!   fixed concurrency, or open loop at a fixed rate with coordinated-omission correction).
//! * `compare` — the same load against the upstream directly and through the gateway, back to
//!   back in one run, printed as a markdown table with the added latency and gateway CPU.
//! * `metrics` — the cost of counting one request in the node's metrics (ns per record).
//! * `big-config` — the data plane with 100k keys and 1k routes: RSS, apply time, and latency
//!   while snapshots of that size are applied under load.
//! * `slowloris` — normal clients at a fixed rate, alone and while 1,000 connections drip a
//!   request head byte by byte (loopback only, bounded).
//! * `request-log` — the request log's filtered pages at 10M rows on Postgres (EXPLAIN ANALYZE).
//! * `otlp-sink` — an OTLP/gRPC trace receiver that counts the spans it is sent.

mod bigconfig;
mod compare;
mod load;
mod metering;
mod metrics;
mod mock;
mod otlp_sink;
mod procstat;
mod propagation;
mod quota;
mod request_log;
mod route;
mod slowloris;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "modelgate-bench",
    version,
    about = "Load benchmark for the ModelGate data plane"
)]
struct Cli {
    /// Tokio worker threads (default: one per CPU).
    #[arg(long, global = true, env = "MODELGATE_BENCH_THREADS")]
    threads: Option<usize>,

    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a zero-latency mock OpenAI upstream.
    MockUpstream(mock::MockArgs),
    /// Generate load against one URL and print a summary line.
    Load(LoadArgs),
    /// Run the same load directly and through the gateway and print a comparison table.
    Compare(compare::CompareArgs),
    /// Measure usage ingest throughput into the control plane's database over gRPC.
    Ingest(metering::IngestArgs),
    /// Measure the data plane's usage spool append cost.
    Spool(metering::SpoolArgs),
    /// Measure the routing decision for a group of many deployments.
    Route(route::RouteArgs),
    /// Measure the hot-path budget check (reserve + settle).
    Quota(quota::QuotaArgs),
    /// Measure the cost of counting one request in the node's metrics.
    Metrics(metrics::MetricsArgs),
    /// Normal clients' latency without and with slow-header connections held open.
    Slowloris(slowloris::SlowlorisArgs),
    /// The data plane with 100k keys and 1k routes: RSS, apply time, and latency while new
    /// snapshots of that size are applied under load.
    BigConfig(bigconfig::BigConfigArgs),
    /// The request log at scale: loads synthetic usage rows into a scratch Postgres database
    /// and times filtered pages under EXPLAIN ANALYZE.
    RequestLog(request_log::RequestLogArgs),
    /// An OTLP/gRPC trace receiver that counts spans (for measuring the data plane's export).
    OtlpSink(otlp_sink::SinkArgs),
    /// Time from a committed change to applied on every node of a fleet of data-plane config
    /// subscribers (100 by default), without and during a paused rollout.
    Propagation(propagation::PropagationArgs),
}

/// Request body: inline JSON or a file.
#[derive(Args, Debug, Clone)]
pub struct BodyArgs {
    /// File holding the request body (sent as is).
    #[arg(long, conflicts_with = "body")]
    pub body_file: Option<PathBuf>,
    /// Inline request body.
    #[arg(long)]
    pub body: Option<String>,
}

impl BodyArgs {
    /// The body bytes, if any was given.
    pub fn load(&self) -> anyhow::Result<Option<Bytes>> {
        match (&self.body_file, &self.body) {
            (Some(path), _) => {
                let data = std::fs::read(path)
                    .with_context(|| format!("reading body file {}", path.display()))?;
                Ok(Some(Bytes::from(data)))
            }
            (None, Some(inline)) => Ok(Some(Bytes::from(inline.clone()))),
            (None, None) => Ok(None),
        }
    }
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Target URL (http:// only), e.g. http://127.0.0.1:18080/v1/chat/completions.
    #[arg(long)]
    pub url: String,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub body: BodyArgs,
    /// HTTP method (default: POST with a body, GET without).
    #[arg(long)]
    pub method: Option<String>,
    /// Number of workers, each with its own keep-alive connection.
    #[arg(long, short = 'c', default_value_t = 32)]
    pub concurrency: usize,
    /// Measurement duration (e.g. 10s, 500ms, 1m).
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Open loop: send at this fixed rate (requests/s); latency counts from the intended send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Warm-up run before measuring (not recorded).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Process to charge CPU to (utime+stime of it and its descendants, from /proc).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Print the summary as JSON instead of one key=value line.
    #[arg(long)]
    pub json: bool,
}

/// Parses `10s`, `250ms`, `2m`, `1.5s`, `500us` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 10s, 500ms, 1m)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} in {s:?}")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = cli.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        builder.worker_threads(n);
    }
    let runtime = builder.build().context("building the tokio runtime")?;
    runtime.block_on(async move {
        match cli.cmd {
            Cmd::MockUpstream(args) => mock::run(args).await,
            Cmd::Load(args) => run_load(args).await,
            Cmd::Compare(args) => compare::run(args).await,
            Cmd::Ingest(args) => metering::ingest(args).await,
            Cmd::Spool(args) => metering::spool(args).await,
            Cmd::Route(args) => route::run(args),
            Cmd::Quota(args) => quota::run(args).await,
            Cmd::Metrics(args) => metrics::run(args),
            Cmd::Slowloris(args) => slowloris::run(args).await,
            Cmd::BigConfig(args) => bigconfig::run(args).await,
            Cmd::RequestLog(args) => request_log::run(args).await,
            Cmd::OtlpSink(args) => otlp_sink::run(args).await,
            Cmd::Propagation(args) => propagation::run(args).await,
        }
    })
}

async fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let body = args.body.load()?;
    let config = load::LoadConfig {
        url: args.url,
        headers: args.headers,
        method: args.method,
        body,
        concurrency: args.concurrency,
        duration: args.duration,
        rate: args.rate,
        warmup: args.warmup,
        timeout: args.timeout,
        pid: args.pid,
    };
    let summary = load::run(&config).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{}", summary.line());
    }
    summary.report_failures();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").ok(), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3").ok(), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_duration("1.5s").ok(),
            Some(Duration::from_millis(1500))
        );
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
