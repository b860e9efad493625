//! Bulk connect of 50 communities as an admin does it, on the product as users run it: the real `vkhook demo`
//! binary (the app with every role, and its built-in VK sandbox with `--extra-communities 50`), with 50 ms added
//! to every VK call (API methods and the code exchange) through the sandbox's control API. Driven over HTTP: sign in,
//! tick 2001…2050 on `/communities`, «Подключить выбранные», one consent, and until the run's page says «Подключено
//! 50 из 50». Reports the time and every VK call by method (`GET /_sandbox/calls`).
//! `cargo bench -p vkhook --bench bulk_connect`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use vk_sandbox::testing::{consent, Consent};

const COMMUNITIES: i64 = 50;
const LATENCY_MS: u64 = 50;

fn location(r: &reqwest::Response) -> anyhow::Result<String> {
    let l = r.headers().get("location").ok_or_else(|| anyhow::anyhow!("no redirect: {}", r.status()))?;
    Ok(l.to_str()?.to_owned())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The demo process, stopped when dropped.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn calls(http: &reqwest::Client, sandbox: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let answer: serde_json::Value = http.get(format!("{sandbox}/_sandbox/calls")).send().await?.json().await?;
    Ok(serde_json::from_value(answer["calls"].clone())?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (port, sandbox_port) = (free_port()?, free_port()?);
    let dir = std::env::temp_dir().join(format!("vkhook-bulk-{}", std::process::id()));
    let _demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_vkhook"))
            .args(["demo", "--port", &port.to_string(), "--sandbox-port", &sandbox_port.to_string()])
            .args(["--extra-communities", &COMMUNITIES.to_string(), "--data-dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .env("RUST_LOG", "warn")
            .spawn()?,
    );
    let (url, sandbox) = (format!("http://127.0.0.1:{port}"), format!("http://127.0.0.1:{sandbox_port}"));
    let http = reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build()?;
    let ready = Instant::now();
    while http.get(format!("{url}/healthz")).send().await.map(|r| r.status().is_success()).ok() != Some(true) {
        anyhow::ensure!(ready.elapsed() < Duration::from_secs(30), "the demo did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Signed in as Анна, on the list (no latency yet: that is not what is measured).
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

    let fault = serde_json::json!({"latency_ms": LATENCY_MS});
    http.post(format!("{sandbox}/_sandbox/faults")).json(&fault).send().await?.error_for_status()?;
    let before = calls(&http, &sandbox).await?;
    let ids: Vec<String> = (2001..=2000 + COMMUNITIES).map(|id| id.to_string()).collect();
    let mut form: Vec<(&str, &str)> = ids.iter().map(|id| ("group", id.as_str())).collect();
    form.extend([("action", "connect"), ("bot_enabled", "1"), ("csrf", csrf.as_str())]);

    let started = Instant::now();
    let pressed = http.post(format!("{url}/communities/bulk")).form(&form).send().await?;
    let back = consent(&location(&pressed)?, &Consent::allow(1)).await.map_err(anyhow::Error::msg)?;
    let consented = Instant::now();
    let page = location(&http.get(back.as_str()).send().await?)?;
    anyhow::ensure!(page.starts_with("/communities/bulk/"), "landed on {page}");
    let all_done = format!("Подключено {COMMUNITIES} из {COMMUNITIES}");
    loop {
        let html = http.get(format!("{url}{page}")).send().await?.text().await?;
        if html.contains(&all_done) {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "not all connected after a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (total, after_consent) = (started.elapsed(), consented.elapsed());

    let after = calls(&http, &sandbox).await?;
    let mut by_method: Vec<(String, u64)> = after
        .iter()
        .map(|(m, n)| (m.clone(), n - before.get(m).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    by_method.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let vk_calls: u64 = by_method.iter().map(|(_, n)| n).sum();
    println!("bulk connect of {COMMUNITIES} communities, {LATENCY_MS} ms per VK call: `vkhook demo` over HTTP");
    println!("press → the run's page says all connected: {total:.2?} (after the consent: {after_consent:.2?})");
    println!("VK calls: {vk_calls} in all ({:.1} per community)", vk_calls as f64 / COMMUNITIES as f64);
    for (method, n) in by_method {
        println!("  {method}: {n}");
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
