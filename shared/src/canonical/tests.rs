use super::*;
use crate::snapshot::tests::sample;

#[test]
fn the_same_content_in_another_order_hashes_the_same() {
    let mut a = sample();
    a.keys.push(ApiKey {
        id: "k0".into(),
        ..a.keys[0].clone()
    });
    let mut b = a.clone();
    b.keys.reverse();
    a.canonicalize();
    b.canonicalize();
    assert_eq!(content_hash(&a), content_hash(&b));
}

#[test]
fn every_kind_of_change_moves_the_content_hash() {
    let base = sample();
    let h = content_hash(&base);
    let changes: Vec<fn(&mut Config)> = vec![
        |c| c.keys[0].revoked = true,
        |c| c.keys[0].disabled = true,
        |c| c.keys[0].previous = None,
        |c| c.key_hash_secret[0] ^= 1,
        |c| c.providers[0].credential = "sk-new".into(),
        |c| c.providers[0].base_url = "http://other".into(),
        |c| c.prices[0].price.output_micros_per_mtok += 1,
        |c| c.groups[0].deployments[0].weight += 1,
        |c| c.groups[0].policy.cache.ttl_s += 1,
    ];
    for (i, change) in changes.into_iter().enumerate() {
        let mut c = base.clone();
        change(&mut c);
        assert_ne!(content_hash(&c), h, "change {i}");
    }
}

#[test]
fn only_policy_changes_move_the_policy_hash() {
    let base = sample();
    let p = policy_hash(&base);
    let mut security = base.clone();
    security.keys[0].revoked = true;
    security.providers[0].credential = "sk-replaced".into();
    assert_eq!(policy_hash(&security), p);
    let mut policy = base.clone();
    policy.groups[0].deployments[0].model = "other".into();
    assert_ne!(policy_hash(&policy), p);
    let mut price = base;
    price.prices[0].price.input_micros_per_mtok += 1;
    assert_ne!(policy_hash(&price), p);
}

#[test]
fn adjacent_strings_cannot_collide() {
    // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    let mut a = sample();
    a.keys[0].name = "ab".into();
    a.keys[0].prefix = "c".into();
    let mut b = sample();
    b.keys[0].name = "a".into();
    b.keys[0].prefix = "bc".into();
    assert_ne!(content_hash(&a), content_hash(&b));
}

#[test]
fn the_content_hash_with_keys_given_apart_is_the_content_hash() {
    let mut c = sample();
    c.keys.push(ApiKey {
        id: "k0".into(),
        ..c.keys[0].clone()
    });
    c.canonicalize();
    let keys = std::mem::take(&mut c.keys);
    let apart = content_hash_with_keys(&c, keys.iter());
    assert_ne!(apart, content_hash(&c));
    c.keys = keys;
    assert_eq!(apart, content_hash(&c));
}
