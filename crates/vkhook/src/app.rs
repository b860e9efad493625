//! `App::build(settings)` → a bound listener and the shared state; `run_until_stopped` serves until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use url::Url;

use crate::config::Settings;
use crate::metrics::{Metrics, VkObserver};
use crate::receiver::Receiver;
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
    pub vault: Vault,
    pub vk: vk::Client,
    pub oauth: vk::OAuthClient,
    /// The base URL VK and browsers use, without a trailing slash.
    pub public_url: Url,
    pub hooks: Hooks,
    pub metrics: Arc<Metrics>,
    pub receiver: Receiver,
    /// Wakes the bot workers when an event was stored.
    pub bot_wakeup: tokio::sync::Notify,
    /// First names for `{first_name}`.
    pub names: crate::bot::Names,
    /// Who holds leases: this process.
    pub instance_id: String,
}

/// Crash points for tests: when armed, the code at that point stops as if the process died there.
/// Production never arms one.
#[derive(Default)]
pub struct Hooks {
    any: std::sync::atomic::AtomicBool,
    armed: std::sync::Mutex<Vec<&'static str>>,
}

impl Hooks {
    pub fn arm(&self, point: &'static str) {
        self.armed.lock().unwrap_or_else(|e| e.into_inner()).push(point);
        self.any.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// True once for each time `point` was armed. Costs one atomic load when nothing is armed.
    pub fn fire(&self, point: &str) -> bool {
        if !self.any.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        match armed.iter().position(|p| *p == point) {
            Some(i) => {
                armed.remove(i);
                true
            }
            None => false,
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    pub fn new(settings: Settings, store: Store, public_url: Url) -> anyhow::Result<AppState> {
        let vault = Vault::from_spec(&settings.token_keys).context("VKHOOK_TOKEN_KEYS")?;
        let metrics = Arc::new(Metrics::default());
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
        let writers = match store.kind() {
            BackendKind::Sqlite => 1,
            BackendKind::Postgres => 2,
        };
        let receiver = Receiver::start(store.clone(), writers, metrics.clone());
        let instance_id = format!("{}-{}", std::process::id(), vk::oauth::random_urlsafe(6));
        let inner = Inner {
            settings,
            store,
            vault,
            vk,
            oauth,
            public_url,
            hooks: Hooks::default(),
            metrics,
            receiver,
            bot_wakeup: tokio::sync::Notify::new(),
            names: crate::bot::Names::default(),
            instance_id,
        };
        Ok(AppState { inner: Arc::new(inner) })
    }

    /// `<public url><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.public_url.as_str().trim_end_matches('/'), path)
    }

    /// Cookies get `Secure` when the public URL is https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    /// Connects the store, migrates, binds `settings.bind` (port 0 picks a free one).
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let store = Store::connect(&settings.database_url).await.context("opening the database")?;
        store.migrate().await.context("migrating the database")?;
        let listener = TcpListener::bind(settings.bind).await.with_context(|| format!("binding {}", settings.bind))?;
        let addr = listener.local_addr()?;
        let public_url = match &settings.public_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://{addr}")).expect("a socket address makes a URL"),
        };
        let state = AppState::new(settings, store, public_url)?;
        Ok(App { listener, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let router = crate::http::router(self.state.clone());
        // Setups a previous process left half-done are finished now.
        let state = self.state.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::connect::resume_abandoned(&state).await {
                tracing::warn!(error = %e, "could not look for interrupted setups");
            }
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let role = self.state.settings.role;
        let mut background = Vec::new();
        if role.runs_workers() {
            background.push(tokio::spawn(crate::bot::run_workers(self.state.clone(), stopped.clone())));
            background.push(tokio::spawn(crate::health::run_reconciler(self.state.clone(), stopped)));
        }
        tracing::info!(url = %self.state.public_url, ?role, "vkhook listening on {}", self.addr());
        // A worker-only instance still answers /healthz and /metrics on its port.
        let router = if role.serves_http() { router } else { crate::http::machine_router(self.state.clone()) };
        let served = axum::serve(self.listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP");
        let _ = stop.send(true);
        for task in background {
            let _ = task.await;
        }
        self.state.store.close().await;
        served?;
        Ok(())
    }
}
