//! The bot: the workers (`workers.rs`) claim runs of stored events with a lease (no transaction is held across a VK
//! call), one run per community at a time, in order; [`Bot::process_run`] applies the community's rules and
//! replies, then records the whole run's results in one group commit:
//!
//! - `wall_reply_new` → `wall.createComment(reply_to_comment, from_group, guid = f(event))`
//! - `message_new` → `messages.send(random_id = the community's counter, reserved with the event's claim)`
//!
//! The dedup keys (`dedup`) are fixed before the first send and the same on every attempt, so a crash between
//! sending and recording, a replay, or a second worker can never produce a second reply: VK returns the first one
//! (`guid` of `wall.createComment`, `random_id` of `messages.send`, both in
//! `vendor/vk-api-schema/{wall,messages}/methods.json`). The bot never answers the
//! community's own comments or messages, nor its own echo. When VK refuses the key, [`BotControl`] pauses the
//! community and its events wait until it is reconnected.

pub mod control;
pub mod rules;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vk::GroupId;

use vk::{CommentReply, Event, UserId};

use crate::credentials::{CommunityKey, Credentials};
use crate::dedup::{comment_guid, random_id_of};
use crate::hooks::{CrashPoint, Hooks};
use crate::inbox::Writer;
use crate::logging::Untrusted;
use crate::metrics::Metrics;
use crate::model::{EventResult, EventStatus, Reason, ReplyKind, ReplyStatus};
use crate::store::{now_ms, BotSettings, InboxRow, LeaseRenewal, ReplyRow, RuleRow, Settle, Settlement, Store};

pub use control::BotControl;

/// A paused community's events wait this long before they are looked at again (reconnecting wakes them at once).
const PARK_MS: i64 = 3600 * 1000;

/// Group chats have peer ids from 2·10⁹ (`peer_id` in `vendor/vk-api-schema/messages/objects.json`).
const CHAT_PEER_START: i64 = 2_000_000_000;

/// First names from `users.get`, kept for a while.
#[derive(Default)]
pub struct Names {
    cache: Mutex<HashMap<UserId, (String, Instant)>>,
}

impl Names {
    fn get(&self, user_id: UserId) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(&user_id).filter(|(_, at)| at.elapsed() < Duration::from_secs(3600)).map(|(n, _)| n.clone())
    }

    fn put(&self, user_id: UserId, name: String) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 50_000 {
            cache.clear();
        }
        cache.insert(user_id, (name, Instant::now()));
    }
}

/// How handling one event ended.
#[derive(Debug)]
enum Outcome {
    /// A reply went out.
    Replied(EventResult, ReplyRow),
    /// Nothing to do, and why.
    Ignored(Reason),
    /// The reply cannot be sent, and why (the result, the error's text).
    Failed(EventResult, String, ReplyRow),
    /// Try again later (error text).
    Retry(String),
    /// The community is paused: wait until it is reconnected.
    Park(String),
    /// A test crash point: leave the event as it is (held, lease running).
    Crashed,
}

/// Where a reply goes, what it answers and who wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Job {
    target: Target,
    text: String,
    author: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Comment { owner_id: i64, post_id: i64, reply_to: i64 },
    Message { peer_id: i64 },
}

impl Target {
    fn kind(self) -> ReplyKind {
        match self {
            Target::Comment { .. } => ReplyKind::Comment,
            Target::Message { .. } => ReplyKind::Message,
        }
    }
}

/// Why the bot will do nothing with `event`, if that is already clear from the event, the switches and the rules
/// (the receiver stores such an event finished, in the same commit: no worker touches it). `None`: a worker
/// decides — the same way, with the rules read again.
pub fn nothing_to_do(event: &Event, group_id: GroupId, bot: &BotSettings, rules: &[RuleRow]) -> Option<Reason> {
    match job_for(event, group_id, bot) {
        Err(reason) => Some(reason),
        Ok(job) => matches!(rules::decide(&job.text, rules, bot.default_reply.as_deref()), rules::Decision::Nothing)
            .then_some(Reason::NoRule),
    }
}

/// Whether an event asks for a reply under the community's switches, and where it would go. Pure.
fn job_for(event: &Event, group_id: GroupId, bot: &BotSettings) -> Result<Job, Reason> {
    match event {
        Event::WallReplyNew(c) => {
            if !bot.bot_comments {
                return Err(Reason::CommentsOff);
            }
            if c.from_id == group_id.as_owner() {
                return Err(Reason::Own);
            }
            if c.from_id <= 0 {
                return Err(Reason::FromCommunity);
            }
            Ok(Job {
                target: Target::Comment { owner_id: c.post_owner_id, post_id: c.post_id, reply_to: c.id },
                text: c.text.clone(),
                author: c.from_id,
            })
        }
        Event::MessageNew(m) => {
            let m = &m.message;
            if !bot.bot_messages {
                return Err(Reason::MessagesOff);
            }
            if m.out || m.from_id <= 0 {
                return Err(Reason::Own);
            }
            if m.peer_id >= CHAT_PEER_START {
                return Err(Reason::Chat);
            }
            Ok(Job { target: Target::Message { peer_id: m.peer_id }, text: m.text.clone(), author: m.from_id })
        }
        Event::MessageReply(_) => Err(Reason::Own),
        _ => Err(Reason::NoAnswerNeeded),
    }
}

/// A running lease renewal.
struct Renewal {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Renewal {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// How old the switches a worker decides with may be (`BotControl::decisive`): a run of events that need no VK call
/// is decided at the store's pace, not at one read per event, and a switch turned on on another instance is missed
/// by at most this much longer than with a read per event.
const SWITCHES_FRESH: Duration = Duration::from_millis(50);

/// The first rule whose keyword is in the text, else the default reply; `None` when nothing answers it.
fn choose_reply(job: &Job, rules: &[RuleRow], default: Option<&str>) -> Option<Reply> {
    match rules::decide(&job.text, rules, default) {
        rules::Decision::Rule(r) => {
            Some(Reply { rule_id: Some(r.id), rule_keywords: Some(r.keywords.clone()), template: r.reply.clone() })
        }
        rules::Decision::Default(d) => Some(Reply { rule_id: None, rule_keywords: None, template: d.to_owned() }),
        rules::Decision::Nothing => None,
    }
}

/// What a VK error means for one event.
enum Judged {
    Retry,
    Paused,
    Final,
}

/// What the bot settles on before calling VK.
struct Reply {
    rule_id: Option<i64>,
    rule_keywords: Option<String>,
    template: String,
}

/// The bot's settings: how often and how long to retry, and how long a claim holds.
#[derive(Debug, Clone)]
pub struct BotConfig {
    pub retry: vk::Backoff,
    pub max_attempts: i64,
    /// The lease a claim takes; [`Bot::process`] renews it every third of it while it works, so a slow VK call
    /// never lets a second worker take the same event and send again.
    pub lease: Duration,
}

#[derive(Clone)]
pub struct Bot {
    store: Store,
    /// Results and lease renewals go into the receiver's group commits.
    writer: Writer,
    credentials: Credentials,
    vk: vk::Client,
    control: BotControl,
    names: Arc<Names>,
    hooks: Arc<Hooks>,
    metrics: Arc<Metrics>,
    config: BotConfig,
}

impl Bot {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        writer: Writer,
        credentials: Credentials,
        vk: vk::Client,
        control: BotControl,
        hooks: Arc<Hooks>,
        metrics: Arc<Metrics>,
        config: BotConfig,
    ) -> Bot {
        Bot { store, writer, credentials, vk, control, names: Arc::default(), hooks, metrics, config }
    }

    pub fn control(&self) -> &BotControl {
        &self.control
    }

    /// Handles a claimed run of one community's events in order and records how each ended in one group commit
    /// (except those whose lease was lost meanwhile). When an event must wait (a retry, a paused community), the
    /// rest of the run is released unhandled, so the community's order holds. The leases are renewed for as long
    /// as the work takes.
    pub async fn process_run(&self, owner: &str, run: Vec<InboxRow>) {
        let Some(first) = run.first() else { return };
        let group_id = first.group_id;
        let renewing = self.keep_leases(owner, GroupId(group_id), run.iter().map(|r| r.id).collect());
        let mut settlements = Vec::with_capacity(run.len());
        let mut waiting = false;
        for row in &run {
            let (settle, reply) = if waiting {
                (Settle::Release, None)
            } else {
                let outcome = match self.handle(row).await {
                    Ok(o) => o,
                    Err(e) => Outcome::Retry(format!("internal: {e}")),
                };
                let Some((settle, reply)) = self.settle(row, outcome) else {
                    // A test crash point: the process "dies" here, nothing of the run is recorded.
                    renewing.stop().await;
                    return;
                };
                waiting = matches!(settle, Settle::Retry { .. });
                (settle, reply)
            };
            settlements.push(Settlement { id: row.id, owner: owner.to_owned(), settle, reply });
        }
        renewing.stop().await;
        match self.writer.settle(settlements).await {
            Ok(settled) => {
                for (row, _) in run.iter().zip(settled).filter(|(_, ok)| !ok) {
                    tracing::warn!(group_id = group_id, event_id = %Untrusted(&row.event_id), "event lease lost before recording");
                }
            }
            Err(e) => {
                tracing::error!(group_id = group_id, error = %e, events = run.len(), "could not record a run's outcomes")
            }
        }
    }

    /// Renews the claim on the run's events every third of the lease until stopped (or until none is ours any
    /// more). A renewal under way is never cancelled half-way: stopping waits for it.
    fn keep_leases(&self, owner: &str, group_id: GroupId, ids: Vec<i64>) -> Renewal {
        let (writer, owner) = (self.writer.clone(), owner.to_owned());
        let lease = self.config.lease;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(lease / 3) => {}
                    _ = &mut stopped => return,
                }
                let until = now_ms() + lease.as_millis() as i64;
                let renewal = LeaseRenewal { owner: owner.clone(), group_id: group_id.0, ids: ids.clone(), until };
                match writer.renew(renewal).await {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(group_id = group_id.0, error = %e, "could not renew a run's leases"),
                }
            }
        });
        Renewal { stop, task }
    }

    /// How an outcome leaves the event, and the reply to record with it; `None` for a test crash (nothing is
    /// recorded).
    fn settle(&self, row: &InboxRow, outcome: Outcome) -> Option<(Settle, Option<ReplyRow>)> {
        let finish = |status, result, error: Option<String>| Settle::Finish { status, result, error };
        let nothing = |reason| EventResult::Nothing { reason };
        Some(match outcome {
            Outcome::Replied(result, reply) => (finish(EventStatus::Done, result, None), Some(reply)),
            Outcome::Failed(result, error, reply) => (finish(EventStatus::Failed, result, Some(error)), Some(reply)),
            Outcome::Ignored(reason) => (finish(EventStatus::Ignored, nothing(reason), None), None),
            Outcome::Retry(error) if row.attempts >= self.config.max_attempts => {
                tracing::warn!(group_id = row.group_id, event_id = %Untrusted(&row.event_id), %error, "event given up after its last attempt");
                (finish(EventStatus::Dead, nothing(Reason::GaveUp), Some(error)), None)
            }
            Outcome::Retry(error) => {
                let delay = self.config.retry.delay(row.attempts.max(1) as u32 - 1);
                tracing::info!(group_id = row.group_id, event_id = %Untrusted(&row.event_id), %error, delay_ms = delay.as_millis() as u64, "reply postponed");
                (Settle::Retry { next_attempt_at: now_ms() + delay.as_millis() as i64, error }, None)
            }
            Outcome::Park(error) => (Settle::Retry { next_attempt_at: now_ms() + PARK_MS, error }, None),
            Outcome::Crashed => return None,
        })
    }

    async fn handle(&self, row: &InboxRow) -> anyhow::Result<Outcome> {
        let gid = row.group_id;
        let Some(event) = vk::parse(row.payload.as_bytes()).ok().and_then(|e| e.event().ok()) else {
            return Ok(Outcome::Ignored(Reason::Unreadable));
        };
        let decisive = self.control.decisive(GroupId(gid), SWITCHES_FRESH).await?;
        let Some(bot) = decisive.settings.clone() else {
            return Ok(Outcome::Ignored(Reason::UnknownCommunity));
        };
        let job = match job_for(&event, GroupId(gid), &bot) {
            Ok(job) => job,
            Err(reason) => return Ok(Outcome::Ignored(reason)),
        };
        if let Target::Comment { reply_to, .. } = job.target {
            if self.store.is_own_reply(GroupId(gid), ReplyKind::Comment, reply_to).await? {
                return Ok(Outcome::Ignored(Reason::Own));
            }
        }
        if bot.paused_reason.is_some() {
            return Ok(Outcome::Park("the community is paused until it is reconnected".into()));
        }
        let Some(reply) = choose_reply(&job, &decisive.rules, bot.default_reply.as_deref()) else {
            return Ok(Outcome::Ignored(Reason::NoRule));
        };
        let Some(key) = self.credentials.community_key(GroupId(gid)).await? else {
            // The key is dropped only together with pausing (see `BotControl`): if it is gone, either the bot was
            // paused after we read its settings (hold the event), or the community was disconnected.
            let paused = self.store.bot_settings(GroupId(gid)).await?.is_some_and(|b| b.paused_reason.is_some());
            return Ok(if paused {
                Outcome::Park("the community is paused until it is reconnected".into())
            } else {
                Outcome::Ignored(Reason::NoToken)
            });
        };
        let first_name = if reply.template.contains("{first_name}") {
            match self.first_name(&key, UserId(job.author)).await {
                Ok(name) => name,
                Err(e) => match self.judge(GroupId(gid), &e).await? {
                    Judged::Retry => return Ok(Outcome::Retry(e.to_string())),
                    Judged::Paused => return Ok(Outcome::Park(e.to_string())),
                    // No name: the reply goes out without it.
                    Judged::Final => None,
                },
            }
        } else {
            None
        };
        let text = rules::fill_reply(&reply.template, first_name.as_deref());
        let sent = match self.send(&key, row, job.target, &text).await {
            Some(sent) => sent,
            None => return Ok(Outcome::Retry("no random_id reserved for the message yet".into())),
        };
        if sent.is_ok() && self.hooks.fire(CrashPoint::BotAfterSend) {
            return Ok(Outcome::Crashed);
        }
        self.record_reply(row, &job, &reply, text, sent).await
    }

    /// What VK said to a reply: sent, to be retried, held (dead key), or refused for good; a sent or refused reply
    /// is recorded with its event's result, in the run's commit.
    async fn record_reply(
        &self,
        row: &InboxRow,
        job: &Job,
        reply: &Reply,
        text: String,
        sent: Result<i64, vk::Error>,
    ) -> anyhow::Result<Outcome> {
        let gid = row.group_id;
        let kind = job.target.kind();
        let (rule_id, rule) = (reply.rule_id, reply.rule_keywords.clone());
        let mut record = ReplyRow {
            id: 0,
            group_id: gid,
            inbox_id: row.id,
            kind,
            rule_id: reply.rule_id,
            text,
            vk_id: None,
            status: ReplyStatus::Sent,
            error: None,
            created_at: now_ms(),
        };
        let e = match sent {
            Ok(vk_id) => {
                record.vk_id = Some(vk_id);
                self.metrics.observe_reply(kind.as_str(), "sent");
                tracing::info!(group_id = gid, event_id = %Untrusted(&row.event_id), kind = kind.as_str(), vk_id, "bot replied");
                let reply = record.text.clone();
                return Ok(Outcome::Replied(
                    EventResult::Replied { kind, rule_id, rule, reply, vk_id: Some(vk_id) },
                    record,
                ));
            }
            Err(e) => e,
        };
        match self.judge(GroupId(gid), &e).await? {
            Judged::Retry => {
                self.metrics.observe_reply(kind.as_str(), "retry");
                Ok(Outcome::Retry(e.to_string()))
            }
            Judged::Paused => Ok(Outcome::Park(e.to_string())),
            Judged::Final => {
                let reason = Reason::from_final_vk_error(&e);
                record.status = ReplyStatus::Failed;
                record.error = Some(e.to_string());
                self.metrics.observe_reply(kind.as_str(), reason.as_str());
                let reply = record.text.clone();
                let result = EventResult::Failed { kind, rule_id, rule, reply, reason, error_code: e.code() };
                Ok(Outcome::Failed(result, e.to_string(), record))
            }
        }
    }

    /// Sends the reply with its dedup key: the comment's `guid` from the event, the message's `random_id` reserved
    /// with the event's claim (`None` when none is reserved: the next claim reserves it).
    async fn send(
        &self,
        key: &CommunityKey,
        row: &InboxRow,
        target: Target,
        text: &str,
    ) -> Option<Result<i64, vk::Error>> {
        let group_id = row.group_id;
        Some(match target {
            Target::Comment { owner_id, post_id, reply_to } => {
                let guid = comment_guid(GroupId(group_id), &row.event_id);
                let request = CommentReply {
                    owner_id,
                    post_id,
                    from_group: group_id,
                    reply_to_comment: Some(reply_to),
                    message: text,
                    guid: &guid,
                };
                self.vk.wall_create_comment(&key.token, &request).await.map(|c| c.comment_id)
            }
            Target::Message { peer_id } => {
                let random_id = random_id_of(row.reply_random_id?);
                self.vk.messages_send(&key.token, peer_id, random_id, text).await
            }
        })
    }

    /// What a VK error means for the event: try later (transient), hold it (the key is dead: the community is
    /// paused by the one owner of that decision), or final for this reply.
    async fn judge(&self, group_id: GroupId, e: &vk::Error) -> anyhow::Result<Judged> {
        if e.is_retryable() {
            return Ok(Judged::Retry);
        }
        if e.needs_reauth() {
            self.control.pause_for_reauth(group_id, e).await?;
            return Ok(Judged::Paused);
        }
        if e.is_wrong_token_kind() {
            tracing::error!(group_id = group_id.0, error = %e, "a VK method refused the community key's kind: a bug in vkhook");
        }
        Ok(Judged::Final)
    }

    async fn first_name(&self, key: &CommunityKey, user_id: UserId) -> Result<Option<String>, vk::Error> {
        if let Some(name) = self.names.get(user_id) {
            return Ok(Some(name));
        }
        let users = self.vk.users_get(&key.token, &[user_id]).await?;
        let name = users.into_iter().next().map(|u| u.first_name).filter(|n| !n.is_empty());
        if let Some(n) = &name {
            self.names.put(user_id, n.clone());
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;

    fn settings(comments: bool, messages: bool) -> BotSettings {
        BotSettings {
            group_id: 1001,
            bot_comments: comments,
            bot_messages: messages,
            default_reply: None,
            paused_reason: None,
        }
    }

    fn event(json: &str) -> Event {
        vk::parse(json.as_bytes()).unwrap().event().unwrap()
    }

    fn comment(from_id: i64) -> Event {
        event(&format!(
            r#"{{"type":"wall_reply_new","group_id":1001,"object":{{"id":5,"from_id":{from_id},"post_id":1,"owner_id":-1001,"post_owner_id":-1001,"text":"цена?","date":1}}}}"#
        ))
    }

    fn message(from_id: i64, peer_id: i64, out: u8) -> Event {
        event(&format!(
            r#"{{"type":"message_new","group_id":1001,"object":{{"message":{{"id":3,"peer_id":{peer_id},"from_id":{from_id},"text":"hi","out":{out}}}}}}}"#
        ))
    }

    #[test]
    fn who_gets_an_answer_and_where_it_goes() {
        let on = settings(true, true);
        let job = job_for(&comment(2), GroupId(1001), &on).unwrap();
        assert_eq!(job.target, Target::Comment { owner_id: -1001, post_id: 1, reply_to: 5 });
        assert_eq!((job.text.as_str(), job.author), ("цена?", 2));
        assert_eq!(job_for(&comment(-1001), GroupId(1001), &on), Err(Reason::Own), "the community's own comment");
        assert_eq!(job_for(&comment(-7), GroupId(1001), &on), Err(Reason::FromCommunity));
        assert_eq!(job_for(&comment(2), GroupId(1001), &settings(false, true)), Err(Reason::CommentsOff));
        assert_eq!(job_for(&message(2, 2, 0), GroupId(1001), &on).unwrap().target, Target::Message { peer_id: 2 });
        assert_eq!(job_for(&message(2, 2, 1), GroupId(1001), &on), Err(Reason::Own), "outgoing");
        assert_eq!(job_for(&message(2, 2_000_000_001, 0), GroupId(1001), &on), Err(Reason::Chat));
        assert_eq!(job_for(&message(2, 2, 0), GroupId(1001), &settings(true, false)), Err(Reason::MessagesOff));
        let join = event(r#"{"type":"group_join","group_id":1001,"object":{"user_id":2,"join_type":"join"}}"#);
        assert_eq!(job_for(&join, GroupId(1001), &on), Err(Reason::NoAnswerNeeded));
    }

    /// Иван comments on 1001's first post, as VK would deliver it; returns the stored event's id.
    async fn ivan_comments(kit: &Kit, text: &str) -> i64 {
        let (comment_id, post_id) = kit.sandbox.comment(1001, 2, text).unwrap();
        let payload = format!(
            r#"{{"type":"wall_reply_new","group_id":1001,"event_id":"{:040x}","object":{{"id":{comment_id},"from_id":2,"post_id":{post_id},"owner_id":-1001,"post_owner_id":-1001,"text":"{text}","date":1}}}}"#,
            comment_id
        );
        let event = crate::store::NewInboxEvent {
            group_id: 1001,
            event_id: format!("{comment_id:040x}"),
            event_type: "wall_reply_new".into(),
            payload,
            received_at: now_ms(),
            done_at_ingest: None,
            source: crate::model::Source::Callback,
            natural_key: None,
        };
        kit.store.insert_inbox_batch(&[event]).await.unwrap();
        kit.store.inbox_event_by_event_id(GroupId(1001), &format!("{comment_id:040x}")).await.unwrap().unwrap().id
    }

    #[tokio::test]
    async fn a_comment_is_answered_by_rule_once() {
        let kit = Kit::new().await;
        kit.give_key(GroupId(1001)).await;
        kit.store.set_bot_settings(GroupId(1001), true, true, None).await.unwrap();
        kit.store.add_rule(GroupId(1001), "цена", "Цены в меню.").await.unwrap();
        let id = ivan_comments(&kit, "Какая цена?").await;
        kit.run_bot_once().await;
        let row = kit.store.inbox_event(GroupId(1001), id).await.unwrap().unwrap();
        assert_eq!(row.status, EventStatus::Done);
        let replies: Vec<_> = kit.sandbox.comments(1001).into_iter().filter(|c| c.from_id == -1001).collect();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].text, "Цены в меню.");
    }

    /// A run of three comments whose first reply VK refuses for now (error 6): the first waits for its retry, the
    /// other two go back unhandled (their claim undone), and nothing overtakes the first. Then all three are
    /// answered once, in the order they were stored.
    #[tokio::test]
    async fn a_run_stops_at_an_event_that_must_wait_and_keeps_the_order() {
        let kit = Kit::new().await;
        kit.give_key(GroupId(1001)).await;
        kit.store.set_bot_settings(GroupId(1001), true, true, Some("Спасибо!")).await.unwrap();
        let ids =
            [ivan_comments(&kit, "раз").await, ivan_comments(&kit, "два").await, ivan_comments(&kit, "три").await];
        kit.sandbox.inject_fault(vk_sandbox::Fault {
            method: Some("wall.createComment".into()),
            error_code: Some(6),
            latency_ms: None,
            remaining: Some(1),
        });
        let now = now_ms();
        let runs = kit.store.claim_inbox_runs("unit", now, now + 60_000, 10, 100).await.unwrap();
        assert_eq!(runs.len(), 1, "one community, one run");
        assert_eq!(runs[0].iter().map(|r| r.id).collect::<Vec<_>>(), ids);
        kit.bot.process_run("unit", runs.into_iter().next().unwrap()).await;
        let store = &kit.store;
        let row = |id| async move { store.inbox_event(GroupId(1001), id).await.unwrap().unwrap() };
        let first = row(ids[0]).await;
        assert_eq!((first.status, first.attempts), (EventStatus::Pending, 1));
        assert!(first.last_error.unwrap().contains('6'));
        for id in &ids[1..] {
            let later = row(*id).await;
            assert_eq!((later.status, later.attempts, later.last_error), (EventStatus::Pending, 0, None));
        }
        assert_eq!(kit.sandbox.comments(1001).into_iter().filter(|c| c.from_id == -1001).count(), 0);
        // The retry is due within milliseconds (the kit's backoff): the workers go on until all are finished.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while kit.store.inbox_depth(Some(GroupId(1001))).await.unwrap() > 0 {
            assert!(std::time::Instant::now() < deadline, "not finished");
            kit.run_bot_once().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let answered: Vec<_> = kit
            .sandbox
            .comments(1001)
            .into_iter()
            .filter(|c| c.from_id == -1001)
            .filter_map(|c| c.reply_to_comment)
            .collect();
        let commented: Vec<_> = {
            let mut v = Vec::new();
            for id in ids {
                let payload = row(id).await.payload;
                let event = vk::parse(payload.as_bytes()).unwrap().event().unwrap();
                let Event::WallReplyNew(c) = event else { panic!("a comment") };
                v.push(c.id);
            }
            v
        };
        assert_eq!(answered, commented, "each answered once, in order");
    }

    #[tokio::test]
    async fn a_dead_key_pauses_the_community_and_holds_the_event() {
        let kit = Kit::new().await;
        kit.give_key(GroupId(1001)).await;
        kit.store.set_bot_settings(GroupId(1001), true, true, Some("Спасибо!")).await.unwrap();
        kit.revoke_key(GroupId(1001)).await;
        let id = ivan_comments(&kit, "Привет").await;
        kit.run_bot_once().await;
        let row = kit.store.inbox_event(GroupId(1001), id).await.unwrap().unwrap();
        assert_eq!(row.status, EventStatus::Pending, "held, not dropped");
        assert!(row.next_attempt_at > now_ms() + 60_000, "parked until reconnected");
        let bot = kit.store.bot_settings(GroupId(1001)).await.unwrap().unwrap();
        assert_eq!(bot.paused_reason, Some(crate::model::PauseReason::Reauth));
        assert!(kit.credentials.community_key(GroupId(1001)).await.unwrap().is_none(), "the key is dropped");
        // Reconnected: a new key, resume → answered once.
        kit.give_key(GroupId(1001)).await;
        kit.control.resume(GroupId(1001)).await.unwrap();
        kit.run_bot_once().await;
        assert_eq!(kit.store.inbox_event(GroupId(1001), id).await.unwrap().unwrap().status, EventStatus::Done);
        assert_eq!(kit.sandbox.comments(1001).into_iter().filter(|c| c.from_id == -1001).count(), 1);
    }

    #[tokio::test]
    async fn a_key_that_does_not_open_holds_the_event_and_pauses_nothing() {
        let kit = Kit::new().await;
        // A key sealed under a token key this instance lacks.
        let other = Arc::new(crate::vault::Vault::from_spec(&crate::vault::Vault::generate_spec("k2")).unwrap());
        let token = secrecy::SecretString::from(kit.sandbox.issue_community_token(1001, &["manage", "messages"]));
        let scopes = ["manage".to_owned(), "messages".to_owned()];
        Credentials::new(kit.store.clone(), other).save_community_key(GroupId(1001), &token, &scopes).await.unwrap();
        kit.store.set_bot_settings(GroupId(1001), true, true, Some("Спасибо!")).await.unwrap();
        let id = ivan_comments(&kit, "Привет").await;
        let err = kit.credentials.community_key(GroupId(1001)).await.err().expect("an error, not \"no key\"");
        assert!(matches!(err, crate::store::StoreError::Unreadable { key_id: Some(ref k), .. } if k == "k2"), "{err}");
        kit.run_bot_once().await;
        let row = kit.store.inbox_event(GroupId(1001), id).await.unwrap().unwrap();
        assert_eq!(row.status, EventStatus::Pending, "held for a retry, not ignored: {:?}", row.result);
        let bot = kit.store.bot_settings(GroupId(1001)).await.unwrap().unwrap();
        assert_eq!(bot.paused_reason, None, "nobody is asked to reconnect for our missing key");
        assert_eq!(kit.sandbox.comments(1001).into_iter().filter(|c| c.from_id == -1001).count(), 0);
    }

    #[tokio::test]
    async fn a_disconnected_community_is_not_answered() {
        let kit = Kit::new().await;
        kit.store.set_bot_settings(GroupId(1001), true, true, Some("Спасибо!")).await.unwrap();
        let id = ivan_comments(&kit, "Привет").await;
        kit.run_bot_once().await;
        let row = kit.store.inbox_event(GroupId(1001), id).await.unwrap().unwrap();
        assert_eq!(row.status, EventStatus::Ignored);
        assert!(row.result.unwrap().contains("no_token"));
    }
}
