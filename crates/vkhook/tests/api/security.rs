//! CSRF, secrets at rest, secrets in logs, key rotation.

use secrecy::{ExposeSecret, SecretString};
use vk::GroupId;
use vk::UserId;
use vkhook::vault::{Sealed, Slot, Vault};

use crate::helpers::*;

#[tokio::test]
async fn a_post_without_a_valid_csrf_token_is_403_and_changes_nothing() {
    let app =
        TestApp::spawn_with(Options { vkid_scopes: vec!["vkid.personal_info".into()], ..Default::default() }).await;
    app.sign_in(1).await;
    for form in
        [vec![("link", "1001")], vec![("link", "1001"), ("csrf", "forged")], vec![("link", "1001"), ("csrf", "")]]
    {
        let r = app.post_form("/communities/add", &form).await;
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("Форма устарела"));
    }
    assert!(app.store().user_communities(UserId(1)).await.unwrap().is_empty(), "nothing was added");
    let r = app.post_form("/logout", &[]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(app.get("/communities").await.status(), 200, "still signed in");
    // A valid token works.
    let r = app.post_with_csrf("/communities", "/communities/add", &[("link", "1001")]).await;
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn the_database_file_holds_no_token_in_plain_text() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let tokens = app.issued_tokens().await;
    assert!(tokens.len() >= 2, "an access and a refresh token");
    let bytes = app.db.raw_contents().await;
    assert!(bytes.len() > 1_000, "the database was read");
    let stored = app.store().user_tokens(UserId(1)).await.unwrap().expect("tokens are stored");
    assert!(stored.access_token.starts_with("v1."));
    for token in &tokens {
        assert!(!contains(&bytes, token.as_bytes()), "a token is in the database file in plain text");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn rotation_leaves_every_value_readable_with_the_new_key_alone() {
    let old = Vault::generate_spec("old");
    let app = TestApp::spawn_with(Options { token_keys: old.clone(), ..Default::default() }).await;
    app.sign_in(1).await;
    app.get("/auth/vk/login").await; // a pending state with a sealed verifier
    let new = Vault::generate_spec("new");
    let both =
        Vault::from_spec(&SecretString::from(format!("{},{}", new.expose_secret(), old.expose_secret()))).unwrap();
    let changed = vkhook::cli::rotate_keys(app.store(), &both).await.unwrap();
    assert!(changed >= 3, "access, refresh and verifier: {changed}");
    assert_eq!(vkhook::cli::rotate_keys(app.store(), &both).await.unwrap(), 0, "nothing left to rotate");
    let new_only = Vault::from_spec(&new).unwrap();
    let mut opened = 0;
    for &sealed in Sealed::ALL {
        for cell in app.store().sealed_values(sealed).await.unwrap() {
            new_only.open(&Slot::new(sealed, cell.row.as_str()), &cell.value).unwrap();
            opened += 1;
        }
    }
    assert_eq!(opened, changed);
}

#[tokio::test]
async fn another_admins_community_does_not_exist_for_them_on_any_route() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[("цена", "Цены в меню.")]).await;
    app.sandbox.comment(1001, 2, "цена?").unwrap();
    eventually(10, "the reply", || async { app.bot_comments(1001).into_iter().next() }).await;
    let event = app.events(1001, None, Some("wall_reply_new")).await.last().unwrap().id;
    // Пётр administers 1004 only; both communities are known to this vkhook.
    let petr = Driver::new(browser(), app.url.clone(), &app.sandbox, app.store().clone());
    petr.sign_in(3).await;
    assert!(!petr.get("/communities").await.text().await.unwrap().contains("Кофейня"));
    for path in ["/communities/1001", "/communities/1001/events", "/communities/1001/manual", "/communities/1001/setup"]
    {
        assert_eq!(petr.get(path).await.status(), 404, "{path}");
    }
    assert_eq!(petr.get(&format!("/communities/1001/events/{event}")).await.status(), 404);
    let own = "/communities/1004";
    for path in [
        "/communities/1001/connect".to_owned(),
        "/communities/1001/disconnect".to_owned(),
        "/communities/1001/bot".to_owned(),
        "/communities/1001/rules".to_owned(),
        "/communities/1001/check".to_owned(),
        format!("/communities/1001/events/{event}/replay"),
    ] {
        let r = petr.post_with_csrf(own, &path, &[("keywords", "x"), ("reply", "y")]).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    // Another admin's community ticked in the bulk form is left out: nothing is done to it.
    for action in ["connect", "disconnect"] {
        let r = petr.post_with_csrf(own, "/communities/bulk", &[("group", "1001"), ("action", action)]).await;
        assert_eq!(r.headers()["location"], "/communities?bulk=none", "{action}");
    }
    // Nothing of Анна's changed.
    assert_eq!(app.store().rules(GroupId(1001)).await.unwrap().len(), 1);
    assert!(app.store().community_settings(GroupId(1001)).await.unwrap().unwrap().callback_configured);
}

#[tokio::test]
async fn the_language_switch_goes_back_only_to_a_path_on_this_site() {
    let app = TestApp::spawn().await;
    let app = &app;
    let back = |to: &'static str| async move {
        let r = app.post_form("/lang", &[("lang", "en"), ("back", to)]).await;
        assert_eq!(r.status(), 303, "{to:?}");
        r.headers()["location"].to_str().unwrap().to_owned()
    };
    assert_eq!(back("/communities/1001?notice=x").await, "/communities/1001?notice=x");
    for bypass in [
        "//evil.example",
        "/\\evil.example",
        "/\tevil.example",
        "/\t/evil.example",
        "https://evil.example",
        "\\\\evil.example",
        "///evil.example",
        " //evil.example",
    ] {
        assert_eq!(back(bypass).await, "/", "{bypass:?}");
    }
}

#[tokio::test]
async fn every_page_says_how_browsers_may_use_it_and_private_pages_are_not_cached() {
    let app = TestApp::spawn().await;
    for path in ["/", "/static/style.css", "/healthz"] {
        let r = app.get(path).await;
        let h = r.headers();
        assert!(h["content-security-policy"].to_str().unwrap().contains("default-src 'self'"), "{path}");
        assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
    }
    let r = app.post_callback("{}").await;
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    app.connected_with_rules(1001, &[]).await;
    for path in ["/communities", "/communities/1001", "/communities/1001/events", "/communities/1001/manual"] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
        assert!(r.headers().contains_key("content-security-policy"), "{path}");
    }
}

#[tokio::test]
async fn editors_see_that_a_private_message_came_but_not_its_text_and_cannot_press_check() {
    let app = TestApp::spawn().await;
    // «Городские новости»: user 4 administers it, user 1 is an editor.
    app.sign_in(4).await;
    app.get("/communities").await;
    let consent = vk_sandbox::testing::Consent::allow(4);
    assert_eq!(app.press_connect(1003, &[], Some(consent)).await.status(), 200);
    assert_eq!(app.finished_setup(1003).await.state, vkhook::model::SetupState::Done);
    app.store().set_bot_settings(GroupId(1003), true, true, Some("Спасибо, ответим!")).await.unwrap();
    app.sandbox.message(1003, 2, "Мой адрес: ул. Тайная, 5").unwrap();
    eventually(10, "the message answered", || async {
        let rows = app.driver.events(1003, None, None).await;
        rows.iter().any(|r| r.event_type == "message_new" && r.status == vkhook::model::EventStatus::Done).then_some(())
    })
    .await;
    let admin_log = app.get("/communities/1003/events").await.text().await.unwrap();
    assert!(admin_log.contains("ул. Тайная") && admin_log.contains("Спасибо, ответим!"), "{admin_log}");

    let editor =
        Driver::new(TestApp::sign_in_elsewhere(&app, 1).await, app.url.clone(), &app.sandbox, app.store().clone());
    editor.get("/communities").await;
    let r = editor.get("/communities/1003/events").await;
    assert_eq!(r.status(), 200);
    let log = r.text().await.unwrap();
    assert!(log.contains("message_new") && log.contains("видят только администраторы"), "{log}");
    assert!(
        !log.contains("ул. Тайная") && !log.contains("Спасибо, ответим!"),
        "neither the text nor the reply:\n{log}"
    );
    let id = app.driver.events(1003, None, None).await.into_iter().find(|r| r.event_type == "message_new").unwrap().id;
    let raw = editor.get(&format!("/communities/1003/events/{id}")).await;
    assert_eq!(raw.status(), 403);
    assert!(!raw.text().await.unwrap().contains("ул. Тайная"));
    let page = editor.get("/communities/1003").await.text().await.unwrap();
    assert!(!page.contains("id=\"check-now\""), "no «Проверить» for an editor");
    let r = editor.post_with_csrf("/communities/1003", "/communities/1003/check", &[]).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn check_is_limited_per_community() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    app.connect(1001).await;
    let limit = vkhook::config::Timing::default().checks_per_minute;
    for i in 0..limit {
        let r = app.post_with_csrf("/communities/1001", "/communities/1001/check", &[]).await;
        assert_eq!(r.status(), 303, "press {i}");
    }
    let vk_calls = || async {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        let calls: u64 = metrics
            .lines()
            .filter(|l| l.starts_with("vkhook_vk_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        calls
    };
    let csrf = csrf_from(&app.get("/communities/1001").await.text().await.unwrap()).unwrap();
    let before = vk_calls().await;
    assert!(before > 0);
    let r = app.post_form("/communities/1001/check", &[("csrf", csrf.as_str())]).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(vk_calls().await, before, "no VK call for a refused press");
}

#[tokio::test]
async fn an_administrator_removed_at_vk_can_change_nothing() {
    let timing = vkhook::config::Timing { role_ttl: std::time::Duration::ZERO, ..Options::default().timing };
    let app = TestApp::spawn_with(Options { timing, ..Default::default() }).await;
    app.sign_in(1).await;
    app.connect(1001).await;
    let csrf = csrf_from(&app.get("/communities/1001").await.text().await.unwrap()).unwrap();
    let rule = [("csrf", csrf.as_str()), ("keywords", "цена"), ("reply", "Цены в меню.")];
    assert_eq!(app.post_form("/communities/1001/rules", &rule).await.status(), 303, "an administrator may");
    // At VK, Анна is no longer an administrator of «Кофейня «Зерно»»; her page here was loaded before.
    app.sandbox.world().group_mut(1001).unwrap().admins.remove(&1);
    let r = app.post_form("/communities/1001/rules", &rule).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("больше не администратор"), "a clear refusal");
    // From then on the community is not in her list here either: nothing else goes through.
    for path in ["/communities/1001/disconnect", "/communities/1001/connect", "/communities/1001/check"] {
        let r = app.post_form(path, &[("csrf", csrf.as_str())]).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    assert_eq!(app.store().rules(GroupId(1001)).await.unwrap().len(), 1, "no second rule");
    assert_eq!(app.sandbox.servers(1001).len(), 1, "still connected");
    assert!(
        app.store().community_for_user(UserId(1), GroupId(1001)).await.unwrap().is_none(),
        "and the stored list follows VK"
    );
}
