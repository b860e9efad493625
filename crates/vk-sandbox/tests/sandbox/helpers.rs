use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use vk_sandbox::{Sandbox, SandboxConfig};

pub async fn sandbox() -> Sandbox {
    sandbox_with(SandboxConfig { time_factor: 0.001, ..Default::default() }).await
}

pub async fn sandbox_with(cfg: SandboxConfig) -> Sandbox {
    Sandbox::start(cfg).await.expect("sandbox starts")
}

/// A raw API call as any HTTP client would make it: form-encoded POST with `v=5.199`.
pub async fn call(sandbox: &Sandbox, method: &str, token: &str, params: &[(&str, &str)]) -> Value {
    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.push(("access_token", token));
    if !params.iter().any(|(k, _)| *k == "v") {
        form.push(("v", "5.199"));
    }
    reqwest::Client::new()
        .post(format!("{}/method/{method}", sandbox.api_url()))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The error code of an answer, or `None` for a success.
pub fn error_code(answer: &Value) -> Option<i64> {
    answer.get("error").map(|e| e["error_code"].as_i64().unwrap())
}

pub fn error_msg(answer: &Value) -> String {
    answer["error"]["error_msg"].as_str().unwrap_or_default().to_owned()
}

pub fn manage_token(sandbox: &Sandbox, group_id: i64) -> String {
    sandbox.issue_community_token(group_id, &["manage", "messages"])
}

pub use vk_sandbox::testing::eventually;

/// What a test receiver answers.
#[derive(Clone, Default)]
pub enum Answer {
    /// The confirmation code for `confirmation`, `ok` for events.
    #[default]
    Good,
    /// This status and body (and `Retry-After` if given) for everything but `confirmation`.
    Events(StatusCode, &'static str, Option<u64>),
    /// This status and body with `Retry-After` exactly as given (an HTTP date), for everything but `confirmation`.
    EventsRetryAt(StatusCode, &'static str, String),
    /// `version <this>` to events in any other version, `ok` to those in it.
    WantsVersion(&'static str),
    /// This status and body for `confirmation` too.
    Everything(StatusCode, String),
}

pub struct Receiver {
    pub url: String,
    pub code: Arc<Mutex<String>>,
    pub answer: Arc<Mutex<Answer>>,
    pub seen: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

impl Receiver {
    pub fn bodies(&self, event_type: &str) -> Vec<Value> {
        self.seen.lock().unwrap().iter().filter(|(_, b)| b["type"] == event_type).map(|(_, b)| b.clone()).collect()
    }
}

type ReceiverState = (Arc<Mutex<String>>, Arc<Mutex<Answer>>, Arc<Mutex<Vec<(HeaderMap, Value)>>>);

pub async fn receiver() -> Receiver {
    async fn handle(
        State((code, answer, seen)): State<ReceiverState>,
        headers: HeaderMap,
        body: String,
    ) -> impl IntoResponse {
        let json: Value = serde_json::from_str(&body).unwrap();
        seen.lock().unwrap().push((headers, json.clone()));
        let answer = answer.lock().unwrap().clone();
        match answer {
            Answer::Everything(status, body) => (status, HeaderMap::new(), body),
            _ if json["type"] == "confirmation" => (StatusCode::OK, HeaderMap::new(), code.lock().unwrap().clone()),
            Answer::Good => (StatusCode::OK, HeaderMap::new(), "ok".to_owned()),
            Answer::WantsVersion(v) if json["v"] == v => (StatusCode::OK, HeaderMap::new(), "ok".to_owned()),
            Answer::WantsVersion(v) => (StatusCode::OK, HeaderMap::new(), format!("version {v}")),
            Answer::Events(status, body, retry_after) => {
                let mut headers = HeaderMap::new();
                if let Some(s) = retry_after {
                    headers.insert("retry-after", s.to_string().parse().unwrap());
                }
                (status, headers, body.to_owned())
            }
            Answer::EventsRetryAt(status, body, at) => {
                let mut headers = HeaderMap::new();
                headers.insert("retry-after", at.parse().unwrap());
                (status, headers, body.to_owned())
            }
        }
    }
    let state: ReceiverState = Default::default();
    let app = Router::new().route("/cb", post(handle)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, code: state.0, answer: state.1, seen: state.2 }
}

/// Adds a server for `receiver` the right way (code first), switches `events` on with 5.199, waits for `ok`.
pub async fn connected_server(sandbox: &Sandbox, group_id: i64, receiver: &Receiver, events: &[&str]) -> (String, i64) {
    let token = manage_token(sandbox, group_id);
    let gid = group_id.to_string();
    let code = call(sandbox, "groups.getCallbackConfirmationCode", &token, &[("group_id", &gid)]).await;
    *receiver.code.lock().unwrap() = code["response"]["code"].as_str().unwrap().to_owned();
    let added = call(
        sandbox,
        "groups.addCallbackServer",
        &token,
        &[("group_id", &gid), ("url", &receiver.url), ("title", "test"), ("secret_key", "s3cr3t")],
    )
    .await;
    let server_id = added["response"]["server_id"].as_i64().unwrap_or_else(|| panic!("{added}"));
    let sid = server_id.to_string();
    let mut params = vec![("group_id", gid.as_str()), ("server_id", sid.as_str()), ("api_version", "5.199")];
    for e in events {
        params.push((e, "1"));
    }
    let set = call(sandbox, "groups.setCallbackSettings", &token, &params).await;
    assert_eq!(set["response"], 1, "{set}");
    eventually(5, "server ok", || async {
        sandbox
            .servers(group_id)
            .iter()
            .find(|s| s.id == server_id && s.status == vk_sandbox::ServerStatus::Ok)
            .cloned()
    })
    .await;
    (token, server_id)
}
