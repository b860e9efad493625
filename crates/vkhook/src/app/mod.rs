//! The wiring: `App::build(settings)` → a bound listener and the shared state; `run_until_stopped` serves until
//! told to stop. Only this module, `http/` and `workers` see [`AppState`]; every domain module gets the parts it
//! uses.

#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use url::Url;

use crate::accounts::Accounts;
use crate::alerts::Alerts;
use crate::bot::{Bot, BotConfig, BotControl};
use crate::config::{PublicUrl, Settings};
use crate::connect::{ConnectConfig, Connector};
use crate::credentials::Credentials;
use crate::forward::Forwarding;
use crate::health::Reconciler;
use crate::hooks::Hooks;
use crate::http::limits::RateLimiter;
use crate::inbox::{Inbox, Writer};
use crate::longpoll::Poller;
use crate::metrics::{Metrics, VkObserver};
use crate::receiver::Receiver;
use crate::roles::Roles;
use crate::store::{BackendKind, Store};
use crate::vault::Vault;

/// What every handler and worker shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub settings: Settings,
    pub store: Store,
    pub vault: Arc<Vault>,
    pub credentials: Credentials,
    pub vk: vk::Client,
    /// The base URL VK and browsers use.
    pub public_url: PublicUrl,
    pub hooks: Arc<Hooks>,
    pub metrics: Arc<Metrics>,
    pub receiver: Receiver,
    pub accounts: Accounts,
    pub connector: Connector,
    pub bot: Bot,
    pub reconciler: Reconciler,
    pub forwarding: Forwarding,
    pub alerts: Alerts,
    /// Who holds leases: this process.
    pub instance_id: String,
    /// Anonymous sign-in starts per client address.
    pub login_limit: RateLimiter<std::net::IpAddr>,
    /// «Проверить» per community.
    pub check_limit: RateLimiter<i64>,
    /// «Отправить тестовое событие» per community.
    pub test_limit: RateLimiter<i64>,
    /// Roles confirmed at VK before changes.
    pub roles: Roles,
    /// Bots Long Poll: the communities this instance polls.
    pub poller: Poller,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

fn vk_clients(settings: &Settings, metrics: &Arc<Metrics>) -> anyhow::Result<(vk::Client, vk::OAuthClient)> {
    let mut vk_cfg = vk::ClientConfig::new(settings.vk.api_url.clone());
    vk_cfg.timeout = settings.vk.request_timeout;
    vk_cfg.retry = settings.vk.retry;
    vk_cfg.user_per_second = settings.vk.user_per_second;
    vk_cfg.community_per_second = settings.vk.community_per_second;
    vk_cfg.observer = Some(Arc::new(VkObserver(metrics.clone())));
    let vk = vk::Client::new(vk_cfg).context("VK client")?;
    let oauth = vk::OAuthClient::new(vk::OAuthConfig {
        id_url: settings.vk.id_url.clone(),
        oauth_url: settings.vk.oauth_url.clone(),
        client_id: settings.vk.client_id.clone(),
        client_secret: settings.vk.client_secret.clone(),
        timeout: settings.vk.request_timeout,
    })
    .context("OAuth client")?;
    Ok((vk, oauth))
}

/// What the domain services are built from.
pub struct Parts {
    pub store: Store,
    pub vault: Arc<Vault>,
    pub vk: vk::Client,
    pub oauth: vk::OAuthClient,
    pub hooks: Arc<Hooks>,
    pub metrics: Arc<Metrics>,
    pub public_url: PublicUrl,
    /// Group-commit writer tasks.
    pub writers: usize,
    pub vkid_scopes: Vec<String>,
    pub connect: ConnectConfig,
    pub bot: BotConfig,
    pub forward: crate::config::ForwardSettings,
    pub alerts: crate::alerts::AlertSettings,
    /// How long a role VK confirmed is remembered.
    pub role_ttl: std::time::Duration,
    pub long_poll: crate::longpoll::PollerConfig,
}

/// The domain services, each given the parts it uses: one recipe, for the app and for the modules' unit tests.
pub struct Services {
    pub credentials: Credentials,
    pub control: BotControl,
    pub receiver: Receiver,
    pub accounts: Accounts,
    pub connector: Connector,
    pub bot: Bot,
    pub reconciler: Reconciler,
    pub forwarding: Forwarding,
    pub alerts: Alerts,
    pub roles: Roles,
    pub poller: Poller,
}

impl Services {
    pub fn wire(p: &Parts) -> Services {
        let credentials =
            Credentials::new(p.store.clone(), p.vault.clone()).with_previous_window(p.connect.previous_secret_window);
        let alerts =
            Alerts::new(p.store.clone(), credentials.clone(), p.vk.clone(), p.public_url.clone(), p.alerts.clone());
        let wakeup = Arc::new(Notify::new());
        let control = BotControl::new(p.store.clone(), wakeup.clone()).with_alerts(alerts.clone());
        let writer = Writer::start(p.store.clone(), p.writers, p.metrics.clone());
        let forward_wakeup = Arc::new(Notify::new());
        let inbox = Inbox::new(writer.clone(), Arc::new(control.clone()), forward_wakeup.clone());
        let poller = Poller::new(
            p.store.clone(),
            inbox.clone(),
            credentials.clone(),
            p.vk.clone(),
            control.clone(),
            p.long_poll.clone(),
        );
        let receiver = Receiver::new(credentials.clone(), inbox, p.hooks.clone());
        let forwarding =
            Forwarding::new(p.store.clone(), p.vault.clone(), writer.clone(), p.forward.clone(), forward_wakeup)
                .with_alerts(alerts.clone());
        let accounts = Accounts::new(
            p.store.clone(),
            p.vault.clone(),
            p.oauth.clone(),
            p.vkid_scopes.clone(),
            p.public_url.clone(),
        );
        let roles = Roles::new(accounts.clone(), credentials.clone(), p.vk.clone(), p.store.clone(), p.role_ttl);
        let connector = Connector::new(
            p.store.clone(),
            credentials.clone(),
            p.vk.clone(),
            p.oauth.clone(),
            control.clone(),
            roles.clone(),
            p.hooks.clone(),
            p.public_url.clone(),
            p.connect.clone(),
        )
        .with_long_poll_wakeup(poller.wakeup());
        let bot = Bot::new(
            p.store.clone(),
            writer,
            credentials.clone(),
            p.vk.clone(),
            control.clone(),
            p.hooks.clone(),
            p.metrics.clone(),
            p.bot.clone(),
        );
        let reconciler =
            Reconciler::new(p.store.clone(), credentials.clone(), p.vk.clone(), connector.clone(), control.clone())
                .with_alerts(alerts.clone());
        Services {
            credentials,
            control,
            receiver,
            accounts,
            connector,
            bot,
            reconciler,
            forwarding,
            alerts,
            roles,
            poller,
        }
    }
}

const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

impl AppState {
    pub fn new(settings: Settings, store: Store, public_url: Url) -> anyhow::Result<AppState> {
        let vault = Arc::new(Vault::from_spec(&settings.token_keys).context("VKHOOK_TOKEN_KEYS")?);
        let metrics = Arc::new(Metrics::default());
        let (vk, oauth) = vk_clients(&settings, &metrics)?;
        let timing = &settings.timing;
        let login_limit = RateLimiter::new(timing.logins_per_minute, MINUTE);
        let check_limit = RateLimiter::new(timing.checks_per_minute, MINUTE);
        let test_limit = RateLimiter::new(timing.test_events_per_minute, MINUTE);
        let parts = Parts {
            writers: match store.kind() {
                BackendKind::Sqlite => 1,
                BackendKind::Postgres => 2,
            },
            store,
            vault,
            vk,
            oauth,
            hooks: Arc::new(Hooks::default()),
            metrics,
            public_url: PublicUrl::new(public_url),
            vkid_scopes: settings.vk.vkid_scopes.clone(),
            connect: ConnectConfig {
                community_scopes: settings.vk.community_scopes.clone(),
                setup_lease: timing.setup_lease,
                setup_poll: timing.setup_poll,
                confirm_timeout: timing.setup_confirm_timeout,
                retry: settings.vk.retry,
                previous_secret_window: timing.previous_secret_window,
                failed_grace: timing.failed_server_grace,
            },
            bot: BotConfig { retry: timing.bot_retry, max_attempts: timing.bot_max_attempts, lease: timing.bot_lease },
            forward: settings.forward.clone(),
            alerts: settings.alerts.clone(),
            role_ttl: timing.role_ttl,
            long_poll: crate::longpoll::PollerConfig::default(),
        };
        let services = Services::wire(&parts);
        let Parts { store, vault, vk, hooks, metrics, public_url, .. } = parts;
        let inner = Inner {
            settings,
            store,
            vault,
            credentials: services.credentials,
            vk,
            public_url,
            hooks,
            metrics,
            receiver: services.receiver,
            accounts: services.accounts,
            connector: services.connector,
            bot: services.bot,
            reconciler: services.reconciler,
            forwarding: services.forwarding,
            alerts: services.alerts,
            instance_id: format!("{}-{}", std::process::id(), vk::oauth::random_urlsafe(6)),
            login_limit,
            check_limit,
            test_limit,
            roles: services.roles,
            poller: services.poller,
        };
        Ok(AppState { inner: Arc::new(inner) })
    }

    /// `<public url><path>`.
    pub fn url(&self, path: &str) -> String {
        self.public_url.join(path)
    }

    /// Cookies get `Secure` when the public URL is https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.is_https()
    }
}

/// Says at start-up which token keys the stored data needs and which of them `VKHOOK_TOKEN_KEYS` lacks. A value
/// whose key is missing does not open: its community refuses events with 503 and its bot holds them, until the key
/// is given back (docs/deploy.md, "Token keys").
async fn report_token_keys(store: &Store, vault: &Vault) -> anyhow::Result<()> {
    let configured = vault.key_ids();
    let needed = store.sealed_key_use().await.context("reading which token keys the data needs")?;
    let missing: Vec<(&String, &usize)> = needed.iter().filter(|(id, _)| !configured.contains(&id.as_str())).collect();
    tracing::info!(?configured, needed = ?needed, "token keys: configured, and values sealed with each");
    for (id, values) in &missing {
        tracing::error!(
            key_id = %id,
            values,
            "the data needs token key {id:?}, which VKHOOK_TOKEN_KEYS lacks: those values will not open (their \
             communities answer VK with 503 and their bots wait). Add the key back; `vkhook keys rotate` then moves \
             everything to the first key"
        );
    }
    Ok(())
}

pub struct App {
    listener: TcpListener,
    /// `/metrics` and `/healthz` on their own address (`VKHOOK_METRICS_BIND`).
    metrics_listener: Option<TcpListener>,
    state: AppState,
}

impl App {
    /// Connects the store, migrates, binds `settings.bind` (port 0 picks a free one).
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let store = Store::connect(&settings.database_url).await.context("opening the database")?;
        store.migrate().await.context("migrating the database")?;
        let listener = TcpListener::bind(settings.bind).await.with_context(|| format!("binding {}", settings.bind))?;
        let metrics_listener = match settings.metrics.bind {
            Some(bind) => Some(TcpListener::bind(bind).await.with_context(|| format!("binding {bind} for /metrics"))?),
            None => None,
        };
        let addr = listener.local_addr()?;
        let public_url = match &settings.public_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://{addr}")).expect("a socket address makes a URL"),
        };
        let state = AppState::new(settings, store, public_url)?;
        report_token_keys(&state.store, &state.vault).await?;
        Ok(App { listener, metrics_listener, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    /// Where `/metrics` is served when it has its own address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|l| l.local_addr().expect("bound"))
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and stops the workers (which give up
    /// their leases).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let role = self.state.settings.role;
        let own_metrics_port = self.metrics_listener.is_some();
        // A worker-only instance still answers /healthz (and /metrics, unless it has its own port) on its port.
        let router = if role.serves_http() {
            crate::http::router(self.state.clone())
        } else {
            crate::http::machine_router(self.state.clone(), !own_metrics_port)
        };
        let (addr, id) = (self.addr(), &self.state.instance_id);
        let state = self.state.clone();
        let metrics = self.metrics_listener.map(|listener| {
            tracing::info!("metrics on {}", listener.local_addr().expect("bound"));
            let router = crate::http::machine_router(state, true);
            tokio::spawn(async move { axum::serve(listener, router).await })
        });
        let workers = crate::workers::start(self.state.clone());
        // Tests read this line to learn the port and the instance (`/healthz` answers with the same id).
        tracing::info!(url = %self.state.public_url, ?role, "vkhook listening on {addr} as instance {id}");
        let served = axum::serve(self.listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP");
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        workers.stop().await;
        self.state.store.close().await;
        served?;
        Ok(())
    }
}
