//! Transparent prepared statements in transaction mode (PgDoorman's `DOORMAN_<n>` scheme).
//!
//! A client's Parse (named or unnamed) is identified by the xxh3 hash of its query text and
//! parameter types, interned in a pool-level cache that gives each distinct statement one id,
//! and sent to a backend as `DOORMAN_<id>`. Each backend remembers which ids it has prepared
//! (an LRU, [`ServerStatements`]); each client maps its own names to statements
//! ([`ClientStatements`]). So a Parse the backend already has is answered with a synthetic
//! ParseComplete, and a Bind/Describe of a statement the current backend lacks gets the Parse
//! injected in front of it, whose ParseComplete the client never sees.
//!
//! Every message that gets a reply is queued in order ([`Expect`]) so that synthetic replies
//! land exactly where PostgreSQL would have put them, including after an ErrorResponse that
//! makes the backend skip the rest of the batch (protocol §55.2.3).

//!
//! This module is the cache and its decisions (look up, intern, rename to `DOORMAN_<id>`,
//! evict); the rewrite of the byte stream and the reply queue live in [`crate::relay`], which
//! calls it. It depends on nothing of the relay, the pool or the server.

mod caches;
mod local;

pub use caches::{ClientStatements, ServerStatements};
pub use local::answer_without_backend;

use parking_lot::Mutex;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// One distinct statement of a pool: query text and parameter types, and the id that names it
/// on every backend of the pool.
#[derive(Debug)]
pub struct Statement {
    /// Pool-unique id; the backend name is `DOORMAN_<id>`.
    pub id: u64,
    /// xxh3 of `body`.
    pub hash: u64,
    /// The Parse body after the statement name: query, NUL, Int16 count, Int32 type OIDs.
    pub body: Box<[u8]>,
    /// A backend accepted this Parse once: a client's Parse of it may be answered without a
    /// backend.
    pub verified: AtomicBool,
    /// The text may be one the session-state tracking reads ([`crate::sql_kind::may_matter`]),
    /// worked out once here: the Bind of a plain SELECT reads no text.
    pub may_matter: bool,
}

impl Statement {
    /// Statement `id` of Parse body `body` (its xxh3 `hash`), not yet verified.
    pub fn new(id: u64, hash: u64, body: &[u8]) -> Self {
        Statement {
            id,
            hash,
            body: body.into(),
            verified: AtomicBool::new(false),
            may_matter: crate::sql_kind::may_matter(body),
        }
    }
}

/// Longest `DOORMAN_<u64>` name plus its NUL, bytes.
const NAME_CAP: usize = 8 + 20 + 1;

/// A backend statement name, NUL-terminated, built on the stack.
pub struct ServerName {
    buf: [u8; NAME_CAP],
    len: usize,
}

impl ServerName {
    /// `DOORMAN_<id>\0`.
    pub fn new(id: u64) -> Self {
        let mut buf = [0u8; NAME_CAP];
        buf[..8].copy_from_slice(b"DOORMAN_");
        let mut digits = [0u8; 20];
        let mut n = id;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let d = &digits[i..];
        buf[8..8 + d.len()].copy_from_slice(d);
        ServerName {
            buf,
            len: 8 + d.len() + 1,
        }
    }

    /// The name without its NUL.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len - 1]
    }

    /// The name with its trailing NUL.
    pub fn with_nul(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Hash of a Parse body (query + parameter types), as PgDoorman keys its caches.
pub fn hash_body(body: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(body)
}

/// The pool-level statement cache (`prepared_statements_cache_size` entries, LRU). Locked only
/// when a client parses a statement it has not parsed before; Bind and repeated Parse are
/// served from the client's own map.
#[derive(Debug)]
pub struct PoolCache {
    map: Mutex<crate::keys::Lru<u64, Arc<Statement>>>,
    next_id: AtomicU64,
    /// Bumped by DDL and by stale-statement errors: statements of an older epoch are not
    /// found again (their keys differ), so the next Parse of the same text prepares afresh.
    epoch: AtomicU64,
    /// What this pool's clients hold in their own maps (SHOW POOLS_MEMORY).
    pub clients: Arc<ClientMemory>,
}

/// Sums over the connected clients of one pool of what their [`ClientStatements`] hold,
/// updated when an entry is added or dropped (never on Bind/Execute), read by SHOW POOLS_MEMORY
/// and /metrics. A client's share is taken away when it leaves.
#[derive(Debug, Default)]
pub struct ClientMemory {
    /// Statements the clients have named.
    pub named: AtomicI64,
    /// Statements the clients remember by text (their anonymous, hash-keyed caches).
    pub anonymous: AtomicI64,
    /// Bytes of names and statement text those entries refer to (the text is shared with the
    /// pool cache, so this is what the clients reach, not what they alone hold).
    pub bytes: AtomicI64,
    /// Entries dropped by the per-client caps, of clients still connected.
    pub evictions: AtomicI64,
    /// Entries dropped by the per-client caps since start (monotonic).
    pub evictions_total: AtomicU64,
}

impl PoolCache {
    /// A cache holding at most `capacity` statements.
    pub fn new(capacity: NonZeroUsize) -> Self {
        PoolCache {
            map: Mutex::new(crate::keys::Lru::with_hasher(capacity, crate::keys::Keys)),
            next_id: AtomicU64::new(1),
            epoch: AtomicU64::new(0),
            clients: Default::default(),
        }
    }

    /// The statement for `body`, created with a fresh id if the pool has not seen it (or a
    /// different text collided on the hash). Evicting an entry does not affect clients or
    /// backends that still use it: they hold their own references and names.
    pub fn intern(&self, hash: u64, body: &[u8]) -> Arc<Statement> {
        let mut map = self.map.lock();
        if let Some(s) = map.get(&hash)
            && *s.body == *body
        {
            return s.clone();
        }
        let s = Arc::new(Statement::new(
            self.next_id.fetch_add(1, Ordering::Relaxed),
            hash,
            body,
        ));
        map.put(hash, s.clone());
        s
    }

    /// What a statement key is mixed with: the client's parse context (a hash of its
    /// parse-time settings) and the cache epoch. Relaxed: a Parse racing a new epoch may use
    /// either, as it would race the DDL itself.
    pub fn salt(&self, parse_ctx: u64) -> u64 {
        let epoch = self.epoch.load(Ordering::Relaxed);
        parse_ctx ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// Starts a new epoch: every cached statement is prepared afresh on its next Parse (old
    /// ones stay on backends until their LRU closes them).
    pub fn new_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// The statement for `body` if the pool has it, without creating one.
    pub fn get(&self, hash: u64, body: &[u8]) -> Option<Arc<Statement>> {
        let mut map = self.map.lock();
        map.get(&hash).filter(|s| *s.body == *body).cloned()
    }

    /// The cached statements (SHOW PREPARED_STATEMENTS), most recently used first.
    pub fn entries(&self) -> Vec<Arc<Statement>> {
        self.map.lock().iter().map(|(_, s)| s.clone()).collect()
    }

    /// Number of statements cached.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Prepared-statement memory of one pool as SHOW POOLS_MEMORY and /metrics report it.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryFigures {
    /// Statements in the pool cache.
    pub pool_count: i64,
    /// Bytes of their text.
    pub pool_bytes: i64,
    /// Named statements held by connected clients.
    pub named: i64,
    /// Statements connected clients remember by text.
    pub anonymous: i64,
    /// Bytes of names and text those client entries refer to.
    pub client_bytes: i64,
    /// Entries dropped by the per-client caps of connected clients.
    pub evictions: i64,
    /// Entries dropped by the per-client caps since start.
    pub evictions_total: u64,
    /// Connected clients of the pool that have pipelined with Flush.
    pub async_clients: i64,
}

impl MemoryFigures {
    /// The figures of a pool's statement cache (`cache`: None without transparent prepared
    /// statements, all zero then), with `async_clients` counted by the caller.
    pub fn of(cache: Option<&PoolCache>, async_clients: i64) -> Self {
        let Some(c) = cache else {
            return Self {
                async_clients,
                ..Self::default()
            };
        };
        let entries = c.entries();
        let r = Ordering::Relaxed;
        MemoryFigures {
            pool_count: entries.len() as i64,
            pool_bytes: entries.iter().map(|s| s.body.len() as i64).sum(),
            named: c.clients.named.load(r),
            anonymous: c.clients.anonymous.load(r),
            client_bytes: c.clients.bytes.load(r),
            evictions: c.clients.evictions.load(r),
            evictions_total: c.clients.evictions_total.load(r),
            async_clients,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_epoch_or_another_parse_context_gives_a_new_statement() {
        let cache = PoolCache::new(NonZeroUsize::new(8).unwrap());
        let body = b"SELECT '00:00'::timetz\0\0\0";
        let key = |ctx| hash_body(body) ^ cache.salt(ctx);
        let a = cache.intern(key(1), body);
        assert_eq!(cache.intern(key(1), body).id, a.id);
        let other_zone = cache.intern(key(2), body);
        assert_ne!(other_zone.id, a.id);
        cache.new_epoch();
        let after_ddl = cache.intern(key(1), body);
        assert_ne!(after_ddl.id, a.id);
        assert!(
            cache
                .get(key(1), body)
                .is_some_and(|s| s.id == after_ddl.id)
        );
    }

    #[test]
    fn server_names() {
        assert_eq!(ServerName::new(0).with_nul(), b"DOORMAN_0\0");
        assert_eq!(ServerName::new(1234).with_nul(), b"DOORMAN_1234\0");
        let max = ServerName::new(u64::MAX);
        assert_eq!(max.with_nul(), b"DOORMAN_18446744073709551615\0");
    }

    #[test]
    fn pool_cache_shares_ids_and_survives_collisions() {
        let c = PoolCache::new(NonZeroUsize::new(2).unwrap());
        let a = c.intern(hash_body(b"SELECT 1\0\0\0"), b"SELECT 1\0\0\0");
        let a2 = c.intern(hash_body(b"SELECT 1\0\0\0"), b"SELECT 1\0\0\0");
        assert_eq!(a.id, a2.id);
        // Same hash, different text (forced): a new id, never the other's plan.
        let b = c.intern(a.hash, b"SELECT 2\0\0\0");
        assert_ne!(a.id, b.id);
        let _ = c.intern(1, b"x\0\0\0");
        let _ = c.intern(2, b"y\0\0\0");
        assert_eq!(c.len(), 2);
    }
}
