use modelgate_shared::digest::ConfigDigest;
use modelgate_shared::pricing::Price;
use modelgate_shared::routing::TrafficClass;
use modelgate_shared::snapshot::{
    Config, Deployment, Environment, KeyCacheMode, ProviderKind, RoutePolicy, Snapshot,
};

use super::*;
use modelgate_shared::key_view::KeyView;

pub(in crate::config) fn key(n: u8) -> ApiKey {
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

pub(in crate::config) fn config() -> Config {
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
        .map(|(h, e)| (h, e.key.id().to_owned(), e.valid_until))
        .collect();
    let mut want: Vec<_> = built
        .keys
        .iter()
        .map(|(h, e)| (h, e.key.id().to_owned(), e.valid_until))
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
    // A presented secret hashes alike under both: the hasher follows the secret.
    assert_eq!(
        applied.key_hasher.hash("mg-presented"),
        built.key_hasher.hash("mg-presented"),
        "{name}: key hasher"
    );
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
    assert!(!served.keys_by_id.get("key-000").unwrap().0.is_revoked());
    assert_eq!(served.version, 1);
}

/// Not an assertion: prints the cost of a full snapshot and of a one-key delta at 100k keys and
/// 1k routes, in process (no gRPC, no disk): sizes, the full decode + build, the delta's decode +
/// apply, and both hashes from scratch. Ignored in debug builds' runs; for the figures:
/// `cargo test --release -p modelgate-data-plane config::delta::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore = "prints figures; run in release"]
fn timing() {
    use std::time::Instant;
    let mut c = config();
    c.keys = (0..100_000u32)
        .map(|n| {
            let mut k = key(0);
            k.id = format!("0193b7c2-{n:08x}-7000-8000-000000000000");
            k.name = format!("key number {n}");
            k.key_hash = [0; 32];
            k.key_hash[..4].copy_from_slice(&n.to_le_bytes());
            k.team_id = format!("team-{:03}", n % 100);
            k.allowed_models = vec!["a".into()];
            k
        })
        .collect();
    let template = c.groups[0].clone();
    c.groups = (0..1000)
        .map(|n| RoutingGroup {
            id: format!("g-{n}"),
            alias: format!("route-{n:04}"),
            ..template.clone()
        })
        .collect();
    let v1 = Snapshot::new(1, c);
    let mut next = v1.config.clone();
    next.keys[50_000].revoked = true;
    let v2 = Snapshot::new(2, next);

    let t = Instant::now();
    let content = modelgate_shared::canonical::content_hash(&v2.config);
    let content_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let digest = ConfigDigest::of(&v2.config);
    let digest_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(content, v2.content_hash);

    let full = bytes::Bytes::from(v1.to_wire().encode_to_vec());
    let full_bytes = full.len();
    let t = Instant::now();
    let parts = crate::config::parts::split(&full).unwrap();
    let rt = Runtime::build_from_parts(parts, &Runtime::default()).unwrap();
    let full_ms = t.elapsed().as_secs_f64() * 1e3;

    let t = Instant::now();
    let d = delta::compute(&v1, &v2, &digest).unwrap();
    let wire = d.to_wire();
    let compute_ms = t.elapsed().as_secs_f64() * 1e3;
    let delta_bytes = wire.encoded_len();
    let mut applies = Vec::new();
    for _ in 0..5 {
        let wire = wire.clone();
        let t = Instant::now();
        let d = ConfigDelta::try_from(wire).unwrap();
        delta::check_base(&d, rt.version, &rt.content_hash).unwrap();
        let next = rt.after_delta(d).unwrap();
        applies.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(next.digest, digest);
        drop(next);
    }
    println!(
        "100k keys, 1k routes: full snapshot {full_bytes} bytes, decode in parts + build + \
         check {full_ms:.0} ms; \
         content hash from scratch {content_ms:.1} ms, structured digest from scratch \
         {digest_ms:.1} ms; one-key delta {delta_bytes} bytes, computed in {compute_ms:.1} ms \
         (digest given), decoded + applied in {} ms",
        applies
            .iter()
            .map(|ms| format!("{ms:.2}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
}
