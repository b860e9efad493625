//! The connect button and the community authorization: a community key comes only from oauth.vk.com's
//! community flow (`group_ids=<id>`, then `access_token_<id>` from the code exchange); VK ID cannot issue one
//! (https://dev.vk.com/ru/api/access-token/community-token/in-application).

use secrecy::SecretString;
use vk::UserId;
use vk::{CommunityScope, GroupId};

use super::{new_run, Connector, COMMUNITY_CALLBACK_PATH};
use crate::accounts::{hash_hex, OAUTH_STATE_TTL_MS};
use crate::logging::Untrusted;
use crate::model::{ErrorKind, OAuthPurpose, Role, SetupMode, SetupState, StepState};
use crate::store::{now_ms, OAuthStateRow, StoreError, StoreResult};

/// What the admin chose on the connect form.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Error 2000: the server the admin picked to replace.
    pub replace_server_id: Option<i64>,
    /// Ask for a new community key even if one is stored.
    pub reauthorize: bool,
    pub bot_enabled: bool,
    pub bot_reply: Option<String>,
    /// Started from a bulk run's page («Попробовать снова»): the consent, if one is needed, returns there.
    pub bulk_id: Option<String>,
    /// Set up Bots Long Poll instead of the Callback API.
    pub long_poll: bool,
}

#[derive(Debug)]
pub enum Started {
    /// The setup runs; show its progress.
    Running,
    /// A run is already going (a second click): show its progress.
    AlreadyRunning,
    /// We need a community key first: send the admin to VK.
    NeedsToken(url::Url),
}

/// What oauth.vk.com put on the redirect back.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CommunityRedirect {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Why a community authorization did not give us a usable key. Nothing is stored in any of these cases.
#[derive(Debug)]
pub enum AuthFailure {
    /// Unknown, reused, expired or another session's `state`.
    BadState,
    /// VK sent an error back without a `state` we know (it may leave `state` out of an error redirect): the admin
    /// refused (`access_denied`), or VK refused the request (`true`: `access_denied`).
    RefusedWithoutState {
        denied: bool,
    },
    /// The admin pressed «Отмена» (or is not the community's administrator at VK).
    Denied(i64),
    /// VK did not grant a community whose role was never proven: only its administrator can.
    DeniedUnproven(i64),
    /// The key lacks `manage`.
    NoManage(i64),
    /// The signed-in user is no longer an administrator here.
    NotAdmin(i64),
    /// VK's code brought keys, but none for this community (a consent for other communities came back).
    OtherCommunity(i64),
    Vk(i64, vk::Error),
    Store(StoreError),
}

impl From<StoreError> for AuthFailure {
    fn from(e: StoreError) -> Self {
        AuthFailure::Store(e)
    }
}

/// What [`Connector::begin`] did for one community.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Begun {
    Running,
    AlreadyRunning,
    /// Recorded as waiting for a community key: the admin must consent at VK.
    NeedsToken,
}

/// Where oauth.vk.com's redirect leads.
#[derive(Debug)]
pub enum Authorized {
    /// One community: its progress page.
    One(i64),
    /// Several: the bulk run's page, or first the next consent when the run needs more than one.
    Bulk { bulk_id: String, next: Option<url::Url> },
}

impl Connector {
    /// Starts connecting `group_id` for administrator `user_id` (the caller checked the role).
    pub async fn start(
        &self,
        group_id: GroupId,
        user_id: UserId,
        session_hash: &str,
        options: ConnectOptions,
    ) -> StoreResult<Started> {
        Ok(match self.begin(group_id, user_id, &options).await? {
            Begun::Running => Started::Running,
            Begun::AlreadyRunning => Started::AlreadyRunning,
            Begun::NeedsToken => {
                let bulk = options.bulk_id.as_deref();
                Started::NeedsToken(self.authorize_url(&[GroupId(group_id.0)], bulk, session_hash).await?)
            }
        })
    }

    /// Records the run: with a stored key it starts at once, without one it waits for the admin's consent.
    pub(super) async fn begin(
        &self,
        group_id: GroupId,
        user_id: UserId,
        options: &ConnectOptions,
    ) -> StoreResult<Begun> {
        let has_key = !options.reauthorize
            && self.credentials.community_key(group_id).await?.is_some_and(|k| k.has(CommunityScope::Manage));
        let now = now_ms();
        if !has_key {
            let row = new_run(group_id, user_id, SetupState::WaitingToken, options, 0);
            return Ok(if self.store.begin_setup(&row, now).await? {
                Begun::NeedsToken
            } else {
                Begun::AlreadyRunning
            });
        }
        let row = new_run(group_id, user_id, SetupState::Running, options, now + self.lease_ms());
        if !self.store.begin_setup(&row, now).await? {
            return Ok(Begun::AlreadyRunning);
        }
        self.spawn_run(GroupId(row.group_id), row.run_id.clone(), Some(row.lease_until));
        Ok(Begun::Running)
    }

    /// Starts a setup run on vkhook's own initiative (the reconcile pass found our server gone or failed), with the
    /// stored key, on behalf of whoever connected the community. False when a run is already going.
    pub async fn start_repair(&self, group_id: GroupId) -> StoreResult<bool> {
        let by = self.store.community_settings(group_id).await?.and_then(|s| s.connected_by).unwrap_or(0);
        let now = now_ms();
        let mut row =
            new_run(group_id, UserId(by), SetupState::Running, &ConnectOptions::default(), now + self.lease_ms());
        row.step_token = StepState::Done;
        if !self.store.begin_setup(&row, now).await? {
            return Ok(false);
        }
        self.spawn_run(group_id, row.run_id.clone(), Some(row.lease_until));
        Ok(true)
    }

    /// The community authorization URL for `group_ids`, with a `state` bound to the session, the communities and
    /// the bulk run if there is one.
    pub(super) async fn authorize_url(
        &self,
        group_ids: &[GroupId],
        bulk_id: Option<&str>,
        session_hash: &str,
    ) -> StoreResult<url::Url> {
        let state = vk::oauth::random_urlsafe(32);
        let several = bulk_id.is_some() || group_ids.len() > 1;
        self.store
            .insert_oauth_state(&OAuthStateRow {
                state_hash: hash_hex(&state),
                session_hash: session_hash.to_owned(),
                kind: OAuthPurpose::Community,
                verifier: None,
                group_id: if several { None } else { group_ids.first().copied().map(|id| id.0) },
                created_at: now_ms(),
                group_ids: several.then(|| group_ids.iter().map(GroupId::to_string).collect::<Vec<_>>().join(",")),
                bulk_id: bulk_id.map(str::to_owned),
            })
            .await?;
        let scopes: Vec<&str> = self.config.community_scopes.iter().map(String::as_str).collect();
        let redirect = self.public_url.join(COMMUNITY_CALLBACK_PATH);
        let groups: Vec<GroupId> = group_ids.to_vec();
        Ok(self.oauth.community_authorize_url(&redirect, &groups, &scopes, &state))
    }

    /// Finishes the community authorization: exchanges the code server-side, checks each key's real scopes, stores
    /// it sealed, and continues the setup without another click.
    pub async fn finish_authorization(
        &self,
        session_hash: &str,
        user_id: UserId,
        back: &CommunityRedirect,
    ) -> Result<Authorized, AuthFailure> {
        let pending = match self.take_state(session_hash, back).await {
            Ok(pending) => pending,
            // An error redirect says what happened even when its `state` is gone: never "bad state" for it.
            Err(AuthFailure::BadState) if back.error.is_some() => {
                let err = vk::oauth::redirect_error(back.error.as_deref(), back.error_description.as_deref());
                let denied = err.as_ref().is_some_and(|e| e.is_access_denied());
                tracing::info!(
                    error = %Untrusted(back.error.as_deref().unwrap_or_default()),
                    "a community authorization error came back without a state we know"
                );
                return Err(AuthFailure::RefusedWithoutState { denied });
            }
            Err(e) => return Err(e),
        };
        if let Some(bulk_id) = pending.bulk_id.clone() {
            return self.finish_bulk_authorization(session_hash, user_id, back, bulk_id, pending.communities()).await;
        }
        let group_id = pending.group_id.ok_or(AuthFailure::BadState)?;
        if let Some(err) = vk::oauth::redirect_error(back.error.as_deref(), back.error_description.as_deref()) {
            tracing::info!(
                group_id,
                error = %Untrusted(&err.error),
                description = %Untrusted(&err.description),
                "community authorization not granted"
            );
            self.fail_waiting_setup(GroupId(group_id), ErrorKind::Denied).await?;
            let listed = self.store.community_for_user(user_id, GroupId(group_id)).await?;
            if listed.is_some_and(|c| c.role == Role::Unknown) {
                return Err(AuthFailure::DeniedUnproven(group_id));
            }
            return Err(AuthFailure::Denied(group_id));
        }
        if !self.administers(user_id, GroupId(group_id)).await? {
            return Err(AuthFailure::NotAdmin(group_id));
        }
        if back.code.as_deref().is_none_or(str::is_empty) {
            return Err(AuthFailure::BadState);
        }
        let tokens = self.exchange(back).await.map_err(|e| AuthFailure::Vk(group_id, e))?;
        // Keys for any other community are dropped here, never stored: the admin asked for this one.
        let granted: Vec<i64> = tokens.iter().map(|(g, _)| g.0).collect();
        let Some((_, token)) = tokens.into_iter().find(|(g, _)| g.0 == group_id) else {
            tracing::warn!(
                group_id = group_id,
                ?granted,
                "VK's code brought keys for other communities only: none kept"
            );
            self.fail_waiting_setup(GroupId(group_id), ErrorKind::OtherCommunity).await?;
            return Err(AuthFailure::OtherCommunity(group_id));
        };
        self.accept_key(GroupId(group_id), user_id, &token).await?;
        Ok(Authorized::One(group_id))
    }

    /// Whether `user_id` may bring a consent for `group_id`: the stored list says they administer it (VK was asked
    /// before the consent), or VK has not said yet (added by link) — the consent itself then proves it.
    pub(super) async fn administers(&self, user_id: UserId, group_id: GroupId) -> StoreResult<bool> {
        let manager = self.store.community_for_user(user_id, group_id).await?;
        Ok(manager.is_some_and(|c| matches!(c.role, Role::Administrator | Role::Unknown)))
    }

    /// Exchanges the code on the redirect for the keys it brings (one `access_token_<id>` per community).
    pub(super) async fn exchange(
        &self,
        back: &CommunityRedirect,
    ) -> Result<Vec<(GroupId, vk::AccessToken)>, vk::Error> {
        let code = back.code.clone().filter(|c| !c.is_empty()).unwrap_or_default();
        let redirect = self.public_url.join(COMMUNITY_CALLBACK_PATH);
        self.oauth.community_exchange_code(&SecretString::from(code), &redirect).await
    }

    /// Checks a community's new key at VK (`groups.getTokenPermissions`), stores it sealed and continues the setup.
    /// A refusal is recorded on the community's setup; the error says which.
    pub(super) async fn accept_key(
        &self,
        group_id: GroupId,
        user_id: UserId,
        token: &vk::AccessToken,
    ) -> Result<(), AuthFailure> {
        let permissions = match self.vk.groups_get_token_permissions(token).await {
            Ok(p) => p,
            Err(e) => {
                self.fail_waiting_setup(group_id, ErrorKind::from_vk(&e)).await?;
                return Err(AuthFailure::Vk(group_id.0, e));
            }
        };
        if !permissions.has(CommunityScope::Manage) {
            tracing::info!(group_id = group_id.0, scopes = ?permissions.names(), "community key without manage: not stored");
            self.fail_waiting_setup(group_id, ErrorKind::NoManage).await?;
            return Err(AuthFailure::NoManage(group_id.0));
        }
        // Only an administrator can grant a community key: the consent proves the role, unless the managers' list
        // says the person at VK's page was someone else.
        if !self.roles.prove_by_consent(user_id, group_id, token).await? {
            tracing::warn!(
                group_id = group_id.0,
                user_id = user_id.0,
                "a consent from a VK account other than the signed-in user's: not stored"
            );
            self.fail_waiting_setup(group_id, ErrorKind::NotAdmin).await?;
            return Err(AuthFailure::NotAdmin(group_id.0));
        }
        self.credentials.save_community_key(group_id, token.secret(), &permissions.names()).await?;
        tracing::info!(group_id = group_id.0, "community key stored");
        self.continue_setup(group_id, user_id).await?;
        Ok(())
    }

    /// The pending authorization `back.state` names, if it is this session's, for communities, and fresh.
    async fn take_state(&self, session_hash: &str, back: &CommunityRedirect) -> Result<OAuthStateRow, AuthFailure> {
        let pending = match back.state.as_deref().filter(|s| !s.is_empty()) {
            Some(state) => self.store.take_oauth_state(&hash_hex(state)).await?,
            None => None,
        };
        pending
            .filter(|p| {
                p.kind == OAuthPurpose::Community
                    && p.session_hash == session_hash
                    && now_ms() - p.created_at < OAUTH_STATE_TTL_MS
                    && !p.communities().is_empty()
            })
            .ok_or(AuthFailure::BadState)
    }

    /// Ends the community's run that waits for a consent as failed; a run already going (started meanwhile from
    /// another page) is left alone.
    pub(super) async fn fail_waiting_setup(&self, group_id: GroupId, kind: ErrorKind) -> StoreResult<()> {
        let setup = self.store.setup(group_id).await?;
        if let Some(setup) = setup.filter(|s| s.state == SetupState::WaitingToken) {
            self.store.finish_setup(group_id, &setup.run_id, SetupState::Failed, Some((kind, "")), 0).await?;
        }
        Ok(())
    }

    /// Continues the setup the admin started, with the options they chose then.
    async fn continue_setup(&self, group_id: GroupId, user_id: UserId) -> StoreResult<()> {
        let previous = self.store.setup(group_id).await?;
        let options = ConnectOptions {
            replace_server_id: previous.as_ref().and_then(|p| p.replace_server_id),
            reauthorize: false,
            bot_enabled: previous.as_ref().is_some_and(|p| p.bot_enabled),
            bot_reply: previous.as_ref().and_then(|p| p.bot_reply.clone()),
            bulk_id: None,
            long_poll: previous.as_ref().is_some_and(|p| p.mode == SetupMode::LongPoll),
        };
        let now = now_ms();
        let mut run = new_run(group_id, user_id, SetupState::Running, &options, now + self.lease_ms());
        run.step_token = StepState::Done;
        if self.store.begin_setup(&run, now).await? {
            self.spawn_run(group_id, run.run_id.clone(), Some(run.lease_until));
        }
        Ok(())
    }
}
