//! Bots Long Poll as VK runs it (https://dev.vk.com/ru/api/bots-long-poll/getting-started).

use serde_json::{json, Value};

use crate::helpers::*;

async fn a_check(server: &str, key: &str, ts: &str, wait: u64) -> Value {
    reqwest::Client::new()
        .get(server)
        .query(&[("act", "a_check"), ("key", key), ("ts", ts), ("wait", &wait.to_string())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn control(sandbox: &vk_sandbox::Sandbox, group_id: i64, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}/_sandbox/groups/{group_id}/longpoll", sandbox.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_session_gets_the_callback_objects_with_event_id_and_without_secret() {
    let sandbox = sandbox().await;
    let token = manage_token(&sandbox, 1001);
    let off = call(&sandbox, "groups.getLongPollServer", &token, &[("group_id", "1001")]).await;
    assert_eq!(error_code(&off), Some(15), "off: {off}");
    assert!(error_msg(&off).contains("longpoll for this group is not enabled"));

    let set = call(
        &sandbox,
        "groups.setLongPollSettings",
        &token,
        &[("group_id", "1001"), ("enabled", "1"), ("api_version", "5.199"), ("message_new", "1")],
    )
    .await;
    assert_eq!(set["response"], 1, "{set}");
    let settings = call(&sandbox, "groups.getLongPollSettings", &token, &[("group_id", "1001")]).await;
    assert_eq!(settings["response"]["is_enabled"], true);
    assert_eq!(settings["response"]["events"]["message_new"], 1);
    assert_eq!(settings["response"]["events"]["wall_reply_new"], 0);

    let session = call(&sandbox, "groups.getLongPollServer", &token, &[("group_id", "1001")]).await["response"].clone();
    let (server, key) = (session["server"].as_str().unwrap(), session["key"].as_str().unwrap());
    let ts = session["ts"].as_str().expect("ts is a string, as VK sends it");

    // The check is held until the message comes.
    let held = tokio::spawn({
        let (server, key, ts) = (server.to_owned(), key.to_owned(), ts.to_owned());
        async move { a_check(&server, &key, &ts, 25).await }
    });
    eventually(5, "the check is held", || async {
        (sandbox.world().calls.get("longpoll.a_check").copied().unwrap_or(0) >= 1).then_some(())
    })
    .await;
    sandbox.message(1001, 2, "Здравствуйте").unwrap();
    sandbox.comment(1001, 2, "a comment: not switched on").unwrap();
    let answer = held.await.unwrap();
    let updates = answer["updates"].as_array().unwrap();
    assert_eq!(updates.len(), 1, "{answer}");
    let update = &updates[0];
    assert_eq!(update["type"], "message_new");
    assert_eq!(update["group_id"], 1001);
    assert_eq!(update["v"], "5.199");
    assert_eq!(update["object"]["message"]["text"], "Здравствуйте");
    assert_eq!(update["event_id"].as_str().map(str::len), Some(40));
    assert!(update.get("secret").is_none(), "{update}");
    let next = answer["ts"].as_str().unwrap();
    assert_ne!(next, ts);

    // Nothing new: an empty answer after the wait, with the same ts.
    let empty = a_check(server, key, next, 0).await;
    assert_eq!(empty, json!({"ts": next, "updates": []}));
}

#[tokio::test]
async fn one_setting_per_community_changed_only_where_a_call_names_it() {
    let sandbox = sandbox().await;
    let token = manage_token(&sandbox, 1001);
    // Another tool switched Long Poll on with its own version and types.
    control(&sandbox, 1001, json!({"enabled": true, "api_version": "5.131", "events": ["wall_post_new"]})).await;
    call(&sandbox, "groups.setLongPollSettings", &token, &[("group_id", "1001"), ("message_new", "1")]).await;
    let settings =
        call(&sandbox, "groups.getLongPollSettings", &token, &[("group_id", "1001")]).await["response"].clone();
    assert_eq!(settings["api_version"], "5.131", "the other tool's version stays");
    assert_eq!(
        (settings["events"]["wall_post_new"].clone(), settings["events"]["message_new"].clone()),
        (json!(1), json!(1))
    );
    // A user token is not enough, as for the Callback API's methods.
    let user = sandbox.issue_user_token(1, &["groups"]);
    let refused = call(&sandbox, "groups.getLongPollSettings", &user, &[("group_id", "1001")]).await;
    assert_eq!(error_code(&refused), Some(15));
}

#[tokio::test]
async fn injected_failures_expired_keys_and_a_dropped_range_are_answered_as_vk_does() {
    let sandbox = sandbox().await;
    let token = manage_token(&sandbox, 1001);
    call(
        &sandbox,
        "groups.setLongPollSettings",
        &token,
        &[("group_id", "1001"), ("enabled", "1"), ("message_new", "1")],
    )
    .await;
    let session = call(&sandbox, "groups.getLongPollServer", &token, &[("group_id", "1001")]).await["response"].clone();
    let (server, key) = (session["server"].as_str().unwrap(), session["key"].as_str().unwrap());
    let start: u64 = session["ts"].as_str().unwrap().parse().unwrap();
    for n in 0..5 {
        sandbox.message(1001, 2, &format!("m{n}")).unwrap();
    }
    // VK lost the second and third.
    control(&sandbox, 1001, json!({"drop": [start + 1, start + 2]})).await;
    let first = a_check(server, key, &start.to_string(), 0).await;
    let texts: Vec<&str> =
        first["updates"].as_array().unwrap().iter().map(|u| u["object"]["message"]["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["m0", "m3", "m4"], "{first}");
    let lost = a_check(server, key, &(start + 1).to_string(), 0).await;
    assert_eq!(lost, json!({"failed": 1, "ts": (start + 3).to_string()}), "a request from inside the gap");

    control(&sandbox, 1001, json!({"fail": [1, 2, 3]})).await;
    let at = (start + 5).to_string();
    assert_eq!(a_check(server, key, &at, 0).await["failed"], 1);
    assert_eq!(a_check(server, key, &at, 0).await, json!({"failed": 2}));
    assert_eq!(a_check(server, key, &at, 0).await, json!({"failed": 3}));

    let session = call(&sandbox, "groups.getLongPollServer", &token, &[("group_id", "1001")]).await["response"].clone();
    let key = session["key"].as_str().unwrap();
    assert_eq!(a_check(server, key, &at, 0).await["updates"], json!([]));
    control(&sandbox, 1001, json!({"key_ttl_ms": 0})).await;
    assert_eq!(a_check(server, key, &at, 0).await, json!({"failed": 2}), "keys expire");
}
