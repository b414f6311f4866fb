//! Deadlines of the waiting clients of one pool, kept by one task instead of a timer per waiter.
//!
//! A waiting client only awaits its oneshot. This task looks at the FIFO when its oldest
//! waiter's next deadline comes: past `query_wait_timeout` the waiter's sender is dropped (the
//! client gets 53300), past its anticipation wait it gets a [`Handoff::Permit`] to open a
//! connection while the pool is below `pool_size` (COMPAT.md §5, pool pressure: "if no
//! connection arrives, the caller proceeds to create"). Registering and removing a tokio timer
//! per waited checkout cost more than the wait's own bookkeeping, and tokio's timer wheel is
//! one lock shared by the workers.

use super::{Handoff, Inner, Pool};
use crate::clock::Micros;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// With no waiter for this long the task parks until an enqueue wakes it; before that it
/// looks every anticipation period, so a busy pool's enqueues never need to wake it.
const PARK_AFTER: Duration = Duration::from_secs(1);

/// Anticipation wait while the pool has no transaction times yet (COMPAT.md §5: "100 ms cold").
const COLD: Duration = Duration::from_millis(100);

/// What an enqueue must do for the task to look in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wake {
    /// It will look early enough.
    No,
    /// It sleeps past the new waiter's deadline, or is parked.
    Notify,
    /// It was never started.
    Spawn,
}

/// The task's side of the pool lock.
#[derive(Debug, Default)]
pub(super) struct SweepState {
    /// When the task looks next; None while parked (or not started).
    at: Option<Micros>,
    started: bool,
}

impl SweepState {
    /// Notes a waiter whose first deadline is `due`; says how to make the task look by then.
    pub(super) fn due(&mut self, due: Micros) -> Wake {
        if !self.started {
            self.started = true;
            self.at = Some(due);
            return Wake::Spawn;
        }
        match self.at {
            Some(at) if at <= due => Wake::No,
            _ => {
                self.at = Some(due);
                Wake::Notify
            }
        }
    }
}

/// ±20 % of `base_us` for the waiter that began at `since`: each waiter gets its own spread
/// (PgDoorman's jitter) from a multiplicative hash of its start, with no RNG on the way.
fn jittered(base_us: u64, since: Micros) -> u64 {
    let h = since.as_u64().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1024
    base_us * (800 + h % 401) / 1000
}

impl Pool {
    /// Base anticipation wait (µs) from the transaction p99: twice it, 5–500 ms, or 100 ms
    /// while the pool has no history (always in session mode); at most half of
    /// query_wait_timeout (or all but its last 500 ms, if more). Recomputed on each look of
    /// the task and cached for enqueues.
    fn refresh_anticipation(&self) -> u64 {
        let p99 = self.stats.xact_hist.quantile_us(0.99);
        let mut d = if p99 == 0 || self.settings.mode == crate::config::PoolMode::Session {
            COLD
        } else {
            Duration::from_micros(p99 * 2)
                .clamp(Duration::from_millis(5), Duration::from_millis(500))
        };
        if let Some(q) = self.settings.query_wait_timeout {
            d = d.min(q.saturating_sub(Duration::from_millis(500)).max(q / 2));
        }
        let us = d.as_micros() as u64;
        self.anticipation_base_us.store(us, Ordering::Relaxed);
        us
    }

    /// The first deadline of a waiter that began at `since` and waits for slots
    /// (`anticipating`: the pool is below pool_size); None when it has none.
    pub(super) fn first_due(&self, since: Micros, anticipating: bool) -> Option<Micros> {
        let base = match self.anticipation_base_us.load(Ordering::Relaxed) {
            0 => COLD.as_micros() as u64,
            us => us,
        };
        // The upper end of the jitter: the task may look up to then.
        self.due(since, anticipating.then_some(base * 6 / 5))
    }

    /// The earlier of a waiter's query_wait_timeout and, if it anticipates, its anticipation
    /// wait of `antic_us` µs, both from `since`; None when it has neither.
    fn due(&self, since: Micros, antic_us: Option<u64>) -> Option<Micros> {
        let qwt = self.settings.query_wait_timeout.map(|q| since.plus(q));
        let antic = antic_us.map(|us| since.plus(Duration::from_micros(us)));
        match (qwt, antic) {
            (Some(q), Some(a)) => Some(q.min(a)),
            (q, a) => q.or(a),
        }
    }

    /// Makes the task look as `w` says (after the pool lock is released).
    pub(super) fn wake_sweeper(&self, w: Wake) {
        match w {
            Wake::No => {}
            Wake::Notify => self.sweep_wake.notify_one(),
            Wake::Spawn => match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(run(self.me.clone(), self.sweep_wake.clone()));
                }
                Err(_) => {
                    tracing::error!(pool = %self.name(), "no runtime for the waiter deadline task")
                }
            },
        }
    }

    /// One look at the FIFO at `now`: times out waiters past query_wait_timeout, gives slots to
    /// the oldest waiters past their anticipation wait. Returns when to look next (None: park).
    /// `idle_since`: when the queue was first seen empty.
    fn sweep(&self, now: Micros, idle_since: &mut Option<Micros>) -> Option<Micros> {
        let base = self.refresh_anticipation();
        let qwt = self.settings.query_wait_timeout;
        let sc = &self.stats.scaling;
        let mut g = self.inner.lock();
        expire(&mut g, now, qwt);
        // Oldest first, while there is room under pool_size.
        while g.total < self.settings.pool_size {
            let Some(w) = front(&g) else { break };
            if now.us_since(w.since) < jittered(base, w.since) {
                break;
            }
            g.total += 1;
            if g.hand_off(Handoff::Permit).is_some() {
                g.total -= 1;
                break;
            }
            sc.anticipation_timeout.fetch_add(1, Ordering::Relaxed);
            sc.create_fallback.fetch_add(1, Ordering::Relaxed);
        }
        let next = match front(&g) {
            Some(w) => {
                *idle_since = None;
                let anticipating = g.total < self.settings.pool_size;
                self.due(w.since, anticipating.then(|| jittered(base, w.since)))
            }
            None => {
                let since = *idle_since.get_or_insert(now);
                (now.since(since) < PARK_AFTER).then(|| now.plus(Duration::from_micros(base)))
            }
        };
        g.sweep.at = next;
        next
    }
}

/// The oldest live waiter that takes slots (gate waiters keep their own deadline).
fn front(g: &Inner) -> Option<&super::Waiter> {
    g.waiters
        .iter()
        .find(|w| w.takes_slots && !w.tx.is_closed())
}

/// Drops the senders of the slot-taking waiters past query_wait_timeout, oldest first (the
/// FIFO is in order of arrival, so the scan stops at the first one still in time), and the
/// closed ones before them.
fn expire(g: &mut Inner, now: Micros, qwt: Option<Duration>) {
    let mut i = 0;
    while let Some(w) = g.waiters.get(i) {
        if w.tx.is_closed() || (w.takes_slots && qwt.is_some_and(|q| now.since(w.since) >= q)) {
            g.waiters.remove(i);
        } else if w.takes_slots {
            break;
        } else {
            i += 1;
        }
    }
}

/// The task: looks, sleeps until the next deadline or an enqueue's notification, and ends
/// when the pool is gone (the pool notifies on drop).
async fn run(pool: Weak<Pool>, wake: Arc<Notify>) {
    let mut idle_since = None;
    loop {
        let now = Micros::now();
        let next = match pool.upgrade() {
            Some(p) => p.sweep(now, &mut idle_since),
            None => return,
        };
        match next {
            Some(at) => {
                let sleep = tokio::time::sleep(at.since(now));
                tokio::select! {
                    _ = sleep => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_twenty_percent_and_spreads() {
        let mut seen = std::collections::BTreeSet::new();
        for us in 0..10_000u64 {
            let j = jittered(10_000, Micros::from_u64(1_000_000 + us * 37));
            assert!((8_000..=12_000).contains(&j), "{j}");
            seen.insert(j / 500);
        }
        assert!(seen.len() >= 8, "{seen:?}");
    }

    #[test]
    fn enqueue_wakes_the_task_only_when_it_would_look_too_late() {
        let mut s = SweepState::default();
        let t = Micros::from_u64(1_000);
        assert_eq!(s.due(t), Wake::Spawn);
        assert_eq!(s.due(t.plus(Duration::from_millis(1))), Wake::No);
        assert_eq!(s.due(Micros::from_u64(500)), Wake::Notify);
        assert_eq!(s.due(Micros::from_u64(600)), Wake::No);
        s.at = None;
        assert_eq!(s.due(t), Wake::Notify);
    }
}
