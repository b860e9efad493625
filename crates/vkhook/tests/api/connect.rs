//! «🔗 Подключить Callback API» against the sandbox, through the UI's HTTP routes.

use secrecy::ExposeSecret;
use vk::GroupId;
use vk_sandbox::testing::Consent;
use vk_sandbox::{Fault, ServerStatus};
use vkhook::hooks::CrashPoint;
use vkhook::model::{CommunityStatus, ErrorKind, SetupState, StepState};

use crate::helpers::*;

#[tokio::test]
async fn user_1_connects_1001_with_one_confirmed_server() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let setup = app.connect(1001).await;
    assert_eq!(setup.state, SetupState::Done, "{setup:?}");
    assert!(setup.vk_calls <= 8, "{} VK calls", setup.vk_calls);

    let servers = app.sandbox.servers(1001);
    assert_eq!(servers.len(), 1);
    let server = &servers[0];
    assert_eq!(server.url, format!("{}/vk/callback", app.url));
    assert_eq!(server.title, "vkhook");
    assert_eq!(server.status, ServerStatus::Ok);
    assert_eq!(server.api_version, "5.199");
    let events: Vec<&str> = server.events.iter().map(String::as_str).collect();
    let mut expected = vk::DEFAULT_SUBSCRIPTION.to_vec();
    expected.sort();
    assert_eq!(events, expected);
    assert_eq!(server.secret_key.len(), 32);

    let settings = app.store().community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert!(settings.callback_configured);
    assert_eq!(settings.status, CommunityStatus::Connected);
    assert_eq!(settings.server_id, Some(server.id));
    let code = settings.confirmation_code.clone().unwrap();
    assert_eq!(code, app.sandbox.world().group(1001).unwrap().confirmation_code, "the current code");
    let sealed = settings.secret.clone().unwrap();
    assert!(sealed.starts_with("v1.") && !sealed.contains(&server.secret_key), "the secret is encrypted");
    let secret = app.state.credentials.current_callback_secret(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!(secret.expose_secret(), server.secret_key);

    // VK asked right after the add, and got the code that was already stored.
    let confirmation = app.sandbox.deliveries(1001).into_iter().find(|d| d.event_type == "confirmation").unwrap();
    assert_eq!(confirmation.outcome, "confirmed");
    assert_eq!(confirmation.answer, code);
    assert_eq!(confirmation.http_status, Some(200));

    let page = app.get("/communities/1001/setup").await.text().await.unwrap();
    assert!(page.contains("Callback API подключен"));
    assert_eq!(page.matches("готово").count(), 5, "all five steps done");
    let detail = app.get("/communities/1001").await.text().await.unwrap();
    assert!(detail.contains("Callback API подключен"));
    assert!(detail.contains(&format!("{}/vk/callback", app.url)));
    assert!(detail.contains("Анна Админова"), "connected by");
    assert!(!detail.contains(&server.secret_key), "no secret on the page");
    let list = app.get("/communities").await.text().await.unwrap();
    assert!(list.contains("Подключено"));
}

#[tokio::test]
async fn connecting_twice_keeps_one_server_and_its_secret_with_a_new_code() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    app.connect(1001).await;
    let first = app.sandbox.servers(1001)[0].clone();
    let first_code = app.store().community_settings(GroupId(1001)).await.unwrap().unwrap().confirmation_code;
    // The token is stored now: the second press needs no consent.
    let r = app.press_connect(1001, &[], None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.finished_setup(1001).await.state, SetupState::Done);
    let servers = app.sandbox.servers(1001);
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].id, first.id, "edited, not added");
    assert_eq!(servers[0].secret_key, first.secret_key, "nothing needed a new secret: VK's retries keep working");
    assert_eq!(servers[0].status, ServerStatus::Ok);
    let settings = app.store().community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert_ne!(settings.confirmation_code, first_code);
    assert!(settings.previous_secret.is_none(), "no rotation");
}

#[tokio::test]
async fn another_services_server_is_never_touched() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let foreign = reqwest::Client::new()
        .post(format!("{}/_sandbox/groups/1001/servers", app.sandbox.url()))
        .json(&serde_json::json!({"title": "CRM", "url": "http://127.0.0.1:9/crm", "secret_key": "theirs"}))
        .send()
        .await
        .unwrap();
    assert!(foreign.status().is_success());
    let before = app.sandbox.servers(1001)[0].clone();
    app.connect(1001).await;
    let servers = app.sandbox.servers(1001);
    assert_eq!(servers.len(), 2);
    let crm = servers.iter().find(|s| s.id == before.id).unwrap();
    assert_eq!(
        (crm.title.as_str(), crm.url.as_str(), crm.secret_key.as_str()),
        ("CRM", "http://127.0.0.1:9/crm", "theirs")
    );
    assert_eq!(app.our_servers(1001).len(), 1);
}

#[tokio::test]
async fn ten_foreign_servers_show_the_slots_and_replace_only_the_one_picked() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    app.fill_server_slots(1001).await;
    let setup = app.connect(1001).await;
    assert_eq!((setup.state, setup.error_kind), (SetupState::Failed, Some(ErrorKind::ServersLimit)));
    assert_eq!(app.sandbox.servers(1001).len(), 10, "nothing deleted");
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("10 серверов"));
    for i in 0..10 {
        assert!(page.contains(&format!("http://127.0.0.1:9/{i}")), "slot {i} is listed");
    }
    // The admin picks one explicitly.
    let victim = app.sandbox.servers(1001)[3].id.to_string();
    let r = app.press_connect(1001, &[("replace_server_id", &victim)], None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.finished_setup(1001).await.state, SetupState::Done);
    let servers = app.sandbox.servers(1001);
    assert_eq!(servers.len(), 10);
    assert!(servers.iter().all(|s| s.id.to_string() != victim));
    assert_eq!(app.our_servers(1001).len(), 1);
}

#[tokio::test]
async fn disconnect_deletes_our_server_and_forgets_the_token() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    app.connect(1001).await;
    let r = app.post_with_csrf("/communities/1001", "/communities/1001/disconnect", &[]).await;
    assert_eq!(r.status(), 303);
    assert!(app.sandbox.servers(1001).is_empty());
    let s = app.store().community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert!(!s.callback_configured);
    assert_eq!((s.community_token, s.secret, s.confirmation_code), (None, None, None));
    let page = app.get(r.headers()["location"].to_str().unwrap()).await.text().await.unwrap();
    assert!(page.contains("Callback API отключен"));
    assert!(page.contains("Подключить Callback API"));
}

#[tokio::test]
async fn a_crash_after_the_add_is_finished_by_the_next_attempt_with_one_server() {
    let app = TestApp::spawn_with(Options { timing: short_setup_lease(300), ..Default::default() }).await;
    app.sign_in(1).await;
    app.state.hooks.arm(CrashPoint::SetupAfterServer);
    app.press_connect(1001, &[], Some(Consent::allow(1))).await;
    eventually(5, "the server was added", || async { (app.sandbox.servers(1001).len() == 1).then_some(()) }).await;
    let stuck = app.store().setup(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!(stuck.state, SetupState::Running, "the runner died mid-way");
    assert_eq!(stuck.step_server, StepState::Running);
    // A second click while the dead runner's lease holds joins the run; after it expires, a click restarts it.
    app.wait_for_lease_expiry(1001).await;
    let r = app.press_connect(1001, &[], None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.finished_setup(1001).await.state, SetupState::Done);
    assert_eq!(app.sandbox.servers(1001).len(), 1);
    assert_eq!(app.sandbox.servers(1001)[0].status, ServerStatus::Ok);
}

#[tokio::test]
async fn an_interrupted_run_resumes_when_its_page_is_reloaded() {
    let app = TestApp::spawn_with(Options { timing: short_setup_lease(200), ..Default::default() }).await;
    app.sign_in(1).await;
    app.state.hooks.arm(CrashPoint::SetupAfterServer);
    app.press_connect(1001, &[], Some(Consent::allow(1))).await;
    eventually(5, "the server was added", || async { (app.sandbox.servers(1001).len() == 1).then_some(()) }).await;
    app.wait_for_lease_expiry(1001).await;
    app.get("/communities/1001/setup").await; // the reload picks the run up
    assert_eq!(app.finished_setup(1001).await.state, SetupState::Done);
    assert_eq!(app.sandbox.servers(1001).len(), 1);
}

#[tokio::test]
async fn an_editor_cannot_connect_and_is_told_whom_to_ask() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let page = app.get("/communities/1003").await.text().await.unwrap();
    assert!(page.contains("может только администратор"));
    assert!(page.contains("Вы — редактор"));
    let r = app.post_with_csrf("/communities/1003", "/communities/1003/connect", &[]).await;
    assert_eq!(r.status(), 403);
    assert!(app.sandbox.servers(1003).is_empty());
    assert!(app.store().setup(GroupId(1003)).await.unwrap().is_none());
}

#[tokio::test]
async fn user_3_cannot_connect_1001_and_a_post_without_csrf_changes_nothing() {
    let app = TestApp::spawn().await;
    app.sign_in(3).await;
    let r = app.post_with_csrf("/communities", "/communities/1001/connect", &[]).await;
    assert_eq!(r.status(), 404);
    let r = app.post_form("/communities/1004/connect", &[]).await;
    assert_eq!(r.status(), 403);
    assert!(app.store().setup(GroupId(1004)).await.unwrap().is_none());
}

#[tokio::test]
async fn a_token_without_manage_is_refused_and_nothing_is_added() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let r = app.press_connect(1001, &[], Some(Consent::granting(1, &["messages"]))).await;
    assert_eq!(r.status(), 403);
    let html = r.text().await.unwrap();
    assert!(html.contains("без права «Управление сообществом»"), "{html}");
    assert!(app.sandbox.servers(1001).is_empty());
    let s = app.store().community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!(s.community_token, None, "nothing stored");
}

#[tokio::test]
async fn a_denied_community_consent_stores_nothing() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let r = app.press_connect(1001, &[], Some(Consent::deny(1))).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("не выдали vkhook доступ"));
    assert!(app.store().community_settings(GroupId(1001)).await.unwrap().unwrap().community_token.is_none());
}

#[tokio::test]
async fn a_state_from_another_session_is_refused() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let page = "/communities/1001";
    let r = app.post_with_csrf(page, &format!("{page}/connect"), &[]).await;
    let authorize = r.headers()["location"].to_str().unwrap().to_owned();
    let back = vk_sandbox::testing::consent(&authorize, &Consent::allow(1)).await.unwrap();
    // Another browser, signed in as the same user, brings the redirect.
    let other = TestApp::sign_in_elsewhere(&app, 1).await;
    let r = other.get(back.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(app.store().community_settings(GroupId(1001)).await.unwrap().unwrap().community_token.is_none());
}

#[tokio::test]
async fn vk_errors_end_as_the_rules_say() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    // Error 10 twice, then success: retried inside the step.
    app.sandbox.inject_fault(Fault {
        method: Some("groups.addCallbackServer".into()),
        error_code: Some(10),
        latency_ms: None,
        remaining: Some(2),
    });
    assert_eq!(app.connect(1001).await.state, SetupState::Done);
    assert_eq!(app.sandbox.servers(1001).len(), 1);

    // Error 5: the token is dead → «Нужно заново выдать доступ» with a button.
    app.sandbox.inject_fault(Fault {
        method: Some("groups.getCallbackConfirmationCode".into()),
        error_code: Some(5),
        latency_ms: None,
        remaining: Some(1),
    });
    let r = app.press_connect(1001, &[], None).await;
    assert_eq!(r.status(), 200);
    let setup = app.finished_setup(1001).await;
    assert_eq!(setup.error_kind, Some(ErrorKind::Reauth));
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("Нужно заново выдать доступ"));
    assert!(page.contains("Выдать доступ заново"));
    assert!(app.store().community_settings(GroupId(1001)).await.unwrap().unwrap().community_token.is_none());
    // The button asks VK again and the setup finishes.
    let r = app.press_connect(1001, &[("reauth", "1")], Some(Consent::allow(1))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.finished_setup(1001).await.state, SetupState::Done);

    // VK keeps failing: a clear reason and «Попробовать снова».
    app.sandbox.inject_fault(Fault {
        method: Some("groups.getCallbackConfirmationCode".into()),
        error_code: Some(10),
        latency_ms: None,
        remaining: None,
    });
    app.press_connect(1001, &[], None).await;
    assert_eq!(app.finished_setup(1001).await.error_kind, Some(ErrorKind::VkUnavailable));
    let page = app.get("/communities/1001/setup").await.text().await.unwrap();
    assert!(page.contains("ВКонтакте не отвечает"));
    assert!(!page.contains("error_code"), "no raw JSON");
    let detail = app.get("/communities/1001").await.text().await.unwrap();
    assert!(detail.contains("Попробовать снова"));

    // Error 15 on the way: the user is no longer an administrator at VK.
    app.sandbox.world().faults.clear();
    app.sandbox.inject_fault(Fault {
        method: Some("groups.getCallbackConfirmationCode".into()),
        error_code: Some(15),
        latency_ms: None,
        remaining: Some(1),
    });
    app.press_connect(1001, &[], None).await;
    assert_eq!(app.finished_setup(1001).await.error_kind, Some(ErrorKind::NotAdmin));
    let detail = app.get("/communities/1001").await.text().await.unwrap();
    assert!(detail.contains("больше не администратор"));
}

#[tokio::test]
async fn saving_event_types_only_changes_the_callback_settings() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    app.connect(1001).await;
    let server_before = app.sandbox.servers(1001)[0].clone();
    let r = app
        .post_with_csrf(
            "/communities/1001",
            "/communities/1001/event-types",
            &[("event", "message_new"), ("event", "wall_reply_new")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let server = app.sandbox.servers(1001)[0].clone();
    assert_eq!(server.events.iter().map(String::as_str).collect::<Vec<_>>(), vec!["message_new", "wall_reply_new"]);
    assert_eq!(
        (server.id, server.secret_key.as_str(), server.status),
        (server_before.id, server_before.secret_key.as_str(), ServerStatus::Ok)
    );
    let page = app.get("/communities/1001?notice=events_saved").await.text().await.unwrap();
    assert!(page.contains("События сохранены"));
    assert!(page.contains("value=\"message_new\" checked"));
    assert!(!page.contains("value=\"like_add\" checked"));
}

#[tokio::test]
async fn the_callback_answers_confirmation_only_with_the_right_secret() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    app.connect(1001).await;
    let settings = app.store().community_settings(GroupId(1001)).await.unwrap().unwrap();
    let code = settings.confirmation_code.unwrap();
    let secret = app.state.credentials.current_callback_secret(GroupId(1001)).await.unwrap().unwrap();
    let post = |body: serde_json::Value| {
        let url = format!("{}/vk/callback", app.url);
        async move { reqwest::Client::new().post(url).body(body.to_string()).send().await.unwrap() }
    };
    let ok = post(
        serde_json::json!({"type": "confirmation", "group_id": 1001, "event_id": "", "secret": secret.expose_secret()}),
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert!(ok.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(ok.text().await.unwrap(), code);
    let wrong =
        post(serde_json::json!({"type": "confirmation", "group_id": 1001, "event_id": "", "secret": "nope"})).await;
    assert_eq!(wrong.status(), 403);
    assert_ne!(wrong.text().await.unwrap(), code);
    let unknown = post(serde_json::json!({"type": "confirmation", "group_id": 999999, "event_id": ""})).await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn the_manual_setup_answers_the_pasted_string_and_connects_on_the_first_event() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let page = app.get("/communities/1001/manual").await.text().await.unwrap();
    assert!(page.contains(&format!("{}/vk/callback", app.url)));
    assert!(page.contains("отличается от кода"));
    let r = app.post_with_csrf("/communities/1001/manual", "/communities/1001/manual/secret", &[]).await;
    assert_eq!(r.status(), 303);
    let page = app.get("/communities/1001/manual").await.text().await.unwrap();
    let at = page.find("id=\"manual-secret\">").unwrap() + "id=\"manual-secret\">".len();
    let secret = page[at..at + 32].to_owned();
    let r = app
        .post_with_csrf("/communities/1001/manual", "/communities/1001/manual", &[("confirmation", "a1b2c3d4")])
        .await;
    assert_eq!(r.status(), 303);
    let url = format!("{}/vk/callback", app.url);
    let http = reqwest::Client::new();
    let answer = http
        .post(&url)
        .body(serde_json::json!({"type": "confirmation", "group_id": 1001, "secret": secret}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.text().await.unwrap(), "a1b2c3d4");
    assert_eq!(
        app.store().community_settings(GroupId(1001)).await.unwrap().unwrap().status,
        CommunityStatus::Connecting
    );
    let event = serde_json::json!({"type": "group_join", "event_id": "e1", "v": "5.199", "group_id": 1001, "secret": secret, "object": {"user_id": 2, "join_type": "join"}});
    assert_eq!(http.post(&url).body(event.to_string()).send().await.unwrap().text().await.unwrap(), "ok");
    eventually(5, "connected", || async {
        app.store().community_settings(GroupId(1001)).await.unwrap().unwrap().callback_configured.then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_hand_made_key_is_checked_with_get_token_permissions() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let key = app.sandbox.issue_community_token(1001, &["manage", "messages"]);
    let r = app.post_with_csrf("/communities/1001/manual", "/communities/1001/manual", &[("key", &key)]).await;
    assert_eq!(r.status(), 303);
    let page = app.get(r.headers()["location"].to_str().unwrap()).await.text().await.unwrap();
    assert!(page.contains("Ключ проверен"));
    assert!(!page.contains(&key));
    let other = app.sandbox.issue_community_token(1002, &["manage"]);
    let r = app.post_with_csrf("/communities/1001/manual", "/communities/1001/manual", &[("key", &other)]).await;
    assert_eq!(r.status(), 422);
    let r = app.post_with_csrf("/communities/1001/manual", "/communities/1001/manual", &[("key", "vk1.a.bogus")]).await;
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn the_periodic_reconcile_puts_back_a_server_deleted_at_vk_without_anyone_asking() {
    let mut options = Options::default();
    options.timing.reconcile_every = std::time::Duration::from_millis(200);
    let app = TestApp::spawn_with(options).await;
    app.sign_in(1).await;
    app.connect(1001).await;
    let first = app.sandbox.servers(1001)[0].id;
    app.sandbox.world().group_mut(1001).unwrap().servers.clear();
    let back = eventually(15, "our server back at VK", || async {
        app.sandbox.servers(1001).into_iter().find(|s| s.status == vk_sandbox::ServerStatus::Ok)
    })
    .await;
    assert_ne!(back.id, first, "a new server");
    assert_eq!(back.url, format!("{}/vk/callback", app.url));
    let log = app.store().community_log(GroupId(1001), 10).await.unwrap();
    assert!(log.iter().any(|l| l.entry() == Some(vkhook::model::LogEntry::ServerMissing)));
}

#[tokio::test]
async fn a_manual_setup_with_a_pasted_key_works_end_to_end() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    // 1. Our manual page: the URL, a secret to paste, and where the confirmation string goes.
    let r = app.post_with_csrf("/communities/1001/manual", "/communities/1001/manual/secret", &[]).await;
    assert_eq!(r.status(), 303);
    let page = app.get("/communities/1001/manual").await.text().await.unwrap();
    let at = page.find("id=\"manual-secret\">").unwrap() + "id=\"manual-secret\">".len();
    let secret = page[at..at + 32].to_owned();
    // 2. The string VK shows in the community's settings, pasted before VK asks for it.
    let code = app.sandbox.world().group(1001).unwrap().confirmation_code.clone();
    let r =
        app.post_with_csrf("/communities/1001/manual", "/communities/1001/manual", &[("confirmation", &code)]).await;
    assert_eq!(r.status(), 303);
    // 3. The admin adds our server in VK's settings by hand; VK confirms it with our endpoint.
    let server =
        serde_json::json!({"title": "vkhook", "url": format!("{}/vk/callback", app.url), "secret_key": secret});
    let added = app.sandbox_control("/_sandbox/groups/1001/servers", server).await;
    let server_id = added["server_id"].as_i64().unwrap();
    eventually(10, "VK confirmed the server", || async {
        app.sandbox.servers(1001).into_iter().find(|s| s.id == server_id && s.status == vk_sandbox::ServerStatus::Ok)
    })
    .await;
    for server in app.sandbox.world().group_mut(1001).unwrap().servers.iter_mut() {
        server.events.insert("wall_reply_new".into());
    }
    // 4. A community key made by hand, pasted; the bot on.
    let key = app.sandbox.issue_community_token(1001, &["manage", "messages"]);
    let r = app.post_with_csrf("/communities/1001/manual", "/communities/1001/manual", &[("key", &key)]).await;
    assert_eq!(r.status(), 303);
    let r = app
        .post_with_csrf(
            "/communities/1001",
            "/communities/1001/bot",
            &[("comments", "1"), ("default_reply", "Спасибо!")],
        )
        .await;
    assert_eq!(r.status(), 303);
    // 5. Иван comments: the first event connects the community, and the bot answers with the pasted key.
    app.sandbox.comment(1001, 2, "Привет").unwrap();
    let reply = eventually(10, "the reply", || async { app.bot_comments(1001).into_iter().next() }).await;
    assert_eq!(reply.text, "Спасибо!");
    eventually(5, "connected by its first event", || async {
        let s = app.store().community_settings(GroupId(1001)).await.unwrap().unwrap();
        (s.status == CommunityStatus::Connected && s.callback_configured).then_some(())
    })
    .await;
    app.wait_until_idle().await;
    assert_eq!(app.bot_comments(1001).len(), 1);
}

#[tokio::test]
async fn a_code_for_another_community_says_so_and_keeps_no_key() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let r = app.post_with_csrf("/communities/1001", "/communities/1001/connect", &[]).await;
    assert_eq!(r.status(), 303);
    let asked = r.headers()["location"].to_str().unwrap().to_owned();
    // The consent that comes back is for «Книжный клуб» (1002), which user 1 also administers.
    let other = asked.replace("group_ids=1001", "group_ids=1002");
    assert_ne!(other, asked, "{asked}");
    let back = vk_sandbox::testing::consent(&other, &Consent::allow(1)).await.unwrap();
    let r = app.http.get(back.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let html = r.text().await.unwrap();
    assert!(html.contains("выдал доступ к другому сообществу"), "{html}");
    assert!(!html.contains("не отвечает"), "{html}");
    for group in [1001, 1002] {
        let s = app.store().community_settings(GroupId(group)).await.unwrap();
        assert!(s.is_none_or(|s| s.community_token.is_none()), "no key kept for {group}");
    }
    assert!(app.sandbox.servers(1001).is_empty() && app.sandbox.servers(1002).is_empty());
    let setup = app.store().setup(GroupId(1001)).await.unwrap().expect("the setup run");
    assert_eq!(setup.state, SetupState::Failed);
    assert_eq!(setup.error_kind, Some(ErrorKind::OtherCommunity));
}

/// 1001 connected, a server of another service beside ours, then VK sets ours to `failed`; «Проверить» repairs it.
/// Returns (our server before, the other service's server before).
async fn repair_a_failed_server(app: &TestApp, edit_keeps_failed: bool) -> (vk_sandbox::Server, vk_sandbox::Server) {
    app.sign_in(1).await;
    app.connect(1001).await;
    app.sandbox_control(
        "/_sandbox/groups/1001/servers",
        serde_json::json!({"title": "Другой бот", "url": "https://other.example/cb", "secret_key": "theirs"}),
    )
    .await;
    app.sandbox_control("/_sandbox/behaviour", serde_json::json!({"edit_keeps_failed": edit_keeps_failed})).await;
    let ours = app.our_servers(1001).remove(0);
    let theirs = app.sandbox.servers(1001).into_iter().find(|s| s.id != ours.id).unwrap();
    app.sandbox.world().group_mut(1001).unwrap().server_mut(ours.id).unwrap().status = ServerStatus::Failed;
    let r = app.post_with_csrf("/communities/1001", "/communities/1001/check", &[]).await;
    assert_eq!(r.status(), 303);
    let setup = app.finished_setup(1001).await;
    assert_eq!(setup.state, SetupState::Done, "{setup:?}");
    (ours, theirs)
}

#[tokio::test]
async fn a_failed_server_is_repaired_by_an_edit_when_vk_confirms_it_again() {
    let app = TestApp::spawn().await;
    let (before, theirs) = repair_a_failed_server(&app, false).await;
    let ours = app.our_servers(1001);
    assert_eq!(ours.len(), 1);
    assert_eq!((ours[0].id, &ours[0].status), (before.id, &ServerStatus::Ok), "the same server, edited");
    let now = app.sandbox.servers(1001).into_iter().find(|s| s.id == theirs.id).expect("theirs is still there");
    assert_eq!((now.url, now.title, now.secret_key), (theirs.url, theirs.title, theirs.secret_key), "untouched");
    // VK's `failed` told the admin (Анна has not allowed the community's messages; no e-mail is set up), and the
    // next check, finding our server `ok`, closes that alert.
    let alert = eventually(10, "the alert told", || async {
        let alerts = app.store().alerts(GroupId(1001), 10).await.unwrap();
        alerts.into_iter().find(|a| a.kind == vkhook::model::AlertKind::VkFailed && a.vk_result.is_some())
    })
    .await;
    assert_eq!(alert.vk_result, Some(vkhook::model::AlertOutcome::Refused));
    assert_eq!(alert.vk_reason, Some(vkhook::model::Reason::MessagesNotAllowed), "901 in words");
    assert_eq!(alert.email_result, Some(vkhook::model::AlertOutcome::NotConfigured));
    let r = app.post_with_csrf("/communities/1001", "/communities/1001/check", &[]).await;
    assert_eq!(r.status(), 303);
    eventually(10, "the alert closed", || async {
        let alerts = app.store().alerts(GroupId(1001), 10).await.unwrap();
        alerts.iter().all(|a| a.resolved_at.is_some()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_failed_server_that_an_edit_leaves_failed_is_replaced_by_a_fresh_one() {
    let app = TestApp::spawn().await;
    let (before, theirs) = repair_a_failed_server(&app, true).await;
    let ours = app.our_servers(1001);
    assert_eq!(ours.len(), 1, "one server of ours: the old one deleted, a fresh one added");
    assert_ne!(ours[0].id, before.id);
    assert_eq!(ours[0].status, ServerStatus::Ok);
    assert_eq!(ours[0].secret_key, before.secret_key, "the same secret: VK's retries still pass");
    assert!(ours[0].events.contains("message_new"), "its event types set");
    let settings = app.store().community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!((settings.server_id, settings.status), (Some(ours[0].id), CommunityStatus::Connected));
    let now = app.sandbox.servers(1001).into_iter().find(|s| s.id == theirs.id).expect("theirs is still there");
    assert_eq!((now.url, now.title, now.secret_key), (theirs.url, theirs.title, theirs.secret_key), "untouched");
}

/// «Проверить путь» sends a synthetic event through the public URL (here a proxy in front of vkhook, as nginx would
/// be): it arrives; with the proxy answering 502 it says so; with nothing listening it says that. The bot, the log
/// and forwarding never see the synthetic event.
#[tokio::test]
async fn proving_the_path_through_the_public_url() {
    let proxy = start_proxy(1, 0).await;
    let app = TestApp::spawn_with(Options { public_url: Some(proxy.url.clone()), ..Options::default() }).await;
    proxy.set_backend(0, app.url.clone());
    app.connected_with_rules(1001, &[("проверка", "Ответ.")]).await;
    let hook = Hook::start().await;
    crate::forwarding::add_endpoint(&app, 1001, &hook.url, &[]).await;
    let events_before = app.events(1001, None, None).await.len();
    let prove = || async {
        let r = app.post_with_csrf("/communities/1001", "/communities/1001/check-path", &[]).await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        let page = app.get("/communities/1001").await.text().await.unwrap();
        let start = page.find("id=\"path-check\"").expect("the result on the health card");
        page[start..].split("</td>").next().unwrap().to_owned()
    };
    let arrived = prove().await;
    assert!(arrived.contains("✓") && arrived.contains("дошло за"), "{arrived}");
    assert_eq!(app.events(1001, None, None).await.len(), events_before, "not stored, not a VK event");
    app.wait_until_idle().await;
    app.wait_forwarding_drained().await;
    assert!(hook.received().is_empty() && app.bot_comments(1001).is_empty(), "neither forwarded nor answered");

    // The proxy's backend is down: it answers 502.
    proxy.set_backend(0, "http://127.0.0.1:9".into());
    let bad_gateway = prove().await;
    assert!(bad_gateway.contains("✗") && bad_gateway.contains("502"), "{bad_gateway}");
    assert!(bad_gateway.contains("вместо «ok»"), "{bad_gateway}");

    // Nothing listens at the public URL at all.
    proxy.stop().await;
    let refused = prove().await;
    assert!(refused.contains("✗") && refused.contains("не удалось подключиться"), "{refused}");
    assert!(refused.contains(&app.state.connector.callback_url()), "names the URL it tried: {refused}");
}
