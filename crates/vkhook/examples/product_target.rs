//! The product as users run it, for the load benchmark (benches/load/run.sh): a VK sandbox in its own process
//! (`vkhook sandbox`), `vkhook serve --role all` against it on SQLite (or `--database-url`), and community 1001
//! connected through the real flow — VK ID sign-in as «Анна Админова», «Подключить Callback API» with «Сразу
//! включить бота» ticked and a default reply, the community consent, VK's confirmation.
//!
//!   product_target --bot on|off [--database-url URL] [--burst N] [--forward N]
//!
//! `--burst N` then stores N `like_add` events of 1001 as `pending`, as fast as the store takes them, and waits
//! until the workers have finished them all (they need no VK call). That is the work an instance leaves when it
//! could not decide at ingest (its switches cache was cold, a switch was turned on and the last moments revived).
//! Prints `BURST {"events":N,"stored_ms":…,"finished_ms":…}`: how long storing took, and how long after the burst's
//! end the last one was finished.
//!
//! `--forward N` (forwarding, issue 13) adds an endpoint through the card's form («Добавить адрес») that points at a
//! local receiver answering 204 at once, then measures: (1) latency — VK's events POSTed to `/vk/callback` at 500/s
//! for 20 s, the time from `ok` to the endpoint having the event (p50/p99/max); (2) throughput — N events stored at
//! once (as ingest stores them, deliveries made by the same statement), the time until the endpoint has them all.
//! Prints `FORWARD {…}` and exits.
//!
//! `--endpoint` adds such an endpoint (the receiver lives in this process) and goes on to `READY`: the load benchmark's
//! `forward` case measures ingest while every event is forwarded.
//!
//! `--bot off` then unticks both switches on the community page, as an admin would. Prints one line
//! `READY {"port":…,"secret":…,"pid":…,"sandbox_pid":…}` (pid: the `vkhook serve` process) and waits until killed;
//! both child processes die with it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vk::GroupId;

use secrecy::{ExposeSecret, SecretString};
use vk_sandbox::testing::{consent, Consent};

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_until_up(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(url).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn csrf(html: &str) -> anyhow::Result<String> {
    let rest =
        html.split("name=\"csrf\" value=\"").nth(1).ok_or_else(|| anyhow::anyhow!("no csrf on the page:\n{html}"))?;
    Ok(rest.split('"').next().unwrap_or_default().to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let bot_on = arg("--bot").as_deref() != Some("off");
    let bin = std::env::current_exe()?.parent().and_then(|d| d.parent()).map(|d| d.join("vkhook"));
    let bin = bin.filter(|b| b.exists()).ok_or_else(|| anyhow::anyhow!("build the vkhook binary first"))?;
    let dir = std::env::temp_dir().join(format!("vkhook-product-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let database_url = arg("--database-url").unwrap_or_else(|| format!("sqlite://{}/vkhook.db", dir.display()));
    let keys = vkhook::vault::Vault::generate_spec("load");
    let (sandbox_port, port) = (free_port()?, free_port()?);
    let quiet = || Stdio::null();

    let mut children = Children(Vec::new());
    children.0.push(
        Command::new(&bin)
            .args(["sandbox", "--port", &sandbox_port.to_string()])
            .stdout(quiet())
            .stderr(quiet())
            .spawn()?,
    );
    let sandbox = format!("http://127.0.0.1:{sandbox_port}");
    wait_until_up(&sandbox).await?;
    let app = format!("http://127.0.0.1:{port}");
    children.0.push(
        Command::new(&bin)
            .args(["serve", "--role", "all"])
            .env("VKHOOK_BIND", format!("127.0.0.1:{port}"))
            .env("VKHOOK_PUBLIC_URL", &app)
            .env("VKHOOK_DATABASE_URL", &database_url)
            .env("VKHOOK_TOKEN_KEYS", keys.expose_secret())
            .env("VKHOOK_VK_CLIENT_ID", "51900001")
            .env("VKHOOK_VK_CLIENT_SECRET", "sandbox-client-secret")
            .env("VKHOOK_VK_API_URL", format!("{sandbox}/api"))
            .env("VKHOOK_VK_OAUTH_URL", format!("{sandbox}/oauth"))
            .env("VKHOOK_VK_ID_URL", format!("{sandbox}/id"))
            .env("RUST_LOG", "warn")
            // The benchmark's endpoint is on this machine.
            .env("VKHOOK_FORWARD_ALLOW_LOOPBACK_HTTP", "true")
            // VKHOOK_PRODUCT_LOG=path keeps the server's log (for looking into a run).
            .stdout(match std::env::var_os("VKHOOK_PRODUCT_LOG") {
                Some(path) => Stdio::from(std::fs::File::create(path)?),
                None => quiet(),
            })
            .stderr(quiet())
            .spawn()?,
    );
    let serve_pid = children.0[1].id();
    wait_until_up(&format!("{app}/healthz")).await?;

    // The real flow, as a browser does it.
    let http = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build()?;
    let follow = |r: reqwest::Response| -> anyhow::Result<String> {
        let location = r.headers().get("location").ok_or_else(|| anyhow::anyhow!("no redirect ({})", r.status()))?;
        Ok(location.to_str()?.to_owned())
    };
    let to_vk_id = follow(http.get(format!("{app}/auth/vk/login")).send().await?)?;
    let back = consent(&to_vk_id, &Consent::allow(1)).await.map_err(anyhow::Error::msg)?;
    let signed_in = http.get(back.as_str()).send().await?;
    anyhow::ensure!(signed_in.status() == 303, "sign-in: {} {:?}", signed_in.status(), signed_in.text().await);
    let list = http.get(format!("{app}/communities")).send().await?.text().await?;
    anyhow::ensure!(list.contains("/communities/1001"), "1001 is not in the list:\n{list}");
    let page = http.get(format!("{app}/communities/1001")).send().await?.text().await?;
    let form = [("csrf", csrf(&page)?), ("bot_enabled", "1".into()), ("bot_reply", "Спасибо, ответим!".into())];
    let to_oauth = follow(http.post(format!("{app}/communities/1001/connect")).form(&form).send().await?)?;
    let back = consent(&to_oauth, &Consent::allow(1)).await.map_err(anyhow::Error::msg)?;
    http.get(back.as_str()).send().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let store = vkhook::store::Store::connect(&database_url).await?;
    loop {
        let setup = store.setup(GroupId(1001)).await?;
        if setup.as_ref().is_some_and(|s| s.state == vkhook::model::SetupState::Done) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the connect flow did not finish: {setup:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !bot_on {
        let page = http.get(format!("{app}/communities/1001")).send().await?.text().await?;
        let form = [("csrf", csrf(&page)?), ("default_reply", "Спасибо, ответим!".into())];
        http.post(format!("{app}/communities/1001/bot")).form(&form).send().await?;
    }
    let sealed = store.community_settings(GroupId(1001)).await?.and_then(|s| s.secret).expect("a secret");
    let vault = vkhook::vault::Vault::from_spec(&keys)?;
    let slot = vkhook::vault::Slot::new(vkhook::vault::Sealed::CallbackSecret, "1001");
    let secret: SecretString = vault.open(&slot, &sealed)?;
    if let Some(n) = arg("--burst").and_then(|n| n.parse::<usize>().ok()) {
        burst(&store, n).await?;
    }
    let forward = arg("--forward").and_then(|n| n.parse::<usize>().ok());
    let endpoint = if forward.is_some() || args.iter().any(|a| a == "--endpoint") {
        let endpoint = Endpoint::start().await?;
        let page = http.get(format!("{app}/communities/1001")).send().await?.text().await?;
        let form = [("csrf", csrf(&page)?), ("url", endpoint.url.clone()), ("name", "bench".into())];
        let added = http.post(format!("{app}/communities/1001/endpoints")).form(&form).send().await?;
        anyhow::ensure!(added.status() == 303, "adding the endpoint: {}", added.status());
        Some(endpoint)
    } else {
        None
    };
    if let (Some(n), Some(endpoint)) = (forward, &endpoint) {
        let latency = forward_latency(&app, secret.expose_secret(), endpoint).await?;
        let throughput = forward_throughput(&store, n, endpoint).await?;
        println!("FORWARD {{{latency},{throughput}}}");
        store.close().await;
        return Ok(());
    }
    store.close().await;
    println!(
        "READY {{\"port\":{port},\"secret\":\"{}\",\"pid\":{serve_pid},\"sandbox_pid\":{}}}",
        secret.expose_secret(),
        children.0[0].id()
    );
    // SIGTERM or Ctrl-C; the children go with `children`'s drop.
    vkhook::cli::shutdown_signal().await;
    Ok(())
}

/// Stores `n` pending `like_add` events of 1001 in batches of 500 and waits until the workers have finished them.
async fn burst(store: &vkhook::store::Store, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let now = vkhook::store::now_ms();
    let mut stored = 0;
    while stored < n {
        let batch: Vec<_> = (stored..(stored + 500).min(n))
            .map(|i| vkhook::store::NewInboxEvent {
                group_id: 1001,
                event_id: format!("b{i:039x}"),
                event_type: "like_add".into(),
                payload: format!(
                    r#"{{"type":"like_add","object":{{"liker_id":{},"object_type":"post","object_owner_id":-1001,"object_id":1,"thread_reply_id":0,"post_id":0}},"group_id":1001,"event_id":"b{i:039x}","v":"5.199"}}"#,
                    2 + i % 1000
                ),
                received_at: now,
                done_at_ingest: None,
                source: vkhook::model::Source::Callback,
                natural_key: None,
            })
            .collect();
        stored += batch.len();
        store.insert_inbox_batch(&batch).await?;
    }
    let stored_at = Instant::now();
    let deadline = stored_at + Duration::from_secs(120);
    while store.inbox_depth(Some(GroupId(1001))).await? > 0 {
        anyhow::ensure!(Instant::now() < deadline, "the burst was not finished in 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "BURST {{\"events\":{n},\"stored_ms\":{},\"finished_ms\":{}}}",
        stored_at.duration_since(started).as_millis(),
        stored_at.elapsed().as_millis()
    );
    Ok(())
}

/// A developer's endpoint that answers 204 at once and notes when each `webhook-id` first arrived.
struct Endpoint {
    url: String,
    arrived: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
}

impl Endpoint {
    async fn start() -> anyhow::Result<Endpoint> {
        use axum::http::HeaderMap;
        let arrived = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let seen = arrived.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                    seen.lock().unwrap().entry(id.to_owned()).or_insert_with(Instant::now);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Endpoint { url, arrived })
    }

    fn arrived(&self, id: &str) -> Option<Instant> {
        self.arrived.lock().unwrap().get(id).copied()
    }
}

fn like(event_id: &str, secret: &str, n: usize) -> String {
    format!(
        r#"{{"type":"like_add","object":{{"liker_id":{},"object_type":"post","object_owner_id":-1001,"object_id":1,"thread_reply_id":0,"post_id":0}},"group_id":1001,"event_id":"{event_id}","v":"5.199","secret":"{secret}"}}"#,
        2 + n % 1000
    )
}

/// 500 events/s for 20 s, POSTed as VK does; from each `ok` to the endpoint having the event.
async fn forward_latency(app: &str, secret: &str, endpoint: &Endpoint) -> anyhow::Result<String> {
    const RATE: u64 = 500;
    const SECONDS: u64 = 20;
    let http = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut sent = tokio::task::JoinSet::new();
    for n in 0..(RATE * SECONDS) as usize {
        tick.tick().await;
        let (http, url, body) = (http.clone(), format!("{app}/vk/callback"), like(&format!("l{n:039x}"), secret, n));
        sent.spawn(async move {
            let r = http.post(url).body(body).send().await?;
            anyhow::ensure!(r.text().await? == "ok", "not ok");
            Ok((format!("l{n:039x}"), Instant::now()))
        });
    }
    let mut acknowledged = Vec::new();
    while let Some(done) = sent.join_next().await {
        acknowledged.push(done??);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut waits = Vec::with_capacity(acknowledged.len());
    for (event_id, ok_at) in &acknowledged {
        let id = vkhook::forward::signing::webhook_id(GroupId(1001), event_id);
        let arrived = loop {
            if let Some(at) = endpoint.arrived(&id) {
                break at;
            }
            anyhow::ensure!(Instant::now() < deadline, "{event_id} never reached the endpoint");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        waits.push(arrived.saturating_duration_since(*ok_at).as_secs_f64() * 1000.0);
    }
    waits.sort_by(f64::total_cmp);
    let at = |q: f64| waits[((waits.len() as f64 * q) as usize).min(waits.len() - 1)];
    Ok(format!(
        "\"latency_events\":{},\"rate\":{RATE},\"p50_ms\":{:.1},\"p99_ms\":{:.1},\"max_ms\":{:.1}",
        waits.len(),
        at(0.5),
        at(0.99),
        waits[waits.len() - 1]
    ))
}

/// `n` events stored at once (their deliveries made in the same statements), until the endpoint has them all.
async fn forward_throughput(store: &vkhook::store::Store, n: usize, endpoint: &Endpoint) -> anyhow::Result<String> {
    let now = vkhook::store::now_ms();
    let ids: Vec<String> = (0..n).map(|i| format!("t{i:039x}")).collect();
    let started = Instant::now();
    for chunk in ids.chunks(500) {
        let batch: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, event_id)| vkhook::store::NewInboxEvent {
                group_id: 1001,
                event_id: event_id.clone(),
                event_type: "like_add".into(),
                payload: like(event_id, "", i).replace(r#","secret":"""#, ""),
                received_at: now,
                done_at_ingest: Some(vkhook::model::EventResult::Nothing {
                    reason: vkhook::model::Reason::NoAnswerNeeded,
                }),
                source: vkhook::model::Source::Callback,
                natural_key: None,
            })
            .collect();
        store.insert_inbox_batch(&batch).await?;
    }
    let stored = started.elapsed();
    let last = ids.last().map(|e| vkhook::forward::signing::webhook_id(GroupId(1001), e)).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let got = ids
            .iter()
            .filter(|e| endpoint.arrived(&vkhook::forward::signing::webhook_id(GroupId(1001), e)).is_some())
            .count();
        if got == n {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {got} of {n} forwarded in 300 s ({last})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    Ok(format!(
        "\"burst_events\":{n},\"stored_ms\":{},\"forwarded_ms\":{},\"events_per_s\":{:.0}",
        stored.as_millis(),
        took.as_millis(),
        n as f64 / took.as_secs_f64()
    ))
}
