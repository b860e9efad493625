//! Bots Long Poll as a source of events (https://dev.vk.com/ru/api/bots-long-poll/getting-started): for a community
//! VK cannot reach by Callback, vkhook asks VK for its events.
//!
//! - **One poller per community** across all instances: a lease in `long_poll` (`Store::claim_long_polls`), renewed
//!   while it polls, given up at stop, taken over by another instance once it runs out (a crash).
//! - **Nothing lost, nothing twice.** Each batch is stored through the inbox together with the `ts` after it, in
//!   one commit ([`Inbox::ingest_batch`]): the place never passes an event that is not stored, and a batch read
//!   again after a crash is recognised by `event_id` and the object's key.
//! - **VK's failures** (https://dev.vk.com/ru/api/bots-long-poll/getting-started, "Ошибки"): `failed: 2` — the key
//!   expired: a new key, the same `ts`; `failed: 1` — continue from VK's new `ts`, and `failed: 3` — a new key and
//!   `ts`: VK lost what was in between, which is recorded as a **gap** (from, to, why) for backfill.
//! - **Errors.** A network error or VK's own trouble backs off with jitter; a dead key (error 5) goes to its one
//!   owner (`BotControl::pause_for_reauth`) and stops polling; error 15 — Long Poll switched off at VK — stops
//!   polling and says so (`trouble = off_at_vk`) until the admin connects again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use vk::{GroupId, LongPollCheck};

use crate::bot::BotControl;
use crate::credentials::Credentials;
use crate::inbox::{Inbox, Incoming};
use crate::model::Source;
use crate::store::{now_ms, SourceCursor, Store, StoreError};

/// Why a stored gap happened.
pub const GAP_HISTORY_LOST: &str = "long_poll_history_lost";
pub const GAP_INFORMATION_LOST: &str = "long_poll_information_lost";
/// `trouble` when Long Poll was switched off at VK (error 15).
pub const OFF_AT_VK: &str = "off_at_vk";

/// The poller's settings.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// How long VK holds a check (`wait`; 25 s because proxies cut at 30 s).
    pub wait: Duration,
    /// A community's lease; renewed every third of it.
    pub lease: Duration,
    /// How often the poller looks for communities to poll (and for ones whose poller died).
    pub claim_every: Duration,
    /// The longest back-off after errors.
    pub max_backoff: Duration,
}

impl Default for PollerConfig {
    fn default() -> Self {
        PollerConfig {
            wait: Duration::from_secs(25),
            lease: Duration::from_secs(60),
            claim_every: Duration::from_secs(5),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Polls the communities this instance holds.
#[derive(Clone)]
pub struct Poller {
    store: Store,
    inbox: Inbox,
    credentials: Credentials,
    vk: vk::Client,
    control: BotControl,
    owner: String,
    config: PollerConfig,
    /// Rung when a community's polling starts here (a connect): it is claimed at once, not at the next round.
    wakeup: Arc<tokio::sync::Notify>,
}

/// How a community's polling ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// This instance is stopping.
    Shutdown,
    /// Another instance holds the community now, or it is no longer polled.
    LeaseLost,
    /// Long Poll is off at VK (error 15).
    OffAtVk,
    /// The community has no key, or VK refused it (its owner was told).
    NoKey,
}

impl Poller {
    pub fn new(
        store: Store,
        inbox: Inbox,
        credentials: Credentials,
        vk: vk::Client,
        control: BotControl,
        config: PollerConfig,
    ) -> Poller {
        let wakeup = Arc::new(tokio::sync::Notify::new());
        Poller { store, inbox, credentials, vk, control, owner: String::new(), config, wakeup }
    }

    /// What the connect flow rings when it starts polling a community.
    pub fn wakeup(&self) -> Arc<tokio::sync::Notify> {
        self.wakeup.clone()
    }

    /// The poller as `owner` (this instance's id) holds leases.
    pub fn owned_by(&self, owner: &str) -> Poller {
        Poller { owner: owner.to_owned(), ..self.clone() }
    }

    /// Claims communities and polls each on a task of its own until `stop`; then gives the leases up.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        debug_assert!(!self.owner.is_empty(), "a poller runs as an owner (Poller::owned_by)");
        let mut polling: HashMap<i64, JoinHandle<Stopped>> = HashMap::new();
        loop {
            polling.retain(|_, task| !task.is_finished());
            let now = now_ms();
            let until = now + self.config.lease.as_millis() as i64;
            match self.store.claim_long_polls(&self.owner, now, until, 10_000).await {
                Ok(rows) => {
                    for row in rows {
                        if polling.contains_key(&row.group_id) {
                            continue;
                        }
                        let (poller, stop) = (self.clone(), stop.clone());
                        let group_id = GroupId(row.group_id);
                        polling.insert(row.group_id, tokio::spawn(async move { poller.poll(group_id, stop).await }));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "long poll: could not claim communities"),
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(self.config.claim_every) => {}
            }
        }
        for (_, task) in polling {
            let _ = task.await;
        }
        if let Err(e) = self.store.release_long_polls(&self.owner).await {
            tracing::warn!(error = %e, "long poll: could not give the leases up");
        }
    }

    /// Polls one community while this instance holds it.
    pub async fn poll(&self, group_id: GroupId, mut stop: watch::Receiver<bool>) -> Stopped {
        let mut failures = 0u32;
        loop {
            if *stop.borrow() {
                return Stopped::Shutdown;
            }
            let result = tokio::select! {
                r = self.poll_session(group_id) => r,
                _ = stop.changed() => return Stopped::Shutdown,
            };
            match result {
                Ok(stopped) | Err(PollError::Stopped(stopped)) => return stopped,
                Err(e) => {
                    failures += 1;
                    let delay = backoff(failures, self.config.max_backoff);
                    tracing::warn!(group_id = group_id.0, error = %e, delay_ms = delay.as_millis() as u64,
                        "long poll: trouble, trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return Stopped::Shutdown,
                    }
                }
            }
        }
    }

    /// One session: a key, then checks until something ends it. `Err`: try again after a back-off.
    async fn poll_session(&self, group_id: GroupId) -> Result<Stopped, PollError> {
        let Some(key) = self.credentials.community_key(group_id).await? else { return Ok(Stopped::NoKey) };
        let Some(row) = self.store.long_poll(group_id).await? else { return Ok(Stopped::LeaseLost) };
        if row.owner.as_deref() != Some(self.owner.as_str()) {
            return Ok(Stopped::LeaseLost);
        }
        let mut session = self.session(&key.token, group_id).await?;
        // A community polled before resumes where its last commit left it; a new one starts at VK's now.
        let mut ts = row.ts.clone().unwrap_or_else(|| session.ts.clone());
        // Since when nothing is known to be missing: a gap VK reports runs from here.
        let mut heard_at = row.last_check_at.unwrap_or_else(now_ms);
        let mut renewed_at = std::time::Instant::now();
        loop {
            if renewed_at.elapsed() >= self.config.lease / 3 {
                let until = now_ms() + self.config.lease.as_millis() as i64;
                if !self.store.renew_long_poll(group_id, &self.owner, until).await? {
                    return Ok(Stopped::LeaseLost);
                }
                renewed_at = std::time::Instant::now();
            }
            let check = self.vk.long_poll_check(&session, &ts, self.config.wait).await?;
            let now = now_ms();
            match check {
                LongPollCheck::Updates { ts: next, updates } => {
                    if !self.store_batch(group_id, &updates, &next, now).await? {
                        return Ok(Stopped::LeaseLost);
                    }
                    ts = next;
                    heard_at = now;
                }
                LongPollCheck::HistoryLost { ts: next } => {
                    self.store.record_gap(group_id, heard_at, now, GAP_HISTORY_LOST, now).await?;
                    tracing::warn!(group_id = group_id.0, "long poll: VK lost events (failed: 1); recorded as a gap");
                    if !self.move_to(group_id, &next, now).await? {
                        return Ok(Stopped::LeaseLost);
                    }
                    ts = next;
                    heard_at = now;
                }
                LongPollCheck::KeyExpired => {
                    session = self.session(&key.token, group_id).await?;
                }
                LongPollCheck::InformationLost => {
                    self.store.record_gap(group_id, heard_at, now, GAP_INFORMATION_LOST, now).await?;
                    tracing::warn!(group_id = group_id.0, "long poll: VK lost events (failed: 3); recorded as a gap");
                    session = self.session(&key.token, group_id).await?;
                    if !self.move_to(group_id, &session.ts, now).await? {
                        return Ok(Stopped::LeaseLost);
                    }
                    ts = session.ts.clone();
                    heard_at = now;
                }
            }
        }
    }

    /// Stores the updates and the place after them in one commit; false when the lease was lost.
    async fn store_batch(
        &self,
        group_id: GroupId,
        updates: &[Box<serde_json::value::RawValue>],
        next: &str,
        now: i64,
    ) -> Result<bool, PollError> {
        let mut envelopes = Vec::with_capacity(updates.len());
        for (i, update) in updates.iter().enumerate() {
            match vk::parse(update.get().as_bytes()) {
                Ok(envelope) => envelopes.push((i, envelope)),
                // Not VK's event shape: nothing can be stored or answered; say so loudly.
                Err(e) => tracing::error!(group_id = group_id.0, error = %e, "long poll: an update is not an event"),
            }
        }
        let batch = envelopes
            .iter()
            .map(|(i, envelope)| Incoming {
                group_id,
                envelope,
                // VK gives every update an `event_id`; one without gets a stable id from its place.
                event_id: envelope.event_id.clone().unwrap_or_else(|| format!("lp-{next}-{i}")),
                source: Source::LongPoll,
            })
            .collect();
        let cursor = SourceCursor { group_id: group_id.0, owner: self.owner.clone(), ts: next.to_owned(), at: now };
        Ok(self.inbox.ingest_batch(batch, cursor).await.map_err(PollError::Inbox)?.cursor_moved)
    }

    async fn move_to(&self, group_id: GroupId, ts: &str, now: i64) -> Result<bool, PollError> {
        let cursor = SourceCursor { group_id: group_id.0, owner: self.owner.clone(), ts: ts.to_owned(), at: now };
        Ok(self.store.move_long_poll(&cursor).await?)
    }

    /// A new session. VK's refusal is decided here: a dead key goes to its owner and "not enabled" stops polling
    /// (both end the polling); anything else is retried after a back-off.
    async fn session(&self, token: &vk::AccessToken, group_id: GroupId) -> Result<vk::LongPollServer, PollError> {
        let e = match self.vk.groups_get_long_poll_server(token, group_id).await {
            Ok(session) => return Ok(session),
            Err(e) => e,
        };
        if e.needs_reauth() {
            self.control.pause_for_reauth(group_id, &e).await?;
            return Err(PollError::Stopped(Stopped::NoKey));
        }
        if e.code() == Some(vk::code::ACCESS_DENIED) {
            tracing::warn!(group_id = group_id.0, error = %e, "long poll: switched off at VK");
            self.store.set_long_poll_trouble(group_id, Some(OFF_AT_VK)).await?;
            return Err(PollError::Stopped(Stopped::OffAtVk));
        }
        Err(PollError::Vk(e))
    }
}

/// The wait after `failures` failures in a row: doubling from 2 s, at most `max`, each between half and all of it
/// (jitter, so that pollers that failed together do not return together).
fn backoff(failures: u32, max: Duration) -> Duration {
    let ceiling = Duration::from_secs(1u64 << failures.clamp(1, 16)).min(max);
    let jitter: f64 = rand::random();
    ceiling.mul_f64(0.5 + jitter / 2.0)
}

/// Why a session ended early (retried after a back-off).
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error(transparent)]
    Vk(#[from] vk::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Inbox(Arc<StoreError>),
    /// Not an error: polling ends (a session VK refused for good).
    #[error("polling ends: {0:?}")]
    Stopped(Stopped),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LogFilter;
    use crate::testkit::Kit;
    use serde_json::json;

    /// Long Poll switched on at the sandbox for message_new by vkhook's own key, and the community polled.
    async fn polled(kit: &Kit, group_id: GroupId) {
        kit.give_key(group_id).await;
        let key = kit.credentials.community_key(group_id).await.unwrap().unwrap();
        let vk = vk_client(kit);
        vk.groups_set_long_poll_settings(&key.token, group_id, Some(true), None, &["message_new"], &[]).await.unwrap();
        kit.store.start_long_poll(group_id, None, &["message_new"], true, now_ms()).await.unwrap();
    }

    fn vk_client(kit: &Kit) -> vk::Client {
        let mut cfg = vk::ClientConfig::new(kit.sandbox.api_url().parse().unwrap());
        cfg.retry = vk::RetryPolicy::none();
        vk::Client::new(cfg).unwrap()
    }

    async fn lp_control(kit: &Kit, group_id: GroupId, body: serde_json::Value) {
        let url = format!("{}/_sandbox/groups/{}/longpoll", kit.sandbox.url(), group_id.0);
        assert!(reqwest::Client::new().post(url).json(&body).send().await.unwrap().status().is_success());
    }

    /// The message texts stored for the community, oldest first, and where each came from.
    async fn stored(kit: &Kit, group_id: GroupId) -> Vec<(String, Source)> {
        let filter = LogFilter { limit: 10_000, ..Default::default() };
        let mut rows = kit.store.inbox_log(group_id, &filter).await.unwrap();
        rows.sort_by_key(|r| r.id);
        rows.into_iter()
            .map(|r| {
                let body: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
                (body["object"]["message"]["text"].as_str().unwrap_or_default().to_owned(), r.source)
            })
            .collect()
    }

    async fn wait_for_stored(kit: &Kit, group_id: GroupId, n: usize) -> Vec<(String, Source)> {
        let what = format!("{n} events stored");
        vk_sandbox::testing::eventually(10, &what, || async {
            let rows = stored(kit, group_id).await;
            (rows.len() >= n).then_some(rows)
        })
        .await
    }

    fn start(kit: &Kit, owner: &str) -> (watch::Sender<bool>, JoinHandle<()>) {
        let (stop, stopped) = watch::channel(false);
        (stop, tokio::spawn(kit.poller.owned_by(owner).run(stopped)))
    }

    /// Until a poller has a session at VK: a community polled for the first time starts at VK's `ts` then.
    async fn wait_for_session(kit: &Kit, group_id: GroupId) {
        vk_sandbox::testing::eventually(10, "a Long Poll session", || async {
            (!kit.sandbox.world().group(group_id.0).unwrap().long_poll.keys.is_empty()).then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn events_are_stored_in_order_with_their_place_and_one_poller_polls() {
        let kit = Kit::new().await;
        let g = GroupId(1001);
        polled(&kit, g).await;
        let (stop_a, a) = start(&kit, "a");
        wait_for_session(&kit, g).await;
        let (stop_b, b) = start(&kit, "b");
        for n in 0..30 {
            kit.sandbox.message(1001, 2, &format!("m{n}")).unwrap();
        }
        let rows = wait_for_stored(&kit, g, 30).await;
        let expected: Vec<(String, Source)> = (0..30).map(|n| (format!("m{n}"), Source::LongPoll)).collect();
        assert_eq!(rows, expected);
        let row = kit.store.long_poll(g).await.unwrap().unwrap();
        assert_eq!(row.owner.as_deref(), Some("a"), "b never took it");
        let state = kit.sandbox.world().group(1001).unwrap().long_poll.clone();
        assert_eq!(row.ts, Some(state.next_ts.to_string()), "the place is right after the last stored event");
        assert_eq!(state.keys.len(), 1, "one session: only a polls");
        let _ = (stop_a.send(true), stop_b.send(true));
        let _ = (a.await, b.await);
        assert_eq!(kit.store.long_poll(g).await.unwrap().unwrap().owner, None, "given up at stop");
        // Restarted: nothing is read twice, and what came meanwhile is read.
        kit.sandbox.message(1001, 2, "after").unwrap();
        let (stop, task) = start(&kit, "c");
        let rows = wait_for_stored(&kit, g, 31).await;
        assert_eq!(rows.last().unwrap().0, "after");
        assert_eq!(rows.len(), 31);
        let _ = stop.send(true);
        let _ = task.await;
    }

    #[tokio::test]
    async fn vk_losing_events_is_a_gap_and_an_expired_key_is_not() {
        let kit = Kit::new().await;
        let g = GroupId(1001);
        polled(&kit, g).await;
        let (stop, task) = start(&kit, "a");
        wait_for_session(&kit, g).await;
        kit.sandbox.message(1001, 2, "first").unwrap();
        wait_for_stored(&kit, g, 1).await;
        lp_control(&kit, g, json!({"fail": [2]})).await;
        kit.sandbox.message(1001, 2, "after failed 2").unwrap();
        wait_for_stored(&kit, g, 2).await;
        assert!(kit.store.gaps(g, 10).await.unwrap().is_empty(), "a new key, the same ts: nothing lost");
        lp_control(&kit, g, json!({"fail": [1]})).await;
        kit.sandbox.message(1001, 2, "after failed 1").unwrap();
        wait_for_stored(&kit, g, 3).await;
        lp_control(&kit, g, json!({"fail": [3]})).await;
        kit.sandbox.message(1001, 2, "lost to failed 3").unwrap();
        let gaps = vk_sandbox::testing::eventually(10, "two gaps", || async {
            let gaps = kit.store.gaps(g, 10).await.unwrap();
            (gaps.len() == 2).then_some(gaps)
        })
        .await;
        assert_eq!(gaps.iter().map(|g| g.why.as_str()).collect::<Vec<_>>(), [GAP_INFORMATION_LOST, GAP_HISTORY_LOST]);
        assert!(gaps.iter().all(|g| g.from_at <= g.to_at));
        kit.sandbox.message(1001, 2, "after failed 3").unwrap();
        let rows = wait_for_stored(&kit, g, 4).await;
        let texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(texts[..3], ["first", "after failed 2", "after failed 1"]);
        assert_eq!(*texts.last().unwrap(), "after failed 3");
        let _ = stop.send(true);
        let _ = task.await;
    }

    #[tokio::test]
    async fn long_poll_switched_off_at_vk_stops_polling_and_says_why() {
        let kit = Kit::new().await;
        let g = GroupId(1001);
        polled(&kit, g).await;
        lp_control(&kit, g, json!({"enabled": false})).await;
        let (stop, task) = start(&kit, "a");
        let row = vk_sandbox::testing::eventually(10, "trouble is recorded", || async {
            kit.store.long_poll(g).await.unwrap().filter(|r| r.trouble.is_some())
        })
        .await;
        assert_eq!((row.trouble.as_deref(), row.owner), (Some(OFF_AT_VK), None));
        let _ = stop.send(true);
        let _ = task.await;
    }

    #[tokio::test]
    async fn a_dead_key_goes_to_its_owner_and_polling_stops() {
        let kit = Kit::new().await;
        let g = GroupId(1001);
        polled(&kit, g).await;
        kit.revoke_key(g).await;
        let (stop, task) = start(&kit, "a");
        vk_sandbox::testing::eventually(10, "the bot is paused for a new authorization", || async {
            kit.store.bot_settings(g).await.unwrap().and_then(|b| b.paused_reason)
        })
        .await;
        assert!(kit.credentials.community_key(g).await.unwrap().is_none(), "the dead key was dropped by its owner");
        let _ = stop.send(true);
        let _ = task.await;
    }

    #[test]
    fn back_off_grows_with_jitter_and_stops_at_its_ceiling() {
        let max = Duration::from_secs(60);
        for _ in 0..100 {
            let first = backoff(1, max);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2), "{first:?}");
            let fifth = backoff(5, max);
            assert!(fifth >= Duration::from_secs(16) && fifth <= Duration::from_secs(32), "{fifth:?}");
            let late = backoff(40, max);
            assert!(late >= Duration::from_secs(30) && late <= max, "{late:?}");
        }
    }
}
