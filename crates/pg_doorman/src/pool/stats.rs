//! Pool statistics the admin console and /metrics read (PgBouncer SHOW POOLS / SHOW STATS
//! names). Updated with relaxed atomics once per transaction (never per message, never under a
//! lock); read at SHOW or scrape time.

use super::histogram::Histogram;
use super::shard::Shards;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

pub use crate::relay::tally::{ERROR_CLASSES, Tally, error_class};

/// Totals of one pool since start (monotonic).
#[derive(Debug)]
pub struct PoolStats {
    /// Logged-in clients of this pool.
    pub clients: AtomicUsize,
    /// The per-transaction totals, one shard per worker thread (read through the sums below).
    hot: Shards<Hot>,
    /// Pool paused by the admin (PAUSE): new requests wait.
    pub paused: AtomicBool,
    /// Bumped by RECONNECT: connections from older epochs are closed at checkin.
    pub epoch: AtomicU64,
    /// Replaced or removed by a reload: connections close when they come back.
    pub retired: AtomicBool,
    /// Query durations (buckets from 0.5 ms).
    pub query_hist: Histogram,
    /// Transaction-mode hold times (buckets from 1 ms).
    pub xact_hist: Histogram,
    /// Waits for a backend (buckets from 0.1 ms).
    pub wait_hist: Histogram,
    /// How new connections came about (SHOW POOL_SCALING).
    pub scaling: ScalingStats,
    /// Parses of statements its backends already had (monotonic; live servers' own counts
    /// are in SHOW SERVERS).
    pub prepared_hits: AtomicU64,
    /// Parses its backends had to prepare.
    pub prepared_misses: AtomicU64,
    /// Backend logins PostgreSQL refused for a startup parameter, by SQLSTATE (rare: a lock
    /// is fine).
    startup_errors: parking_lot::Mutex<Vec<(String, u64)>>,
    /// Backend connects or logins that failed (pg_doorman_server_connect_failures_total).
    pub connect_failures: std::sync::atomic::AtomicU64,
}

/// The figures every transaction adds to, in one thread's shard (104 bytes: one padded
/// 128-byte block).
#[derive(Debug, Default)]
struct Hot {
    /// Clients holding a backend (attaches minus detaches on this thread; the sum is exact).
    active: AtomicI64,
    /// Transactions (ReadyForQuery 'I').
    xacts: AtomicU64,
    /// Queries (ReadyForQuery of any status).
    queries: AtomicU64,
    /// Bytes from clients to backends.
    received: AtomicU64,
    /// Bytes from backends to clients.
    sent: AtomicU64,
    /// Time clients held a backend in transaction mode (µs).
    xact_us: AtomicU64,
    /// Time clients waited for a backend (µs).
    wait_us: AtomicU64,
    /// ErrorResponses relayed, by [`ERROR_CLASSES`].
    errors: [AtomicU64; 6],
}

/// Counters of the checkout phases that create connections (SHOW POOL_SCALING,
/// `pg_doorman_pool_scaling*`). All monotonic except `inflight`.
#[derive(Debug, Default)]
pub struct ScalingStats {
    /// Backend connects in flight now.
    pub inflight: AtomicUsize,
    /// Backend connects started.
    pub creates: AtomicU64,
    /// Connects that had to queue at the `scaling_max_parallel_creates` gate.
    pub gate_waits: AtomicU64,
    /// Clients whose query_wait_timeout ran out while queued at that gate.
    pub gate_budget_exhausted: AtomicU64,
    /// Anticipating clients (pool above `scaling_warm_pool_ratio`) that received a returned
    /// connection or a free slot.
    pub anticipation_notify: AtomicU64,
    /// Anticipating clients whose wait ran out.
    pub anticipation_timeout: AtomicU64,
    /// Connects made after an anticipation wait ran out.
    pub create_fallback: AtomicU64,
    /// min_pool_size replenish rounds put off because clients were using the create gate.
    pub replenish_deferred: AtomicU64,
}

impl Default for PoolStats {
    fn default() -> Self {
        PoolStats {
            clients: Default::default(),
            hot: Default::default(),
            paused: Default::default(),
            epoch: Default::default(),
            retired: Default::default(),
            query_hist: Histogram::new(Duration::from_micros(500)),
            xact_hist: Histogram::new(Duration::from_millis(1)),
            wait_hist: Histogram::new(Duration::from_micros(100)),
            scaling: Default::default(),
            prepared_hits: Default::default(),
            prepared_misses: Default::default(),
            startup_errors: Default::default(),
            connect_failures: Default::default(),
        }
    }
}

impl PoolStats {
    /// Adds one attachment's tally, and the time it held the backend (µs, transaction mode).
    pub fn add(&self, t: &Tally, xact_us: Option<u64>) {
        let r = Ordering::Relaxed;
        let h = self.hot.local();
        h.xacts.fetch_add(u64::from(t.xacts), r);
        h.queries.fetch_add(u64::from(t.queries), r);
        h.received.fetch_add(t.received, r);
        h.sent.fetch_add(t.sent, r);
        if let Some(us) = xact_us {
            h.xact_us.fetch_add(us, r);
        }
        for (i, n) in t.errors.iter().enumerate() {
            if *n > 0 {
                h.errors[i].fetch_add(u64::from(*n), r);
            }
        }
    }

    /// Adds one wait for a backend (µs).
    #[inline]
    pub fn add_wait(&self, us: u64) {
        self.hot.local().wait_us.fetch_add(us, Ordering::Relaxed);
    }

    /// A client took (`true`) or gave back a backend.
    #[inline]
    pub fn set_active(&self, on: bool) {
        let h = self.hot.local();
        if on {
            h.active.fetch_add(1, Ordering::Relaxed);
        } else {
            h.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn sum(&self, f: impl Fn(&Hot) -> &AtomicU64) -> u64 {
        self.hot.all().map(|h| f(h).load(Ordering::Relaxed)).sum()
    }

    /// Clients holding a backend now.
    pub fn active(&self) -> usize {
        let n: i64 = self
            .hot
            .all()
            .map(|h| h.active.load(Ordering::Relaxed))
            .sum();
        usize::try_from(n).unwrap_or(0)
    }

    /// Transactions so far.
    pub fn xacts(&self) -> u64 {
        self.sum(|h| &h.xacts)
    }

    /// Queries so far.
    pub fn queries(&self) -> u64 {
        self.sum(|h| &h.queries)
    }

    /// Bytes from clients to backends.
    pub fn received(&self) -> u64 {
        self.sum(|h| &h.received)
    }

    /// Bytes from backends to clients.
    pub fn sent(&self) -> u64 {
        self.sum(|h| &h.sent)
    }

    /// Time clients held backends in transaction mode (µs).
    pub fn xact_us(&self) -> u64 {
        self.sum(|h| &h.xact_us)
    }

    /// Time clients waited for backends (µs).
    pub fn wait_us(&self) -> u64 {
        self.sum(|h| &h.wait_us)
    }

    /// ErrorResponses of class `i` of [`ERROR_CLASSES`].
    pub fn errors(&self, i: usize) -> u64 {
        self.sum(|h| &h.errors[i])
    }

    /// All errors.
    pub fn total_errors(&self) -> u64 {
        (0..ERROR_CLASSES.len()).map(|i| self.errors(i)).sum()
    }

    /// Counts a backend login refused with `code` for a startup parameter.
    pub fn startup_parameter_error(&self, code: &str) {
        self.add_startup_error(code, 1);
    }

    fn add_startup_error(&self, code: &str, n: u64) {
        let mut m = self.startup_errors.lock();
        match m.iter_mut().find(|(c, _)| c == code) {
            Some((_, count)) => *count += n,
            None => m.push((code.to_string(), n)),
        }
    }

    /// Backend logins refused for a startup parameter, by SQLSTATE.
    pub fn startup_parameter_errors(&self) -> Vec<(String, u64)> {
        self.startup_errors.lock().clone()
    }

    /// Starts a rebuilt pool's totals where the pool it replaces left them, so counters never
    /// go back across a reload (the histograms start empty).
    pub fn carry_over(&self, old: &PoolStats) {
        for (code, n) in old.startup_parameter_errors() {
            self.add_startup_error(&code, n);
        }
        let r = Ordering::Relaxed;
        let h = self.hot.local();
        for (new, value) in [
            (&h.xacts, old.xacts()),
            (&h.queries, old.queries()),
            (&h.received, old.received()),
            (&h.sent, old.sent()),
            (&h.xact_us, old.xact_us()),
            (&h.wait_us, old.wait_us()),
            (&self.prepared_hits, old.prepared_hits.load(r)),
            (&self.prepared_misses, old.prepared_misses.load(r)),
        ] {
            new.fetch_add(value, r);
        }
        for (i, new) in h.errors.iter().enumerate() {
            new.fetch_add(old.errors(i), r);
        }
    }
}

pub use crate::server::registration::{Registration, ServerInfo, ServerList, add_owned};

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicI32;

    #[test]
    fn classes_and_registration() {
        assert_eq!(ERROR_CLASSES[error_class(b"08006")], "08");
        assert_eq!(ERROR_CLASSES[error_class(b"25P02")], "25P02");
        assert_eq!(ERROR_CLASSES[error_class(b"22012")], "other");
        let list = Arc::new(ServerList::default());
        let r = Registration::new(
            &list,
            ServerInfo {
                id: 1,
                pid: 7,
                created: crate::clock::Micros::now(),
                tls: false,
                active: AtomicBool::new(false),
                xacts: AtomicU64::new(0),
                queries: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                client: AtomicI32::new(0),
                prepared_hits: AtomicU64::new(0),
                prepared_misses: AtomicU64::new(0),
                prepared_size: AtomicUsize::new(0),
            },
        );
        assert_eq!(list.snapshot().len(), 1);
        drop(r);
        assert!(list.snapshot().is_empty());
    }
}
