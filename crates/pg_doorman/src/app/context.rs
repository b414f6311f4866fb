//! AppContext: the handles every task needs (config snapshot, pools, cancel registry, client
//! count, shutdown token). No globals: tasks get an `Arc<AppContext>`.

use crate::config::Config;
use crate::pool::registry::Pools;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio_util::sync::CancellationToken;

/// Shared state of a running pg_doorman.
pub struct AppContext {
    /// The config this process runs with.
    pub config: Arc<Config>,
    /// Pools by (database, user).
    pub pools: Pools,
    /// Connected clients (counted against max_connections).
    pub clients: AtomicUsize,
    /// Cancelled when the process stops.
    pub shutdown: CancellationToken,
    /// Client-facing TLS.
    pub tls: crate::tls::ClientTls,
    /// Logged-in clients (SHOW CLIENTS, cancel keys).
    pub client_list: super::clients::ClientList,
    /// Connection counters since start (SHOW CONNECTIONS, /metrics).
    pub conns: ConnCounters,
    /// `admin_username` and the secret of `admin_password` (admin console); swapped by a
    /// reload.
    pub admin: arc_swap::ArcSwap<(String, crate::pool::settings::ClientSecret)>,
    /// SCRAM verifiers of the plaintext passwords in force, reused by reloads.
    pub derived: crate::pool::settings::Derived,
    /// Notified for a TLS reload (SIGHUP, admin RELOAD).
    pub hup: Arc<tokio::sync::Notify>,
    /// Process start.
    pub started: std::time::Instant,
    /// The config last read by a reload (SHOW CONFIG); None until one succeeded.
    pub reloaded: arc_swap::ArcSwapOption<Config>,
    /// Client access rules (pg_hba / hba); None lets every client try to log in. Swapped on
    /// SIGHUP.
    pub hba: arc_swap::ArcSwapOption<crate::hba::Hba>,
    /// Drain and upgrade state.
    pub lifecycle: super::lifecycle::Lifecycle,
    /// Talos logins (the `talos` section's keys); None when not configured. Swapped on
    /// SIGHUP.
    pub talos: arc_swap::ArcSwapOption<crate::talos::Talos>,
}

/// Accepted connections by outcome (PgDoorman SHOW CONNECTIONS).
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Every accepted connection.
    pub total: AtomicU64,
    /// Refused or failed before login completed.
    pub errors: AtomicU64,
    /// Logged in over TLS.
    pub tls: AtomicU64,
    /// Logged in over plain TCP or unix socket.
    pub plain: AtomicU64,
    /// Cancel requests.
    pub cancel: AtomicU64,
    /// Refusals by [`REJECTIONS`] reason (pg_doorman_listener_rejections_total).
    pub rejections: [AtomicU64; 6],
}

/// Why a connection was refused before login (COMPAT.md §3 reasons this version has).
pub const REJECTIONS: [&str; 6] = [
    "tls_required",
    "tls_handshake_fail",
    "invalid_startup",
    "too_many_clients",
    "login_failed",
    "hba",
];

impl ConnCounters {
    /// Counts a refusal (also in `errors`).
    pub fn reject(&self, reason: usize) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.rejections[reason].fetch_add(1, Ordering::Relaxed);
    }
}

/// Holds one unit of `clients` until dropped.
pub struct ClientSlot<'a>(&'a AtomicUsize);

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ClientSlot<'_> {
    /// Keeps the unit taken; whoever calls this gives it back with [`AppContext::release_client_slot`]
    /// (a logged-in client's task holds one guard for everything, to stay small).
    pub fn hand_over(self) {
        std::mem::forget(self);
    }
}

impl AppContext {
    /// A context for `config` with the pools and admin secret `resolved` by `derived`
    /// ([`crate::pool::settings::Derived::resolve`]), which reloads then reuse.
    pub fn new(
        config: Arc<Config>,
        resolved: crate::pool::settings::Resolved,
        derived: crate::pool::settings::Derived,
        shutdown: CancellationToken,
        tls: crate::tls::ClientTls,
        hup: Arc<tokio::sync::Notify>,
        lifecycle: super::lifecycle::Lifecycle,
    ) -> Self {
        let admin = arc_swap::ArcSwap::from_pointee((
            config.general.admin_username.clone(),
            resolved.admin,
        ));
        AppContext {
            config,
            pools: Pools::new(resolved.pools, resolved.auth_queries),
            clients: AtomicUsize::new(0),
            shutdown,
            tls,
            client_list: Default::default(),
            conns: Default::default(),
            admin,
            derived,
            hup,
            started: std::time::Instant::now(),
            hba: Default::default(),
            reloaded: Default::default(),
            lifecycle,
            talos: arc_swap::ArcSwapOption::new(resolved.talos),
        }
    }

    /// Gives back a unit of `clients` kept by [`ClientSlot::hand_over`].
    pub fn release_client_slot(&self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }

    /// Takes a client slot even past max_connections (a client migrated from an upgraded
    /// process was admitted there); given back with [`AppContext::release_client_slot`].
    pub fn force_client_slot(&self) {
        self.clients.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a client slot, or None when max_connections are connected.
    pub fn try_client_slot(&self) -> Option<ClientSlot<'_>> {
        let max = self.config.general.max_connections;
        let prev = self.clients.fetch_add(1, Ordering::Relaxed);
        let slot = ClientSlot(&self.clients);
        (prev < max).then_some(slot)
    }
}
