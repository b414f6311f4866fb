//! A monotonic clock in whole microseconds for the request path.
//!
//! It reads `CLOCK_MONOTONIC`, the clock behind `std::time::Instant`. A request reads the clock
//! a few times and subtracts readings for its statistics (wait time, query and transaction
//! time, connection ages); `Instant`'s checked timespec subtraction costs about 40
//! instructions a time (callgrind), an integer one is a single `sub`.

use std::time::Duration;

/// A reading of the monotonic clock, in µs from an arbitrary origin (the machine's boot).
/// Ordered; `Micros::default()` is the origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(u64);

impl Micros {
    /// Reads the clock. `CLOCK_MONOTONIC` cannot fail on Linux for a valid clock id; should the
    /// call fail anyway, the origin is returned (durations then read as zero, never negative).
    #[inline]
    pub fn now() -> Micros {
        use nix::time::{ClockId, clock_gettime};
        clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(Micros(0), |t| {
            Micros((t.tv_sec() as u64) * 1_000_000 + (t.tv_nsec() as u64) / 1_000)
        })
    }

    /// µs from `earlier` to `self`; 0 if `earlier` is later.
    #[inline]
    pub fn us_since(self, earlier: Micros) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    #[inline]
    pub fn since(self, earlier: Micros) -> Duration {
        Duration::from_micros(self.us_since(earlier))
    }

    /// Time from `self` to now.
    pub fn elapsed(self) -> Duration {
        Micros::now().since(self)
    }

    /// This reading moved later by `d` (saturating).
    pub fn plus(self, d: Duration) -> Micros {
        Micros(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }

    /// The raw value (µs from the origin), for storing in an atomic.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// A reading stored with [`Self::as_u64`].
    pub fn from_u64(us: u64) -> Micros {
        Micros(us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_move_forward_with_std_instant() {
        let (a, i) = (Micros::now(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (b, j) = (Micros::now(), std::time::Instant::now());
        assert!(b > a);
        let ours = b.us_since(a) as i64;
        let std = j.duration_since(i).as_micros() as i64;
        assert!(ours >= 20_000, "{ours} µs");
        assert!((ours - std).abs() < 2_000, "ours {ours} µs, std {std} µs");
    }

    #[test]
    fn earlier_minus_later_is_zero() {
        let a = Micros::from_u64(10);
        let b = Micros::from_u64(25);
        assert_eq!(b.us_since(a), 15);
        assert_eq!(a.us_since(b), 0);
        assert_eq!(a.since(b), Duration::ZERO);
        assert_eq!(a.plus(Duration::from_millis(1)).as_u64(), 1_010);
        assert!(Micros::from_u64(0).elapsed() > Duration::ZERO);
    }
}
