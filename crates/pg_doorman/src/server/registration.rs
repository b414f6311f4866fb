//! A backend connection's entry in its pool's server list (PgBouncer SHOW SERVERS): the figures
//! shown, kept in the list for as long as the connection lives.

use crate::relay::tally::Tally;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// Adds `n` to a counter that only one task writes (readers may see it late, never torn):
/// a load and a store instead of a locked read-modify-write.
#[inline]
pub fn add_owned(a: &AtomicU64, n: u64) {
    if n > 0 {
        a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

/// A backend connection as SHOW SERVERS shows it.
#[derive(Debug)]
pub struct ServerInfo {
    /// Pool-local id.
    pub id: u64,
    /// Backend process id.
    pub pid: i32,
    /// When it was opened.
    pub created: crate::clock::Micros,
    /// TLS to the backend.
    pub tls: bool,
    /// Held by a client now.
    pub active: AtomicBool,
    /// Transactions run on it.
    pub xacts: AtomicU64,
    /// Queries run on it.
    pub queries: AtomicU64,
    /// Bytes sent to it.
    pub sent: AtomicU64,
    /// Bytes received from it.
    pub received: AtomicU64,
    /// Client holding it (0 = none), for SHOW CLIENTS / SERVERS.
    pub client: AtomicI32,
    /// Parses answered from its statement cache (transaction mode).
    pub prepared_hits: AtomicU64,
    /// Parses it had to run.
    pub prepared_misses: AtomicU64,
    /// Statements prepared on it.
    pub prepared_size: AtomicUsize,
}

/// The live backend connections of a pool.
#[derive(Debug, Default)]
pub struct ServerList(Mutex<Vec<Arc<ServerInfo>>>);

impl ServerList {
    /// A snapshot.
    pub fn snapshot(&self) -> Vec<Arc<ServerInfo>> {
        self.0.lock().clone()
    }
}

/// Keeps a server in its pool's list until dropped (with the connection).
#[derive(Debug)]
pub struct Registration {
    /// The shown data.
    pub info: Arc<ServerInfo>,
    list: Weak<ServerList>,
}

impl Registration {
    /// Adds `info` to `list`.
    pub fn new(list: &Arc<ServerList>, info: ServerInfo) -> Self {
        let info = Arc::new(info);
        list.0.lock().push(info.clone());
        Registration {
            info,
            list: Arc::downgrade(list),
        }
    }

    /// Adds one attachment's tally. Only the client holding the connection writes these (the
    /// pool's lock orders one holder after the next), so plain stores suffice.
    pub fn add(&self, t: &Tally) {
        let i = &self.info;
        add_owned(&i.xacts, u64::from(t.xacts));
        add_owned(&i.queries, u64::from(t.queries));
        add_owned(&i.sent, t.received);
        add_owned(&i.received, t.sent);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(list) = self.list.upgrade() {
            list.0.lock().retain(|i| !Arc::ptr_eq(i, &self.info));
        }
    }
}
