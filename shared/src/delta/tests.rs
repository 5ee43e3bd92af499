use super::*;
use crate::digest::ConfigDigest;
use crate::snapshot::tests::sample;
use crate::snapshot::{Deployment, ProviderKind};

/// A base with a few more keys and two providers, canonical.
fn base() -> Config {
    let mut c = sample();
    for n in 0..5 {
        let mut k = c.keys[0].clone();
        k.id = format!("k-{n}");
        k.key_hash = [n; 32];
        k.previous = None;
        c.keys.push(k);
    }
    c.providers.push(ProviderAccount {
        id: "p2".into(),
        name: "second".into(),
        kind: ProviderKind::OpenAiCompatible,
        base_url: "http://upstream".into(),
        credential: "sk-second".into(),
    });
    c.canonicalize();
    c
}

/// Computes the delta from `base` to `base` changed by `change`, sends it over the wire, applies
/// it to a copy of `base` and checks the result is the target, with a digest equal to one
/// computed from scratch.
fn check(name: &str, change: impl FnOnce(&mut Config)) -> ConfigDelta {
    let from = Snapshot::new(4, base());
    let mut to = from.config.clone();
    change(&mut to);
    let to = Snapshot::new(5, to);
    let to_digest = ConfigDigest::of(&to.config);
    let delta = compute(&from, &to, &to_digest).unwrap();
    assert_eq!(
        advance_digest(&from.config, &ConfigDigest::of(&from.config), &delta),
        to_digest,
        "{name}: the base's digest advanced by the delta = the target's from scratch"
    );
    let received = ConfigDelta::try_from(delta.to_wire()).unwrap();
    assert_eq!(received, delta, "{name}: wire round trip");

    let mut applied = from.config.clone();
    let mut digest = ConfigDigest::of(&applied);
    check_base(&received, 4, &from.content_hash).unwrap();
    apply(&mut applied, &mut digest, received).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(applied, to.config, "{name}: the result is the target");
    assert_eq!(
        digest, to_digest,
        "{name}: incremental digest = from scratch"
    );
    assert_eq!(
        crate::canonical::content_hash(&applied),
        to.content_hash,
        "{name}: content hash"
    );
    delta
}

#[test]
fn every_kind_of_change_round_trips_through_a_delta() {
    let d = check("one key created", |c| {
        let mut k = c.keys[0].clone();
        k.id = "k-new".into();
        k.key_hash = [9; 32];
        c.keys.push(k);
        c.canonicalize();
    });
    assert_eq!((d.keys.upserted.len(), d.changes()), (1, 1));
    let d = check("one key revoked", |c| c.keys[2].revoked = true);
    assert_eq!(d.keys.upserted[0].id, "k-2");
    assert_eq!(d.changes(), 1);
    let d = check("one key removed", |c| {
        c.keys.remove(3);
    });
    assert_eq!(d.keys.removed, ["k-3"]);
    check("a credential replaced", |c| {
        c.providers[0].credential = "sk-rotated".into()
    });
    check("a price changed", |c| {
        c.prices[0].price.input_micros_per_mtok += 7
    });
    check("a price removed and another added", |c| {
        let mut p = c.prices[0].clone();
        p.provider = String::new();
        c.prices = vec![p];
    });
    check("a route moved to another provider", |c| {
        c.groups[0].deployments[0].provider_id = "p2".into()
    });
    check("a route added", |c| {
        let mut g = c.groups[0].clone();
        g.alias = "another".into();
        g.id = "g2".into();
        c.groups.push(g);
        c.canonicalize();
    });
    check("a route removed", |c| c.groups.clear());
    check("a rate limit removed", |c| c.rate_limits.clear());
    check("a budget added", |c| {
        c.budgets.push(crate::quota::Budget {
            id: "b1".into(),
            scope: crate::quota::ScopeKind::Team,
            scope_id: "t1".into(),
            amount_micros: 1_000_000,
            period: crate::quota::Period::Month,
            enforcement: crate::quota::Enforcement::Hard,
            when_unreachable: crate::quota::WhenUnreachable::FailClosed,
            kind: crate::quota::BudgetKind::Spend,
        })
    });
    let d = check("the key-hash secret replaced", |c| {
        c.key_hash_secret = vec![8; 32]
    });
    assert_eq!(d.key_hash_secret, Some(vec![8; 32]));
    let d = check("nothing changed", |_| {});
    assert_eq!(d.changes(), 0);
}

#[test]
fn a_one_key_change_at_a_thousand_keys_is_a_few_hundred_bytes() {
    use prost::Message;
    let mut c = base();
    let template = c.keys[0].clone();
    c.keys = (0..1000)
        .map(|n| ApiKey {
            id: format!("key-{n:06}"),
            key_hash: [u8::try_from(n % 251).unwrap(); 32],
            ..template.clone()
        })
        .collect();
    let from = Snapshot::new(1, c);
    let mut next = from.config.clone();
    next.keys[500].revoked = true;
    let to = Snapshot::new(2, next);
    let delta = compute(&from, &to, &ConfigDigest::of(&to.config)).unwrap();
    let bytes = delta.to_wire().encoded_len();
    let full = to.to_wire().encoded_len();
    assert!(bytes < 600, "{bytes} bytes");
    assert!(full > 100 * bytes, "full {full}, delta {bytes}");
}

#[test]
fn a_delta_on_another_base_is_refused_before_it_is_applied() {
    let from = Snapshot::new(4, base());
    let mut next = from.config.clone();
    next.keys[0].revoked = true;
    let to = Snapshot::new(5, next);
    let delta = compute(&from, &to, &ConfigDigest::of(&to.config)).unwrap();
    let err = check_base(&delta, 3, &from.content_hash).unwrap_err();
    assert!(err.is_wrong_base(), "{err}");
    let err = check_base(&delta, 4, "another-hash").unwrap_err();
    assert!(err.is_wrong_base(), "{err}");
}

#[test]
fn a_result_whose_digest_differs_from_the_declared_one_is_refused() {
    let from = Snapshot::new(4, base());
    let mut next = from.config.clone();
    next.keys[0].revoked = true;
    let to = Snapshot::new(5, next);
    let mut delta = compute(&from, &to, &ConfigDigest::of(&to.config)).unwrap();
    // The node's base differs from the control plane's in a way the version does not show.
    let mut served = from.config.clone();
    served.keys[1].disabled = true;
    let mut digest = ConfigDigest::of(&served);
    let err = apply(&mut served, &mut digest, delta.clone()).unwrap_err();
    assert!(matches!(err, DeltaError::DigestMismatch { .. }), "{err}");
    // So is a declared digest that is not the result's.
    let mut applied = from.config.clone();
    let mut digest = ConfigDigest::of(&applied);
    delta.digest = ConfigDigest::default().hex();
    let err = apply(&mut applied, &mut digest, delta).unwrap_err();
    assert!(matches!(err, DeltaError::DigestMismatch { .. }), "{err}");
}

#[test]
fn removing_what_the_node_does_not_have_is_refused() {
    let from = Snapshot::new(4, base());
    let mut next = from.config.clone();
    next.keys.remove(0);
    let to = Snapshot::new(5, next);
    let delta = compute(&from, &to, &ConfigDigest::of(&to.config)).unwrap();
    let mut served = to.config.clone();
    let mut digest = ConfigDigest::of(&served);
    let err = apply(&mut served, &mut digest, delta).unwrap_err();
    assert!(
        matches!(
            err,
            DeltaError::Missing {
                section: "keys",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_route_left_without_its_provider_is_refused() {
    // A delta the control plane would never compute from valid configs, checked all the same.
    let from = Snapshot::new(4, base());
    let mut delta = ConfigDelta {
        base_version: 4,
        base_hash: from.content_hash.clone(),
        version: 5,
        content_hash: String::new(),
        digest: String::new(),
        key_hash_secret: None,
        keys: Changes::default(),
        providers: Changes::default(),
        prices: Changes::default(),
        groups: Changes::default(),
        budgets: Changes::default(),
        rate_limits: Changes::default(),
    };
    delta.providers.removed = vec!["p1".into()];
    let mut served = from.config.clone();
    let mut digest = ConfigDigest::of(&served);
    let err = apply(&mut served, &mut digest, delta.clone()).unwrap_err();
    assert!(matches!(err, DeltaError::DanglingProvider { .. }), "{err}");

    let mut group = from.config.groups[0].clone();
    group.deployments = vec![Deployment {
        provider_id: "nowhere".into(),
        ..group.deployments[0].clone()
    }];
    delta.providers.removed.clear();
    delta.groups.upserted = vec![group];
    let mut served = from.config.clone();
    let err = apply(&mut served, &mut digest, delta).unwrap_err();
    assert!(matches!(err, DeltaError::DanglingProvider { .. }), "{err}");
}

#[test]
fn configs_with_duplicate_ids_are_not_sent_as_deltas() {
    let mut c = base();
    c.keys[1].id = c.keys[0].id.clone();
    let from = Snapshot {
        version: 1,
        content_hash: String::new(),
        config: c.clone(),
    };
    let to = Snapshot::new(2, base());
    let err = compute(&from, &to, &ConfigDigest::of(&to.config)).unwrap_err();
    assert!(matches!(
        err,
        NotRepresentable::NotCanonical {
            section: "keys",
            ..
        }
    ));
}

#[test]
fn a_message_needing_a_feature_this_build_lacks_is_refused_with_its_name() {
    let mut wire = Snapshot::new(3, base()).to_wire();
    wire.required_features = vec!["config-delta".into(), "teleport".into()];
    let err = Snapshot::try_from(wire).unwrap_err();
    assert!(
        matches!(&err, InvalidSnapshot::MissingFeature { feature, .. } if feature == "teleport"),
        "{err}"
    );
}

#[test]
fn a_delta_is_never_read_as_a_full_snapshot_nor_the_reverse() {
    let from = Snapshot::new(4, base());
    let mut next = from.config.clone();
    next.keys[0].revoked = true;
    let to = Snapshot::new(5, next);
    let wire = compute(&from, &to, &ConfigDigest::of(&to.config))
        .unwrap()
        .to_wire();
    assert_eq!(wire.min_protocol_version, 9);
    assert_eq!(wire.required_features, [FEATURE_CONFIG_DELTA]);
    assert!(matches!(
        Snapshot::try_from(wire),
        Err(InvalidSnapshot::UnexpectedDelta { version: 5 })
    ));
    assert!(matches!(
        ConfigDelta::try_from(to.to_wire()),
        Err(InvalidSnapshot::MissingConfig { version: 5 })
    ));
}

#[test]
fn a_deltas_debug_shows_neither_secret_nor_credential() {
    let from = Snapshot::new(4, base());
    let mut next = from.config.clone();
    next.key_hash_secret = b"secret-bytes-of-the-key-hash!!!!".to_vec();
    next.providers[0].credential = "sk-live-credential-5678".into();
    let to = Snapshot::new(5, next);
    let delta = compute(&from, &to, &ConfigDigest::of(&to.config)).unwrap();
    let shown = format!("{delta:?}");
    assert!(
        !shown.contains("sk-live") && !shown.contains("secret-bytes"),
        "{shown}"
    );
}
