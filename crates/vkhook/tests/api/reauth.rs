//! A community key that dies at VK, through every path that can see VK refuse it: the community page, «Проверить»,
//! the periodic reconcile, saving event types, a setup run, and the bot's own call. Each must pause the bot (not
//! drop the event), show «Нужно переподключить», and after «Выдать доступ заново» answer the comment that came in
//! meanwhile — exactly once. Only error 5 means a dead key; 27 does not ask anyone to reconnect.

use vk::GroupId;
use vk_sandbox::testing::Consent;
use vk_sandbox::Fault;
use vkhook::model::{CommunityStatus, EventStatus, PauseReason, SetupState};

use crate::helpers::*;

/// Where VK's refusal of the key is first seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    PageView,
    Check,
    Reconcile,
    EventTypes,
    SetupRun,
    BotCall,
}

const GROUP: i64 = 1002;
const PAGE: &str = "/communities/1002";

/// «Книжный клуб» connected with the bot on (default reply).
async fn connected_book_club() -> TestApp {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let form = [("bot_enabled", "1"), ("bot_reply", "Спасибо за комментарий!")];
    let r = app.press_connect(GROUP, &form, Some(Consent::allow(1))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.finished_setup(GROUP).await.state, SetupState::Done);
    app
}

/// The community's key dies at VK (revoked), as `POST /_sandbox/tokens/revoke {"group_id": …}` does.
async fn revoke_key(app: &TestApp) {
    let revoked = app.sandbox_control("/_sandbox/tokens/revoke", serde_json::json!({"group_id": GROUP})).await;
    assert!(revoked["revoked"].as_i64().unwrap() >= 1, "{revoked}");
}

/// Does what the admin (or the reconcile loop) does on `path`, where vkhook first meets the dead key.
async fn meet_the_dead_key(app: &TestApp, path: Path) {
    match path {
        Path::PageView => {
            let page = app.get(PAGE).await.text().await.unwrap();
            assert!(page.contains("Нужно переподключить"), "the page that saw it says so at once");
        }
        Path::Check => {
            let r = app.post_with_csrf(PAGE, &format!("{PAGE}/check"), &[]).await;
            assert_eq!(r.status(), 303);
        }
        Path::Reconcile => {
            app.state.reconciler.reconcile_all().await.unwrap();
        }
        Path::EventTypes => {
            let form = [("event", "wall_reply_new"), ("event", "message_new")];
            let r = app.post_with_csrf(PAGE, &format!("{PAGE}/event-types"), &form).await;
            assert_eq!(r.headers()["location"], "/communities/1002?notice=events_failed");
        }
        Path::SetupRun => {
            // «Перенастроить» with the stored key (the form's CSRF token taken from a page that makes no VK call,
            // so the run is the first to meet the dead key, at its first VK call).
            let r = app.post_with_csrf(&format!("{PAGE}/events"), &format!("{PAGE}/connect"), &[]).await;
            assert_eq!(r.headers()["location"], "/communities/1002/setup", "the run starts with the stored key");
            let setup = app.finished_setup(GROUP).await;
            assert_eq!(setup.state, SetupState::Failed);
            assert_eq!(setup.error_kind, Some(vkhook::model::ErrorKind::Reauth));
        }
        Path::BotCall => {}
    }
}

async fn paused(app: &TestApp) {
    eventually(10, "the community paused for a new authorization", || async {
        let settings = app.store().community_settings(GroupId(GROUP)).await.unwrap().unwrap();
        let bot = app.store().bot_settings(GroupId(GROUP)).await.unwrap().unwrap();
        (settings.status == CommunityStatus::NeedsReauth && bot.paused_reason == Some(PauseReason::Reauth))
            .then_some(())
    })
    .await;
}

async fn the_held_comment_is_answered_once_after_reconnecting(path: Path) {
    let app = connected_book_club().await;
    revoke_key(&app).await;
    if path != Path::BotCall {
        meet_the_dead_key(&app, path).await;
        paused(&app).await;
    }
    app.sandbox.comment(GROUP, 2, "Когда следующая встреча?").unwrap();
    if path == Path::BotCall {
        paused(&app).await;
    }
    // The bot looked at the comment and holds it (pending, with the reason), instead of dropping it.
    let held = eventually(10, "the comment held", || async {
        let events = app.events(GROUP, Some("pending"), Some("wall_reply_new")).await;
        events.into_iter().find(|e| e.last_error.is_some())
    })
    .await;
    assert!(app.bot_comments(GROUP).is_empty());
    let page = app.get(PAGE).await.text().await.unwrap();
    assert!(page.contains("Нужно переподключить"), "{path:?}");
    assert!(page.contains("Выдать доступ заново"), "{path:?}");

    // «Выдать доступ заново»: a new key, the bot resumes, the held comment is answered once.
    let r = app.press_connect(GROUP, &[("reauth", "1")], Some(Consent::allow(1))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.finished_setup(GROUP).await.state, SetupState::Done);
    let reply =
        eventually(10, "the held comment answered", || async { app.bot_comments(GROUP).into_iter().next() }).await;
    assert_eq!(reply.text, "Спасибо за комментарий!");
    app.wait_until_idle().await;
    assert_eq!(app.bot_comments(GROUP).len(), 1, "{path:?}: exactly once");
    let row = app.store().inbox_event(GroupId(GROUP), held.id).await.unwrap().unwrap();
    assert_eq!(row.status, EventStatus::Done, "{path:?}");
    assert_eq!(app.store().bot_settings(GroupId(GROUP)).await.unwrap().unwrap().paused_reason, None);
    assert_eq!(
        app.store().community_settings(GroupId(GROUP)).await.unwrap().unwrap().status,
        CommunityStatus::Connected
    );
}

#[tokio::test]
async fn a_dead_key_seen_by_the_community_page_holds_the_comment_until_reconnected() {
    the_held_comment_is_answered_once_after_reconnecting(Path::PageView).await;
}

#[tokio::test]
async fn a_dead_key_seen_by_check_holds_the_comment_until_reconnected() {
    the_held_comment_is_answered_once_after_reconnecting(Path::Check).await;
}

#[tokio::test]
async fn a_dead_key_seen_by_the_reconcile_pass_holds_the_comment_until_reconnected() {
    the_held_comment_is_answered_once_after_reconnecting(Path::Reconcile).await;
}

#[tokio::test]
async fn a_dead_key_seen_when_saving_event_types_holds_the_comment_until_reconnected() {
    the_held_comment_is_answered_once_after_reconnecting(Path::EventTypes).await;
}

#[tokio::test]
async fn a_dead_key_seen_by_a_setup_run_holds_the_comment_until_reconnected() {
    the_held_comment_is_answered_once_after_reconnecting(Path::SetupRun).await;
}

#[tokio::test]
async fn a_dead_key_seen_by_the_bot_holds_the_comment_until_reconnected() {
    the_held_comment_is_answered_once_after_reconnecting(Path::BotCall).await;
}

#[tokio::test]
async fn error_27_is_our_bug_and_never_asks_to_reconnect() {
    let app = connected_book_club().await;
    app.expect_failures(); // the comment's reply fails with error 27 for good
    for method in ["groups.getCallbackServers", "wall.createComment"] {
        app.sandbox.inject_fault(Fault {
            method: Some(method.into()),
            error_code: Some(27),
            latency_ms: None,
            remaining: Some(1),
        });
    }
    let page = app.get(PAGE).await.text().await.unwrap();
    assert!(!page.contains("Нужно переподключить"));
    app.sandbox.comment(GROUP, 2, "Привет").unwrap();
    let failed = eventually(10, "the reply refused with 27", || async {
        app.events(GROUP, Some("failed"), Some("wall_reply_new")).await.into_iter().next()
    })
    .await;
    assert!(failed.last_error.unwrap().contains("27"));
    let settings = app.store().community_settings(GroupId(GROUP)).await.unwrap().unwrap();
    assert_eq!(settings.status, CommunityStatus::Connected, "27 is not a dead key");
    assert!(settings.community_token.is_some(), "the key is kept");
    assert_eq!(app.store().bot_settings(GroupId(GROUP)).await.unwrap().unwrap().paused_reason, None);
}
