//! The pool coordinator (`max_db_connections` > 0): one cap on backend connections across the
//! user pools of one database. When it is reached a new connection takes, in order: a reserve
//! permit (`reserve_pool_size`); the idle connection of the peer user pool with the largest
//! surplus above its `min_guaranteed_pool_size` (only connections older than
//! `min_connection_lifetime`); any permit returned within `reserve_pool_timeout`; the reserve
//! once more; else the client gets an error. Idle reuse never touches the coordinator: only
//! connects do (COMPAT.md §5 "Pool Coordinator").

use super::Pool;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use crate::server::Permit;

/// Settings of one database's coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    /// `max_db_connections`.
    pub max: usize,
    /// `reserve_pool_size`.
    pub reserve: usize,
    /// `reserve_pool_timeout`.
    pub reserve_timeout: Duration,
    /// `min_connection_lifetime`: younger connections are not evicted.
    pub min_lifetime: Duration,
}

/// One database's coordinator.
#[derive(Debug)]
pub struct Coordinator {
    /// Its settings.
    pub settings: CoordinatorSettings,
    /// Database name (SHOW POOL_COORDINATOR).
    pub database: String,
    used: Mutex<(usize, usize)>,
    returned: tokio::sync::Notify,
    members: Mutex<Vec<Weak<Pool>>>,
    /// Idle connections closed to make room for another user pool.
    pub evictions: AtomicU64,
    /// Reserve permits handed out.
    pub reserve_acquisitions: AtomicU64,
    /// Connects refused because nothing could be had.
    pub exhaustions: AtomicU64,
}

impl Coordinator {
    /// A coordinator for `database`.
    pub fn new(database: &str, settings: CoordinatorSettings) -> Self {
        Coordinator {
            settings,
            database: database.to_string(),
            used: Mutex::new((0, 0)),
            returned: tokio::sync::Notify::new(),
            members: Mutex::new(Vec::new()),
            evictions: AtomicU64::new(0),
            reserve_acquisitions: AtomicU64::new(0),
            exhaustions: AtomicU64::new(0),
        }
    }

    /// Adds a user pool of this database.
    pub fn join(&self, pool: &Arc<Pool>) {
        self.members.lock().push(Arc::downgrade(pool));
    }

    /// (connections under the cap, reserve permits in use).
    pub fn used(&self) -> (usize, usize) {
        *self.used.lock()
    }

    fn take_main(&self) -> bool {
        let mut u = self.used.lock();
        if u.0 < self.settings.max {
            u.0 += 1;
            return true;
        }
        false
    }

    fn take_reserve(&self) -> bool {
        let mut u = self.used.lock();
        if u.1 < self.settings.reserve {
            u.1 += 1;
            self.reserve_acquisitions.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Closes one idle connection of the peer pool with the largest surplus above its
    /// guaranteed size; its place goes to the caller. False when no peer can give one.
    fn evict_for(&self, requester: &Pool) -> Option<Permit> {
        let members: Vec<Arc<Pool>> = self
            .members
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        // Largest surplus first; between equal surpluses the slower pool (higher p95
        // transaction time) gives up a connection, as its clients lose least by waiting.
        let mut best: Option<((usize, u64), &Arc<Pool>)> = None;
        for p in &members {
            if std::ptr::eq(&**p, requester) {
                continue;
            }
            let total = p.counts().sv_total;
            let surplus = total.saturating_sub(p.settings.min_guaranteed_pool_size);
            if surplus == 0 {
                continue;
            }
            let rank = (surplus, p.stats.xact_hist.quantile_us(0.95));
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, p));
            }
        }
        let (_, victim) = best?;
        let permit = victim.evict_idle(self.settings.min_lifetime)?;
        self.evictions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            "coordinator {}: closed an idle connection of {} for {}",
            self.database,
            victim.name(),
            requester.name()
        );
        Some(permit)
    }

    /// A place for a new connection of `requester`; None when none could be had within
    /// reserve_pool_timeout.
    pub async fn acquire(&self, requester: &Pool) -> Option<Permit> {
        if self.take_main() {
            return Some(Permit::Main);
        }
        if self.take_reserve() {
            return Some(Permit::Reserve);
        }
        if let Some(p) = self.evict_for(requester) {
            return Some(p);
        }
        let wait = self.returned.notified();
        let _ = tokio::time::timeout(self.settings.reserve_timeout, wait).await;
        if self.take_main() {
            return Some(Permit::Main);
        }
        if self.take_reserve() {
            return Some(Permit::Reserve);
        }
        if let Some(p) = self.evict_for(requester) {
            return Some(p);
        }
        self.exhaustions.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Moves a reserve connection under the cap if there is room there now (retain cycle).
    pub fn upgrade(&self) -> bool {
        let mut u = self.used.lock();
        if u.0 < self.settings.max && u.1 > 0 {
            u.0 += 1;
            u.1 -= 1;
            return true;
        }
        false
    }

    /// A connection holding `permit` closed (or its connect failed).
    pub fn release(&self, permit: Permit) {
        {
            let mut u = self.used.lock();
            match permit {
                Permit::Main => u.0 = u.0.saturating_sub(1),
                Permit::Reserve => u.1 = u.1.saturating_sub(1),
            }
        }
        self.returned.notify_one();
    }
}
