//! The runtime's two key indexes — by secret hash (what authentication looks up) and by id (where
//! a delta finds the key it changes) — each a set of pointers to the runtime's compact keys
//! (`super::compact`), hashed by a field of the key itself, and split into shards behind `Arc`s. The runtime a delta
//! produces shares every shard it does not touch with the runtime it replaces, so a one-key
//! change copies one shard (a few dozen entries) instead of the whole index, whatever the number
//! of keys; a lookup costs one more index into the shard array.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use foldhash::{HashMap, HashSet};
use modelgate_shared::keys::KeyHash;

use super::compact::Key;

/// Keys per shard the shard count aims at.
const PER_SHARD: usize = 64;
const MAX_SHARDS: usize = 4096;

/// A power of two, so a slot is a mask.
fn shard_count(keys: usize) -> usize {
    (keys / PER_SHARD).next_power_of_two().clamp(1, MAX_SHARDS)
}

#[derive(Debug, Clone)]
struct Shards<T> {
    shards: Box<[Arc<T>]>,
}

impl<T: Default + Clone> Shards<T> {
    fn new(count: usize) -> Self {
        Shards {
            shards: (0..count).map(|_| Arc::default()).collect(),
        }
    }

    fn mask(&self) -> usize {
        self.shards.len() - 1
    }

    fn get(&self, slot: usize) -> &T {
        &self.shards[slot & self.mask()]
    }

    /// The shard to change: copied first if another runtime shares it.
    fn get_mut(&mut self, slot: usize) -> &mut T {
        let i = slot & self.mask();
        Arc::make_mut(&mut self.shards[i])
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|s| &**s)
    }
}

impl<T: Default + Clone> Default for Shards<T> {
    fn default() -> Self {
        Shards::new(1)
    }
}

/// A key in the by-hash index: hashed and compared by its current secret's hash, and found by
/// `&KeyHash`, so the index holds one pointer per key.
#[derive(Debug, Clone)]
struct ByHash(Arc<Key>);

impl Hash for ByHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `KeyHash` hashes, which `Borrow<KeyHash>` requires.
        self.0.key_hash.hash(state);
    }
}

impl PartialEq for ByHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.key_hash == other.0.key_hash
    }
}

impl Eq for ByHash {}

impl Borrow<KeyHash> for ByHash {
    fn borrow(&self) -> &KeyHash {
        &self.0.key_hash
    }
}

/// A key as found by one of its secrets.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub key: &'a Arc<Key>,
    /// Set when found by a rotated-away secret: it works until then (unix seconds).
    pub valid_until: Option<i64>,
}

/// Every live secret's hash → the key it opens: current secrets in one set of keys (one
/// pointer each), rotated-away secrets in their grace period in a map beside it. A current
/// secret wins over a rotated-away one should the two ever be equal.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    current: Shards<HashSet<ByHash>>,
    rotated: Shards<HashMap<KeyHash, Arc<Key>>>,
}

/// Secret hashes are uniform (an HMAC), so their first bytes pick the shard.
fn hash_slot(hash: &KeyHash) -> usize {
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(first) as usize
}

impl KeyIndex {
    /// An empty index sized for about `keys` keys.
    pub fn for_keys(keys: usize) -> Self {
        KeyIndex {
            current: Shards::new(shard_count(keys)),
            // Rotations in their grace period are few.
            rotated: Shards::new(shard_count(keys / PER_SHARD)),
        }
    }

    pub fn get(&self, hash: &KeyHash) -> Option<Found<'_>> {
        let slot = hash_slot(hash);
        if let Some(ByHash(key)) = self.current.get(slot).get(hash) {
            return Some(Found {
                key,
                valid_until: None,
            });
        }
        let key = self.rotated.get(slot).get(hash)?;
        Some(Found {
            key,
            valid_until: key.previous().map(|(_, until)| until),
        })
    }

    /// Indexes `key` under its secrets' hashes.
    pub fn insert(&mut self, key: &Arc<Key>) {
        if let Some((previous, _)) = key.previous() {
            self.rotated
                .get_mut(hash_slot(&previous))
                .insert(previous, key.clone());
        }
        self.current
            .get_mut(hash_slot(&key.key_hash))
            .replace(ByHash(key.clone()));
    }

    /// Removes `key`'s entries (those that name this key).
    pub fn remove(&mut self, key: &Key) {
        let slot = hash_slot(&key.key_hash);
        // Look first: removing nothing must not copy a shared shard.
        let names = |k: &Key| k.id() == key.id();
        if self
            .current
            .get(slot)
            .get(&key.key_hash)
            .is_some_and(|k| names(&k.0))
        {
            self.current.get_mut(slot).remove(&key.key_hash);
        }
        if let Some((previous, _)) = key.previous() {
            let slot = hash_slot(&previous);
            if self
                .rotated
                .get(slot)
                .get(&previous)
                .is_some_and(|k| names(k))
            {
                self.rotated.get_mut(slot).remove(&previous);
            }
        }
    }

    /// Live secrets.
    pub fn len(&self) -> usize {
        self.current.iter().map(HashSet::len).sum::<usize>()
            + self.rotated.iter().map(HashMap::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live secret's hash with what it finds (a current secret of another key hides a
    /// rotated-away one with the same hash, as in [`KeyIndex::get`]).
    pub fn iter(&self) -> impl Iterator<Item = (KeyHash, Found<'_>)> {
        let current = self.current.iter().flat_map(HashSet::iter).map(|k| {
            (
                k.0.key_hash,
                Found {
                    key: &k.0,
                    valid_until: None,
                },
            )
        });
        let rotated = self
            .rotated
            .iter()
            .flat_map(HashMap::iter)
            .filter(|(h, _)| self.current.get(hash_slot(h)).get(*h).is_none())
            .map(|(h, key)| {
                (
                    *h,
                    Found {
                        key,
                        valid_until: key.previous().map(|(_, until)| until),
                    },
                )
            });
        current.chain(rotated)
    }
}

/// A key in the by-id index: hashed and compared by its id, and found by `&str`, so the index
/// holds one pointer per key.
#[derive(Debug, Clone)]
pub struct ById(pub Arc<Key>);

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, which `Borrow<str>` requires.
        self.0.id().hash(state);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}

impl Eq for ById {}

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        self.0.id()
    }
}

/// Every key by id.
#[derive(Debug, Clone, Default)]
pub struct KeysById {
    shards: Shards<HashSet<ById>>,
}

/// Ids are not uniform (UUIDv7 start with the time): a fixed-key SipHash spreads them.
fn id_slot(id: &str) -> usize {
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(id) as usize
}

impl KeysById {
    pub fn for_keys(keys: usize) -> Self {
        KeysById {
            shards: Shards::new(shard_count(keys)),
        }
    }

    pub fn get(&self, id: &str) -> Option<&ById> {
        self.shards.get(id_slot(id)).get(id)
    }

    /// Removes and returns the key `id`.
    pub fn take(&mut self, id: &str) -> Option<ById> {
        let slot = id_slot(id);
        self.shards.get(slot).get(id)?;
        self.shards.get_mut(slot).take(id)
    }

    /// Puts `key` in, returning the key it replaces (same id).
    pub fn replace(&mut self, key: ById) -> Option<ById> {
        self.shards.get_mut(id_slot(key.0.id())).replace(key)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &ById> {
        self.shards.iter().flat_map(HashSet::iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compact::Interner;

    fn key(n: u32, previous: Option<(KeyHash, i64)>) -> Arc<Key> {
        let mut k = crate::config::delta::tests::key(0);
        k.id = format!("k{n}");
        k.key_hash = hash(n);
        k.previous = previous;
        Arc::new(Key::new(k, &mut Interner::default()))
    }

    fn hash(n: u32) -> KeyHash {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&n.to_le_bytes());
        h
    }

    fn shared_shards<T>(a: &Shards<T>, b: &Shards<T>) -> usize {
        a.shards
            .iter()
            .zip(b.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count()
    }

    #[test]
    fn a_change_copies_only_the_shard_it_touches_and_leaves_the_original_as_it_was() {
        let mut index = KeyIndex::for_keys(10_000);
        let keys: Vec<_> = (0..10_000).map(|n| key(n, None)).collect();
        for k in &keys {
            index.insert(k);
        }
        let before = index.clone();
        let mut after = index.clone();
        after.remove(&keys[42]);
        after.insert(&key(10_001, None));
        let shards = before.current.shards.len();
        assert!(
            shared_shards(&before.current, &after.current) >= shards - 2,
            "{} of {shards} shards shared",
            shared_shards(&before.current, &after.current)
        );
        assert!(before.get(&hash(42)).is_some() && before.get(&hash(10_001)).is_none());
        assert!(after.get(&hash(42)).is_none() && after.get(&hash(10_001)).is_some());
        assert_eq!((before.len(), after.len()), (10_000, 10_000));
        // Removing what is not there copies nothing.
        let mut untouched = before.clone();
        untouched.remove(&key(99_999, None));
        assert_eq!(shared_shards(&before.current, &untouched.current), shards);
    }

    #[test]
    fn a_rotated_away_secret_finds_its_key_until_its_grace_ends_and_goes_with_it() {
        let mut index = KeyIndex::for_keys(100);
        let rotated = key(1, Some((hash(1_000), 2_000_000_000)));
        index.insert(&key(2, None));
        index.insert(&rotated);
        let by_current = index.get(&hash(1)).unwrap();
        assert_eq!((by_current.key.id(), by_current.valid_until), ("k1", None));
        let by_previous = index.get(&hash(1_000)).unwrap();
        assert_eq!(
            (by_previous.key.id(), by_previous.valid_until),
            ("k1", Some(2_000_000_000))
        );
        assert_eq!(index.len(), 3);
        assert_eq!(index.iter().count(), 3);
        // Another key's entry under the same hash is not removed with this key.
        let mut other = crate::config::delta::tests::key(0);
        other.id = "other".into();
        other.key_hash = hash(2);
        index.remove(&Key::new(other, &mut Interner::default()));
        assert!(index.get(&hash(2)).is_some());
        index.remove(&rotated);
        assert!(index.get(&hash(1)).is_none() && index.get(&hash(1_000)).is_none());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn keys_by_id_find_take_and_replace_across_shards() {
        let mut by_id = KeysById::for_keys(1_000);
        for n in 0..1_000 {
            by_id.replace(ById(key(n, None)));
        }
        assert_eq!(by_id.len(), 1_000);
        assert!(by_id.get("k500").is_some());
        let old = by_id.replace(ById(key(500, None)));
        assert!(old.is_some());
        assert_eq!(by_id.len(), 1_000);
        assert!(by_id.take("k500").is_some());
        assert!(by_id.get("k500").is_none());
        assert_eq!(by_id.iter().count(), 999);
    }
}
