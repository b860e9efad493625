//! The whole manual callback sequence against the sandbox, with a tiny receiver over real HTTP.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use vk::{GroupId, ServerStatus};

use crate::helpers::{client, community, eventually, sandbox};

#[derive(Default)]
struct Receiver {
    code: Mutex<String>,
    /// Answer this instead of `ok` for the first N events.
    wrong_answers: Mutex<u32>,
    seen: Mutex<Vec<(Option<String>, serde_json::Value)>>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: String) -> String {
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let retry = headers.get("x-retry-counter").map(|v| v.to_str().unwrap().to_owned());
    r.seen.lock().unwrap().push((retry, json.clone()));
    if json["type"] == "confirmation" {
        return r.code.lock().unwrap().clone();
    }
    let mut wrong = r.wrong_answers.lock().unwrap();
    if *wrong > 0 {
        *wrong -= 1;
        return "OK".into(); // not exactly `ok`: VK counts it as a failure
    }
    "ok".into()
}

async fn start_receiver() -> (Arc<Receiver>, String) {
    let state = Arc::new(Receiver::default());
    let app = Router::new().route("/vk/callback", post(receive)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/vk/callback", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, url)
}

#[tokio::test]
async fn the_manual_callback_sequence_confirms_and_delivers_events() {
    let sandbox = sandbox().await;
    let api = client(&sandbox);
    let token = community(&sandbox, 1001);
    let group = GroupId(1001);
    let (receiver, url) = start_receiver().await;

    // 1. The code, stored (here: in the receiver) before the server is added.
    let code = api.groups_get_callback_confirmation_code(&token, group).await.unwrap();
    *receiver.code.lock().unwrap() = code.expose_secret().to_owned();
    // 2. Add the server with a secret.
    let secret = SecretString::from("Zq8mR2vT5xW9yB3nC7dF1gH4jK6lP0sA");
    let server_id = api.groups_add_callback_server(&token, group, &url, "vkhook", Some(&secret)).await.unwrap();
    // 3. Events and version.
    api.groups_set_callback_settings(&token, group, server_id, "5.199", &["wall_reply_new", "message_new"], &[])
        .await
        .unwrap();
    let settings = api.groups_get_callback_settings(&token, group, server_id).await.unwrap();
    assert_eq!(settings.api_version, "5.199");
    assert_eq!(settings.enabled(), vec!["message_new", "wall_reply_new"]);
    // 4. VK confirms: status becomes ok.
    let server = eventually(5, "status ok", || async {
        let servers = api.groups_get_callback_servers(&token, group).await.unwrap();
        servers.into_iter().find(|s| s.id == server_id && s.status == ServerStatus::Ok)
    })
    .await;
    assert_eq!(server.url, url);
    assert_eq!(server.secret_key.expose_secret(), secret.expose_secret());
    {
        let seen = receiver.seen.lock().unwrap();
        assert_eq!(seen[0].1["type"], "confirmation");
        assert_eq!(seen[0].1["secret"], secret.expose_secret());
    }

    // 5. A comment arrives with our secret and a 40-hex event id.
    let (comment_id, _) = sandbox.comment(1001, 2, "Привет, до скольки работаете?").unwrap();
    let event = eventually(5, "wall_reply_new", || async {
        receiver.seen.lock().unwrap().iter().find(|(_, b)| b["type"] == "wall_reply_new").map(|(_, b)| b.clone())
    })
    .await;
    assert_eq!(event["secret"], secret.expose_secret());
    assert_eq!(event["group_id"], 1001);
    assert_eq!(event["v"], "5.199");
    let event_id = event["event_id"].as_str().unwrap();
    assert_eq!(event_id.len(), 40);
    assert!(event_id.chars().all(|c| c.is_ascii_hexdigit()));
    let envelope = vk::parse(event.to_string().as_bytes()).unwrap();
    let vk::Event::WallReplyNew(c) = envelope.event().unwrap() else { panic!("{event}") };
    assert_eq!((c.id, c.from_id, c.text.as_str()), (comment_id, 2, "Привет, до скольки работаете?"));
}

#[tokio::test]
async fn an_answer_other_than_ok_is_retried_with_x_retry_counter() {
    let sandbox = sandbox().await;
    let api = client(&sandbox);
    let token = community(&sandbox, 1002);
    let group = GroupId(1002);
    let (receiver, url) = start_receiver().await;
    *receiver.wrong_answers.lock().unwrap() = 2;
    let code = api.groups_get_callback_confirmation_code(&token, group).await.unwrap();
    *receiver.code.lock().unwrap() = code.expose_secret().to_owned();
    let server_id = api.groups_add_callback_server(&token, group, &url, "vkhook", None).await.unwrap();
    api.groups_set_callback_settings(&token, group, server_id, "5.199", &["message_new"], &[]).await.unwrap();
    eventually(5, "status ok", || async {
        let servers = api.groups_get_callback_servers(&token, group).await.unwrap();
        servers.into_iter().find(|s| s.status == ServerStatus::Ok)
    })
    .await;

    sandbox.message(1002, 2, "Здравствуйте").unwrap();
    let attempts = eventually(5, "three attempts", || async {
        let seen = receiver.seen.lock().unwrap();
        let attempts: Vec<Option<String>> =
            seen.iter().filter(|(_, b)| b["type"] == "message_new").map(|(r, _)| r.clone()).collect();
        (attempts.len() == 3).then_some(attempts)
    })
    .await;
    assert_eq!(attempts, vec![None, Some("1".into()), Some("2".into())]);
    // The sandbox records an attempt once the receiver has answered it: wait for the third record.
    let outcomes = eventually(5, "three attempts recorded", || async {
        let outcomes: Vec<String> =
            sandbox.deliveries(1002).into_iter().filter(|d| d.event_type == "message_new").map(|d| d.outcome).collect();
        (outcomes.len() == 3).then_some(outcomes)
    })
    .await;
    assert_eq!(outcomes, vec!["failed", "failed", "ok"]);
    // The same event every time.
    let seen = receiver.seen.lock().unwrap();
    let ids: Vec<&serde_json::Value> =
        seen.iter().filter(|(_, b)| b["type"] == "message_new").map(|(_, b)| &b["event_id"]).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
}
