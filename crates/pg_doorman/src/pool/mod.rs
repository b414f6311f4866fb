//! A pool of backend connections for one (database, user): idle reuse (LIFO, or rotation with
//! `server_round_robin`), creation up to `pool_size`, and a FIFO of waiters that receive a
//! returning connection directly (never through the idle list). One short pool-local lock per
//! checkout/checkin; no global state.

mod cancels;
pub mod connect;
pub mod coordinator;
pub mod fallback;
pub mod histogram;
mod maintenance;
pub mod registry;
pub mod settings;
pub mod shard;
pub mod stats;
mod sweeper;

use crate::clock::Micros;
use crate::error::PoolError;
use crate::params::ParamSet;
use crate::prepared::PoolCache;
use crate::server::Server;
use parking_lot::{Mutex, RwLock};
use settings::{PoolSettings, ServerSecret};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::sync::oneshot;

/// What a waiter receives.
#[derive(Debug)]
pub(crate) enum Handoff {
    /// A connection returned by another client.
    Server(Box<Server>),
    /// Permission to open a new connection (the slot is already counted).
    Permit,
}

#[derive(Debug, Default)]
struct Inner {
    /// Boxed once at connect, so checkout, checkin and hand-off move a pointer, and the
    /// futures that hold a connection across an await stay small.
    idle: VecDeque<Box<Server>>,
    /// Connections that exist or are being created (idle + in use + connecting).
    total: usize,
    /// Waiting clients, oldest first (SHOW POOLS maxwait).
    waiters: VecDeque<Waiter>,
    /// When the deadline task looks next.
    sweep: sweeper::SweepState,
}

/// A client waiting in the FIFO.
#[derive(Debug)]
struct Waiter {
    /// When it started waiting.
    since: Micros,
    tx: oneshot::Sender<Handoff>,
    /// False for a client queued at the create gate: it holds a slot already, so it takes
    /// returned connections only, never a freed slot (two such clients would pass a slot
    /// back and forth).
    takes_slots: bool,
}

impl Inner {
    /// Queues a waiter of `pool` at the back of the FIFO; see [`Waiter::takes_slots`].
    /// `since`: when the client began waiting.
    fn enqueue<'a>(&mut self, pool: &'a Pool, takes_slots: bool, since: Micros) -> WaiterGuard<'a> {
        let (tx, rx) = oneshot::channel();
        self.waiters.push_back(Waiter {
            since,
            tx,
            takes_slots,
        });
        WaiterGuard { pool, rx }
    }

    /// Gives `h` to the oldest live waiter that can use it; returns it if nobody took it.
    fn hand_off(&mut self, mut h: Handoff) -> Option<Handoff> {
        loop {
            let next = match h {
                Handoff::Server(_) => self.waiters.pop_front(),
                Handoff::Permit => self
                    .waiters
                    .iter()
                    .position(|w| w.takes_slots)
                    .and_then(|i| self.waiters.remove(i)),
            };
            let Some(w) = next else {
                return Some(h);
            };
            match w.tx.send(h) {
                Ok(()) => return None,
                Err(back) => h = back,
            }
        }
    }
}

/// Snapshot of pool occupancy (PgBouncer SHOW POOLS names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCounts {
    /// Idle backend connections.
    pub sv_idle: usize,
    /// All backend connections (including connecting ones).
    pub sv_total: usize,
    /// Clients waiting for a connection.
    pub cl_waiting: usize,
}

/// One (database, user) pool.
#[derive(Debug)]
pub struct Pool {
    /// Resolved settings.
    pub settings: PoolSettings,
    inner: Mutex<Inner>,
    default_params: RwLock<Option<Arc<ParamSet>>>,
    /// Distinct client parameter sets, shared by the clients that have them.
    interned: Mutex<Vec<ParamSet>>,
    /// ClientKey recovered from this user's last SCRAM login (SCRAM passthrough to the backend).
    client_key: RwLock<Option<[u8; 32]>>,
    next_id: AtomicU64,
    /// Statement cache when transparent prepared statements are on (transaction mode).
    pub statements: Option<PoolCache>,
    /// Totals and state for SHOW and /metrics.
    pub stats: stats::PoolStats,
    /// Live backend connections (SHOW SERVERS).
    pub servers: Arc<stats::ServerList>,
    /// Woken by RESUME.
    resumed: tokio::sync::Notify,
    /// Backends with a CancelRequest in flight ([`cancels`]).
    cancels: cancels::Cancels,
    /// When a failed connect was last logged, and how many were not logged since.
    fail_log: Mutex<(Option<Instant>, u64)>,
    /// When a failed replenish (min_pool_size) was last logged.
    replenish_log: Mutex<Option<Instant>>,
    /// `scaling_max_parallel_creates` permits of this pool.
    creates: tokio::sync::Semaphore,
    /// The base anticipation wait (µs) the deadline task last derived from the transaction
    /// p99; 0 before its first look.
    anticipation_base_us: AtomicU64,
    /// This pool, for starting its deadline task.
    me: Weak<Pool>,
    /// Wakes the deadline task (an enqueue it would look too late for; the pool's drop).
    sweep_wake: Arc<tokio::sync::Notify>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The deadline task ends when it finds the pool gone.
        self.sweep_wake.notify_one();
    }
}

/// `d` ± 20 % (PgDoorman's lifetime jitter). A per-thread SmallRng: jitter needs spread, not
/// secrecy, and the thread RNG's reseeding generator costs more.
fn jitter(d: std::time::Duration) -> std::time::Duration {
    use rand::{RngExt, SeedableRng, rngs::SmallRng};
    use std::cell::RefCell;
    thread_local! {
        static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
    }
    let permille: u32 = RNG.with(|r| r.borrow_mut().random_range(800..=1200));
    d * permille / 1000
}

/// Repeated connect failures of a pool are logged at most this often.
const FAIL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Most distinct parameter sets a pool shares among clients (more are kept per client).
const MAX_INTERNED: usize = 64;

/// Returns the slot of a connection that is being created if the creating future is dropped.
struct SlotGuard<'a>(Option<&'a Pool>);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.release_slot();
        }
    }
}

/// Counts a connect in flight (SHOW POOL_SCALING inflight) for as long as it lives.
struct Inflight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Inflight<'a> {
    fn new(n: &'a std::sync::atomic::AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Inflight(n)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps a waiter's receiver; if the waiting future is dropped, whatever was handed to it goes
/// back to the pool so no connection or slot is lost.
struct WaiterGuard<'a> {
    pool: &'a Pool,
    rx: oneshot::Receiver<Handoff>,
}

impl WaiterGuard<'_> {
    fn take_pending(&mut self) -> Option<Handoff> {
        self.rx.close();
        self.rx.try_recv().ok()
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        match self.take_pending() {
            Some(Handoff::Server(s)) => self.pool.checkin(s),
            Some(Handoff::Permit) => self.pool.release_slot(),
            None => {}
        }
    }
}

/// What the create gate gave.
enum Gate<'a> {
    /// Connect now (the permit is held while connecting).
    Open(Option<tokio::sync::SemaphorePermit<'a>>),
    /// A connection another client returned.
    Returned(Box<Server>),
}

enum Step<'a> {
    Reuse(Box<Server>),
    Create(SlotGuard<'a>),
    /// Queue for a returned connection; `true` while the pool is below pool_size (anticipation:
    /// the wait is short and ends in a create).
    Wait(WaiterGuard<'a>, bool),
    /// Above the warm ratio: yield and look again before creating (a connection may return).
    Spin,
}

/// SQLSTATEs PostgreSQL refuses a StartupMessage setting with (invalid value, unknown or
/// unsettable parameter, permission): counted per pool as
/// `pg_doorman_backend_startup_parameter_errors_total` when the pool sends startup_parameters.
const STARTUP_PARAMETER_ERRORS: [&str; 5] = ["22023", "42704", "55P02", "42501", "22P02"];

impl Pool {
    /// A new, empty pool.
    pub fn new(settings: PoolSettings) -> Arc<Pool> {
        let pool = Arc::new_cyclic(|me| Pool {
            inner: Mutex::new(Inner::default()),
            default_params: RwLock::new(None),
            interned: Mutex::new(Vec::new()),
            client_key: RwLock::new(None),
            next_id: AtomicU64::new(1),
            statements: std::num::NonZeroUsize::new(settings.pool_prepared_cache)
                .filter(|_| settings.prepared)
                .map(PoolCache::new),
            stats: Default::default(),
            servers: Default::default(),
            resumed: tokio::sync::Notify::new(),
            cancels: Default::default(),
            fail_log: Mutex::new((None, 0)),
            replenish_log: Mutex::new(None),
            creates: tokio::sync::Semaphore::new(settings.parallel_creates.max(1)),
            anticipation_base_us: AtomicU64::new(0),
            me: me.clone(),
            sweep_wake: Arc::new(tokio::sync::Notify::new()),
            settings,
        });
        if let Some(c) = &pool.settings.coordinator {
            c.join(&pool);
        }
        pool
    }

    /// Closes one idle connection older than `min_age` for another user pool of the database
    /// (coordinator eviction); returns its place under the cap.
    pub fn evict_idle(&self, min_age: std::time::Duration) -> Option<coordinator::Permit> {
        let mut s = {
            let mut g = self.inner.lock();
            let i = g
                .idle
                .iter()
                .position(|s| s.created.elapsed() >= min_age && s.permit.is_some())?;
            g.idle.remove(i)?
        };
        let permit = s.permit.take();
        s.close();
        self.release_slot();
        permit
    }

    /// Parameters a fresh backend reports (server_version, TimeZone, ...), learnt from the first
    /// connection; None until one was made.
    pub fn default_params(&self) -> Option<Arc<ParamSet>> {
        self.default_params.read().clone()
    }

    /// Returns a shared copy equal to `p`, so thousands of clients with the same session
    /// parameters hold one set between them (login path only).
    pub fn intern_params(&self, p: ParamSet) -> ParamSet {
        self.intern_with(|s| *s == p, || p.clone())
    }

    /// The shared set for which `matches` holds, or the one `build` makes (kept for the next
    /// logins while fewer than MAX_INTERNED are kept); login path only.
    pub fn intern_with(
        &self,
        matches: impl Fn(&ParamSet) -> bool,
        build: impl FnOnce() -> ParamSet,
    ) -> ParamSet {
        let mut g = self.interned.lock();
        if let Some(shared) = g.iter().find(|s| matches(s)) {
            return shared.clone();
        }
        let p = build();
        if g.len() < MAX_INTERNED {
            g.push(p.clone());
        }
        p
    }

    /// Keeps the ClientKey of a successful SCRAM login for backend logins (login path only).
    pub fn remember_client_key(&self, key: [u8; 32]) {
        if let ServerSecret::ScramPassthrough(_) = self.settings.server_secret {
            *self.client_key.write() = Some(key);
        }
    }

    /// Current occupancy.
    pub fn counts(&self) -> PoolCounts {
        let g = self.inner.lock();
        PoolCounts {
            sv_idle: g.idle.len(),
            sv_total: g.total,
            cl_waiting: g.waiters.iter().filter(|w| !w.tx.is_closed()).count(),
        }
    }

    /// How long the oldest waiting client has waited.
    pub fn max_wait(&self) -> std::time::Duration {
        let g = self.inner.lock();
        g.waiters
            .iter()
            .find(|w| !w.tx.is_closed())
            .map(|w| w.since.elapsed())
            .unwrap_or_default()
    }

    /// PAUSE: new requests wait until RESUME; running ones finish.
    pub fn pause(&self) {
        self.stats.paused.store(true, Ordering::Release);
    }

    /// RESUME after PAUSE.
    pub fn resume(&self) {
        self.stats.paused.store(false, Ordering::Release);
        self.resumed.notify_waiters();
    }

    /// Waits while the pool is paused.
    pub async fn wait_resumed(&self) {
        loop {
            let notified = self.resumed.notified();
            if !self.stats.paused.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// A reload replaced or removed this pool: no new logins reach it; idle connections close
    /// now, connections in use when returned, waiting clients are served by connects.
    pub fn retire(&self) {
        self.stats.retired.store(true, Ordering::Release);
        self.close_idle();
    }

    /// RECONNECT: idle connections close now, connections in use close when returned.
    pub fn reconnect(&self) {
        self.stats.epoch.fetch_add(1, Ordering::AcqRel);
        self.close_idle();
    }

    /// Gets a backend connection: an idle one, a new one while under `pool_size`, or the next
    /// one returned, waiting at most `query_wait_timeout`.
    ///
    /// Errors: [`PoolError::WaitTimeout`], or [`PoolError::Server`] when a new connection fails.
    pub async fn checkout(&self) -> Result<Box<Server>, PoolError> {
        self.checkout_since(Micros::now()).await
    }

    /// [`Self::checkout`] for a request that arrived at `started` (the query_wait_timeout
    /// budget runs from there), so the caller's clock reading serves both.
    ///
    /// Rare, large steps (connect, idle probe) are boxed: this future is part of every
    /// request's state and stays small enough for the allocator's thread cache.
    pub async fn checkout_since(&self, started: Micros) -> Result<Box<Server>, PoolError> {
        let mut spins = 0;
        loop {
            let handoff = match self.next_step(spins, started) {
                Step::Spin => {
                    spins += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                Step::Reuse(s) => {
                    let Some(s) = self.usable(s) else { continue };
                    if !self.needs_probe(&s, started) {
                        return Ok(s);
                    }
                    if let Some(s) = Box::pin(self.probe(s)).await {
                        return Ok(s);
                    }
                    continue;
                }
                Step::Create(guard) => {
                    let deadline = self.deadline(started);
                    return Box::pin(self.create(guard, deadline, true)).await;
                }
                Step::Wait(guard, anticipating) => self.wait(guard, anticipating).await?,
            };
            match handoff {
                Handoff::Server(s) => {
                    if let Some(s) = self.usable(s) {
                        return Ok(s);
                    }
                }
                Handoff::Permit => {
                    let deadline = self.deadline(started);
                    return Box::pin(self.create(SlotGuard(Some(self)), deadline, true)).await;
                }
            }
        }
    }

    /// The end of a request's query_wait_timeout budget that began at `started` (computed only
    /// when the request has to wait or connect).
    fn deadline(&self, started: Micros) -> Option<tokio::time::Instant> {
        self.settings.query_wait_timeout.map(|t| {
            let waited = Micros::now().since(started);
            tokio::time::Instant::now() + t.saturating_sub(waited)
        })
    }

    /// Waits in the FIFO for a returned connection or a free slot. The pool's deadline task
    /// ([`sweeper`]) sends an anticipating waiter a [`Handoff::Permit`] when its anticipation
    /// wait runs out, and drops the sender past query_wait_timeout.
    async fn wait(
        &self,
        mut guard: WaiterGuard<'_>,
        anticipating: bool,
    ) -> Result<Handoff, PoolError> {
        match (&mut guard.rx).await {
            Ok(h) => {
                if anticipating && matches!(h, Handoff::Server(_)) {
                    let sc = &self.stats.scaling;
                    sc.anticipation_notify.fetch_add(1, Ordering::Relaxed);
                }
                Ok(h)
            }
            // Timed out (or the pool went away): use anything handed over meanwhile.
            Err(_) => guard.take_pending().ok_or(PoolError::WaitTimeout),
        }
    }

    /// The `scaling_max_parallel_creates` gate: a permit to connect now, or (for a client) a
    /// connection returned while it waited there, as the oldest waiter of the FIFO.
    async fn pass_gate(
        &self,
        deadline: Option<tokio::time::Instant>,
        client: bool,
    ) -> Result<Gate<'_>, PoolError> {
        if let Ok(p) = self.creates.try_acquire() {
            return Ok(Gate::Open(Some(p)));
        }
        let sc = &self.stats.scaling;
        sc.gate_waits.fetch_add(1, Ordering::Relaxed);
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        let mut waiter = client.then(|| self.enqueue_at_gate());
        loop {
            let returned = async {
                match waiter.as_mut() {
                    Some(w) => (&mut w.rx).await.ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                h = returned => {
                    match h {
                        Some(Handoff::Server(s)) => {
                            if let Some(s) = self.usable(s) {
                                return Ok(Gate::Returned(s));
                            }
                        }
                        // Not sent to gate waiters; should one come, the slot goes back.
                        Some(Handoff::Permit) => self.release_slot(),
                        None => {}
                    }
                    waiter = Some(self.enqueue_at_gate());
                }
                // The semaphore is never closed, so acquiring cannot fail.
                p = self.creates.acquire() => return Ok(Gate::Open(p.ok())),
                _ = &mut expired => {
                    sc.gate_budget_exhausted.fetch_add(1, Ordering::Relaxed);
                    return Err(PoolError::WaitTimeout);
                }
            }
        }
    }

    /// Queues a client waiting at the create gate at the back of the FIFO (for returned
    /// connections only).
    fn enqueue_at_gate(&self) -> WaiterGuard<'_> {
        self.inner.lock().enqueue(self, false, Micros::now())
    }

    fn next_step(&self, spins: u32, started: Micros) -> Step<'_> {
        let mut g = self.inner.lock();
        let popped = if self.settings.round_robin {
            g.idle.pop_front()
        } else {
            g.idle.pop_back()
        };
        if let Some(s) = popped {
            return Step::Reuse(s);
        }
        // Waiters that timed out leave closed senders behind; drop those at the front so a long
        // outage cannot grow the queue without bound.
        while g.waiters.front().is_some_and(|w| w.tx.is_closed()) {
            g.waiters.pop_front();
        }
        if g.total < self.settings.pool_size {
            // Below scaling_warm_pool_ratio % of pool_size connections are made at once; above
            // it a burst first gives returning connections scaling_fast_retries chances.
            // Session mode: a client keeps its backend for its whole life, so waiting for a
            // return only delays its login.
            let warm = if self.settings.mode == crate::config::PoolMode::Session {
                self.settings.pool_size
            } else {
                self.settings.pool_size * self.settings.warm_ratio / 100
            };
            if g.total < warm {
                g.total += 1;
                return Step::Create(SlotGuard(Some(self)));
            }
            // Returns go to queued waiters first (strict FIFO), so spinning behind a queue
            // cannot win a connection: it only costs a reschedule per retry.
            if spins < self.settings.fast_retries && g.waiters.is_empty() {
                return Step::Spin;
            }
        }
        let anticipating = g.total < self.settings.pool_size;
        let wake = match self.first_due(started, anticipating) {
            Some(due) => g.sweep.due(due),
            None => sweeper::Wake::No,
        };
        let guard = g.enqueue(self, true, started);
        drop(g);
        self.wake_sweeper(wake);
        Step::Wait(guard, anticipating)
    }

    /// Checks an idle connection before handing it out; closes it (freeing its slot) if the
    /// peer has closed or spoken. Lifetimes are enforced at checkin and by the retain cycle, so
    /// the checkout path reads no clock.
    fn usable(&self, mut s: Box<Server>) -> Option<Box<Server>> {
        if s.is_alive() {
            Some(s)
        } else {
            tracing::debug!(pool = %self.name(), server = s.id, "closing stale idle server connection");
            s.bad = true;
            self.discard(s);
            None
        }
    }

    /// server_idle_check_timeout: true when `s` has been idle longer than that and must answer
    /// pooler_check_query before a client gets it (catches a PostgreSQL restart or a firewall
    /// that dropped it).
    fn needs_probe(&self, s: &Server, now: Micros) -> bool {
        self.settings
            .idle_check
            .is_some_and(|limit| now.since(s.last_used) >= limit)
    }

    /// Runs pooler_check_query on a long-idle connection; None when it failed (it is closed).
    async fn probe(&self, mut s: Box<Server>) -> Option<Box<Server>> {
        let probe = s.simple_query(&self.settings.check_query, |_, _| {});
        match tokio::time::timeout(self.settings.connect_timeout, probe).await {
            Ok(Ok(None)) if s.is_reusable() => {
                s.last_used = Micros::now();
                Some(s)
            }
            _ => {
                tracing::info!(pool = %self.name(), server = s.id, "idle server connection failed its check query; replaced");
                s.bad = true;
                self.discard(s);
                None
            }
        }
    }

    /// Connects to the configured backend or, while it is down and `patroni_api_urls` is set,
    /// to a Patroni member (with the lifetime fallback connections get). Bounded by
    /// query_wait_timeout when the fallback path runs.
    async fn connect_backend(
        &self,
        id: u64,
        client_key: Option<[u8; 32]>,
    ) -> Result<(Server, Option<std::time::Duration>), crate::error::ServerError> {
        let Some(fb) = &self.settings.fallback else {
            return connect::connect(&self.settings, id, client_key)
                .await
                .map(|s| (s, None));
        };
        if !fb.active() {
            match connect::connect(&self.settings, id, client_key).await {
                Ok(s) => {
                    fb.local_up();
                    return Ok((s, None));
                }
                Err(e) if fallback::backend_is_down(&e) => fb.local_down(&e),
                Err(e) => return Err(e),
            }
        }
        let via = fb.connect(&self.settings, id, client_key);
        let s = match self.settings.query_wait_timeout {
            Some(limit) => match tokio::time::timeout(limit, via).await {
                Ok(r) => r?,
                Err(_) => {
                    tracing::warn!(pool = %self.name(), "fallback: outer deadline {}ms exceeded", limit.as_millis());
                    return Err(crate::error::ServerError::Timeout);
                }
            },
            None => via.await?,
        };
        Ok((s, Some(fb.settings.lifetime)))
    }

    /// Opens a connection in the slot `guard` holds. A client (`client`: not the background
    /// replenish) queued at the create gate takes a returned connection if one comes first, and
    /// past `deadline` gets [`PoolError::WaitTimeout`].
    async fn create(
        &self,
        mut guard: SlotGuard<'_>,
        deadline: Option<tokio::time::Instant>,
        client: bool,
    ) -> Result<Box<Server>, PoolError> {
        let sc = &self.stats.scaling;
        // At most scaling_max_parallel_creates connects per pool and max_concurrent_creates in
        // all, so a burst does not hit PostgreSQL with a storm of logins.
        let _pool_permit = match self.pass_gate(deadline, client).await? {
            Gate::Open(p) => p,
            Gate::Returned(s) => {
                // Served by a returned connection instead: the slot held for a new one goes
                // back (to the next waiter).
                drop(guard);
                return Ok(s);
            }
        };
        let _global_permit = self.settings.global_creates.acquire().await.ok();
        let coordinated = match &self.settings.coordinator {
            Some(c) => match c.acquire(self).await {
                Some(p) => Some((c, p)),
                None => {
                    drop(guard);
                    return Err(PoolError::DbLimit(self.settings.database.clone()));
                }
            },
            None => None,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let client_key = *self.client_key.read();
        sc.creates.fetch_add(1, Ordering::Relaxed);
        let _inflight = Inflight::new(&sc.inflight);
        match self.connect_backend(id, client_key).await {
            Ok((mut s, fallback)) => {
                guard.0 = None;
                s.permit = coordinated.map(|(_, p)| p);
                s.epoch = self.stats.epoch.load(Ordering::Acquire);
                // Each connection gets its own lifetimes, so connections opened together do not
                // all close together.
                s.lifetime = match fallback {
                    // Short-lived, so the pool returns to its backend soon after it is back.
                    Some(l) => Some(jitter(l)),
                    None => self.settings.server_lifetime.map(jitter),
                };
                s.idle_limit = self.settings.idle_timeout.map(jitter);
                s.reg = Some(stats::Registration::new(
                    &self.servers,
                    stats::ServerInfo {
                        id,
                        pid: s.backend_pid,
                        created: s.created,
                        tls: s.stream.is_tls(),
                        active: Default::default(),
                        xacts: Default::default(),
                        queries: Default::default(),
                        sent: Default::default(),
                        received: Default::default(),
                        client: Default::default(),
                        prepared_hits: Default::default(),
                        prepared_misses: Default::default(),
                        prepared_size: Default::default(),
                    },
                ));
                if self.default_params.read().is_none() {
                    *self.default_params.write() = Some(Arc::new(s.params.clone()));
                }
                tracing::debug!(pool = %self.name(), server = id, pid = s.backend_pid, "new server connection");
                Ok(Box::new(s))
            }
            Err(e) => {
                if let Some((c, p)) = coordinated {
                    c.release(p);
                }
                self.stats
                    .connect_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let crate::error::ServerError::Refused(f) = &e
                    && !self.settings.startup_parameters.is_empty()
                    && STARTUP_PARAMETER_ERRORS.contains(&f.code.as_str())
                {
                    self.stats.startup_parameter_error(&f.code);
                }
                // During an outage every client's request fails the same way: log it once per
                // FAIL_LOG_EVERY with the count of the ones not logged.
                let mut f = self.fail_log.lock();
                if f.0.is_none_or(|at| at.elapsed() >= FAIL_LOG_EVERY) {
                    let suppressed = std::mem::take(&mut f.1);
                    f.0 = Some(Instant::now());
                    drop(f);
                    if suppressed > 0 {
                        tracing::warn!(pool = %self.name(), "server connection failed: {e} ({suppressed} similar failures not logged)");
                    } else {
                        tracing::warn!(pool = %self.name(), "server connection failed: {e}");
                    }
                } else {
                    f.1 += 1;
                }
                drop(guard);
                Err(PoolError::Server(e))
            }
        }
    }

    /// Returns a connection after use. Bad, mid-transaction or expired connections are closed;
    /// others go to the oldest waiter or to the idle list.
    pub fn checkin(&self, s: Box<Server>) {
        self.checkin_at(s, Micros::now());
    }

    /// [`Self::checkin`] with the caller's reading of the clock (the end of the client's
    /// transaction), which becomes the connection's last-used time.
    pub fn checkin_at(&self, mut s: Box<Server>, now: Micros) {
        if s.bad
            || !s.is_reusable()
            || s.epoch != self.stats.epoch.load(Ordering::Relaxed)
            || self.stats.retired.load(Ordering::Relaxed)
            || s.too_old(now)
        {
            self.discard(s);
            return;
        }
        s.last_used = now;
        s.served = true;
        let Some(s) = self.cancels.park(s) else {
            return;
        };
        let mut g = self.inner.lock();
        if let Some(Handoff::Server(s)) = g.hand_off(Handoff::Server(s)) {
            g.idle.push_back(s);
        }
    }

    /// A CancelRequest for backend `pid` is being forwarded; pair with [`Self::cancel_done`].
    pub fn cancel_started(&self, pid: i32) {
        self.cancels.start(pid);
    }

    /// The cancel for `pid` was delivered (or failed): a backend returned meanwhile goes back.
    pub fn cancel_done(&self, pid: i32) {
        if let Some(s) = self.cancels.done(pid) {
            self.checkin_at(s, Micros::now());
        }
    }

    /// Closes a connection and passes its slot to a waiter (who will create a new one).
    pub fn discard(&self, mut s: Box<Server>) {
        if let (Some(c), Some(p)) = (&self.settings.coordinator, s.permit.take()) {
            c.release(p);
        }
        s.close();
        self.release_slot();
    }

    fn release_slot(&self) {
        let mut g = self.inner.lock();
        if g.hand_off(Handoff::Permit).is_some() {
            g.total = g.total.saturating_sub(1);
        }
    }

    /// Closes every idle connection (shutdown, RECONNECT).
    pub fn close_idle(&self) {
        let idle: Vec<Box<Server>> = self.inner.lock().idle.drain(..).collect();
        for s in idle {
            self.discard(s);
        }
    }

    /// `database/user` for logs.
    pub fn name(&self) -> String {
        format!("{}@{}", self.settings.user, self.settings.database)
    }

    /// Ensures the pool's default parameters are known, connecting once if needed.
    pub async fn learn_default_params(&self) -> Result<Arc<ParamSet>, PoolError> {
        if let Some(p) = self.default_params() {
            return Ok(p);
        }
        let s = self.checkout().await?;
        let params = self
            .default_params()
            .unwrap_or_else(|| Arc::new(s.params.clone()));
        self.checkin(s);
        Ok(params)
    }
}
