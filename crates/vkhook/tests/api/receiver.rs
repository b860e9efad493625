//! `POST /vk/callback`: every event stored once before `ok`, and every bad request refused without `ok`.

use serde_json::{json, Value};
use vk::GroupId;
use vk_sandbox::testing::Consent;

use crate::helpers::*;

async fn connected() -> TestApp {
    let app = TestApp::spawn().await;
    app.sign_in(1).await;
    app.connect(1001).await;
    app
}

#[tokio::test]
async fn every_real_sample_readdressed_to_a_connected_community_is_ok_and_stored_whole() {
    let app = connected().await;
    let mut n = 0;
    for (path, mut body) in app.samples_for(1001).await {
        if body.get("event_id").is_none() {
            body["event_id"] = json!(format!("{:040x}", n + 1));
        }
        let r = app.post_callback(&body.to_string()).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.unwrap(), "ok", "exactly ok: {path}");
        let event_id = match &body["event_id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let row = app.store().inbox_event_by_event_id(GroupId(1001), &event_id).await.unwrap().expect("stored");
        let stored: Value = serde_json::from_str(&row.payload).unwrap();
        let mut expected = body.clone();
        expected.as_object_mut().unwrap().remove("secret");
        if let Value::Number(id) = &expected["event_id"] {
            expected["event_id"] = json!(id.to_string());
        }
        assert_eq!(stored, expected, "stored whole, without the secret: {path}");
        n += 1;
    }
    assert_eq!(n, 8);
}

#[tokio::test]
async fn every_real_sample_goes_through_the_bot_and_ends_replied_or_ignored_with_a_reason() {
    let app = connected().await;
    app.store().set_bot_settings(GroupId(1001), true, true, Some("Спасибо, {first_name}!")).await.unwrap();
    let mut sent = 0;
    for (n, (path, mut body)) in app.samples_for(1001).await.into_iter().enumerate() {
        body["event_id"] = json!(format!("{:040x}", 1000 + n));
        // Replies go to the sandbox's world: the author is Иван (who may be written to), the post is 1001's.
        if body["type"] == "message_new" {
            // Иван writes to the community first, as a person must before a community may answer.
            app.sandbox.message(1001, 2, "образец").unwrap();
            body["object"]["message"]["from_id"] = json!(2);
            body["object"]["message"]["peer_id"] = json!(2);
        }
        if body["type"] == "wall_reply_new" {
            let (comment_id, post_id) = app.sandbox.comment(1001, 2, "образец").unwrap();
            body["object"]["id"] = json!(comment_id);
            body["object"]["post_id"] = json!(post_id);
            body["object"]["owner_id"] = json!(-1001);
            body["object"]["post_owner_id"] = json!(-1001);
            body["object"]["from_id"] = json!(2);
        }
        assert_eq!(app.post_callback(&body.to_string()).await.text().await.unwrap(), "ok", "{path}");
        sent += 1;
    }
    assert_eq!(sent, 8);
    app.wait_until_idle().await;
    for row in app.events(1001, None, None).await {
        let result: Value = serde_json::from_str(row.result.as_deref().unwrap_or("{}")).unwrap();
        let ended = match row.status {
            vkhook::model::EventStatus::Done => result["action"] == "replied",
            vkhook::model::EventStatus::Ignored => result["reason"].as_str().is_some_and(|r| !r.is_empty()),
            _ => false,
        };
        assert!(ended, "{} ended {:?} with {result}", row.event_type, row.status);
    }
}

#[tokio::test]
async fn a_repeated_event_is_stored_once() {
    let app = connected().await;
    let secret = app.callback_secret(1001).await;
    let body = json!({"type": "group_join", "event_id": "a".repeat(40), "v": "5.199", "group_id": 1001, "secret": secret, "object": {"user_id": 2, "join_type": "join"}}).to_string();
    for _ in 0..3 {
        assert_eq!(app.post_callback(&body).await.text().await.unwrap(), "ok");
    }
    let rows = app.events(1001, None, None).await;
    assert_eq!(rows.iter().filter(|r| r.event_type == "group_join").count(), 1);
}

#[tokio::test]
async fn bad_requests_are_refused_and_never_ok() {
    let app = connected().await;
    let secret = app.callback_secret(1001).await;
    let event = |group: i64, secret: &str| {
        json!({"type": "group_join", "event_id": "b".repeat(40), "group_id": group, "secret": secret, "object": {"user_id": 2}}).to_string()
    };
    let cases: Vec<(String, u16)> = vec![
        (event(1001, "wrong"), 403),
        (event(424242, &secret), 404),
        ("{not json".into(), 400),
        (json!({"type": "group_join", "event_id": "c", "secret": secret}).to_string(), 400),
        (json!({"group_id": 1001, "secret": secret}).to_string(), 400),
        (json!({"type": "group_join", "group_id": 1001, "secret": secret, "object": {}}).to_string(), 400),
    ];
    for (body, status) in cases {
        let r = app.post_callback(&body).await;
        assert_eq!(r.status().as_u16(), status, "{body}");
        assert_ne!(r.text().await.unwrap(), "ok");
    }
    let huge = format!("{{\"type\":\"x\",\"group_id\":1001,\"pad\":\"{}\"}}", "a".repeat(2 * 1024 * 1024));
    let r = app.post_callback(&huge).await;
    assert_eq!(r.status(), 413);
    assert_eq!(app.events(1001, None, None).await.len(), 0);
}

#[tokio::test]
async fn a_store_that_cannot_commit_gets_503_with_retry_after() {
    let app = connected().await;
    let secret = app.callback_secret(1001).await;
    // Prime the cache, then take the database away.
    let first = json!({"type": "group_join", "event_id": "d".repeat(40), "group_id": 1001, "secret": secret, "object": {"user_id": 2}}).to_string();
    assert_eq!(app.post_callback(&first).await.text().await.unwrap(), "ok");
    app.store().close().await;
    let body = json!({"type": "group_join", "event_id": "e".repeat(40), "group_id": 1001, "secret": secret, "object": {"user_id": 2}}).to_string();
    let r = app.post_callback(&body).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    assert_ne!(r.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn vks_retry_after_a_failed_answer_is_stored_once_and_answered_once() {
    let app = connected().await;
    app.store().set_bot_settings(GroupId(1001), true, true, Some("Спасибо!")).await.unwrap();
    app.state.hooks.arm(vkhook::hooks::CrashPoint::ReceiverFailNextEvent);
    app.sandbox.message(1001, 2, "Привет").unwrap();
    eventually(10, "the reply", || async { (app.bot_messages(1001).len() == 1).then_some(()) }).await;
    // The sandbox records an attempt when its answer arrives, which can be after the bot replied: wait for it.
    let attempts = eventually(10, "VK's two attempts recorded", || async {
        let attempts: Vec<_> =
            app.sandbox.deliveries(1001).into_iter().filter(|d| d.event_type == "message_new").collect();
        (attempts.len() >= 2 && attempts[1].http_status.is_some()).then_some(attempts)
    })
    .await;
    assert_eq!(attempts.len(), 2, "refused once with 503, then retried by VK");
    assert_eq!(attempts[0].http_status, Some(503));
    assert_eq!(attempts[1].retry_counter, 1);
    app.wait_until_idle().await;
    assert_eq!(app.bot_messages(1001).len(), 1);
}

#[tokio::test]
async fn a_disconnected_community_that_still_sends_is_told_to_remove_the_server() {
    let app = connected().await;
    let secret = app.callback_secret(1001).await;
    app.post_with_csrf("/communities/1001", "/communities/1001/disconnect", &[]).await;
    let body = json!({"type": "group_join", "event_id": "f".repeat(40), "group_id": 1001, "secret": secret, "object": {"user_id": 2}}).to_string();
    let r = app.post_callback(&body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "remove");
}

fn join_event(id: char, secret: &str) -> String {
    json!({"type": "group_join", "event_id": id.to_string().repeat(40), "group_id": 1001, "secret": secret, "object": {"user_id": 2}}).to_string()
}

#[tokio::test]
async fn reconnecting_keeps_the_secret_so_vks_retries_in_flight_are_taken() {
    let app = connected().await;
    let old = app.callback_secret(1001).await;
    assert_eq!(app.press_connect(1001, &[], None).await.status(), 200);
    app.finished_setup(1001).await;
    assert_eq!(app.callback_secret(1001).await, old, "nothing needed a new secret");
    assert_eq!(app.post_callback(&join_event('1', &old)).await.text().await.unwrap(), "ok");
    let server = app.sandbox.servers(1001).into_iter().next().unwrap();
    assert_eq!(server.secret_key, old, "VK sends the same secret");
}

#[tokio::test]
async fn a_reconnect_by_another_admin_rotates_and_the_old_secret_lasts_through_vks_retries() {
    let app = connected().await;
    let old = app.callback_secret(1001).await;
    // Another administrator of 1001 reconnects it.
    app.sandbox.world().group_mut(1001).unwrap().admins.insert(4, 3);
    let other =
        Driver::new(TestApp::sign_in_elsewhere(&app, 4).await, app.url.clone(), &app.sandbox, app.store().clone());
    other.get("/communities").await;
    assert_eq!(other.press_connect(1001, &[], Some(Consent::allow(4))).await.status(), 200);
    app.finished_setup(1001).await;
    let new = app.callback_secret(1001).await;
    assert_ne!(old, new);
    // An event under the new secret does not end the old one: VK retries older events with it for hours.
    assert_eq!(app.post_callback(&join_event('2', &new)).await.text().await.unwrap(), "ok");
    assert_eq!(app.post_callback(&join_event('1', &old)).await.text().await.unwrap(), "ok", "a retry in flight");
    assert_eq!(app.post_callback(&join_event('3', "wrong")).await.status(), 403);
}

#[tokio::test]
async fn metrics_count_events_by_type_and_what_became_of_them() {
    let app = connected().await;
    let secret = app.callback_secret(1001).await;
    let body = json!({"type": "like_add", "event_id": "9".repeat(40), "group_id": 1001, "secret": secret, "object": {"liker_id": 2, "object_type": "post", "object_owner_id": -1001, "object_id": 1}}).to_string();
    app.post_callback(&body).await;
    app.post_callback(&body).await;
    app.post_callback(&body.replace(&secret, "nope")).await;
    let huge = format!(r#"{{"type":"like_add","group_id":1001,"object":{{"x":"{}"}}}}"#, "a".repeat(2 << 20));
    assert_eq!(app.post_callback(&huge).await.status(), 413);
    app.post_with_csrf("/communities/1001", "/communities/1001/disconnect", &[]).await;
    assert_eq!(
        app.post_callback(&body.replace(&"9".repeat(40), &"8".repeat(40))).await.text().await.unwrap(),
        "remove"
    );

    let text = app.get("/metrics").await.text().await.unwrap();
    let line = |labels: &str| format!("vkhook_callback_requests_total{{{labels}}} 1");
    for labels in [
        r#"type="like_add",status="200",result="stored""#,
        r#"type="like_add",status="200",result="duplicate""#,
        r#"type="like_add",status="200",result="remove""#,
        r#"type="like_add",status="403",result="wrong_secret""#,
        r#"type="other",status="413",result="too_large""#,
    ] {
        assert!(text.contains(&line(labels)), "{labels}:\n{text}");
    }
    assert!(!text.contains(r#"result="ok""#), "ok is split into what it meant");
    assert!(text.contains("vkhook_callback_ack_seconds_count"));
    assert!(text.contains("vkhook_inbox_depth 0"), "a like needs no work: stored finished");
    assert!(text.contains("vkhook_inbox_oldest_age_seconds 0.000"));
    assert!(text.contains("vkhook_vk_requests_total{method=\"groups.addCallbackServer\",outcome=\"ok\"} 1"));
}

#[tokio::test]
async fn metrics_can_need_a_bearer_token_and_move_to_their_own_address() {
    let token = "m3tr1cs-t0ken";
    let metrics = vkhook::config::MetricsAccess {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        token: Some(secrecy::SecretString::from(token)),
    };
    let app = TestApp::spawn_with(Options { metrics, ..Default::default() }).await;
    assert_eq!(app.get("/metrics").await.status(), 404, "not on the public port");
    assert_eq!(app.get("/healthz").await.status(), 200);
    let url = app.metrics_url.clone().expect("its own address");
    let http = reqwest::Client::new();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(http.get(&url).bearer_auth("wrong").send().await.unwrap().status(), 401);
    let r = http.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("vkhook_inbox_depth"));
}
