//! «Подключить через Long Poll»: the same recorded run under a lease, with Bots Long Poll's steps
//! (https://dev.vk.com/ru/api/bots-long-poll/getting-started). The community's Long Poll setting is one, shared with
//! every other tool of the community (`groups.setLongPollSettings`,
//! https://dev.vk.com/ru/method/groups.setLongPollSettings), so vkhook only ever switches things **on**, records
//! what it switched on before it asks VK, and switches off exactly that at «Отключить».
//!
//! 1. Token: a community key with `manage` (as for Callback).
//! 2. Read the setting (`groups.getLongPollSettings`).
//! 3. Switch Long Poll on if it is off, then with vkhook's API version; a version another tool chose while Long Poll
//!    was on is kept, and each event's own `v` says what it is.
//! 4. Switch on the wanted event types that are off.
//! 5. VK's place now (`groups.getLongPollServer`'s `ts`): polling starts there, so nothing after the connect is
//!    missed; the community is connected and the poller (`crate::longpoll`) takes it.

use vk::LongPollSettings;

use super::run::{Run, Stop};
use super::API_VERSION;
use crate::credentials::CommunityKey;
use crate::model::StepState;
use crate::store::{now_ms, Step};

impl Run {
    pub(super) async fn long_poll(&mut self, key: &CommunityKey) -> Result<(), Stop> {
        let vk = self.connector.vk.clone();
        let gid = self.group_id;
        self.step(Step::Code, StepState::Running).await?;
        let current: LongPollSettings = self.vk(vk.groups_get_long_poll_settings(&key.token, gid)).await?;
        self.step(Step::Code, StepState::Done).await?;

        self.step(Step::Server, StepState::Running).await?;
        let enable = !current.is_enabled;
        if enable {
            self.store().record_long_poll_switches(gid, &[], true, now_ms()).await?;
            self.vk(vk.groups_set_long_poll_settings(&key.token, gid, Some(true), Some(API_VERSION), &[], &[])).await?;
        }
        self.step(Step::Server, StepState::Done).await?;

        self.step(Step::Events, StepState::Running).await?;
        let wanted = self.wanted_events().await?;
        let missing = current.missing(&wanted);
        if !missing.is_empty() {
            self.store().record_long_poll_switches(gid, &missing, false, now_ms()).await?;
            self.vk(vk.groups_set_long_poll_settings(&key.token, gid, None, None, &missing, &[])).await?;
        }
        self.step(Step::Events, StepState::Done).await?;

        self.step(Step::Confirm, StepState::Running).await?;
        let session = self.vk(vk.groups_get_long_poll_server(&key.token, gid)).await?;
        self.store().start_long_poll(gid, Some(&session.ts), &[], false, now_ms()).await?;
        self.connector.long_poll_wakeup.notify_one();
        let version = match current.api_version.as_deref() {
            Some(v) if !enable && !v.is_empty() => v,
            _ => API_VERSION,
        };
        let by = self.store().setup(gid).await?.map(|s| s.started_by).filter(|by| *by > 0);
        self.store().mark_long_poll_connected(gid, version, &wanted.join(","), by).await?;
        self.start_bot().await?;
        self.step(Step::Confirm, StepState::Done).await
    }
}
