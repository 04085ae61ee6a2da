//! Exponential backoff with full jitter, as a plain calculation: the caller supplies the random
//! number, so the schedule is deterministic under test and the type does no I/O.
//!
//! Full jitter (a delay drawn uniformly from zero to the exponential ceiling) spreads the retries
//! of many senders that failed together, so a gateway that comes back is not hit by a synchronised
//! wave of them.

use std::time::Duration;

/// A retry schedule: the ceiling doubles from `initial` with each retry, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// A schedule starting at `initial` and never above `max`. An `initial` above `max` is
    /// lowered to `max`, so every delay respects the cap the operator set.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial: initial.min(max), max }
    }

    /// The longest delay allowed before retry number `retry` (0 for the first retry):
    /// `min(max, initial × 2^retry)`, without overflow however large `retry` is.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.initial.checked_mul(factor).map_or(self.max, |d| d.min(self.max))
    }

    /// The delay before retry number `retry`: uniform in `[0, ceiling(retry)]`, chosen by
    /// `random` (any `u64`, e.g. `rand::random()`).
    pub fn delay(&self, retry: u32, random: u64) -> Duration {
        let ceiling = self.ceiling(retry).as_nanos();
        // ceiling ≤ max Duration in nanos (< 2^94), times a u64 (< 2^64): fits in u128.
        let nanos = ceiling.saturating_mul(u128::from(random)) / u128::from(u64::MAX);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The cap on every delay.
    pub fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_ceiling_doubles_until_the_cap_and_never_overflows() {
        let backoff = Backoff::new(ms(500), ms(30_000));
        let ceilings: Vec<_> = (0..8).map(|r| backoff.ceiling(r)).collect();
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000].map(ms));
        assert_eq!(backoff.ceiling(31), ms(30_000));
        assert_eq!(backoff.ceiling(u32::MAX), ms(30_000));
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.ceiling(5), Duration::MAX);
    }

    #[test]
    fn the_delay_spans_zero_to_the_ceiling() {
        let backoff = Backoff::new(ms(100), ms(1000));
        assert_eq!(backoff.delay(2, 0), Duration::ZERO);
        assert_eq!(backoff.delay(2, u64::MAX), ms(400));
        let half = backoff.delay(2, u64::MAX / 2);
        assert!(half > ms(199) && half < ms(201), "{half:?}");
        assert_eq!(backoff.delay(40, u64::MAX), ms(1000));
        assert_eq!(Backoff::new(Duration::MAX, Duration::MAX).delay(0, u64::MAX), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn an_initial_delay_above_the_cap_is_lowered_to_it() {
        let backoff = Backoff::new(ms(5000), ms(100));
        assert_eq!(backoff.ceiling(0), ms(100));
        assert_eq!(backoff.max(), ms(100));
    }
}
