use std::time::Duration;

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
    AccessToken::community(sandbox.issue_community_token(group_id, &["manage", "messages"]))
}

pub use vk_sandbox::testing::eventually;
