//! Per-thread shards for counters every transaction updates. With one shared atomic per
//! figure, the worker threads take turns owning its cache line, and each update pays a
//! cross-core transfer; with a cache-line-sized shard per thread each update stays in the
//! writer's cache. Readers (SHOW, /metrics) add the shards up.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Shards per figure: threads beyond this share shards (still correct, just slower).
pub const SHARDS: usize = 8;

static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// This thread's shard index (assigned on first use, round-robin).
#[inline]
pub fn index() -> usize {
    INDEX.with(|i| *i)
}

/// A value alone on its cache lines (128 bytes: two lines, as the adjacent-line prefetcher
/// pairs them), so shards of different threads never share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// One padded shard per thread slot.
#[derive(Debug)]
pub struct Shards<T>(Box<[Padded<T>; SHARDS]>);

impl<T: Default> Default for Shards<T> {
    fn default() -> Self {
        Shards(Box::new(std::array::from_fn(|_| Padded::default())))
    }
}

impl<T> Shards<T> {
    /// The calling thread's shard.
    #[inline]
    pub fn local(&self) -> &T {
        &self.0[index()].0
    }

    /// Every shard (for sums).
    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn threads_add_into_their_own_shards_and_sums_see_all() {
        let s: std::sync::Arc<Shards<AtomicU64>> = Default::default();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        s.local().fetch_add(1, Ordering::Relaxed);
                    }
                    index()
                })
            })
            .collect();
        let idx: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let total: u64 = s.all().map(|a| a.load(Ordering::Relaxed)).sum();
        assert_eq!(total, 4000);
        // Four threads created one after another get four different slots.
        let mut sorted = idx.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4, "{idx:?}");
        assert_eq!(std::mem::align_of::<Padded<u8>>(), 128);
    }
}
