//! `compare`: the same load against the upstream directly and through the gateway, back to back
//! in one run (direct first, then gateway, phase by phase, so both see the same machine state).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use serde::Serialize;

use crate::load::{self, LoadConfig, RequestTemplate};
use crate::stats::Summary;
use crate::{parse_duration, BodyArgs};

/// Built-in request bodies (used when no body flag is given).
const DEFAULT_BODY: &[u8] = include_bytes!("../chat_request.json");
const DEFAULT_STREAM_BODY: &[u8] = include_bytes!("../chat_request_stream.json");

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Upstream URL hit directly, e.g. http://127.0.0.1:18080/v1/chat/completions.
    #[arg(long)]
    pub direct: String,
    /// The same endpoint through the gateway, e.g. http://127.0.0.1:18090/v1/chat/completions.
    #[arg(long)]
    pub gateway: String,
    /// Header for direct requests (repeatable).
    #[arg(
        long = "direct-header",
        default_value = "Authorization: Bearer fake-upstream-key"
    )]
    pub direct_headers: Vec<String>,
    /// Header for gateway requests, e.g. 'Authorization: Bearer <virtual key>' (repeatable).
    #[arg(long = "gateway-header")]
    pub gateway_headers: Vec<String>,
    /// Gateway process: CPU per request and RSS are measured on it (and its descendants).
    #[arg(long)]
    pub gateway_pid: Option<u32>,
    /// Upstream (mock) process, to show its CPU per request on the direct rows.
    #[arg(long)]
    pub direct_pid: Option<u32>,
    /// JSON (non-streaming) request body; default: the built-in bench/chat_request.json.
    #[command(flatten)]
    pub body: BodyArgs,
    /// Streaming request body file; default: the built-in bench/chat_request_stream.json.
    #[arg(long, conflicts_with = "stream_body")]
    pub stream_body_file: Option<PathBuf>,
    /// Inline streaming request body.
    #[arg(long)]
    pub stream_body: Option<String>,
    /// Closed-loop concurrency.
    #[arg(long, short = 'c', default_value_t = 32)]
    pub concurrency: usize,
    /// Duration of each measured run.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Fixed-rate (open loop, latency-corrected) phases, requests/s (repeatable or comma-separated; 0 = none).
    #[arg(long = "rate", value_delimiter = ',', default_value = "200")]
    pub rates: Vec<f64>,
    /// Connections available to the fixed-rate phases.
    #[arg(long, default_value_t = 64)]
    pub rate_concurrency: usize,
    /// Streaming-phase concurrency (0 = skip the streaming phase).
    #[arg(long, default_value_t = 8)]
    pub stream_concurrency: usize,
    /// Duration of the streaming runs (default: --duration).
    #[arg(long, value_parser = parse_duration)]
    pub stream_duration: Option<Duration>,
    /// Warm-up before each measured run (not recorded).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Pause between runs.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub pause: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Repeat the whole sequence this many times (each repetition gets its own rows).
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
    /// Print the results as JSON instead of a markdown table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub phase: String,
    /// "closed", "rate" or "stream".
    pub kind: &'static str,
    pub rep: usize,
    pub direct: Summary,
    pub gateway: Summary,
    /// Gateway minus direct, at the same percentile (a difference of percentiles).
    pub added_p50_ms: Option<f64>,
    pub added_p99_ms: Option<f64>,
    pub added_ttfb_p50_ms: Option<f64>,
    pub added_ttfb_p99_ms: Option<f64>,
    /// Gateway 2xx throughput as a fraction of direct.
    pub throughput_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub phases: Vec<PhaseResult>,
    pub gateway_rss_mb: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Closed,
    Rate,
    Stream,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Closed => "closed",
            Kind::Rate => "rate",
            Kind::Stream => "stream",
        }
    }
}

struct Phase {
    name: String,
    kind: Kind,
    concurrency: usize,
    rate: Option<f64>,
    duration: Duration,
    body: Bytes,
}

fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

fn read_body(
    file: &Option<PathBuf>,
    inline: &Option<String>,
    default: &'static [u8],
) -> anyhow::Result<Bytes> {
    let args = BodyArgs {
        body_file: file.clone(),
        body: inline.clone(),
    };
    Ok(args.load()?.unwrap_or_else(|| Bytes::from_static(default)))
}

/// One request per target and body before measuring, so a misconfigured gateway fails fast
/// with its own error message instead of producing a table of errors.
async fn sanity(
    name: &str,
    url: &str,
    headers: &[String],
    body: &Bytes,
    stream: bool,
) -> anyhow::Result<()> {
    let template = RequestTemplate::new(url, headers, None, Some(body.clone())).await?;
    let ex = load::probe(&template, Duration::from_secs(10))
        .await
        .with_context(|| format!("sanity request to {name} ({url}) failed"))?;
    let body = ex.body.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    if !ex.status.is_success() {
        let snippet: String = text.chars().take(500).collect();
        bail!(
            "sanity request to {name} ({url}) answered {}: {snippet}",
            ex.status
        );
    }
    if stream {
        if !ex.event_stream {
            eprintln!("warning: {name} answered the streaming request without text/event-stream");
        }
        if !text.contains("data: [DONE]") {
            eprintln!("warning: {name}'s stream did not end with `data: [DONE]`");
        }
    } else if !text.contains("chat.completion") {
        let snippet: String = text.chars().take(300).collect();
        eprintln!("warning: {name} did not answer a chat.completion: {snippet}");
    }
    Ok(())
}

pub async fn run(args: CompareArgs) -> anyhow::Result<()> {
    let body = args
        .body
        .load()?
        .unwrap_or_else(|| Bytes::from_static(DEFAULT_BODY));
    let stream_body = read_body(
        &args.stream_body_file,
        &args.stream_body,
        DEFAULT_STREAM_BODY,
    )?;

    let mut phases = vec![Phase {
        name: format!("closed c={}", args.concurrency),
        kind: Kind::Closed,
        concurrency: args.concurrency,
        rate: None,
        duration: args.duration,
        body: body.clone(),
    }];
    for &rate in &args.rates {
        if rate <= 0.0 {
            continue;
        }
        phases.push(Phase {
            name: format!("{rate} rps"),
            kind: Kind::Rate,
            concurrency: args.rate_concurrency,
            rate: Some(rate),
            duration: args.duration,
            body: body.clone(),
        });
    }
    if args.stream_concurrency > 0 {
        phases.push(Phase {
            name: format!("stream c={}", args.stream_concurrency),
            kind: Kind::Stream,
            concurrency: args.stream_concurrency,
            rate: None,
            duration: args.stream_duration.unwrap_or(args.duration),
            body: stream_body.clone(),
        });
    }

    let want_stream = args.stream_concurrency > 0;
    for (name, url, headers) in [
        ("direct", &args.direct, &args.direct_headers),
        ("gateway", &args.gateway, &args.gateway_headers),
    ] {
        sanity(name, url, headers, &body, false).await?;
        if want_stream {
            sanity(name, url, headers, &stream_body, true).await?;
        }
    }

    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let mut results = Vec::new();
    let mut first_run = true;
    for rep in 1..=args.reps {
        for phase in &phases {
            let label = if args.reps > 1 {
                format!("{} #{rep}", phase.name)
            } else {
                phase.name.clone()
            };
            let mut pair = Vec::with_capacity(2);
            for (name, url, headers, pid) in [
                (
                    "direct",
                    &args.direct,
                    &args.direct_headers,
                    args.direct_pid,
                ),
                (
                    "gateway",
                    &args.gateway,
                    &args.gateway_headers,
                    args.gateway_pid,
                ),
            ] {
                if !first_run {
                    tokio::time::sleep(args.pause).await;
                }
                first_run = false;
                let config = LoadConfig {
                    url: url.clone(),
                    headers: headers.clone(),
                    method: None,
                    body: Some(phase.body.clone()),
                    concurrency: phase.concurrency,
                    duration: phase.duration,
                    rate: phase.rate,
                    warmup: args.warmup,
                    timeout: args.timeout,
                    pid,
                };
                eprintln!(
                    "[compare] {label} / {name}: warm-up {:?}, measuring {:?}...",
                    args.warmup, phase.duration
                );
                let summary = load::run(&config).await?;
                eprintln!("[compare] {label} / {name}: {}", summary.line());
                summary.report_failures();
                pair.push(summary);
            }
            let (Some(gateway), Some(direct)) = (pair.pop(), pair.pop()) else {
                bail!("internal error: missing run results");
            };
            let throughput_ratio = (direct.rps > 0.0).then(|| gateway.rps / direct.rps);
            results.push(PhaseResult {
                phase: label,
                kind: phase.kind.as_str(),
                rep,
                added_p50_ms: diff(gateway.p50_ms, direct.p50_ms),
                added_p99_ms: diff(gateway.p99_ms, direct.p99_ms),
                added_ttfb_p50_ms: diff(gateway.ttfb_p50_ms, direct.ttfb_p50_ms),
                added_ttfb_p99_ms: diff(gateway.ttfb_p99_ms, direct.ttfb_p99_ms),
                throughput_ratio,
                direct,
                gateway,
            });
        }
    }

    let report = Report {
        gateway_rss_mb: results.last().and_then(|r| r.gateway.rss_mb),
        phases: results,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("\n{}", markdown(&report, args.direct_pid.is_some()));
    }
    Ok(())
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |x| format!("{x:.3}"))
}

fn added(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |x| format!("{x:+.3}"))
}

fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |x| format!("{x:.1}"))
}

fn markdown(report: &Report, direct_cpu: bool) -> String {
    let mut out = String::new();
    out.push_str("| phase | target | rps | p50 ms | p99 ms | added p50 ms | added p99 ms | TTFB p50 ms | TTFB p99 ms | added TTFB p50 / p99 ms | CPU µs/req | errors |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &report.phases {
        let stream = r.direct.streams > 0 || r.gateway.streams > 0;
        for (name, s) in [("direct", &r.direct), ("gateway", &r.gateway)] {
            let gw = name == "gateway";
            let (ttfb50, ttfb99) = if stream {
                (ms(s.ttfb_p50_ms), ms(s.ttfb_p99_ms))
            } else {
                ("—".to_string(), "—".to_string())
            };
            let added_ttfb = if gw && stream {
                format!(
                    "{} / {}",
                    added(r.added_ttfb_p50_ms),
                    added(r.added_ttfb_p99_ms)
                )
            } else {
                "—".to_string()
            };
            let cpu = if gw || direct_cpu {
                us(s.cpu_us_per_req)
            } else {
                "—".to_string()
            };
            out.push_str(&format!(
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.phase,
                name,
                s.rps,
                ms(s.p50_ms),
                ms(s.p99_ms),
                if gw {
                    added(r.added_p50_ms)
                } else {
                    "—".to_string()
                },
                if gw {
                    added(r.added_p99_ms)
                } else {
                    "—".to_string()
                },
                ttfb50,
                ttfb99,
                added_ttfb,
                cpu,
                s.err,
            ));
        }
    }

    out.push('\n');
    for r in &report.phases {
        match r.kind {
            "closed" => {
                if let Some(ratio) = r.throughput_ratio {
                    out.push_str(&format!(
                        "- throughput at {}: gateway {:.0} rps = {:.2} × direct ({:.0} rps)\n",
                        r.phase, r.gateway.rps, ratio, r.direct.rps
                    ));
                }
                out.push_str(&format!(
                    "- gateway CPU per JSON request at {}: {} µs ({} cores busy)\n",
                    r.phase,
                    us(r.gateway.cpu_us_per_req),
                    r.gateway.cpu_cores.map_or_else(|| "—".to_string(), |c| format!("{c:.2}"))
                ));
            }
            "rate" => out.push_str(&format!(
                "- added latency at {} (latency-corrected): p50 {} ms, p99 {} ms\n",
                r.phase,
                added(r.added_p50_ms),
                added(r.added_p99_ms)
            )),
            _ => out.push_str(&format!(
                "- streaming ({}): added time to first byte p50 {} ms, p99 {} ms; gateway CPU per stream {} µs\n",
                r.phase,
                added(r.added_ttfb_p50_ms),
                added(r.added_ttfb_p99_ms),
                us(r.gateway.cpu_us_per_req)
            )),
        }
    }
    if let Some(rss) = report.gateway_rss_mb {
        out.push_str(&format!("- gateway RSS at the end: {rss:.1} MB\n"));
    }
    out.push_str(
        "\nAdded latency = gateway percentile minus direct percentile in the same run. \
         CPU µs/req = utime+stime of the process over the measured window / 2xx responses",
    );
    if direct_cpu {
        out.push_str(" (direct rows: the mock upstream)");
    }
    out.push_str(
        ". The machine is shared by load generator, gateway and mock: compare only figures from one run.\n",
    );
    out
}
