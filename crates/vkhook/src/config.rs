//! Settings: what `vkhook serve` reads from `VKHOOK_*` (through `cli`), and what the demo and tests build
//! directly. A missing or malformed setting stops start-up with one line naming it.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

pub use crate::forward::ForwardSettings;
pub use crate::urls::PublicUrl;

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
    pub metrics: MetricsAccess,
    pub forward: ForwardSettings,
    pub alerts: crate::alerts::AlertSettings,
}

/// Who may read `/metrics`. It says how many events each type brought and how the bot fares, so an operator can
/// keep it off the public port (`bind`) or behind a bearer token (`token`), or both.
#[derive(Debug, Clone, Default)]
pub struct MetricsAccess {
    /// Serve `/metrics` (and `/healthz`) on this address instead of the main one.
    pub bind: Option<SocketAddr>,
    /// Require `Authorization: Bearer <token>`.
    pub token: Option<SecretString>,
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
    /// Runs of events handled at once (each of a different community).
    pub bot_concurrency: usize,
    /// Most events one run holds: a community's consecutive events, claimed together and recorded together.
    pub bot_run: i64,
    /// How often VK's view of every connected community is compared with ours.
    pub reconcile_every: Duration,
    /// After a secret rotation, how long the previous secret is still accepted.
    pub previous_secret_window: Duration,
    /// A session nobody signed in with is removed after this long unused.
    pub anonymous_session_idle: Duration,
    /// How often expired sessions, authorizations and previous secrets are removed.
    pub housekeeping_every: Duration,
    /// Anonymous sign-in starts per client address per minute.
    pub logins_per_minute: u32,
    /// «Проверить» presses per community per minute.
    pub checks_per_minute: u32,
    /// Test events per community per minute.
    pub test_events_per_minute: u32,
    /// How long a role VK confirmed is trusted before a change asks VK again.
    pub role_ttl: Duration,
    /// When VK cannot say who manages a community (no `groups` scope, and it will not list the managers to the
    /// community key), how old the last proof of the administrator role may be for secrets and private texts.
    pub proof_fresh: Duration,
    /// How long our server may stay `failed` after an edit before it is replaced by a fresh one.
    pub failed_server_grace: Duration,
    /// When the health card and the overview say «события перестали приходить».
    pub silence: crate::health::Silence,
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
            bot_run: 100,
            reconcile_every: Duration::from_secs(300),
            previous_secret_window: crate::credentials::PREVIOUS_SECRET_WINDOW,
            anonymous_session_idle: Duration::from_secs(15 * 60),
            housekeeping_every: Duration::from_secs(60),
            logins_per_minute: 20,
            checks_per_minute: 5,
            test_events_per_minute: 10,
            role_ttl: Duration::from_secs(180),
            proof_fresh: Duration::from_secs(24 * 3600),
            failed_server_grace: Duration::from_secs(5),
            silence: crate::health::Silence::default(),
        }
    }
}

#[cfg(feature = "demo")]
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
                vkid_scopes: split_scopes(DEFAULT_VKID_SCOPES),
                community_scopes: split_scopes(DEFAULT_COMMUNITY_SCOPES),
                request_timeout: Duration::from_secs(10),
                retry: vk::RetryPolicy::default(),
                user_per_second: USER_PER_SECOND,
                community_per_second: COMMUNITY_PER_SECOND,
            },
            token_keys,
            timing: Timing::default(),
            metrics: MetricsAccess::default(),
            // The demo's and tests' endpoints are on this machine.
            forward: ForwardSettings {
                policy: crate::forward::target::Policy { allow_loopback_http: true },
                ..ForwardSettings::default()
            },
            alerts: crate::alerts::AlertSettings::default(),
        }
    }
}

/// What VK ID sign-in asks for by default (`VKHOOK_VKID_SCOPES`).
pub const DEFAULT_VKID_SCOPES: &str = "vkid.personal_info groups";
/// What a community consent asks for by default (`VKHOOK_COMMUNITY_SCOPES`): community rights only (`wall` is none).
pub const DEFAULT_COMMUNITY_SCOPES: &str = "manage,messages";
/// VK's request limits: 3 a second per user key, 20 per community key (https://dev.vk.com/ru/api/api-requests).
pub const USER_PER_SECOND: u32 = 3;
pub const COMMUNITY_PER_SECOND: u32 = 20;

/// Scopes written with spaces or commas.
pub fn split_scopes(text: &str) -> Vec<String> {
    text.split([' ', ',']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
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
