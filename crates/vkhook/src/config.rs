//! Command line and `VKHOOK_*` settings. A missing or malformed setting stops start-up with one line naming it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;
use url::Url;

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
    Demo(DemoArgs),
    /// Run the VK sandbox alone.
    Sandbox {
        #[arg(long, default_value_t = 8081)]
        port: u16,
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
    pub token_keys: Option<String>,
}

/// What an instance runs: the web side (UI and `/vk/callback`), the workers (bot, reconcile), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Role {
    #[default]
    All,
    Web,
    Worker,
}

impl Role {
    pub fn serves_http(self) -> bool {
        matches!(self, Role::All | Role::Web)
    }

    pub fn runs_workers(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

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
    pub vk_client_secret: Option<String>,
    /// `id:base64key[,id:base64key…]`: keys that encrypt tokens at rest; the first encrypts, all decrypt.
    #[arg(long, env = "VKHOOK_TOKEN_KEYS", hide_env_values = true)]
    pub token_keys: Option<String>,
    #[arg(long, env = "VKHOOK_VK_API_URL", default_value = "https://api.vk.com")]
    pub vk_api_url: String,
    #[arg(long, env = "VKHOOK_VK_OAUTH_URL", default_value = "https://oauth.vk.com")]
    pub vk_oauth_url: String,
    #[arg(long, env = "VKHOOK_VK_ID_URL", default_value = "https://id.vk.com")]
    pub vk_id_url: String,
    /// VK ID scopes to ask for at sign-in (space-separated); without `groups` admins add communities by link.
    #[arg(long, env = "VKHOOK_VKID_SCOPES", default_value = "vkid.personal_info groups")]
    pub vkid_scopes: String,
    /// Community token scopes to ask for when connecting (comma-separated).
    #[arg(long, env = "VKHOOK_COMMUNITY_SCOPES", default_value = "manage,messages,wall")]
    pub community_scopes: String,
    /// How long a worker holds an event (and its community); after a crash another instance takes over after this.
    #[arg(long, env = "VKHOOK_BOT_LEASE_SECS", default_value_t = 60)]
    pub bot_lease_secs: u64,
    /// Requests per second per community token (VK allows 20; raise only against a sandbox).
    #[arg(long, env = "VKHOOK_VK_COMMUNITY_RPS", default_value_t = 20)]
    pub vk_community_rps: u32,
    /// Seconds between reconcile passes (VK's view of every connected community compared with ours).
    #[arg(long, env = "VKHOOK_RECONCILE_SECS", default_value_t = 300)]
    pub reconcile_secs: u64,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    #[arg(long, default_value_t = 8081)]
    pub sandbox_port: u16,
    #[arg(long, default_value = "data/demo")]
    pub data_dir: PathBuf,
}

/// A setting that stops start-up, in one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing setting {env} (--{flag})")]
    Missing { env: &'static str, flag: &'static str },
    #[error("setting {env} is invalid: {reason}")]
    Invalid { env: &'static str, reason: String },
}

/// Everything the app needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub role: Role,
    pub bind: SocketAddr,
    /// The base URL VK and browsers use. `None`: `http://<bound address>` (tests).
    pub public_url: Option<Url>,
    pub database_url: String,
    pub vk: VkSettings,
    pub token_keys: SecretString,
    pub timing: Timing,
}

#[derive(Debug, Clone)]
pub struct VkSettings {
    pub client_id: String,
    pub client_secret: SecretString,
    pub api_url: Url,
    pub oauth_url: Url,
    pub id_url: Url,
    pub vkid_scopes: Vec<String>,
    pub community_scopes: Vec<String>,
    pub request_timeout: Duration,
    /// How VK calls are retried on transient errors.
    pub retry: vk::RetryPolicy,
    /// VK's request limits per token (3/s for user tokens, 20/s for community tokens).
    pub user_per_second: u32,
    pub community_per_second: u32,
}

/// Durations the service waits; tests shorten them.
#[derive(Debug, Clone)]
pub struct Timing {
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub session_absolute: Duration,
    /// How often the connect flow asks VK whether it confirmed our server.
    pub setup_poll: Duration,
    /// How long the connect flow waits for VK's confirmation.
    pub setup_confirm_timeout: Duration,
    /// A setup runner holds its lease this long between steps; a crashed run is resumed after it.
    pub setup_lease: Duration,
    /// A bot worker holds an event this long; if it dies, another takes the event after it.
    pub bot_lease: Duration,
    /// How often an idle worker looks for due events (new events wake it at once).
    pub bot_poll: Duration,
    /// Waits between attempts of an event whose reply failed transiently.
    pub bot_retry: vk::Backoff,
    /// Attempts before an event is given up as dead.
    pub bot_max_attempts: i64,
    /// Events handled at once (each from a different community).
    pub bot_concurrency: usize,
    /// How often VK's view of every connected community is compared with ours.
    pub reconcile_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            session_idle: Duration::from_secs(2 * 24 * 3600),
            session_absolute: Duration::from_secs(14 * 24 * 3600),
            setup_poll: Duration::from_millis(250),
            setup_confirm_timeout: Duration::from_secs(20),
            setup_lease: Duration::from_secs(30),
            bot_lease: Duration::from_secs(60),
            bot_poll: Duration::from_millis(500),
            bot_retry: vk::Backoff::new(Duration::from_secs(2), Duration::from_secs(300)),
            bot_max_attempts: 8,
            bot_concurrency: 32,
            reconcile_every: Duration::from_secs(300),
        }
    }
}

impl Settings {
    /// vkhook against a VK sandbox (the demo, tests, benchmarks): the sandbox's hosts and app credentials, the
    /// standard scopes and limits, default timing. Adjust fields after.
    pub fn for_sandbox(
        sandbox: &vk_sandbox::Sandbox,
        bind: SocketAddr,
        database_url: String,
        token_keys: SecretString,
    ) -> Settings {
        let url = |s: String| Url::parse(&s).expect("sandbox URLs are valid");
        Settings {
            role: Role::All,
            bind,
            public_url: None,
            database_url,
            vk: VkSettings {
                client_id: sandbox.config().client_id.clone(),
                client_secret: SecretString::from(sandbox.config().client_secret.clone()),
                api_url: url(sandbox.api_url()),
                oauth_url: url(sandbox.oauth_url()),
                id_url: url(sandbox.id_url()),
                vkid_scopes: vec!["vkid.personal_info".into(), "groups".into()],
                community_scopes: vec!["manage".into(), "messages".into(), "wall".into()],
                request_timeout: Duration::from_secs(10),
                retry: vk::RetryPolicy::default(),
                user_per_second: 3,
                community_per_second: 20,
            },
            token_keys,
            timing: Timing::default(),
        }
    }
}

fn required(value: &Option<String>, env: &'static str, flag: &'static str) -> Result<String, ConfigError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(ConfigError::Missing { env, flag }),
    }
}

pub fn parse_url(value: &str, env: &'static str) -> Result<Url, ConfigError> {
    let url =
        Url::parse(value).map_err(|e| ConfigError::Invalid { env, reason: format!("{value:?} is not a URL ({e})") })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::Invalid { env, reason: format!("{value:?} is not an http(s) URL") });
    }
    Ok(url)
}

/// True for 127.0.0.0/8, ::1 and `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

fn split_scopes(s: &str) -> Vec<String> {
    s.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl ServeArgs {
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let bind = self.bind.parse().map_err(|_| ConfigError::Invalid {
            env: "VKHOOK_BIND",
            reason: format!("{:?} is not host:port", self.bind),
        })?;
        let public_url =
            parse_url(&required(&self.public_url, "VKHOOK_PUBLIC_URL", "public-url")?, "VKHOOK_PUBLIC_URL")?;
        if public_url.scheme() != "https" && !is_loopback(&public_url) {
            return Err(ConfigError::Invalid {
                env: "VKHOOK_PUBLIC_URL",
                reason: "VK calls this address: it must be https (http only for a loopback address)".into(),
            });
        }
        let client_id = required(&self.vk_client_id, "VKHOOK_VK_CLIENT_ID", "vk-client-id")?;
        if !client_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(ConfigError::Invalid {
                env: "VKHOOK_VK_CLIENT_ID",
                reason: "must be the app's numeric id".into(),
            });
        }
        let client_secret =
            SecretString::from(required(&self.vk_client_secret, "VKHOOK_VK_CLIENT_SECRET", "vk-client-secret")?);
        let token_keys = SecretString::from(required(&self.token_keys, "VKHOOK_TOKEN_KEYS", "token-keys")?);
        crate::vault::Vault::from_spec(&token_keys)
            .map_err(|e| ConfigError::Invalid { env: "VKHOOK_TOKEN_KEYS", reason: e.to_string() })?;
        let community_scopes = split_scopes(&self.community_scopes);
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
                vkid_scopes: split_scopes(&self.vkid_scopes),
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
        })
    }
}

pub fn check_database_url(url: &str) -> Result<(), ConfigError> {
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if known.iter().any(|p| url.starts_with(p)) {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            env: "VKHOOK_DATABASE_URL",
            reason: "must start with sqlite:// or postgres://".into(),
        })
    }
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
            token_keys: Some(secrecy::ExposeSecret::expose_secret(&keys).to_owned()),
            vk_api_url: "https://api.vk.com".into(),
            vk_oauth_url: "https://oauth.vk.com".into(),
            vk_id_url: "https://id.vk.com".into(),
            vkid_scopes: "vkid.personal_info groups".into(),
            community_scopes: "manage,messages,wall".into(),
            bot_lease_secs: 60,
            vk_community_rps: 20,
            reconcile_secs: 300,
        }
    }

    #[test]
    fn good_settings_are_accepted() {
        let s = args().settings().unwrap();
        assert_eq!(s.vk.community_scopes, vec!["manage", "messages", "wall"]);
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
