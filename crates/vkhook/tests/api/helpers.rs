//! `TestApp`: a vkhook instance on port 0 with its own database, wired to its own VK sandbox; typed helpers drive it
//! as a browser would.
//!
//! The database comes from the environment: a fresh SQLite file by default; a fresh PostgreSQL database on
//! TEST_DATABASE_URL's server when `TEST_BACKEND=postgres` (so the whole suite runs on either; `.ci/run` runs both).
//! With `VKHOOK_REQUIRE_ALL_TESTS=1` a test that cannot run here (no PostgreSQL, no chromedriver) fails instead of
//! printing `skipped: …`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use vk::GroupId;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

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

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
        TestApp { sandbox, state, driver, _dir: dir, db, vk_gate, metrics_url, stop: Some(stop) }
    }

    pub fn store(&self) -> &Store {
        &self.state.store
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

/// A fresh PostgreSQL database on TEST_DATABASE_URL's server, dropped when this is dropped; `None` (and a printed
/// `skipped: …`) when TEST_DATABASE_URL is not set.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create(test: &str) -> Option<PgDatabase> {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            skip(&format!("{test} on PostgreSQL (TEST_DATABASE_URL is not set)"));
            return None;
        };
        let name = format!("vkhook_test_{:016x}", rand::random::<u64>());
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await.expect("TEST_DATABASE_URL connects");
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        Some(PgDatabase { admin_url, name, url: url.to_string() })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await {
                    let _ = sqlx::Executor::execute(
                        &mut conn,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

/// Says a test cannot run here: `skipped: …`, or a failure under `VKHOOK_REQUIRE_ALL_TESTS=1` (CI sets it, so a
/// missing PostgreSQL or chromedriver cannot pass unnoticed).
pub fn skip(why: &str) {
    if std::env::var("VKHOOK_REQUIRE_ALL_TESTS").is_ok_and(|v| v == "1") {
        panic!("VKHOOK_REQUIRE_ALL_TESTS=1, but this test cannot run here: {why}");
    }
    println!("skipped: {why}");
}

/// The port and the instance id from `vkhook listening on <addr> as instance <id>`.
fn listening_line(log: &str) -> Option<(u16, String)> {
    let line = log.lines().find(|l| l.contains("vkhook listening on "))?;
    let mut words = line.split("vkhook listening on ").nth(1)?.split_whitespace();
    let addr: std::net::SocketAddr = words.next()?.parse().ok()?;
    // The JSON format ends the message (and the id) with `"`.
    let id = words.nth(2)?.split('"').next()?.to_owned();
    Some((addr.port(), id))
}

/// The environment `vkhook serve` needs against `sandbox`, with `public_url` (a proxy in front of it) and a database.
pub fn serve_env(sandbox: &Sandbox, public_url: &str, db_url: &str, keys: &SecretString) -> Vec<(String, String)> {
    [
        ("VKHOOK_PUBLIC_URL", public_url.to_owned()),
        ("VKHOOK_DATABASE_URL", db_url.to_owned()),
        ("VKHOOK_VK_CLIENT_ID", sandbox.config().client_id.clone()),
        ("VKHOOK_VK_CLIENT_SECRET", sandbox.config().client_secret.clone()),
        ("VKHOOK_TOKEN_KEYS", secrecy::ExposeSecret::expose_secret(keys).to_owned()),
        ("VKHOOK_VK_API_URL", sandbox.api_url()),
        ("VKHOOK_VK_OAUTH_URL", sandbox.oauth_url()),
        ("VKHOOK_VK_ID_URL", sandbox.id_url()),
        ("VKHOOK_RECONCILE_SECS", "3600".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A `vkhook serve` child process on a port of its own choosing (`VKHOOK_BIND=127.0.0.1:0`): its log line names the
/// port and the instance, and it is ready when `/healthz` answers with that instance's id — never another process
/// that happens to listen on the same port. Its log goes to a file of its own ([`Instance::log`]).
pub struct Instance {
    child: std::process::Child,
    port: u16,
    pub env: Vec<(String, String)>,
    rust_log: String,
    log_file: PathBuf,
    _dir: TempDir,
}

impl Instance {
    /// Starts `vkhook serve` with `env` (and only that, plus PATH) and the log filter `rust_log`.
    pub async fn spawn(env: Vec<(String, String)>, rust_log: &str) -> Instance {
        let dir = TempDir::new("vkhook-instance");
        let log_file = dir.0.join("vkhook.log");
        let log = std::fs::File::create(&log_file).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_vkhook"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", format!("{rust_log},vkhook::app=info"))
            .env("NO_COLOR", "1")
            .env("VKHOOK_BIND", "127.0.0.1:0")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // vkhook logs to standard output; its one-line start-up errors go to standard error.
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("vkhook starts");
        // Killed if this test panics before the instance is ready: no process outlives its test.
        let mut child = KillOnDrop(Some(child));
        let deadline = std::time::Instant::now() + Duration::from_secs_f64(30.0 * vk_sandbox::testing::wait_factor());
        let (port, id) = loop {
            let log = std::fs::read_to_string(&log_file).unwrap_or_default();
            if let Some(found) = listening_line(&log) {
                break found;
            }
            if let Ok(Some(status)) = child.0.as_mut().unwrap().try_wait() {
                panic!("vkhook serve exited ({status}) before listening:\n{log}");
            }
            assert!(std::time::Instant::now() < deadline, "vkhook serve did not say where it listens:\n{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let child = child.0.take().unwrap();
        let instance = Instance { child, port, env, rust_log: rust_log.to_owned(), log_file, _dir: dir };
        let url = format!("{}/healthz", instance.url());
        eventually(30, "the instance to answer /healthz as itself", || async {
            let r = reqwest::get(&url).await.ok()?;
            let answered_by = r.headers().get("x-vkhook-instance")?.to_str().ok()?.to_owned();
            (r.status() == 200 && answered_by == id).then_some(())
        })
        .await;
        instance
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything this process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// SIGKILL: no clean-up of any kind.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as systemd stops a service, and waits for the process to end.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill only sends a signal, to the child this value owns.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM)
        };
        self.child.wait().unwrap()
    }

    /// A new process with the same settings (on a new port: tell the proxy).
    pub async fn restart(&mut self) {
        *self = Instance::spawn(self.env.clone(), &self.rust_log.clone()).await;
    }
}

/// A child process that is killed when dropped.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Forwards requests to vkhook instances: `/vk/callback` round-robin (starting with `first_callback`), everything
/// else to instance 0. A backend that does not answer gives 502 (VK retries).
pub struct Proxy {
    pub url: String,
    backends: Arc<RwLock<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ProxyState {
    backends: Arc<RwLock<Vec<String>>>,
    next: Arc<AtomicUsize>,
    http: reqwest::Client,
}

async fn forward(State(p): State<ProxyState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_default();
    let backend = {
        let backends = p.backends.read().unwrap();
        if uri.path() == "/vk/callback" {
            backends[p.next.fetch_add(1, Ordering::SeqCst) % backends.len()].clone()
        } else {
            backends[0].clone()
        }
    };
    let mut request = p.http.request(method, format!("{backend}{path}")).body(body);
    for name in ["cookie", "content-type", "accept-language"] {
        for value in headers.get_all(name) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(r) => {
            let status = r.status();
            let mut out = HeaderMap::new();
            for (name, value) in r.headers() {
                if matches!(name.as_str(), "set-cookie" | "location" | "content-type" | "retry-after" | "cache-control")
                {
                    out.append(name.clone(), value.clone());
                }
            }
            let body = r.bytes().await.unwrap_or_default();
            (status, out, body).into_response()
        }
        Err(_) => (StatusCode::BAD_GATEWAY, "backend down").into_response(),
    }
}

/// A round-robin proxy over `n` backends, set (and reset after a restart) with [`Proxy::set_backend`].
pub async fn start_proxy(n: usize, first_callback: usize) -> Proxy {
    let backends = Arc::new(RwLock::new(vec![String::new(); n]));
    let state = ProxyState {
        backends: backends.clone(),
        next: Arc::new(AtomicUsize::new(first_callback)),
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
    };
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Proxy { url, backends, server }
}

impl Proxy {
    /// Stops listening: nothing answers at its address any more.
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
    }

    pub fn set_backend(&self, i: usize, url: String) {
        self.backends.write().unwrap()[i] = url;
    }
}

/// A TCP forwarder (in front of PostgreSQL, or VK's API) that can cut every connection and refuse new ones, then
/// come back.
pub struct TcpGate {
    pub port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl TcpGate {
    pub async fn start(target: SocketAddr) -> TcpGate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (c, k) = (cut.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                k.lock().unwrap().push(task.abort_handle());
            }
        });
        TcpGate { port, cut, conns }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// One request a [`Hook`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the hook answered.
    pub status: u16,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn webhook_id(&self) -> &str {
        self.headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn signature(&self) -> &str {
        self.headers.get("webhook-signature").and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn event(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The Standard Webhooks reference library accepts the request under `secret`.
    pub fn verifies_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret).unwrap().verify(&self.body, &self.headers).is_ok()
    }
}

#[derive(Default)]
struct HookState {
    received: Mutex<Vec<Received>>,
    /// Answers for the next requests, in order (a status and a `Retry-After`); 200 once they are used up.
    script: Mutex<std::collections::VecDeque<(u16, Option<u64>)>>,
    /// The answer once the script is used up.
    otherwise: std::sync::atomic::AtomicU16,
    /// How long each answer takes.
    delay_ms: std::sync::atomic::AtomicU64,
    inflight: AtomicUsize,
    max_inflight: AtomicUsize,
    /// webhook-ids being answered right now; set when one arrives while it is.
    active: Mutex<std::collections::HashSet<String>>,
    same_id_at_once: AtomicBool,
}

/// A developer's endpoint for forwarded events, on loopback: records every request, answers as scripted.
pub struct Hook {
    pub url: String,
    state: Arc<HookState>,
}

/// Marks one request in flight; unmarks it when the request ends, also when the sender hung up (a killed
/// process) and the answer is dropped unfinished.
struct InFlight(Arc<HookState>, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
        self.0.active.lock().unwrap().remove(&self.1);
    }
}

async fn hook_answer(State(s): State<Arc<HookState>>, headers: HeaderMap, body: Bytes) -> Response {
    let at = std::time::Instant::now();
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if !s.active.lock().unwrap().insert(id.clone()) {
        s.same_id_at_once.store(true, Ordering::SeqCst);
    }
    let now = s.inflight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_inflight.fetch_max(now, Ordering::SeqCst);
    let _in_flight = InFlight(s.clone(), id);
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let otherwise = match s.otherwise.load(Ordering::SeqCst) {
        0 => 200,
        status => status,
    };
    let (status, retry_after) = s.script.lock().unwrap().pop_front().unwrap_or((otherwise, None));
    s.received.lock().unwrap().push(Received { headers, body, status, at });
    let mut answer = (StatusCode::from_u16(status).unwrap(), "thanks").into_response();
    if let Some(secs) = retry_after {
        answer.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
    }
    answer
}

impl Hook {
    pub async fn start() -> Hook {
        let state = Arc::new(HookState::default());
        let app = axum::Router::new().fallback(hook_answer).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Hook { url, state }
    }

    /// The next requests get these statuses.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses.iter().map(|s| (*s, None)));
    }

    /// The next request gets `status` with `Retry-After: secs`.
    pub fn answer_next_retry_after(&self, status: u16, secs: u64) {
        self.state.script.lock().unwrap().push_back((status, Some(secs)));
    }

    /// Every request after the script gets `status`.
    pub fn answer_always(&self, status: u16) {
        self.state.otherwise.store(status, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.state.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Requests for the event with VK's `event_id`.
    pub fn of_event(&self, event_id: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.event()["event_id"] == event_id).collect()
    }

    /// Most requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_inflight.load(Ordering::SeqCst)
    }

    /// One event was being answered twice at the same time.
    pub fn saw_the_same_event_at_once(&self) -> bool {
        self.state.same_id_at_once.load(Ordering::SeqCst)
    }
}

/// An SMTP server for the tests (plain SMTP on loopback, no TLS): takes every message and keeps it.
pub struct SmtpSink {
    pub url: String,
    mails: Arc<Mutex<Vec<Mail>>>,
}

#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    /// The message as sent (headers and body).
    pub data: String,
}

impl Mail {
    /// The body, decoded (lettre sends non-ASCII text as quoted-printable or base64).
    pub fn text(&self) -> String {
        let (headers, body) = self.data.split_once("\r\n\r\n").unwrap_or(("", &self.data));
        let lower = headers.to_ascii_lowercase();
        if lower.contains("content-transfer-encoding: base64") {
            use base64::Engine;
            let clean: String = body.split_whitespace().collect();
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(clean).unwrap()).unwrap()
        } else if lower.contains("content-transfer-encoding: quoted-printable") {
            let joined = body.replace("=\r\n", "");
            let mut bytes = Vec::new();
            let mut it = joined.bytes();
            while let Some(b) = it.next() {
                if b == b'=' {
                    let hex: Vec<u8> = it.by_ref().take(2).collect();
                    bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
                } else {
                    bytes.push(b);
                }
            }
            String::from_utf8(bytes).unwrap()
        } else {
            body.to_owned()
        }
    }
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let kept = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 sink ESMTP\r\n").await?;
                    let (mut to, mut data, mut in_data) = (Vec::new(), String::new(), false);
                    while let Some(line) = lines.next_line().await? {
                        if in_data {
                            if line == "." {
                                in_data = false;
                                kept.lock()
                                    .unwrap()
                                    .push(Mail { to: std::mem::take(&mut to), data: std::mem::take(&mut data) });
                                write.write_all(b"250 kept\r\n").await?;
                            } else {
                                data.push_str(
                                    line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line),
                                );
                                data.push_str("\r\n");
                            }
                            continue;
                        }
                        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                        let answer: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 sink\r\n",
                            "RCPT" => {
                                to.push(line.split(['<', '>']).nth(1).unwrap_or_default().to_owned());
                                b"250 ok\r\n"
                            }
                            "DATA" => {
                                in_data = true;
                                b"354 go on\r\n"
                            }
                            "QUIT" => {
                                write.write_all(b"221 bye\r\n").await?;
                                break;
                            }
                            _ => b"250 ok\r\n",
                        };
                        write.write_all(answer).await?;
                    }
                    std::io::Result::Ok(())
                });
            }
        });
        SmtpSink { url, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

/// A server that accepts connections and never answers: every request to it hangs until the sender gives up. What an
/// attacker points endpoints at to hold a sender's slots.
pub struct Tarpit {
    pub url: String,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

impl Tarpit {
    pub async fn start() -> Tarpit {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket); // read nothing, answer nothing, close nothing
            }
        });
        Tarpit { url, connections }
    }
}
