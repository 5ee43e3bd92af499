//! `quota`: the hot-path cost of the budget check — reserving a request's worst-case cost from
//! the node's slice of a hard budget and settling it to the actual cost — and of the rate-limit
//! check — taking a request, a token estimate and a concurrency slot from the node's shares and
//! settling them — with slices and shares already granted (the steady state; lease calls happen
//! once per chunk, not per request). Printed, not asserted.

use std::time::{Duration, Instant};

use std::sync::Arc;

use clap::Args;
use modelgate_data_plane::limits::Limits;
use modelgate_data_plane::quota::Quotas;
use modelgate_shared::limits::{LimitFallback, LimitScope, RateLimit};
use modelgate_shared::quota::{
    period_start, Budget, Enforcement, Period, ScopeKind, WhenUnreachable,
};
use modelgate_shared::snapshot::ApiKey;

#[derive(Args, Debug)]
pub struct QuotaArgs {
    /// Checks measured.
    #[arg(long, default_value_t = 1_000_000)]
    pub iterations: u64,
    /// Budgets in the snapshot (one of them applies to the key).
    #[arg(long, default_value_t = 10)]
    pub budgets: usize,
    /// Rate limits in the snapshot (one of them, limiting rpm, tpm and concurrency, applies).
    #[arg(long, default_value_t = 10)]
    pub limits: usize,
}

pub async fn run(args: QuotaArgs) -> anyhow::Result<()> {
    // Never called: the slice is primed and large enough for every iteration.
    let unused = modelgate_data_plane::channel::connect(
        "http://127.0.0.1:9",
        &modelgate_data_plane::channel::ControlPlaneSecurity::InsecurePlaintext,
    )?;
    let quotas = Quotas::new("bench", unused.clone());
    let budgets: Vec<Budget> = (0..args.budgets.max(1))
        .map(|i| Budget {
            id: format!("b{i}"),
            scope: ScopeKind::Team,
            scope_id: format!("team-{i}"),
            amount_micros: i64::MAX / 4,
            period: Period::Month,
            enforcement: Enforcement::Hard,
            when_unreachable: WhenUnreachable::FailClosed,
            kind: modelgate_shared::quota::BudgetKind::Spend,
        })
        .collect();
    let key = ApiKey {
        team_id: "team-0".into(),
        ..bench_key()
    };
    let now = chrono::Utc::now();
    quotas.prime(
        "b0",
        period_start(now, Period::Month),
        i64::MAX / 4,
        Duration::from_secs(3600),
    );
    let started = Instant::now();
    for _ in 0..args.iterations {
        let r = quotas
            .reserve(&budgets, &key, 180_000, now)
            .await
            .map_err(|e| anyhow::anyhow!("refused: {e:?}"))?;
        r.settle(91_000);
    }
    let per = started.elapsed().as_secs_f64() / args.iterations.max(1) as f64;
    println!(
        "quota: {} budgets, 1 applies: {:.3} µs per reserve + settle",
        args.budgets,
        per * 1e6
    );

    let limits = Limits::new("bench", unused);
    let defs: Vec<Arc<RateLimit>> = (0..args.limits.max(1))
        .map(|i| {
            Arc::new(RateLimit {
                id: format!("l{i}"),
                scope: LimitScope::Team,
                scope_id: format!("team-{i}"),
                model: None,
                rpm: u64::MAX / 4,
                tpm: u64::MAX / 4,
                max_concurrent: u32::MAX / 4,
                when_unreachable: LimitFallback::FailClosed,
            })
        })
        .collect();
    let now_secs = now.timestamp();
    limits.prime(&defs[0], now_secs, i64::MAX / 4, Duration::from_secs(3600));
    // One request stays in flight throughout, as under load, so the node never goes idle.
    let _background = limits
        .admit(&defs, &key, "smart", 500, now_secs)
        .await
        .map_err(|e| anyhow::anyhow!("refused: {e:?}"))?;
    let started = Instant::now();
    for _ in 0..args.iterations {
        let mut a = limits
            .admit(&defs, &key, "smart", 500, now_secs)
            .await
            .map_err(|e| anyhow::anyhow!("refused: {e:?}"))?;
        a.settle_tokens(28);
    }
    let per_limits = started.elapsed().as_secs_f64() / args.iterations.max(1) as f64;
    println!(
        "limits: {} rate limits, 1 applies (rpm, tpm, concurrent): {:.3} µs per admit + settle + release",
        args.limits,
        per_limits * 1e6
    );
    println!(
        "limit + budget check together: {:.3} µs per request",
        (per + per_limits) * 1e6
    );
    Ok(())
}

fn bench_key() -> ApiKey {
    ApiKey {
        id: "k".into(),
        name: "bench".into(),
        key_hash: [0; 32],
        prefix: "mg-".into(),
        team_id: String::new(),
        environment: modelgate_shared::snapshot::Environment::Prod,
        allowed_models: vec![],
        revoked: false,
        expires_at: None,
        disabled: false,
        previous: None,
        owner_user_id: String::new(),
        application: String::new(),
        data_class: "internal".into(),
        endpoint_families: vec![],
        traffic_class: modelgate_shared::routing::TrafficClass::Interactive,
        allowed_traffic_classes: vec![],
        cache: Default::default(),
    }
}
