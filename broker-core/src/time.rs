//! Time as the shell passes it in: milliseconds since an arbitrary epoch. The core never
//! reads a clock.

use core::num::NonZeroU64;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time, in milliseconds since an epoch the shell chooses (at most
/// `u64::MAX - 1`; later times saturate there).
///
/// Stored as milliseconds + 1 in a `NonZeroU64`, so an `Option<Instant>` is 8 bytes: a
/// session or connection slot keeps several of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(NonZeroU64);

impl Default for Instant {
    fn default() -> Self {
        Self::ZERO
    }
}

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(NonZeroU64::MIN);

    /// From milliseconds since the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        match NonZeroU64::new(ms.saturating_add(1)) {
            Some(v) => Instant(v),
            None => Instant(NonZeroU64::MAX),
        }
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0.get() - 1
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.get().saturating_sub(earlier.0.get()))
    }

    /// `self + secs` seconds, saturating.
    pub const fn plus_secs(self, secs: u64) -> Instant {
        self.plus_millis(secs.saturating_mul(1000))
    }

    /// `self + ms` milliseconds, saturating.
    pub const fn plus_millis(self, ms: u64) -> Instant {
        Instant(self.0.saturating_add(ms))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.plus_millis(d.as_millis().min(u128::from(u64::MAX)) as u64)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip_and_saturate() {
        assert_eq!(Instant::from_millis(0), Instant::ZERO);
        assert_eq!(Instant::from_millis(1234).as_millis(), 1234);
        assert_eq!(Instant::from_millis(u64::MAX).as_millis(), u64::MAX - 1);
        assert_eq!(Instant::from_millis(5).plus_secs(2).as_millis(), 2005);
        assert_eq!(
            Instant::from_millis(u64::MAX - 3)
                .plus_millis(10)
                .as_millis(),
            u64::MAX - 1
        );
        let (a, b) = (Instant::from_millis(10), Instant::from_millis(25));
        assert!(a < b);
        assert_eq!(b - a, Duration::from_millis(15));
        assert_eq!(a - b, Duration::ZERO);
        assert_eq!(a + Duration::from_secs(1), Instant::from_millis(1010));
        assert_eq!(core::mem::size_of::<Option<Instant>>(), 8);
    }
}
