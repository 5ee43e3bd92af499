use modelgate_shared::delta;
use modelgate_shared::digest::ConfigDigest;
use modelgate_shared::snapshot::{Config, Snapshot};

use super::*;
use crate::config::Runtime;
use modelgate_shared::keys::KeyHash;

fn base(n: u8) -> ApiKey {
    crate::config::delta::tests::key(n)
}

/// Keys that exercise every field: lists out of order, a rotation, an expiry, empty and
/// non-ASCII strings.
fn varied() -> Vec<ApiKey> {
    let mut keys = Vec::new();
    let mut k = base(1);
    k.name = "clé de l'équipe ✓".into();
    k.allowed_models = vec!["zeta".into(), "alpha".into(), "zeta".into()];
    k.endpoint_families = vec!["embeddings".into(), "chat".into()];
    k.allowed_traffic_classes = vec![TrafficClass::Batch, TrafficClass::Interactive];
    k.traffic_class = TrafficClass::Batch;
    k.previous = Some(([7; 32], 1_900_000_000));
    k.expires_at = Some(2_000_000_000);
    k.owner_user_id = "user-1".into();
    k.application = "checkout".into();
    k.environment = Environment::Dev;
    k.cache = KeyCacheMode::Refresh;
    keys.push(k);
    let mut k = base(2);
    k.revoked = true;
    k.disabled = true;
    k.prefix = String::new();
    k.data_class = String::new();
    k.expires_at = Some(0);
    keys.push(k);
    let mut k = base(3);
    k.id = String::new();
    k.name = String::new();
    keys.push(k);
    keys
}

#[test]
fn a_compact_key_converts_back_to_the_key_it_was_made_from() {
    let mut interner = Interner::default();
    for k in varied() {
        let compact = Key::new(k.clone(), &mut interner);
        assert_eq!(compact.to_api_key(), k);
        assert_eq!(
            (compact.id(), compact.name(), compact.prefix()),
            (k.id.as_str(), k.name.as_str(), k.prefix.as_str())
        );
    }
}

#[test]
fn keys_with_the_same_settings_share_one_policy_and_equal_strings_one_allocation() {
    let mut interner = Interner::default();
    let mut a = base(1);
    a.owner_user_id = "user-1".into();
    a.allowed_models = vec!["m1".into(), "m2".into()];
    let mut b = base(2);
    b.owner_user_id = "user-1".into();
    b.allowed_models = vec!["m1".into(), "m2".into()];
    let mut c = base(3);
    c.team_id = "t2".into();
    c.allowed_models = vec!["m2".into()];
    let (a, b, c) = (
        Key::new(a, &mut interner),
        Key::new(b, &mut interner),
        Key::new(c, &mut interner),
    );
    assert!(Arc::ptr_eq(a.policy(), b.policy()));
    assert!(Arc::ptr_eq(a.owner_sym(), b.owner_sym()));
    assert!(!Arc::ptr_eq(a.policy(), c.policy()));
    // Within policies, strings are shared too: "m2" of `c` is the one of `a`.
    assert!(Arc::ptr_eq(
        &a.policy().allowed_models[1],
        &c.policy().allowed_models[0]
    ));
    assert!(Arc::ptr_eq(&a.policy().data_class, &c.policy().data_class));
    // t1, t2, "" (application, owner of c), internal, m1, m2, user-1.
    assert_eq!(interner.len(), (7, 2));
}

#[test]
fn the_compact_key_answers_the_policy_questions_as_the_shared_key_does() {
    let mut interner = Interner::default();
    for k in varied().into_iter().chain([base(4)]) {
        let compact = Key::new(k.clone(), &mut interner);
        for alias in ["alpha", "zeta", "beta", ""] {
            assert_eq!(KeyView::may_use(&compact, alias), k.may_use(alias));
        }
        for family in ["chat", "embeddings", "audio"] {
            assert_eq!(KeyView::may_call(&compact, family), k.may_call(family));
        }
        for class in [
            None,
            Some(TrafficClass::Batch),
            Some(TrafficClass::Interactive),
        ] {
            assert_eq!(
                KeyView::traffic_class_for(&compact, class),
                k.traffic_class_for(class)
            );
        }
        assert_eq!(
            (
                KeyView::team_id(&compact),
                KeyView::owner_user_id(&compact),
                KeyView::data_class(&compact),
                KeyView::environment(&compact),
                compact.application(),
                compact.cache(),
                compact.is_revoked(),
                compact.is_disabled(),
                KeyView::expires_at(&compact),
            ),
            (
                k.team_id.as_str(),
                k.owner_user_id.as_str(),
                k.data_class.as_str(),
                k.environment,
                k.application.as_str(),
                k.cache,
                k.revoked,
                k.disabled,
                k.expires_at,
            )
        );
    }
}

fn config(keys: Vec<ApiKey>) -> Config {
    Config {
        key_hash_secret: vec![1; 32],
        keys,
        providers: vec![],
        prices: vec![],
        groups: vec![],
        budgets: vec![],
        rate_limits: vec![],
    }
}

#[test]
fn a_runtime_finds_each_key_by_its_secrets_and_id_as_it_was_given() {
    let keys = varied();
    let rt = Runtime::build(Snapshot::new(1, config(keys.clone())));
    for k in &keys {
        let found = rt.keys.get(&k.key_hash).unwrap();
        assert_eq!(
            (found.key.to_api_key(), found.valid_until),
            (k.clone(), None)
        );
        assert_eq!(rt.keys_by_id.get(&k.id).unwrap().0.to_api_key(), *k);
        if let Some((previous, until)) = k.previous {
            let found = rt.keys.get(&previous).unwrap();
            assert_eq!(
                (found.key.id(), found.valid_until),
                (k.id.as_str(), Some(until))
            );
        }
    }
    // The served config, rebuilt from the compact keys, hashes as the snapshot did.
    let again = Snapshot::new(1, rt.to_config());
    assert_eq!(again.content_hash, rt.content_hash);
    assert_eq!(ConfigDigest::of(&again.config), rt.digest);
}

#[test]
fn a_delta_on_compact_keys_gives_the_digest_and_hash_computed_from_scratch() {
    let from = Snapshot::new(1, config(varied()));
    let mut next = from.config.clone();
    // Change a key with a rotation and lists (its old leaf is hashed from the compact form),
    // remove one, add one.
    let at = |c: &Config, id: &str| c.keys.iter().position(|k| k.id == id).unwrap();
    let first = at(&next, "key-001");
    next.keys[first].allowed_models.push("beta".into());
    next.keys[first].previous = None;
    next.keys.remove(at(&next, "key-002"));
    next.keys.push(base(9));
    let to = Snapshot::new(2, next);
    let d = delta::compute(&from, &to, &ConfigDigest::of(&to.config)).unwrap();
    let served = Runtime::build(from);
    // `after_delta` checks the digest it keeps against the one the delta declares.
    let applied = served.after_delta(d).unwrap();
    let rebuilt = applied.to_config();
    assert_eq!(ConfigDigest::of(&rebuilt), applied.digest);
    assert_eq!(Snapshot::new(2, rebuilt).content_hash, to.content_hash);
    assert!(applied.keys.get(&[7; 32]).is_none());
    assert!(applied.keys_by_id.get("key-002").is_none());
    // The served runtime's keys are as they were.
    assert_eq!(
        served.keys_by_id.get("key-001").unwrap().0.to_api_key(),
        varied()[0]
    );
}

#[test]
fn a_key_fits_a_128_byte_allocation_with_its_reference_counts() {
    // glibc rounds a request up to 16 bytes past 8 of header: `Arc<Key>` (16 + 104) takes a
    // 128-byte chunk; 8 bytes more would take 144 (1.6 MB at 100k keys).
    assert!(
        std::mem::size_of::<Key>() <= 104,
        "{}",
        std::mem::size_of::<Key>()
    );
}

/// Not an assertion: prints what the request path does with a key at 100k keys — the keyed
/// hash and lookup (`auth::find_key`), the key's own admission (`admit_key`), its model policy
/// and the fields the usage event and budgets read — per request, in process. For the figures:
/// `cargo test --release -p modelgate-data-plane --lib config::compact::tests::request_path_timing -- --ignored --nocapture`.
#[test]
#[ignore = "prints figures; run in release"]
fn request_path_timing() {
    use std::hint::black_box;
    use std::time::Instant;
    let secret = vec![1; 32];
    let presented: Vec<String> = (0..100_000).map(|n| format!("mg-secret-{n:08}")).collect();
    let mut c = config(
        presented
            .iter()
            .enumerate()
            .map(|(n, s)| {
                let mut k = base(0);
                k.id = format!("0193b7c2-{n:08x}-7000-8000-000000000000");
                k.name = format!("key number {n}");
                k.key_hash = modelgate_shared::keys::hash_key(&secret, s);
                k.team_id = format!("team-{:03}", n % 100);
                k.application = ["checkout", "search", "docs"][n % 3].into();
                if n % 2 == 1 {
                    k.allowed_models = vec![format!("route-{}", n % 1000), "a".into()];
                }
                k
            })
            .collect(),
    );
    c.key_hash_secret = secret;
    let rt = Runtime::build(Snapshot::new(1, c));
    let rounds = 5;
    let per_round = 200_000;
    let mut ns = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for i in 0..per_round {
            let s = &presented[(i * 7919) % presented.len()];
            // What `auth::find_key` does (this module may not import `auth`, which sits above).
            let hash = modelgate_shared::keys::hash_key(&rt.key_hash_secret, s);
            let entry = rt.keys.get(&hash).unwrap();
            assert!(entry.valid_until.is_none());
            let key: &Key = entry.key;
            let admitted = modelgate_shared::admission::admit_key(key, "chat", 1_000).unwrap();
            let k = admitted.key();
            black_box((
                k.may_use("a"),
                KeyView::team_id(k).len(),
                KeyView::owner_user_id(k).len(),
                k.application().len(),
                KeyView::environment(k),
                k.id().len(),
            ));
        }
        ns.push(t.elapsed().as_nanos() as f64 / per_round as f64);
    }
    // The layout before compact keys, in the same binary for comparison: shards of maps from
    // the secret's hash to the whole `ApiKey` (`Arc`) and its grace, the same lookups and reads.
    let shards = 2048;
    type Shard = std::collections::HashMap<KeyHash, (Arc<ApiKey>, Option<i64>)>;
    let mut before: Vec<Shard> = vec![Shard::default(); shards];
    for k in rt.keys_by_id.iter() {
        let k = Arc::new(k.0.to_api_key());
        let slot = u64::from_le_bytes(k.key_hash[..8].try_into().unwrap()) as usize;
        before[slot & (shards - 1)].insert(k.key_hash, (k, None));
    }
    let mut ns_before = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for i in 0..per_round {
            let s = &presented[(i * 7919) % presented.len()];
            let hash = modelgate_shared::keys::hash_key(&rt.key_hash_secret, s);
            let slot = u64::from_le_bytes(hash[..8].try_into().unwrap()) as usize;
            let (key, until) = before[slot & (shards - 1)].get(&hash).unwrap();
            assert!(until.is_none());
            let admitted = modelgate_shared::admission::admit_key(&**key, "chat", 1_000).unwrap();
            let k = admitted.key();
            black_box((
                k.may_use("a"),
                k.team_id.len(),
                k.owner_user_id.len(),
                k.application.len(),
                k.environment,
                k.id.len(),
            ));
        }
        ns_before.push(t.elapsed().as_nanos() as f64 / per_round as f64);
    }
    let show = |ns: &[f64]| {
        ns.iter()
            .map(|n| format!("{n:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "100k keys: per request, find_key + admit_key + policy reads: compact keys {} ns; \
         the layout before (whole ApiKey in the map) {} ns",
        show(&ns),
        show(&ns_before)
    );
}
