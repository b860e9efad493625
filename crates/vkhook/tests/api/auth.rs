//! Signing in with VK ID, sessions, and what happens when VK ID says no.

use vk::UserId;
use vk_sandbox::testing::Consent;
use vkhook::config::Timing;

use crate::helpers::*;

fn set_cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let first = v.split(';').next()?;
        let (k, value) = first.split_once('=')?;
        (k == name).then(|| value.to_owned())
    })
}

#[tokio::test]
async fn user_1_signs_in_and_sees_the_communities_they_manage() {
    let app = TestApp::spawn().await;
    let landing = app.get("/").await.text().await.unwrap();
    assert!(landing.contains("Войти через VK ID"));
    let page = app.sign_in(1).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for name in ["Кофейня «Зерно»", "Книжный клуб", "Городские новости"] {
        assert!(html.contains(name), "{name} is listed");
    }
    assert!(!html.contains("Соседский чат"));
    assert!(html.contains("Анна Админова"), "the header shows who is signed in");
    assert_eq!(html.matches("Администратор").count(), 2);
    assert!(html.contains("Редактор"));
    assert_eq!(html.matches("Не подключено").count(), 3);
    let detail = app.get("/communities/1001").await;
    assert_eq!(detail.status(), 200);
    let detail = detail.text().await.unwrap();
    assert!(detail.contains("Подключить Callback API"));
}

#[tokio::test]
async fn user_3_sees_only_their_community_and_gets_404_for_another() {
    let app = TestApp::spawn().await;
    let html = app.sign_in(3).await.text().await.unwrap();
    assert!(html.contains("Соседский чат"));
    assert!(!html.contains("Кофейня"));
    assert_eq!(app.get("/communities/1001").await.status(), 404);
    assert_eq!(app.get("/communities/1004").await.status(), 200);
    assert_eq!(app.get("/communities/not-a-number").await.status(), 404);
}

#[tokio::test]
async fn pages_need_a_signed_in_user() {
    let app = TestApp::spawn().await;
    for path in ["/communities", "/communities/1001"] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/");
    }
}

#[tokio::test]
async fn a_wrong_state_shows_a_clear_page_not_a_500() {
    let app = TestApp::spawn().await;
    // No session at all.
    let r = app.get("/auth/vk/callback?code=abc&state=bogus&device_id=d").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Ссылка для входа устарела"));
    // A session, but a state it never asked for.
    app.get("/auth/vk/login").await;
    let r = app.get("/auth/vk/callback?code=abc&state=bogus&device_id=d").await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("Ссылка для входа устарела"));
    assert!(html.contains("href=\"/auth/vk/login\""), "a way back");
}

/// VK may leave `state` out of an error redirect: the page says what happened — a refusal, or VK's error — never
/// "bad state", for sign-in (with or without a session) and for the community consent.
#[tokio::test]
async fn an_error_redirect_without_a_state_says_what_happened() {
    let app = TestApp::spawn().await;
    let r = app.get("/auth/vk/callback?error=access_denied&error_description=User+denied").await;
    assert_eq!(r.status(), 403);
    let html = r.text().await.unwrap();
    assert!(html.contains("Вы отменили вход") && !html.contains("устарела"), "{html}");
    let r = app.get("/auth/vk/callback?error=server_error").await;
    assert!(r.text().await.unwrap().contains("VK ID не подтвердил вход"));
    app.sign_in(1).await;
    let r = app.get("/auth/vk/community-callback?error=access_denied&error_reason=user_denied").await;
    assert_eq!(r.status(), 403);
    let html = r.text().await.unwrap();
    assert!(html.contains("Вы не выдали vkhook доступ") && !html.contains("устарела"), "{html}");
    let r = app.get("/auth/vk/community-callback?error=invalid_request&state=").await;
    assert!(r.text().await.unwrap().contains("ВКонтакте отклонил запрос доступа"));
    // Without an error, an unknown state is still refused as such.
    let r = app.get("/auth/vk/community-callback?code=x&state=bogus").await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_replayed_callback_or_code_is_refused() {
    let app = TestApp::spawn().await;
    let back = app.authorize_at_vk_id(Consent::allow(1)).await;
    assert_eq!(app.http.get(&back).send().await.unwrap().status(), 303);
    // The same redirect again: its state was used up.
    let again = app.http.get(&back).send().await.unwrap();
    assert_eq!(again.status(), 400);
    // The old code under a fresh state: VK ID refuses the code.
    let fresh = app.authorize_at_vk_id(Consent::allow(1)).await;
    let fresh = url::Url::parse(&fresh).unwrap();
    let old = url::Url::parse(&back).unwrap();
    let mut replay = fresh.clone();
    let pairs: Vec<(String, String)> = fresh
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code" || k == "device_id" {
                old.query_pairs().find(|(ok, _)| *ok == k).unwrap().1.into_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    replay.query_pairs_mut().clear().extend_pairs(pairs);
    let r = app.http.get(replay.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("VK ID не подтвердил вход"));
}

#[tokio::test]
async fn a_denied_consent_explains_and_offers_to_try_again() {
    let app = TestApp::spawn().await;
    let back = app.authorize_at_vk_id(Consent::deny(1)).await;
    let r = app.http.get(&back).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let html = r.text().await.unwrap();
    assert!(html.contains("Вы отменили вход"));
    assert_eq!(app.get("/communities").await.status(), 303, "not signed in");
}

#[tokio::test]
async fn the_session_id_changes_at_sign_in_and_logout_ends_it() {
    let app = TestApp::spawn().await;
    let start = app.get("/auth/vk/login").await;
    let before = set_cookie_value(&start, "vkhook_session").expect("an anonymous session for the pending sign-in");
    let cookie = start.headers().get_all("set-cookie").iter().next().unwrap().to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let back = vk_sandbox::testing::consent(&authorize, &Consent::allow(1)).await.unwrap();
    let landed = app.http.get(back.as_str()).send().await.unwrap();
    let after = set_cookie_value(&landed, "vkhook_session").expect("a new session");
    assert_ne!(before, after);

    // The pre-login id is dead.
    let stale = browser();
    let r = stale
        .get(format!("{}/communities", app.url))
        .header("cookie", format!("vkhook_session={before}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = stale
        .get(format!("{}/communities", app.url))
        .header("cookie", format!("vkhook_session={after}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let out = app.post_with_csrf("/communities", "/logout", &[]).await;
    assert_eq!(out.status(), 303);
    assert_eq!(app.get("/communities").await.status(), 303);
    let r = stale
        .get(format!("{}/communities", app.url))
        .header("cookie", format!("vkhook_session={after}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the session is gone server-side, not just the cookie");
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let before = app.issued_tokens().await.len();
    app.sandbox.advance_clock(3700); // an hour later at VK
    let page = app.get("/communities").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Кофейня"));
    assert!(app.issued_tokens().await.len() > before, "a new token was issued by refreshing");
}

#[tokio::test]
async fn a_failed_refresh_asks_to_sign_in_again() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let revoke = reqwest::Client::new()
        .post(format!("{}/_sandbox/tokens/revoke", app.sandbox.url()))
        .json(&serde_json::json!({"user_id": 1, "refresh": true}))
        .send()
        .await
        .unwrap();
    assert!(revoke.status().is_success());
    let r = app.get("/communities").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/?notice=signin_again");
    let landing = app.get("/?notice=signin_again").await.text().await.unwrap();
    assert!(landing.contains("Войдите снова"));
    assert!(landing.contains("Войти через VK ID"), "signed out, offered to sign in");
    assert!(app.store().user_tokens(UserId(1)).await.unwrap().is_none(), "dead tokens are forgotten");
}

#[tokio::test]
async fn english_by_switch_or_accept_language() {
    let app = TestApp::spawn().await;
    let r = app.http.get(format!("{}/", app.url)).header("accept-language", "en-US,en;q=0.9").send().await.unwrap();
    assert!(r.text().await.unwrap().contains("Sign in with VK ID"));
    app.sign_in(1).await;
    let r = app.post_with_csrf("/communities", "/lang", &[("lang", "en"), ("back", "/communities/1001")]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/communities/1001");
    let html = app.get("/communities/1001").await.text().await.unwrap();
    assert!(html.contains("Connect Callback API"));
    assert!(html.contains("lang=\"en\""));
    // An outside address is never a way back.
    let r = app.post_with_csrf("/communities", "/lang", &[("lang", "ru"), ("back", "//evil.example/")]).await;
    assert_eq!(r.headers()["location"], "/");
}

#[tokio::test]
async fn healthz_answers_while_the_database_does() {
    let app = TestApp::spawn().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    app.store().close().await;
    assert_eq!(app.get("/healthz").await.status(), 503);
}

#[tokio::test]
async fn sessions_end_after_idle_time_and_absolute_lifetime() {
    let app = TestApp::spawn_with(Options {
        timing: vkhook::config::Timing {
            session_idle: std::time::Duration::from_secs(600),
            session_absolute: std::time::Duration::from_secs(3600),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let back = app.authorize_at_vk_id(Consent::allow(1)).await;
    let landed = app.http.get(&back).send().await.unwrap();
    let cookie = set_cookie_value(&landed, "vkhook_session").unwrap();
    let hash = vkhook::accounts::hash_hex(&cookie);
    assert_eq!(app.get("/communities").await.status(), 200);
    // Unused for longer than the idle time: gone.
    let now = vkhook::store::now_ms();
    app.store().touch_session(&hash, now - 601_000).await.unwrap();
    assert_eq!(app.get("/communities").await.status(), 303);
    assert!(app.store().session(&hash).await.unwrap().is_none(), "deleted, not just refused");

    // Used all the time, but older than the absolute lifetime: gone too.
    let now = vkhook::store::now_ms();
    for (id, age_ms, expected) in [("young-session", 10_000, 200), ("old-session", 3_601_000, 303)] {
        app.store()
            .insert_session(&vkhook::store::SessionRow {
                id_hash: vkhook::accounts::hash_hex(id),
                user_id: Some(1),
                csrf_token: "c".into(),
                created_at: now - age_ms,
                last_seen_at: now,
            })
            .await
            .unwrap();
        let r = browser()
            .get(format!("{}/communities", app.url))
            .header("cookie", format!("vkhook_session={id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected, "{id}");
    }
}

#[tokio::test]
async fn two_requests_that_refresh_at_once_both_stay_signed_in() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    // The access token is dead for both requests; VK ID rotates the refresh token, so the second refresh with the
    // old one is refused — it must pick up the first one's result instead of signing the user out.
    app.sandbox.advance_clock(3700);
    let (a, b) = tokio::join!(app.get("/communities"), app.get("/communities"));
    for r in [a, b] {
        assert_eq!(r.status(), 200, "still signed in");
        assert!(r.text().await.unwrap().contains("Кофейня «Зерно»"));
    }
    assert!(app.store().user_tokens(UserId(1)).await.unwrap().is_some(), "the tokens are kept");
    assert_eq!(app.get("/communities").await.status(), 200);
}

/// A client with no cookie jar and no redirects: every request comes without a session, as from a script.
fn anonymous() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test]
async fn anonymous_sign_in_starts_are_limited_per_address_with_429_and_retry_after() {
    let app = TestApp::spawn().await;
    let url = format!("{}/auth/vk/login", app.url);
    let limit = Timing::default().logins_per_minute;
    for i in 0..limit {
        assert_eq!(anonymous().get(&url).send().await.unwrap().status(), 303, "start {i}");
    }
    let r = anonymous().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(r.text().await.unwrap().contains("Слишком много попыток"));
    // Someone behind another address (as a local proxy says) is not held up.
    let other = anonymous().get(&url).header("x-forwarded-for", "203.0.113.7").send().await.unwrap();
    assert_eq!(other.status(), 303);
}

/// Keeping the cookie does not get around the limit, and each new start replaces the session's pending one: a
/// browser that starts over and over holds one pending sign-in.
#[tokio::test]
async fn starts_that_keep_their_cookie_are_limited_too_and_replace_the_pending_one() {
    let app = TestApp::spawn().await;
    let limit = Timing::default().logins_per_minute;
    for i in 0..limit {
        assert_eq!(app.get("/auth/vk/login").await.status(), 303, "start {i}");
    }
    assert_eq!(app.get("/auth/vk/login").await.status(), 429, "the same cookie, over the limit");
    let pending = match &app.db {
        TestDatabase::Sqlite(file) => {
            let url = format!("sqlite://{}", file.display());
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM oauth_states").fetch_one(&mut conn).await.unwrap()
        }
        TestDatabase::Postgres(db) => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM oauth_states").fetch_one(&mut conn).await.unwrap()
        }
    };
    assert_eq!(pending, 1, "one pending sign-in for the session, not {limit}");
}

#[tokio::test]
async fn an_unused_anonymous_session_and_its_pending_sign_in_expire_within_minutes() {
    let timing = Timing {
        anonymous_session_idle: std::time::Duration::from_millis(100),
        housekeeping_every: std::time::Duration::from_millis(20),
        ..Options::default().timing
    };
    let app = TestApp::spawn_with(Options { timing, ..Default::default() }).await;
    let r = anonymous().get(format!("{}/auth/vk/login", app.url)).send().await.unwrap();
    let session = set_cookie_value(&r, "vkhook_session").expect("an anonymous session");
    let to_vk = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let state = to_vk.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let session_hash = vkhook::accounts::hash_hex(&session);
    assert!(app.store().session(&session_hash).await.unwrap().is_some());
    eventually(10, "the anonymous session removed", || async {
        app.store().session(&session_hash).await.unwrap().is_none().then_some(())
    })
    .await;
    let pending = app.store().take_oauth_state(&vkhook::accounts::hash_hex(&state)).await.unwrap();
    assert!(pending.is_none(), "its pending sign-in went with it");
    // A signed-in session is not anonymous: it stays.
    app.sign_in(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.get("/communities").await.status(), 200, "still signed in");
}
