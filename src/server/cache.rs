//! [`LruCache`]: a bounded least-recently-used map from text to a value (the server keeps utterance scores in
//! it). RL loops re-send every conversation prefix at each turn, so most turns of a reward request were scored
//! on an earlier request; the cache makes them free, and its bound keeps memory flat however many distinct
//! texts pass through. A capacity of 0 disables it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A least-recently-used cache keyed by text. Lookups and inserts are `O(log n)`: a map from key to value and
/// last use, and an ordered index from last use to key whose first entry is the one to evict.
#[derive(Debug)]
pub(crate) struct LruCache<V> {
    entries: HashMap<Arc<str>, (V, u64)>,
    by_use: BTreeMap<u64, Arc<str>>,
    clock: u64,
    capacity: usize,
}

impl<V: Clone> LruCache<V> {
    pub(crate) fn new(capacity: usize) -> LruCache<V> {
        LruCache {
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            clock: 0,
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value for `key`, marking it as just used.
    pub(crate) fn get(&mut self, key: &str) -> Option<V> {
        let now = self.tick();
        let (value, last_use) = self.entries.get_mut(key)?;
        reindex(&mut self.by_use, last_use, now);
        Some(value.clone())
    }

    /// Stores `value` under `key` as just used, evicting the least recently used entry when full.
    pub(crate) fn insert(&mut self, key: &str, value: V) {
        if self.capacity == 0 {
            return;
        }
        let now = self.tick();
        if let Some((old, last_use)) = self.entries.get_mut(key) {
            *old = value;
            reindex(&mut self.by_use, last_use, now);
            return;
        }
        if self.entries.len() >= self.capacity {
            if let Some((_, oldest)) = self.by_use.pop_first() {
                self.entries.remove(&oldest);
            }
        }
        let k: Arc<str> = Arc::from(key);
        self.by_use.insert(now, Arc::clone(&k));
        self.entries.insert(k, (value, now));
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// Moves an entry's position in the use index from `last_use` to `now`.
fn reindex(by_use: &mut BTreeMap<u64, Arc<str>>, last_use: &mut u64, now: u64) {
    let key = by_use.remove(last_use).expect("every entry is indexed by its last use");
    *last_use = now;
    by_use.insert(now, key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut c = LruCache::new(2);
        c.insert("a", 1);
        c.insert("b", 2);
        assert_eq!(c.get("a"), Some(1)); // b is now the oldest
        c.insert("c", 3);
        assert_eq!(c.get("b"), None);
        assert_eq!(c.get("a"), Some(1));
        assert_eq!(c.get("c"), Some(3));
        c.insert("a", 10); // an update refreshes, never grows
        assert_eq!(c.len(), 2);
        c.insert("d", 4); // c is the oldest now
        assert_eq!(c.get("c"), None);
        assert_eq!(c.get("a"), Some(10));
    }

    #[test]
    fn zero_capacity_stores_nothing_and_the_index_stays_consistent() {
        let mut off = LruCache::new(0);
        off.insert("a", 1);
        assert_eq!(off.get("a"), None);
        let mut c = LruCache::new(3);
        for i in 0..100 {
            c.insert(&format!("k{}", i % 7), i);
            let _ = c.get(&format!("k{}", (i * 3) % 7));
            assert!(c.len() <= 3);
            assert_eq!(c.entries.len(), c.by_use.len());
        }
    }
}
