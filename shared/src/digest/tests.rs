use super::*;
use crate::snapshot::tests::sample;

#[test]
fn adding_then_removing_a_resource_gives_back_the_same_digest() {
    let config = sample();
    let before = ConfigDigest::of(&config);
    let mut d = before;
    let mut key = config.keys[0].clone();
    key.id = "k-other".into();
    d.add(Section::Keys, &Leaf::key(&key));
    assert_ne!(d.hex(), before.hex());
    d.remove(Section::Keys, &Leaf::key(&key));
    assert_eq!(d, before);
}

#[test]
fn the_same_resource_in_another_section_changes_the_digest() {
    // Section sums are kept apart, and leaves are tagged with their section.
    let config = sample();
    let mut a = ConfigDigest::default();
    a.add(Section::Keys, &Leaf::key(&config.keys[0]));
    let mut b = ConfigDigest::default();
    b.add(Section::Budgets, &Leaf::key(&config.keys[0]));
    assert_ne!(a.hex(), b.hex());
}

#[test]
fn every_kind_of_change_moves_the_digest() {
    let base = sample();
    let h = ConfigDigest::of(&base).hex();
    let changes: Vec<fn(&mut Config)> = vec![
        |c| c.keys[0].revoked = true,
        |c| c.keys[0].previous = None,
        |c| c.key_hash_secret[0] ^= 1,
        |c| c.providers[0].credential = "sk-new".into(),
        |c| c.prices[0].price.output_micros_per_mtok += 1,
        |c| c.groups[0].deployments[0].weight += 1,
        |c| c.groups[0].policy.cache.ttl_s += 1,
        |c| c.rate_limits[0].rpm += 1,
        |c| c.rate_limits.clear(),
    ];
    for (i, change) in changes.into_iter().enumerate() {
        let mut c = base.clone();
        change(&mut c);
        assert_ne!(ConfigDigest::of(&c).hex(), h, "change {i}");
    }
}

#[test]
fn sums_carry_and_borrow_across_limbs() {
    // A leaf of all ones added twice and removed twice returns to zero through the carries.
    let ones = Leaf([0xff; 32]);
    let mut d = ConfigDigest::default();
    let empty = d;
    d.add(Section::Prices, &ones);
    d.add(Section::Prices, &ones);
    d.remove(Section::Prices, &ones);
    d.remove(Section::Prices, &ones);
    assert_eq!(d, empty);
}
