//! The manual setup: the admin pastes our URL and secret into the community's settings at VK, and our endpoint
//! answers the confirmation string VK shows there (it differs from the API's code:
//! https://dev.vk.com/ru/api/callback/getting-started). Optionally a community key made by hand.

use secrecy::SecretString;
use vk::AccessToken;
use vk::GroupId;

use super::{ConnectError, Connector};

impl Connector {
    /// The secret to paste at VK (created once when `create` is set), sealed like the API one.
    pub async fn manual_secret(&self, group_id: GroupId, create: bool) -> Result<Option<SecretString>, ConnectError> {
        Ok(self.credentials.manual_secret(group_id, create).await?)
    }

    /// Saves the confirmation string VK shows in the community's settings (with a secret to paste, made if
    /// there is none yet).
    pub async fn save_manual_confirmation(&self, group_id: GroupId, code: &str) -> Result<(), ConnectError> {
        self.credentials.manual_secret(group_id, true).await?;
        Ok(self.credentials.save_manual_confirmation(group_id, code).await?)
    }

    /// A community key the admin made by hand at VK: checked with `getTokenPermissions` and `getById` (whose key
    /// it is), stored sealed. Returns the scopes it has.
    pub async fn save_manual_key(&self, group_id: GroupId, key: SecretString) -> Result<Vec<String>, ConnectError> {
        let token = AccessToken::community(key);
        let permissions = self.vk.groups_get_token_permissions(&token).await?;
        // A key of another community would pass getTokenPermissions too: check whose it is.
        let groups = self.vk.groups_get_by_id(&token, &[]).await?;
        if groups.first().is_none_or(|g| g.id != group_id) {
            return Err(ConnectError::OtherCommunity);
        }
        let names = permissions.names();
        self.credentials.save_community_key(group_id, token.secret(), &names).await?;
        Ok(names)
    }
}
