//! `route`: the cost of the routing decision — building a request's ordered plan (tiers, load
//! balancing, health, cost guardrail) — for a group of many deployments. Printed, not asserted.

use std::time::Instant;

use clap::Args;
use modelgate_data_plane::config::Runtime;
use modelgate_data_plane::pipeline::plan::{plan, Request};
use modelgate_data_plane::routing::TrafficClass;
use modelgate_shared::pricing::Price;
use modelgate_shared::snapshot::{
    Config, Deployment, LbStrategy, ModelPrice, ProviderAccount, ProviderKind, RoutePolicy,
    RoutingGroup, Snapshot,
};

#[derive(Args, Debug)]
pub struct RouteArgs {
    /// Deployments in the group.
    #[arg(long, default_value_t = 1000)]
    pub deployments: usize,
    /// Tiers they are spread over.
    #[arg(long, default_value_t = 4)]
    pub tiers: u32,
    /// Plans built per strategy.
    #[arg(long, default_value_t = 20_000)]
    pub iterations: usize,
}

fn runtime(args: &RouteArgs, lb: LbStrategy) -> Runtime {
    let providers: Vec<ProviderAccount> = (0..args.deployments)
        .map(|i| ProviderAccount {
            id: format!("p{i}"),
            name: format!("provider-{i}"),
            kind: ProviderKind::Mock,
            base_url: String::new(),
            credential: String::new(),
        })
        .collect();
    let prices = (0..args.deployments)
        .map(|i| ModelPrice {
            model: format!("m{i}"),
            provider: String::new(),
            family: "chat".into(),
            max_output_tokens: 0,
            price: Price {
                input_micros_per_mtok: 100_000 + i as i64,
                output_micros_per_mtok: 400_000,
                version: 1,
                ..Price::default()
            },
        })
        .collect();
    let deployments = (0..args.deployments)
        .map(|i| Deployment {
            provider_id: format!("p{i}"),
            model: format!("m{i}"),
            weight: 1 + (i % 5) as u32,
            tier: (i as u32) % args.tiers.max(1),
            max_in_flight: 0,
            rpm: 0,
        })
        .collect();
    let group = RoutingGroup {
        id: "g".into(),
        alias: "big".into(),
        deployments,
        fallbacks: vec![],
        policy: RoutePolicy {
            lb,
            ..RoutePolicy::default()
        },
    };
    Runtime::build(Snapshot::new(
        1,
        Config {
            key_hash_secret: vec![0; 32],
            keys: vec![],
            providers,
            prices,
            groups: vec![group],
            budgets: vec![],
            rate_limits: vec![],
        },
    ))
}

pub fn run(args: RouteArgs) -> anyhow::Result<()> {
    for lb in LbStrategy::ALL {
        let rt = runtime(&args, lb);
        let group = rt
            .groups
            .get("big")
            .ok_or_else(|| anyhow::anyhow!("group missing"))?;
        let request = Request {
            class: TrafficClass::Interactive,
            data_class: 1,
        };
        let mut rng = rand::thread_rng();
        // Warm the health table (first sight of a deployment inserts it).
        let _ = plan(&rt, group, request, 0, &mut rng);
        let started = Instant::now();
        let mut candidates = 0;
        for _ in 0..args.iterations {
            candidates += plan(&rt, group, request, 0, &mut rng).candidates.len();
        }
        let per = started.elapsed() / u32::try_from(args.iterations.max(1)).unwrap_or(u32::MAX);
        println!(
            "route: {} deployments in {} tiers, lb {}: {:.1} µs per routing decision ({} candidates)",
            args.deployments,
            args.tiers,
            lb.as_str(),
            per.as_secs_f64() * 1e6,
            candidates / args.iterations.max(1)
        );
    }
    Ok(())
}
