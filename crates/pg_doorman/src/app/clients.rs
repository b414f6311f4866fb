//! The logged-in clients, for SHOW CLIENTS and per-pool client counts. Entries are added at
//! login and removed when the client leaves; per-request updates are relaxed atomic stores.

use crate::pool::Pool;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Client states (SHOW CLIENTS `state`).
pub mod state {
    /// Holds no backend.
    pub const IDLE: u8 = 0;
    /// Holds a backend.
    pub const ACTIVE: u8 = 1;
    /// Waits for a backend.
    pub const WAITING: u8 = 2;
}

/// One client as SHOW CLIENTS shows it.
#[derive(Debug)]
pub struct ClientInfo {
    /// `#cN` id.
    pub id: u64,
    /// Its pool (database and user).
    pub pool: Arc<Pool>,
    /// Peer address.
    pub addr: Box<str>,
    /// application_name from its startup packet.
    pub application_name: Box<str>,
    /// Connected over TLS.
    pub tls: bool,
    /// Has pipelined with Flush (SHOW POOLS_MEMORY async_clients).
    pub flushed: AtomicBool,
    /// Login time.
    pub connected: Instant,
    /// One of [`state`].
    pub state: AtomicU8,
    /// When it entered its state (µs since `connected`), for WAITING and ACTIVE.
    pub wait_from_us: AtomicU64,
    /// Transactions (wrapping at 2^32; an idle client's entry is kept small).
    pub xacts: AtomicU32,
    /// Queries.
    pub queries: AtomicU32,
    /// Errors relayed to it.
    pub errors: AtomicU32,
    /// Backend pid it holds (0 = none).
    pub server_pid: AtomicI32,
}

impl ClientInfo {
    /// Marks the client `s` (a [`state`] value).
    pub fn set_state(&self, s: u8) {
        if s != state::IDLE {
            let us = self.connected.elapsed().as_micros() as u64;
            self.wait_from_us.store(us, Ordering::Relaxed);
        }
        self.state.store(s, Ordering::Relaxed);
    }
}

/// All logged-in clients.
#[derive(Debug, Default)]
pub struct ClientList(Mutex<HashMap<u64, Arc<ClientInfo>>>);

impl ClientList {
    /// Adds a client; the returned guard removes it (and the pool's count) when dropped.
    pub fn register(&self, info: ClientInfo) -> (Arc<ClientInfo>, ClientReg<'_>) {
        let info = Arc::new(info);
        info.pool.stats.clients.fetch_add(1, Ordering::Relaxed);
        self.0.lock().insert(info.id, info.clone());
        let reg = ClientReg {
            list: self,
            info: info.clone(),
        };
        (info, reg)
    }

    /// A snapshot, ordered by id.
    pub fn snapshot(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self.0.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }
}

/// Removes its client from the list when dropped.
pub struct ClientReg<'a> {
    list: &'a ClientList,
    info: Arc<ClientInfo>,
}

impl Drop for ClientReg<'_> {
    fn drop(&mut self) {
        self.info.pool.stats.clients.fetch_sub(1, Ordering::Relaxed);
        self.list.0.lock().remove(&self.info.id);
    }
}
