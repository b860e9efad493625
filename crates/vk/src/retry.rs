//! Capped exponential backoff with jitter, bounded by a deadline.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay's upper bound.
    pub base: Duration,
    /// No single delay is longer than this.
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The upper bound of the delay before retry number `attempt` (0 = the first retry): `base * 2^attempt`,
    /// never more than `cap`. It never shrinks as `attempt` grows.
    pub fn bound(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).map_or(self.cap, |d| d.min(self.cap))
    }

    /// The delay before retry number `attempt`: "equal jitter", uniformly in `[bound/2, bound]`, so delays grow
    /// with the attempt number while concurrent clients spread out.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, &mut rand::thread_rng())
    }

    pub fn delay_with<R: Rng>(&self, attempt: u32, rng: &mut R) -> Duration {
        let bound = self.bound(attempt);
        let half = bound / 2;
        let spread = (bound - half).as_micros() as u64;
        half + Duration::from_micros(if spread == 0 { 0 } else { rng.gen_range(0..=spread) })
    }
}

/// How the client retries retryable errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// Give up once this much time has passed since the first attempt (no retry starts that would end later).
    pub deadline: Duration,
    /// At most this many attempts in all.
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub const fn none() -> Self {
        Self { backoff: Backoff::new(Duration::ZERO, Duration::ZERO), deadline: Duration::ZERO, max_attempts: 1 }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(3)),
            deadline: Duration::from_secs(10),
            max_attempts: 6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn backoff_is_bounded_and_grows(base_ms in 1u64..5_000, cap_ms in 1u64..60_000, attempt in 0u32..200, seed: u64) {
            let b = Backoff::new(Duration::from_millis(base_ms), Duration::from_millis(cap_ms));
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let d = b.delay_with(attempt, &mut rng);
            prop_assert!(d <= b.cap);
            prop_assert!(d <= b.bound(attempt));
            prop_assert!(d >= b.bound(attempt) / 2);
            prop_assert!(b.bound(attempt + 1) >= b.bound(attempt));
            // Until the cap is reached, the bound doubles.
            if b.bound(attempt + 1) < b.cap {
                prop_assert_eq!(b.bound(attempt + 1), b.bound(attempt) * 2);
            }
        }
    }

    #[test]
    fn the_first_bound_is_the_base_and_the_last_is_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(b.bound(0), Duration::from_millis(100));
        assert_eq!(b.bound(3), Duration::from_millis(800));
        assert_eq!(b.bound(10), Duration::from_secs(2));
        assert_eq!(b.bound(u32::MAX), Duration::from_secs(2));
    }
}
