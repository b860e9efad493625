//! A faithful stand-in for VK, over real HTTP: api.vk.com under `/api`, oauth.vk.com under `/oauth`, id.vk.com
//! under `/id`, Callback API delivery to registered servers, a fixed demo world, and a `/_sandbox/…` control API.
//!
//! It checks calls against VK's official schema (vendored under `vendor/vk-api-schema/`) and VK's documentation
//! (dev.vk.com, cited where a rule comes from it), not against the `vk` crate, so a mistake in the client is caught
//! rather than mirrored. Start it with [`Sandbox::start`].

pub mod api;
pub mod control;
pub mod delivery;
pub mod longpoll;
pub mod oauth;
pub mod schema;
pub mod testing;
pub mod world;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use world::{App, Comment, Delivery, Fault, Message, Server, ServerStatus, World};

/// How the sandbox behaves.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where to listen (port 0: any free port).
    pub bind: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    /// Exact redirect URIs the app may use; empty: any loopback address.
    pub redirect_uris: Vec<String>,
    /// Multiplies VK's waits (retry schedule, pauses, Retry-After): 1.0 is VK's real timing, 0.001 turns ten seconds
    /// into ten milliseconds.
    pub time_factor: f64,
    /// How long a callback server may take to answer one request.
    pub delivery_timeout: Duration,
    /// VK delivers a retry "later than the specified time" at times, never earlier: each retry waits up to this
    /// fraction longer than its schedule or `Retry-After` asks (0.2: up to 20 % later).
    pub retry_lateness: f64,
    /// Failed deliveries in a row after which delivery to a server pauses.
    pub pause_after_failures: u32,
    /// How long such a pause lasts (scaled by `time_factor`).
    pub pause_for: Duration,
    /// Lifetime of authorization codes, sandbox seconds.
    pub code_ttl_secs: i64,
    /// Lifetime of VK ID access tokens, sandbox seconds.
    pub vkid_token_ttl_secs: i64,
    pub user_per_second: usize,
    pub community_per_second: usize,
    /// The window those limits count in: VK's is one second. A test that must not depend on how fast the machine
    /// is makes it long, so "the 21st call in a window" is the 21st call, however slowly they come.
    pub rate_window: Duration,
    /// More communities beyond the demo world (ids 2001, 2002, …), administered by user 1, for scale tests.
    pub extra_communities: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_id: "51900001".into(),
            client_secret: "sandbox-client-secret".into(),
            redirect_uris: Vec::new(),
            time_factor: 1.0,
            delivery_timeout: Duration::from_secs(5),
            retry_lateness: 0.2,
            pause_after_failures: 10,
            pause_for: Duration::from_secs(600),
            code_ttl_secs: 600,
            vkid_token_ttl_secs: 3600,
            user_per_second: 3,
            community_per_second: 20,
            rate_window: Duration::from_secs(1),
            extra_communities: 0,
        }
    }
}

pub struct Inner {
    world: Mutex<World>,
    pub cfg: SandboxConfig,
    pub http: reqwest::Client,
    /// `http://127.0.0.1:<port>`
    pub base_url: String,
    /// Wakes the Long Poll checks held open: an update was queued (or the setting changed).
    pub long_poll_wakeup: tokio::sync::Notify,
}

impl Inner {
    /// The world, locked. Never hold it across an `.await`.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A VK duration scaled by the time factor.
    pub fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.cfg.time_factor.max(0.0))
    }
}

pub type Shared = Arc<Inner>;

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(control::world_page))
        .route("/api/method/{method}", post(api::call_method).get(api::call_method))
        .route("/id/authorize", get(oauth::vkid_authorize_page).post(oauth::vkid_authorize_submit))
        .route("/id/oauth2/auth", post(oauth::vkid_token))
        .route("/id/oauth2/user_info", post(oauth::vkid_user_info))
        .route("/oauth/authorize", get(oauth::community_authorize_page).post(oauth::community_authorize_submit))
        .route("/oauth/access_token", get(oauth::community_access_token))
        .route("/avatars/{kind}/{file}", get(control::avatar))
        .route("/_sandbox/comments", post(control::post_comment))
        .route("/_sandbox/messages", post(control::post_message))
        .route("/_sandbox/events", post(control::post_event))
        .route("/_sandbox/groups/{id}/comments", get(control::get_comments))
        .route("/_sandbox/groups/{id}/messages", get(control::get_messages))
        .route("/_sandbox/groups/{id}/servers", get(control::get_servers).post(control::post_server))
        .route("/_sandbox/groups/{id}/managers", post(control::post_manager))
        .route("/_sandbox/groups/{id}/messaging", post(control::post_messaging))
        .route("/_sandbox/groups/{id}/permission", post(control::post_permission))
        .route("/_sandbox/groups/{id}/longpoll", get(longpoll::get_state).post(longpoll::control))
        .route("/lp/{id}", get(longpoll::a_check))
        .route("/_sandbox/deliveries", get(control::get_deliveries))
        .route("/_sandbox/faults", post(control::post_fault).get(control::get_faults).delete(control::clear_faults))
        .route("/_sandbox/calls", get(control::get_calls))
        .route("/_sandbox/tokens", get(control::get_tokens))
        .route("/_sandbox/tokens/revoke", post(control::revoke_tokens))
        .route("/_sandbox/clock", post(control::post_clock))
        .route("/_sandbox/dedup", post(control::post_dedup))
        .route("/_sandbox/app", post(control::post_app))
        .route("/_sandbox/behaviour", post(control::post_behaviour))
        .route("/_sandbox/users/{id}", post(control::post_user))
        .route("/_sandbox/ui/comment", post(control::ui_comment))
        .route("/_sandbox/ui/message", post(control::ui_message))
        .fallback(control::not_found)
        .with_state(shared)
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    shared: Shared,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Sandbox {
    /// Binds `cfg.bind` and serves in the background.
    pub async fn start(cfg: SandboxConfig) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind(cfg.bind).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let http = reqwest::Client::builder()
            .timeout(cfg.delivery_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let app = App {
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            redirect_uris: cfg.redirect_uris.clone(),
            grants_groups: true,
        };
        let mut world = World::demo(app);
        world.add_extra_communities(cfg.extra_communities);
        let shared =
            Arc::new(Inner { world: Mutex::new(world), cfg, http, base_url, long_poll_wakeup: Default::default() });
        let (stop, mut stopped) = watch::channel(false);
        let router = router(shared.clone());
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %e, "vk sandbox stopped");
            }
        });
        Ok(Sandbox { shared, addr, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: the world page.
    pub fn url(&self) -> &str {
        &self.shared.base_url
    }

    /// What to use as `https://api.vk.com`.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.shared.base_url)
    }

    /// What to use as `https://oauth.vk.com`.
    pub fn oauth_url(&self) -> String {
        format!("{}/oauth", self.shared.base_url)
    }

    /// What to use as `https://id.vk.com`.
    pub fn id_url(&self) -> String {
        format!("{}/id", self.shared.base_url)
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.shared.cfg
    }

    /// Direct access to the state. Do not hold it across an `.await`.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.shared.world()
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// A user comments (fires `wall_reply_new`): (comment_id, post_id).
    pub fn comment(&self, group_id: i64, from_id: i64, text: &str) -> Result<(i64, i64), String> {
        control::add_comment(
            &self.shared,
            &control::NewComment { group_id, from_id, text: text.into(), post_id: None, reply_to_comment: None },
        )
    }

    /// A user writes to the community (fires `message_new`): the message id.
    pub fn message(&self, group_id: i64, from_id: i64, text: &str) -> Result<i64, String> {
        control::add_message(&self.shared, &control::NewMessage { group_id, from_id, text: text.into() })
    }

    pub fn comments(&self, group_id: i64) -> Vec<Comment> {
        self.world().group(group_id).map(|g| g.comments.clone()).unwrap_or_default()
    }

    pub fn messages(&self, group_id: i64) -> Vec<Message> {
        self.world().group(group_id).map(|g| g.messages.clone()).unwrap_or_default()
    }

    pub fn servers(&self, group_id: i64) -> Vec<Server> {
        self.world().group(group_id).map(|g| g.servers.clone()).unwrap_or_default()
    }

    pub fn deliveries(&self, group_id: i64) -> Vec<Delivery> {
        self.world().deliveries.iter().filter(|d| d.group_id == group_id).cloned().collect()
    }

    /// Issues a user token directly, as if the user had signed in with VK ID (for tests).
    pub fn issue_user_token(&self, user_id: i64, scopes: &[&str]) -> String {
        let mut world = self.world();
        let client_id = world.app.client_id.clone();
        let ttl = self.shared.cfg.vkid_token_ttl_secs;
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        world.issue_token(world::TokenOwner::User(user_id), scopes, Some(ttl), user_id, &client_id)
    }

    /// Issues a community token directly, as if its first administrator had granted it (for tests). Panics on a
    /// right VK does not issue to communities, as the consent page would refuse it.
    pub fn issue_community_token(&self, group_id: i64, scopes: &[&str]) -> String {
        for s in scopes {
            assert!(world::COMMUNITY_RIGHTS.iter().any(|(n, _)| n == s), "{s} is not a community right");
        }
        let mut world = self.world();
        let client_id = world.app.client_id.clone();
        let admin =
            world.group(group_id).and_then(|g| g.admins.iter().find(|(_, l)| **l == 3).map(|(u, _)| *u)).unwrap_or(0);
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        world.issue_token(world::TokenOwner::Group(group_id), scopes, None, admin, &client_id)
    }

    pub fn inject_fault(&self, fault: Fault) {
        self.world().faults.push(fault);
    }

    pub fn advance_clock(&self, secs: i64) {
        self.world().clock_offset += secs;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
