//! `TestApp`: a vkhook instance on port 0 with its own database, wired to its own VK sandbox, and the browser-like
//! `Driver` that drives it.

use std::path::PathBuf;
use std::time::Duration;
use vk::GroupId;

use reqwest::redirect::Policy;
use secrecy::SecretString;
use tokio::sync::oneshot;
use vk_sandbox::testing::{consent, Consent};
use vk_sandbox::{Sandbox, SandboxConfig};
use vkhook::app::AppState;
use vkhook::config::{Settings, Timing};
use vkhook::store::Store;
use vkhook::vault::Vault;
use vkhook::App;

use super::db::{PgDatabase, TempDir};
use super::network::TcpGate;

pub struct Options {
    /// How long one VK request may take.
    pub vk_timeout: Duration,
    /// VK's API through a gate the test can cut (an unreachable VK).
    pub vk_api_gate: bool,
    pub role: vkhook::config::Role,
    pub vkid_scopes: Vec<String>,
    pub token_keys: SecretString,
    pub timing: Timing,
    pub metrics: vkhook::config::MetricsAccess,
    pub forward: vkhook::config::ForwardSettings,
    pub alerts: vkhook::alerts::AlertSettings,
    /// `VKHOOK_PUBLIC_URL` (e.g. a proxy in front); none: the app's own address.
    pub public_url: Option<String>,
    /// The sandbox's communities 2001…2000+N, administered by user 1.
    pub extra_communities: usize,
}

/// Setup runs whose lease runs out after `ms` (a crashed runner is soon taken over), polling VK every 20 ms.
pub fn short_setup_lease(ms: u64) -> Timing {
    Timing { setup_lease: Duration::from_millis(ms), setup_poll: Duration::from_millis(20), ..Timing::default() }
}

/// Forwarding as the tests run it: loopback http allowed (the test endpoints are on this machine), the retry
/// schedule a thousand times shorter (5 ms, 300 ms, 1.8 s, …), short polls and leases.
pub fn test_forwarding() -> vkhook::config::ForwardSettings {
    vkhook::config::ForwardSettings {
        policy: vkhook::forward::target::Policy { allow_loopback_http: true },
        schedule: vkhook::forward::attempt::Schedule::default().scaled_down(1000),
        attempt_timeout: Duration::from_secs(3),
        poll: Duration::from_millis(20),
        lease: Duration::from_secs(5),
        ..Default::default()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            vk_timeout: Duration::from_secs(5),
            vk_api_gate: false,
            role: vkhook::config::Role::All,
            vkid_scopes: vec!["vkid.personal_info".into(), "groups".into()],
            token_keys: Vault::generate_spec("test1"),
            timing: Timing {
                setup_poll: Duration::from_millis(20),
                setup_confirm_timeout: Duration::from_secs(5),
                setup_lease: Duration::from_secs(5),
                bot_poll: Duration::from_millis(20),
                bot_lease: Duration::from_secs(5),
                bot_retry: vk::Backoff::new(Duration::from_millis(10), Duration::from_millis(50)),
                reconcile_every: Duration::from_secs(3600),
                failed_server_grace: Duration::from_millis(200),
                ..Timing::default()
            },
            metrics: Default::default(),
            forward: test_forwarding(),
            alerts: Default::default(),
            public_url: None,
            extra_communities: 0,
        }
    }
}

pub struct TestApp {
    pub sandbox: Sandbox,
    pub state: AppState,
    /// A browser-like client on the app's URL (`app.http`, `app.url`, `app.get(…)` through `Deref`).
    pub driver: Driver,
    /// Keeps the scratch directory (and the database file) alive as long as the app.
    _dir: TempDir,
    pub db: TestDatabase,
    /// The gate in front of VK's API, when the options asked for one.
    pub vk_gate: Option<TcpGate>,
    /// `/metrics` on its own address, when the options gave it one.
    pub metrics_url: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    /// The test makes events or deliveries fail on purpose ([`TestApp::expect_failures`]).
    failures_expected: std::sync::atomic::AtomicBool,
}

/// Which database a test app runs on.
pub enum TestDatabase {
    Sqlite(PathBuf),
    Postgres(PgDatabase),
}

impl TestDatabase {
    /// The backend the environment asks for (`TEST_BACKEND=postgres`, else SQLite), fresh.
    pub async fn from_env(dir: &TempDir) -> TestDatabase {
        match std::env::var("TEST_BACKEND").as_deref() {
            Ok("postgres") => {
                let db = PgDatabase::create("the API suite").await;
                TestDatabase::Postgres(db.expect("TEST_BACKEND=postgres needs TEST_DATABASE_URL"))
            }
            Ok("sqlite") | Err(_) => TestDatabase::Sqlite(dir.0.join("vkhook.db")),
            Ok(other) => panic!("TEST_BACKEND={other}: sqlite or postgres"),
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite(file) => format!("sqlite://{}", file.display()),
            TestDatabase::Postgres(db) => db.url.clone(),
        }
    }

    /// Every byte the database keeps, as well as a test can get at it: the SQLite file and its WAL, or every row of
    /// every table of the PostgreSQL database as text.
    pub async fn raw_contents(&self) -> Vec<u8> {
        match self {
            TestDatabase::Sqlite(file) => {
                let mut bytes = Vec::new();
                for suffix in ["", "-wal"] {
                    if let Ok(b) = std::fs::read(format!("{}{suffix}", file.display())) {
                        bytes.extend(b);
                    }
                }
                bytes
            }
            TestDatabase::Postgres(db) => {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap();
                let mut bytes = Vec::new();
                for table in tables {
                    let q = format!("SELECT row_to_json(t)::text FROM {table} t");
                    for row in sqlx::query_scalar::<_, String>(&q).fetch_all(&mut conn).await.unwrap() {
                        bytes.extend(row.into_bytes());
                    }
                }
                bytes
            }
        }
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        let sandbox = Sandbox::start(SandboxConfig {
            time_factor: 0.001,
            extra_communities: options.extra_communities,
            ..Default::default()
        })
        .await
        .unwrap();
        let dir = TempDir::new("vkhook-test");
        let db = TestDatabase::from_env(&dir).await;
        let mut settings =
            Settings::for_sandbox(&sandbox, "127.0.0.1:0".parse().unwrap(), db.url(), options.token_keys);
        settings.role = options.role;
        settings.vk.vkid_scopes = options.vkid_scopes;
        settings.vk.request_timeout = options.vk_timeout;
        let vk_gate = if options.vk_api_gate {
            let gate = TcpGate::start(sandbox.addr()).await;
            let mut url = url::Url::parse(&sandbox.api_url()).unwrap();
            url.set_port(Some(gate.port)).unwrap();
            settings.vk.api_url = url;
            Some(gate)
        } else {
            None
        };
        settings.vk.retry = vk::RetryPolicy {
            backoff: vk::Backoff::new(Duration::from_millis(5), Duration::from_millis(40)),
            deadline: Duration::from_secs(2),
            max_attempts: 4,
        };
        settings.timing = options.timing;
        settings.metrics = options.metrics;
        settings.forward = options.forward;
        settings.alerts = options.alerts;
        settings.public_url = options.public_url.map(|u| url::Url::parse(&u).unwrap());
        let app = App::build(settings).await.unwrap();
        let url = format!("http://{}", app.addr());
        let metrics_url = app.metrics_addr().map(|a| format!("http://{a}/metrics"));
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let driver = Driver::new(browser(), url, &sandbox, state.store.clone());
        TestApp {
            sandbox,
            state,
            driver,
            _dir: dir,
            db,
            vk_gate,
            metrics_url,
            stop: Some(stop),
            failures_expected: Default::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// This test makes events or deliveries fail (or die) on purpose: the end-of-test check lets them be.
    pub fn expect_failures(&self) {
        self.failures_expected.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// What the consumers gave up on: events the bot failed or gave up (`failed`, `dead`) and deliveries forwarding
    /// gave up, as lines. Read on a connection of its own, so that it can run while the app's runtime is blocked.
    fn given_up_work(&self) -> Vec<String> {
        let url = match &self.db {
            TestDatabase::Sqlite(path) => format!("sqlite://{}", path.display()),
            TestDatabase::Postgres(db) => db.url.clone(),
        };
        let events = "SELECT group_id || ' ' || event_type || ' ' || status || ': ' || COALESCE(last_error, '') \
                      FROM inbox_events WHERE status IN ('failed', 'dead')";
        let deliveries = "SELECT endpoint_id || ' ' || event_type || ' failed after ' || attempts || ' attempts' \
                          FROM deliveries WHERE status = 'failed'";
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut lines: Vec<String> = Vec::new();
                for q in [events, deliveries] {
                    let found: Vec<String> = if url.starts_with("sqlite:") {
                        let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
                        sqlx::query_scalar(q).fetch_all(&mut c).await.unwrap()
                    } else {
                        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
                        sqlx::query_scalar(q).fetch_all(&mut c).await.unwrap()
                    };
                    lines.extend(found);
                }
                lines
            })
        })
        .join()
        .unwrap()
    }

    /// Someone else's server at VK (another bot, a CRM), added through the sandbox's control API.
    pub async fn add_foreign_server(&self, group_id: i64, title: &str, url: &str) {
        let path = format!("/_sandbox/groups/{group_id}/servers");
        self.sandbox_control(&path, serde_json::json!({"title": title, "url": url})).await;
    }

    /// All ten server slots of the community taken by others (`other0`… at `http://127.0.0.1:9/0`…).
    pub async fn fill_server_slots(&self, group_id: i64) {
        for i in 0..10 {
            self.add_foreign_server(group_id, &format!("other{i}"), &format!("http://127.0.0.1:9/{i}")).await;
        }
    }

    /// The community's servers at VK that are ours (our callback URL).
    pub fn our_servers(&self, group_id: i64) -> Vec<vk_sandbox::Server> {
        let url = format!("{}/vk/callback", self.url);
        self.sandbox.servers(group_id).into_iter().filter(|s| s.url == url).collect()
    }

    /// A second browser signed in as `user_id` (its own cookies).
    pub async fn sign_in_elsewhere(app: &TestApp, user_id: i64) -> reqwest::Client {
        let other = Driver::new(browser(), app.url.clone(), &app.sandbox, app.state.store.clone());
        other.sign_in(user_id).await;
        other.http
    }

    /// Signs in as user 1 and connects `group_id` with the bot on (default reply off) and `rules`.
    pub async fn connected_with_rules(&self, group_id: i64, rules: &[(&str, &str)]) {
        self.sign_in(1).await;
        self.connect(group_id).await;
        self.store().set_bot_settings(GroupId(group_id), true, true, None).await.unwrap();
        for (keywords, reply) in rules {
            self.store().add_rule(GroupId(group_id), keywords, reply).await.unwrap();
        }
    }

    /// Waits until every stored event is finished (done, ignored, failed or dead); every callback body the
    /// sandbox sent meanwhile fitted VK's callback schema.
    pub async fn wait_until_idle(&self) {
        eventually(15, "the inbox to drain", || async {
            (self.store().inbox_depth(None).await.unwrap() == 0).then_some(())
        })
        .await;
        let violations = self.sandbox.world().callback_violations.clone();
        assert!(violations.is_empty(), "callback bodies outside VK's schema: {violations:?}");
    }

    /// Waits until no delivery waits to be forwarded (none pending, none being sent): what a check that something
    /// was *not* forwarded must wait for, or it passes before the sender even looked.
    pub async fn wait_forwarding_drained(&self) {
        eventually(15, "the forwarding queue to drain", || async {
            (self.store().forward_depth().await.unwrap() == 0).then_some(())
        })
        .await;
    }

    /// The community's replies at the sandbox (comments and messages written by the community itself).
    pub fn bot_comments(&self, group_id: i64) -> Vec<vk_sandbox::Comment> {
        self.sandbox.comments(group_id).into_iter().filter(|c| c.from_id == -group_id).collect()
    }

    pub fn bot_messages(&self, group_id: i64) -> Vec<vk_sandbox::Message> {
        self.sandbox.messages(group_id).into_iter().filter(|m| m.from_id == -group_id).collect()
    }

    /// A JSON POST to the sandbox's control API (`/_sandbox/…`); its JSON answer.
    pub async fn sandbox_control(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let r = reqwest::Client::new().post(format!("{}{path}", self.sandbox.url())).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Every vendored real request body (not the confirmation), re-addressed to `group_id` with its callback
    /// secret: (file name, body).
    pub async fn samples_for(&self, group_id: i64) -> Vec<(String, serde_json::Value)> {
        let secret = self.callback_secret(group_id).await;
        let dir = format!("{}/../../vendor/vk-callback-samples", std::env::var("CARGO_MANIFEST_DIR").unwrap());
        let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.to_string_lossy().contains("confirmation"))
            .map(|path| {
                let mut body: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                body["group_id"] = serde_json::json!(group_id);
                body["secret"] = serde_json::json!(secret);
                (path.file_name().unwrap().to_string_lossy().into_owned(), body)
            })
            .collect()
    }

    /// The secret VK sends for a connected community.
    pub async fn callback_secret(&self, group_id: i64) -> String {
        let secret =
            self.state.credentials.current_callback_secret(GroupId(group_id)).await.unwrap().expect("a secret");
        secrecy::ExposeSecret::expose_secret(&secret).to_owned()
    }

    /// Every token the sandbox issued (access and refresh).
    pub async fn issued_tokens(&self) -> Vec<String> {
        let v: serde_json::Value =
            reqwest::get(format!("{}/_sandbox/tokens", self.sandbox.url())).await.unwrap().json().await.unwrap();
        let mut out = Vec::new();
        for list in ["tokens", "refresh_tokens"] {
            for t in v[list].as_array().unwrap() {
                out.push(t["value"].as_str().unwrap().to_owned());
            }
        }
        out
    }
}

impl std::ops::Deref for TestApp {
    type Target = Driver;
    fn deref(&self) -> &Driver {
        &self.driver
    }
}

/// A browser-like client on one vkhook URL (keeps cookies, does not follow redirects), knowing the sandbox's
/// hosts and the store to wait on.
pub struct Driver {
    pub http: reqwest::Client,
    pub url: String,
    pub id_url: String,
    pub oauth_url: String,
    pub store: Store,
}

impl Driver {
    /// The community's stored events, newest first, filtered by status and type.
    pub async fn events(
        &self,
        group_id: i64,
        status: Option<&str>,
        event_type: Option<&str>,
    ) -> Vec<vkhook::store::InboxRow> {
        let filter = vkhook::store::LogFilter {
            status: status.map(|s| vkhook::model::EventStatus::parse(s).expect("a status")),
            event_type: event_type.map(str::to_owned),
            before_id: None,
            limit: 100_000,
        };
        self.store.inbox_log(GroupId(group_id), &filter).await.unwrap()
    }

    /// Waits until the community's setup run has lost its lease (its runner died) and can be taken over.
    pub async fn wait_for_lease_expiry(&self, group_id: i64) {
        eventually(10, "the setup lease to expire", || async {
            let setup = self.store.setup(GroupId(group_id)).await.unwrap()?;
            (setup.lease_until < vkhook::store::now_ms()).then_some(())
        })
        .await;
    }

    pub fn new(http: reqwest::Client, url: String, sandbox: &Sandbox, store: Store) -> Driver {
        Driver { http, url, id_url: sandbox.id_url(), oauth_url: sandbox.oauth_url(), store }
    }

    /// POSTs a body to /vk/callback as VK would.
    pub async fn post_callback(&self, body: &str) -> reqwest::Response {
        reqwest::Client::new().post(format!("{}/vk/callback", self.url)).body(body.to_owned()).send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.url)).send().await.unwrap()
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.url)).form(form).send().await.unwrap()
    }

    /// A POST carrying the CSRF token of `page`.
    pub async fn post_with_csrf(&self, page: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let html = self.get(page).await.text().await.unwrap();
        let csrf = csrf_from(&html).unwrap_or_else(|| panic!("no CSRF token on {page}"));
        let mut form = form.to_vec();
        form.push(("csrf", &csrf));
        self.post_form(path, &form).await
    }

    /// Signs in as `user_id` through VK ID's consent page; returns the page the app lands on.
    pub async fn sign_in(&self, user_id: i64) -> reqwest::Response {
        let back = self.authorize_at_vk_id(Consent::allow(user_id)).await;
        let landed = self.http.get(back).send().await.unwrap();
        assert_eq!(landed.status(), 303, "sign-in redirects");
        let location = landed.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(location, "/communities");
        self.get(&location).await
    }

    /// Starts sign-in at the app and answers VK ID's consent page; returns the redirect back to the app.
    pub async fn authorize_at_vk_id(&self, choice: Consent) -> String {
        let start = self.get("/auth/vk/login").await;
        assert_eq!(start.status(), 303);
        let authorize = start.headers()["location"].to_str().unwrap().to_owned();
        assert!(authorize.starts_with(&self.id_url), "{authorize}");
        consent(&authorize, &choice).await.unwrap().to_string()
    }

    /// Presses «Подключить Callback API» as the signed-in user; if VK's community consent page comes, `consent`
    /// answers it. Returns the last redirect's target (the progress page, or an error page's response).
    pub async fn press_connect(
        &self,
        group_id: i64,
        form: &[(&str, &str)],
        consent_as: Option<Consent>,
    ) -> reqwest::Response {
        let page = format!("/communities/{group_id}");
        let r = self.post_with_csrf(&page, &format!("{page}/connect"), form).await;
        if r.status() != 303 {
            return r;
        }
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        if !location.starts_with(&self.oauth_url) {
            return self.get(&location).await;
        }
        let choice = consent_as.expect("the community consent page came");
        let back = consent(&location, &choice).await.unwrap();
        let r = self.http.get(back.as_str()).send().await.unwrap();
        if r.status() != 303 {
            return r;
        }
        let next = r.headers()["location"].to_str().unwrap().to_owned();
        self.get(&next).await
    }

    /// Connects `group_id` as user 1 would: press, consent, wait until the setup finishes.
    pub async fn connect(&self, group_id: i64) -> vkhook::store::SetupRow {
        let r = self.press_connect(group_id, &[], Some(Consent::allow(1))).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        self.finished_setup(group_id).await
    }

    pub async fn finished_setup(&self, group_id: i64) -> vkhook::store::SetupRow {
        let setup = vkhook::connect::wait_for_setup(
            &self.store,
            GroupId(group_id),
            vk_sandbox::testing::scaled(Duration::from_secs(15)),
        )
        .await
        .unwrap()
        .expect("a setup record");
        assert!(setup.is_finished(), "the setup finished: {setup:?}");
        setup
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // A test that passed but left work its consumers gave up on did not prove what it meant to, unless it said
        // that it makes things fail.
        if !std::thread::panicking() && !self.failures_expected.load(std::sync::atomic::Ordering::Relaxed) {
            let given_up = self.given_up_work();
            assert!(given_up.is_empty(), "work given up that the test did not expect: {given_up:#?}");
        }
    }
}

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap()
}

pub fn csrf_from(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_owned())
}

pub use vk_sandbox::testing::eventually;
