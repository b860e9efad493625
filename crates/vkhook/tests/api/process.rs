//! vkhook as users run it: real `vkhook serve` processes (behind a one-backend proxy that gives them a public URL),
//! each with its own log — what it logs, and how it stops.

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
    let sandbox = Sandbox::start(SandboxConfig { time_factor: 0.001, ..Default::default() }).await.unwrap();
    let dir = TempDir::new("vkhook-process");
    let db_url = format!("sqlite://{}/vkhook.db", dir.0.display());
    let proxy = start_proxy(1, 0).await;
    let keys: SecretString = Vault::generate_spec("process");
    let instance = Instance::spawn(serve_env(&sandbox, &proxy.url, &db_url, &keys), rust_log).await;
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
async fn sigterm_finishes_the_work_in_hand_and_gives_up_the_community_leases() {
    let mut s = serve("warn").await;
    s.driver.sign_in(1).await;
    s.driver.connect(1001).await;
    s.store.set_bot_settings(1001, true, true, Some("Спасибо!")).await.unwrap();
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
