//! Abuse limits for requests that cost something: an anonymous «Войти через VK ID» writes a session and a pending
//! authorization; «Проверить» makes several VK calls with the community's key. Each is limited per key (a client
//! address, a community) in a sliding window, per instance, in memory.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// Keys kept before old ones are swept (bounds the memory an address-hopping client can take).
const SWEEP_AT: usize = 10_000;

/// At most `max` hits per key in any `window`.
pub struct RateLimiter<K> {
    max: usize,
    window: Duration,
    hits: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    pub fn new(max: u32, window: Duration) -> Self {
        RateLimiter { max: max.max(1) as usize, window, hits: Mutex::new(HashMap::new()) }
    }

    /// Counts a hit for `key`; `Err(wait)` when the key is over its limit (the hit is not counted then).
    pub fn hit(&self, key: K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        if hits.len() >= SWEEP_AT {
            hits.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < self.window));
        }
        let times = hits.entry(key).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            times.pop_front();
        }
        if times.len() >= self.max {
            let oldest = *times.front().expect("full");
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        times.push_back(now);
        Ok(())
    }
}

/// The client's address: the peer's, or — when the peer is a proxy on this machine (loopback) — the address that
/// proxy appended last to `X-Forwarded-For`. A remote peer cannot choose its key by sending the header.
pub fn client_address(peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if !peer.ip().is_loopback() {
        return peer.ip();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .next_back()
        .unwrap_or(peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_limit_waits_and_others_do_not() {
        let limit = RateLimiter::new(2, Duration::from_secs(60));
        assert!(limit.hit("a").is_ok() && limit.hit("a").is_ok());
        let wait = limit.hit("a").unwrap_err();
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60), "{wait:?}");
        assert!(limit.hit("b").is_ok(), "another key has its own count");
        let quick = RateLimiter::new(1, Duration::from_millis(1));
        assert!(quick.hit(1).is_ok());
        std::thread::sleep(Duration::from_millis(3));
        assert!(quick.hit(1).is_ok(), "the window slides");
    }

    #[test]
    fn only_a_local_proxy_names_the_client() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        let remote: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        assert_eq!(client_address(remote, &headers), remote.ip(), "a remote peer's header is ignored");
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(client_address(proxy, &headers), "203.0.113.9".parse::<IpAddr>().unwrap(), "the proxy's hop");
        assert_eq!(client_address(proxy, &HeaderMap::new()), proxy.ip());
    }
}
