//! Where a user stands in a community is VK's to say (roles.rs): with the `groups` scope through the user's token,
//! without it through the community key's list of managers, and by the community consent. An administrator another
//! administrator demotes at VK — without telling vkhook — loses every change and every read of secrets, private
//! message texts, raw events, endpoints and alert settings within the role cache's lifetime.

use std::time::Duration;
use vk::GroupId;
use vk::UserId;

use vkhook::config::Timing;
use vkhook::model::Role;

use crate::helpers::*;

/// A role cache of 100 ms: "within its lifetime" is soon.
fn short_role_cache(scopes: &[&str]) -> Options {
    let defaults = Options::default();
    Options {
        vkid_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        timing: Timing { role_ttl: Duration::from_millis(100), ..defaults.timing },
        ..defaults
    }
}

/// What only an administrator VK confirms now may see or do, each path with the text that proves it was seen.
struct Private {
    message_text: &'static str,
    secret: String,
    raw_event: i64,
}

async fn anna_connects_1001_and_ivan_writes(app: &TestApp) -> Private {
    app.connect(1001).await;
    let message_text = "мой номер телефона 8-900-000-00-00";
    app.sandbox.message(1001, 2, message_text).unwrap();
    let raw_event = eventually(10, "the message stored", || async {
        app.events(1001, None, Some("message_new")).await.first().map(|e| e.id)
    })
    .await;
    Private { message_text, secret: app.callback_secret(1001).await, raw_event }
}

/// Asserts what Анна can see and do, as an administrator (`true`) or not.
async fn assert_sees(app: &TestApp, p: &Private, admin: bool) {
    let log = app.get("/communities/1001/events").await.text().await.unwrap();
    assert_eq!(log.contains(p.message_text), admin, "the private text in the log");
    let raw = app.get(&format!("/communities/1001/events/{}", p.raw_event)).await;
    assert_eq!(raw.status() == 200, admin, "the raw event: {}", raw.status());
    let manual = app.get("/communities/1001/manual").await.text().await.unwrap();
    assert_eq!(manual.contains(&p.secret), admin, "the callback secret on the manual page");
    let page = app.get("/communities/1001").await;
    if admin {
        let html = page.text().await.unwrap();
        assert!(html.contains("id=\"forwarding\"") && html.contains("id=\"alerts\""), "endpoints and alerts");
    }
    let r = app
        .post_with_csrf(
            "/communities/1001/events",
            "/communities/1001/rules",
            &[("keywords", "цена"), ("reply", "Дёшево.")],
        )
        .await;
    assert_eq!(r.status() == 303, admin, "a rule change: {}", r.status());
    let r = app
        .post_with_csrf(
            "/communities/1001/events",
            "/communities/1001/endpoints",
            &[("url", "https://example.com/hook")],
        )
        .await;
    if !admin {
        assert_eq!(r.status(), 403, "adding an endpoint");
    }
}

async fn demote(app: &TestApp, role: &str) {
    app.sandbox_control("/_sandbox/groups/1001/managers", serde_json::json!({"user_id": 1, "role": role})).await;
}

#[tokio::test]
async fn a_demoted_admin_without_groups_is_refused_once_the_managers_list_says_so() {
    let app = TestApp::spawn_with(short_role_cache(&["vkid.personal_info"])).await;
    app.sandbox_control("/_sandbox/app", serde_json::json!({"grants_groups": false})).await;
    app.sign_in(1).await;
    app.post_with_csrf("/communities", "/communities/add", &[("link", "club1001")]).await;
    let p = anna_connects_1001_and_ivan_writes(&app).await;
    assert_sees(&app, &p, true).await;
    demote(&app, "editor").await;
    // Within the role cache's lifetime VK is asked again, with the community key (no `groups` here).
    eventually(5, "the demotion seen", || async {
        let log = app.get("/communities/1001/events").await.text().await.unwrap();
        (!log.contains(p.message_text)).then_some(())
    })
    .await;
    assert_eq!(
        app.store().community_for_user(UserId(1), GroupId(1001)).await.unwrap().unwrap().role,
        Role::Editor,
        "written back"
    );
    assert_sees(&app, &p, false).await;
    assert!(app.get("/communities/1001").await.text().await.unwrap().contains("Редактор"), "still a manager");
    // Removed altogether: the community leaves the list.
    demote(&app, "none").await;
    app.state.roles.forget(UserId(1)); // the cache's lifetime is over: the next read asks VK
    assert_eq!(app.get("/communities/1001/events").await.status(), 403);
    assert!(
        app.store().community_for_user(UserId(1), GroupId(1001)).await.unwrap().is_none(),
        "VK's plain no removes it"
    );
}

#[tokio::test]
async fn a_demoted_admin_with_groups_is_refused_once_their_token_says_so() {
    let app = TestApp::spawn_with(short_role_cache(&["vkid.personal_info", "groups"])).await;
    app.sign_in(1).await;
    let p = anna_connects_1001_and_ivan_writes(&app).await;
    assert_sees(&app, &p, true).await;
    demote(&app, "moderator").await;
    eventually(5, "the demotion seen", || async {
        let log = app.get("/communities/1001/events").await.text().await.unwrap();
        (!log.contains(p.message_text)).then_some(())
    })
    .await;
    assert_sees(&app, &p, false).await;
}

/// When VK can tell nothing now (no `groups`, and VK will not list the managers to the community key), the last
/// proof stands: a change still works and the page says how old the proof is; secrets need a proof under a day.
#[tokio::test]
async fn when_vk_cannot_tell_the_last_proof_stands_with_its_age() {
    let app = TestApp::spawn_with(short_role_cache(&["vkid.personal_info"])).await;
    app.sandbox_control("/_sandbox/app", serde_json::json!({"grants_groups": false})).await;
    app.sign_in(1).await;
    app.post_with_csrf("/communities", "/communities/add", &[("link", "club1001")]).await;
    let p = anna_connects_1001_and_ivan_writes(&app).await;
    app.sandbox_control("/_sandbox/behaviour", serde_json::json!({"managers_refuse_community_key": true})).await;
    // Proven by the consent a moment ago: everything, and the proof's age on the page.
    app.state.roles.forget(UserId(1));
    assert_sees(&app, &p, true).await;
    assert!(app.get("/communities/1001").await.text().await.unwrap().contains("id=\"proof-note\""));
    // Two days later (the proof's time moved back): changes still go, secrets ask for a fresh consent.
    let two_days_ago = vkhook::store::now_ms() - 2 * 24 * 3600 * 1000;
    app.store().set_user_role(UserId(1), GroupId(1001), Role::Administrator, two_days_ago).await.unwrap();
    app.state.roles.forget(UserId(1));
    let r =
        app.post_with_csrf("/communities/1001", "/communities/1001/rules", &[("keywords", "a"), ("reply", "b")]).await;
    assert_eq!(r.status(), 303, "a change on an old proof");
    let manual = app.get("/communities/1001/manual").await.text().await.unwrap();
    assert!(!manual.contains(&p.secret), "no secret on a two-day-old proof");
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("Подтвердить права") && page.contains("2 дн назад"), "{page}");
    assert_eq!(app.get(&format!("/communities/1001/events/{}", p.raw_event)).await.status(), 403);
    // Handing out access on that proof (a new endpoint) asks for the fresh consent too, and adds nothing.
    let r = app
        .post_with_csrf(
            "/communities/1001",
            "/communities/1001/endpoints",
            &[("name", "x"), ("url", "https://example.com/h")],
        )
        .await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("подтверждены больше суток назад"), "the proof is too old");
    assert!(app.store().endpoints(GroupId(1001)).await.unwrap().is_empty(), "no endpoint on an old proof");
}

/// Opens the community page as an administrator and returns its form's token; then VK demotes them to editor.
async fn page_then_demoted(app: &TestApp) -> String {
    let html = app.get("/communities/1001").await.text().await.unwrap();
    let csrf = csrf_from(&html).expect("a form on the page");
    demote(app, "editor").await;
    app.state.roles.forget(UserId(1));
    let stored = app.store().community_for_user(UserId(1), GroupId(1001)).await.unwrap().unwrap().role;
    assert_eq!(stored, Role::Administrator, "not yet seen");
    csrf
}

/// A page opened while an administrator, whose form is sent after VK demoted them: the stored role is still
/// «administrator», and VK's answer decides. They are told they are no longer one, and nothing changes. Once the
/// list shows the new role, the form is simply not theirs.
#[tokio::test]
async fn a_demoted_admin_cannot_connect_again_or_change_anything() {
    let app = TestApp::spawn_with(short_role_cache(&["vkid.personal_info", "groups"])).await;
    app.sign_in(1).await;
    app.connect(1001).await;
    let rules = [("keywords", "цена"), ("reply", "Дёшево.")];
    let no_longer = "больше не администратор этого сообщества";
    // Connecting again, from the open page.
    let csrf = page_then_demoted(&app).await;
    let r = app.post_form("/communities/1001/connect", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains(no_longer), "connecting again");
    // Now the list says «editor»: a change is simply not theirs.
    app.state.roles.forget(UserId(1));
    let r = app.post_with_csrf("/communities/1001", "/communities/1001/rules", &rules).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("Это действие вам недоступно."), "an editor now");
    // Made an administrator again, the page opened, then demoted: a change from the open page.
    demote(&app, "administrator").await;
    app.state.roles.forget(UserId(1));
    let csrf = page_then_demoted(&app).await;
    let mut form = rules.to_vec();
    form.push(("csrf", &csrf));
    let r = app.post_form("/communities/1001/rules", &form).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains(no_longer), "a change from the open page");
    assert!(app.sandbox.servers(1001).len() == 1, "nothing changed at VK");
    assert!(app.store().rules(GroupId(1001)).await.unwrap().is_empty(), "no rule added");
}
