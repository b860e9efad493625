//! Callback delivery as VK does it.

use std::time::Duration;

use axum::http::StatusCode;
use vk_sandbox::{SandboxConfig, ServerStatus};

use crate::helpers::*;

#[tokio::test]
async fn a_server_is_confirmed_only_by_the_current_code_with_http_200() {
    let sandbox = sandbox().await;
    let token = manage_token(&sandbox, 1001);
    let good = receiver().await;
    connected_server(&sandbox, 1001, &good, &["message_new"]).await;
    assert_eq!(good.bodies("confirmation")[0]["secret"], "s3cr3t");

    // The right code with another status is rejected.
    let wrong_status = receiver().await;
    let code = call(&sandbox, "groups.getCallbackConfirmationCode", &token, &[("group_id", "1001")]).await;
    *wrong_status.answer.lock().unwrap() =
        Answer::Everything(StatusCode::CREATED, code["response"]["code"].as_str().unwrap().into());
    let added = call(
        &sandbox,
        "groups.addCallbackServer",
        &token,
        &[("group_id", "1001"), ("url", &wrong_status.url), ("title", "b")],
    )
    .await;
    let id = added["response"]["server_id"].as_i64().unwrap();
    eventually(5, "failed", || async {
        sandbox.servers(1001).into_iter().find(|s| s.id == id && s.status == ServerStatus::Failed)
    })
    .await;

    // A code fetched after the add is not the one the server was confirmed against... a stale one fails.
    let stale = receiver().await;
    *stale.code.lock().unwrap() = code["response"]["code"].as_str().unwrap().into();
    call(&sandbox, "groups.getCallbackConfirmationCode", &token, &[("group_id", "1001")]).await; // a new code
    let added = call(
        &sandbox,
        "groups.addCallbackServer",
        &token,
        &[("group_id", "1001"), ("url", &stale.url), ("title", "c")],
    )
    .await;
    let id = added["response"]["server_id"].as_i64().unwrap();
    eventually(5, "failed", || async {
        sandbox.servers(1001).into_iter().find(|s| s.id == id && s.status == ServerStatus::Failed)
    })
    .await;
    let record = sandbox.deliveries(1001).into_iter().find(|d| d.server_id == id).unwrap();
    assert_eq!((record.event_type.as_str(), record.outcome.as_str()), ("confirmation", "failed"));
}

#[tokio::test]
async fn events_go_only_to_confirmed_servers_with_the_type_switched_on() {
    let sandbox = sandbox().await;
    let r = receiver().await;
    connected_server(&sandbox, 1001, &r, &["message_new"]).await;
    sandbox.comment(1001, 2, "не доставится").unwrap();
    sandbox.message(1001, 2, "доставится").unwrap();
    eventually(5, "message_new", || async { r.bodies("message_new").first().cloned() }).await;
    assert!(r.bodies("wall_reply_new").is_empty());
    let m = &r.bodies("message_new")[0];
    assert_eq!(m["object"]["message"]["text"], "доставится", "5.199 wraps the message: {m}");
    assert!(m["object"]["client_info"].is_object());
}

#[tokio::test]
async fn an_old_api_version_gets_the_bare_message() {
    let sandbox = sandbox().await;
    let r = receiver().await;
    let (token, server_id) = connected_server(&sandbox, 1001, &r, &["message_new"]).await;
    let sid = server_id.to_string();
    call(
        &sandbox,
        "groups.setCallbackSettings",
        &token,
        &[("group_id", "1001"), ("server_id", &sid), ("api_version", "5.95")],
    )
    .await;
    sandbox.message(1001, 2, "старый формат").unwrap();
    let m = eventually(5, "message_new", || async { r.bodies("message_new").first().cloned() }).await;
    assert_eq!(m["v"], "5.95");
    assert_eq!(m["object"]["text"], "старый формат");
}

#[tokio::test]
async fn answering_remove_deletes_the_server() {
    let sandbox = sandbox().await;
    let r = receiver().await;
    connected_server(&sandbox, 1001, &r, &["wall_reply_new"]).await;
    *r.answer.lock().unwrap() = Answer::Events(StatusCode::OK, "remove", None);
    sandbox.comment(1001, 2, "x").unwrap();
    eventually(5, "server removed", || async { sandbox.servers(1001).is_empty().then_some(()) }).await;
    assert_eq!(sandbox.deliveries(1001).last().unwrap().outcome, "removed");
}

#[tokio::test]
async fn retry_after_is_honoured_on_503() {
    let sandbox = sandbox().await; // 10 s → 10 ms; Retry-After: 200 s → 200 ms
    let r = receiver().await;
    connected_server(&sandbox, 1001, &r, &["wall_reply_new"]).await;
    *r.answer.lock().unwrap() = Answer::Events(StatusCode::SERVICE_UNAVAILABLE, "busy", Some(200));
    sandbox.comment(1001, 2, "x").unwrap();
    eventually(5, "first attempt", || async { (r.bodies("wall_reply_new").len() == 1).then_some(()) }).await;
    *r.answer.lock().unwrap() = Answer::Good;
    // Wait for the sandbox's record of both attempts (it records an attempt after the receiver has answered it).
    let attempts = eventually(5, "both attempts recorded", || async {
        let attempts: Vec<_> =
            sandbox.deliveries(1001).into_iter().filter(|d| d.event_type == "wall_reply_new").collect();
        (attempts.len() == 2).then_some(attempts)
    })
    .await;
    assert_eq!(r.bodies("wall_reply_new").len(), 2);
    assert_eq!(attempts[0].http_status, Some(503));
    assert_eq!(attempts[1].outcome, "ok");
    assert!(attempts[1].at_ms - attempts[0].at_ms >= 200, "waited as asked, not the 10 ms schedule");
}

#[tokio::test]
async fn repeated_failures_pause_delivery_to_the_server() {
    let sandbox = sandbox_with(SandboxConfig {
        time_factor: 0.001,
        pause_after_failures: 3,
        pause_for: Duration::from_secs(3600), // 3.6 s scaled
        ..Default::default()
    })
    .await;
    let r = receiver().await;
    connected_server(&sandbox, 1001, &r, &["wall_reply_new"]).await;
    *r.answer.lock().unwrap() = Answer::Events(StatusCode::INTERNAL_SERVER_ERROR, "down", None);
    sandbox.comment(1001, 2, "x").unwrap();
    // The pause is set when the sandbox records the third failed answer, just after the receiver has sent it.
    eventually(5, "delivery paused after three failures in a row", || async {
        sandbox.servers(1001)[0].paused_until.is_some_and(|t| t > std::time::Instant::now()).then_some(())
    })
    .await;
    assert!(r.bodies("wall_reply_new").len() >= 3);
}

#[tokio::test]
async fn every_attempt_is_recorded_and_readable_over_http() {
    let sandbox = sandbox().await;
    let r = receiver().await;
    connected_server(&sandbox, 1002, &r, &["wall_reply_new"]).await;
    sandbox.comment(1002, 2, "x").unwrap();
    eventually(5, "delivered", || async { r.bodies("wall_reply_new").first().cloned() }).await;
    // The sandbox records an attempt once the receiver has answered it: wait for the record itself.
    let list = eventually(5, "both attempts recorded", || async {
        let url = format!("{}/_sandbox/deliveries?group_id=1002", sandbox.url());
        let list: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        (list.as_array().unwrap().len() == 2).then_some(list)
    })
    .await;
    let kinds: Vec<&str> = list.as_array().unwrap().iter().map(|d| d["event_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["confirmation", "wall_reply_new"]);
    assert_eq!(list[1]["outcome"], "ok");
}

#[tokio::test]
async fn the_world_page_shows_communities_and_lets_user_2_comment() {
    let sandbox = sandbox().await;
    let html = reqwest::get(sandbox.url()).await.unwrap().text().await.unwrap();
    for text in ["Кофейня «Зерно»", "Книжный клуб", "Городские новости", "Соседский чат", "Комментировать"]
    {
        assert!(html.contains(text), "{text}");
    }
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http
        .post(format!("{}/_sandbox/ui/comment", sandbox.url()))
        .form(&[("group_id", "1001"), ("post_id", "1"), ("text", "Через страницу"), ("reply_to_comment", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(sandbox.comments(1001)[0].text, "Через страницу");
    assert_eq!(sandbox.comments(1001)[0].from_id, 2);
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    // Real time here: a date has whole seconds, so the retry must wait until the date itself.
    let sandbox = sandbox_with(SandboxConfig { time_factor: 1.0, ..Default::default() }).await;
    let r = receiver().await;
    connected_server(&sandbox, 1001, &r, &["wall_reply_new"]).await;
    let at = std::time::SystemTime::now() + Duration::from_secs(2);
    *r.answer.lock().unwrap() =
        Answer::EventsRetryAt(StatusCode::TOO_MANY_REQUESTS, "later", httpdate::fmt_http_date(at));
    sandbox.comment(1001, 2, "x").unwrap();
    eventually(5, "first attempt", || async { (r.bodies("wall_reply_new").len() == 1).then_some(()) }).await;
    *r.answer.lock().unwrap() = Answer::Good;
    let attempts = eventually(10, "the retry recorded", || async {
        let attempts: Vec<_> =
            sandbox.deliveries(1001).into_iter().filter(|d| d.event_type == "wall_reply_new").collect();
        (attempts.len() == 2).then_some(attempts)
    })
    .await;
    assert_eq!(attempts[1].outcome, "ok");
    let date_ms = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 / 1000 * 1000;
    assert!(attempts[1].at_ms >= date_ms, "not before the date: {} < {date_ms}", attempts[1].at_ms);
    assert!(attempts[1].at_ms - attempts[0].at_ms < 9_000, "not the 10 s schedule either");
}

#[tokio::test]
async fn answering_version_switches_the_server_and_resends_in_that_version() {
    let sandbox = sandbox().await;
    let r = receiver().await;
    connected_server(&sandbox, 1001, &r, &["message_new"]).await;
    *r.answer.lock().unwrap() = Answer::WantsVersion("5.95");
    sandbox.message(1001, 2, "в старом формате").unwrap();
    eventually(5, "the resend in 5.95", || async {
        r.bodies("message_new").into_iter().find(|b| b["v"] == "5.95").map(|_| ())
    })
    .await;
    let bodies = r.bodies("message_new");
    assert_eq!(bodies[0]["v"], "5.199");
    assert_eq!(bodies[0]["object"]["message"]["text"], "в старом формате");
    let resent = bodies.iter().find(|b| b["v"] == "5.95").unwrap();
    assert_eq!(resent["object"]["text"], "в старом формате", "5.95 gets the bare message");
    assert_eq!(resent["event_id"], bodies[0]["event_id"], "the same event");
    assert_eq!(sandbox.servers(1001)[0].api_version, "5.95");
    let outcomes: Vec<String> = eventually(5, "the attempts recorded", || async {
        let o: Vec<String> =
            sandbox.deliveries(1001).into_iter().filter(|d| d.event_type == "message_new").map(|d| d.outcome).collect();
        (o.len() == 2).then_some(o)
    })
    .await;
    assert_eq!(outcomes, ["version", "ok"]);
    assert_eq!(sandbox.servers(1001)[0].consecutive_failures, 0, "not a failure");
}

#[tokio::test]
async fn allowing_and_forbidding_messages_fire_their_events() {
    let sandbox = sandbox().await;
    let r = receiver().await;
    connected_server(&sandbox, 1001, &r, &["message_allow", "message_deny"]).await;
    let control = |allowed: bool| {
        let url = format!("{}/_sandbox/groups/1001/permission", sandbox.url());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&serde_json::json!({"user_id": 2, "allowed": allowed}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    };
    control(true).await;
    let allow = eventually(5, "message_allow", || async { r.bodies("message_allow").first().cloned() }).await;
    assert_eq!(allow["object"]["user_id"], 2);
    assert!(sandbox.world().group(1001).unwrap().messages_allowed.contains(&2));
    control(false).await;
    let deny = eventually(5, "message_deny", || async { r.bodies("message_deny").first().cloned() }).await;
    assert_eq!(deny["object"]["user_id"], 2);
    assert!(!sandbox.world().group(1001).unwrap().messages_allowed.contains(&2));
    assert!(sandbox.world().callback_violations.is_empty(), "{:?}", sandbox.world().callback_violations);
}
