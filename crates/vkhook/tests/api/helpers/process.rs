//! `vkhook serve` as child processes behind a round-robin proxy, as a cluster runs it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use secrecy::SecretString;
use vk_sandbox::Sandbox;

use super::app::eventually;
use super::db::TempDir;

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
