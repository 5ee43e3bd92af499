use modelgate_shared::digest::ConfigDigest;
use modelgate_shared::pricing::Price;
use modelgate_shared::routing::TrafficClass;
use modelgate_shared::snapshot::{
    Config, Deployment, Environment, KeyCacheMode, ProviderKind, RoutePolicy, Snapshot,
};

use super::*;

fn key(n: u8) -> ApiKey {
    ApiKey {
        id: format!("key-{n:03}"),
        name: format!("k{n}"),
        key_hash: [n; 32],
        prefix: "mg-x".into(),
        team_id: "t1".into(),
        environment: Environment::Prod,
        allowed_models: vec![],
        revoked: false,
        expires_at: None,
        disabled: false,
        previous: None,
        owner_user_id: String::new(),
        application: String::new(),
        data_class: "internal".into(),
        endpoint_families: vec![],
        traffic_class: TrafficClass::default(),
        allowed_traffic_classes: vec![],
        cache: KeyCacheMode::Route,
    }
}

fn config() -> Config {
    let provider = |id: &str| ProviderAccount {
        id: id.into(),
        name: id.into(),
        kind: ProviderKind::Mock,
        base_url: String::new(),
        credential: String::new(),
    };
    let group = |alias: &str, provider: &str| RoutingGroup {
        id: format!("g-{alias}"),
        alias: alias.into(),
        deployments: vec![Deployment {
            provider_id: provider.into(),
            model: "m1".into(),
            weight: 1,
            tier: 0,
            max_in_flight: 0,
            rpm: 0,
        }],
        fallbacks: vec![],
        policy: RoutePolicy::default(),
    };
    Config {
        key_hash_secret: vec![1; 32],
        keys: (0..20).map(key).collect(),
        providers: vec![provider("p1"), provider("p2")],
        prices: vec![ModelPrice {
            model: "m1".into(),
            provider: String::new(),
            family: "chat".into(),
            price: Price {
                input_micros_per_mtok: 1,
                output_micros_per_mtok: 2,
                version: 1,
                ..Price::default()
            },
            max_output_tokens: 100,
        }],
        groups: vec![group("a", "p1"), group("b", "p2")],
        budgets: vec![],
        rate_limits: vec![],
    }
}

/// Applies the delta from `config()` to `config()` changed by `change` on a built runtime and
/// compares the result with a runtime built from the target.
fn check(name: &str, change: impl FnOnce(&mut Config)) {
    let from = Snapshot::new(1, config());
    let mut next = from.config.clone();
    change(&mut next);
    let to = Snapshot::new(2, next);
    let delta = delta::compute(&from, &to, &ConfigDigest::of(&to.config)).unwrap();
    let served = Runtime::build(from);
    let applied = served
        .after_delta(delta)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let built = Runtime::build(to);
    assert_eq!(applied.version, 2, "{name}");
    assert_eq!(applied.content_hash, built.content_hash, "{name}");
    assert_eq!(applied.digest, built.digest, "{name}");
    assert_eq!(key_ids(&applied), key_ids(&built), "{name}");
    let mut hashes: Vec<_> = applied
        .keys
        .iter()
        .map(|(h, e)| (*h, e.key.id.clone(), e.valid_until))
        .collect();
    let mut want: Vec<_> = built
        .keys
        .iter()
        .map(|(h, e)| (*h, e.key.id.clone(), e.valid_until))
        .collect();
    hashes.sort();
    want.sort();
    assert_eq!(hashes, want, "{name}: key index");
    for (alias, index) in &built.routes {
        let got = applied
            .routes
            .get(alias)
            .unwrap_or_else(|| panic!("{name}: route {alias}"));
        assert_eq!(
            (&got.ids, &got.prices, &got.output_limits),
            (&index.ids, &index.prices, &index.output_limits),
            "{name}: {alias}"
        );
    }
    assert_eq!(applied.routes.len(), built.routes.len(), "{name}");
    assert_eq!(applied.prices, built.prices, "{name}");
    assert_eq!(applied.endpoints.len(), built.endpoints.len(), "{name}");
}

#[test]
fn a_runtime_after_a_delta_equals_one_built_from_the_target() {
    check("a key created", |c| c.keys.push(key(200)));
    check("a key revoked", |c| c.keys[3].revoked = true);
    check("a key removed", |c| {
        c.keys.remove(7);
    });
    check("a key rotated", |c| {
        c.keys[2].previous = Some((c.keys[2].key_hash, 2_000_000_000));
        c.keys[2].key_hash = [99; 32];
    });
    check("a route moved", |c| {
        c.groups[0].deployments[0].provider_id = "p2".into()
    });
    check("a route removed", |c| {
        c.groups.remove(1);
    });
    check("a price changed", |c| {
        c.prices[0].price.input_micros_per_mtok = 5
    });
    check("a price removed", |c| c.prices.clear());
    check("the secret replaced", |c| c.key_hash_secret = vec![2; 32]);
}

#[test]
fn a_delta_whose_result_differs_is_refused_and_the_served_runtime_is_untouched() {
    let from = Snapshot::new(1, config());
    let mut next = from.config.clone();
    next.keys[0].revoked = true;
    let to = Snapshot::new(2, next);
    let mut delta = delta::compute(&from, &to, &ConfigDigest::of(&to.config)).unwrap();
    delta.digest = ConfigDigest::default().hex();
    let served = Runtime::build(from);
    let err = served.after_delta(delta).unwrap_err();
    assert!(matches!(err, DeltaError::DigestMismatch { .. }), "{err}");
    assert!(!served.keys_by_id["key-000"].revoked);
    assert_eq!(served.version, 1);
}
