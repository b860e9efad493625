//! The setup run: the five steps, each recorded, under a lease. See the module above for the order and why.

use secrecy::SecretString;
use vk::{CommunityScope, GroupId, ServerStatus};

use super::{same_url, Connector, API_VERSION, SERVER_TITLE};
use crate::credentials::CommunityKey;
use crate::hooks::CrashPoint;
use crate::model::{CommunityStatus, ErrorKind, SetupMode, SetupState, StepState, VkServerView};
use crate::store::{now_ms, Step, StoreError, StoreResult};

/// Why a run stopped. The kind is stored and turned into a message in the admin's language.
#[derive(Debug)]
pub(super) struct Failure {
    kind: ErrorKind,
    detail: String,
    /// VK's error was transient (after the client's own retries).
    retryable: bool,
}

impl Failure {
    pub(super) fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Failure { kind, detail: detail.into(), retryable: false }
    }

    fn from_vk(e: &vk::Error) -> Self {
        Failure { kind: ErrorKind::from_vk(e), detail: e.to_string(), retryable: e.is_retryable() }
    }
}

pub(super) enum Stop {
    Failed(Failure),
    /// Lost the lease (replaced by a newer run) or a test crash point: leave the record as it is.
    Abandoned,
}

/// How waiting for VK's confirmation ended, short of an error.
#[derive(Debug, PartialEq, Eq)]
enum Confirmation {
    Ok,
    /// Our server kept VK's `failed` after this run's edit and past the grace, and VK never asked us: VK did not
    /// confirm the edited server again. Replace it.
    StillFailedAfterEdit,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Failed(Failure::new(ErrorKind::Internal, e.to_string()))
    }
}

pub(super) struct Run {
    pub(super) connector: Connector,
    pub(super) group_id: GroupId,
    run_id: String,
    lease: Option<i64>,
    vk_calls: i64,
    /// When this run edited an existing server of ours (Unix ms): a `failed` status after it may be VK's old one.
    edited_at: Option<i64>,
}

impl Connector {
    pub fn spawn_run(&self, group_id: GroupId, run_id: String, lease: Option<i64>) {
        let run = Run { connector: self.clone(), group_id, run_id, lease, vk_calls: 0, edited_at: None };
        tokio::spawn(run.run());
    }

    /// Resumes runs whose runner died (their lease expired). Returns how many.
    pub async fn resume_abandoned(&self) -> StoreResult<usize> {
        let abandoned = self.store.abandoned_setups(now_ms()).await?;
        for setup in &abandoned {
            tracing::info!(group_id = setup.group_id, "resuming an interrupted setup");
            self.spawn_run(GroupId(setup.group_id), setup.run_id.clone(), None);
        }
        Ok(abandoned.len())
    }

    /// Picks up the community's run if its runner died (someone is looking at its progress).
    pub fn resume_if_abandoned(&self, setup: &crate::store::SetupRow) {
        if setup.state == SetupState::Running && setup.lease_until < now_ms() {
            self.spawn_run(GroupId(setup.group_id), setup.run_id.clone(), None);
        }
    }
}

impl Run {
    async fn run(mut self) {
        let started = std::time::Instant::now();
        let group_id = self.group_id;
        match self.execute().await {
            Ok(()) => {
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(group_id = group_id.0, vk_calls = self.vk_calls, ms, "connected");
                let finished = self.store().finish_setup(group_id, &self.run_id, SetupState::Done, None, self.vk_calls);
                if let Err(e) = finished.await {
                    tracing::error!(group_id = group_id.0, error = %e, "could not record the finished setup");
                }
            }
            Err(Stop::Abandoned) => tracing::warn!(group_id = group_id.0, "setup run stopped without finishing"),
            Err(Stop::Failed(f)) => {
                if let Err(e) = self.record_failure(&f).await {
                    tracing::error!(group_id = group_id.0, error = %e, "could not record the failed setup");
                }
            }
        }
    }

    pub(super) fn store(&self) -> &crate::store::Store {
        &self.connector.store
    }

    async fn record_failure(&self, f: &Failure) -> StoreResult<()> {
        let group_id = self.group_id;
        if f.kind == ErrorKind::WrongTokenKind {
            tracing::error!(group_id = group_id.0, detail = %f.detail, "setup failed: a method refused the key's kind (a bug)");
        } else {
            tracing::warn!(group_id = group_id.0, kind = %f.kind, detail = %f.detail, "setup failed");
        }
        // A refused key was already handed to the bot's control (see `Run::vk`): it set «нужно переподключить».
        if f.kind != ErrorKind::Reauth {
            self.store().set_connection_status(group_id, CommunityStatus::Failed, Some(f.kind)).await?;
        }
        let error = Some((f.kind, f.detail.as_str()));
        self.store().finish_setup(group_id, &self.run_id, SetupState::Failed, error, self.vk_calls).await
    }

    /// Takes or renews the lease; a run that lost it stops.
    async fn renew(&mut self) -> Result<(), Stop> {
        let until = now_ms() + self.connector.lease_ms();
        if !self.store().claim_setup(self.group_id, &self.run_id, self.lease, until).await? {
            return Err(Stop::Abandoned);
        }
        self.lease = Some(until);
        Ok(())
    }

    pub(super) async fn step(&mut self, step: Step, state: StepState) -> Result<(), Stop> {
        self.renew().await?;
        self.store().set_setup_step(self.group_id, &self.run_id, step, state, self.vk_calls).await?;
        Ok(())
    }

    /// Counts a VK call; a refused key goes to its one owner (the bot's control).
    async fn vk_raw<T>(
        &mut self,
        call: impl std::future::Future<Output = Result<T, vk::Error>>,
    ) -> Result<Result<T, vk::Error>, Stop> {
        self.vk_calls += 1;
        let result = call.await;
        if let Err(e) = &result {
            if e.needs_reauth() {
                self.connector.bot.pause_for_reauth(self.group_id, e).await?;
            }
        }
        Ok(result)
    }

    /// A VK call whose every error stops the run.
    pub(super) async fn vk<T>(
        &mut self,
        call: impl std::future::Future<Output = Result<T, vk::Error>>,
    ) -> Result<T, Stop> {
        self.vk_raw(call).await?.map_err(|e| Stop::Failed(Failure::from_vk(&e)))
    }

    async fn execute(&mut self) -> Result<(), Stop> {
        let mode = self.store().setup(self.group_id).await?.map_or(SetupMode::Api, |s| s.mode);
        let key = self.key_step().await?;
        if mode == SetupMode::LongPoll {
            return self.long_poll(&key).await;
        }
        let secret = self.code_step(&key).await?;
        let server_id = self.server_step(&key, &secret).await?;
        let events = self.events_step(&key, server_id).await?;
        self.confirm_step(&key, &secret, server_id, &events).await
    }

    /// Step 1: a stored key with `manage`.
    async fn key_step(&mut self) -> Result<CommunityKey, Stop> {
        self.step(Step::Token, StepState::Running).await?;
        let Some(key) = self.connector.credentials.community_key(self.group_id).await? else {
            // No key at all (it was dropped when VK refused it): the admin must authorize again.
            self.store()
                .set_connection_status(self.group_id, CommunityStatus::NeedsReauth, Some(ErrorKind::Reauth))
                .await?;
            return Err(Stop::Failed(Failure::new(ErrorKind::Reauth, "no community key")));
        };
        if !key.has(CommunityScope::Manage) {
            return Err(Stop::Failed(Failure::new(ErrorKind::NoManage, key.scopes.join(","))));
        }
        self.step(Step::Token, StepState::Done).await?;
        Ok(key)
    }

    /// Step 2: the code and a new secret, committed before VK can ask for them.
    async fn code_step(&mut self, key: &CommunityKey) -> Result<SecretString, Stop> {
        self.step(Step::Code, StepState::Running).await?;
        let vk = self.connector.vk.clone();
        let code = self.vk(vk.groups_get_callback_confirmation_code(&key.token, self.group_id)).await?;
        let by_user = self.store().setup(self.group_id).await?.map(|s| s.started_by).unwrap_or_default();
        let secret = self
            .connector
            .credentials
            .secret_for_setup(self.group_id, secrecy::ExposeSecret::expose_secret(&code), by_user)
            .await?;
        self.step(Step::Code, StepState::Done).await?;
        Ok(secret)
    }

    /// Step 3: our server, edited or added. Listing and then editing or adding is idempotent as a whole, so it is
    /// retried as a whole: after an error where VK may have added the server anyway, the next list finds it and it
    /// is edited, not added again.
    async fn server_step(&mut self, key: &CommunityKey, secret: &SecretString) -> Result<i64, Stop> {
        self.step(Step::Server, StepState::Running).await?;
        let policy = self.connector.config.retry;
        let step_started = std::time::Instant::now();
        let mut attempt = 0;
        let server_id = loop {
            match self.place_server(key, secret).await {
                Ok(id) => break id,
                Err(Stop::Failed(f)) if f.retryable && attempt + 1 < policy.max_attempts => {
                    let delay = policy.backoff.delay(attempt);
                    if step_started.elapsed() + delay > policy.deadline {
                        return Err(Stop::Failed(f));
                    }
                    tracing::info!(group_id = self.group_id.0, kind = %f.kind, attempt, "server step failed; trying it again");
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                }
                Err(other) => return Err(other),
            }
        };
        if self.connector.hooks.fire(CrashPoint::SetupAfterServer) {
            return Err(Stop::Abandoned);
        }
        self.step(Step::Server, StepState::Done).await?;
        Ok(server_id)
    }

    /// Finds our server by URL and edits it, or adds it; deletes the slot the admin picked first if needed.
    async fn place_server(&mut self, key: &CommunityKey, secret: &SecretString) -> Result<i64, Stop> {
        let vk = self.connector.vk.clone();
        let group = self.group_id;
        let url = self.connector.callback_url();
        let servers = self.vk(vk.groups_get_callback_servers(&key.token, group)).await?;
        let ours = servers.iter().find(|s| same_url(&s.url, &url)).map(|s| s.id);
        if let Some(victim) = self.replace_target(&servers, ours).await? {
            // The admin picked this slot explicitly on the «10 servers» page.
            match self.vk_raw(vk.groups_delete_callback_server(&key.token, group, victim)).await? {
                Ok(()) => {
                    tracing::info!(group_id = self.group_id.0, server_id = victim, "replaced a server the admin picked")
                }
                Err(e) if e.code() == Some(vk::code::NOT_FOUND) => {}
                Err(e) => return Err(Stop::Failed(Failure::from_vk(&e))),
            }
        }
        match ours {
            Some(id) => {
                self.vk(vk.groups_edit_callback_server(&key.token, group, id, &url, SERVER_TITLE, Some(secret)))
                    .await?;
                self.edited_at = Some(now_ms());
                Ok(id)
            }
            None => self.vk(vk.groups_add_callback_server(&key.token, group, &url, SERVER_TITLE, Some(secret))).await,
        }
    }

    /// The server to delete for ours: only the one the admin picked, only if ours is not there already, and
    /// never ours.
    async fn replace_target(&self, servers: &[vk::CallbackServer], ours: Option<i64>) -> Result<Option<i64>, Stop> {
        if ours.is_some() {
            return Ok(None);
        }
        let setup = self.store().setup(self.group_id).await?;
        Ok(setup.and_then(|s| s.replace_server_id).filter(|id| servers.iter().any(|s| s.id == *id)))
    }

    /// Step 4: the event types (the admin's choice, or the default subscription) at API 5.199.
    async fn events_step(&mut self, key: &CommunityKey, server_id: i64) -> Result<Vec<&'static str>, Stop> {
        self.step(Step::Events, StepState::Running).await?;
        let events = self.wanted_events().await?;
        let off: Vec<&str> = vk::DEFAULT_SUBSCRIPTION.iter().copied().filter(|e| !events.contains(e)).collect();
        let vk = self.connector.vk.clone();
        let group = self.group_id;
        self.vk(vk.groups_set_callback_settings(&key.token, group, server_id, API_VERSION, &events, &off)).await?;
        self.step(Step::Events, StepState::Done).await?;
        Ok(events)
    }

    /// The event types to receive: the admin's choice, or the default subscription.
    pub(super) async fn wanted_events(&self) -> Result<Vec<&'static str>, Stop> {
        let settings = self.store().community_settings(self.group_id).await?;
        let chosen = settings.map(|s| s.event_list()).unwrap_or_default();
        Ok(if chosen.is_empty() {
            vk::DEFAULT_SUBSCRIPTION.to_vec()
        } else {
            vk::DEFAULT_SUBSCRIPTION.iter().copied().filter(|e| chosen.iter().any(|c| c == e)).collect()
        })
    }

    /// After the connection is recorded: the bot the admin chose on the connect form, and the bot let go.
    pub(super) async fn start_bot(&self) -> Result<(), Stop> {
        let gid = self.group_id;
        if let Some(setup) = self.store().setup(gid).await?.filter(|s| s.bot_enabled) {
            self.connector.bot.enable_on_connect(gid, setup.bot_reply.as_deref()).await?;
        }
        self.connector.bot.resume(gid).await?;
        Ok(())
    }

    /// Step 5: wait for VK's confirmation, then record the connection and let the bot go.
    async fn confirm_step(
        &mut self,
        key: &CommunityKey,
        secret: &SecretString,
        server_id: i64,
        events: &[&str],
    ) -> Result<(), Stop> {
        self.step(Step::Confirm, StepState::Running).await?;
        let server_id = match self.wait_for_ok(key, server_id).await? {
            Confirmation::Ok => server_id,
            Confirmation::StillFailedAfterEdit => {
                let fresh = self.replace_failed_server(key, secret, server_id).await?;
                self.events_step(key, fresh).await?;
                self.step(Step::Confirm, StepState::Running).await?;
                // A fresh server was not edited: `failed` now is VK's answer to it, reported as such.
                self.wait_for_ok(key, fresh).await?;
                fresh
            }
        };
        let gid = self.group_id;
        let setup = self.store().setup(gid).await?;
        let by = setup.as_ref().map(|s| s.started_by).filter(|by| *by > 0);
        self.store().mark_connected(gid, Some(server_id), API_VERSION, &events.join(","), by).await?;
        self.start_bot().await?;
        self.step(Step::Confirm, StepState::Done).await
    }

    /// Deletes our server that stayed `failed` after an edit and adds a fresh one (same URL, title and secret). Only
    /// ever the server this run found by our URL: never anyone else's. VK does not document whether an edit
    /// resets a `failed` status, so a server that keeps it is replaced.
    async fn replace_failed_server(
        &mut self,
        key: &CommunityKey,
        secret: &SecretString,
        old: i64,
    ) -> Result<i64, Stop> {
        let vk = self.connector.vk.clone();
        let group = self.group_id;
        match self.vk_raw(vk.groups_delete_callback_server(&key.token, group, old)).await? {
            Ok(()) => {}
            Err(e) if e.code() == Some(vk::code::NOT_FOUND) => {}
            Err(e) => return Err(Stop::Failed(Failure::from_vk(&e))),
        }
        let url = self.connector.callback_url();
        let fresh = self.vk(vk.groups_add_callback_server(&key.token, group, &url, SERVER_TITLE, Some(secret))).await?;
        self.edited_at = None;
        tracing::info!(group_id = self.group_id.0, old, fresh, "our server stayed failed after an edit: replaced");
        Ok(fresh)
    }

    /// Polls `getCallbackServers` until our server is `ok`; `failed` says whether VK ever asked us. A `failed` that
    /// outlasts the grace after this run's edit, with no confirmation request since, is VK's old status:
    /// [`Confirmation::StillFailedAfterEdit`].
    async fn wait_for_ok(&mut self, key: &CommunityKey, server_id: i64) -> Result<Confirmation, Stop> {
        let gid = self.group_id;
        let vk = self.connector.vk.clone();
        let deadline = std::time::Instant::now() + self.connector.config.confirm_timeout;
        loop {
            let servers = self.vk(vk.groups_get_callback_servers(&key.token, gid)).await?;
            match servers.iter().find(|s| s.id == server_id).map(|s| s.status.clone()) {
                Some(ServerStatus::Ok) => return Ok(Confirmation::Ok),
                Some(ServerStatus::Failed) => {
                    let asked = self.store().community_settings(gid).await?.and_then(|s| s.last_confirmation_at);
                    if let Some(edited) = self.edited_at.filter(|at| asked.is_none_or(|asked| asked < *at)) {
                        let grace = self.connector.config.failed_grace.as_millis() as i64;
                        if now_ms() - edited >= grace {
                            return Ok(Confirmation::StillFailedAfterEdit);
                        }
                        self.renew().await?;
                        tokio::time::sleep(self.connector.config.setup_poll).await;
                        continue;
                    }
                    let started = self.store().setup(gid).await?.map_or(0, |s| s.started_at);
                    let kind = match asked {
                        Some(at) if at >= started => ErrorKind::ConfirmRejected,
                        _ => ErrorKind::ConfirmUnreached,
                    };
                    self.store().set_vk_server_status(gid, &VkServerView::Listed(ServerStatus::Failed)).await?;
                    return Err(Stop::Failed(Failure::new(kind, "VK set the server to failed")));
                }
                None => return Err(Stop::Failed(Failure::new(ErrorKind::ServerGone, "our server disappeared at VK"))),
                Some(_) => {}
            }
            if std::time::Instant::now() >= deadline {
                return Err(Stop::Failed(Failure::new(ErrorKind::ConfirmTimeout, "VK did not confirm in time")));
            }
            self.renew().await?;
            tokio::time::sleep(self.connector.config.setup_poll).await;
        }
    }
}
