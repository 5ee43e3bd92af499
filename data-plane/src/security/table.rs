//! A map with a fixed bound on its entries, for per-source state an attacker can make up at will
//! (one entry per address it rotates through).
//!
//! Two generations: new entries go into the current one; when it holds half the bound, it
//! becomes the previous generation and the old previous one is dropped whole. An entry read from
//! the previous generation moves back into the current one, so what is in use survives and what
//! has not been touched for a generation is forgotten. Every operation is O(1) (amortised) and
//! the map never holds more than the bound. Forgetting fails open: a source whose entry was
//! evicted starts again from nothing, which costs an attacker's flood of fresh addresses its own
//! history and never blocks anyone else.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug)]
pub(crate) struct Table<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    /// Entries per generation.
    half: usize,
}

impl<K: Hash + Eq + Copy, V> Table<K, V> {
    /// A table holding at most `capacity` entries (at least 2).
    pub(crate) fn new(capacity: usize) -> Self {
        Table {
            current: HashMap::new(),
            previous: HashMap::new(),
            half: (capacity / 2).max(1),
        }
    }

    /// The entry of `key`, if the table remembers it.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    /// The entry of `key`, made by `make` when the table does not remember it.
    pub(crate) fn entry(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let carried = if self.current.contains_key(&key) {
            None
        } else {
            let carried = self.previous.remove(&key);
            if self.current.len() >= self.half {
                self.previous = std::mem::take(&mut self.current);
            }
            carried
        };
        self.current
            .entry(key)
            .or_insert_with(|| carried.unwrap_or_else(make))
    }

    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}
