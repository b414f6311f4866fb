//! What the retain cycle does to a pool between requests: close expired idle connections,
//! open successors for connections near the end of their lifetime, keep `min_pool_size`.

use super::{Handoff, Pool, SlotGuard, coordinator};
use crate::clock::Micros;
use crate::server::Server;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A failing replenish is logged once, then at most this often.
const REPLENISH_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

impl Pool {
    /// Closes idle connections past their (jittered) idle_timeout or server_lifetime, oldest
    /// first and at most `quota` (the retain cycle). Returns how many were closed.
    pub fn retain(&self, quota: usize) -> usize {
        let now = Micros::now();
        let stale: Vec<Box<Server>> = {
            let mut g = self.inner.lock();
            // Idle reserve connections of the coordinator move under the cap when there is
            // room; the others close (below) so the reserve is free for the next burst.
            let mut reserve_idle = Vec::new();
            if let Some(c) = &self.settings.coordinator {
                for s in g.idle.iter_mut() {
                    if s.permit == Some(coordinator::Permit::Reserve) {
                        if c.upgrade() {
                            s.permit = Some(coordinator::Permit::Main);
                        } else {
                            reserve_idle.push(s.id);
                        }
                    }
                }
            }
            // Oldest first, at most `quota` (retain_connections_max) per cycle.
            let mut expired: Vec<(Micros, u64)> = g
                .idle
                .iter()
                .filter(|s| s.expired(now))
                .map(|s| (s.created, s.id))
                .collect();
            expired.sort();
            expired.truncate(quota);
            expired.extend(reserve_idle.into_iter().map(|id| (now, id)));
            let mut stale = Vec::new();
            let mut keep = VecDeque::with_capacity(g.idle.len());
            for s in g.idle.drain(..) {
                if expired.iter().any(|(_, id)| *id == s.id) {
                    stale.push(s)
                } else {
                    keep.push_back(s)
                }
            }
            g.idle = keep;
            stale
        };
        let n = stale.len();
        for s in stale {
            self.discard(s);
        }
        n
    }

    /// Pre-replacement: an idle connection past 95 % of its lifetime gets a successor opened
    /// while there is room under pool_size, then is closed, so clients never wait for the
    /// connect its expiry would cost. Returns how many were replaced.
    pub async fn pre_replace(&self) -> usize {
        let now = Micros::now();
        let aging: Vec<u64> = {
            let g = self.inner.lock();
            g.idle
                .iter()
                .filter(|s| {
                    s.lifetime.is_some_and(|l| {
                        let age = now.since(s.created);
                        age >= l.mul_f64(0.95) && age < l
                    })
                })
                .map(|s| s.id)
                .collect()
        };
        let mut replaced = 0;
        for id in aging {
            let guard = {
                let mut g = self.inner.lock();
                if g.total >= self.settings.pool_size {
                    break;
                }
                g.total += 1;
                SlotGuard(Some(self))
            };
            let Ok(mut fresh) = self.create(guard, None, false).await else {
                break;
            };
            fresh.last_used = Micros::now();
            let old = {
                let mut g = self.inner.lock();
                let old = g
                    .idle
                    .iter()
                    .position(|s| s.id == id)
                    .and_then(|i| g.idle.remove(i));
                if let Some(Handoff::Server(s)) = g.hand_off(Handoff::Server(fresh)) {
                    g.idle.push_back(s);
                }
                old
            };
            if let Some(old) = old {
                self.discard(old);
                replaced += 1;
            }
        }
        replaced
    }

    /// Opens connections until `min_pool_size` exist, one at a time; stops at the first
    /// failure (logged once, then every 10 minutes). Returns how many were opened.
    pub async fn replenish(&self) -> usize {
        self.replenish_to(self.settings.min_pool_size).await
    }

    /// As [`Pool::replenish`] up to `target` connections (at most pool_size): what a binary
    /// upgrade's new process opens at once for the backends its predecessor was using, so the
    /// clients it takes over do not queue behind a cold pool.
    pub async fn replenish_to(&self, target: usize) -> usize {
        let mut opened = 0;
        loop {
            let guard = {
                let mut g = self.inner.lock();
                if g.total >= target || g.total >= self.settings.pool_size {
                    break;
                }
                // Clients creating connections come first; the next cycle tries again.
                if self.creates.available_permits() == 0 {
                    self.stats
                        .scaling
                        .replenish_deferred
                        .fetch_add(1, Ordering::Relaxed);
                    break;
                }
                g.total += 1;
                SlotGuard(Some(self))
            };
            match self.create(guard, None, false).await {
                Ok(mut s) => {
                    s.last_used = Micros::now();
                    let mut g = self.inner.lock();
                    if let Some(Handoff::Server(s)) = g.hand_off(Handoff::Server(s)) {
                        g.idle.push_back(s);
                    }
                    opened += 1;
                    *self.replenish_log.lock() = None;
                }
                Err(e) => {
                    let mut last = self.replenish_log.lock();
                    if last.is_none_or(|at| at.elapsed() >= REPLENISH_LOG_EVERY) {
                        *last = Some(Instant::now());
                        tracing::warn!(pool = %self.name(), "cannot open {target} server connections: {e}");
                    }
                    break;
                }
            }
        }
        opened
    }
}
