//! What a backend has prepared and what a client has named.

use super::{ClientMemory, Statement};
use crate::keys::{Keys, Lru};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The statements one backend connection has prepared (`server_prepared_statements_cache_size`,
/// LRU), and the evicted ones still to be closed on it.
#[derive(Debug)]
pub struct ServerStatements {
    lru: Lru<u64, Arc<Statement>>,
    capacity: usize,
    /// Evicted ids still prepared on the backend; closed before the next client's batch, since
    /// a Bind in the current batch may still use them.
    pub closing: Vec<u64>,
    /// Parses answered from this cache (statistics).
    pub hits: u64,
    /// Parses sent to the backend, including injected ones (statistics).
    pub misses: u64,
}

impl ServerStatements {
    /// Empty; keeps at most `capacity` (at least 1) statements before evicting.
    pub fn new(capacity: usize) -> Self {
        ServerStatements {
            lru: Lru::unbounded_with_hasher(Keys),
            capacity: capacity.max(1),
            closing: Vec::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// Whether the backend has `id`; promotes it (an evicted one not yet closed comes back).
    pub fn has(&mut self, st: &Arc<Statement>) -> bool {
        if self.lru.get(&st.id).is_some() {
            return true;
        }
        if let Some(i) = self.closing.iter().position(|&c| c == st.id) {
            self.closing.swap_remove(i);
            self.add(st);
            return true;
        }
        false
    }

    /// Records that `id` is (being) prepared; the least recently used goes to `closing`.
    pub fn add(&mut self, st: &Arc<Statement>) {
        if self.lru.len() >= self.capacity
            && let Some((old, _)) = self.lru.pop_lru()
        {
            self.closing.push(old);
        }
        self.lru.put(st.id, Arc::clone(st));
    }

    /// The backend accepted the Parse of `id`: later Parses of it may be answered locally.
    pub fn confirm(&mut self, id: u64) {
        if let Some(s) = self.lru.peek(&id) {
            s.verified.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Forgets `id` (its Parse failed or was skipped).
    pub fn forget(&mut self, id: u64) {
        self.lru.pop(&id);
    }

    /// Forgets everything (after DEALLOCATE ALL / DISCARD ALL ran on the backend).
    pub fn clear(&mut self) {
        self.lru.clear();
        self.closing.clear();
    }

    /// Statements the backend holds (for statistics).
    pub fn len(&self) -> usize {
        self.lru.len() + self.closing.len()
    }

    /// True when the backend holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A client's names for its statements. Allocated on the client's first Parse, so clients that
/// never prepare pay nothing.
#[derive(Debug)]
pub struct ClientStatements {
    /// Named statements: never evicted (PgDoorman 3.7.0: an evicted name fails the client's
    /// next Bind with 26000); they go with Close, DEALLOCATE or the client.
    named: Lru<Box<[u8]>, Arc<Statement>>,
    /// The unnamed statement (protocol: the last Parse with an empty name).
    pub unnamed: Option<Arc<Statement>>,
    /// Recently parsed statements by hash, so a repeated Parse takes no pool lock: the
    /// anonymous LRU, capped by `client_anonymous_prepared_cache_size`.
    recent: Lru<u64, Arc<Statement>>,
    recent_cap: usize,
    /// This client's share of the pool's [`ClientMemory`] sums: (named, anonymous, bytes,
    /// evictions), given back on drop.
    mine: [i64; 4],
    sums: Arc<ClientMemory>,
}

impl ClientStatements {
    /// Empty maps; `anonymous_cap` bounds the anonymous LRU (0 = unlimited). `sums` are the
    /// pool's totals this client adds to.
    pub fn new(anonymous_cap: usize, sums: Arc<ClientMemory>) -> Self {
        ClientStatements {
            named: Lru::unbounded_with_hasher(Keys),
            unnamed: None,
            recent: Lru::unbounded_with_hasher(Keys),
            recent_cap: if anonymous_cap == 0 {
                usize::MAX
            } else {
                anonymous_cap
            },
            mine: [0; 4],
            sums,
        }
    }

    /// Adds `d` to field `i` of this client's share and the pool's sums.
    fn count(&mut self, i: usize, d: i64) {
        if d == 0 {
            return;
        }
        self.mine[i] += d;
        let s = &self.sums;
        if i == EVICTIONS && d > 0 {
            s.evictions_total.fetch_add(d as u64, Ordering::Relaxed);
        }
        let field = [&s.named, &s.anonymous, &s.bytes, &s.evictions][i];
        field.fetch_add(d, Ordering::Relaxed);
    }

    /// The statement the client calls `name` ("" is the unnamed one); promotes it.
    pub fn get(&mut self, name: &[u8]) -> Option<&Arc<Statement>> {
        if name.is_empty() {
            return self.unnamed.as_ref();
        }
        self.named.get(name)
    }

    /// True when the client already has a statement called `name` (non-empty).
    pub fn contains(&self, name: &[u8]) -> bool {
        self.named.contains(name)
    }

    /// Names `s` as `name` (replacing what had that name).
    pub fn insert(&mut self, name: &[u8], s: Arc<Statement>) {
        if name.is_empty() {
            self.unnamed = Some(s);
            return;
        }
        let w = weight(name, &s);
        match self.named.put(name.into(), s) {
            Some(old) => self.count(BYTES, w - weight(name, &old)),
            None => {
                self.count(NAMED, 1);
                self.count(BYTES, w);
            }
        }
    }

    /// Drops the name (Close / DEALLOCATE); true if it existed.
    pub fn remove(&mut self, name: &[u8]) -> bool {
        if name.is_empty() {
            return self.unnamed.take().is_some();
        }
        match self.named.pop(name) {
            Some(old) => {
                self.count(NAMED, -1);
                self.count(BYTES, -weight(name, &old));
                true
            }
            None => false,
        }
    }

    /// Drops every name (DEALLOCATE ALL / DISCARD ALL).
    pub fn clear(&mut self) {
        let bytes: i64 = self.named.iter().map(|(k, s)| weight(k, s)).sum();
        self.count(NAMED, -(self.named.len() as i64));
        self.count(BYTES, -bytes);
        self.named.clear();
        self.unnamed = None;
    }

    /// A statement parsed recently by this client with this exact body.
    pub fn recent(&mut self, hash: u64, body: &[u8]) -> Option<Arc<Statement>> {
        self.recent.get(&hash).filter(|s| *s.body == *body).cloned()
    }

    /// Remembers a statement by hash.
    pub fn remember(&mut self, s: &Arc<Statement>) {
        if self.recent.contains(&s.hash) {
            if let Some(old) = self.recent.put(s.hash, s.clone()) {
                self.count(BYTES, weight(b"", s) - weight(b"", &old));
            }
            return;
        }
        if self.recent.len() >= self.recent_cap
            && let Some((_, old)) = self.recent.pop_lru()
        {
            self.count(ANONYMOUS, -1);
            self.count(BYTES, -weight(b"", &old));
            self.count(EVICTIONS, 1);
        }
        self.count(ANONYMOUS, 1);
        self.count(BYTES, weight(b"", s));
        self.recent.put(s.hash, s.clone());
    }

    /// Every statement the client names, as (name, Parse body after the name); the unnamed
    /// one has an empty name. What a client migrating to a new process takes along.
    pub fn export(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let named = self
            .named
            .iter()
            .map(|(k, s)| (k.to_vec(), s.body.to_vec()));
        let unnamed = self.unnamed.iter().map(|s| (Vec::new(), s.body.to_vec()));
        // Oldest first, so that re-inserting them keeps the LRU order.
        let mut v: Vec<_> = named.collect();
        v.reverse();
        v.extend(unnamed);
        v
    }

    /// Named statements held.
    pub fn len(&self) -> usize {
        self.named.len()
    }

    /// True when the client has no named statement.
    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }
}

impl Drop for ClientStatements {
    fn drop(&mut self) {
        for i in 0..self.mine.len() {
            let d = self.mine[i];
            self.count(i, -d);
        }
    }
}

const NAMED: usize = 0;
const ANONYMOUS: usize = 1;
const BYTES: usize = 2;
const EVICTIONS: usize = 3;

/// Bytes an entry accounts for: its name and the statement text.
fn weight(name: &[u8], s: &Statement) -> i64 {
    (name.len() + s.body.len()) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    fn st(id: u64) -> Arc<Statement> {
        Arc::new(Statement::new(id, id, &[]))
    }

    #[test]
    fn server_lru_defers_closes_and_recovers_evicted() {
        let mut s = ServerStatements::new(2);
        let (a, b, c) = (st(1), st(2), st(3));
        s.add(&a);
        s.add(&b);
        s.add(&c);
        assert_eq!(s.closing, vec![1]);
        // Still prepared on the backend: using it brings it back and evicts the next oldest.
        assert!(s.has(&a));
        assert_eq!(s.closing, vec![2]);
        s.forget(3);
        assert!(!s.has(&c));
        s.confirm(1);
        assert!(a.verified.load(std::sync::atomic::Ordering::Relaxed));
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn client_names_are_never_evicted_but_anonymous_statements_are() {
        let mut c = ClientStatements::new(2, Default::default());
        for i in 0..100u64 {
            c.insert(format!("s{i}").as_bytes(), st(i));
        }
        // The trap of PgDoorman before 3.7.0: an evicted name fails the next Bind (26000).
        assert_eq!(c.len(), 100);
        assert_eq!(c.get(b"s0").map(|s| s.id), Some(0));
        for i in 0..5u64 {
            c.remember(&st(1000 + i));
        }
        assert!(
            c.recent(1000, b"").is_none(),
            "the oldest anonymous entry goes past the cap"
        );
        assert!(c.recent(1004, b"").is_some());
        c.insert(b"", st(4));
        assert_eq!(c.get(b"").map(|s| s.id), Some(4));
        assert!(c.remove(b""));
        assert!(!c.remove(b"zz"));
        let mut unlimited = ClientStatements::new(0, Default::default());
        for i in 0..500u64 {
            unlimited.remember(&st(i));
        }
        assert!(unlimited.recent(0, b"").is_some());
    }

    #[test]
    fn client_shares_add_up_and_leave_with_the_client() {
        let sums: Arc<ClientMemory> = Default::default();
        let load = |f: &AtomicI64| f.load(Ordering::Relaxed);
        let text = |id: u64, body: &[u8]| Arc::new(Statement::new(id, id, body));
        let mut c = ClientStatements::new(1, sums.clone());
        c.insert(b"s1", text(1, b"SELECT 1"));
        c.insert(b"s2", text(2, b"SELECT 22"));
        c.remember(&text(3, b"SELECT 333"));
        assert_eq!(load(&sums.named), 2);
        assert_eq!(load(&sums.anonymous), 1);
        assert_eq!(load(&sums.bytes), (2 + 8) + (2 + 9) + 10);
        // Past the anonymous cap of 1 the oldest anonymous entry goes, counted as an eviction.
        c.remember(&text(4, b"x"));
        assert_eq!(load(&sums.anonymous), 1);
        assert_eq!(load(&sums.evictions), 1);
        assert_eq!(load(&sums.bytes), (2 + 8) + (2 + 9) + 1);
        let mut other = ClientStatements::new(0, sums.clone());
        other.insert(b"s1", text(1, b"SELECT 1"));
        c.clear();
        assert_eq!(load(&sums.named), 1);
        drop(c);
        assert_eq!(load(&sums.anonymous), 0);
        assert_eq!(load(&sums.evictions), 0);
        assert_eq!(load(&sums.bytes), 2 + 8);
        drop(other);
        assert_eq!(load(&sums.named), 0);
        assert_eq!(load(&sums.bytes), 0);
    }
}
