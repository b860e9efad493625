//! A per-token sliding-window rate limiter: at most `n` requests in any window (one second plus a margin for
//! network jitter), as VK counts them (3/s per user token, 20/s per community token).
//!
//! Tokens are never stored: the limiter is keyed by a keyed hash of the token.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The default window: VK's second plus 100 ms, so requests that travel at different speeds still arrive
/// within VK's limit.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(1100);

#[derive(Debug)]
pub struct RateLimiter {
    window: Duration,
    hasher: std::collections::hash_map::RandomState,
    windows: Mutex<HashMap<u64, VecDeque<Instant>>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl RateLimiter {
    pub fn new(window: Duration) -> Self {
        Self { window, hasher: Default::default(), windows: Mutex::new(HashMap::new()) }
    }

    /// The key under which `token` is counted.
    pub fn key_for(&self, token: &str) -> u64 {
        self.hasher.hash_one(token)
    }

    /// Waits until a request under `key` is allowed with at most `per_window` in any window, and counts it.
    pub async fn acquire(&self, key: u64, per_window: u32) {
        if per_window == 0 {
            return;
        }
        loop {
            match self.try_acquire(key, per_window, Instant::now()) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Counts a request at `now` if allowed; otherwise says how long to wait.
    pub fn try_acquire(&self, key: u64, per_window: u32, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 4096 {
            let window = self.window;
            windows.retain(|_, stamps| stamps.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let stamps = windows.entry(key).or_default();
        while stamps.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            stamps.pop_front();
        }
        if stamps.len() < per_window as usize {
            stamps.push_back(now);
            Ok(())
        } else {
            let oldest = *stamps.front().expect("full window is not empty");
            Err((oldest + self.window).saturating_duration_since(now).max(Duration::from_millis(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_n_per_window_then_says_how_long_to_wait() {
        let limiter = RateLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(limiter.try_acquire(7, 3, t0 + Duration::from_millis(i * 10)).is_ok());
        }
        let wait = limiter.try_acquire(7, 3, t0 + Duration::from_millis(100)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(900));
        // Another token has its own window.
        assert!(limiter.try_acquire(8, 3, t0 + Duration::from_millis(100)).is_ok());
        // Once the first request leaves the window, one more is allowed.
        assert!(limiter.try_acquire(7, 3, t0 + Duration::from_millis(1000)).is_ok());
        assert!(limiter.try_acquire(7, 3, t0 + Duration::from_millis(1001)).is_err());
    }

    #[tokio::test]
    async fn acquire_spreads_requests_over_windows() {
        let limiter = RateLimiter::new(Duration::from_millis(50));
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire(1, 2).await;
        }
        // Six requests at two per 50 ms cannot all start inside the first two windows.
        assert!(start.elapsed() >= Duration::from_millis(100));
    }
}
