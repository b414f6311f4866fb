//! Lock-free duration histograms (query, transaction, wait) with fixed Prometheus buckets:
//! recording is one atomic add into a bucket of the writing thread's shard, so the hot path
//! takes no lock and shares no cache line; percentiles for
//! SHOW POOLS_EXTENDED are interpolated within the bucket that holds them.

use super::shard::Shards;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per histogram (upper bounds double from the first; the last is +Inf).
pub const BUCKETS: usize = 15;

/// A duration histogram.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bound of each bucket but the last (µs).
    bounds_us: [u64; BUCKETS - 1],
    /// Per-thread counts (see [`super::shard`]): recording touches only the writer's cache.
    shards: Shards<Counts>,
}

/// One thread's bucket counts and sum: 128 bytes, one padded shard.
#[derive(Debug, Default)]
struct Counts {
    counts: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Buckets from `first` upward, doubling (14 finite bounds).
    pub fn new(first: Duration) -> Self {
        let mut bounds_us = [0u64; BUCKETS - 1];
        let mut b = first.as_micros().max(1) as u64;
        for slot in bounds_us.iter_mut() {
            *slot = b;
            b *= 2;
        }
        Histogram {
            bounds_us,
            shards: Default::default(),
        }
    }

    /// Records one duration (µs).
    #[inline]
    pub fn record_us(&self, us: u64) {
        let i = self.bounds_us.partition_point(|&b| b < us);
        let c = self.shards.local();
        c.counts[i].fetch_add(1, Ordering::Relaxed);
        c.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Sum of the recorded durations (µs).
    pub fn sum_us(&self) -> u64 {
        self.shards
            .all()
            .map(|c| c.sum_us.load(Ordering::Relaxed))
            .sum()
    }

    /// Count of each bucket, summed over the shards.
    fn counts(&self) -> [u64; BUCKETS] {
        let mut out = [0u64; BUCKETS];
        for c in self.shards.all() {
            for (o, n) in out.iter_mut().zip(&c.counts) {
                *o += n.load(Ordering::Relaxed);
            }
        }
        out
    }

    /// (upper bound in seconds, count in that bucket) for every bucket (the last is +Inf),
    /// the sum in seconds and the total count.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let mut out = Vec::with_capacity(BUCKETS);
        let mut total = 0;
        for (i, n) in self.counts().into_iter().enumerate() {
            total += n;
            let bound = self
                .bounds_us
                .get(i)
                .map_or(f64::INFINITY, |&b| b as f64 / 1e6);
            out.push((bound, n));
        }
        let sum = self.sum_us() as f64 / 1e6;
        (out, sum, total)
    }

    /// The `q` quantile (0..1) in µs, interpolated within its bucket; 0 with no samples.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let counts = self.counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in counts.iter().enumerate() {
            if seen + n >= rank {
                let lo = if i == 0 { 0 } else { self.bounds_us[i - 1] };
                let hi = self.bounds_us.get(i).copied().unwrap_or(lo * 2);
                let within = (rank - seen) as f64 / n.max(1) as f64;
                return lo + ((hi - lo) as f64 * within) as u64;
            }
            seen += n;
        }
        self.bounds_us[BUCKETS - 2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        let h = Histogram::new(Duration::from_micros(500));
        for _ in 0..90 {
            h.record_us(300); // bucket ≤ 500 µs
        }
        for _ in 0..10 {
            h.record_us(3000); // bucket (2000, 4000]
        }
        let p50 = h.quantile_us(0.5);
        assert!(p50 <= 500, "{p50}");
        let p99 = h.quantile_us(0.99);
        assert!((2000..=4000).contains(&p99), "{p99}");
        let (b, sum, n) = h.snapshot();
        assert_eq!(n, 100);
        assert_eq!(b.len(), BUCKETS);
        assert!((sum - 0.057).abs() < 1e-9);
        assert!(b.last().unwrap().0.is_infinite());
        h.record_us(u64::MAX / 4);
        assert_eq!(h.snapshot().0.last().unwrap().1, 1);
    }
}
