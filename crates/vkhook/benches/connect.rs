//! The whole connect after consent, with 50 ms of latency on every VK call: how long it takes, how many VK round
//! trips, and how much of it is vkhook itself. `cargo bench -p vkhook --bench connect`.

use std::time::{Duration, Instant};
use vk::GroupId;

use vk_sandbox::{Fault, Sandbox, SandboxConfig};

const LATENCY_MS: u64 = 50;
const RUNS: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let dir = std::env::temp_dir().join(format!("vkhook-connect-{}", std::process::id()));
    // Default timing: the confirmation is polled every 250 ms, as in production.
    let state = vkhook::app::testing::sandbox_app(&sandbox, &dir, Default::default()).await?;
    // The token as the community authorization left it (the consent itself is the admin's time, not ours).
    vkhook::app::testing::store_sandbox_token(&state, &sandbox, GroupId(1001), "Кофейня «Зерно»").await?;
    sandbox.inject_fault(Fault { method: None, error_code: None, latency_ms: Some(LATENCY_MS), remaining: None });

    println!("VK latency {LATENCY_MS} ms per call; {RUNS} connects of community 1001 (the first adds, the rest edit)");
    println!("the calls: confirmation code, server list, add or edit, settings — then polls until VK says ok");
    for run in 1..=RUNS {
        let started = Instant::now();
        state.connector.start_repair(GroupId(1001)).await?;
        let setup = vkhook::connect::wait_for_setup(&state.store, GroupId(1001), Duration::from_secs(30))
            .await?
            .expect("a run");
        let total = started.elapsed();
        anyhow::ensure!(setup.state == vkhook::model::SetupState::Done, "{setup:?}");
        let vk_time = Duration::from_millis(LATENCY_MS * setup.vk_calls as u64);
        println!(
            "run {run}: {total:.0?} in all; {} VK calls = {vk_time:.0?} of VK latency; vkhook itself {:.0?}",
            setup.vk_calls,
            total.saturating_sub(vk_time)
        );
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
