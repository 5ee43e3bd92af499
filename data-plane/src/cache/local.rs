//! The in-process layer in front of the shared store: encoded entries by key, with their
//! expiry, bounded by total bytes (oldest inserted first out). One short lock per lookup or
//! insert (a map probe and a reference-count increment; nothing is copied or decoded under
//! it), taken only for requests on routes whose cache is on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;

use super::key::Key;

pub struct Local {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Slot>,
    /// Insertion order, for eviction; an element whose generation no longer matches its slot
    /// was replaced or removed, and is skipped.
    order: VecDeque<(Key, u64)>,
    bytes: usize,
    generation: u64,
}

struct Slot {
    value: Bytes,
    expires: Instant,
    generation: u64,
}

impl Local {
    pub fn new(max_bytes: usize) -> Self {
        Local {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The live entry under `key`, if any.
    pub fn get(&self, key: &Key, now: Instant) -> Option<Bytes> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = inner.map.get(key)?;
        if slot.expires > now {
            return Some(slot.value.clone());
        }
        inner.remove(key);
        None
    }

    /// Stores `value` until `expires`, evicting the oldest entries past the byte bound. A value
    /// larger than the whole bound is not kept.
    pub fn insert(&self, key: Key, value: Bytes, expires: Instant) {
        if value.len() > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.remove(&key);
        inner.generation += 1;
        let generation = inner.generation;
        inner.bytes += value.len();
        inner.order.push_back((key, generation));
        inner.map.insert(
            key,
            Slot {
                value,
                expires,
                generation,
            },
        );
        while inner.bytes > self.max_bytes {
            let Some((old, g)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&old).is_some_and(|s| s.generation == g) {
                inner.remove(&old);
            }
        }
        // Replacements leave stale order elements behind: drop them before they outgrow the
        // live entries.
        if inner.order.len() > 2 * inner.map.len() + 64 {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(k, g)| map.get(k).is_some_and(|s| s.generation == *g));
        }
    }

    /// Bytes held (encoded entries).
    pub fn bytes(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

impl Inner {
    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= old.value.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(n: u8) -> Key {
        Key([n; 32])
    }

    #[test]
    fn the_layer_stays_under_its_byte_bound_evicting_the_oldest() {
        let local = Local::new(100);
        let later = Instant::now() + Duration::from_secs(60);
        for n in 0..10 {
            local.insert(key(n), Bytes::from(vec![n; 30]), later);
            assert!(local.bytes() <= 100);
        }
        let now = Instant::now();
        assert!(local.get(&key(0), now).is_none());
        assert_eq!(local.get(&key(9), now).unwrap()[0], 9);
        assert_eq!(local.bytes(), 90);
        // Larger than the whole bound: not kept, nothing evicted for it.
        local.insert(key(20), Bytes::from(vec![0; 101]), later);
        assert!(local.get(&key(20), now).is_none());
        assert_eq!(local.bytes(), 90);
    }

    #[test]
    fn an_expired_entry_is_gone_and_a_replaced_one_counts_once() {
        let local = Local::new(1000);
        let now = Instant::now();
        local.insert(key(1), Bytes::from_static(b"abc"), now);
        assert!(local.get(&key(1), now).is_none());
        assert_eq!(local.bytes(), 0);
        let later = now + Duration::from_secs(60);
        for _ in 0..500 {
            local.insert(key(2), Bytes::from_static(b"abcd"), later);
        }
        assert_eq!(local.bytes(), 4);
        assert!(local.inner.lock().unwrap().order.len() <= 70);
    }
}
