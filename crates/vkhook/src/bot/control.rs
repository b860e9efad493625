//! `BotControl`: the one owner of "VK refused the community key". Every path that sees VK refuse the key — the
//! bot's own call, the community page, «Проверить», the reconcile pass, saving event types, a setup run — calls
//! [`BotControl::pause_for_reauth`]. Reconnecting calls [`BotControl::resume`], which releases every event held
//! meanwhile; the bot's dedup keys make sure each is answered once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::model::{LogEntry, PauseReason, Reason};
use crate::store::{now_ms, BotSettings, Store, StoreResult};

/// How long the receiver trusts the switches it read for a community. Another instance's change reaches it within
/// this; events it finished at ingest meanwhile under the old switches are revived (see [`BotControl::set_switches`]).
pub const SWITCHES_TTL: Duration = Duration::from_secs(2);

type SwitchCache = HashMap<i64, (Option<BotSettings>, Instant)>;

#[derive(Clone)]
pub struct BotControl {
    store: Store,
    /// Wakes the bot workers.
    wakeup: Arc<Notify>,
    /// The bot's switches per community, for the receiver's decision at ingest.
    switches: Arc<RwLock<SwitchCache>>,
}

impl BotControl {
    pub fn new(store: Store, wakeup: Arc<Notify>) -> BotControl {
        BotControl { store, wakeup, switches: Arc::default() }
    }

    /// Why the bot will do nothing with this event, if its type and the community's switches already say so: the
    /// receiver then stores it finished. `None` (a worker decides) whenever in doubt: an unparsable object, an
    /// unknown community, a store that does not answer.
    pub async fn nothing_to_do(&self, group_id: i64, envelope: &vk::Envelope) -> Option<Reason> {
        let event = envelope.event().ok()?;
        let cached = self.switches.read().unwrap_or_else(|e| e.into_inner()).get(&group_id).cloned();
        let settings = match cached.filter(|(_, at)| at.elapsed() < SWITCHES_TTL) {
            Some((settings, _)) => settings,
            None => {
                let settings = match self.store.bot_settings(group_id).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(group_id, error = %e, "switches unreadable at ingest: a worker decides");
                        return None;
                    }
                };
                let mut cache = self.switches.write().unwrap_or_else(|e| e.into_inner());
                if cache.len() > 100_000 {
                    cache.clear();
                }
                cache.insert(group_id, (settings.clone(), Instant::now()));
                settings
            }
        };
        super::nothing_to_do(&event, group_id, &settings?)
    }

    /// The admin's switches and default reply. A switch turned on revives the events of the last moments that
    /// were finished at ingest because it was off (on this or another instance, whose cache may lag
    /// [`SWITCHES_TTL`]): the bot then answers them, once.
    pub async fn set_switches(
        &self,
        group_id: i64,
        comments: bool,
        messages: bool,
        default_reply: Option<&str>,
    ) -> StoreResult<()> {
        let before = self.store.bot_settings(group_id).await?;
        self.store.set_bot_settings(group_id, comments, messages, default_reply).await?;
        self.switches.write().unwrap_or_else(|e| e.into_inner()).remove(&group_id);
        let was = |f: fn(&BotSettings) -> bool| before.as_ref().is_some_and(f);
        let mut revive = Vec::new();
        if comments && !was(|b| b.bot_comments) {
            revive.push(super::why(Reason::CommentsOff).to_string());
        }
        if messages && !was(|b| b.bot_messages) {
            revive.push(super::why(Reason::MessagesOff).to_string());
        }
        if !revive.is_empty() {
            let now = now_ms();
            let since = now - 2 * SWITCHES_TTL.as_millis() as i64;
            if self.store.revive_ingest_decisions(group_id, &revive, since, now).await? > 0 {
                self.wake();
            }
            // Another instance may go on deciding with the old switch until its cache expires: once more after
            // that, for what came until then — unless the switch was turned off again meanwhile.
            let (control, lag) = (self.clone(), SWITCHES_TTL + Duration::from_millis(500));
            let until = now + lag.as_millis() as i64;
            tokio::spawn(async move {
                tokio::time::sleep(lag).await;
                let still_on = control
                    .store
                    .bot_settings(group_id)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|b| (b.bot_comments || !comments) && (b.bot_messages || !messages));
                if !still_on {
                    return;
                }
                match control.store.revive_ingest_decisions(group_id, &revive, since, until).await {
                    Ok(n) if n > 0 => control.wake(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(group_id, error = %e, "could not revive events decided under the old switch")
                    }
                }
            });
        }
        Ok(())
    }

    /// Wakes the workers: an event was stored or released.
    pub fn wake(&self) {
        self.wakeup.notify_one();
    }

    /// What the workers wait on.
    pub fn wakeup(&self) -> &Notify {
        &self.wakeup
    }

    /// «Сразу включить бота» was ticked: the bot answers comments and messages with the default reply.
    pub async fn enable_on_connect(&self, group_id: i64, reply: Option<&str>) -> StoreResult<()> {
        let reply = reply.map(str::trim).filter(|r| !r.is_empty());
        self.set_switches(group_id, true, true, reply).await
    }

    /// VK refused the community key (error 5, see `vk::Error::needs_reauth`): drop the key, pause the bot, record
    /// it in the community's log; the community shows «нужно переподключить». Events keep arriving and are held.
    pub async fn pause_for_reauth(&self, group_id: i64, error: &vk::Error) -> StoreResult<()> {
        debug_assert!(error.needs_reauth(), "only a dead key pauses the bot: {error}");
        let already = self.store.bot_settings(group_id).await?.is_some_and(|b| b.paused_reason.is_some());
        self.store.drop_key_and_pause(group_id, PauseReason::Reauth).await?;
        if !already {
            tracing::warn!(group_id, %error, "VK refused the community key: bot paused until reconnected");
            self.store.log_community(group_id, &LogEntry::Paused(PauseReason::Reauth)).await?;
        }
        Ok(())
    }

    /// The community is connected again: the bot resumes and every event it held is released now.
    pub async fn resume(&self, group_id: i64) -> StoreResult<()> {
        let was_paused = self.store.bot_settings(group_id).await?.is_some_and(|b| b.paused_reason.is_some());
        self.store.set_bot_paused(group_id, None).await?;
        if was_paused {
            self.store.log_community(group_id, &LogEntry::Resumed).await?;
        }
        self.store.wake_community_events(group_id).await?;
        self.wake();
        Ok(())
    }
}
