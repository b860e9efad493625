//! `BotControl`: the one owner of "VK refused the community key". Every path that sees VK refuse the key — the
//! bot's own call, the community page, «Проверить», the reconcile pass, saving event types, a setup run — calls
//! [`BotControl::pause_for_reauth`]. Reconnecting calls [`BotControl::resume`], which releases every event held
//! meanwhile; the bot's dedup keys make sure each is answered once.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::model::{LogEntry, PauseReason};
use crate::store::{Store, StoreResult};

#[derive(Clone)]
pub struct BotControl {
    store: Store,
    /// Wakes the bot workers.
    wakeup: Arc<Notify>,
}

impl BotControl {
    pub fn new(store: Store, wakeup: Arc<Notify>) -> BotControl {
        BotControl { store, wakeup }
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
        self.store.set_bot_settings(group_id, true, true, reply).await
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
