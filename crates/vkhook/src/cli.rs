//! What each `vkhook` command does.

use std::path::Path;

use anyhow::Context;
use secrecy::SecretString;

use crate::config::{self, ConfigError, DatabaseArgs, DemoArgs, KeysArgs, Settings};
use crate::store::{Store, SEALED_COLUMNS};
use crate::vault::{Slot, Vault};
use crate::App;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = App::build(settings).await?;
    app.run_until_stopped(shutdown_signal()).await
}

pub async fn migrate(args: &DatabaseArgs) -> anyhow::Result<()> {
    config::check_database_url(&args.database_url)?;
    let store = Store::connect(&args.database_url).await.context("opening the database")?;
    let applied = store.migrate().await?;
    let all = store.applied_migrations().await?;
    println!("migrations applied now: {applied:?}; database at version {}", all.last().copied().unwrap_or(0));
    Ok(())
}

/// Re-seals every stored token and secret with the first key. Returns how many values changed.
pub async fn rotate_keys(store: &Store, vault: &Vault) -> anyhow::Result<usize> {
    let mut changed = 0;
    for &(table, key, column) in SEALED_COLUMNS {
        for cell in store.sealed_values(table, key, column).await? {
            let slot = Slot { table, column, row: &cell.row };
            let resealed = vault.reseal(slot, &cell.value).with_context(|| {
                format!("{table}.{column} of row {}: cannot decrypt with the configured keys", cell.row)
            })?;
            if let Some(new) = resealed {
                if store.replace_sealed_value((table, key, column), &cell.row, &cell.value, &new).await? {
                    changed += 1;
                }
            }
        }
    }
    Ok(changed)
}

pub async fn keys_rotate(args: &KeysArgs) -> anyhow::Result<()> {
    let spec = args
        .token_keys
        .clone()
        .filter(|k| !k.trim().is_empty())
        .ok_or(ConfigError::Missing { env: "VKHOOK_TOKEN_KEYS", flag: "token-keys" })?;
    let vault = Vault::from_spec(&SecretString::from(spec))
        .map_err(|e| ConfigError::Invalid { env: "VKHOOK_TOKEN_KEYS", reason: e.to_string() })?;
    let store = Store::connect(&args.db.database_url).await.context("opening the database")?;
    store.migrate().await?;
    let changed = rotate_keys(&store, &vault).await?;
    println!("re-encrypted {changed} value(s) with key {:?}", vault.current_key_id());
    Ok(())
}

/// The sandbox's time factor in the demo: VK's retry waits, twenty times shorter.
const DEMO_TIME_FACTOR: f64 = 0.05;

pub async fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let sandbox = vk_sandbox::Sandbox::start(vk_sandbox::SandboxConfig {
        bind: ([127, 0, 0, 1], args.sandbox_port).into(),
        time_factor: DEMO_TIME_FACTOR,
        ..Default::default()
    })
    .await
    .with_context(|| format!("starting the VK sandbox on port {}", args.sandbox_port))?;
    let settings = demo_settings(args, &sandbox)?;
    let app = App::build(settings).await?;
    let app_url = format!("http://{}", app.addr());
    println!();
    println!("  vkhook demo — everything runs offline against a built-in VK sandbox.");
    println!();
    println!("  App:          {app_url}");
    println!("  VK sandbox:   {}", sandbox.url());
    println!();
    println!("  1. Open {app_url} and press «Войти через VK ID»; pick «Анна Админова» on the sandbox page.");
    println!("  2. Open «Кофейня «Зерно»» and press «Подключить Callback API».");
    println!("  3. Comment as «Иван Читатель» on {} and watch the bot answer.", sandbox.url());
    println!();
    println!("  Data: {} (fresh for every demo run; the key file is kept). Ctrl-C stops.", args.data_dir.display());
    app.run_until_stopped(shutdown_signal()).await
}

/// Settings for the demo: the sandbox's URLs and app credentials, SQLite and a key file under the data dir.
pub fn demo_settings(args: &DemoArgs, sandbox: &vk_sandbox::Sandbox) -> anyhow::Result<Settings> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // The sandbox world is new on every start, so the demo's database is too.
    for name in ["vkhook.db", "vkhook.db-wal", "vkhook.db-shm"] {
        remove_if_present(&dir.join(name))?;
    }
    let keys = Vault::load_or_create_key_file(&dir.join("token.keys")).context("the demo key file")?;
    let bind = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let database_url = format!("sqlite://{}", dir.join("vkhook.db").display());
    let mut settings = Settings::for_sandbox(sandbox, bind, database_url, keys);
    settings.public_url = Some(url::Url::parse(&format!("http://127.0.0.1:{}", args.port)).expect("a loopback URL"));
    Ok(settings)
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

pub async fn sandbox(port: u16) -> anyhow::Result<()> {
    let sandbox = vk_sandbox::Sandbox::start(vk_sandbox::SandboxConfig {
        bind: ([127, 0, 0, 1], port).into(),
        ..Default::default()
    })
    .await
    .with_context(|| format!("starting the VK sandbox on port {port}"))?;
    println!("VK sandbox: {}", sandbox.url());
    shutdown_signal().await;
    Ok(())
}
