//! The command line: its types (clap, with `env = "VKHOOK_…"`), how `serve`'s arguments become [`Settings`], and
//! what each `vkhook` command does.

#[cfg(feature = "demo")]
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use crate::config::{
    check_database_url, is_loopback, parse_url, ConfigError, ForwardSettings, MetricsAccess, Role, Settings, Timing,
    VkSettings,
};
use crate::store::Store;
use crate::vault::{Sealed, Slot, Vault};
use crate::App;

#[derive(Debug, Parser)]
#[command(name = "vkhook", version, about = "Connects VK communities to a bot in one click")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service against real VK (settings from VKHOOK_* variables or flags).
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Run the app and a built-in VK sandbox offline, with a fresh demo world.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Run the VK sandbox alone.
    #[cfg(feature = "demo")]
    Sandbox {
        #[arg(long, default_value_t = 8081)]
        port: u16,
        /// Also communities 2001…2000+N, administered by «Анна Админова» (user 1): an admin of many communities.
        #[arg(long, default_value_t = 0)]
        extra_communities: usize,
    },
    /// Manage the keys that encrypt tokens at rest.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-encrypt every stored token and secret with the first key of VKHOOK_TOKEN_KEYS.
    Rotate(KeysArgs),
    /// Print a new random key (`id:base64`) to put first in VKHOOK_TOKEN_KEYS.
    Generate {
        #[arg(long, default_value = "k1")]
        id: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://path` (created if missing) or `postgres://user@host/db`.
    #[arg(long, env = "VKHOOK_DATABASE_URL", default_value = "sqlite://data/vkhook.db")]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// `id:base64key[,id:base64key…]`: the first encrypts, all decrypt.
    #[arg(long, env = "VKHOOK_TOKEN_KEYS", hide_env_values = true)]
    pub token_keys: Option<Hidden>,
}

/// What an instance runs: the web side (UI and `/vk/callback`), the workers (bot, reconcile), or both.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// What this instance runs: web (UI and /vk/callback), worker (bot and reconcile) or all.
    #[arg(long, env = "VKHOOK_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// Address to listen on.
    #[arg(long, env = "VKHOOK_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// The https base URL VK and browsers reach this service at (its callback URL is `<this>/vk/callback`).
    #[arg(long, env = "VKHOOK_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The VK ID app's id.
    #[arg(long, env = "VKHOOK_VK_CLIENT_ID")]
    pub vk_client_id: Option<String>,
    /// The VK ID app's secret key (needed for community tokens at oauth.vk.com).
    #[arg(long, env = "VKHOOK_VK_CLIENT_SECRET", hide_env_values = true)]
    pub vk_client_secret: Option<Hidden>,
    /// `id:base64key[,id:base64key…]`: keys that encrypt tokens at rest; the first encrypts, all decrypt.
    #[arg(long, env = "VKHOOK_TOKEN_KEYS", hide_env_values = true)]
    pub token_keys: Option<Hidden>,
    #[arg(long, env = "VKHOOK_VK_API_URL", default_value = "https://api.vk.com")]
    pub vk_api_url: String,
    #[arg(long, env = "VKHOOK_VK_OAUTH_URL", default_value = "https://oauth.vk.com")]
    pub vk_oauth_url: String,
    #[arg(long, env = "VKHOOK_VK_ID_URL", default_value = "https://id.vk.com")]
    pub vk_id_url: String,
    /// VK ID scopes to ask for at sign-in (space-separated); without `groups` admins add communities by link.
    #[arg(long, env = "VKHOOK_VKID_SCOPES", default_value = crate::config::DEFAULT_VKID_SCOPES)]
    pub vkid_scopes: String,
    /// Community token scopes to ask for when connecting (comma-separated).
    #[arg(long, env = "VKHOOK_COMMUNITY_SCOPES", default_value = crate::config::DEFAULT_COMMUNITY_SCOPES)]
    pub community_scopes: String,
    /// How long a worker holds an event (and its community); after a crash another instance takes over after this.
    #[arg(long, env = "VKHOOK_BOT_LEASE_SECS", default_value_t = Timing::default().bot_lease.as_secs())]
    pub bot_lease_secs: u64,
    /// Requests per second per community token (VK allows 20; raise only against a sandbox).
    #[arg(long, env = "VKHOOK_VK_COMMUNITY_RPS", default_value_t = crate::config::COMMUNITY_PER_SECOND)]
    pub vk_community_rps: u32,
    /// Seconds between reconcile passes (VK's view of every connected community compared with ours).
    #[arg(long, env = "VKHOOK_RECONCILE_SECS", default_value_t = Timing::default().reconcile_every.as_secs())]
    pub reconcile_secs: u64,
    /// Serve /metrics and /healthz on this address instead of the main one (keep metrics off the public port).
    #[arg(long, env = "VKHOOK_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    /// Require `Authorization: Bearer <this>` for /metrics.
    #[arg(long, env = "VKHOOK_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Hidden>,
    /// Let forwarding endpoints be plain http on a loopback address (a receiver on this machine). Off: https and a
    /// public address only.
    #[arg(long, env = "VKHOOK_FORWARD_ALLOW_LOOPBACK_HTTP")]
    pub forward_allow_loopback_http: bool,
    /// The waits between a forwarded event's attempts, e.g. `5s,5m,30m,2h,5h,10h,10h` (the default).
    #[arg(long, env = "VKHOOK_FORWARD_RETRY_SCHEDULE",
          default_value_t = crate::forward::attempt::Schedule::default().to_string())]
    pub forward_retry_schedule: String,
    /// Where alert e-mails go out: `smtp://host:25`, `smtps://user:password@host`, `smtp://host:587?tls=required`.
    #[arg(long, env = "VKHOOK_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Hidden>,
    /// The From of alert e-mails.
    #[arg(long, env = "VKHOOK_SMTP_FROM", default_value_t = crate::alerts::AlertSettings::default().smtp_from)]
    pub smtp_from: String,
    /// An instance holds an endpoint's claimed deliveries this long; if it dies, another sends them after.
    #[arg(long, env = "VKHOOK_FORWARD_LEASE_SECS", default_value_t = ForwardSettings::default().lease.as_secs())]
    pub forward_lease_secs: u64,
    /// An endpoint failing without a success this many hours is disabled.
    #[arg(long, env = "VKHOOK_FORWARD_DISABLE_AFTER_HOURS",
          default_value_t = ForwardSettings::default().disable_after.as_secs() / 3600)]
    pub forward_disable_after_hours: u64,
    /// Forwarding endpoints one community may have.
    #[arg(long, env = "VKHOOK_FORWARD_MAX_ENDPOINTS", default_value_t = ForwardSettings::default().max_endpoints)]
    pub forward_max_endpoints: i64,
}

/// `5s,5m,30m,2h` as waits (`s`, `m`, `h` or `d` after each number).
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { env: "VKHOOK_FORWARD_RETRY_SCHEDULE", reason };
    text.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| {
            let (n, unit) = w.split_at(w.len() - w.chars().last().map_or(0, char::len_utf8));
            let n: u64 = n.parse().map_err(|_| invalid(format!("{w:?} is not a number and s, m, h or d")))?;
            let secs = match unit {
                "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                "d" => n * 86400,
                _ => return Err(invalid(format!("{w:?} does not end in s, m, h or d"))),
            };
            Ok(Duration::from_secs(secs))
        })
        .collect()
}

#[cfg(feature = "demo")]
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    #[arg(long, default_value_t = 8081)]
    pub sandbox_port: u16,
    #[arg(long, default_value = "data/demo")]
    pub data_dir: PathBuf,
    /// Also communities 2001…2000+N, administered by «Анна Админова» (user 1): an admin of many communities.
    #[arg(long, default_value_t = 0)]
    pub extra_communities: usize,
}

/// A setting that stops start-up, in one line.
fn required(value: Option<&str>, env: &'static str, flag: &'static str) -> Result<String, ConfigError> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(ConfigError::Missing { env, flag }),
    }
}

/// A setting that is a secret (a key, a password, a token): read like any string, never shown by `Debug` — not in
/// clap's own output, not in a panic message.
#[derive(Clone, PartialEq, Eq)]
pub struct Hidden(String);

impl Hidden {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Hidden {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Hidden, Self::Err> {
        Ok(Hidden(s.to_owned()))
    }
}

impl From<&str> for Hidden {
    fn from(s: &str) -> Hidden {
        Hidden(s.to_owned())
    }
}

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[hidden]")
    }
}

impl ServeArgs {
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let bind = self.bind.parse().map_err(|_| ConfigError::Invalid {
            env: "VKHOOK_BIND",
            reason: format!("{:?} is not host:port", self.bind),
        })?;
        let public_url =
            parse_url(&required(self.public_url.as_deref(), "VKHOOK_PUBLIC_URL", "public-url")?, "VKHOOK_PUBLIC_URL")?;
        if public_url.scheme() != "https" && !is_loopback(&public_url) {
            return Err(ConfigError::Invalid {
                env: "VKHOOK_PUBLIC_URL",
                reason: "VK calls this address: it must be https (http only for a loopback address)".into(),
            });
        }
        let client_id = required(self.vk_client_id.as_deref(), "VKHOOK_VK_CLIENT_ID", "vk-client-id")?;
        if !client_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(ConfigError::Invalid {
                env: "VKHOOK_VK_CLIENT_ID",
                reason: "must be the app's numeric id".into(),
            });
        }
        let secret = self.vk_client_secret.as_ref().map(Hidden::expose);
        let client_secret = SecretString::from(required(secret, "VKHOOK_VK_CLIENT_SECRET", "vk-client-secret")?);
        let keys = self.token_keys.as_ref().map(Hidden::expose);
        let token_keys = SecretString::from(required(keys, "VKHOOK_TOKEN_KEYS", "token-keys")?);
        Vault::from_spec(&token_keys)
            .map_err(|e| ConfigError::Invalid { env: "VKHOOK_TOKEN_KEYS", reason: e.to_string() })?;
        let community_scopes = crate::config::split_scopes(&self.community_scopes);
        for s in &community_scopes {
            if vk::CommunityScope::parse(s).is_none() {
                return Err(ConfigError::Invalid {
                    env: "VKHOOK_COMMUNITY_SCOPES",
                    reason: format!("unknown scope {s:?}"),
                });
            }
        }
        if !community_scopes.iter().any(|s| s == "manage") {
            return Err(ConfigError::Invalid {
                env: "VKHOOK_COMMUNITY_SCOPES",
                reason: "must include manage (callback servers need it)".into(),
            });
        }
        check_database_url(&self.db.database_url)?;
        let metrics_bind = match self.metrics_bind.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(b) => Some(b.parse().map_err(|_| ConfigError::Invalid {
                env: "VKHOOK_METRICS_BIND",
                reason: format!("{b:?} is not host:port"),
            })?),
        };
        let metrics_token = self.metrics_token.as_ref().map(|t| t.expose().trim()).filter(|s| !s.is_empty());
        let smtp_url =
            self.smtp_url.as_ref().map(|u| u.expose().trim()).filter(|u| !u.is_empty()).map(SecretString::from);
        if let Some(url) = &smtp_url {
            crate::alerts::mailer(url).map_err(|reason| ConfigError::Invalid { env: "VKHOOK_SMTP_URL", reason })?;
        }
        Ok(Settings {
            role: self.role,
            bind,
            public_url: Some(public_url),
            database_url: self.db.database_url.clone(),
            vk: VkSettings {
                client_id,
                client_secret,
                api_url: parse_url(&self.vk_api_url, "VKHOOK_VK_API_URL")?,
                oauth_url: parse_url(&self.vk_oauth_url, "VKHOOK_VK_OAUTH_URL")?,
                id_url: parse_url(&self.vk_id_url, "VKHOOK_VK_ID_URL")?,
                vkid_scopes: crate::config::split_scopes(&self.vkid_scopes),
                community_scopes,
                request_timeout: Duration::from_secs(10),
                retry: vk::RetryPolicy::default(),
                user_per_second: 3,
                community_per_second: self.vk_community_rps.max(1),
            },
            token_keys,
            timing: Timing {
                bot_lease: Duration::from_secs(self.bot_lease_secs.max(1)),
                reconcile_every: Duration::from_secs(self.reconcile_secs.max(1)),
                ..Timing::default()
            },
            metrics: MetricsAccess { bind: metrics_bind, token: metrics_token.map(SecretString::from) },
            forward: ForwardSettings {
                policy: crate::forward::target::Policy { allow_loopback_http: self.forward_allow_loopback_http },
                schedule: crate::forward::attempt::Schedule::new(parse_schedule(&self.forward_retry_schedule)?),
                disable_after: Duration::from_secs(self.forward_disable_after_hours.max(1) * 3600),
                lease: Duration::from_secs(self.forward_lease_secs.max(1)),
                max_endpoints: self.forward_max_endpoints.max(1),
                ..ForwardSettings::default()
            },
            alerts: crate::alerts::AlertSettings { smtp_url, smtp_from: self.smtp_from.clone(), ..Default::default() },
        })
    }
}

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
    check_database_url(&args.database_url)?;
    let store = Store::connect(&args.database_url).await.context("opening the database")?;
    let applied = store.migrate().await?;
    let all = store.applied_migrations().await?;
    println!("migrations applied now: {applied:?}; database at version {}", all.last().copied().unwrap_or(0));
    Ok(())
}

/// Re-seals every stored token and secret with the first key. Returns how many values changed.
pub async fn rotate_keys(store: &Store, vault: &Vault) -> anyhow::Result<usize> {
    let mut changed = 0;
    for &sealed in Sealed::ALL {
        let (table, _, column) = sealed.location();
        for cell in store.sealed_values(sealed).await? {
            let slot = Slot::new(sealed, cell.row.as_str());
            let resealed = vault.reseal(&slot, &cell.value).with_context(|| {
                format!("{table}.{column} of row {}: cannot decrypt with the configured keys", cell.row)
            })?;
            if let Some(new) = resealed {
                if store.replace_sealed_value(sealed, &cell.row, &cell.value, &new).await? {
                    changed += 1;
                }
            }
        }
    }
    Ok(changed)
}

pub async fn keys_rotate(args: &KeysArgs) -> anyhow::Result<()> {
    let spec = required(args.token_keys.as_ref().map(Hidden::expose), "VKHOOK_TOKEN_KEYS", "token-keys")?;
    let vault = Vault::from_spec(&SecretString::from(spec))
        .map_err(|e| ConfigError::Invalid { env: "VKHOOK_TOKEN_KEYS", reason: e.to_string() })?;
    let store = Store::connect(&args.db.database_url).await.context("opening the database")?;
    store.migrate().await?;
    let changed = rotate_keys(&store, &vault).await?;
    println!("re-encrypted {changed} value(s) with key {:?}", vault.current_key_id());
    Ok(())
}

/// Runs the command the command line names.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args.settings()?).await,
        Command::Migrate(args) => migrate(&args).await,
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo(&args).await,
        #[cfg(feature = "demo")]
        Command::Sandbox { port, extra_communities } => sandbox(port, extra_communities).await,
        Command::Keys { action: KeysCommand::Rotate(args) } => keys_rotate(&args).await,
        Command::Keys { action: KeysCommand::Generate { id } } => {
            println!("{}", secrecy::ExposeSecret::expose_secret(&Vault::generate_spec(&id)));
            Ok(())
        }
    }
}

/// The sandbox's time factor in the demo: VK's retry waits, twenty times shorter.
#[cfg(feature = "demo")]
const DEMO_TIME_FACTOR: f64 = 0.05;

#[cfg(feature = "demo")]
pub async fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let sandbox = vk_sandbox::Sandbox::start(vk_sandbox::SandboxConfig {
        bind: ([127, 0, 0, 1], args.sandbox_port).into(),
        time_factor: DEMO_TIME_FACTOR,
        extra_communities: args.extra_communities,
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
    if let Some(more) = extra_communities_line(args.extra_communities) {
        println!("  {more}");
    }
    println!();
    println!("  Data: {} (fresh for every demo run; the key file is kept). Ctrl-C stops.", args.data_dir.display());
    app.run_until_stopped(shutdown_signal()).await
}

#[cfg(feature = "demo")]
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
    // No public URL: the app's own address once bound (`--port 0` picks a free port, and the banner says which).
    Ok(Settings::for_sandbox(sandbox, bind, database_url, keys))
}

#[cfg(feature = "demo")]
fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The banner's line about `--extra-communities`.
#[cfg(feature = "demo")]
fn extra_communities_line(n: usize) -> Option<String> {
    match n {
        0 => None,
        1 => Some("Also: «Сообщество 2001» (2001), administered by «Анна Админова».".into()),
        n => Some(format!(
            "Also: {n} more communities, «Сообщество 2001» … «Сообщество {}» (2001…{}), administered by «Анна Админова».",
            2000 + n,
            2000 + n
        )),
    }
}

#[cfg(feature = "demo")]
pub async fn sandbox(port: u16, extra_communities: usize) -> anyhow::Result<()> {
    let sandbox = vk_sandbox::Sandbox::start(vk_sandbox::SandboxConfig {
        bind: ([127, 0, 0, 1], port).into(),
        extra_communities,
        ..Default::default()
    })
    .await
    .with_context(|| format!("starting the VK sandbox on port {port}"))?;
    println!("VK sandbox: {}", sandbox.url());
    if let Some(more) = extra_communities_line(extra_communities) {
        println!("{more}");
    }
    shutdown_signal().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        let keys = crate::vault::Vault::generate_spec("k1");
        ServeArgs {
            role: Role::All,
            bind: "127.0.0.1:8080".into(),
            public_url: Some("https://hook.example.com".into()),
            db: DatabaseArgs { database_url: "sqlite://data/vkhook.db".into() },
            vk_client_id: Some("51900001".into()),
            vk_client_secret: Some("secret".into()),
            token_keys: Some(secrecy::ExposeSecret::expose_secret(&keys).into()),
            vk_api_url: "https://api.vk.com".into(),
            vk_oauth_url: "https://oauth.vk.com".into(),
            vk_id_url: "https://id.vk.com".into(),
            vkid_scopes: crate::config::DEFAULT_VKID_SCOPES.into(),
            community_scopes: crate::config::DEFAULT_COMMUNITY_SCOPES.into(),
            bot_lease_secs: 60,
            vk_community_rps: 20,
            reconcile_secs: 300,
            metrics_bind: None,
            metrics_token: None,
            forward_allow_loopback_http: false,
            forward_retry_schedule: "5s,5m,30m,2h,5h,10h,10h".into(),
            forward_disable_after_hours: 120,
            forward_lease_secs: 60,
            forward_max_endpoints: 10,
            smtp_url: None,
            smtp_from: "vkhook <vkhook@localhost>".into(),
        }
    }

    #[test]
    fn forwarding_is_https_to_public_addresses_unless_told_and_its_schedule_is_read() {
        let s = args().settings().unwrap();
        assert!(!s.forward.policy.allow_loopback_http, "serve refuses loopback http by default");
        assert_eq!(s.forward.schedule, crate::forward::attempt::Schedule::default());
        assert_eq!(s.forward.disable_after, Duration::from_secs(5 * 24 * 3600));
        let mut a = args();
        a.forward_allow_loopback_http = true;
        a.forward_retry_schedule = "1s, 2m,3h,1d".into();
        let s = a.settings().unwrap();
        assert!(s.forward.policy.allow_loopback_http);
        let waits = [1, 120, 3 * 3600, 86400].map(Duration::from_secs).to_vec();
        assert_eq!(s.forward.schedule, crate::forward::attempt::Schedule::new(waits));
        for bad in ["5", "5x", "s", "1s,,x", "5м"] {
            let mut a = args();
            a.forward_retry_schedule = bad.into();
            let err = a.settings().unwrap_err();
            assert!(err.to_string().contains("VKHOOK_FORWARD_RETRY_SCHEDULE"), "{bad}: {err}");
        }
    }

    #[test]
    fn good_settings_are_accepted() {
        let s = args().settings().unwrap();
        assert_eq!(s.vk.community_scopes, vec!["manage", "messages"]);
        assert_eq!(s.vk.vkid_scopes, vec!["vkid.personal_info", "groups"]);
    }

    #[test]
    fn a_missing_setting_is_named_in_one_line() {
        let mut a = args();
        a.public_url = None;
        let err = a.settings().unwrap_err();
        assert_eq!(err.to_string(), "missing setting VKHOOK_PUBLIC_URL (--public-url)");
        let mut a = args();
        a.token_keys = Some("  ".into());
        assert_eq!(a.settings().unwrap_err(), ConfigError::Missing { env: "VKHOOK_TOKEN_KEYS", flag: "token-keys" });
    }

    #[test]
    fn http_public_url_is_refused_unless_loopback() {
        let mut a = args();
        a.public_url = Some("http://hook.example.com".into());
        assert!(matches!(a.settings(), Err(ConfigError::Invalid { env: "VKHOOK_PUBLIC_URL", .. })));
        for ok in ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"] {
            a.public_url = Some(ok.into());
            assert!(a.settings().is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_settings_say_what_is_wrong() {
        let mut a = args();
        a.token_keys = Some("k1:tooshort".into());
        let err = a.settings().unwrap_err().to_string();
        assert!(err.starts_with("setting VKHOOK_TOKEN_KEYS is invalid"), "{err}");
        assert!(!err.contains('\n'));
        let mut a = args();
        a.community_scopes = "messages".into();
        assert!(a.settings().unwrap_err().to_string().contains("manage"));
        let mut a = args();
        a.db.database_url = "mysql://x".into();
        assert!(matches!(a.settings(), Err(ConfigError::Invalid { env: "VKHOOK_DATABASE_URL", .. })));
        let mut a = args();
        a.bind = "nowhere".into();
        assert!(matches!(a.settings(), Err(ConfigError::Invalid { env: "VKHOOK_BIND", .. })));
    }
}
