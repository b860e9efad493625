//! What the domain modules' unit tests build instead of a whole app: a migrated SQLite store in a scratch folder,
//! a vault, credentials, a VK sandbox with a client for it, and — for the connect flow, where VK must reach us —
//! a bare callback endpoint in front of the receiver.

use std::sync::Arc;
use std::time::Duration;
use vk::GroupId;
use vk::UserId;

use secrecy::SecretString;
use url::Url;

use crate::app::{Parts, Services};
use crate::bot::{Bot, BotConfig, BotControl};
use crate::connect::{ConnectConfig, Connector};
use crate::credentials::Credentials;
use crate::health::Reconciler;
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::model::Role;
use crate::receiver::Receiver;
use crate::store::{CommunityRow, Store, UserRow};
use crate::urls::PublicUrl;
use crate::vault::Vault;

/// A scratch folder removed when dropped.
pub struct ScratchDir(pub std::path::PathBuf);

impl ScratchDir {
    pub fn new() -> ScratchDir {
        let p = std::env::temp_dir().join(format!("vkhook-unit-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&p).unwrap();
        ScratchDir(p)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A migrated SQLite store with the demo world's communities 1001 and 1002 (user 1 administers both).
pub async fn store(dir: &ScratchDir) -> Store {
    let store = Store::connect(&format!("sqlite://{}/unit.db", dir.0.display())).await.unwrap();
    store.migrate().await.unwrap();
    store
        .upsert_user(&UserRow {
            id: 1, first_name: "Анна".into(), last_name: "Админова".into(), avatar: None
        })
        .await
        .unwrap();
    for (id, name) in [(1001, "Кофейня «Зерно»"), (1002, "Книжный клуб")] {
        let row = CommunityRow { id, name: name.into(), screen_name: format!("club{id}"), photo: None };
        store.add_user_community(UserId(1), &row, Role::Administrator, Some(crate::store::now_ms())).await.unwrap();
    }
    store
}

/// The parts the domain modules take, wired as `app` wires them, against a sandbox.
pub struct Kit {
    /// Keeps the database file for as long as the kit.
    _dir: ScratchDir,
    pub sandbox: vk_sandbox::Sandbox,
    pub store: Store,
    pub vault: Arc<Vault>,
    pub credentials: Credentials,
    pub control: BotControl,
    pub hooks: Arc<Hooks>,
    pub metrics: Arc<Metrics>,
    pub receiver: Receiver,
    pub connector: Connector,
    pub bot: Bot,
    pub reconciler: Reconciler,
    pub poller: crate::longpoll::Poller,
}

impl Kit {
    pub async fn new() -> Kit {
        let sandbox =
            vk_sandbox::Sandbox::start(vk_sandbox::SandboxConfig { time_factor: 0.001, ..Default::default() })
                .await
                .unwrap();
        let dir = ScratchDir::new();
        let store = store(&dir).await;
        let vault = Arc::new(Vault::from_spec(&Vault::generate_spec("unit")).unwrap());
        let mut cfg = vk::ClientConfig::new(Url::parse(&sandbox.api_url()).unwrap());
        cfg.retry = vk::RetryPolicy::none();
        cfg.timeout = Duration::from_secs(5);
        let oauth = vk::OAuthClient::new(vk::OAuthConfig {
            id_url: Url::parse(&sandbox.id_url()).unwrap(),
            oauth_url: Url::parse(&sandbox.oauth_url()).unwrap(),
            client_id: sandbox.config().client_id.clone(),
            client_secret: SecretString::from(sandbox.config().client_secret.clone()),
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        // VK must reach our callback URL, which the connector is built with: bind first, serve once wired.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let callback = listener.local_addr().unwrap();
        let parts = Parts {
            store: store.clone(),
            vault: vault.clone(),
            vk: vk::Client::new(cfg).unwrap(),
            oauth,
            hooks: Arc::new(Hooks::default()),
            metrics: Arc::new(Metrics::default()),
            public_url: PublicUrl::new(Url::parse(&format!("http://{callback}")).unwrap()),
            writers: 1,
            vkid_scopes: vec![],
            connect: ConnectConfig {
                community_scopes: vec!["manage".into(), "messages".into()],
                setup_lease: Duration::from_secs(5),
                setup_poll: Duration::from_millis(20),
                confirm_timeout: Duration::from_secs(5),
                retry: vk::RetryPolicy::none(),
                previous_secret_window: crate::credentials::PREVIOUS_SECRET_WINDOW,
                failed_grace: Duration::from_millis(100),
            },
            bot: BotConfig {
                retry: vk::Backoff::new(Duration::from_millis(5), Duration::from_millis(20)),
                max_attempts: 3,
                lease: Duration::from_secs(60),
            },
            forward: crate::config::ForwardSettings {
                policy: crate::forward::target::Policy { allow_loopback_http: true },
                ..Default::default()
            },
            alerts: Default::default(),
            role_ttl: Duration::from_secs(60),
            long_poll: crate::longpoll::PollerConfig {
                wait: Duration::from_secs(1),
                lease: Duration::from_secs(3),
                claim_every: Duration::from_millis(20),
                max_backoff: Duration::from_millis(50),
            },
        };
        let Services { credentials, control, receiver, connector, bot, reconciler, poller, .. } =
            Services::wire(&parts);
        serve_callback(listener, receiver.clone());
        let (hooks, metrics) = (parts.hooks, parts.metrics);
        Kit {
            _dir: dir,
            sandbox,
            store,
            vault,
            credentials,
            control,
            hooks,
            metrics,
            receiver,
            connector,
            bot,
            reconciler,
            poller,
        }
    }

    /// Stores a community key for `group_id` as the community authorization leaves it.
    pub async fn give_key(&self, group_id: GroupId) {
        let scopes = ["manage", "messages"];
        let token = SecretString::from(self.sandbox.issue_community_token(group_id.0, &scopes));
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.credentials.save_community_key(group_id, &token, &scopes).await.unwrap();
    }

    /// A key and a finished setup run: the community is connected at the sandbox.
    pub async fn connected(&self, group_id: GroupId) {
        self.give_key(group_id).await;
        assert!(self.connector.start_repair(group_id).await.unwrap());
        let setup = crate::connect::wait_for_setup(&self.store, group_id, Duration::from_secs(10)).await.unwrap();
        assert_eq!(setup.map(|s| s.state), Some(crate::model::SetupState::Done));
    }

    /// Claims and handles every due event, as the workers would, until none is left to claim.
    pub async fn run_bot_once(&self) {
        loop {
            let now = crate::store::now_ms();
            // As the workers do: a claim SQLite refuses while another commit lands (a snapshot gone stale) is
            // tried again; only a lasting failure fails the test.
            let mut tries = 0;
            let runs = loop {
                match self.store.claim_inbox_runs("unit", now, now + 60_000, 10, 100).await {
                    Ok(runs) => break runs,
                    Err(e) if tries < 100 => {
                        tries += 1;
                        tracing::debug!(error = %e, "claim refused; trying again");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => panic!("claiming keeps failing: {e}"),
                }
            };
            if runs.is_empty() {
                return;
            }
            for run in runs {
                self.bot.process_run("unit", run).await;
            }
        }
    }

    /// The community key dies at VK.
    pub async fn revoke_key(&self, group_id: GroupId) {
        let url = format!("{}/_sandbox/tokens/revoke", self.sandbox.url());
        let r = reqwest::Client::new().post(url).json(&serde_json::json!({"group_id": group_id})).send().await.unwrap();
        assert!(r.status().is_success());
    }
}

/// A bare `POST /vk/callback` in front of the receiver.
fn serve_callback(listener: tokio::net::TcpListener, receiver: Receiver) {
    use axum::routing::post;
    let router = axum::Router::new().route(
        crate::connect::CALLBACK_PATH,
        post(move |body: axum::body::Bytes| {
            let receiver = receiver.clone();
            async move { crate::http::callback::respond(receiver.accept(&body).await.0) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
}
