//! Connecting by Bots Long Poll from the community page: for an admin whose vkhook VK cannot reach, the page offers
//! «Подключить через Long Poll»; the run switches on only what is missing at VK and records it; the bot answers as
//! with Callback; «Отключить» switches off only what vkhook switched on.

use vk::GroupId;
use vk_sandbox::testing::Consent;
use vkhook::model::{SetupMode, SetupState};

use crate::helpers::*;

/// The community's Long Poll as the sandbox (VK) holds it: on, its version, its event types.
fn at_vk(app: &TestApp, group_id: i64) -> (bool, String, Vec<String>) {
    let world = app.sandbox.world();
    let lp = &world.group(group_id).unwrap().long_poll;
    (lp.enabled, lp.api_version.clone(), lp.events.iter().cloned().collect())
}

/// Presses «Подключить через Long Poll» with the bot on, answers the consent, and waits for the run.
async fn connect_by_long_poll(app: &TestApp, group_id: i64) -> vkhook::store::SetupRow {
    let form = [("via", "long_poll"), ("bot_enabled", "1"), ("bot_reply", "Спасибо, скоро ответим.")];
    let r = app.press_connect(group_id, &form, Some(Consent::allow(1))).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let setup = app.finished_setup(group_id).await;
    assert_eq!((setup.state, setup.mode), (SetupState::Done, SetupMode::LongPoll), "{setup:?}");
    setup
}

#[tokio::test]
async fn without_a_public_url_an_admin_connects_by_long_poll_and_a_comment_is_answered_once() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    // The test's public URL is plain http on loopback: VK could never confirm a callback server there.
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("id=\"no-public-url\"") && page.contains("Подключить через Long Poll"), "{page}");
    assert!(page.contains("Подключить Callback API"), "both are offered");

    connect_by_long_poll(&app, 1001).await;
    let progress = app.get("/communities/1001/setup").await.text().await.unwrap();
    assert!(progress.contains("✅ Long Poll подключен"), "{progress}");
    assert!(app.sandbox.servers(1001).is_empty(), "no callback server added");
    let (enabled, version, events) = at_vk(&app, 1001);
    assert!(enabled, "Long Poll switched on at VK");
    assert_eq!(version, vk::API_VERSION, "switched on by vkhook, so with its version");
    for wanted in ["message_new", "wall_reply_new"] {
        assert!(events.iter().any(|e| e == wanted), "{wanted} on: {events:?}");
    }
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("✅ Long Poll подключен") && page.contains("id=\"event-source\">Long Poll<"), "{page}");
    let overview = app.get("/communities").await.text().await.unwrap();
    assert!(overview.contains("<span class=\"source\">Long Poll</span>"), "{overview}");

    let r = app
        .post_with_csrf("/communities/1001", "/communities/1001/rules", &[("keywords", "цена"), ("reply", "Дёшево.")])
        .await;
    assert_eq!(r.status(), 303);
    let (comment_id, _) = app.sandbox.comment(1001, 2, "Какая цена?").unwrap();
    let reply = eventually(15, "the bot's reply", || async { app.bot_comments(1001).into_iter().next() }).await;
    assert_eq!((reply.text.as_str(), reply.reply_to_comment), ("Дёшево.", Some(comment_id)));
    let stored = eventually(15, "Иван's comment stored from Long Poll", || async {
        let rows = app.events(1001, None, Some("wall_reply_new")).await;
        rows.into_iter().find(|r| r.payload.contains("Какая цена?"))
    })
    .await;
    assert_eq!(stored.source, vkhook::model::Source::LongPoll);
    // The bot's own comment comes back through Long Poll too: handled, not answered.
    eventually(15, "the bot's own comment back and handled", || async {
        let rows = app.events(1001, Some("ignored"), Some("wall_reply_new")).await;
        rows.into_iter().find(|r| r.payload.contains("Дёшево."))
    })
    .await;
    app.wait_until_idle().await;
    assert_eq!(app.bot_comments(1001).len(), 1, "answered once");
}

#[tokio::test]
async fn another_tools_long_poll_setting_is_kept_and_disconnect_switches_off_only_what_vkhook_switched_on() {
    let app = TestApp::spawn().await;
    // Another tool (a bot on vk-io, say) already polls 1001 at its own version, for messages.
    app.sandbox_control(
        "/_sandbox/groups/1001/longpoll",
        serde_json::json!({"enabled": true, "api_version": "5.131", "events": ["message_new"]}),
    )
    .await;
    app.sign_in(1).await;
    connect_by_long_poll(&app, 1001).await;
    let (enabled, version, events) = at_vk(&app, 1001);
    assert!(enabled);
    assert_eq!(version, "5.131", "another tool's version is never changed");
    assert!(events.iter().any(|e| e == "wall_reply_new") && events.iter().any(|e| e == "message_new"));
    let row = app.store().long_poll(GroupId(1001)).await.unwrap().unwrap();
    assert!(!row.enabled_by_us && !row.switched_on().contains(&"message_new"), "only what vkhook switched on: {row:?}");
    assert!(row.ts.is_some(), "VK's place at the connect is kept: nothing after it is missed");
    let settings = app.store().community_settings(GroupId(1001)).await.unwrap().unwrap();
    assert_eq!(settings.api_version.as_deref(), Some("5.131"), "the version events come in");

    let r = app.post_with_csrf("/communities/1001", "/communities/1001/disconnect", &[]).await;
    assert_eq!(r.status(), 303);
    let (enabled, version, events) = at_vk(&app, 1001);
    assert!(enabled, "the other tool still polls");
    assert_eq!((version.as_str(), events), ("5.131", vec!["message_new".to_owned()]), "exactly what it had");
    assert!(app.store().long_poll(GroupId(1001)).await.unwrap().is_none(), "vkhook no longer polls");

    // Where vkhook switched Long Poll on itself, «Отключить» switches it off again.
    app.sandbox_control("/_sandbox/groups/1002/longpoll", serde_json::json!({"enabled": false})).await;
    connect_by_long_poll(&app, 1002).await;
    assert!(at_vk(&app, 1002).0);
    let r = app.post_with_csrf("/communities/1002", "/communities/1002/disconnect", &[]).await;
    assert_eq!(r.status(), 303);
    let (enabled, _, events) = at_vk(&app, 1002);
    assert!(!enabled && events.is_empty(), "as it was: {events:?}");
}

/// Waits until the poller has read everything VK holds for the community (its place is VK's next `ts`).
async fn long_poll_caught_up(app: &TestApp, group_id: i64) {
    let next = app.sandbox.world().group(group_id).unwrap().long_poll.next_ts.to_string();
    eventually(30, "the poller caught up with VK", || async {
        let row = app.store().long_poll(GroupId(group_id)).await.unwrap()?;
        (row.ts.as_deref() == Some(next.as_str())).then_some(())
    })
    .await;
}

/// Waits until VK has delivered `n` message_new events by Callback, each answered `ok`.
async fn callback_delivered(app: &TestApp, group_id: i64, n: usize) {
    eventually(30, "every event delivered by Callback too", || async {
        let ok = app
            .sandbox
            .deliveries(group_id)
            .iter()
            .filter(|d| d.event_type == "message_new" && d.outcome == "ok")
            .count();
        (ok >= n).then_some(())
    })
    .await;
}

/// How many times each message text is stored, and by which sources.
async fn stored_messages(
    app: &TestApp,
    group_id: i64,
) -> std::collections::BTreeMap<String, Vec<vkhook::model::Source>> {
    let mut seen = std::collections::BTreeMap::<String, Vec<vkhook::model::Source>>::new();
    for row in app.events(group_id, None, Some("message_new")).await {
        let body: serde_json::Value = serde_json::from_str(&row.payload).unwrap();
        let text = body["object"]["message"]["text"].as_str().unwrap().to_owned();
        seen.entry(text).or_default().push(row.source);
    }
    seen
}

#[tokio::test]
async fn both_sources_at_once_store_each_event_once() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    app.connect(1001).await;
    // The connected card offers Long Poll beside Callback.
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("id=\"connect-long-poll\""), "{page}");
    let r = app.post_with_csrf("/communities/1001", "/communities/1001/connect", &[("via", "long_poll")]).await;
    assert_eq!(r.status(), 303);
    let setup = app.finished_setup(1001).await;
    assert_eq!((setup.state, setup.mode), (SetupState::Done, SetupMode::LongPoll));
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("✅ Callback API подключен") && page.contains("оба: Callback API и Long Poll"), "{page}");
    assert_eq!(app.sandbox.servers(1001).len(), 1, "the callback server stays");
    let overview = app.get("/communities").await.text().await.unwrap();
    assert!(overview.contains("<span class=\"source\">оба: Callback API и Long Poll</span>"), "{overview}");

    // VK sends each event both ways with the same event_id…
    for i in 0..1000 {
        app.sandbox.message(1001, 2, &format!("сообщение {i}")).unwrap();
    }
    long_poll_caught_up(&app, 1001).await;
    callback_delivered(&app, 1001, 1000).await;
    app.wait_until_idle().await;
    let seen = stored_messages(&app, 1001).await;
    assert_eq!(seen.len(), 1000);
    assert!(seen.values().all(|sources| sources.len() == 1), "each stored once");
    // …or, where the transports' ids differ, the message's own id tells the copies apart.
    app.sandbox_control("/_sandbox/behaviour", serde_json::json!({"long_poll_own_event_ids": true})).await;
    for i in 1000..1200 {
        app.sandbox.message(1001, 2, &format!("сообщение {i}")).unwrap();
    }
    long_poll_caught_up(&app, 1001).await;
    callback_delivered(&app, 1001, 1200).await;
    app.wait_until_idle().await;
    let seen = stored_messages(&app, 1001).await;
    assert_eq!(seen.len(), 1200);
    assert!(seen.values().all(|sources| sources.len() == 1), "each stored once");
    // /metrics counts by source: each message offered twice, stored once.
    let metrics = app.state.metrics.render(None, None);
    let count = |source: &str, result: &str| -> u64 {
        let line = format!("vkhook_events_total{{source=\"{source}\",result=\"{result}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(line.as_str())).unwrap().parse().unwrap()
    };
    let messages = |result| count("callback", result) + count("long_poll", result);
    // The bot is off and nothing else happens in 1001: every event offered is one of the messages.
    assert_eq!((messages("stored"), messages("duplicate")), (1200, 1200), "{metrics}");
}
