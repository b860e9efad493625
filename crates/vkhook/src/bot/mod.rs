//! The bot: workers claim stored events with a lease (no transaction is held across a VK call), one event per
//! community at a time and in order, apply the community's rules, and reply:
//!
//! - `wall_reply_new` → `wall.createComment(reply_to_comment, from_group, guid = f(event))`
//! - `message_new` → `messages.send(random_id = f(event))`
//!
//! The dedup keys come from the event, so a crash between sending and recording, a replay, or a second worker
//! can never produce a second reply: VK returns the first one. The bot never answers the community's own comments
//! or messages, nor its own echo.

pub mod rules;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinSet;
use vk::{CommentReply, Event, UserId};

use crate::app::AppState;
use crate::store::{now_ms, InboxRow, ReplyRow, StoreResult};

/// Crash point for tests: the worker stops right after VK accepted the reply, before recording it.
pub const CRASH_AFTER_SEND: &str = "bot:after_send";
/// A paused community's events wait this long before they are looked at again (reconnecting wakes them at once).
const PARK_MS: i64 = 3600 * 1000;

/// «Сразу включить бота» was ticked: the bot answers comments and messages with the default reply.
pub async fn enable_on_connect(app: &AppState, group_id: i64, reply: Option<&str>) -> StoreResult<()> {
    let reply = reply.map(str::trim).filter(|r| !r.is_empty());
    app.store.set_bot_settings(group_id, true, true, reply).await
}

/// The comment `guid` for an event: the same event always gives the same guid.
pub fn comment_guid(group_id: i64, event_id: &str) -> String {
    let digest = Sha256::digest(format!("vkhook-guid:{group_id}:{event_id}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The message `random_id` for an event: a positive 31-bit number, the same for the same event.
pub fn message_random_id(group_id: i64, event_id: &str) -> i32 {
    let digest = Sha256::digest(format!("vkhook-random:{group_id}:{event_id}").as_bytes());
    let n = i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) & 0x7fff_ffff;
    n.max(1)
}

/// First names from `users.get`, kept for a while.
#[derive(Default)]
pub struct Names {
    cache: Mutex<HashMap<i64, (String, Instant)>>,
}

impl Names {
    fn get(&self, user_id: i64) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(&user_id).filter(|(_, at)| at.elapsed() < Duration::from_secs(3600)).map(|(n, _)| n.clone())
    }

    fn put(&self, user_id: i64, name: String) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 50_000 {
            cache.clear();
        }
        cache.insert(user_id, (name, Instant::now()));
    }
}

/// How handling one event ended.
enum Outcome {
    /// A reply went out (result JSON).
    Replied(serde_json::Value),
    /// Nothing to do, and why (result JSON).
    Ignored(serde_json::Value),
    /// The reply cannot be sent, and why (result JSON, error text).
    Failed(serde_json::Value, String),
    /// Try again later (error text).
    Retry(String),
    /// The community is paused: wait until it is reconnected.
    Park(String),
    /// A test crash point: leave the event as it is (held, lease running).
    Crashed,
}

fn why(reason: &str) -> serde_json::Value {
    json!({"action": "none", "reason": reason})
}

/// Runs the workers until `stop` turns true.
pub async fn run_workers(app: AppState, mut stop: watch::Receiver<bool>) {
    let owner = app.instance_id.clone();
    let timing = app.settings.timing.clone();
    let mut inflight: JoinSet<()> = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let room = timing.bot_concurrency.saturating_sub(inflight.len());
        let mut claimed = 0;
        if room > 0 {
            let now = now_ms();
            let lease_until = now + timing.bot_lease.as_millis() as i64;
            match app.store.claim_inbox_batch(&owner, now, lease_until, room as i64).await {
                Ok(rows) => {
                    claimed = rows.len();
                    for row in rows {
                        let app = app.clone();
                        let owner = owner.clone();
                        inflight.spawn(async move { process(&app, &owner, row).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "bot: could not claim events"),
            }
        }
        if claimed > 0 && inflight.len() < timing.bot_concurrency {
            continue;
        }
        tokio::select! {
            _ = app.bot_wakeup.notified() => {}
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            _ = tokio::time::sleep(timing.bot_poll) => {}
            _ = stop.changed() => {}
        }
    }
    while inflight.join_next().await.is_some() {}
    if let Err(e) = app.store.release_community_leases(&owner).await {
        tracing::warn!(error = %e, "could not release community leases");
    }
}

async fn process(app: &AppState, owner: &str, row: InboxRow) {
    let outcome = match handle(app, &row).await {
        Ok(o) => o,
        Err(e) => Outcome::Retry(format!("internal: {e}")),
    };
    let store = &app.store;
    let result = match outcome {
        Outcome::Replied(result) => store.finish_inbox_event(row.id, owner, "done", &result.to_string(), None).await,
        Outcome::Ignored(result) => store.finish_inbox_event(row.id, owner, "ignored", &result.to_string(), None).await,
        Outcome::Failed(result, error) => {
            store.finish_inbox_event(row.id, owner, "failed", &result.to_string(), Some(&error)).await
        }
        Outcome::Retry(error) if row.attempts >= app.settings.timing.bot_max_attempts => {
            tracing::warn!(group_id = row.group_id, event_id = %row.event_id, %error, "event given up after its last attempt");
            store.finish_inbox_event(row.id, owner, "dead", &why("gave_up").to_string(), Some(&error)).await
        }
        Outcome::Retry(error) => {
            let delay = app.settings.timing.bot_retry.delay(row.attempts.max(1) as u32 - 1);
            tracing::info!(group_id = row.group_id, event_id = %row.event_id, %error, delay_ms = delay.as_millis() as u64, "reply postponed");
            store.retry_inbox_event(row.id, owner, now_ms() + delay.as_millis() as i64, &error).await
        }
        Outcome::Park(error) => store.retry_inbox_event(row.id, owner, now_ms() + PARK_MS, &error).await,
        Outcome::Crashed => return,
    };
    match result {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(group_id = row.group_id, event_id = %row.event_id, "event lease lost before recording")
        }
        Err(e) => tracing::error!(group_id = row.group_id, error = %e, "could not record an event's outcome"),
    }
}

/// Where a reply goes.
enum Target {
    Comment { owner_id: i64, post_id: i64, reply_to: i64 },
    Message { peer_id: i64 },
}

async fn handle(app: &AppState, row: &InboxRow) -> anyhow::Result<Outcome> {
    let gid = row.group_id;
    let Ok(envelope) = vk::parse(row.payload.as_bytes()) else { return Ok(Outcome::Ignored(why("unreadable"))) };
    let Ok(event) = envelope.event() else { return Ok(Outcome::Ignored(why("unreadable"))) };
    let Some(bot) = app.store.bot_settings(gid).await? else { return Ok(Outcome::Ignored(why("unknown_community"))) };
    let (target, text, author) = match &event {
        Event::WallReplyNew(c) => {
            if !bot.bot_comments {
                return Ok(Outcome::Ignored(why("comments_off")));
            }
            if c.from_id == -gid || app.store.is_own_reply(gid, "comment", c.id).await? {
                return Ok(Outcome::Ignored(why("own")));
            }
            if c.from_id <= 0 {
                return Ok(Outcome::Ignored(why("from_community")));
            }
            (
                Target::Comment { owner_id: c.post_owner_id, post_id: c.post_id, reply_to: c.id },
                c.text.clone(),
                c.from_id,
            )
        }
        Event::MessageNew(m) => {
            let m = &m.message;
            if !bot.bot_messages {
                return Ok(Outcome::Ignored(why("messages_off")));
            }
            if m.out || m.from_id <= 0 {
                return Ok(Outcome::Ignored(why("own")));
            }
            if m.peer_id >= 2_000_000_000 {
                return Ok(Outcome::Ignored(why("chat")));
            }
            (Target::Message { peer_id: m.peer_id }, m.text.clone(), m.from_id)
        }
        Event::MessageReply(_) => return Ok(Outcome::Ignored(why("own"))),
        _ => return Ok(Outcome::Ignored(why("no_answer_needed"))),
    };
    if bot.paused_reason.is_some() {
        return Ok(Outcome::Park("the community is paused until it is reconnected".into()));
    }
    let rules = app.store.rules(gid).await?;
    let (rule_id, rule_keywords, template) = match rules::decide(&text, &rules, bot.default_reply.as_deref()) {
        rules::Decision::Rule(r) => (Some(r.id), Some(r.keywords.clone()), r.reply.clone()),
        rules::Decision::Default(d) => (None, None, d.to_owned()),
        rules::Decision::Nothing => return Ok(Outcome::Ignored(why("no_rule"))),
    };
    let Some((token, _)) = crate::connect::community_token(app, gid).await? else {
        return Ok(Outcome::Ignored(why("no_token")));
    };
    let first_name = if template.contains("{first_name}") {
        match first_name(app, &token, author).await {
            Ok(name) => name,
            Err(e) if e.is_retryable() => return Ok(Outcome::Retry(e.to_string())),
            Err(e) if e.needs_reauth() => return pause(app, gid, &e).await,
            Err(_) => None,
        }
    } else {
        None
    };
    let reply = rules::fill_reply(&template, first_name.as_deref());
    let (kind, sent) = match target {
        Target::Comment { owner_id, post_id, reply_to } => {
            let guid = comment_guid(gid, &row.event_id);
            let request = CommentReply {
                owner_id,
                post_id,
                from_group: gid,
                reply_to_comment: Some(reply_to),
                message: &reply,
                guid: &guid,
            };
            ("comment", app.vk.wall_create_comment(&token, &request).await.map(|c| c.comment_id))
        }
        Target::Message { peer_id } => {
            let random_id = message_random_id(gid, &row.event_id);
            ("message", app.vk.messages_send(&token, peer_id, random_id, &reply).await)
        }
    };
    if sent.is_ok() && app.hooks.fire(CRASH_AFTER_SEND) {
        return Ok(Outcome::Crashed);
    }
    let mut result =
        json!({"action": "replied", "kind": kind, "rule_id": rule_id, "rule": rule_keywords, "reply": reply});
    // What was sent (or not), for the log and the health card.
    let record = |vk_id: Option<i64>, error: Option<String>| ReplyRow {
        id: 0,
        group_id: gid,
        inbox_id: row.id,
        kind: kind.into(),
        rule_id,
        text: reply.clone(),
        vk_id,
        status: if error.is_none() { "sent" } else { "failed" }.into(),
        error,
        created_at: now_ms(),
    };
    match sent {
        Ok(vk_id) => {
            result["vk_id"] = json!(vk_id);
            app.store.insert_reply(&record(Some(vk_id), None)).await?;
            app.metrics.observe_reply(kind, "sent");
            tracing::info!(group_id = gid, event_id = %row.event_id, kind, vk_id, "bot replied");
            Ok(Outcome::Replied(result))
        }
        Err(e) if e.is_retryable() => {
            app.metrics.observe_reply(kind, "retry");
            Ok(Outcome::Retry(e.to_string()))
        }
        Err(e) if e.needs_reauth() => pause(app, gid, &e).await,
        Err(e) => {
            let reason = match e.code() {
                Some(vk::code::MESSAGES_DENY_SEND | vk::code::MESSAGES_PRIVACY | vk::code::MESSAGES_USER_BLOCKED) => {
                    "messages_forbidden"
                }
                Some(vk::code::WALL_ADD_REPLY_DENIED | vk::code::WALL_REPLIES_DENIED) => "comments_closed",
                Some(vk::code::WALL_TOO_MANY_REPLIES) => "too_many_replies",
                _ => "vk_error",
            };
            app.store.insert_reply(&record(None, Some(e.to_string()))).await?;
            app.metrics.observe_reply(kind, reason);
            result["action"] = json!("failed");
            result["reason"] = json!(reason);
            result["error_code"] = json!(e.code());
            Ok(Outcome::Failed(result, e.to_string()))
        }
    }
}

/// VK no longer accepts the community's token: pause the bot and show «нужно переподключить».
async fn pause(app: &AppState, group_id: i64, e: &vk::Error) -> anyhow::Result<Outcome> {
    tracing::warn!(group_id, error = %e, "community token rejected: bot paused until reconnected");
    app.store.set_bot_paused(group_id, Some("reauth")).await?;
    app.store.mark_needs_reauth(group_id, "reauth").await?;
    app.store.log_community(group_id, "paused", "reauth").await?;
    Ok(Outcome::Park(e.to_string()))
}

/// Resumes a paused bot and releases the events it held back (after reconnecting).
pub async fn resume(app: &AppState, group_id: i64) -> StoreResult<()> {
    let was_paused = app.store.bot_settings(group_id).await?.is_some_and(|b| b.paused_reason.is_some());
    app.store.set_bot_paused(group_id, None).await?;
    if was_paused {
        app.store.log_community(group_id, "resumed", "reconnected").await?;
    }
    app.store.wake_community_events(group_id).await?;
    app.bot_wakeup.notify_one();
    Ok(())
}

async fn first_name(app: &AppState, token: &vk::AccessToken, user_id: i64) -> Result<Option<String>, vk::Error> {
    if let Some(name) = app.names.get(user_id) {
        return Ok(Some(name));
    }
    let users = app.vk.users_get(token, &[UserId(user_id)]).await?;
    let name = users.into_iter().next().map(|u| u.first_name).filter(|n| !n.is_empty());
    if let Some(n) = &name {
        app.names.put(user_id, n.clone());
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keys_are_stable_per_event_and_differ_between_events() {
        assert_eq!(comment_guid(1001, "abc"), comment_guid(1001, "abc"));
        assert_ne!(comment_guid(1001, "abc"), comment_guid(1001, "abd"));
        assert_ne!(comment_guid(1001, "abc"), comment_guid(1002, "abc"));
        assert_eq!(comment_guid(1, "x").len(), 32);
        let r = message_random_id(1001, "abc");
        assert_eq!(r, message_random_id(1001, "abc"));
        assert!(r > 0);
        assert_ne!(r, message_random_id(1001, "abd"));
    }
}
