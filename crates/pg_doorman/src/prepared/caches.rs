//! What a backend has prepared and what a client has named, plus the reply queue.

use super::{ClientMemory, Statement};
use crate::keys::{Keys, Lru};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A reply the pooler expects from the backend, or must make up itself, in protocol order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Parse of statement `id` (0: not tracked); `swallow` when the pooler injected it.
    Parse {
        /// Statement id registered on the backend by this Parse.
        id: u64,
        /// The client did not send this Parse: its ParseComplete is dropped.
        swallow: bool,
    },
    /// BindComplete.
    Bind,
    /// Describe: (ParameterDescription +) RowDescription or NoData.
    Describe,
    /// Execute: ends with CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute,
    /// CloseComplete; `swallow` for the pooler's own Close of an evicted statement.
    Close {
        /// The client did not send this Close.
        swallow: bool,
    },
    /// Sync, Query or FunctionCall: ends with ReadyForQuery.
    Ready {
        /// Query/FunctionCall (skipped after an extended-protocol error), not Sync.
        skippable: bool,
    },
    /// A reply the pooler makes up, sent once everything before it was relayed.
    Synth(Synth),
    /// Not a reply: where the client ended a COPY (CopyDone/CopyFail). The backend ignores
    /// Syncs between CopyInResponse and this point.
    CopyEnd,
}

/// Replies the pooler makes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synth {
    /// ParseComplete for a Parse the backend already had.
    ParseComplete,
    /// CloseComplete for a Close of a statement (backends keep it).
    CloseComplete,
    /// CommandComplete `DEALLOCATE` for a simple-query DEALLOCATE of a client's name.
    Deallocate,
    /// ErrorResponse 42P05 for a Parse of a name the client already has; the number finds
    /// the name in [`ServerPrepared::duplicates`].
    Duplicate(u32),
}

impl Synth {
    /// The message bytes of the fixed replies (None for [`Synth::Duplicate`], which names
    /// the statement: [`ServerPrepared::duplicate_error`]).
    pub fn bytes(self) -> Option<&'static [u8]> {
        match self {
            Synth::ParseComplete => Some(&[b'1', 0, 0, 0, 4]),
            Synth::CloseComplete => Some(&[b'3', 0, 0, 0, 4]),
            Synth::Deallocate => Some(b"C\0\0\0\x0fDEALLOCATE\0"),
            Synth::Duplicate(_) => None,
        }
    }
}

/// A backend connection's prepared-statement state (`server_prepared_statements_cache_size`).
#[derive(Debug)]
pub struct ServerPrepared {
    lru: Lru<u64, Arc<Statement>>,
    capacity: usize,
    /// Evicted ids still prepared on the backend; closed before the next client's batch, since
    /// a Bind in the current batch may still use them.
    pub closing: Vec<u64>,
    /// Replies expected, in order.
    pub expect: VecDeque<Expect>,
    /// A client ran something that may have dropped statements behind the pooler's back
    /// (DEALLOCATE/DISCARD through the extended protocol): reset with DEALLOCATE ALL at checkin.
    pub must_reset: bool,
    /// An extended-protocol error was relayed and no Sync has followed yet: the backend ignores
    /// everything until Sync, so nothing is expected from it (protocol §55.2.3).
    pub skipping: bool,
    /// The backend is in copy-in mode and the client has not ended the copy yet.
    pub copy_in: bool,
    /// Parses answered from this cache (statistics).
    pub hits: u64,
    /// Parses sent to the backend, including injected ones (statistics).
    pub misses: u64,
    /// Scratch for building injected messages (kept to avoid allocating per message).
    pub scratch: Vec<u8>,
    /// Names of the statements of pending [`Synth::Duplicate`] replies, by number (rare:
    /// a client re-using a name it has not closed).
    pub duplicates: VecDeque<(u32, Box<[u8]>)>,
    next_duplicate: u32,
}

impl ServerPrepared {
    /// Empty state; allocates nothing until used.
    pub fn new(capacity: usize) -> Self {
        ServerPrepared {
            lru: Lru::unbounded_with_hasher(Keys),
            capacity: capacity.max(1),
            closing: Vec::new(),
            expect: VecDeque::new(),
            must_reset: false,
            skipping: false,
            copy_in: false,
            hits: 0,
            misses: 0,
            scratch: Vec::new(),
            duplicates: VecDeque::new(),
            next_duplicate: 0,
        }
    }

    /// Queues the 42P05 reply for a Parse of `name`, which the client already has.
    pub fn expect_duplicate(&mut self, name: &[u8]) -> Expect {
        let n = self.next_duplicate;
        self.next_duplicate = n.wrapping_add(1);
        // Replies dropped unsent leave their names behind until the next one is sent: bound them.
        if self.duplicates.len() >= 16 {
            self.duplicates.pop_front();
        }
        self.duplicates.push_back((n, name.into()));
        Expect::Synth(Synth::Duplicate(n))
    }

    /// ErrorResponse 42P05 with PostgreSQL's text (`prepared statement "name" already
    /// exists`) for the reply numbered `n`; names of replies dropped before theirs are
    /// discarded on the way.
    pub fn duplicate_error(&mut self, n: u32) -> BytesMut {
        let mut name: Box<[u8]> = Box::default();
        while let Some((k, v)) = self.duplicates.pop_front() {
            if k == n {
                name = v;
                break;
            }
        }
        let e = doorman_wire::ErrorFields::error(
            doorman_wire::sqlstate::DUPLICATE_PREPARED_STATEMENT,
            format!(
                "prepared statement \"{}\" already exists",
                String::from_utf8_lossy(&name)
            ),
        );
        let mut out = BytesMut::with_capacity(64 + name.len());
        e.write(&mut out);
        out
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
        self.must_reset = false;
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
        Arc::new(Statement {
            id,
            hash: id,
            body: Box::new([]),
            verified: Default::default(),
        })
    }

    #[test]
    fn synthetic_messages_are_well_formed() {
        let mut p = ServerPrepared::new(2);
        let first = p.expect_duplicate(b"a");
        let Expect::Synth(Synth::Duplicate(n)) = p.expect_duplicate(b"stmt_1") else {
            panic!("not a duplicate reply");
        };
        // The first reply was dropped (skipped after an error): its name goes with the second.
        assert!(matches!(first, Expect::Synth(Synth::Duplicate(_))));
        let dup = p.duplicate_error(n);
        assert!(p.duplicates.is_empty());
        let fields = doorman_wire::fields::parse_error_body(&dup[5..]).unwrap();
        assert_eq!(fields.code, "42P05");
        assert_eq!(
            fields.message,
            "prepared statement \"stmt_1\" already exists"
        );
        for s in [
            Synth::ParseComplete,
            Synth::CloseComplete,
            Synth::Deallocate,
        ] {
            let b = s.bytes().unwrap();
            let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
            assert_eq!(len + 1, b.len(), "{s:?}");
        }
        let len = u32::from_be_bytes([dup[1], dup[2], dup[3], dup[4]]) as usize;
        assert_eq!(len + 1, dup.len());
    }

    #[test]
    fn server_lru_defers_closes_and_recovers_evicted() {
        let mut s = ServerPrepared::new(2);
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
        let text = |id: u64, body: &[u8]| {
            Arc::new(Statement {
                id,
                hash: id,
                body: body.into(),
                verified: Default::default(),
            })
        };
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
