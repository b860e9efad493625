//! What the load benchmark (benches/load/run.sh) sends its traffic to.
//!
//! - `load_target bare --port P`: a bare hyper handler that reads the body and answers `ok` without parsing —
//!   the ceiling for any receiver on this machine.
//! - `load_target vkhook --port P [--database-url URL] [--role web|all]`: vkhook's real receiver with community
//!   1001 connected (its secret printed), storing every event durably before `ok`. No VK is needed: the hot path
//!   makes no VK call, and the bot is off for the community.
//!
//! Prints one line `READY {"port":…,"secret":…,"pid":…}` when it accepts connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use vk::GroupId;

use secrecy::{ExposeSecret, SecretString};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let port: u16 = arg("--port").map(|p| p.parse()).transpose()?.unwrap_or(0);
    match args.get(1).map(String::as_str) {
        Some("bare") => bare(port).await,
        Some("vkhook") => vkhook(port, arg("--database-url"), arg("--role")).await,
        _ => anyhow::bail!("usage: load_target bare|vkhook --port P [--database-url URL] [--role web|all]"),
    }
}

async fn bare(port: u16) -> anyhow::Result<()> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("READY {{\"port\":{},\"secret\":\"\",\"pid\":{}}}", listener.local_addr()?.port(), std::process::id());
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let _ = req.into_body().collect().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

async fn vkhook(port: u16, database_url: Option<String>, role: Option<String>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("vkhook-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let database_url = database_url.unwrap_or_else(|| format!("sqlite://{}/vkhook.db", dir.display()));
    let role = match role.as_deref() {
        Some("all") => vkhook::config::Role::All,
        _ => vkhook::config::Role::Web,
    };
    let unused = url::Url::parse("http://127.0.0.1:9/")?;
    let settings = vkhook::Settings {
        role,
        bind: SocketAddr::from(([127, 0, 0, 1], port)),
        public_url: None,
        database_url,
        vk: vkhook::config::VkSettings {
            client_id: "1".into(),
            client_secret: SecretString::from("unused"),
            api_url: unused.clone(),
            oauth_url: unused.clone(),
            id_url: unused,
            vkid_scopes: vec![],
            community_scopes: vec!["manage".into()],
            request_timeout: std::time::Duration::from_secs(5),
            retry: vk::RetryPolicy::none(),
            user_per_second: 3,
            community_per_second: 20,
        },
        token_keys: vkhook::vault::Vault::generate_spec("load"),
        timing: vkhook::config::Timing::default(),
        metrics: Default::default(),
        forward: Default::default(),
        alerts: Default::default(),
    };
    let app = vkhook::App::build(settings).await?;
    let state = app.state().clone();
    let secret = vkhook::credentials::new_callback_secret();
    vkhook::app::testing::connect_for_load(&state, GroupId(1001), &secret).await?;
    println!(
        "READY {{\"port\":{},\"secret\":\"{}\",\"pid\":{}}}",
        app.port(),
        secret.expose_secret(),
        std::process::id()
    );
    app.run_until_stopped(vkhook::cli::shutdown_signal()).await?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
