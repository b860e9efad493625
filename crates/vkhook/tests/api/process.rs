//! vkhook as users run it: real `vkhook serve` processes (behind a one-backend proxy that gives them a public URL),
//! each with its own log — what it logs, and how it stops.

use std::sync::{Arc, Mutex};
use vk::GroupId;

use secrecy::SecretString;
use vk_sandbox::{Sandbox, SandboxConfig};
use vkhook::store::Store;
use vkhook::vault::Vault;

use crate::helpers::*;

/// One `vkhook serve` on SQLite against its own sandbox, at the proxy's URL.
struct Served {
    sandbox: Sandbox,
    instance: Instance,
    driver: Driver,
    store: Store,
    _dir: TempDir,
}

async fn serve(rust_log: &str) -> Served {
    serve_with(rust_log, &[]).await
}

async fn serve_with(rust_log: &str, extra_env: &[(&str, &str)]) -> Served {
    let sandbox = Sandbox::start(SandboxConfig { time_factor: 0.001, ..Default::default() }).await.unwrap();
    let dir = TempDir::new("vkhook-process");
    let db_url = format!("sqlite://{}/vkhook.db", dir.0.display());
    let proxy = start_proxy(1, 0).await;
    let keys: SecretString = Vault::generate_spec("process");
    let mut env = serve_env(&sandbox, &proxy.url, &db_url, &keys);
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let instance = Instance::spawn(env, rust_log).await;
    proxy.set_backend(0, instance.url());
    let store = Store::connect(&db_url).await.unwrap();
    let driver = Driver::new(browser(), proxy.url.clone(), &sandbox, store.clone());
    std::mem::forget(proxy); // serves for the rest of the test
    Served { sandbox, instance, driver, store, _dir: dir }
}

#[tokio::test]
async fn a_running_instance_logs_no_token_code_state_or_client_secret() {
    let s = serve("debug").await;
    let back = s.driver.authorize_at_vk_id(vk_sandbox::testing::Consent::allow(1)).await;
    let back_url = url::Url::parse(&back).unwrap();
    let code = back_url.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let state = back_url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    assert_eq!(s.driver.http.get(&back).send().await.unwrap().status(), 303);
    s.driver.get("/communities").await;
    s.sandbox.advance_clock(3700);
    s.driver.get("/communities").await; // the access token expired: a refresh
    let logs = eventually(10, "the sign-in and the refresh logged", || async {
        let logs = s.instance.log();
        (logs.contains("signed in with VK ID") && logs.contains("refreshed")).then_some(logs)
    })
    .await;
    assert!(logs.contains("DEBUG"), "debug logging was on");
    let tokens: serde_json::Value =
        reqwest::get(format!("{}/_sandbox/tokens", s.sandbox.url())).await.unwrap().json().await.unwrap();
    let mut secrets: Vec<String> = ["tokens", "refresh_tokens"]
        .iter()
        .flat_map(|list| tokens[list].as_array().unwrap().iter().map(|t| t["value"].as_str().unwrap().to_owned()))
        .collect();
    assert!(secrets.len() >= 3, "two access tokens and a refresh token");
    secrets.extend([code, state, s.sandbox.config().client_secret.clone()]);
    for secret in secrets {
        assert!(!logs.contains(&secret), "a secret appears in this instance's log");
    }
}

#[tokio::test]
async fn restarted_without_the_key_its_data_needs_it_answers_nothing_ok_and_says_which_key() {
    let mut s = serve("info").await;
    s.driver.sign_in(1).await;
    s.driver.connect(1001).await;
    let url = s.instance.env.iter().find(|(k, _)| k == "VKHOOK_DATABASE_URL").unwrap().1.clone();
    let k1 = s.instance.env.iter().find(|(k, _)| k == "VKHOOK_TOKEN_KEYS").unwrap().1.clone();
    // The secret VK sends, read with k1 before it goes away.
    let vault = Vault::from_spec(&SecretString::from(k1.clone())).unwrap();
    let sealed = s.store.community_settings(GroupId(1001)).await.unwrap().unwrap().secret.unwrap();
    let slot = vkhook::vault::Slot::new(vkhook::vault::Sealed::CallbackSecret, "1001");
    let right = secrecy::ExposeSecret::expose_secret(&vault.open(&slot, &sealed).unwrap()).to_owned();

    // Restarted with only k2: a rotation half done, k1 removed too early, or a backup restored under other keys.
    s.instance.terminate();
    let k2 = secrecy::ExposeSecret::expose_secret(&Vault::generate_spec("k2")).to_owned();
    s.instance.env.retain(|(k, _)| k != "VKHOOK_TOKEN_KEYS");
    s.instance.env.push(("VKHOOK_TOKEN_KEYS".into(), k2.clone()));
    s.instance.restart().await;
    let log = s.instance.log();
    assert!(log.contains(r#"the data needs token key "process", which VKHOOK_TOKEN_KEYS lacks"#), "{log}");

    let post = |instance: &Instance, body: serde_json::Value| {
        let url = format!("{}/vk/callback", instance.url());
        async move { reqwest::Client::new().post(url).body(body.to_string()).send().await.unwrap() }
    };
    let event = |id: &str| serde_json::json!({"type": "group_join", "group_id": 1001, "event_id": id.repeat(40), "v": "5.199", "object": {"user_id": 2, "join_type": "join"}});
    for (what, secret) in [("no", None), ("a wrong", Some("wrong")), ("the right", Some(right.as_str()))] {
        let mut body = event(if secret.is_some() { "a" } else { "b" });
        if let Some(secret) = secret {
            body["secret"] = serde_json::json!(secret);
        }
        let r = post(&s.instance, body).await;
        assert_eq!(r.status(), 503, "{what} secret");
        assert!(r.headers().contains_key("retry-after"), "{what} secret");
        assert_ne!(r.text().await.unwrap(), "ok", "{what} secret");
    }
    let code = s.store.community_settings(GroupId(1001)).await.unwrap().unwrap().confirmation_code.unwrap();
    let r = post(&s.instance, serde_json::json!({"type": "confirmation", "group_id": 1001})).await;
    assert_eq!(r.status(), 503);
    assert_ne!(r.text().await.unwrap(), code, "no confirmation code without a readable secret");
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox_events").fetch_one(&mut conn).await.unwrap();
    assert_eq!(stored, 0, "nothing stored");
    assert!(s.instance.log().contains("a stored value does not open"), "the refusal names the key");

    // The key given back (after the new one): the same event is taken, once.
    s.instance.terminate();
    s.instance.env.retain(|(k, _)| k != "VKHOOK_TOKEN_KEYS");
    s.instance.env.push(("VKHOOK_TOKEN_KEYS".into(), format!("{k2},{k1}")));
    s.instance.restart().await;
    let mut body = event("a");
    body["secret"] = serde_json::json!(right);
    assert_eq!(post(&s.instance, body).await.text().await.unwrap(), "ok");
}

/// Text chosen by an attacker: a forged log line after a newline, and terminal escapes (red, clear screen).
const FORGED: &str = "x\nFORGED INFO vkhook: admin 1 signed in\u{1b}[31m\u{1b}[2J";

/// Puts [`FORGED`] where vkhook logs outside text: the OAuth `error`/`error_description` on the VK ID redirect, and
/// a callback's `type` with a wrong secret. Returns the log once both lines are in it.
async fn log_forgery_attempts(s: &Served) -> String {
    s.driver.sign_in(1).await;
    s.driver.connect(1001).await;
    // A redirect "from VK ID" in a browser that has a session.
    let q = serde_urlencoded::to_string([("state", "nope"), ("error", FORGED), ("error_description", FORGED)]).unwrap();
    s.driver.get(&format!("/auth/vk/callback?{q}")).await;
    let body = serde_json::json!({"type": FORGED, "group_id": 1001, "event_id": "1", "secret": "wrong", "object": {}});
    assert_eq!(s.driver.post_callback(&body.to_string()).await.status(), 403);
    eventually(10, "both attempts logged", || async {
        let log = s.instance.log();
        (log.contains("VK ID sign-in was not granted") && log.contains("callback with a wrong secret refused"))
            .then_some(log)
    })
    .await
}

#[tokio::test]
async fn outside_text_in_text_logs_cannot_forge_lines_or_drive_a_terminal() {
    let s = serve("info").await;
    let log = log_forgery_attempts(&s).await;
    assert!(!log.contains('\u{1b}'), "no ESC reaches the log");
    assert!(!log.lines().any(|l| l.starts_with("FORGED")), "no forged line:\n{log}");
    assert!(log.contains("x\\nFORGED INFO vkhook: admin 1 signed in\\u{1b}[31m"), "shown escaped:\n{log}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_outside_text_escaped() {
    let s = serve_with("info", &[("VKHOOK_LOG_FORMAT", "json")]).await;
    let log = log_forgery_attempts(&s).await;
    assert!(!log.contains('\u{1b}'), "no raw ESC reaches the log");
    let mut refused = None;
    for line in log.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if entry["message"] == "callback with a wrong secret refused" {
            refused = Some(entry);
        }
    }
    let refused = refused.expect("the refusal, as JSON");
    assert_eq!(refused["group_id"], 1001);
    assert!(refused["event_type"].as_str().unwrap().starts_with("x\\nFORGED"), "{refused}");
}

#[tokio::test]
async fn sigterm_finishes_the_work_in_hand_and_gives_up_the_community_leases() {
    let mut s = serve("warn").await;
    s.driver.sign_in(1).await;
    s.driver.connect(1001).await;
    s.store.set_bot_settings(GroupId(1001), true, true, Some("Спасибо!")).await.unwrap();
    s.sandbox.comment(1001, 2, "Привет").unwrap();
    eventually(10, "the reply", || async { s.sandbox.comments(1001).into_iter().find(|c| c.from_id == -1001) }).await;
    let url = s.instance.env.iter().find(|(k, _)| k == "VKHOOK_DATABASE_URL").unwrap().1.clone();
    let leases = || async {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM community_leases").fetch_one(&mut conn).await.unwrap();
        n
    };
    assert_eq!(leases().await, 1, "the worker holds 1001's lease");
    let status = s.instance.terminate();
    assert!(status.success(), "a clean exit on SIGTERM: {status:?}");
    assert_eq!(leases().await, 0, "released on the way out: another instance takes over at once");
}

/// `vkhook` with `args` and only `env` (plus PATH): (exit code, stdout, stderr).
fn run_vkhook(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vkhook"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

#[test]
fn migrate_and_keys_work_from_the_command_line_with_settings_from_the_environment() {
    let dir = TempDir::new("vkhook-cli");
    let db = format!("sqlite://{}/cli.db", dir.0.display());
    let (code, out, _) = run_vkhook(&["migrate"], &[("VKHOOK_DATABASE_URL", &db)]);
    assert_eq!(code, 0);
    let latest =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/migrations/sqlite")).unwrap().count();
    assert!(out.contains(&format!("database at version {latest}")), "{out}");
    let (code, out, _) = run_vkhook(&["migrate"], &[("VKHOOK_DATABASE_URL", &db)]);
    assert_eq!(code, 0);
    assert!(out.contains("migrations applied now: []"), "twice is harmless: {out}");

    let (code, key, _) = run_vkhook(&["keys", "generate", "--id", "k7"], &[]);
    assert_eq!(code, 0);
    let key = key.trim().to_owned();
    assert!(key.starts_with("k7:") && Vault::from_spec(&SecretString::from(key.clone())).is_ok(), "{key}");
    let (code, out, _) = run_vkhook(&["keys", "rotate"], &[("VKHOOK_DATABASE_URL", &db), ("VKHOOK_TOKEN_KEYS", &key)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("re-encrypted 0 value(s) with key \"k7\""), "{out}");
    // The environment maps to the settings; a missing one stops start-up with one line naming it.
    let (code, _, err) = run_vkhook(&["serve"], &[("VKHOOK_DATABASE_URL", &db)]);
    assert_eq!(code, 2);
    assert_eq!(err.trim(), "vkhook: missing setting VKHOOK_PUBLIC_URL (--public-url)");
    let env = [("VKHOOK_DATABASE_URL", db.as_str()), ("VKHOOK_PUBLIC_URL", "http://hook.example.com")];
    let (code, _, err) = run_vkhook(&["serve"], &env);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("vkhook: setting VKHOOK_PUBLIC_URL is invalid") && err.trim().lines().count() == 1,
        "{err}"
    );
    let (code, _, err) = run_vkhook(&["keys", "rotate"], &[("VKHOOK_DATABASE_URL", &db)]);
    assert_eq!(code, 2);
    assert!(err.contains("VKHOOK_TOKEN_KEYS"), "{err}");
}

/// `vkhook <args>` with a clean environment; what it prints, as it prints it. Killed when the first value drops.
fn spawn_reading_stdout(args: &[std::ffi::OsString]) -> (KillOnDrop, Arc<Mutex<String>>) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vkhook"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let printed = Arc::new(Mutex::new(String::new()));
    let lines = printed.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            lines.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    (KillOnDrop(Some(child)), printed)
}

#[tokio::test]
async fn the_demo_serves_the_app_and_its_sandbox_on_the_ports_it_prints() {
    let dir = TempDir::new("vkhook-demo");
    // Port 0 for both: the OS picks free ports, and the banner says which.
    let mut args: Vec<std::ffi::OsString> =
        ["demo", "--port", "0", "--sandbox-port", "0", "--extra-communities", "3", "--data-dir"]
            .map(Into::into)
            .to_vec();
    args.push(dir.0.clone().into());
    let (_demo, banner) = spawn_reading_stdout(&args);
    let url_after = |label: &str| {
        let text = banner.lock().unwrap().clone();
        text.lines().find_map(|l| l.trim().strip_prefix(label).map(|u| u.trim().to_owned()))
    };
    let (app, sandbox) =
        eventually(30, "the demo's banner", || async { Some((url_after("App:")?, url_after("VK sandbox:")?)) }).await;
    let landing = reqwest::get(&app).await.unwrap().text().await.unwrap();
    assert!(landing.contains("Войти через VK ID"));
    let world = reqwest::get(&sandbox).await.unwrap().text().await.unwrap();
    assert!(world.contains("Кофейня «Зерно»"), "the sandbox's demo world");
    assert!(std::fs::metadata(dir.0.join("token.keys")).is_ok(), "the demo's key file");
    // `--extra-communities 3`: 2001…2003 in the sandbox's world, administered by user 1, and the banner says so.
    for id in 2001..=2003 {
        assert!(world.contains(&format!("Сообщество {id}")), "{id}");
    }
    assert!(!world.contains("Сообщество 2004"));
    assert!(banner.lock().unwrap().contains("«Сообщество 2001» … «Сообщество 2003» (2001…2003)"));
}

#[tokio::test]
async fn the_sandbox_alone_adds_extra_communities_when_asked() {
    let args: Vec<std::ffi::OsString> = ["sandbox", "--port", "0", "--extra-communities", "2"].map(Into::into).to_vec();
    let (_sandbox, banner) = spawn_reading_stdout(&args);
    let url = eventually(30, "the sandbox's banner", || async {
        let text = banner.lock().unwrap().clone();
        text.lines().find_map(|l| l.strip_prefix("VK sandbox:").map(|u| u.trim().to_owned()))
    })
    .await;
    let world = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(
        world.contains("Сообщество 2001") && world.contains("Сообщество 2002") && !world.contains("Сообщество 2003")
    );
    assert!(banner.lock().unwrap().contains("2001…2002"));
}

/// An `HTTPS_PROXY` in the environment must not carry deliveries past the resolver that refuses internal addresses
/// (a proxy resolves the name itself): the delivery client uses no proxy. The endpoint is stored as an older vkhook
/// or a hand edit could have left it — a name that does not resolve publicly — and an event makes a delivery: the
/// attempt fails at vkhook, and the proxy never hears of it.
#[tokio::test]
async fn a_proxy_in_the_environment_never_carries_a_delivery() {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let asked = Arc::new(Mutex::new(0usize));
    let count = asked.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = proxy.accept().await {
            *count.lock().unwrap() += 1;
        }
    });
    // VK (the sandbox) and the public URL are loopback: NO_PROXY keeps them direct, as an operator's would.
    let env =
        [("HTTPS_PROXY", proxy_url.as_str()), ("HTTP_PROXY", proxy_url.as_str()), ("NO_PROXY", "127.0.0.1,localhost")];
    let s = serve_with("info", &env).await;
    s.driver.sign_in(1).await;
    s.driver.connect(1001).await;
    let keys = s.instance.env.iter().find(|(k, _)| k == "VKHOOK_TOKEN_KEYS").unwrap().1.clone();
    let vault = Vault::from_spec(&SecretString::from(keys)).unwrap();
    let slot = vkhook::vault::Slot::new(vkhook::vault::Sealed::EndpointSecret, "ep_proxy");
    let secret = vault.seal(&slot, &SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()));
    let endpoint = vkhook::store::NewEndpoint {
        id: "ep_proxy".into(),
        group_id: 1001,
        name: "CRM".into(),
        url: "https://crm.internal.invalid/vk".into(),
        event_types: String::new(),
        secret,
        created_by: 1,
    };
    assert!(s.store.add_endpoint(&endpoint, 10).await.unwrap());
    s.sandbox.comment(1001, 2, "Привет").unwrap();
    let attempt = eventually(15, "the delivery attempted", || async {
        s.store.endpoint_attempts("ep_proxy", 10).await.unwrap().into_iter().next()
    })
    .await;
    assert_eq!(attempt.status_code, None, "no answer from anyone: {attempt:?}");
    assert_eq!(*asked.lock().unwrap(), 0, "the proxy was never asked to carry a delivery");
}
