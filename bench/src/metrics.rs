//! `metrics`: the cost of counting one request in the node's metrics — what the usage recorder
//! does once per request when it seals the event (`Metrics::started` + `Metrics::record`: the
//! request counter, the duration and upstream histograms, token and cost counters, the in-flight
//! gauge). Events vary over a few aliases, statuses and error classes, as under real traffic.
//! Printed, not asserted.

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use modelgate_data_plane::metrics::{Caller, LabelSource, Metrics, Names, NodeReadings};
use modelgate_shared::usage::{Attempt, ErrorClass, UsageEvent};

#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// Requests recorded per thread.
    #[arg(long, default_value_t = 1_000_000)]
    pub iterations: u64,
    /// Threads recording at once into the same registry (1: no contention).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Aliases in the config (the events ask for four of them).
    #[arg(long, default_value_t = 100)]
    pub aliases: usize,
}

/// A fixed config of `aliases` aliases and two providers.
struct Config(usize);

impl LabelSource for Config {
    fn version(&self) -> u64 {
        1
    }

    fn names(&self) -> Names {
        let aliases: Vec<String> = (0..self.0).map(|i| format!("alias-{i}")).collect();
        Names::new(1, aliases.iter().map(String::as_str), ["prov-1", "prov-2"])
    }
}

fn events() -> Vec<UsageEvent> {
    let served = |alias: &str, provider: &str| UsageEvent {
        requested_model: alias.into(),
        provider_id: provider.into(),
        status: 200,
        latency_us: 180_000,
        ttfb_us: 150_000,
        input_tokens: 120,
        output_tokens: 40,
        cost_micros: 42,
        attempts: vec![Attempt {
            provider_id: provider.into(),
            status: 200,
            latency_us: 150_000,
            ..Default::default()
        }],
        ..Default::default()
    };
    let refused = |alias: &str, status: u16, class: ErrorClass| UsageEvent {
        requested_model: alias.into(),
        status,
        error_class: Some(class),
        latency_us: 300,
        ..Default::default()
    };
    vec![
        served("alias-0", "prov-1"),
        served("alias-1", "prov-2"),
        served("alias-2", "prov-1"),
        refused("alias-3", 429, ErrorClass::RateLimited),
        served("alias-0", "prov-2"),
        refused("alias-1", 402, ErrorClass::BudgetExceeded),
        served("alias-3", "prov-1"),
        refused("not-configured", 403, ErrorClass::Permission),
    ]
}

/// Records `iterations` requests; returns the seconds taken.
fn run_one(metrics: &Metrics, events: &[UsageEvent], iterations: u64) -> f64 {
    let started = Instant::now();
    for (i, e) in (0..iterations).zip(events.iter().cycle()) {
        metrics.started();
        metrics.record(
            if i % 4 == 0 {
                "messages"
            } else {
                "chat.completions"
            },
            e,
            Caller::Client,
        );
    }
    started.elapsed().as_secs_f64()
}

pub fn run(args: MetricsArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new(Arc::new(Config(args.aliases))));
    let events = Arc::new(events());
    // Warm-up: every series exists, as in the steady state.
    run_one(&metrics, &events, 10_000);
    let threads = args.threads.max(1);
    let started = Instant::now();
    let per_thread: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (metrics, events) = (metrics.clone(), events.clone());
                s.spawn(move || run_one(&metrics, &events, args.iterations))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(f64::NAN))
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let n = args.iterations.max(1) as f64;
    let mean = per_thread.iter().sum::<f64>() / per_thread.len() as f64;
    println!(
        "metrics: {threads} thread(s), {} aliases: {:.0} ns per request recorded (per thread), \
         {:.2} M records/s in all",
        args.aliases,
        mean / n * 1e9,
        n * threads as f64 / wall / 1e6
    );
    let text = metrics.render(NodeReadings::default());
    println!(
        "registry after the run: {} series lines, {} bytes rendered",
        text.lines().filter(|l| !l.starts_with('#')).count(),
        text.len()
    );
    Ok(())
}
