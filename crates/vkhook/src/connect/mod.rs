//! «🔗 Подключить Callback API»: setting up a community's Callback API at VK, as recorded steps.
//!
//! 1. Token: a community key with `manage` (from the community authorization; never a user token — callback
//!    server methods take a community token: `access_token_type` of `groups.addCallbackServer` in
//!    `vendor/vk-api-schema/groups/methods.json`).
//! 2. Code: `getCallbackConfirmationCode`, committed with the secret **before** the server is added or edited,
//!    so our endpoint answers VK's confirmation the moment it comes (VK asks right after add/edit:
//!    https://dev.vk.com/ru/api/callback/getting-started). The secret is kept unless something needs a new one
//!    (`Credentials::secret_for_setup`); after a rotation the previous one stays accepted for VK's retry window.
//! 3. Server: ours is the one whose URL is our callback URL (others are never touched): edit it, or add it.
//! 4. Events: `setCallbackSettings(server_id, api_version=5.199, …)`.
//! 5. Confirmation: poll `getCallbackServers` until VK says `ok` (or `failed`, or time runs out).
//!
//! Every step is idempotent, the run holds a lease, and its record says where it is: a reload shows it, a second
//! click joins it, and a run whose runner died is resumed from the start with one server as the result.
//!
//! - [`authorize`]: the connect button and the community authorization (oauth.vk.com).
//! - [`bulk`]: several communities with one consent, and «Отключить выбранные».
//! - [`run`]: the setup run, step by step; `long_poll`: its steps when the admin connects by Bots Long Poll.
//! - [`manage`]: what the status card does afterwards: VK's view, event types, disconnect.
//! - [`manual`]: the manual setup (the admin pastes our URL and secret at VK).
//!
//! No HTTP types here. When VK refuses the community key, this module calls `bot::BotControl::pause_for_reauth`;
//! the bot never calls this module.

pub mod authorize;
pub mod bulk;
mod long_poll;
pub mod manage;
pub mod manual;
pub mod run;

use std::sync::Arc;
use std::time::Duration;
use vk::GroupId;
use vk::UserId;

use crate::bot::BotControl;
use crate::credentials::Credentials;
use crate::hooks::Hooks;
use crate::model::{SetupMode, SetupState, StepState};
use crate::roles::Roles;
use crate::store::{now_ms, SetupRow, Store, StoreError};
use crate::urls::PublicUrl;

pub use authorize::{AuthFailure, Authorized, CommunityRedirect, ConnectOptions, Started};
pub use bulk::{BulkChoice, BulkStarted, CONSENT_MAX_COMMUNITIES};
pub use manage::Disconnected;

pub use crate::urls::{CALLBACK_PATH, COMMUNITY_CALLBACK_PATH};
/// The server's title at VK (at most 14 characters: `title` of `groups.addCallbackServer`).
pub const SERVER_TITLE: &str = "vkhook";
pub const API_VERSION: &str = vk::API_VERSION;

/// Why something that needs VK could not be done for a community.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No server id or no usable key: the community is not connected through the API.
    #[error("the community is not connected through the API")]
    NotConnected,
    /// A key that belongs to another community.
    #[error("the key belongs to another community")]
    OtherCommunity,
    #[error(transparent)]
    Vk(#[from] vk::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The connect flow's settings.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// What the community authorization asks for (`manage,messages`).
    pub community_scopes: Vec<String>,
    pub setup_lease: Duration,
    pub setup_poll: Duration,
    pub confirm_timeout: Duration,
    /// How the server step is retried as a whole.
    pub retry: vk::RetryPolicy,
    /// After a rotation, how long the previous callback secret is still accepted (VK's retry window).
    pub previous_secret_window: Duration,
    /// How long our edited server may keep a `failed` status before it is deleted and added afresh.
    pub failed_grace: Duration,
}

/// Everything the connect flow uses.
#[derive(Clone)]
pub struct Connector {
    store: Store,
    credentials: Credentials,
    vk: vk::Client,
    oauth: vk::OAuthClient,
    bot: BotControl,
    roles: Roles,
    hooks: Arc<Hooks>,
    public_url: PublicUrl,
    config: ConnectConfig,
    /// Rung when a community's Long Poll starts: this instance's poller takes it at once.
    long_poll_wakeup: Arc<tokio::sync::Notify>,
}

impl Connector {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        credentials: Credentials,
        vk: vk::Client,
        oauth: vk::OAuthClient,
        bot: BotControl,
        roles: Roles,
        hooks: Arc<Hooks>,
        public_url: PublicUrl,
        config: ConnectConfig,
    ) -> Connector {
        let long_poll_wakeup = Arc::new(tokio::sync::Notify::new());
        Connector { store, credentials, vk, oauth, bot, roles, hooks, public_url, config, long_poll_wakeup }
    }

    /// The poller's bell ([`crate::longpoll::Poller::wakeup`]).
    pub fn with_long_poll_wakeup(mut self, wakeup: Arc<tokio::sync::Notify>) -> Connector {
        self.long_poll_wakeup = wakeup;
        self
    }

    /// The base URL VK and browsers use.
    pub fn public_url(&self) -> &PublicUrl {
        &self.public_url
    }

    /// The URL VK posts events to.
    pub fn callback_url(&self) -> String {
        self.public_url.join(CALLBACK_PATH)
    }

    fn lease_ms(&self) -> i64 {
        self.config.setup_lease.as_millis() as i64
    }

    /// A VK call's result; a refused key is handed to its one owner before the error goes back.
    async fn vk_result<T>(&self, group_id: GroupId, result: Result<T, vk::Error>) -> Result<T, ConnectError> {
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.needs_reauth() {
                    self.bot.pause_for_reauth(group_id, &e).await?;
                }
                Err(e.into())
            }
        }
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

/// A new run record in `state`.
pub(super) fn new_run(
    group_id: GroupId,
    user_id: UserId,
    state: SetupState,
    options: &ConnectOptions,
    lease_until: i64,
) -> SetupRow {
    let now = now_ms();
    SetupRow {
        group_id: group_id.0,
        run_id: vk::oauth::random_urlsafe(12),
        state,
        step_token: if state == SetupState::WaitingToken { StepState::Running } else { StepState::Pending },
        step_code: StepState::Pending,
        step_server: StepState::Pending,
        step_events: StepState::Pending,
        step_confirm: StepState::Pending,
        error_kind: None,
        error_detail: None,
        started_by: user_id.0,
        started_at: now,
        updated_at: now,
        finished_at: None,
        vk_calls: 0,
        replace_server_id: options.replace_server_id,
        lease_until,
        bot_enabled: options.bot_enabled,
        bot_reply: options.bot_reply.clone(),
        mode: if options.long_poll { SetupMode::LongPoll } else { SetupMode::Api },
    }
}

/// Waits (for tests and the benchmark) until the community's setup finishes; returns the record.
#[cfg(feature = "testing")]
pub async fn wait_for_setup(
    store: &Store,
    group_id: GroupId,
    timeout: Duration,
) -> Result<Option<SetupRow>, StoreError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let setup = store.setup(group_id).await?;
        if setup.as_ref().is_none_or(SetupRow::is_finished) || std::time::Instant::now() >= deadline {
            return Ok(setup);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CommunityStatus, ErrorKind, PauseReason};
    use crate::testkit::Kit;

    #[tokio::test]
    async fn a_setup_run_registers_one_server_that_vk_confirms() {
        let kit = Kit::new().await;
        kit.connected(GroupId(1001)).await;
        let servers = kit.sandbox.servers(1001);
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].url, kit.connector.callback_url());
        assert_eq!(servers[0].status, vk_sandbox::ServerStatus::Ok, "VK asked us and got the stored code");
        let settings = kit.store.community_settings(GroupId(1001)).await.unwrap().unwrap();
        assert_eq!((settings.status, settings.server_id), (CommunityStatus::Connected, Some(servers[0].id)));
        // Connecting again edits the same server and keeps the secret (nothing needs a new one).
        let first_secret = kit.credentials.current_callback_secret(GroupId(1001)).await.unwrap().unwrap();
        kit.connected(GroupId(1001)).await;
        assert_eq!(kit.sandbox.servers(1001).len(), 1, "edited, not added again");
        let second = kit.credentials.current_callback_secret(GroupId(1001)).await.unwrap().unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&first_secret), secrecy::ExposeSecret::expose_secret(&second));
    }

    #[tokio::test]
    async fn a_run_without_a_key_asks_for_a_new_authorization() {
        let kit = Kit::new().await;
        assert!(kit.connector.start_repair(GroupId(1001)).await.unwrap());
        let setup = wait_for_setup(&kit.store, GroupId(1001), Duration::from_secs(5)).await.unwrap().unwrap();
        assert_eq!((setup.state, setup.error_kind), (SetupState::Failed, Some(ErrorKind::Reauth)));
        assert!(kit.sandbox.servers(1001).is_empty());
    }

    #[tokio::test]
    async fn saving_event_types_with_a_dead_key_pauses_the_bot_once() {
        let kit = Kit::new().await;
        kit.connected(GroupId(1001)).await;
        kit.revoke_key(GroupId(1001)).await;
        let err = kit.connector.save_events(GroupId(1001), &["message_new".into()]).await.unwrap_err();
        assert!(matches!(&err, ConnectError::Vk(e) if e.needs_reauth()), "{err:?}");
        let settings = kit.store.community_settings(GroupId(1001)).await.unwrap().unwrap();
        assert_eq!(settings.status, CommunityStatus::NeedsReauth);
        assert_eq!(
            kit.store.bot_settings(GroupId(1001)).await.unwrap().unwrap().paused_reason,
            Some(PauseReason::Reauth)
        );
        // Seen again (the page, «Проверить»): no key any more, nothing new logged.
        assert!(matches!(kit.connector.vk_server_view(GroupId(1001)).await, Err(ConnectError::NotConnected)));
        let paused = kit.store.community_log(GroupId(1001), 10).await.unwrap();
        assert_eq!(paused.len(), 1, "{paused:?}");
    }

    #[tokio::test]
    async fn disconnect_removes_only_our_server() {
        let kit = Kit::new().await;
        kit.connected(GroupId(1001)).await;
        assert_eq!(kit.connector.disconnect(GroupId(1001)).await.unwrap(), Disconnected::Removed);
        assert!(kit.sandbox.servers(1001).is_empty());
        let settings = kit.store.community_settings(GroupId(1001)).await.unwrap().unwrap();
        assert_eq!((settings.status, settings.secret), (CommunityStatus::NotConnected, None));
        assert_eq!(kit.connector.disconnect(GroupId(1001)).await.unwrap(), Disconnected::NothingAtVk);
    }
}
