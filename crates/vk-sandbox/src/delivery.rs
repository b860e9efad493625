//! Callback API delivery over real HTTP, as VK does it: a `confirmation` request after a server is added or its
//! address edited; events to every confirmed server that has the event type switched on; only exactly `ok` with
//! HTTP 200 counts; retries on VK's schedule with `X-Retry-Counter`; `Retry-After` (seconds or an HTTP date)
//! honoured on 410/429/503 when under three hours, and a retry may come later than asked, never earlier ("the
//! actual time … may be longer than the specified time", https://dev.vk.com/ru/api/callback/getting-started);
//! `remove` deletes the server; `version 5.x` switches the server to that API version; repeated failures pause
//! delivery to that server. Every attempt is recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use serde_json::{json, Value};

use crate::world::{random_hex, Delivery, ServerStatus};
use crate::Shared;

/// VK's retry delays after a failed delivery: 10 s, 3 min, 10 min, 30 min, 1 h.
pub const RETRY_SCHEDULE_SECS: [u64; 5] = [10, 180, 600, 1800, 3600];
/// `Retry-After` is honoured when below three hours.
pub const MAX_RETRY_AFTER_SECS: u64 = 3 * 3600;

/// Builds an event's object for a server's API version.
type ObjectFor = Arc<dyn Fn(&str) -> Value + Send + Sync>;

/// An event bound for one server.
#[derive(Clone)]
struct Outgoing {
    group_id: i64,
    server_id: i64,
    event_type: String,
    event_id: String,
    body: String,
    object: ObjectFor,
}

/// How many times one event follows a `version 5.x` answer before such an answer counts as a failure.
const MAX_VERSION_SWITCHES: u32 = 3;

/// The body of an event for a server with `api_version` and `secret_key`.
fn event_body(event_type: &str, event_id: &str, group_id: i64, version: &str, secret: &str, object: Value) -> Value {
    let mut body = json!({
        "type": event_type,
        "event_id": event_id,
        "v": version,
        "object": object,
        "group_id": group_id,
    });
    if !secret.is_empty() {
        body["secret"] = json!(secret);
    }
    body
}

/// Sends `event_type` to every server of the community that should get it. `object` builds the event object for
/// a server's API version. Returns the event id.
pub fn emit(
    shared: &Shared,
    group_id: i64,
    event_type: &str,
    object: impl Fn(&str) -> Value + Send + Sync + 'static,
) -> String {
    let object: ObjectFor = Arc::new(object);
    let event_id = random_hex(40);
    let mut violations = Vec::new();
    let (outgoing, polled) = {
        let mut world = shared.world();
        let own_id = world.long_poll_own_event_ids.then(|| random_hex(40));
        let Some(group) = world.group_mut(group_id) else { return event_id };
        // Bots Long Poll: the same object for its API version, with `event_id` and without `secret`.
        let polled = group.long_poll.push(event_type, |version| {
            let id = own_id.as_deref().unwrap_or(&event_id);
            event_body(event_type, id, group_id, version, "", object(version))
        });
        let outgoing = group
            .servers
            .iter()
            .filter(|s| s.status == ServerStatus::Ok && s.events.contains(event_type))
            .map(|s| {
                let body =
                    event_body(event_type, &event_id, group_id, &s.api_version, &s.secret_key, object(&s.api_version));
                if let Err(errors) = crate::schema::schema().validate_callback(&body) {
                    violations.push(format!("{event_type}: {}", errors.join("; ")));
                }
                Outgoing {
                    group_id,
                    server_id: s.id,
                    event_type: event_type.to_owned(),
                    event_id: event_id.clone(),
                    body: body.to_string(),
                    object: object.clone(),
                }
            })
            .collect::<Vec<Outgoing>>();
        (outgoing, polled)
    };
    if polled {
        shared.long_poll_wakeup.notify_waiters();
    }
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

async fn deliver(shared: Shared, mut out: Outgoing) {
    let mut retry: u32 = 0;
    let mut version_switches: u32 = 0;
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
        let asked_version = match &attempt {
            Ok((200, body, _)) if version_switches < MAX_VERSION_SWITCHES => asked_version(body),
            _ => None,
        };
        let outcome = match &attempt {
            Ok((200, body, _)) if body == "ok" => "ok",
            Ok((_, body, _)) if body == "remove" => "removed",
            _ if asked_version.is_some() => "version",
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
                    "version" => {
                        // The server now speaks that version: this event and every later one come in it.
                        if let (Some(s), Some(v)) = (group.server_mut(out.server_id), &asked_version) {
                            s.api_version = v.clone();
                            let object = (out.object)(v);
                            let body =
                                event_body(&out.event_type, &out.event_id, out.group_id, v, &s.secret_key, object);
                            out.body = body.to_string();
                        }
                    }
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
        if outcome == "version" {
            version_switches += 1;
            continue;
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
        tokio::time::sleep(shared.scaled(later_than(delay, shared.cfg.retry_lateness))).await;
    }
}

/// `delay`, or up to `lateness` of it longer — never shorter.
fn later_than(delay: Duration, lateness: f64) -> Duration {
    if lateness <= 0.0 {
        return delay;
    }
    delay.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..lateness))
}

/// The version a `version 5.x` answer asks for, if it is one VK would accept (5.81 and later).
fn asked_version(answer: &str) -> Option<String> {
    let v = answer.strip_prefix("version ")?.trim();
    let (major, minor) = v.split_once('.')?;
    let valid = major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok() && version_at_least(v, (5, 81));
    valid.then(|| v.to_owned())
}

/// `Retry-After` in seconds, from either of its forms (delay-seconds or an HTTP date, RFC 9110 §10.2.3); a date in
/// the past is "now".
fn retry_after_secs(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let left = at.duration_since(std::time::SystemTime::now()).unwrap_or_default();
    // A date has whole seconds: round up, so the retry is never earlier than the date.
    Some(left.as_secs() + u64::from(left.subsec_nanos() > 0))
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
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(retry_after_secs);
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
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(retry_after_secs("120"), Some(120));
        assert_eq!(retry_after_secs(" 7 "), Some(7));
        let in_a_minute = std::time::SystemTime::now() + Duration::from_secs(60);
        let secs = retry_after_secs(&httpdate::fmt_http_date(in_a_minute)).unwrap();
        assert!((59..=61).contains(&secs), "{secs}");
        assert_eq!(retry_after_secs("Fri, 31 Dec 1999 23:59:59 GMT"), Some(0), "a past date is now");
        assert_eq!(retry_after_secs("soon"), None);
    }

    #[test]
    fn a_retry_is_never_earlier_than_asked() {
        let asked = Duration::from_secs(10);
        for _ in 0..1000 {
            let d = later_than(asked, 0.2);
            assert!(d >= asked && d <= asked.mul_f64(1.2), "{d:?}");
        }
        assert_eq!(later_than(asked, 0.0), asked);
    }

    #[test]
    fn a_version_answer_names_a_version_vk_accepts() {
        assert_eq!(asked_version("version 5.199").as_deref(), Some("5.199"));
        assert_eq!(asked_version("version 5.80"), None, "switched off");
        assert_eq!(asked_version("version five"), None);
        assert_eq!(asked_version("ok"), None);
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("5.199", (5, 103)));
        assert!(version_at_least("5.103", (5, 103)));
        assert!(!version_at_least("5.81", (5, 103)));
        assert!(!version_at_least("5.99", (5, 103)));
    }
}
