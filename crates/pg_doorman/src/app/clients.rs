//! The logged-in clients, for SHOW CLIENTS and per-pool client counts. Entries are added at
//! login and removed when the client leaves; per-request updates are relaxed atomic stores.

use crate::clock::Micros;
pub use crate::leave::Leave;
use crate::params::ParamSet;
use crate::pool::Pool;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// Client states (SHOW CLIENTS `state`).
pub mod state {
    /// Holds no backend.
    pub const IDLE: u8 = 0;
    /// Holds a backend.
    pub const ACTIVE: u8 = 1;
    /// Waits for a backend.
    pub const WAITING: u8 = 2;
}

/// One client as SHOW CLIENTS shows it, and the key a CancelRequest names it by.
#[derive(Debug)]
pub struct ClientInfo {
    /// `#cN` id; also the process id given in BackendKeyData (positive).
    pub id: u64,
    /// Secret key given in BackendKeyData.
    pub secret: i32,
    /// Its pool (database and user).
    pub pool: Arc<Pool>,
    /// The backend key it holds now, `(pid << 32) | secret`, 0 when none (cancel routing).
    pub cancel: CancelSlot,
    /// Its session parameters at login (application_name), shared with the pool's other
    /// clients that have the same.
    pub params: ParamSet,
    /// Peer address or the unix socket (kept inline: an idle client allocates nothing for it).
    pub peer: crate::net::Peer,
    /// Connected over TLS.
    pub tls: bool,
    /// Has pipelined with Flush (SHOW POOLS_MEMORY async_clients).
    pub flushed: AtomicBool,
    /// One of [`state`].
    pub state: AtomicU8,
    /// Login time.
    pub connected: Micros,
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
    /// Kept on its backend past the transaction by session state (a WITH HOLD cursor, a
    /// temporary table) in transaction mode: SHOW POOLS cl_pinned.
    pub pinned: AtomicBool,
    /// [`crate::params::parse_context`] of the client's current wishes (written by its own
    /// task when they change; read per request with prepared statements on).
    pub parse_ctx: AtomicU64,
    /// The untracked settings of its startup packet (what RESET ALL returns to).
    pub extras: ParamSet,
    /// What the process asks of it at its next idle point (drain, upgrade).
    pub leave: Leave,
}

/// Connected clients of `pool` that have pipelined with Flush (SHOW POOLS_MEMORY
/// `async_clients`), from a snapshot of the client list.
pub fn async_clients(clients: &[Arc<ClientInfo>], pool: &Pool) -> i64 {
    clients
        .iter()
        .filter(|c| std::ptr::eq(&*c.pool, pool) && c.flushed.load(Ordering::Relaxed))
        .count() as i64
}

impl ClientInfo {
    /// A client that logged in now from `peer` with startup settings `params` (tracked) and
    /// `extras` (untracked); its parse context is that of `params`, its figures zero.
    pub fn new(
        (id, secret): (u64, i32),
        pool: Arc<Pool>,
        peer: crate::net::Peer,
        tls: bool,
        params: ParamSet,
        extras: ParamSet,
    ) -> ClientInfo {
        ClientInfo {
            id,
            secret,
            pool,
            cancel: Default::default(),
            parse_ctx: crate::params::parse_context(&params).into(),
            params,
            peer,
            tls,
            flushed: Default::default(),
            state: Default::default(),
            connected: Micros::now(),
            wait_from_us: Default::default(),
            xacts: Default::default(),
            queries: Default::default(),
            errors: Default::default(),
            server_pid: Default::default(),
            pinned: Default::default(),
            extras,
            leave: Default::default(),
        }
    }

    /// Marks the client `s` (a [`state`] value); WAITING and ACTIVE are timed from now, IDLE
    /// reads no clock.
    pub fn set_state(&self, s: u8) {
        if s == state::IDLE {
            self.state.store(s, Ordering::Relaxed);
        } else {
            self.set_state_at(s, Micros::now());
        }
    }

    /// Marks the client `s` as of `at`, a clock reading the caller already holds (the request
    /// path reads the clock twice per request, not once per state change).
    pub fn set_state_at(&self, s: u8, at: Micros) {
        if s != state::IDLE {
            let us = at.us_since(self.connected);
            self.wait_from_us.store(us, Ordering::Relaxed);
        }
        self.state.store(s, Ordering::Relaxed);
    }

    /// `ip:port`, or `[local]` for the unix socket.
    pub fn addr(&self) -> crate::net::Peer {
        self.peer
    }

    /// application_name of its session at login ("" if none).
    pub fn application_name(&self) -> &str {
        self.params.get("application_name").unwrap_or_default()
    }
}

/// The backend key a client currently holds: `(pid << 32) | secret`, 0 when it holds none.
pub type CancelSlot = AtomicU64;

/// All logged-in clients by the process id their BackendKeyData gave them: SHOW CLIENTS, pool
/// client counts and CancelRequest routing share this one map (touched at login, logout, cancel
/// and SHOW only).
#[derive(Debug, Default)]
pub struct ClientList {
    map: Mutex<crate::keys::Map<i32, Arc<ClientInfo>>>,
    next_pid: AtomicI32,
}

impl ClientList {
    /// Adds a client built by `make(id, secret)` with a fresh process id and a random secret;
    /// the returned guard removes it (and the pool's count) when dropped. `wanted`: the id to
    /// use if no other client has it (a session-mode client's real backend pid).
    pub fn register(
        &self,
        wanted: Option<i32>,
        make: impl FnOnce(u64, i32) -> ClientInfo,
    ) -> (Arc<ClientInfo>, ClientReg<'_>) {
        self.register_keyed(wanted, rand::random(), make)
    }

    /// [`ClientList::register`] with the secret given: a client migrated from an upgraded
    /// process keeps the key its BackendKeyData gave it.
    pub fn register_keyed(
        &self,
        wanted: Option<i32>,
        secret: i32,
        make: impl FnOnce(u64, i32) -> ClientInfo,
    ) -> (Arc<ClientInfo>, ClientReg<'_>) {
        let mut map = self.map.lock();
        let free = wanted.filter(|&p| p > 0 && !map.contains_key(&p));
        let pid = free.unwrap_or_else(|| {
            loop {
                // Positive ids like PostgreSQL's pids, skipping any still in use after wrap-around.
                let pid = self
                    .next_pid
                    .fetch_add(1, Ordering::Relaxed)
                    .wrapping_add(1)
                    & 0x7fff_ffff;
                if pid != 0 && !map.contains_key(&pid) {
                    break pid;
                }
            }
        });
        let info = Arc::new(make(pid as u64, secret));
        info.pool.stats.clients.fetch_add(1, Ordering::Relaxed);
        map.insert(pid, info.clone());
        drop(map);
        let reg = ClientReg {
            list: self,
            info: Some(info.clone()),
        };
        (info, reg)
    }

    /// Ids given from now on start above `id` (a new process of an upgrade skips the ids its
    /// predecessor's clients still hold).
    pub fn ids_from(&self, id: i32) {
        self.next_pid.fetch_max(id, Ordering::Relaxed);
    }

    /// The last id given.
    pub fn last_id(&self) -> i32 {
        self.next_pid.load(Ordering::Relaxed)
    }

    /// Logged-in clients.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// True when no client is logged in.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot, ordered by id.
    pub fn snapshot(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self.map.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// The backend key client `pid` holds now (0: none, or the client is gone).
    pub fn current_key(&self, pid: i32) -> u64 {
        self.map
            .lock()
            .get(&pid)
            .map_or(0, |c| c.cancel.load(Ordering::SeqCst))
    }

    /// The backend key client `pid` holds and its pool, if `secret` is its secret (constant
    /// time) and it holds a backend.
    pub fn cancel_target(&self, pid: i32, secret: i32) -> Option<(u64, Arc<Pool>)> {
        let map = self.map.lock();
        let c = map.get(&pid)?;
        if !doorman_wire::auth::ct_eq(&c.secret.to_be_bytes(), &secret.to_be_bytes()) {
            return None;
        }
        Some((c.cancel.load(Ordering::Acquire), c.pool.clone()))
    }
}

/// Removes its client from the list when dropped.
pub struct ClientReg<'a> {
    list: &'a ClientList,
    /// None once handed over.
    info: Option<Arc<ClientInfo>>,
}

impl Drop for ClientReg<'_> {
    fn drop(&mut self) {
        if let Some(info) = &self.info {
            self.list.unregister(info);
        }
    }
}

impl ClientReg<'_> {
    /// Keeps the client listed; whoever calls this removes it with [`ClientList::unregister`]
    /// (a logged-in client's task holds one guard for everything, to stay small). The guard's
    /// reference is released here: forgetting the guard would leak the client's info, and
    /// with it its pool, for the life of the process.
    pub fn hand_over(mut self) {
        self.info = None;
    }
}

impl ClientList {
    /// Removes a client added by [`ClientList::register`] (and its pool's count).
    pub fn unregister(&self, info: &Arc<ClientInfo>) {
        info.pool.stats.clients.fetch_sub(1, Ordering::Relaxed);
        self.map.lock().remove(&(info.id as i32));
    }
}

#[cfg(test)]
mod leave_tests {
    use super::Leave;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_set_wakes_a_waiting_task_once_and_is_then_seen() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let l = Leave::default();
        assert_eq!(l.poll(&mut cx, Leave::STAY), Poll::Pending);
        assert_eq!(l.poll(&mut cx, Leave::STAY), Poll::Pending);
        l.set(Leave::CLOSE);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        l.set(Leave::CLOSE);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the same request wakes no one again"
        );
        assert_eq!(l.poll(&mut cx, Leave::STAY), Poll::Ready(Leave::CLOSE));
    }

    #[test]
    fn an_ignored_request_rearms_the_waker_for_the_next() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let l = Leave::default();
        assert_eq!(l.poll(&mut cx, Leave::MIGRATE), Poll::Pending);
        l.set(Leave::MIGRATE);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // A TLS client cannot migrate: it waits on, and must still hear CLOSE.
        assert_eq!(l.poll(&mut cx, Leave::MIGRATE), Poll::Pending);
        l.set(Leave::CLOSE);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(l.poll(&mut cx, Leave::MIGRATE), Poll::Ready(Leave::CLOSE));
    }
}

#[cfg(test)]
mod reg_tests {
    use super::*;

    #[test]
    fn a_handed_over_registration_leaks_nothing() {
        let c = crate::config::Config::from_yaml(
            "pools:\n  db:\n    users:\n      - {username: u, password: md5bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut settings = crate::pool::settings::Derived::default()
            .resolve(&c)
            .unwrap_or_else(|e| panic!("{e}"))
            .pools;
        let pool = Pool::new(settings.remove(0));
        let list = ClientList::default();
        let peer = crate::net::Peer::Tcp(([127, 0, 0, 1], 1).into());
        let (info, reg) = list.register(None, |id, secret| {
            ClientInfo::new(
                (id, secret),
                pool.clone(),
                peer,
                false,
                ParamSet::default(),
                ParamSet::default(),
            )
        });
        reg.hand_over();
        assert_eq!(pool.stats.clients.load(Ordering::Relaxed), 1);
        list.unregister(&info);
        assert_eq!(pool.stats.clients.load(Ordering::Relaxed), 0);
        // Only the caller's reference is left: dropping it frees the client and its pool share.
        assert_eq!(Arc::strong_count(&info), 1);
        drop(info);
        assert_eq!(Arc::strong_count(&pool), 1);
    }
}
