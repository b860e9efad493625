//! Bulk connect of 50 communities as an admin does it, against the sandbox with 50 ms of latency on every VK call
//! (API methods and the code exchange): vkhook as users run it (`--role all`), driven over HTTP — sign in, tick 50
//! communities on `/communities`, «Подключить выбранные», one consent, and until every community's setup says
//! «Callback API подключен». Reports the time and every VK call by method. `cargo bench -p vkhook --bench
//! bulk_connect`.

use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use vk_sandbox::testing::{consent, Consent};
use vk_sandbox::{Fault, Sandbox, SandboxConfig};

const COMMUNITIES: i64 = 50;
const LATENCY_MS: u64 = 50;

fn location(r: &reqwest::Response) -> anyhow::Result<String> {
    let l = r.headers().get("location").ok_or_else(|| anyhow::anyhow!("no redirect: {}", r.status()))?;
    Ok(l.to_str()?.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sandbox =
        Sandbox::start(SandboxConfig { extra_communities: COMMUNITIES as usize, ..Default::default() }).await?;
    let dir = std::env::temp_dir().join(format!("vkhook-bulk-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let settings = vkhook::Settings::for_sandbox(
        &sandbox,
        "127.0.0.1:0".parse()?,
        format!("sqlite://{}/vkhook.db", dir.display()),
        vkhook::vault::Vault::generate_spec("bench"),
    );
    let app = vkhook::App::build(settings).await?;
    let url = format!("http://{}", app.addr());
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    // Signed in as Анна, on the list (no latency yet: that is not what is measured).
    let http = reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build()?;
    let login = http.get(format!("{url}/auth/vk/login")).send().await?;
    let back = consent(&location(&login)?, &Consent::allow(1)).await.map_err(anyhow::Error::msg)?;
    http.get(back.as_str()).send().await?;
    let list = http.get(format!("{url}/communities")).send().await?.text().await?;
    let csrf = list
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| anyhow::anyhow!("no CSRF token on /communities"))?
        .to_owned();

    sandbox.inject_fault(Fault { method: None, error_code: None, latency_ms: Some(LATENCY_MS), remaining: None });
    let before = sandbox.calls();
    let ids: Vec<String> = (2001..=2000 + COMMUNITIES).map(|id| id.to_string()).collect();
    let mut form: Vec<(&str, &str)> = ids.iter().map(|id| ("group", id.as_str())).collect();
    form.extend([("action", "connect"), ("bot_enabled", "1"), ("csrf", csrf.as_str())]);

    let started = Instant::now();
    let pressed = http.post(format!("{url}/communities/bulk")).form(&form).send().await?;
    let authorize = location(&pressed)?;
    let back = consent(&authorize, &Consent::allow(1)).await.map_err(anyhow::Error::msg)?;
    let consented = Instant::now();
    let page = location(&http.get(back.as_str()).send().await?)?;
    anyhow::ensure!(page.starts_with("/communities/bulk/"), "landed on {page}");
    let mut vk_calls_in_setups = 0;
    for id in 2001..=2000 + COMMUNITIES {
        let setup = vkhook::connect::wait_for_setup(&state.store, id, Duration::from_secs(60)).await?;
        let setup = setup.ok_or_else(|| anyhow::anyhow!("no setup for {id}"))?;
        anyhow::ensure!(setup.state == vkhook::model::SetupState::Done, "{id}: {setup:?}");
        vk_calls_in_setups += setup.vk_calls;
    }
    let total = started.elapsed();
    let after_consent = consented.elapsed();
    let html = http.get(format!("{url}{page}")).send().await?.text().await?;
    anyhow::ensure!(html.contains(&format!("Подключено {COMMUNITIES} из {COMMUNITIES}")), "the run's page says so");

    let after = sandbox.calls();
    let mut by_method: Vec<(String, u64)> = after
        .iter()
        .map(|(m, n)| (m.clone(), n - before.get(m).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    by_method.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let calls: u64 = by_method.iter().map(|(_, n)| n).sum();
    println!("bulk connect of {COMMUNITIES} communities, {LATENCY_MS} ms per VK call, vkhook --role all over HTTP");
    println!("press → all connected: {total:.2?} (after the consent: {after_consent:.2?})");
    println!(
        "VK calls: {calls} in all ({:.1} per community); the setup runs counted {vk_calls_in_setups}",
        calls as f64 / COMMUNITIES as f64
    );
    for (method, n) in by_method {
        println!("  {method}: {n}");
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
