//! Setup and reconcile across 200 connected communities, against the sandbox over HTTP with VK's rate limits
//! (20 requests/s per community token, enforced by the sandbox as error 6). Prints the times and the VK calls;
//! `cargo bench -p vkhook --bench reconcile`.

use std::time::{Duration, Instant};
use vk::GroupId;

use vk_sandbox::{Sandbox, SandboxConfig};

const COMMUNITIES: i64 = 200;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sandbox =
        Sandbox::start(SandboxConfig { extra_communities: COMMUNITIES as usize, ..Default::default() }).await?;
    let dir = std::env::temp_dir().join(format!("vkhook-reconcile-{}", std::process::id()));
    let timing = vkhook::config::Timing { setup_poll: Duration::from_millis(50), ..Default::default() };
    let state = vkhook::app::testing::sandbox_app(&sandbox, &dir, timing).await?;

    // Community tokens as the community authorization would give them; then every setup at once.
    let ids: Vec<i64> = (2001..2001 + COMMUNITIES).collect();
    for id in &ids {
        vkhook::app::testing::store_sandbox_token(&state, &sandbox, GroupId(*id), &format!("Сообщество {id}")).await?;
    }
    let started = Instant::now();
    for id in &ids {
        state.connector.start_repair(GroupId(*id)).await?;
    }
    for id in &ids {
        let setup = vkhook::connect::wait_for_setup(&state.store, GroupId(*id), Duration::from_secs(120))
            .await?
            .expect("a run");
        anyhow::ensure!(setup.state == vkhook::model::SetupState::Done, "community {id}: {setup:?}");
    }
    let setup_time = started.elapsed();

    let started = Instant::now();
    let looked_at = state.reconciler.reconcile_all().await?;
    let reconcile_time = started.elapsed();
    let metrics = state.metrics.render(None, None);
    let count = |needle: &str| -> u64 {
        metrics.lines().filter(|l| l.contains(needle)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
    };
    println!(
        "machine: {} cores; sandbox over HTTP on loopback; 20 requests/s per community token",
        std::thread::available_parallelism()?
    );
    println!("setup of {COMMUNITIES} communities (all started at once): {setup_time:.2?}");
    println!("reconcile pass over {looked_at} communities:            {reconcile_time:.2?}");
    println!(
        "VK requests: {} ok, {} refused with error 6 (too many per second)",
        count("outcome=\"ok\""),
        count("outcome=\"error_6\"")
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
