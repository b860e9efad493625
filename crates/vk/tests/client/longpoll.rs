//! Bots Long Poll against the sandbox: the setting, a session, and each kind of answer.

use std::time::Duration;

use serde_json::json;
use vk::{GroupId, LongPollCheck};

use crate::helpers::*;

#[tokio::test]
async fn a_client_switches_on_only_its_types_and_reads_each_answer() {
    let sandbox = sandbox().await;
    let client = client(&sandbox);
    let token = community(&sandbox, 1001);
    let group = GroupId(1001);

    let off = client.groups_get_long_poll_server(&token, group).await.unwrap_err();
    assert_eq!(off.code(), Some(15), "{off}");

    // Another tool's version and type stay as they are.
    reqwest::Client::new()
        .post(format!("{}/_sandbox/groups/1001/longpoll", sandbox.url()))
        .json(&json!({"enabled": true, "api_version": "5.131", "events": ["wall_post_new"]}))
        .send()
        .await
        .unwrap();
    let before = client.groups_get_long_poll_settings(&token, group).await.unwrap();
    assert_eq!(before.missing(&["message_new", "wall_post_new"]), ["message_new"]);
    client.groups_set_long_poll_settings(&token, group, Some(true), None, &["message_new"], &[]).await.unwrap();
    let after = client.groups_get_long_poll_settings(&token, group).await.unwrap();
    assert!(after.is_enabled);
    assert_eq!(after.api_version.as_deref(), Some("5.131"));
    assert!(after.missing(&["message_new", "wall_post_new"]).is_empty());

    let session = client.groups_get_long_poll_server(&token, group).await.unwrap();
    sandbox.message(1001, 2, "Привет").unwrap();
    let LongPollCheck::Updates { ts, updates } =
        client.long_poll_check(&session, &session.ts, Duration::from_secs(5)).await.unwrap()
    else {
        panic!("updates expected")
    };
    assert_eq!(updates.len(), 1);
    let envelope = vk::parse(updates[0].get().as_bytes()).unwrap();
    assert_eq!((envelope.event_type.as_str(), envelope.v.as_deref()), ("message_new", Some("5.131")));
    assert!(envelope.secret.is_none() && envelope.event_id.is_some());

    reqwest::Client::new()
        .post(format!("{}/_sandbox/groups/1001/longpoll", sandbox.url()))
        .json(&json!({"fail": [1, 2, 3]}))
        .send()
        .await
        .unwrap();
    let wait = Duration::ZERO;
    assert!(matches!(client.long_poll_check(&session, &ts, wait).await.unwrap(), LongPollCheck::HistoryLost { .. }));
    assert!(matches!(client.long_poll_check(&session, &ts, wait).await.unwrap(), LongPollCheck::KeyExpired));
    assert!(matches!(client.long_poll_check(&session, &ts, wait).await.unwrap(), LongPollCheck::InformationLost));
}
