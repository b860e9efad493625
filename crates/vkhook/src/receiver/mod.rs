//! The Callback API endpoint's decisions, without the web: [`Receiver::accept`] turns a request body into a
//! [`Verdict`]; `http/callback.rs` turns the verdict into a status code and a body.
//!
//! - Parse (pure), find the community, check the secret in constant time, answer `confirmation` with the stored
//!   code, and hand every other event to the [`Inbox`], which stores it durably before the verdict says `ok`.
//! - Secrets come from [`Credentials`], cached; a mismatch re-reads the store before refusing, so a changed secret
//!   is never refused stale. A stored secret that does not open refuses everything (never "no secret needed").
//! - Only the Callback protocol lives here; storing (dedup, the decision at ingest, the group commit, the wake-ups)
//!   is the inbox's, the same for every source.
//! - No session, no templates, no VK calls here.
//!
//! VK's rules (https://dev.vk.com/ru/api/callback/getting-started): the body carries `type`, `event_id`, `v`,
//! `object`, `group_id` and `secret`; `confirmation` is answered with the code as plain text; every other event
//! with exactly `ok`; `remove` makes VK delete the server; anything else is a failure VK retries.

use std::sync::Arc;
use vk::GroupId;

use secrecy::SecretString;

use crate::credentials::{CallbackSecrets, Credentials};
use crate::hooks::{CrashPoint, Hooks};
use crate::inbox::{Inbox, Incoming};
use crate::logging::Untrusted;
use crate::model::Source;
use crate::store::{now_ms, Inserted};

/// Largest request body VK may send us.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Longest `event_id` we store (VK's are 40 hex characters).
const MAX_EVENT_ID: usize = 128;

/// What to answer VK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stored durably (or already stored: VK's retry): answer exactly `ok`.
    Stored(Inserted),
    /// The confirmation code, as plain text.
    Confirmation(String),
    /// The community is disconnected here: `remove` makes VK delete the server.
    Remove,
    /// Not a callback body (the parser's words).
    Malformed(String),
    /// No such community here.
    UnknownCommunity,
    /// A confirmation request, and we hold no code.
    NoCode,
    WrongSecret,
    /// The store cannot commit, or a stored secret does not open: VK should retry later.
    Unavailable,
    /// «Проверить путь»'s synthetic event, with the right secret: answered `ok`, never stored, so neither the bot
    /// nor forwarding sees it and it is not counted as a VK event.
    PathChecked,
}

/// The `type` of «Проверить путь»'s synthetic event (not one of VK's).
pub use crate::urls::PATH_CHECK_TYPE;

impl Verdict {
    /// The `result` label in `/metrics`: `stored` means a new event was written, so "ok" is never ambiguous.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Stored(Inserted::New) => "stored",
            Verdict::Stored(Inserted::Duplicate) => "duplicate",
            Verdict::Confirmation(_) => "confirmation",
            Verdict::Remove => "remove",
            Verdict::Malformed(_) => "malformed",
            Verdict::UnknownCommunity => "unknown_community",
            Verdict::NoCode => "no_code",
            Verdict::WrongSecret => "wrong_secret",
            Verdict::Unavailable => "unavailable",
            Verdict::PathChecked => "path_check",
        }
    }
}

/// What the receiver needs.
#[derive(Clone)]
pub struct Receiver {
    credentials: Credentials,
    inbox: Inbox,
    hooks: Arc<Hooks>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretCheck {
    Current,
    Previous,
    NotRequired,
    Wrong,
}

fn matches(secret: Option<&SecretString>, supplied: &[u8]) -> bool {
    secret.is_some_and(|s| vk::callback::secret_eq(s, supplied))
}

/// The supplied secret against the stored ones. "Not required" only when nothing was ever stored.
fn check_secret(entry: &CallbackSecrets, supplied: Option<&[u8]>) -> SecretCheck {
    if entry.none_required() {
        return SecretCheck::NotRequired;
    }
    let supplied = supplied.unwrap_or_default();
    if matches(entry.secret.as_ref(), supplied) {
        SecretCheck::Current
    } else if matches(entry.previous_in_window(now_ms()), supplied) {
        SecretCheck::Previous
    } else {
        SecretCheck::Wrong
    }
}

impl Receiver {
    pub fn new(credentials: Credentials, inbox: Inbox, hooks: Arc<Hooks>) -> Receiver {
        Receiver { credentials, inbox, hooks }
    }

    /// The verdict on one request body, and the event type as a metric label.
    pub async fn accept(&self, body: &[u8]) -> (Verdict, &'static str) {
        let envelope = match vk::parse(body) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %Untrusted(&e.0), "malformed callback body");
                return (Verdict::Malformed(e.0), "malformed");
            }
        };
        let kind = crate::metrics::event_label(&envelope.event_type);
        (self.decide(&envelope).await, kind)
    }

    async fn decide(&self, envelope: &vk::Envelope) -> Verdict {
        let Some(group_id) = envelope.group_id else { return Verdict::Malformed("missing field \"group_id\"".into()) };
        let (secrets, check) = match self.secrets(GroupId(group_id), envelope.secret_bytes()).await {
            Ok(found) => found,
            Err(verdict) => return verdict,
        };
        if secrets.disconnected {
            // Disconnected here but VK still sends: `remove` makes VK delete the server.
            tracing::info!(group_id = group_id, "callback for a disconnected community: answering remove");
            return Verdict::Remove;
        }
        if let Some(unreadable) = &secrets.unreadable {
            tracing::error!(
                group_id,
                column = unreadable.column,
                key_id = ?unreadable.key_id,
                "callback refused: the community's secret does not open with the configured keys"
            );
            return Verdict::Unavailable;
        }
        if check == SecretCheck::Wrong {
            tracing::warn!(group_id = group_id, event_type = %Untrusted(&envelope.event_type), "callback with a wrong secret refused");
            return Verdict::WrongSecret;
        }
        if envelope.is_confirmation() {
            return self.confirm(GroupId(group_id)).await;
        }
        if envelope.event_type == PATH_CHECK_TYPE {
            return Verdict::PathChecked;
        }
        let event_id = match envelope.event_id.as_deref() {
            Some(id) if !id.is_empty() && id.len() <= MAX_EVENT_ID => id.to_owned(),
            _ => return Verdict::Malformed("missing field \"event_id\"".into()),
        };
        if self.hooks.fire(CrashPoint::ReceiverFailNextEvent) {
            return Verdict::Unavailable;
        }
        self.store(envelope, GroupId(group_id), event_id, &secrets).await
    }

    /// The community's secrets and how the supplied one compares; re-read once before refusing, in case they
    /// changed (another instance, a new setup).
    async fn secrets(
        &self,
        group_id: GroupId,
        supplied: Option<&[u8]>,
    ) -> Result<(Arc<CallbackSecrets>, SecretCheck), Verdict> {
        let unavailable = |e: crate::store::StoreError| {
            tracing::warn!(group_id = group_id.0, error = %e, "store unavailable while receiving");
            Verdict::Unavailable
        };
        let cached = self.credentials.callback_secrets(group_id, false).await.map_err(unavailable)?;
        let Some(cached) = cached else {
            tracing::info!(group_id = group_id.0, "callback for an unknown community");
            return Err(Verdict::UnknownCommunity);
        };
        let check = check_secret(&cached, supplied);
        // Only the current secret is trusted from the cache. The previous one may have been replaced by another
        // instance's rotation meanwhile, so it is checked against the store.
        if check != SecretCheck::Wrong
            && check != SecretCheck::Previous
            && !cached.disconnected
            && cached.unreadable.is_none()
        {
            return Ok((cached, check));
        }
        let fresh = self.credentials.callback_secrets(group_id, true).await.map_err(unavailable)?;
        let fresh = fresh.ok_or(Verdict::UnknownCommunity)?;
        let check = check_secret(&fresh, supplied);
        Ok((fresh, check))
    }

    async fn confirm(&self, group_id: GroupId) -> Verdict {
        match self.credentials.confirmation_code(group_id).await {
            Ok(Some(Some(code))) => {
                tracing::info!(group_id = group_id.0, "answered VK's confirmation request");
                Verdict::Confirmation(code)
            }
            Ok(Some(None)) => Verdict::NoCode,
            Ok(None) => Verdict::UnknownCommunity,
            Err(e) => {
                tracing::warn!(group_id = group_id.0, error = %e, "store unavailable while confirming");
                Verdict::Unavailable
            }
        }
    }

    async fn store(
        &self,
        envelope: &vk::Envelope,
        group_id: GroupId,
        event_id: String,
        secrets: &CallbackSecrets,
    ) -> Verdict {
        let incoming = Incoming { group_id, envelope, event_id, source: Source::Callback };
        match self.inbox.ingest(incoming).await {
            Ok(inserted) => {
                if secrets.manual_waiting {
                    self.first_manual_event(group_id);
                }
                Verdict::Stored(inserted)
            }
            Err(e) => {
                tracing::warn!(group_id = group_id.0, error = %e, "event not stored: 503, VK will retry");
                Verdict::Unavailable
            }
        }
    }

    /// The first event of a manually set up community: it is connected.
    fn first_manual_event(&self, group_id: GroupId) {
        let credentials = self.credentials.clone();
        tokio::spawn(async move {
            match credentials.confirm_manual(group_id).await {
                Ok(true) => tracing::info!(group_id = group_id.0, "first event of a manually connected community"),
                Ok(false) => {}
                Err(e) => tracing::warn!(group_id = group_id.0, error = %e, "could not mark the manual connection"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::bot::BotControl;
    use crate::credentials::Credentials;
    use crate::testkit::Kit;

    fn body(group_id: GroupId, event_type: &str, event_id: &str, secret: &str) -> Vec<u8> {
        serde_json::json!({"type": event_type, "event_id": event_id, "v": "5.199", "group_id": group_id,
                           "secret": secret, "object": {"user_id": 2, "join_type": "join"}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn each_verdict_has_its_own_metrics_label() {
        let verdicts = [
            Verdict::Stored(Inserted::New),
            Verdict::Stored(Inserted::Duplicate),
            Verdict::Remove,
            Verdict::UnknownCommunity,
            Verdict::NoCode,
            Verdict::WrongSecret,
            Verdict::Unavailable,
            Verdict::PathChecked,
        ];
        let labels: Vec<&str> = verdicts.iter().map(Verdict::label).collect();
        assert_eq!(
            labels,
            [
                "stored",
                "duplicate",
                "remove",
                "unknown_community",
                "no_code",
                "wrong_secret",
                "unavailable",
                "path_check"
            ]
        );
    }

    #[tokio::test]
    async fn a_secret_another_instance_rotated_in_is_accepted_at_once() {
        let kit = Kit::new().await;
        kit.connected(GroupId(1001)).await;
        let old = kit.credentials.current_callback_secret(GroupId(1001)).await.unwrap().unwrap();
        let (verdict, _) = kit.receiver.accept(&message("e1", old.expose_secret())).await;
        assert_eq!(verdict, Verdict::Stored(Inserted::New), "the cache is warm");
        // Another instance rotates; this one's cache still holds the old secret.
        let other = Credentials::new(kit.store.clone(), kit.vault.clone());
        let new = other.rotate_for_setup(GroupId(1001), "c0de").await.unwrap();
        let (verdict, _) = kit.receiver.accept(&body(GroupId(1001), "group_join", "e2", new.expose_secret())).await;
        assert_eq!(verdict, Verdict::Stored(Inserted::New), "an unknown secret is checked against the store");
    }

    /// Иван's message to 1001, as VK delivers it.
    fn message(event_id: &str, secret: &str) -> Vec<u8> {
        serde_json::json!({"type": "message_new", "event_id": event_id, "v": "5.199", "group_id": 1001,
                           "secret": secret, "object": {"message": {"id": 7, "date": 1, "peer_id": 2, "from_id": 2,
                           "text": "Привет", "out": 0, "conversation_message_id": 7}, "client_info": {}}})
        .to_string()
        .into_bytes()
    }

    /// A receiver over a store where 1001 has the secret (and code) a setup would commit.
    async fn receiving() -> (Kit, String) {
        let kit = Kit::new().await;
        let secret = kit.credentials.rotate_for_setup(GroupId(1001), "c0de").await.unwrap();
        (kit, secret.expose_secret().to_owned())
    }

    #[tokio::test]
    async fn an_event_is_stored_once_and_its_retry_is_a_duplicate() {
        let (kit, secret) = receiving().await;
        let event = body(GroupId(1001), "group_join", &"a".repeat(40), &secret);
        assert_eq!(kit.receiver.accept(&event).await, (Verdict::Stored(Inserted::New), "group_join"));
        assert_eq!(kit.receiver.accept(&event).await.0, Verdict::Stored(Inserted::Duplicate));
        let row = kit.store.inbox_event_by_event_id(GroupId(1001), &"a".repeat(40)).await.unwrap().unwrap();
        assert!(!row.payload.contains(&secret), "stored without the secret");
        assert_eq!(
            kit.store
                .inbox_log(GroupId(1001), &crate::store::LogFilter { limit: 10, ..Default::default() })
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn an_event_the_bot_will_not_touch_is_stored_finished_and_a_switch_turned_on_revives_it() {
        let (kit, secret) = receiving().await;
        kit.give_key(GroupId(1001)).await;
        // A join: the bot never answers one. Finished at ingest, with the reason, never claimed.
        kit.receiver.accept(&body(GroupId(1001), "group_join", &"a".repeat(40), &secret)).await;
        let join = kit.store.inbox_event_by_event_id(GroupId(1001), &"a".repeat(40)).await.unwrap().unwrap();
        assert_eq!((join.status, join.attempts), (crate::model::EventStatus::Ignored, 0));
        assert!(join.result.unwrap().contains("no_answer_needed"));
        // A message while the bot is off for messages: the same, with that reason.
        kit.store.set_bot_settings(GroupId(1001), false, false, Some("Спасибо!")).await.unwrap();
        kit.sandbox.message(1001, 2, "Привет").unwrap(); // writing first allows the community's answer
        kit.receiver.accept(&message(&"b".repeat(40), &secret)).await;
        let row = kit.store.inbox_event_by_event_id(GroupId(1001), &"b".repeat(40)).await.unwrap().unwrap();
        assert_eq!(row.status, crate::model::EventStatus::Ignored);
        assert!(row.result.as_deref().unwrap().contains("messages_off"));
        assert_eq!(kit.store.inbox_depth(Some(GroupId(1001))).await.unwrap(), 0, "no work for the workers");
        // The admin turns messages on a moment later (another instance may have decided with the old switch):
        // the message is answered, once; the join stays as it was.
        kit.control.set_switches(GroupId(1001), false, true, Some("Спасибо!")).await.unwrap();
        kit.run_bot_once().await;
        let row = kit.store.inbox_event_by_event_id(GroupId(1001), &"b".repeat(40)).await.unwrap().unwrap();
        assert_eq!(row.status, crate::model::EventStatus::Done, "{:?}", row.result);
        assert_eq!(kit.sandbox.messages(1001).into_iter().filter(|m| m.from_id == -1001).count(), 1);
        let join = kit.store.inbox_event_by_event_id(GroupId(1001), &"a".repeat(40)).await.unwrap().unwrap();
        assert_eq!(join.status, crate::model::EventStatus::Ignored);
    }

    #[tokio::test]
    async fn confirmation_needs_the_right_secret_and_answers_the_stored_code() {
        let (kit, secret) = receiving().await;
        let confirm = |s: &str| body(GroupId(1001), "confirmation", "", s);
        assert_eq!(kit.receiver.accept(&confirm(&secret)).await.0, Verdict::Confirmation("c0de".into()));
        let same_length_wrong: String = secret.chars().rev().collect();
        assert_eq!(kit.receiver.accept(&confirm(&same_length_wrong)).await.0, Verdict::WrongSecret);
        assert_eq!(kit.receiver.accept(&confirm("")).await.0, Verdict::WrongSecret);
    }

    #[tokio::test]
    async fn bad_bodies_and_unknown_communities_are_refused_without_storing() {
        let (kit, secret) = receiving().await;
        assert!(matches!(kit.receiver.accept(b"{not json").await.0, Verdict::Malformed(_)));
        assert!(matches!(kit.receiver.accept(br#"{"type":"group_join"}"#).await.0, Verdict::Malformed(_)));
        assert_eq!(
            kit.receiver.accept(&body(GroupId(4242), "group_join", "x", &secret)).await.0,
            Verdict::UnknownCommunity
        );
        assert!(matches!(
            kit.receiver.accept(&body(GroupId(1001), "group_join", "", &secret)).await.0,
            Verdict::Malformed(_)
        ));
        assert_eq!(kit.store.inbox_depth(None).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_previous_secret_works_through_its_window_even_after_events_under_the_new_one() {
        let (kit, old) = receiving().await;
        let new = kit.credentials.rotate_for_setup(GroupId(1001), "c0de2").await.unwrap().expose_secret().to_owned();
        assert_eq!(
            kit.receiver.accept(&body(GroupId(1001), "group_join", "1", &old)).await.0,
            Verdict::Stored(Inserted::New)
        );
        assert_eq!(
            kit.receiver.accept(&body(GroupId(1001), "group_join", "2", &new)).await.0,
            Verdict::Stored(Inserted::New)
        );
        // VK's retries of events built before the rotation still come with the old secret, for hours.
        assert_eq!(
            kit.receiver.accept(&body(GroupId(1001), "group_join", "3", &old)).await.0,
            Verdict::Stored(Inserted::New)
        );
        assert!(kit.store.community_settings(GroupId(1001)).await.unwrap().unwrap().previous_secret.is_some());
    }

    #[tokio::test]
    async fn the_previous_secret_is_refused_once_its_window_has_passed() {
        let (kit, old) = receiving().await;
        let (quick, receiver) = another_instance(&kit);
        let quick = quick.with_previous_window(std::time::Duration::from_millis(1));
        quick.rotate_for_setup(GroupId(1001), "c0de2").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(receiver.accept(&body(GroupId(1001), "group_join", "1", &old)).await.0, Verdict::WrongSecret);
        assert_eq!(quick.retire_expired_previous_secrets().await.unwrap(), 1, "and the stored copy goes");
        assert!(kit.store.community_settings(GroupId(1001)).await.unwrap().unwrap().previous_secret.is_none());
    }

    #[tokio::test]
    async fn a_disconnected_community_gets_remove() {
        let (kit, secret) = receiving().await;
        kit.credentials.forget(GroupId(1001)).await.unwrap();
        assert_eq!(kit.receiver.accept(&body(GroupId(1001), "group_join", "1", &secret)).await.0, Verdict::Remove);
    }

    #[tokio::test]
    async fn a_secret_that_does_not_open_refuses_everything() {
        let (kit, secret) = receiving().await;
        // The same database under another key (a key missing from VKHOOK_TOKEN_KEYS).
        let other = Arc::new(crate::vault::Vault::from_spec(&crate::vault::Vault::generate_spec("k2")).unwrap());
        let credentials = crate::credentials::Credentials::new(kit.store.clone(), other);
        let receiver = instance(&kit, credentials, kit.control.clone());
        for supplied in [secret.as_str(), "", "anything"] {
            assert_eq!(
                receiver.accept(&body(GroupId(1001), "group_join", "1", supplied)).await.0,
                Verdict::Unavailable
            );
            assert_eq!(
                receiver.accept(&body(GroupId(1001), "confirmation", "", supplied)).await.0,
                Verdict::Unavailable
            );
        }
        assert_eq!(kit.store.inbox_depth(None).await.unwrap(), 0);
    }

    /// A receiver of another instance on the kit's database: its own writer and inbox, these credentials and bot.
    fn instance(kit: &Kit, credentials: Credentials, control: BotControl) -> Receiver {
        let writer = crate::inbox::Writer::start(kit.store.clone(), 1, kit.metrics.clone());
        let inbox = Inbox::new(writer, Arc::new(control), Arc::new(tokio::sync::Notify::new()));
        Receiver::new(credentials, inbox, kit.hooks.clone())
    }

    /// Another instance on the same database: its own credentials (and cache) and receiver.
    fn another_instance(kit: &Kit) -> (Credentials, Receiver) {
        let credentials = Credentials::new(kit.store.clone(), kit.vault.clone());
        let receiver = instance(kit, credentials.clone(), kit.control.clone());
        (credentials, receiver)
    }

    #[tokio::test]
    async fn a_secret_changed_by_another_instance_is_accepted_at_once() {
        let (kit, old) = receiving().await;
        assert_eq!(
            kit.receiver.accept(&body(GroupId(1001), "group_join", "1", &old)).await.0,
            Verdict::Stored(Inserted::New)
        );
        let (elsewhere, _) = another_instance(&kit);
        let new = elsewhere.rotate_for_setup(GroupId(1001), "c0de2").await.unwrap().expose_secret().to_owned();
        // This instance still caches the old secret as the current one: a mismatch reads the store again.
        assert_eq!(
            kit.receiver.accept(&body(GroupId(1001), "group_join", "2", &new)).await.0,
            Verdict::Stored(Inserted::New)
        );
        let confirm = body(GroupId(1001), "confirmation", "", &new);
        assert_eq!(kit.receiver.accept(&confirm).await.0, Verdict::Confirmation("c0de2".into()));
    }

    #[tokio::test]
    async fn a_community_connected_by_another_instance_is_no_longer_answered_remove() {
        let kit = Kit::new().await;
        // Known but not set up: this instance caches "disconnected".
        assert_eq!(kit.receiver.accept(&body(GroupId(1001), "group_join", "1", "")).await.0, Verdict::Remove);
        let (elsewhere, _) = another_instance(&kit);
        let secret = elsewhere.rotate_for_setup(GroupId(1001), "c0de").await.unwrap().expose_secret().to_owned();
        let confirm = body(GroupId(1001), "confirmation", "", &secret);
        assert_eq!(kit.receiver.accept(&confirm).await.0, Verdict::Confirmation("c0de".into()));
    }

    #[tokio::test]
    async fn a_switch_turned_on_elsewhere_revives_what_a_lagging_instance_decided_meanwhile() {
        let (kit, secret) = receiving().await;
        kit.store.set_bot_settings(GroupId(1001), false, false, Some("Спасибо!")).await.unwrap();
        // Instance B: its own switch cache, warmed while messages were off.
        let b_control = BotControl::new(kit.store.clone(), Arc::new(tokio::sync::Notify::new()));
        let b = instance(&kit, kit.credentials.clone(), b_control);
        b.accept(&body(GroupId(1001), "group_join", &"a".repeat(40), &secret)).await;
        // A turns messages on; B still decides with the old switch for a moment.
        kit.control.set_switches(GroupId(1001), false, true, Some("Спасибо!")).await.unwrap();
        b.accept(&message(&"b".repeat(40), &secret)).await;
        vk_sandbox::testing::eventually(10, "the message revived for the bot", || async {
            let row = kit.store.inbox_event_by_event_id(GroupId(1001), &"b".repeat(40)).await.unwrap().unwrap();
            (row.status == crate::model::EventStatus::Pending).then_some(())
        })
        .await;
        let join = kit.store.inbox_event_by_event_id(GroupId(1001), &"a".repeat(40)).await.unwrap().unwrap();
        assert_eq!(join.status, crate::model::EventStatus::Ignored, "a join stays finished");
    }

    #[tokio::test]
    async fn a_switch_turned_on_and_off_again_revives_nothing_decided_after() {
        let (kit, secret) = receiving().await;
        kit.store.set_bot_settings(GroupId(1001), false, false, None).await.unwrap();
        kit.control.set_switches(GroupId(1001), false, true, None).await.unwrap();
        kit.control.set_switches(GroupId(1001), false, false, None).await.unwrap();
        kit.receiver.accept(&message(&"b".repeat(40), &secret)).await;
        // Past the second revival pass (it runs SWITCHES_TTL + 0.5 s after the switch went on): it must not have
        // taken back a decision made after the switch went off again.
        tokio::time::sleep(crate::bot::control::SWITCHES_TTL + std::time::Duration::from_secs(1)).await;
        let row = kit.store.inbox_event_by_event_id(GroupId(1001), &"b".repeat(40)).await.unwrap().unwrap();
        assert_eq!(row.status, crate::model::EventStatus::Ignored, "{:?}", row.result);
    }

    #[tokio::test]
    async fn a_message_no_rule_answers_is_finished_at_ingest_and_a_new_rule_revives_it() {
        let (kit, secret) = receiving().await;
        kit.give_key(GroupId(1001)).await;
        kit.store.set_bot_settings(GroupId(1001), false, true, None).await.unwrap();
        kit.store.add_rule(GroupId(1001), "цена", "Цены в меню.").await.unwrap();
        // Иван writes first (that allows the community's answer). «Привет» matches no rule and there is no default
        // reply: nothing for a worker.
        kit.sandbox.message(1001, 2, "Привет").unwrap();
        kit.receiver.accept(&message(&"b".repeat(40), &secret)).await;
        let row = kit.store.inbox_event_by_event_id(GroupId(1001), &"b".repeat(40)).await.unwrap().unwrap();
        assert_eq!((row.status, row.attempts), (crate::model::EventStatus::Ignored, 0));
        assert_eq!(row.event_result().and_then(|r| r.nothing_reason()), Some(crate::model::Reason::NoRule));
        // The admin adds a rule for it a moment later: the message is answered by it, once.
        let rule = crate::bot::rules::NewRule::parse("привет", "Здравствуйте!").unwrap();
        kit.control.add_rule(GroupId(1001), &rule).await.unwrap();
        kit.run_bot_once().await;
        let row = kit.store.inbox_event_by_event_id(GroupId(1001), &"b".repeat(40)).await.unwrap().unwrap();
        assert_eq!(row.status, crate::model::EventStatus::Done, "{:?}", row.result);
        let replies: Vec<_> = kit.sandbox.messages(1001).into_iter().filter(|m| m.from_id == -1001).collect();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].text, "Здравствуйте!");
    }

    #[tokio::test]
    async fn a_stored_event_wakes_the_bot_and_a_retry_does_not() {
        let (kit, secret) = receiving().await;
        kit.store.set_bot_settings(GroupId(1001), false, true, Some("Спасибо!")).await.unwrap();
        let event = message(&"a".repeat(40), &secret);
        let woken = kit.control.wakeup().notified();
        assert_eq!(kit.receiver.accept(&event).await.0, Verdict::Stored(Inserted::New));
        tokio::time::timeout(std::time::Duration::from_secs(5), woken).await.expect("the workers were woken");
        let again = kit.control.wakeup().notified();
        assert_eq!(kit.receiver.accept(&event).await.0, Verdict::Stored(Inserted::Duplicate));
        let woken_again = tokio::time::timeout(std::time::Duration::from_millis(200), again).await;
        assert!(woken_again.is_err(), "VK's retry of a stored event wakes nobody");
    }

    #[tokio::test]
    async fn the_first_event_of_a_manual_setup_connects_the_community() {
        let kit = Kit::new().await;
        let secret =
            kit.credentials.manual_secret(GroupId(1001), true).await.unwrap().unwrap().expose_secret().to_owned();
        kit.credentials.save_manual_confirmation(GroupId(1001), "fromvk").await.unwrap();
        let settings = kit.store.community_settings(GroupId(1001)).await.unwrap().unwrap();
        assert!(!settings.callback_configured);
        assert_eq!(
            kit.receiver.accept(&body(GroupId(1001), "group_join", "1", &secret)).await.0,
            Verdict::Stored(Inserted::New)
        );
        vk_sandbox::testing::eventually(5, "connected by its first event", || async {
            kit.store.community_settings(GroupId(1001)).await.unwrap().unwrap().callback_configured.then_some(())
        })
        .await;
    }
}
