//! `BotControl`: the one owner of "VK refused the community key". Every path that sees VK refuse the key — the
//! bot's own call, the community page, «Проверить», the reconcile pass, saving event types, a setup run — calls
//! [`BotControl::pause_for_reauth`]. Reconnecting calls [`BotControl::resume`], which releases every event held
//! meanwhile; the bot's dedup keys make sure each is answered once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use vk::GroupId;

use tokio::sync::Notify;

use super::rules::NewRule;
use crate::model::{LogEntry, PauseReason, Reason};
use crate::store::{now_ms, BotSettings, RuleRow, Store, StoreResult};

/// How long the receiver trusts the switches and rules it read for a community. Another instance's change reaches
/// it within this; events it finished at ingest meanwhile under the old ones are revived (see [`BotControl::revive`]).
pub const SWITCHES_TTL: Duration = Duration::from_secs(2);

/// What the bot decides with: a community's switches (none: unknown here) and rules, as read at `at`.
pub struct Decisive {
    pub settings: Option<BotSettings>,
    pub rules: Vec<RuleRow>,
    at: Instant,
}

#[derive(Clone)]
pub struct BotControl {
    store: Store,
    /// Wakes the bot workers.
    wakeup: Arc<Notify>,
    /// The bot's switches and rules per community, for the receiver's decision at ingest and the workers' runs.
    decisive: Arc<RwLock<HashMap<GroupId, Arc<Decisive>>>>,
    /// Tells the admin when the bot pauses on a dead key.
    alerts: Option<crate::alerts::Alerts>,
}

impl BotControl {
    pub fn new(store: Store, wakeup: Arc<Notify>) -> BotControl {
        BotControl { store, wakeup, decisive: Arc::default(), alerts: None }
    }

    /// A pause for a dead key tells the admin; reconnecting closes that alert.
    pub fn with_alerts(mut self, alerts: crate::alerts::Alerts) -> BotControl {
        self.alerts = Some(alerts);
        self
    }

    /// The community's switches and rules, read at most `max_age` ago: the receiver trusts them for
    /// [`SWITCHES_TTL`], a worker's run for much less. A change made on this instance is seen at once (`forget`).
    pub async fn decisive(&self, group_id: GroupId, max_age: Duration) -> StoreResult<Arc<Decisive>> {
        let cached = self.decisive.read().unwrap_or_else(|e| e.into_inner()).get(&group_id).cloned();
        if let Some(fresh) = cached.filter(|d| d.at.elapsed() < max_age) {
            return Ok(fresh);
        }
        let at = Instant::now();
        let read = Arc::new(Decisive {
            settings: self.store.bot_settings(group_id).await?,
            rules: self.store.rules(group_id).await?,
            at,
        });
        let mut cache = self.decisive.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(group_id, read.clone());
        Ok(read)
    }

    /// Why the bot will do nothing with this event, if its type, the community's switches and its rules already say
    /// so: the inbox then stores it finished. `None` (a worker decides) whenever in doubt: an unparsable object,
    /// an unknown community, a store that does not answer.
    pub async fn nothing_to_do(&self, group_id: GroupId, event: Option<&vk::Event>) -> Option<Reason> {
        let event = event?;
        let decisive = match self.decisive(group_id, SWITCHES_TTL).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(group_id = group_id.0, error = %e, "switches unreadable at ingest: a worker decides");
                return None;
            }
        };
        super::nothing_to_do(event, group_id, decisive.settings.as_ref()?, &decisive.rules)
    }

    /// The admin's switches and default reply. A switch turned on (or a default reply given) revives the events of
    /// the last moments finished at ingest because it was off (or matched no rule).
    pub async fn set_switches(
        &self,
        group_id: GroupId,
        comments: bool,
        messages: bool,
        default_reply: Option<&str>,
    ) -> StoreResult<()> {
        let before = self.store.bot_settings(group_id).await?;
        self.store.set_bot_settings(group_id, comments, messages, default_reply).await?;
        self.forget(group_id);
        let was = |f: fn(&BotSettings) -> bool| before.as_ref().is_some_and(f);
        let mut revive = Vec::new();
        if comments && !was(|b| b.bot_comments) {
            revive.push(Reason::CommentsOff);
        }
        if messages && !was(|b| b.bot_messages) {
            revive.push(Reason::MessagesOff);
        }
        if default_reply.is_some() && before.as_ref().and_then(|b| b.default_reply.as_deref()) != default_reply {
            revive.push(Reason::NoRule);
        }
        let still = move |b: &BotSettings| (b.bot_comments || !comments) && (b.bot_messages || !messages);
        self.revive(group_id, revive, still).await
    }

    /// Adds a rule at the end; its id.
    pub async fn add_rule(&self, group_id: GroupId, rule: &NewRule) -> StoreResult<i64> {
        let id = self.store.add_rule(group_id, rule.keywords(), rule.reply()).await?;
        self.rules_changed(group_id).await?;
        Ok(id)
    }

    /// Deletes one of the community's rules; false: it has no such rule.
    pub async fn delete_rule(&self, group_id: GroupId, rule: i64) -> StoreResult<bool> {
        let deleted = self.store.delete_rule(group_id, rule).await?;
        if deleted {
            self.rules_changed(group_id).await?;
        }
        Ok(deleted)
    }

    /// Moves one of the community's rules a place up (or down).
    pub async fn move_rule(&self, group_id: GroupId, rule: i64, up: bool) -> StoreResult<()> {
        self.store.move_rule(group_id, rule, up).await?;
        self.rules_changed(group_id).await
    }

    /// «Повторить»: a failed or dead event of the community runs again; false: no such event in that state.
    pub async fn replay_event(&self, group_id: GroupId, event: i64) -> StoreResult<bool> {
        let replayed = self.store.replay_inbox_event(group_id, event).await?;
        if replayed {
            self.wake();
        }
        Ok(replayed)
    }

    /// A rule was added, removed or moved: the receiver reads the rules again, and events of the last moments that
    /// matched no rule are revived (the new rule may answer them).
    async fn rules_changed(&self, group_id: GroupId) -> StoreResult<()> {
        self.forget(group_id);
        self.revive(group_id, vec![Reason::NoRule], |_| true).await
    }

    fn forget(&self, group_id: GroupId) {
        self.decisive.write().unwrap_or_else(|e| e.into_inner()).remove(&group_id);
    }

    /// Puts back to `pending` the events of the last moments finished at ingest for one of `reasons`, at once and
    /// again once every instance's cache has expired (an instance may go on deciding with the old switches and
    /// rules for [`SWITCHES_TTL`]) — the second time only for what came until then, and only if `still` holds for
    /// the switches then (not after they were turned off again). The bot then handles them, once.
    async fn revive(
        &self,
        group_id: GroupId,
        reasons: Vec<Reason>,
        still: impl Fn(&BotSettings) -> bool + Send + 'static,
    ) -> StoreResult<()> {
        if reasons.is_empty() {
            return Ok(());
        }
        let results = reasons;
        let now = now_ms();
        let since = now - 2 * SWITCHES_TTL.as_millis() as i64;
        if self.store.revive_ingest_decisions(group_id, &results, since, now).await? > 0 {
            self.wake();
        }
        let (control, lag) = (self.clone(), SWITCHES_TTL + Duration::from_millis(500));
        let until = now + lag.as_millis() as i64;
        tokio::spawn(async move {
            tokio::time::sleep(lag).await;
            if !control.store.bot_settings(group_id).await.ok().flatten().is_some_and(|b| still(&b)) {
                return;
            }
            match control.store.revive_ingest_decisions(group_id, &results, since, until).await {
                Ok(n) if n > 0 => control.wake(),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(group_id = group_id.0, error = %e, "could not revive events decided under the old switch")
                }
            }
        });
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
    pub async fn enable_on_connect(&self, group_id: GroupId, reply: Option<&str>) -> StoreResult<()> {
        let reply = reply.map(str::trim).filter(|r| !r.is_empty());
        self.set_switches(group_id, true, true, reply).await
    }

    /// VK refused the community key (error 5, see `vk::Error::needs_reauth`): drop the key, pause the bot, record
    /// it in the community's log; the community shows «нужно переподключить». Events keep arriving and are held.
    pub async fn pause_for_reauth(&self, group_id: GroupId, error: &vk::Error) -> StoreResult<()> {
        debug_assert!(error.needs_reauth(), "only a dead key pauses the bot: {error}");
        let already = self.store.bot_settings(group_id).await?.is_some_and(|b| b.paused_reason.is_some());
        self.store.drop_key_and_pause(group_id, PauseReason::Reauth).await?;
        self.forget(group_id);
        if !already {
            tracing::warn!(group_id = group_id.0, %error, "VK refused the community key: bot paused until reconnected");
            self.store.log_community(group_id, &LogEntry::Paused(PauseReason::Reauth)).await?;
            if let Some(alerts) = &self.alerts {
                alerts.raise(group_id, crate::model::AlertKind::BotPaused, "", "");
            }
        }
        Ok(())
    }

    /// The community is connected again: the bot resumes and every event it held is released now.
    pub async fn resume(&self, group_id: GroupId) -> StoreResult<()> {
        let was_paused = self.store.bot_settings(group_id).await?.is_some_and(|b| b.paused_reason.is_some());
        self.store.set_bot_paused(group_id, None).await?;
        self.forget(group_id);
        if was_paused {
            self.store.log_community(group_id, &LogEntry::Resumed).await?;
        }
        if let Some(alerts) = &self.alerts {
            alerts.resolve(group_id, crate::model::AlertKind::BotPaused, None).await?;
        }
        self.store.wake_community_events(group_id).await?;
        self.wake();
        Ok(())
    }
}

/// The bot's part at ingest, for the inbox (which never imports the bot).
impl crate::inbox::Decider for BotControl {
    fn nothing_to_do<'a>(
        &'a self,
        group_id: GroupId,
        event: Option<&'a vk::Event>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Reason>> + Send + 'a>> {
        Box::pin(BotControl::nothing_to_do(self, group_id, event))
    }

    fn wake(&self) {
        BotControl::wake(self);
    }
}
