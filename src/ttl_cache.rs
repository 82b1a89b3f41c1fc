//! `TtlCache`: a concurrent map whose entries expire. It holds authorisation
//! facts (a key's workspace, a workspace's registered agents), which another
//! node or a direct database change may revoke at any time: a fact read from
//! here is at most `ttl` old, and the node that changes a fact removes it at
//! once (`remove` / `retain`). A zero `ttl` turns caching off.
//!
//! Entries are written only after a successful database read, so the map is
//! bounded by what exists in the database, not by what clients send; expired
//! entries are dropped when next read, and a periodic `purge_expired` is not
//! needed for that bound.

use std::hash::Hash;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// A map of facts that expire `ttl` after they were read from the database.
#[derive(Debug)]
pub struct TtlCache<K: Eq + Hash, V> {
    map: DashMap<K, (V, Instant)>,
    ttl: Duration,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    /// An empty cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            map: DashMap::new(),
            ttl,
        }
    }

    /// The value, if cached and younger than the TTL.
    pub fn get(&self, key: &K) -> Option<V> {
        let fresh = {
            let entry = self.map.get(key)?;
            let (value, at) = entry.value();
            (at.elapsed() < self.ttl).then(|| value.clone())
        };
        if fresh.is_none() {
            self.map
                .remove_if(key, |_, (_, at)| at.elapsed() >= self.ttl);
        }
        fresh
    }

    /// Caches a value just read from the database (nothing when the TTL is 0).
    pub fn insert(&self, key: K, value: V) {
        if !self.ttl.is_zero() {
            self.map.insert(key, (value, Instant::now()));
        }
    }

    /// Forgets one entry (the fact changed here).
    pub fn remove(&self, key: &K) {
        self.map.remove(key);
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.map.retain(|k, (v, _)| keep(k, v));
    }

    /// How many entries are held (expired ones included until read).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn zero_ttl_caches_nothing() {
        let c = TtlCache::new(Duration::ZERO);
        c.insert("k", 1);
        assert_eq!(c.get(&"k"), None);
        assert!(c.is_empty());
    }

    #[test]
    fn entries_are_served_then_removed_and_retained() {
        let c = TtlCache::new(Duration::from_secs(3600));
        c.insert("a", 1);
        c.insert("b", 2);
        assert_eq!(c.get(&"a"), Some(1));
        c.remove(&"a");
        assert_eq!(c.get(&"a"), None);
        c.retain(|_, v| *v != 2);
        assert_eq!(c.get(&"b"), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn an_expired_entry_is_not_served() {
        let c = TtlCache::new(Duration::from_nanos(1));
        c.insert("a", 1);
        // An Instant one nanosecond old: expired once any time has passed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.get(&"a").is_some() {
            assert!(Instant::now() < deadline, "entry never expired");
            std::hint::spin_loop();
        }
        assert!(c.is_empty());
    }
}
