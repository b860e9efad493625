//! Callback API delivery over real HTTP, as VK does it: a `confirmation` request after a server is added or its
//! address edited; events to every confirmed server that has the event type switched on; only exactly `ok` with
//! HTTP 200 counts; retries on VK's schedule with `X-Retry-Counter`; `Retry-After` honoured on 410/429/503;
//! `remove` deletes the server; repeated failures pause delivery to that server. Every attempt is recorded.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::world::{random_hex, Delivery, ServerStatus};
use crate::Shared;

/// VK's retry delays after a failed delivery: 10 s, 3 min, 10 min, 30 min, 1 h.
pub const RETRY_SCHEDULE_SECS: [u64; 5] = [10, 180, 600, 1800, 3600];
/// `Retry-After` is honoured when below three hours.
pub const MAX_RETRY_AFTER_SECS: u64 = 3 * 3600;

/// An event bound for one server.
#[derive(Debug, Clone)]
struct Outgoing {
    group_id: i64,
    server_id: i64,
    event_type: String,
    event_id: String,
    body: String,
}

/// Sends `event_type` to every server of the community that should get it. `object` builds the event object for
/// a server's API version. Returns the event id.
pub fn emit(shared: &Shared, group_id: i64, event_type: &str, object: impl Fn(&str) -> Value) -> String {
    let event_id = random_hex(40);
    let mut violations = Vec::new();
    let outgoing: Vec<Outgoing> = {
        let world = shared.world();
        let Some(group) = world.group(group_id) else { return event_id };
        group
            .servers
            .iter()
            .filter(|s| s.status == ServerStatus::Ok && s.events.contains(event_type))
            .map(|s| {
                let mut body = json!({
                    "type": event_type,
                    "event_id": event_id,
                    "v": s.api_version,
                    "object": object(&s.api_version),
                    "group_id": group_id,
                });
                if !s.secret_key.is_empty() {
                    body["secret"] = json!(s.secret_key);
                }
                if let Err(errors) = crate::schema::schema().validate_callback(&body) {
                    violations.push(format!("{event_type}: {}", errors.join("; ")));
                }
                Outgoing {
                    group_id,
                    server_id: s.id,
                    event_type: event_type.to_owned(),
                    event_id: event_id.clone(),
                    body: body.to_string(),
                }
            })
            .collect()
    };
    if !violations.is_empty() {
        tracing::error!(?violations, "the sandbox built a callback body that VK's schema does not allow");
        shared.world().callback_violations.extend(violations);
    }
    for out in outgoing {
        tokio::spawn(deliver(shared.clone(), out));
    }
    event_id
}

/// Compares two API versions like `5.103` and `5.81`.
pub fn version_at_least(version: &str, min: (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= min
}

async fn deliver(shared: Shared, out: Outgoing) {
    let mut retry: u32 = 0;
    loop {
        // Wait while delivery to this server is paused; stop if the server is gone.
        let url = loop {
            let pause = {
                let world = shared.world();
                let Some(server) = world.group(out.group_id).and_then(|g| g.server(out.server_id)) else { return };
                match server.paused_until {
                    Some(until) if until > Instant::now() => Err(until),
                    _ => Ok(server.url.clone()),
                }
            };
            match pause {
                Ok(url) => break url,
                Err(until) => tokio::time::sleep_until(until.into()).await,
            }
        };
        let attempt = post(&shared, &url, &out.body, retry).await;
        let outcome = match &attempt {
            Ok((200, body, _)) if body == "ok" => "ok",
            Ok((_, body, _)) if body == "remove" => "removed",
            _ => "failed",
        };
        let gave_up = outcome == "failed" && retry as usize >= RETRY_SCHEDULE_SECS.len();
        {
            let mut world = shared.world();
            let at_ms = world.now_ms();
            let (status, answer) = match &attempt {
                Ok((status, body, _)) => (Some(*status), truncate(body)),
                Err(e) => (None, e.clone()),
            };
            world.record_delivery(Delivery {
                id: 0,
                group_id: out.group_id,
                server_id: out.server_id,
                url: url.clone(),
                event_type: out.event_type.clone(),
                event_id: out.event_id.clone(),
                retry_counter: retry,
                at_ms,
                http_status: status,
                answer,
                outcome: if gave_up { "gave_up".into() } else { outcome.into() },
                body: out.body.clone(),
            });
            if let Some(group) = world.group_mut(out.group_id) {
                match outcome {
                    "ok" => {
                        if let Some(s) = group.server_mut(out.server_id) {
                            s.consecutive_failures = 0;
                        }
                    }
                    "removed" => group.servers.retain(|s| s.id != out.server_id),
                    _ => {
                        if let Some(s) = group.server_mut(out.server_id) {
                            s.consecutive_failures += 1;
                            if s.consecutive_failures >= shared.cfg.pause_after_failures {
                                s.paused_until = Some(Instant::now() + shared.scaled(shared.cfg.pause_for));
                                s.consecutive_failures = 0;
                            }
                        }
                    }
                }
            }
        }
        if outcome != "failed" || gave_up {
            return;
        }
        let delay = match &attempt {
            Ok((status, _, Some(after))) if matches!(status, 410 | 429 | 503) && *after < MAX_RETRY_AFTER_SECS => {
                Duration::from_secs(*after)
            }
            _ => Duration::from_secs(RETRY_SCHEDULE_SECS[retry as usize]),
        };
        retry += 1;
        tokio::time::sleep(shared.scaled(delay)).await;
    }
}

/// Sends `confirmation` to a server just added or edited and sets its status from the answer.
pub fn start_confirmation(shared: &Shared, group_id: i64, server_id: i64) {
    let prepared = {
        let mut world = shared.world();
        let Some(group) = world.group_mut(group_id) else { return };
        let Some(server) = group.server_mut(server_id) else { return };
        server.generation += 1;
        server.status = ServerStatus::Wait;
        let mut body = json!({"type": "confirmation", "group_id": group_id, "event_id": ""});
        if !server.secret_key.is_empty() {
            body["secret"] = json!(server.secret_key);
        }
        (server.url.clone(), body.to_string(), server.generation)
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let (url, body, generation) = prepared;
        let attempt = post(&shared, &url, &body, 0).await;
        let mut world = shared.world();
        let at_ms = world.now_ms();
        let Some(group) = world.group_mut(group_id) else { return };
        let expected = group.confirmation_code.clone();
        let confirmed = matches!(&attempt, Ok((200, answer, _)) if *answer == expected);
        match group.server_mut(server_id) {
            Some(server) if server.generation == generation => {
                server.status = if confirmed { ServerStatus::Ok } else { ServerStatus::Failed };
                server.consecutive_failures = 0;
                server.paused_until = None;
            }
            _ => return, // deleted or changed again meanwhile: a newer confirmation decides
        }
        let (status, answer) = match &attempt {
            Ok((status, body, _)) => (Some(*status), truncate(body)),
            Err(e) => (None, e.clone()),
        };
        world.record_delivery(Delivery {
            id: 0,
            group_id,
            server_id,
            url,
            event_type: "confirmation".into(),
            event_id: String::new(),
            retry_counter: 0,
            at_ms,
            http_status: status,
            answer,
            outcome: if confirmed { "confirmed".into() } else { "failed".into() },
            body,
        });
    });
}

/// One POST: (status, body, Retry-After seconds) or the transport error in words.
async fn post(shared: &Shared, url: &str, body: &str, retry: u32) -> Result<(u16, String, Option<u64>), String> {
    let mut request = shared
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "VKCallbackAPI (vk-sandbox)")
        .body(body.to_owned());
    if retry > 0 {
        request = request.header("X-Retry-Counter", retry.to_string());
    }
    let response = request.send().await.map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let retry_after =
        response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let bytes = response.bytes().await.map_err(|e| describe(&e))?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned(), retry_after))
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection refused".into()
    } else {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("5.199", (5, 103)));
        assert!(version_at_least("5.103", (5, 103)));
        assert!(!version_at_least("5.81", (5, 103)));
        assert!(!version_at_least("5.99", (5, 103)));
    }
}
