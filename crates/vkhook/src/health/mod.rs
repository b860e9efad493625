//! Health: what the community page's health card shows ([`card`]), and the reconcile pass ([`Reconciler`]) that
//! compares VK's view of our server and settings with ours and repairs drift (server deleted, events switched
//! off, version changed, status `failed`), recording what it did. A refused key goes to the bot's control; a
//! missing or failed server starts a setup run through `connect`.

mod path;

use vk::{GroupId, ServerStatus};

use crate::bot::BotControl;
use crate::connect::{Connector, API_VERSION};
use crate::credentials::Credentials;
use crate::model::{ErrorKind, LogEntry, PauseReason, VkServerView};
pub use crate::store::Activity;
use crate::store::{now_ms, CountRow, LogRow, Store, StoreResult};

/// The last thing that went wrong: one of our kinds (a setup or a repair), or VK's words for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastError {
    Kind(ErrorKind),
    Vk(String),
}

/// When VK says our server is fine but a community that usually gets events has had none for much longer than its
/// usual gap, delivery has probably stopped somewhere VK does not see (a proxy, a firewall, a paused delivery):
/// the health card and the overview say so.
#[derive(Debug, Clone, Copy)]
pub struct Silence {
    /// The window the usual pace is read from.
    pub window: std::time::Duration,
    /// "Usually gets events": at least this many in the window.
    pub min_events: i64,
    /// Silent after this many usual gaps…
    pub factor: u32,
    /// …and never sooner than this.
    pub at_least: std::time::Duration,
}

impl Default for Silence {
    fn default() -> Self {
        Silence {
            window: std::time::Duration::from_secs(7 * 24 * 3600),
            min_events: 10,
            factor: 10,
            at_least: std::time::Duration::from_secs(3600),
        }
    }
}

impl Silence {
    /// Where the window starts, at `now`.
    pub fn since(&self, now: i64) -> i64 {
        now - self.window.as_millis() as i64
    }

    /// The usual gap between events (ms), when the community usually gets events at all.
    pub fn usual_gap(&self, a: &Activity) -> Option<i64> {
        let (first, last) = (a.first_at?, a.last_at?);
        (a.events >= self.min_events).then(|| (last - first) / (a.events - 1).max(1))
    }

    /// Whether events stopped: VK says `ok`, the community usually gets events, and none came for `factor` usual
    /// gaps (and at least `at_least`). `Some(gap)`: silent, and its usual gap.
    pub fn stopped(&self, vk_says_ok: bool, a: &Activity, now: i64) -> Option<i64> {
        if !vk_says_ok {
            return None;
        }
        let gap = self.usual_gap(a)?;
        let quiet = now - a.last_at?;
        let limit = (gap.saturating_mul(i64::from(self.factor))).max(self.at_least.as_millis() as i64);
        (quiet > limit).then_some(gap)
    }
}

/// The health card (think of Telegram's `getWebhookInfo`).
#[derive(Debug, Clone)]
pub struct HealthCard {
    pub vk_status: Option<VkServerView>,
    pub last_check_at: Option<i64>,
    pub last_event_at: Option<i64>,
    pub events_24h: Vec<CountRow>,
    pub replies_sent_24h: i64,
    pub replies_failed_24h: i64,
    pub queue_depth: i64,
    /// When the oldest event still waiting was received.
    pub queue_oldest_at: Option<i64>,
    pub last_error: Option<(LastError, i64)>,
    pub paused: Option<PauseReason>,
    pub log: Vec<LogRow>,
    /// Events stopped coming although VK says our server is fine: the community's usual gap (ms).
    pub silent: Option<i64>,
}

/// The health card of a community, from the store.
pub async fn card(store: &Store, group_id: GroupId, silence: &Silence) -> StoreResult<HealthCard> {
    let now = now_ms();
    let since = now - 24 * 3600 * 1000;
    let settings = store.community_settings(group_id).await?;
    let bot = store.bot_settings(group_id).await?;
    let (replies_sent_24h, replies_failed_24h) = store.reply_counts(group_id, since).await?;
    let inbox_error = store.last_inbox_error(group_id).await?.map(|(e, at)| (LastError::Vk(e), at));
    let settings_error =
        settings.as_ref().and_then(|s| s.last_error.zip(s.last_error_at)).map(|(k, at)| (LastError::Kind(k), at));
    // The most recent of the two.
    let last_error = match (inbox_error, settings_error) {
        (Some(a), Some(b)) => Some(if a.1 >= b.1 { a } else { b }),
        (a, b) => a.or(b),
    };
    let connected = settings.as_ref().is_some_and(|s| s.status == crate::model::CommunityStatus::Connected);
    let vk_says_ok =
        connected && settings.as_ref().and_then(|s| s.vk_server_status.as_ref()).is_some_and(VkServerView::is_ok);
    let silent = silence.stopped(vk_says_ok, &store.activity(group_id, silence.since(now)).await?, now);
    Ok(HealthCard {
        silent,
        vk_status: settings.as_ref().and_then(|s| s.vk_server_status.clone()),
        last_check_at: settings.as_ref().and_then(|s| s.last_check_at),
        last_event_at: store.last_event_at(group_id).await?,
        events_24h: store.inbox_counts_by_type(group_id, since).await?,
        replies_sent_24h,
        replies_failed_24h,
        queue_depth: store.inbox_depth(Some(GroupId(group_id.0))).await?,
        queue_oldest_at: store.oldest_open_event_at(Some(GroupId(group_id.0))).await?,
        last_error,
        paused: bot.and_then(|b| b.paused_reason),
        log: store.community_log(group_id, 10).await?,
    })
}

/// What a reconcile pass did for one community.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// VK agrees with us.
    InOrder,
    /// Our server was gone or `failed`: a setup run was started to restore it.
    SetupStarted(LogEntry),
    /// Events or the API version had drifted and were set back.
    SettingsRestored,
    /// VK refused the key: the community was paused and needs reconnecting.
    NeedsReauth,
    /// Not connected through the API (nothing to compare).
    Skipped,
    /// VK did not answer; try next time.
    VkUnavailable,
}

/// What the reconcile pass uses.
#[derive(Clone)]
pub struct Reconciler {
    store: Store,
    credentials: Credentials,
    vk: vk::Client,
    connector: Connector,
    bot: BotControl,
    alerts: Option<crate::alerts::Alerts>,
}

impl Reconciler {
    pub fn new(
        store: Store,
        credentials: Credentials,
        vk: vk::Client,
        connector: Connector,
        bot: BotControl,
    ) -> Reconciler {
        Reconciler { store, credentials, vk, connector, bot, alerts: None }
    }

    /// VK's status `failed` for our server tells the admin.
    pub fn with_alerts(mut self, alerts: crate::alerts::Alerts) -> Reconciler {
        self.alerts = Some(alerts);
        self
    }

    /// Compares VK's view of our server with ours and repairs drift. Records what it did in the community's log.
    pub async fn reconcile(&self, group_id: GroupId) -> StoreResult<Repair> {
        let Some(settings) = self.store.community_settings(group_id).await? else { return Ok(Repair::Skipped) };
        if !settings.setup_mode.server_is_ours() || !settings.callback_configured {
            return Ok(Repair::Skipped);
        }
        let Some(key) = self.credentials.community_key(group_id).await? else { return Ok(Repair::Skipped) };
        let group = group_id;
        let url = self.connector.callback_url();
        let servers = match self.vk.groups_get_callback_servers(&key.token, group).await {
            Ok(s) => s,
            Err(e) => return self.vk_trouble(group_id, &e).await,
        };
        let ours = servers
            .iter()
            .find(|s| Some(s.id) == settings.server_id)
            .or_else(|| servers.iter().find(|s| s.url.trim_end_matches('/') == url.trim_end_matches('/')));
        let Some(server) = ours else {
            self.store.set_vk_server_status(group_id, &VkServerView::Missing).await?;
            return self.start_repair(group_id, LogEntry::ServerMissing).await;
        };
        self.store.set_vk_server_status(group_id, &VkServerView::Listed(server.status.clone())).await?;
        if let Some(alerts) = &self.alerts {
            match server.status {
                ServerStatus::Failed => alerts.raise(group_id, crate::model::AlertKind::VkFailed, "", ""),
                ServerStatus::Ok => alerts.resolve(group_id, crate::model::AlertKind::VkFailed, None).await?,
                _ => {}
            }
        }
        if server.status == ServerStatus::Failed {
            return self.start_repair(group_id, LogEntry::ServerFailed).await;
        }
        let live = match self.vk.groups_get_callback_settings(&key.token, group, server.id).await {
            Ok(l) => l,
            Err(e) => return self.vk_trouble(group_id, &e).await,
        };
        let wanted = settings.event_list();
        let missing: Vec<String> =
            wanted.iter().filter(|e| live.events.get(e.as_str()).is_none_or(|v| *v == 0)).cloned().collect();
        let version_drift = (live.api_version != API_VERSION).then(|| live.api_version.clone());
        if missing.is_empty() && version_drift.is_none() {
            return Ok(Repair::InOrder);
        }
        let on: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let off: Vec<&str> = vk::DEFAULT_SUBSCRIPTION.iter().copied().filter(|e| !on.contains(e)).collect();
        let call = self.vk.groups_set_callback_settings(&key.token, group, server.id, API_VERSION, &on, &off);
        if let Err(e) = call.await {
            return self.vk_trouble(group_id, &e).await;
        }
        let entry = LogEntry::SettingsRestored { events: missing, version: version_drift };
        self.store.log_community(group_id, &entry).await?;
        tracing::info!(group_id = group_id.0, repair = ?entry, "reconcile repaired drift at VK");
        Ok(Repair::SettingsRestored)
    }

    async fn start_repair(&self, group_id: GroupId, why: LogEntry) -> StoreResult<Repair> {
        self.store.log_community(group_id, &why).await?;
        self.connector.start_repair(group_id).await?;
        Ok(Repair::SetupStarted(why))
    }

    async fn vk_trouble(&self, group_id: GroupId, e: &vk::Error) -> StoreResult<Repair> {
        if e.needs_reauth() {
            self.bot.pause_for_reauth(group_id, e).await?;
            return Ok(Repair::NeedsReauth);
        }
        tracing::warn!(group_id = group_id.0, error = %e, "reconcile: VK did not answer");
        Ok(Repair::VkUnavailable)
    }

    /// One pass over every connected community; returns how many it looked at.
    pub async fn reconcile_all(&self) -> StoreResult<usize> {
        let communities = self.store.connected_communities().await?;
        for group_id in &communities {
            if let Err(e) = self.reconcile(GroupId(*group_id)).await {
                tracing::warn!(group_id = *group_id, error = %e, "reconcile failed");
            }
        }
        Ok(communities.len())
    }
}

#[cfg(test)]
mod silence_tests {
    use super::*;

    #[test]
    fn silence_is_many_usual_gaps_with_vk_saying_ok() {
        let s = Silence::default();
        let minute = 60_000;
        let now = 100 * 24 * 3600 * 1000;
        // Twenty events a minute apart, the last three hours ago: a usual gap of a minute.
        let busy = Activity {
            events: 20,
            first_at: Some(now - 3 * 3_600_000 - 19 * minute),
            last_at: Some(now - 3 * 3_600_000),
        };
        assert_eq!(s.usual_gap(&busy), Some(minute));
        assert_eq!(s.stopped(true, &busy, now), Some(minute));
        assert_eq!(s.stopped(false, &busy, now), None, "VK does not say ok: its own status explains it");
        // Twenty minutes of quiet is not an hour (the floor), even at ten usual gaps.
        let recent = Activity { last_at: Some(now - 20 * minute), ..busy };
        assert_eq!(s.stopped(true, &recent, now), None);
        // A community that rarely gets events is not "silent".
        let quiet = Activity { events: 3, ..busy };
        assert_eq!(s.stopped(true, &quiet, now), None);
        assert_eq!(s.stopped(true, &Activity::default(), now), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;

    #[tokio::test]
    async fn events_switched_off_at_vk_are_switched_back_on() {
        let kit = Kit::new().await;
        kit.connected(GroupId(1001)).await;
        assert_eq!(kit.reconciler.reconcile(GroupId(1001)).await.unwrap(), Repair::InOrder);
        let server_id = kit.sandbox.servers(1001)[0].id;
        kit.sandbox
            .world()
            .group_mut(1001)
            .unwrap()
            .servers
            .iter_mut()
            .find(|s| s.id == server_id)
            .unwrap()
            .events
            .remove("message_new");
        assert_eq!(kit.reconciler.reconcile(GroupId(1001)).await.unwrap(), Repair::SettingsRestored);
        assert_eq!(kit.reconciler.reconcile(GroupId(1001)).await.unwrap(), Repair::InOrder);
        let log = kit.store.community_log(GroupId(1001), 1).await.unwrap();
        let restored = LogEntry::SettingsRestored { events: vec!["message_new".into()], version: None };
        assert_eq!(log[0].entry(), Some(restored));
    }

    #[tokio::test]
    async fn a_dead_key_pauses_instead_of_repairing() {
        let kit = Kit::new().await;
        kit.connected(GroupId(1001)).await;
        kit.revoke_key(GroupId(1001)).await;
        assert_eq!(kit.reconciler.reconcile(GroupId(1001)).await.unwrap(), Repair::NeedsReauth);
        assert_eq!(
            kit.store.bot_settings(GroupId(1001)).await.unwrap().unwrap().paused_reason,
            Some(PauseReason::Reauth)
        );
        assert_eq!(kit.reconciler.reconcile(GroupId(1001)).await.unwrap(), Repair::Skipped, "no key left to try");
        let card = card(&kit.store, GroupId(1001), &Silence::default()).await.unwrap();
        assert_eq!(card.paused, Some(PauseReason::Reauth));
        assert_eq!(card.last_error.map(|e| e.0), Some(LastError::Kind(ErrorKind::Reauth)));
    }

    #[tokio::test]
    async fn a_server_deleted_at_vk_is_set_up_again() {
        let kit = Kit::new().await;
        kit.connected(GroupId(1001)).await;
        kit.sandbox.world().group_mut(1001).unwrap().servers.clear();
        assert_eq!(
            kit.reconciler.reconcile(GroupId(1001)).await.unwrap(),
            Repair::SetupStarted(LogEntry::ServerMissing)
        );
        vk_sandbox::testing::eventually(10, "our server back", || async {
            (kit.sandbox.servers(1001).len() == 1).then_some(())
        })
        .await;
    }
}
