//! The secrets auth_query fetched, by login name: a hit lives `cache_ttl`, a "no such user"
//! `cache_failure_ttl`. An LRU bounds the memory a flood of made-up names can take.

use super::Fetched;
use lru::LruCache;
use parking_lot::Mutex;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most names remembered per auth_query (the least recently used go first).
const CAPACITY: usize = 65_536;

/// One look-up's result.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// The secret, or None: PostgreSQL has no such user (or no password for it).
    pub value: Option<Arc<Fetched>>,
    /// When it was fetched.
    pub at: Instant,
}

/// The cache of one auth_query.
#[derive(Debug)]
pub(super) struct Cache {
    map: Mutex<LruCache<String, Entry>>,
    ttl: Duration,
    failure_ttl: Duration,
}

impl Cache {
    pub(super) fn new(ttl: Duration, failure_ttl: Duration) -> Cache {
        let cap = NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN);
        Cache {
            map: Mutex::new(LruCache::new(cap)),
            ttl,
            failure_ttl,
        }
    }

    /// The entry for `user` while it is fresh; an expired one is dropped.
    pub(super) fn fresh(&self, user: &str, now: Instant) -> Option<Entry> {
        let mut map = self.map.lock();
        let e = map.get(user)?;
        let ttl = if e.value.is_some() {
            self.ttl
        } else {
            self.failure_ttl
        };
        if now.duration_since(e.at) < ttl {
            return Some(e.clone());
        }
        map.pop(user);
        None
    }

    /// Remembers a look-up's result.
    pub(super) fn put(&self, user: &str, e: Entry) {
        self.map.lock().put(user.to_string(), e);
    }

    /// Forgets `user` if its entry was fetched at `at` (not a newer one); true if it did.
    pub(super) fn forget(&self, user: &str, at: Instant) -> bool {
        let mut map = self.map.lock();
        if map.peek(user).is_some_and(|e| e.at == at) {
            map.pop(user);
            return true;
        }
        false
    }

    /// Names remembered now (expired ones included until looked up).
    pub(super) fn len(&self) -> usize {
        self.map.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_live_ttl_and_misses_live_failure_ttl() {
        let c = Cache::new(Duration::from_secs(10), Duration::from_secs(2));
        let t0 = Instant::now();
        let hit = Arc::new(Fetched::for_tests("md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        c.put(
            "a",
            Entry {
                value: Some(hit),
                at: t0,
            },
        );
        c.put(
            "b",
            Entry {
                value: None,
                at: t0,
            },
        );
        let later = t0 + Duration::from_secs(3);
        assert!(c.fresh("a", later).is_some_and(|e| e.value.is_some()));
        assert!(c.fresh("b", later).is_none(), "the negative entry expired");
        assert_eq!(c.len(), 1, "an expired entry is dropped when looked up");
        assert!(c.fresh("a", t0 + Duration::from_secs(11)).is_none());
    }

    #[test]
    fn forget_leaves_a_newer_entry() {
        let c = Cache::new(Duration::from_secs(10), Duration::from_secs(2));
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        c.put(
            "a",
            Entry {
                value: None,
                at: t1,
            },
        );
        assert!(!c.forget("a", t0));
        assert!(c.forget("a", t1));
        assert_eq!(c.len(), 0);
    }
}
