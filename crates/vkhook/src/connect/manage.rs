//! What the status card does after connecting: VK's live view of our server, switching event types, and
//! «Отключить». Each VK refusal of the key goes to its one owner (`Connector::vk_result`).

use crate::model::VkServerView;
use crate::store::LongPollRow;
use vk::GroupId;

use super::{ConnectError, Connector, API_VERSION};

/// What happened when the admin pressed «Отключить».
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnected {
    /// Our server was deleted at VK (or was already gone), and what vkhook switched on for Long Poll is off.
    Removed,
    /// VK no longer accepts our key: the server may still be there (the receiver answers `remove` to it).
    TokenDead,
    /// We held no server id.
    NothingAtVk,
}

impl Connector {
    /// Deletes our server at VK, switches off at VK what vkhook switched on for Long Poll, and forgets the key,
    /// secrets and code.
    pub async fn disconnect(&self, group_id: GroupId) -> Result<Disconnected, ConnectError> {
        let settings = self.store.community_settings(group_id).await?;
        let server_id = settings.as_ref().and_then(|s| s.server_id);
        let key = self.credentials.community_key(group_id).await?;
        let polled = self.store.long_poll(group_id).await?;
        let callback = match (server_id, &key) {
            (Some(server_id), Some(key)) => {
                let call = self.vk.groups_delete_callback_server(&key.token, group_id, server_id).await;
                Some(Self::undone(call)?)
            }
            (Some(_), None) => Some(Disconnected::TokenDead),
            (None, _) => None,
        };
        let long_poll = match (&polled, &key) {
            (Some(row), Some(key)) => Some(self.switch_long_poll_off(group_id, &key.token, row).await?),
            (Some(_), None) => Some(Disconnected::TokenDead),
            (None, _) => None,
        };
        if polled.is_some() {
            self.store.stop_long_poll(group_id).await?;
        }
        self.credentials.forget(group_id).await?;
        tracing::info!(group_id = group_id.0, "community disconnected");
        Ok(match (callback, long_poll) {
            (Some(Disconnected::TokenDead), _) | (_, Some(Disconnected::TokenDead)) => Disconnected::TokenDead,
            (None, None) => Disconnected::NothingAtVk,
            _ => Disconnected::Removed,
        })
    }

    /// Switches off what vkhook switched on for Long Poll — Long Poll itself only if vkhook switched it on, and
    /// only the event types it switched on: the setting is shared with the community's other tools
    /// (https://dev.vk.com/ru/method/groups.setLongPollSettings).
    async fn switch_long_poll_off(
        &self,
        group_id: GroupId,
        token: &vk::AccessToken,
        row: &LongPollRow,
    ) -> Result<Disconnected, ConnectError> {
        let off = row.switched_on();
        let enabled = row.enabled_by_us.then_some(false);
        if enabled.is_none() && off.is_empty() {
            return Ok(Disconnected::Removed);
        }
        Self::undone(self.vk.groups_set_long_poll_settings(token, group_id, enabled, None, &[], &off).await)
    }

    /// What a VK call that undoes our setup means: done (or nothing left to undo), or a key VK no longer accepts.
    fn undone(call: Result<(), vk::Error>) -> Result<Disconnected, ConnectError> {
        match call {
            Ok(()) => Ok(Disconnected::Removed),
            Err(e) if e.code() == Some(vk::code::NOT_FOUND) => Ok(Disconnected::Removed),
            Err(e) if e.needs_reauth() || e.is_access_denied() => Ok(Disconnected::TokenDead),
            Err(e) => Err(e.into()),
        }
    }

    /// Switches event types on and off (only `setCallbackSettings`); unknown names are ignored.
    pub async fn save_events(&self, group_id: GroupId, chosen: &[String]) -> Result<(), ConnectError> {
        let on: Vec<&str> =
            vk::DEFAULT_SUBSCRIPTION.iter().copied().filter(|e| chosen.iter().any(|c| c == e)).collect();
        let off: Vec<&str> = vk::DEFAULT_SUBSCRIPTION.iter().copied().filter(|e| !on.contains(e)).collect();
        let settings = self.store.community_settings(group_id).await?.ok_or(ConnectError::NotConnected)?;
        let key = self.credentials.community_key(group_id).await?.ok_or(ConnectError::NotConnected)?;
        let server_id = settings.server_id.ok_or(ConnectError::NotConnected)?;
        let version = settings.api_version.as_deref().unwrap_or(API_VERSION);
        let call = self.vk.groups_set_callback_settings(&key.token, group_id, server_id, version, &on, &off);
        self.vk_result(group_id, call.await).await?;
        self.store.set_events(group_id, &on.join(",")).await?;
        Ok(())
    }

    /// VK's view of our server right now (status, URL, enabled events, API version); records the status.
    pub async fn vk_server_view(
        &self,
        group_id: GroupId,
    ) -> Result<(vk::CallbackServer, vk::CallbackSettings), ConnectError> {
        let settings = self.store.community_settings(group_id).await?;
        let server_id = settings.and_then(|s| s.server_id).ok_or(ConnectError::NotConnected)?;
        let key = self.credentials.community_key(group_id).await?.ok_or(ConnectError::NotConnected)?;
        let group = group_id;
        let servers = self.vk_result(group_id, self.vk.groups_get_callback_servers(&key.token, group).await).await?;
        let Some(server) = servers.into_iter().find(|s| s.id == server_id) else {
            self.store.set_vk_server_status(group_id, &VkServerView::Missing).await?;
            return Err(ConnectError::NotConnected);
        };
        self.store.set_vk_server_status(group_id, &VkServerView::Listed(server.status.clone())).await?;
        let call = self.vk.groups_get_callback_settings(&key.token, group, server_id).await;
        let live = self.vk_result(group_id, call).await?;
        Ok((server, live))
    }

    /// The «10 servers» page: every server at VK (title, URL, status), fetched now.
    pub async fn occupied_slots(&self, group_id: GroupId) -> Result<Vec<vk::CallbackServer>, ConnectError> {
        let Some(key) = self.credentials.community_key(group_id).await? else { return Ok(Vec::new()) };
        let call = self.vk.groups_get_callback_servers(&key.token, group_id).await;
        self.vk_result(group_id, call).await
    }
}
