use super::*;
use crate::snapshot::tests::sample;

fn labels(l: &[(&str, &str)]) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn selectors_match_by_value_by_presence_or_everything() {
    let canary = Selector::parse("canary=true").unwrap();
    let eu = Selector::parse("region=eu-west").unwrap();
    let any_region = Selector::parse("region=*").unwrap();
    let all = Selector::parse("*").unwrap();
    let both = Selector::parse("region=eu-west, canary=true").unwrap();
    let node = labels(&[("region", "eu-west"), ("canary", "true")]);
    let plain = labels(&[("region", "us-east")]);
    assert!(canary.matches(&node) && !canary.matches(&plain));
    assert!(eu.matches(&node) && !eu.matches(&plain));
    assert!(any_region.matches(&plain) && !any_region.matches(&labels(&[])));
    assert!(all.matches(&labels(&[])));
    assert!(both.matches(&node) && !both.matches(&labels(&[("region", "eu-west")])));
    for bad in ["", "region", "=x", "region=", "*=x", "a=b,"] {
        assert!(Selector::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_plan_reads_from_json_with_defaults_and_is_validated() {
    let plan: Plan = serde_json::from_str(
        r#"{"waves": [{"selector": "canary=true", "bake_s": 60}, {"selector": "region=*"}]}"#,
    )
    .unwrap();
    assert_eq!(plan.waves[1].bake_s, 300);
    assert_eq!(plan.gates, Gates::default());
    assert_eq!(plan.on_failure, OnFailure::Rollback);
    assert!(plan.validate().is_ok());
    let node = labels(&[("region", "eu")]);
    assert!(!plan.reached(0, &node) && plan.reached(1, &node));
    let empty: Plan = serde_json::from_str(r#"{"waves": []}"#).unwrap();
    assert_eq!(empty.validate(), Err(PlanError::NoWaves));
    assert!(serde_json::from_str::<Plan>(r#"{"waves": [{"selector": "nope"}]}"#).is_err());
    assert!(serde_json::from_str::<Plan>(r#"{"waves": [], "extra": 1}"#).is_err());
}

#[test]
fn a_track_version_is_reused_only_when_above_every_mover() {
    assert_eq!(reuse_or_mint(7, 5), Handover::Reuse);
    assert_eq!(reuse_or_mint(7, 7), Handover::Mint);
    assert_eq!(reuse_or_mint(6, 8), Handover::Mint);
}

#[test]
fn composing_keeps_the_tracks_policy_and_takes_the_current_security_state() {
    let old = sample();
    let mut current = sample();
    current.groups[0].deployments[0].model = "new-model".into();
    current.keys[0].revoked = true;
    current.providers[0].credential = "sk-rotated".into();
    let on_old = compose(&old, &current);
    assert_eq!(on_old.groups, old.groups);
    assert!(on_old.keys[0].revoked);
    assert_eq!(on_old.providers[0].credential, "sk-rotated");
    assert_eq!(
        crate::canonical::policy_hash(&on_old),
        crate::canonical::policy_hash(&old)
    );
}

#[test]
fn a_balance_top_up_is_not_policy_and_reaches_every_track() {
    use crate::quota::{Budget, Enforcement, Period, ScopeKind, WhenUnreachable};
    let budget = |id: &str, kind, amount_micros| Budget {
        id: id.into(),
        scope: ScopeKind::Team,
        scope_id: "t1".into(),
        amount_micros,
        period: Period::Total,
        enforcement: Enforcement::Hard,
        when_unreachable: WhenUnreachable::FailClosed,
        kind,
    };
    let mut old = sample();
    old.budgets = vec![
        budget("b1", BudgetKind::Spend, 5_000_000),
        budget("balance-t1", BudgetKind::Balance, 1_000_000),
    ];
    let mut topped_up = old.clone();
    topped_up.budgets[1].amount_micros = 3_000_000;
    // A top-up moves the content (nodes must get it) but not the policy (no rollout).
    assert_eq!(
        crate::canonical::policy_hash(&old),
        crate::canonical::policy_hash(&topped_up)
    );
    assert_ne!(
        crate::canonical::content_hash(&old),
        crate::canonical::content_hash(&topped_up)
    );
    assert!(policy_diff(&old, &topped_up).is_empty());
    // A track on older policy still serves the new balance, and its spend budgets stay its own.
    let mut current = topped_up.clone();
    current.budgets[0].amount_micros = 9_000_000;
    let on_old = compose(&old, &current);
    let amount = |c: &Config, id: &str| {
        c.budgets
            .iter()
            .find(|b| b.id == id)
            .map(|b| b.amount_micros)
    };
    assert_eq!(amount(&on_old, "balance-t1"), Some(3_000_000));
    assert_eq!(amount(&on_old, "b1"), Some(5_000_000));
    // A spend budget change is policy.
    assert_eq!(policy_diff(&old, &current).len(), 1);
}

#[test]
fn the_diff_names_each_changed_resource() {
    let old = sample();
    let mut new = sample();
    new.groups[0].deployments[0].model = "x".into();
    new.prices.clear();
    new.providers[0].credential = "not policy".into();
    let d = policy_diff(&old, &new);
    assert_eq!(
        d,
        vec![
            Change {
                kind: "price",
                id: "mock-small@mock".into(),
                change: "removed"
            },
            Change {
                kind: "route",
                id: "gpt-4o-mini".into(),
                change: "changed"
            },
        ]
    );
}

fn traffic(requests: u64, errors: u64, slow: u64) -> Traffic {
    let mut buckets = vec![0; LATENCY_BUCKET_COUNT];
    buckets[latency_bucket(20)] = requests - slow;
    buckets[latency_bucket(2_000)] = slow;
    Traffic {
        requests,
        errors,
        latency_buckets: buckets,
    }
}

#[test]
fn gates_pass_wait_and_fail_as_documented() {
    let g = Gates {
        min_requests: 10,
        ..Gates::default()
    };
    let healthy = traffic(100, 1, 0);
    assert_eq!(
        evaluate(&g, &traffic(100, 2, 0), &healthy, 0),
        Verdict::Pass
    );
    assert!(matches!(
        evaluate(&g, &traffic(9, 9, 0), &healthy, 0),
        Verdict::Wait(_)
    ));
    assert!(matches!(
        evaluate(&g, &traffic(20, 10, 0), &healthy, 0),
        Verdict::Fail(_)
    ));
    assert!(matches!(
        evaluate(&g, &traffic(0, 0, 0), &healthy, 1),
        Verdict::Fail(_)
    ));
    // Too little old traffic: compared with a zero error rate, latency not compared.
    assert!(matches!(
        evaluate(&g, &traffic(20, 2, 0), &traffic(3, 0, 0), 0),
        Verdict::Fail(_)
    ));
    assert_eq!(
        evaluate(&g, &traffic(20, 0, 20), &traffic(3, 0, 0), 0),
        Verdict::Pass
    );
    // Slower by far than the old version.
    assert!(matches!(
        evaluate(&g, &traffic(100, 0, 50), &healthy, 0),
        Verdict::Fail(_)
    ));
}

#[test]
fn p99_reads_the_bucket_of_the_99th_percentile() {
    assert_eq!(traffic(100, 0, 0).p99_ms(), Some(25));
    assert_eq!(traffic(100, 0, 2).p99_ms(), Some(2_500));
    assert_eq!(Traffic::default().p99_ms(), None);
}
