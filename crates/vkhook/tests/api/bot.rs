//! The bot answers comments and messages by the admin's rules — never twice, never to itself.

use vk::GroupId;
use vk_sandbox::Fault;
use vkhook::hooks::CrashPoint;
use vkhook::model::{EventStatus, SetupState};
use vkhook::store::{InboxWrite, Settle, Settlement};

use crate::helpers::*;

#[tokio::test]
async fn a_comment_gets_the_rules_reply_under_it_from_the_community() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[("до скольки, часы работы", "Работаем с 8 до 22, {first_name}!")]).await;
    let (comment_id, _) = app.sandbox.comment(1001, 2, "А до скольки вы сегодня работаете?").unwrap();
    let reply = eventually(10, "the bot's reply", || async { app.bot_comments(1001).into_iter().next() }).await;
    assert_eq!(reply.text, "Работаем с 8 до 22, Иван!");
    assert_eq!(reply.reply_to_comment, Some(comment_id));
    assert_eq!(reply.from_id, -1001);
    // VK delivers the bot's own comment back: wait until it has arrived and been handled, then look.
    let own = eventually(10, "the bot's own comment delivered back and handled", || async {
        let log = app.events(1001, None, None).await;
        log.into_iter().find(|r| r.payload.contains("Работаем с 8 до 22") && !r.status.is_open())
    })
    .await;
    assert_eq!(own.status, EventStatus::Ignored);
    assert!(own.result.as_deref().unwrap().contains("\"own\""));
    app.wait_until_idle().await;
    assert_eq!(app.bot_comments(1001).len(), 1, "and it ignores its own comment that VK delivers back");
}

#[tokio::test]
async fn a_message_gets_the_default_reply() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[("торт", "Торты на заказ — за два дня.")]).await;
    app.store()
        .set_bot_settings(GroupId(1001), true, true, Some("Здравствуйте, {first_name}! Скоро ответим."))
        .await
        .unwrap();
    // The admin also switched on `message_reply` at VK: the bot's own messages come back to it.
    for server in app.sandbox.world().group_mut(1001).unwrap().servers.iter_mut() {
        server.events.insert("message_reply".into());
    }
    app.sandbox.message(1001, 2, "Добрый вечер").unwrap();
    let reply = eventually(10, "the reply", || async { app.bot_messages(1001).into_iter().next() }).await;
    assert_eq!(reply.text, "Здравствуйте, Иван! Скоро ответим.");
    assert_eq!(reply.peer_id, 2);
    app.sandbox.message(1001, 2, "Хочу торт").unwrap();
    eventually(10, "the rule's reply", || async { (app.bot_messages(1001).len() == 2).then_some(()) }).await;
    assert_eq!(app.bot_messages(1001)[1].text, "Торты на заказ — за два дня.");
    // VK delivers both of the bot's messages back as message_reply: wait until both were handled, then look.
    eventually(10, "the bot's own messages delivered back and handled", || async {
        let echoes = app.events(1001, Some("ignored"), Some("message_reply")).await;
        (echoes.len() == 2).then_some(())
    })
    .await;
    app.wait_until_idle().await;
    assert_eq!(app.bot_messages(1001).len(), 2, "message_reply (its own) is not answered");
}

#[tokio::test]
async fn the_same_event_twice_gives_one_row_and_one_reply() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[("привет", "Привет!")]).await;
    let secret = app.callback_secret(1001).await;
    let (comment_id, post_id) = app.sandbox.comment(1001, 2, "привет").unwrap();
    eventually(10, "the first reply", || async { app.bot_comments(1001).into_iter().next() }).await;
    // VK delivers the very same event again (a retry whose `ok` it missed).
    let delivered = eventually(10, "the delivery recorded", || async {
        app.sandbox.deliveries(1001).into_iter().find(|d| d.event_type == "wall_reply_new")
    })
    .await;
    assert!(delivered.body.contains(&secret));
    assert_eq!(app.post_callback(&delivered.body).await.text().await.unwrap(), "ok");
    app.wait_until_idle().await;
    assert_eq!(app.bot_comments(1001).len(), 1);
    let _ = (comment_id, post_id);
}

#[tokio::test]
async fn a_crash_between_sending_and_recording_never_sends_twice() {
    let app = TestApp::spawn_with(Options {
        timing: vkhook::config::Timing {
            // Long enough that the second attempt's renewals (every third of it) keep it: no third claim.
            bot_lease: std::time::Duration::from_millis(1000),
            bot_poll: std::time::Duration::from_millis(20),
            setup_poll: std::time::Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    app.connected_with_rules(1001, &[("вопрос", "Ответ.")]).await;
    app.state.hooks.arm(CrashPoint::BotAfterSend);
    app.sandbox.comment(1001, 2, "У меня вопрос").unwrap();
    eventually(10, "the reply at VK", || async { app.bot_comments(1001).into_iter().next() }).await;
    // The worker "died" before recording: the event is still held. After its lease another attempt runs.
    let done = eventually(10, "the event recorded as done", || async {
        let log = app.events(1001, None, Some("wall_reply_new")).await;
        log.iter().find(|r| r.payload.contains("У меня вопрос") && r.status == EventStatus::Done).cloned()
    })
    .await;
    assert_eq!(done.attempts, 2, "the first attempt died after sending; the second recorded it");
    app.wait_until_idle().await;
    assert_eq!(app.bot_comments(1001).len(), 1, "VK's guid made the second send return the first comment");
}

#[tokio::test]
async fn error_6_delays_the_reply_but_it_goes_out() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[("цена", "Цены в меню.")]).await;
    app.sandbox.inject_fault(Fault {
        method: Some("wall.createComment".into()),
        error_code: Some(6),
        latency_ms: None,
        remaining: Some(8),
    });
    app.sandbox.comment(1001, 2, "Какая цена?").unwrap();
    let reply =
        eventually(15, "the reply after the storm", || async { app.bot_comments(1001).into_iter().next() }).await;
    assert_eq!(reply.text, "Цены в меню.");
    app.wait_until_idle().await;
    assert_eq!(app.bot_comments(1001).len(), 1);
}

#[tokio::test]
async fn error_5_pauses_the_community_until_it_is_reconnected() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[("привет", "Привет!")]).await;
    app.sandbox.inject_fault(Fault {
        method: Some("wall.createComment".into()),
        error_code: Some(5),
        latency_ms: None,
        remaining: Some(1),
    });
    app.sandbox.comment(1001, 2, "привет").unwrap();
    eventually(10, "paused", || async {
        app.store().bot_settings(GroupId(1001)).await.unwrap().unwrap().paused_reason.is_some().then_some(())
    })
    .await;
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("Бот приостановлен"));
    assert!(page.contains("Нужно переподключить"));
    assert!(app.bot_comments(1001).is_empty());
    // Reconnecting resumes the bot and the held event is answered.
    let r = app.press_connect(1001, &[("reauth", "1")], Some(vk_sandbox::testing::Consent::allow(1))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.finished_setup(1001).await.state, SetupState::Done);
    eventually(10, "the held reply", || async { app.bot_comments(1001).into_iter().next() }).await;
    assert!(app.store().bot_settings(GroupId(1001)).await.unwrap().unwrap().paused_reason.is_none());
}

#[tokio::test]
async fn a_failed_event_is_replayed_from_the_log_once() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[("привет", "Привет!")]).await;
    app.sandbox.inject_fault(Fault {
        method: Some("messages.send".into()),
        error_code: Some(901),
        latency_ms: None,
        remaining: Some(1),
    });
    app.sandbox.message(1001, 2, "привет").unwrap();
    let failed = eventually(10, "a failed event", || async {
        let log = app.events(1001, Some("failed"), None).await;
        log.into_iter().next()
    })
    .await;
    let page = app.get("/communities/1001/events").await.text().await.unwrap();
    assert!(page.contains("не разрешил сообществу писать ему"), "the log says why");
    assert!(page.contains("Повторить"));
    let r = app
        .post_with_csrf("/communities/1001/events", &format!("/communities/1001/events/{}/replay", failed.id), &[])
        .await;
    assert_eq!(r.status(), 303);
    eventually(10, "the reply", || async { app.bot_messages(1001).into_iter().next() }).await;
    app.wait_until_idle().await;
    // Only failed or dead events can be replayed; a second press changes nothing.
    let r = app
        .post_with_csrf("/communities/1001/events", &format!("/communities/1001/events/{}/replay", failed.id), &[])
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(app.bot_messages(1001).len(), 1);
}

#[tokio::test]
async fn replaying_an_event_whose_reply_was_sent_sends_nothing_new() {
    let app = TestApp::spawn_with(Options {
        timing: vkhook::config::Timing {
            bot_max_attempts: 2,
            bot_poll: std::time::Duration::from_millis(20),
            bot_retry: vk::Backoff::new(std::time::Duration::from_millis(5), std::time::Duration::from_millis(10)),
            setup_poll: std::time::Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    app.connected_with_rules(1001, &[("привет", "Привет!")]).await;
    // VK accepts the comment, but the worker dies before recording it; the event ends up dead.
    app.state.hooks.arm(CrashPoint::BotAfterSend);
    app.sandbox.comment(1001, 2, "привет").unwrap();
    eventually(10, "the reply", || async { app.bot_comments(1001).into_iter().next() }).await;
    let settlement = Settlement {
        id: app.events(1001, Some("processing"), None).await[0].id,
        owner: app.state.instance_id.clone(),
        settle: Settle::Finish {
            status: EventStatus::Dead,
            result: vkhook::model::EventResult::Nothing { reason: vkhook::model::Reason::GaveUp },
            error: Some("lost".into()),
        },
        reply: None,
    };
    app.state.store.write_inbox(&InboxWrite { settlements: vec![settlement], ..Default::default() }).await.unwrap();
    let dead = app.events(1001, Some("dead"), None).await;
    let r = app
        .post_with_csrf("/communities/1001/events", &format!("/communities/1001/events/{}/replay", dead[0].id), &[])
        .await;
    assert_eq!(r.status(), 303);
    app.wait_until_idle().await;
    assert_eq!(app.bot_comments(1001).len(), 1, "no second reply");
}

#[tokio::test]
async fn switches_decide_what_the_bot_answers() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[]).await;
    let r = app
        .post_with_csrf("/communities/1001", "/communities/1001/bot", &[("messages", "1"), ("default_reply", "Ок")])
        .await;
    assert_eq!(r.status(), 303);
    app.sandbox.comment(1001, 2, "комментарий").unwrap();
    app.sandbox.message(1001, 2, "сообщение").unwrap();
    eventually(10, "the message reply", || async { app.bot_messages(1001).into_iter().next() }).await;
    app.wait_until_idle().await;
    assert!(app.bot_comments(1001).is_empty(), "comments are off");
    let page = app.get("/communities/1001/events?type=wall_reply_new").await.text().await.unwrap();
    assert!(page.contains("бот для комментариев выключен"));
}

#[tokio::test]
async fn rules_are_edited_ordered_and_previewed_on_the_community_page() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[]).await;
    app.post_with_csrf(
        "/communities/1001",
        "/communities/1001/rules",
        &[("keywords", "цена"), ("reply", "Цены в меню.")],
    )
    .await;
    app.post_with_csrf(
        "/communities/1001",
        "/communities/1001/rules",
        &[("keywords", "цена, торт"), ("reply", "Торты!")],
    )
    .await;
    let rules = app.store().rules(GroupId(1001)).await.unwrap();
    assert_eq!(rules.len(), 2);
    let page = app.get("/communities/1001?preview=Какая%20цена%20торта").await.text().await.unwrap();
    assert!(page.contains("Сработает правило «цена»"), "the first rule wins");
    app.post_with_csrf("/communities/1001", &format!("/communities/1001/rules/{}/move", rules[1].id), &[("dir", "up")])
        .await;
    let page = app.get("/communities/1001?preview=цена").await.text().await.unwrap();
    assert!(page.contains("Сработает правило «цена, торт»"));
    app.post_with_csrf("/communities/1001", &format!("/communities/1001/rules/{}/delete", rules[1].id), &[]).await;
    assert_eq!(app.store().rules(GroupId(1001)).await.unwrap().len(), 1);
    let page = app.get("/communities/1001?preview=привет").await.text().await.unwrap();
    assert!(page.contains("бот промолчит"));
    let r = app
        .post_with_csrf("/communities/1001", "/communities/1001/rules", &[("keywords", " , "), ("reply", "x")])
        .await;
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn the_connect_form_turns_the_bot_on_with_the_default_reply() {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("Сразу включить бота"));
    let r = app
        .press_connect(
            1001,
            &[("bot_enabled", "1"), ("bot_reply", "Спасибо, {first_name}!")],
            Some(vk_sandbox::testing::Consent::allow(1)),
        )
        .await;
    assert_eq!(r.status(), 200);
    app.finished_setup(1001).await;
    app.sandbox.comment(1001, 2, "Первый!").unwrap();
    let reply = eventually(10, "the reply", || async { app.bot_comments(1001).into_iter().next() }).await;
    assert_eq!(reply.text, "Спасибо, Иван!");
}

#[tokio::test]
async fn the_delivery_log_shows_events_replies_and_raw_bodies_without_secrets() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[("цена", "Цены в меню.")]).await;
    app.sandbox.comment(1001, 2, "Какая цена?").unwrap();
    eventually(10, "the reply", || async { app.bot_comments(1001).into_iter().next() }).await;
    app.wait_until_idle().await;
    let page = app.get("/communities/1001/events").await.text().await.unwrap();
    assert!(page.contains("Какая цена?"));
    assert!(page.contains("Ответил по правилу «цена»: Цены в меню."));
    assert!(page.contains("id2"));
    let filtered = app.get("/communities/1001/events?status=ignored").await.text().await.unwrap();
    assert!(!filtered.contains("Какая цена?"));
    let row = app.events(1001, Some("done"), None).await;
    let raw = app.get(&format!("/communities/1001/events/{}", row[0].id)).await.text().await.unwrap();
    assert!(raw.contains("\"wall_reply_new\""));
    assert!(!raw.contains("secret"));
    assert!(!raw.contains(&app.callback_secret(1001).await));
    // Another user's community's events do not exist for them.
    let other = TestApp::sign_in_elsewhere(&app, 3).await;
    let r = other.get(format!("{}/communities/1001/events", app.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_health_card_shows_traffic_and_reconcile_repairs_drift() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[("цена", "Цены в меню.")]).await;
    app.sandbox.comment(1001, 2, "цена?").unwrap();
    eventually(10, "the reply", || async { app.bot_comments(1001).into_iter().next() }).await;
    app.wait_until_idle().await;
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("Здоровье"));
    assert!(page.contains("отправлено 1, не удалось 0"));
    assert!(page.contains("<code>wall_reply_new</code> 2"), "the comment and the bot's own");

    // Someone switches events off and changes the version at VK.
    let token = app.sandbox.issue_community_token(1001, &["manage"]);
    let server_id = app.sandbox.servers(1001)[0].id.to_string();
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/method/groups.setCallbackSettings", app.sandbox.api_url()))
        .form(&[
            ("group_id", "1001"),
            ("server_id", server_id.as_str()),
            ("api_version", "5.131"),
            ("wall_reply_new", "0"),
            ("access_token", token.as_str()),
            ("v", "5.199"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["response"], 1);
    let r = app.post_with_csrf("/communities/1001", "/communities/1001/check", &[]).await;
    assert_eq!(r.headers()["location"], "/communities/1001?notice=checked_repaired#health");
    let server = app.sandbox.servers(1001)[0].clone();
    assert!(server.events.contains("wall_reply_new"));
    assert_eq!(server.api_version, "5.199");
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("Включены обратно события: wall_reply_new"));
    assert!(page.contains("Версия API возвращена на 5.199 (была 5.131)"));

    // Someone deletes our server at VK: the check connects it again.
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/method/groups.deleteCallbackServer", app.sandbox.api_url()))
        .form(&[
            ("group_id", "1001"),
            ("server_id", server_id.as_str()),
            ("access_token", token.as_str()),
            ("v", "5.199"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["response"], 1);
    app.post_with_csrf("/communities/1001", "/communities/1001/check", &[]).await;
    app.finished_setup(1001).await;
    eventually(10, "a server again", || async {
        app.sandbox.servers(1001).into_iter().find(|s| s.status == vk_sandbox::ServerStatus::Ok)
    })
    .await;
    let page = app.get("/communities/1001").await.text().await.unwrap();
    assert!(page.contains("Сервер vkhook был удалён у ВКонтакте"));
    assert_eq!(app.state.reconciler.reconcile(GroupId(1001)).await.unwrap(), vkhook::health::Repair::InOrder);
}

#[tokio::test]
async fn a_web_instance_stores_events_and_a_worker_instance_answers_them() {
    let web = TestApp::spawn_with(Options { role: vkhook::config::Role::Web, ..Default::default() }).await;
    web.connected_with_rules(1001, &[("вопрос", "Ответ.")]).await;
    web.sandbox.comment(1001, 2, "вопрос").unwrap();
    let stored = eventually(10, "the event stored by the web instance", || async {
        let log = web.events(1001, None, Some("wall_reply_new")).await;
        log.into_iter().next()
    })
    .await;
    assert_eq!(stored.status, EventStatus::Pending, "a web instance runs no bot");

    // A worker instance on the same database answers it.
    let mut settings = vkhook::Settings::for_sandbox(
        &web.sandbox,
        "127.0.0.1:0".parse().unwrap(),
        web.state.settings.database_url.clone(),
        web.state.settings.token_keys.clone(),
    );
    settings.role = vkhook::config::Role::Worker;
    settings.timing = web.state.settings.timing.clone();
    let worker = vkhook::App::build(settings).await.unwrap();
    let worker_url = format!("http://{}", worker.addr());
    let worker_state = worker.state().clone();
    tokio::spawn(worker.run_until_stopped(std::future::pending()));
    let reply = eventually(10, "the worker's reply", || async { web.bot_comments(1001).into_iter().next() }).await;
    assert_eq!(reply.text, "Ответ.");
    // The worker counts the reply just after VK accepted it: wait for the count, not for the reply.
    eventually(10, "the worker's reply counted", || async {
        let sent = "vkhook_bot_replies_total{kind=\"comment\",result=\"sent\"} 1";
        worker_state.metrics.render(None, None).contains(sent).then_some(())
    })
    .await;
    assert!(
        !web.state.metrics.render(None, None).contains("vkhook_bot_replies_total{"),
        "the web instance sent nothing"
    );
    // The worker serves health and metrics, not the UI or the callback.
    assert_eq!(reqwest::get(format!("{worker_url}/healthz")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("{worker_url}/")).await.unwrap().status(), 404);
}

/// What each of VK's refusals of a reply means for the event: try again later, or finish it with the reason in plain
/// words — never a second reply.
#[tokio::test]
async fn each_vk_refusal_of_a_reply_ends_as_vk_means_it() {
    let app = TestApp::spawn().await;
    app.expect_failures(); // VK refuses each reply, for good
    app.connected_with_rules(1001, &[("вопрос", "Ответ.")]).await;
    // (method, VK's error, how the event ends, the reason recorded for a failed one)
    let cases: [(&str, i64, EventStatus, Option<&str>); 10] = [
        ("wall.createComment", 7, EventStatus::Failed, Some("vk_error")),
        ("wall.createComment", 14, EventStatus::Failed, Some("vk_error")),
        ("wall.createComment", 29, EventStatus::Done, None),
        ("wall.createComment", 104, EventStatus::Failed, Some("vk_error")),
        ("wall.createComment", 212, EventStatus::Failed, Some("comments_closed")),
        ("wall.createComment", 213, EventStatus::Failed, Some("comments_closed")),
        ("wall.createComment", 223, EventStatus::Failed, Some("too_many_replies")),
        ("messages.send", 900, EventStatus::Failed, Some("blacklisted")),
        ("messages.send", 902, EventStatus::Failed, Some("messages_privacy")),
        ("messages.send", 29, EventStatus::Done, None),
    ];
    for (i, (method, code, ends, reason)) in cases.into_iter().enumerate() {
        app.sandbox.inject_fault(Fault {
            method: Some(method.into()),
            error_code: Some(code),
            latency_ms: None,
            remaining: Some(1),
        });
        let text = format!("вопрос {i}");
        if method == "messages.send" {
            app.sandbox.message(1001, 2, &text).unwrap();
        } else {
            app.sandbox.comment(1001, 2, &text).unwrap();
        }
        let row = eventually(15, "the event finished", || async {
            let rows = app.events(1001, None, None).await;
            rows.into_iter().find(|r| r.payload.contains(&format!("\"{text}\"")) && !r.status.is_open())
        })
        .await;
        assert_eq!(row.status, ends, "{method} error {code}");
        let result: serde_json::Value = serde_json::from_str(row.result.as_deref().unwrap()).unwrap();
        if let Some(reason) = reason {
            assert_eq!(result["reason"], reason, "{method} error {code}");
            assert_eq!(result["error_code"], code, "{method} error {code}");
            assert_eq!(row.attempts, 1, "{method} error {code} is final: not retried");
        }
    }
    app.wait_until_idle().await;
    // The log says it in words.
    let page = app.get("/communities/1001/events").await.text().await.unwrap();
    assert!(page.contains("человек в чёрном списке сообщества"), "900 in plain words");
    assert!(page.contains("настройки приватности человека"), "902 in plain words");
    assert!(
        app.store().bot_settings(GroupId(1001)).await.unwrap().unwrap().paused_reason.is_none(),
        "none of these is a dead key"
    );
}

#[tokio::test]
async fn a_vk_call_that_times_out_is_tried_again_and_answered_once() {
    let app =
        TestApp::spawn_with(Options { vk_timeout: std::time::Duration::from_millis(400), ..Default::default() }).await;
    app.connected_with_rules(1001, &[("вопрос", "Ответ.")]).await;
    // VK takes longer than we wait, and still writes the comment: the retry's guid returns that one.
    app.sandbox.inject_fault(Fault {
        method: Some("wall.createComment".into()),
        error_code: None,
        latency_ms: Some(1000),
        remaining: Some(1),
    });
    app.sandbox.comment(1001, 2, "вопрос").unwrap();
    eventually(15, "the reply", || async { app.bot_comments(1001).into_iter().next() }).await;
    app.wait_until_idle().await;
    assert_eq!(app.bot_comments(1001).len(), 1);
}

#[tokio::test]
async fn an_unreachable_vk_delays_the_reply_until_it_is_back() {
    let app = TestApp::spawn_with(Options { vk_api_gate: true, ..Default::default() }).await;
    app.connected_with_rules(1001, &[("вопрос", "Ответ.")]).await;
    let gate = app.vk_gate.as_ref().unwrap();
    gate.cut();
    app.sandbox.comment(1001, 2, "вопрос").unwrap();
    let waiting = eventually(15, "a failed attempt, kept for later", || async {
        let rows = app.events(1001, Some("pending"), Some("wall_reply_new")).await;
        rows.into_iter().find(|r| r.last_error.is_some())
    })
    .await;
    assert!(waiting.last_error.unwrap().to_lowercase().contains("connect"), "a network error");
    assert!(app.bot_comments(1001).is_empty());
    gate.restore();
    eventually(30, "the reply once VK is back", || async { app.bot_comments(1001).into_iter().next() }).await;
    app.wait_until_idle().await;
    assert_eq!(app.bot_comments(1001).len(), 1);
}

#[tokio::test]
async fn a_communitys_replies_go_out_in_the_order_its_comments_came() {
    let app = TestApp::spawn().await;
    app.connected_with_rules(1001, &[("вопрос", "Ответ на {first_name}.")]).await;
    // Slow VK for the first replies: a later comment must still not overtake an earlier one.
    app.sandbox.inject_fault(Fault {
        method: Some("wall.createComment".into()),
        error_code: None,
        latency_ms: Some(150),
        remaining: Some(3),
    });
    let mut asked = Vec::new();
    for i in 0..8 {
        asked.push(app.sandbox.comment(1001, 2, &format!("вопрос {i}")).unwrap().0);
    }
    eventually(20, "eight replies", || async { (app.bot_comments(1001).len() == 8).then_some(()) }).await;
    let answered: Vec<i64> = app.bot_comments(1001).iter().map(|c| c.reply_to_comment.unwrap()).collect();
    // VK delivers each event on its own, so they may arrive in another order than written; vkhook keeps the order
    // they arrived in (stored), one community at a time.
    let mut stored: Vec<i64> = app
        .events(1001, None, Some("wall_reply_new"))
        .await
        .iter()
        .rev()
        .filter_map(|e| {
            let body: serde_json::Value = serde_json::from_str(&e.payload).ok()?;
            (body["object"]["from_id"] == 2).then(|| body["object"]["id"].as_i64().unwrap())
        })
        .collect();
    stored.dedup();
    assert_eq!(answered, stored, "replies in the order the comments were stored");
    let mut all = asked.clone();
    all.sort();
    let mut got = answered.clone();
    got.sort();
    assert_eq!(got, all, "every comment answered once");
}

/// VK's final refusals of a message each get plain words in the log: the community's messages switched off (945)
/// and the reply window over (950), set at the sandbox as an admin or time would. Nothing is retried.
#[tokio::test]
async fn messages_off_and_a_closed_reply_window_are_said_in_plain_words() {
    let app = TestApp::spawn().await;
    app.expect_failures(); // VK refuses the replies: the chat is off, the reply window closed
    app.connected_with_rules(1001, &[("привет", "Привет!")]).await;
    app.sandbox_control("/_sandbox/groups/1001/messaging", serde_json::json!({"reply_window_over": [2]})).await;
    app.sandbox.message(1001, 2, "привет").unwrap();
    eventually(10, "the first refusal", || async { app.events(1001, Some("failed"), None).await.into_iter().next() })
        .await;
    app.sandbox_control(
        "/_sandbox/groups/1001/messaging",
        serde_json::json!({"enabled": false, "reply_window_over": []}),
    )
    .await;
    app.sandbox.message(1001, 2, "привет ещё раз").unwrap();
    eventually(10, "the second refusal", || async {
        (app.events(1001, Some("failed"), None).await.len() == 2).then_some(())
    })
    .await;
    app.wait_until_idle().await;
    let page = app.get("/communities/1001/events").await.text().await.unwrap();
    assert!(page.contains("время, в которое сообщество могло ответить, истекло. Ответить можно, когда человек напишет снова. Повторять не будем (950)"), "{page}");
    assert!(
        page.contains("в сообществе выключены сообщения (Управление → Сообщения). Повторять не будем (945)"),
        "{page}"
    );
    assert!(app.bot_messages(1001).is_empty());
}
