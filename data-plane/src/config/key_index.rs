//! The runtime's two key indexes — by secret hash (what authentication looks up) and by id (where
//! a delta finds the key it changes) — each split into shards behind `Arc`s. The runtime a delta
//! produces shares every shard it does not touch with the runtime it replaces, so a one-key
//! change copies one shard (a few dozen entries) instead of the whole index, whatever the number
//! of keys; a lookup costs one more index into the shard array.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use modelgate_shared::keys::KeyHash;

use super::{ById, KeyEntry};

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

/// Every live secret's hash → the key it opens.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    shards: Shards<HashMap<KeyHash, KeyEntry>>,
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
            shards: Shards::new(shard_count(keys)),
        }
    }

    pub fn get(&self, hash: &KeyHash) -> Option<&KeyEntry> {
        self.shards.get(hash_slot(hash)).get(hash)
    }

    pub fn insert(&mut self, hash: KeyHash, entry: KeyEntry) {
        self.shards.get_mut(hash_slot(&hash)).insert(hash, entry);
    }

    pub fn remove(&mut self, hash: &KeyHash) -> Option<KeyEntry> {
        let slot = hash_slot(hash);
        // Look first: removing nothing must not copy a shared shard.
        self.shards.get(slot).get(hash)?;
        self.shards.get_mut(slot).remove(hash)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&KeyHash, &KeyEntry)> {
        self.shards.iter().flat_map(HashMap::iter)
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
        self.shards.get_mut(id_slot(&key.0.id)).replace(key)
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

    fn entry(id: &str) -> KeyEntry {
        let mut key = crate::config::delta::tests::key(0);
        key.id = id.to_owned();
        KeyEntry {
            key: Arc::new(key),
            valid_until: None,
        }
    }

    fn hash(n: u32) -> KeyHash {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&n.to_le_bytes());
        h
    }

    #[test]
    fn a_change_copies_only_the_shard_it_touches_and_leaves_the_original_as_it_was() {
        let mut index = KeyIndex::for_keys(10_000);
        for n in 0..10_000 {
            index.insert(hash(n), entry(&format!("k{n}")));
        }
        let before = index.clone();
        let mut after = index.clone();
        after.remove(&hash(42));
        after.insert(hash(10_001), entry("new"));
        let shared = before
            .shards
            .shards
            .iter()
            .zip(after.shards.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert!(
            shared >= before.shards.shards.len() - 2,
            "{shared} of {} shards shared",
            before.shards.shards.len()
        );
        assert!(before.get(&hash(42)).is_some() && before.get(&hash(10_001)).is_none());
        assert!(after.get(&hash(42)).is_none() && after.get(&hash(10_001)).is_some());
        assert_eq!((before.len(), after.len()), (10_000, 10_000));
        // Removing what is not there copies nothing.
        let mut untouched = before.clone();
        assert!(untouched.remove(&hash(99_999)).is_none());
        assert!(untouched
            .shards
            .shards
            .iter()
            .zip(before.shards.shards.iter())
            .all(|(a, b)| Arc::ptr_eq(a, b)));
    }

    #[test]
    fn keys_by_id_find_take_and_replace_across_shards() {
        let mut by_id = KeysById::for_keys(1_000);
        for n in 0..1_000 {
            by_id.replace(ById(entry(&format!("id-{n}")).key));
        }
        assert_eq!(by_id.len(), 1_000);
        assert!(by_id.get("id-500").is_some());
        let old = by_id.replace(ById(entry("id-500").key));
        assert!(old.is_some());
        assert_eq!(by_id.len(), 1_000);
        assert!(by_id.take("id-500").is_some());
        assert!(by_id.get("id-500").is_none());
        assert_eq!(by_id.iter().count(), 999);
    }
}
