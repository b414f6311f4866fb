//! `max_memory_usage`: a process-wide cap on the bytes held for client messages the pooler must
//! read whole before forwarding them (Parse, whose text names the statement). Everything else
//! streams through buffers of bounded size, so this is what could grow without bound.

use std::sync::atomic::{AtomicUsize, Ordering};

static HELD: AtomicUsize = AtomicUsize::new(0);

/// Reserves `n` bytes under `max`; false (nothing reserved) when that would pass it.
pub fn try_reserve(n: usize, max: usize) -> bool {
    HELD.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
        held.checked_add(n).filter(|&t| t <= max)
    })
    .is_ok()
}

/// Returns `n` reserved bytes.
pub fn release(n: usize) {
    HELD.fetch_sub(n, Ordering::AcqRel);
}

/// Bytes currently reserved (for statistics).
pub fn held() -> usize {
    HELD.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_respect_the_cap() {
        let base = held();
        assert!(try_reserve(100, base + 150));
        assert!(!try_reserve(100, base + 150));
        release(100);
        assert!(try_reserve(100, base + 150));
        release(100);
        assert_eq!(held(), base);
    }
}
