use std::time::{Duration, Instant};

use vk::{AccessToken, Backoff, Client, ClientConfig, RetryPolicy};
use vk_sandbox::{Sandbox, SandboxConfig};

/// A sandbox whose VK waits are a thousand times shorter (10 s → 10 ms).
pub async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig { time_factor: 0.001, ..Default::default() }).await.expect("sandbox starts")
}

/// A client for the sandbox with quick retries.
pub fn client(sandbox: &Sandbox) -> Client {
    let mut cfg = ClientConfig::new(sandbox.api_url().parse().unwrap());
    cfg.retry = RetryPolicy {
        backoff: Backoff::new(Duration::from_millis(5), Duration::from_millis(50)),
        deadline: Duration::from_secs(5),
        max_attempts: 5,
    };
    Client::new(cfg).unwrap()
}

pub fn community(sandbox: &Sandbox, group_id: i64) -> AccessToken {
    AccessToken::community(sandbox.issue_community_token(group_id, &["manage", "messages", "wall"]))
}

/// Polls `check` until it returns `Some`, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
