//! A token bucket driven by time passed in.
//!
//! The level is kept in exact integer units (a billionth of a token), so refilling `per_second`
//! tokens over `n` nanoseconds adds exactly `per_second × n` units: no rounding drift however
//! often it is asked, and the admission bound `burst + per_second × elapsed` holds exactly.

use std::time::{Duration, Instant};

/// Units per token: refill over one nanosecond at one token per second adds one unit.
const UNITS_PER_TOKEN: u128 = 1_000_000_000;

/// Why a bucket did not admit a cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Not enough tokens now; enough will have accrued after this long.
    RetryAfter(Duration),
    /// The cost is larger than the burst: no amount of waiting admits it.
    OverBurst,
}

/// A bucket of up to `burst` tokens, refilled at `per_second` tokens per second. Starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: u64,
    burst: u64,
    /// Tokens held, in units of 1/[`UNITS_PER_TOKEN`].
    level: u128,
    /// The time `level` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket. A `per_second` of 0 is taken as 1, so every refusal has a finite wait.
    pub fn new(per_second: u64, burst: u64, now: Instant) -> Self {
        let mut bucket = Self { per_second: per_second.max(1), burst, level: 0, updated: now };
        bucket.level = bucket.capacity();
        bucket
    }

    /// The burst: the most tokens the bucket holds.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Takes `cost` tokens if the bucket holds them at `now`; otherwise takes nothing.
    ///
    /// # Errors
    /// [`Denied::RetryAfter`] with the time until `cost` tokens will be held, or
    /// [`Denied::OverBurst`] if `cost` exceeds the burst.
    pub fn try_take(&mut self, cost: u64, now: Instant) -> Result<(), Denied> {
        let wait = self.wait(cost, now)?;
        if !wait.is_zero() {
            return Err(Denied::RetryAfter(wait));
        }
        self.consume(cost);
        Ok(())
    }

    /// How long until the bucket holds `cost` tokens (zero if it does at `now`); takes nothing.
    ///
    /// # Errors
    /// [`Denied::OverBurst`] if `cost` exceeds the burst.
    pub fn wait(&mut self, cost: u64, now: Instant) -> Result<Duration, Denied> {
        if cost > self.burst {
            return Err(Denied::OverBurst);
        }
        self.refill(now);
        let needed = u128::from(cost) * UNITS_PER_TOKEN;
        let Some(deficit) = needed.checked_sub(self.level).filter(|d| *d > 0) else {
            return Ok(Duration::ZERO);
        };
        let nanos = deficit.div_ceil(u128::from(self.per_second));
        Ok(u64::try_from(nanos).map_or(Duration::MAX, Duration::from_nanos))
    }

    /// Whether the bucket is full at `now`: it remembers nothing a fresh bucket would not.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.level == self.capacity()
    }

    /// Removes `cost` tokens that [`TokenBucket::wait`] just found present.
    fn consume(&mut self, cost: u64) {
        self.level = self.level.saturating_sub(u128::from(cost) * UNITS_PER_TOKEN);
    }

    fn capacity(&self) -> u128 {
        u128::from(self.burst) * UNITS_PER_TOKEN
    }

    /// Brings the level up to `now`. Sessions on other threads may pass a `now` read slightly
    /// before this bucket's last update; such a time adds nothing and does not move it back.
    fn refill(&mut self, now: Instant) {
        let Some(elapsed) = now.checked_duration_since(self.updated) else { return };
        let added = elapsed.as_nanos().saturating_mul(u128::from(self.per_second));
        self.level = self.level.saturating_add(added).min(self.capacity());
        self.updated = now;
    }
}

/// One bucket and what a request costs it.
#[derive(Debug)]
pub struct Take<'a> {
    /// The bucket.
    pub bucket: &'a mut TokenBucket,
    /// Tokens to take from it.
    pub cost: u64,
}

/// Takes from every bucket or from none: a request refused by one limit must not use up
/// another's tokens.
///
/// # Errors
/// The index of the bucket that refuses with the longest wait (an [`Denied::OverBurst`] first),
/// and its refusal: retrying after that wait finds every bucket ready, unless others took
/// tokens meanwhile.
pub fn take_all(takes: &mut [Take<'_>], now: Instant) -> Result<(), (usize, Denied)> {
    let mut worst: Option<(usize, Duration)> = None;
    for (index, take) in takes.iter_mut().enumerate() {
        let wait = take.bucket.wait(take.cost, now).map_err(|denied| (index, denied))?;
        if !wait.is_zero() && worst.is_none_or(|(_, longest)| wait > longest) {
            worst = Some((index, wait));
        }
    }
    if let Some((index, wait)) = worst {
        return Err((index, Denied::RetryAfter(wait)));
    }
    for take in takes.iter_mut() {
        take.bucket.consume(take.cost);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_bucket_admits_its_burst_then_says_when_to_retry() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, t0);
        for _ in 0..3 {
            assert_eq!(bucket.try_take(1, t0), Ok(()));
        }
        assert_eq!(bucket.try_take(1, t0), Err(Denied::RetryAfter(Duration::from_millis(100))));
        assert_eq!(bucket.try_take(2, t0), Err(Denied::RetryAfter(Duration::from_millis(200))));
        let later = t0 + Duration::from_millis(100);
        assert_eq!(bucket.try_take(1, later), Ok(()));
        assert_eq!(bucket.try_take(1, later), Err(Denied::RetryAfter(Duration::from_millis(100))));
    }

    #[test]
    fn refill_stops_at_the_burst_and_partial_waits_round_up() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3, 2, t0);
        assert_eq!(bucket.try_take(2, t0), Ok(()));
        assert!(!bucket.is_full(t0));
        assert!(bucket.is_full(t0 + Duration::from_secs(3600)));
        assert_eq!(bucket.try_take(2, t0 + Duration::from_secs(3600)), Ok(()));
        // One token at 3/s takes a third of a second: 333_333_334 ns, never less than enough.
        let wait = bucket.wait(1, t0 + Duration::from_secs(3600));
        assert_eq!(wait, Ok(Duration::from_nanos(333_333_334)));
    }

    #[test]
    fn a_cost_over_the_burst_is_never_admitted_and_zero_always_is() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1_000, 10, t0);
        assert_eq!(bucket.try_take(11, t0 + Duration::from_secs(60)), Err(Denied::OverBurst));
        assert_eq!(bucket.try_take(10, t0), Ok(()));
        assert_eq!(bucket.try_take(0, t0), Ok(()));
    }

    #[test]
    fn a_time_before_the_last_update_adds_nothing() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut bucket = TokenBucket::new(1, 1, t0);
        assert_eq!(bucket.try_take(1, t1), Ok(()));
        assert!(matches!(bucket.try_take(1, t0), Err(Denied::RetryAfter(_))));
        assert_eq!(bucket.wait(1, t1), Ok(Duration::from_secs(1)), "the early time did not move the clock back");
    }

    #[test]
    fn take_all_takes_from_none_when_one_refuses_and_names_the_longest_wait() {
        let t0 = Instant::now();
        let (mut fast, mut slow, mut empty) =
            (TokenBucket::new(100, 5, t0), TokenBucket::new(1, 5, t0), TokenBucket::new(10, 1, t0));
        empty.try_take(1, t0).expect("full");
        let mut takes = [
            Take { bucket: &mut fast, cost: 2 },
            Take { bucket: &mut empty, cost: 1 },
            Take { bucket: &mut slow, cost: 1 },
        ];
        assert_eq!(take_all(&mut takes, t0), Err((1, Denied::RetryAfter(Duration::from_millis(100)))));
        assert!(fast.is_full(t0) && slow.is_full(t0), "nothing taken");
        let mut takes = [Take { bucket: &mut fast, cost: 6 }, Take { bucket: &mut slow, cost: 1 }];
        assert_eq!(take_all(&mut takes, t0), Err((0, Denied::OverBurst)));
        let mut takes = [Take { bucket: &mut fast, cost: 5 }, Take { bucket: &mut slow, cost: 5 }];
        assert_eq!(take_all(&mut takes, t0), Ok(()));
        assert!(!fast.is_full(t0) && !slow.is_full(t0));
    }

    proptest! {
        /// Over every interval of the run, the tokens admitted never exceed the burst plus what
        /// the rate refills over that interval: the definition of the limit, checked exactly.
        #[test]
        fn never_admits_more_than_burst_plus_rate_times_elapsed(
            per_second in 1u64..5_000,
            burst in 1u64..200,
            steps in proptest::collection::vec((0u64..20_000_000, 1u64..8), 1..200),
        ) {
            let t0 = Instant::now();
            let mut bucket = TokenBucket::new(per_second, burst, t0);
            let mut now = t0;
            let mut admitted: Vec<(Duration, u64)> = Vec::new();
            for (gap_ns, cost) in steps {
                now += Duration::from_nanos(gap_ns);
                match bucket.try_take(cost, now) {
                    Ok(()) => admitted.push((now - t0, cost)),
                    Err(Denied::RetryAfter(wait)) => {
                        prop_assert!(!wait.is_zero());
                        let mut probe = bucket.clone();
                        prop_assert_eq!(probe.try_take(cost, now + wait), Ok(()), "ready after the wait");
                    }
                    Err(Denied::OverBurst) => prop_assert!(cost > burst),
                }
            }
            for (i, (start, _)) in admitted.iter().enumerate() {
                let mut total = 0u128;
                for (at, cost) in admitted.iter().skip(i) {
                    total += u128::from(*cost);
                    let refill_units = (*at - *start).as_nanos() * u128::from(per_second);
                    let bound_units = u128::from(burst) * UNITS_PER_TOKEN + refill_units;
                    prop_assert!(total * UNITS_PER_TOKEN <= bound_units, "{total} tokens over {:?}", *at - *start);
                }
            }
        }
    }
}
