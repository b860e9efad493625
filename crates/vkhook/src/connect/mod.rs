//! «🔗 Подключить Callback API»: setting up a community's Callback API at VK, as recorded steps.
//!
//! 1. Token: a community token with `manage` (from the community authorization; never a user token).
//! 2. Code: `getCallbackConfirmationCode`, committed with a fresh secret **before** the server is added or edited,
//!    so our endpoint answers VK's confirmation the moment it comes. The previous secret stays accepted until an
//!    event arrives with the new one.
//! 3. Server: ours is the one whose URL is our callback URL (others are never touched): edit it, or add it.
//! 4. Events: `setCallbackSettings(server_id, api_version=5.199, …)`.
//! 5. Confirmation: poll `getCallbackServers` until VK says `ok` (or `failed`, or time runs out).
//!
//! Every step is idempotent, the run holds a lease, and its record says where it is: a reload shows it, a second
//! click joins it, and a run whose runner died is resumed from the start with one server as the result.
//! No HTTP types here.

use std::time::Duration;

use rand::distributions::Alphanumeric;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use vk::{AccessToken, CommunityScope, GroupId, ServerStatus};

use crate::accounts::hash_hex;
use crate::app::AppState;
use crate::error::AppResult;
use crate::store::{now_ms, OAuthStateRow, SetupRow, Step};
use crate::vault::Slot;

pub const CALLBACK_PATH: &str = "/vk/callback";
pub const COMMUNITY_CALLBACK_PATH: &str = "/auth/vk/community-callback";
/// The server's title at VK (at most 14 characters).
pub const SERVER_TITLE: &str = "vkhook";
pub const API_VERSION: &str = vk::API_VERSION;
/// The event types vkhook switches on by default.
pub const EVENTS: [&str; 11] = [
    "message_new",
    "wall_reply_new",
    "wall_post_new",
    "like_add",
    "like_remove",
    "message_allow",
    "message_deny",
    "group_join",
    "group_leave",
    "wall_reply_edit",
    "wall_reply_delete",
];

/// Crash point for tests: the runner stops right after the server was added or edited at VK.
pub const CRASH_AFTER_SERVER: &str = "setup:after_server";

/// A fresh 32-character secret of latin letters and digits (VK accepts up to 50).
pub fn new_secret() -> SecretString {
    let s: String = rand::thread_rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect();
    SecretString::from(s)
}

pub fn callback_url(app: &AppState) -> String {
    app.url(CALLBACK_PATH)
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

fn secret_slot<'a>(column: &'static str, row: &'a str) -> Slot<'a> {
    Slot { table: "community_settings", column, row }
}

/// The community's token, if we hold one.
pub async fn community_token(app: &AppState, group_id: i64) -> AppResult<Option<(AccessToken, String)>> {
    let Some(settings) = app.store.community_settings(group_id).await? else { return Ok(None) };
    let Some(sealed) = settings.community_token else { return Ok(None) };
    let row = group_id.to_string();
    match app.vault.open(secret_slot("community_token", &row), &sealed) {
        Ok(token) => Ok(Some((AccessToken::community(token), settings.token_scopes))),
        Err(e) => {
            tracing::warn!(group_id, error = %e, "stored community token does not decrypt");
            Ok(None)
        }
    }
}

/// What the admin chose on the connect form.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Error 2000: the server the admin picked to replace.
    pub replace_server_id: Option<i64>,
    /// Ask for a new community token even if one is stored.
    pub reauthorize: bool,
    pub bot_enabled: bool,
    pub bot_reply: Option<String>,
}

pub enum Started {
    /// The setup runs; show its progress.
    Running,
    /// A run is already going (a second click): show its progress.
    AlreadyRunning,
    /// We need a community token first: send the admin to VK.
    NeedsToken(url::Url),
}

fn lease_ms(app: &AppState) -> i64 {
    app.settings.timing.setup_lease.as_millis() as i64
}

fn new_run(group_id: i64, user_id: i64, state: &str, options: &ConnectOptions, lease_until: i64) -> SetupRow {
    let now = now_ms();
    SetupRow {
        group_id,
        run_id: vk::oauth::random_urlsafe(12),
        state: state.into(),
        step_token: if state == "waiting_token" { "running".into() } else { "pending".into() },
        step_code: "pending".into(),
        step_server: "pending".into(),
        step_events: "pending".into(),
        step_confirm: "pending".into(),
        error_kind: None,
        error_detail: None,
        started_by: user_id,
        started_at: now,
        updated_at: now,
        finished_at: None,
        vk_calls: 0,
        replace_server_id: options.replace_server_id,
        lease_until,
        bot_enabled: options.bot_enabled,
        bot_reply: options.bot_reply.clone(),
    }
}

/// Starts connecting `group_id` for administrator `user_id` (the caller checked the role).
pub async fn start(
    app: &AppState,
    group_id: i64,
    user_id: i64,
    session_hash: &str,
    options: ConnectOptions,
) -> AppResult<Started> {
    let has_token = !options.reauthorize
        && community_token(app, group_id).await?.is_some_and(|(_, scopes)| vk::oauth::scope_listed(&scopes, "manage"));
    let now = now_ms();
    if !has_token {
        let row = new_run(group_id, user_id, "waiting_token", &options, 0);
        if !app.store.begin_setup(&row, now).await? {
            return Ok(Started::AlreadyRunning);
        }
        return Ok(Started::NeedsToken(authorize_community(app, group_id, session_hash).await?));
    }
    let row = new_run(group_id, user_id, "running", &options, now + lease_ms(app));
    if !app.store.begin_setup(&row, now).await? {
        return Ok(Started::AlreadyRunning);
    }
    spawn_run(app, row.group_id, row.run_id.clone(), Some(row.lease_until));
    Ok(Started::Running)
}

/// Starts a setup run on vkhook's own initiative (the reconcile pass found our server gone or failed), with the
/// stored token, on behalf of whoever connected the community.
pub async fn start_repair(app: &AppState, group_id: i64) -> AppResult<bool> {
    let by = app.store.community_settings(group_id).await?.and_then(|s| s.connected_by).unwrap_or(0);
    let now = now_ms();
    let mut row = new_run(group_id, by, "running", &ConnectOptions::default(), now + lease_ms(app));
    row.step_token = "done".into();
    if !app.store.begin_setup(&row, now).await? {
        return Ok(false);
    }
    spawn_run(app, group_id, row.run_id.clone(), Some(row.lease_until));
    Ok(true)
}

/// The community authorization URL, with a `state` bound to the session and the community.
async fn authorize_community(app: &AppState, group_id: i64, session_hash: &str) -> AppResult<url::Url> {
    let state = vk::oauth::random_urlsafe(32);
    app.store
        .insert_oauth_state(&OAuthStateRow {
            state_hash: hash_hex(&state),
            session_hash: session_hash.to_owned(),
            kind: "community".into(),
            verifier: None,
            group_id: Some(group_id),
            created_at: now_ms(),
        })
        .await?;
    let scopes: Vec<&str> = app.settings.vk.community_scopes.iter().map(String::as_str).collect();
    Ok(app.oauth.community_authorize_url(&app.url(COMMUNITY_CALLBACK_PATH), &[GroupId(group_id)], &scopes, &state))
}

/// What oauth.vk.com put on the redirect back.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CommunityRedirect {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Why a community authorization did not give us a usable token. Nothing is stored in any of these cases.
#[derive(Debug)]
pub enum AuthFailure {
    /// Unknown, reused, expired or another session's `state`.
    BadState,
    /// The admin pressed «Отмена» (or is not the community's administrator at VK).
    Denied(i64),
    /// The token lacks `manage`.
    NoManage(i64),
    /// The signed-in user is no longer an administrator here.
    NotAdmin(i64),
    Vk(i64, vk::Error),
    Other(crate::error::AppError),
}

impl From<crate::store::StoreError> for AuthFailure {
    fn from(e: crate::store::StoreError) -> Self {
        AuthFailure::Other(e.into())
    }
}

/// Finishes the community authorization: exchanges the code server-side, checks the real scopes, stores the token
/// sealed, and continues the setup without another click. Returns the community id.
pub async fn finish_community_auth(
    app: &AppState,
    session_hash: &str,
    user_id: i64,
    back: &CommunityRedirect,
) -> Result<i64, AuthFailure> {
    let pending = match back.state.as_deref().filter(|s| !s.is_empty()) {
        Some(state) => app.store.take_oauth_state(&hash_hex(state)).await?,
        None => None,
    };
    let pending = pending
        .filter(|p| {
            p.kind == "community"
                && p.session_hash == session_hash
                && now_ms() - p.created_at < crate::accounts::OAUTH_STATE_TTL_MS
        })
        .ok_or(AuthFailure::BadState)?;
    let group_id = pending.group_id.ok_or(AuthFailure::BadState)?;
    let fail_setup = |kind: &'static str| async move {
        if let Some(setup) = app.store.setup(group_id).await? {
            app.store.finish_setup(group_id, &setup.run_id, "failed", Some((kind, "")), 0).await?;
        }
        Ok::<(), crate::store::StoreError>(())
    };
    if let Some(err) = vk::oauth::redirect_error(back.error.as_deref(), back.error_description.as_deref()) {
        tracing::info!(group_id, error = %err.error, "community authorization not granted");
        fail_setup("denied").await?;
        return Err(AuthFailure::Denied(group_id));
    }
    let manager = app.store.community_for_user(user_id, group_id).await?;
    if manager.is_none_or(|c| c.role != "administrator") {
        return Err(AuthFailure::NotAdmin(group_id));
    }
    let code = back.code.clone().filter(|c| !c.is_empty()).ok_or(AuthFailure::BadState)?;
    let tokens = app
        .oauth
        .community_exchange_code(&SecretString::from(code), &app.url(COMMUNITY_CALLBACK_PATH))
        .await
        .map_err(|e| AuthFailure::Vk(group_id, e))?;
    let Some((_, token)) = tokens.into_iter().find(|(g, _)| g.0 == group_id) else {
        return Err(AuthFailure::Vk(group_id, vk::Error::Decode("no token for this community".into())));
    };
    let permissions = app.vk.groups_get_token_permissions(&token).await.map_err(|e| AuthFailure::Vk(group_id, e))?;
    if !permissions.has(CommunityScope::Manage) {
        tracing::info!(group_id, scopes = ?permissions.names(), "community token without manage: not stored");
        fail_setup("no_manage").await?;
        return Err(AuthFailure::NoManage(group_id));
    }
    let row = group_id.to_string();
    let sealed = app.vault.seal(secret_slot("community_token", &row), token.secret());
    app.store.save_community_token(group_id, &sealed, &permissions.names().join(",")).await?;
    tracing::info!(group_id, "community token stored");

    // Continue the setup the admin started, with the options they chose then.
    let previous = app.store.setup(group_id).await?;
    let options = ConnectOptions {
        replace_server_id: previous.as_ref().and_then(|p| p.replace_server_id),
        reauthorize: false,
        bot_enabled: previous.as_ref().is_some_and(|p| p.bot_enabled),
        bot_reply: previous.as_ref().and_then(|p| p.bot_reply.clone()),
    };
    let now = now_ms();
    let mut run = new_run(group_id, user_id, "running", &options, now + lease_ms(app));
    run.step_token = "done".into();
    if app.store.begin_setup(&run, now).await? {
        spawn_run(app, group_id, run.run_id.clone(), Some(run.lease_until));
    }
    Ok(group_id)
}

pub fn spawn_run(app: &AppState, group_id: i64, run_id: String, lease: Option<i64>) {
    let app = app.clone();
    tokio::spawn(async move { run(app, group_id, run_id, lease).await });
}

/// Resumes runs whose runner died (its lease expired).
pub async fn resume_abandoned(app: &AppState) -> AppResult<usize> {
    let abandoned = app.store.abandoned_setups(now_ms()).await?;
    for setup in &abandoned {
        tracing::info!(group_id = setup.group_id, "resuming an interrupted setup");
        spawn_run(app, setup.group_id, setup.run_id.clone(), None);
    }
    Ok(abandoned.len())
}

/// Why a run stopped. `kind` is stored and turned into a message in the admin's language.
#[derive(Debug)]
struct Failure {
    kind: &'static str,
    detail: String,
    /// VK's error was transient (after the client's own retries).
    retryable: bool,
}

impl Failure {
    fn new(kind: &'static str, detail: impl Into<String>) -> Self {
        Failure { kind, detail: detail.into(), retryable: false }
    }

    fn from_vk(e: &vk::Error) -> Self {
        let kind = if e.needs_reauth() {
            "reauth"
        } else if e.is_callback_servers_limit() {
            "servers_limit"
        } else if e.is_access_denied() {
            "not_admin"
        } else if e.is_retryable() {
            "vk_unavailable"
        } else {
            "vk_error"
        };
        Failure { kind, detail: e.to_string(), retryable: e.is_retryable() }
    }
}

enum Stop {
    Failed(Failure),
    /// Lost the lease (replaced by a newer run) or a test crash point: leave the record as it is.
    Abandoned,
}

impl From<crate::store::StoreError> for Stop {
    fn from(e: crate::store::StoreError) -> Self {
        Stop::Failed(Failure::new("internal", e.to_string()))
    }
}

struct Run {
    app: AppState,
    group_id: i64,
    run_id: String,
    lease: Option<i64>,
    vk_calls: i64,
}

async fn run(app: AppState, group_id: i64, run_id: String, lease: Option<i64>) {
    let started = std::time::Instant::now();
    let mut r = Run { app, group_id, run_id, lease, vk_calls: 0 };
    match r.execute().await {
        Ok(()) => {
            tracing::info!(
                group_id,
                vk_calls = r.vk_calls,
                ms = started.elapsed().as_millis() as u64,
                "Callback API connected"
            );
            if let Err(e) = r.app.store.finish_setup(group_id, &r.run_id, "done", None, r.vk_calls).await {
                tracing::error!(group_id, error = %e, "could not record the finished setup");
            }
        }
        Err(Stop::Abandoned) => tracing::warn!(group_id, "setup run stopped without finishing"),
        Err(Stop::Failed(f)) => {
            tracing::warn!(group_id, kind = f.kind, detail = %f.detail, "setup failed");
            let store = &r.app.store;
            let result = async {
                if f.kind == "reauth" {
                    store.mark_needs_reauth(group_id, f.kind).await?;
                } else {
                    store.set_connection_status(group_id, "failed", Some(f.kind)).await?;
                }
                store.finish_setup(group_id, &r.run_id, "failed", Some((f.kind, &f.detail)), r.vk_calls).await
            }
            .await;
            if let Err(e) = result {
                tracing::error!(group_id, error = %e, "could not record the failed setup");
            }
        }
    }
}

impl Run {
    /// Takes or renews the lease; a run that lost it stops.
    async fn renew(&mut self) -> Result<(), Stop> {
        let until = now_ms() + lease_ms(&self.app);
        if !self.app.store.claim_setup(self.group_id, &self.run_id, self.lease, until).await? {
            return Err(Stop::Abandoned);
        }
        self.lease = Some(until);
        Ok(())
    }

    async fn step(&mut self, step: Step, state: &str) -> Result<(), Stop> {
        self.renew().await?;
        self.app.store.set_setup_step(self.group_id, &self.run_id, step, state, self.vk_calls).await?;
        Ok(())
    }

    async fn vk<T>(&mut self, call: impl std::future::Future<Output = Result<T, vk::Error>>) -> Result<T, Stop> {
        self.vk_calls += 1;
        call.await.map_err(|e| Stop::Failed(Failure::from_vk(&e)))
    }

    async fn execute(&mut self) -> Result<(), Stop> {
        let gid = self.group_id;
        let group = GroupId(gid);
        let app = self.app.clone();
        let url = callback_url(&app);
        let row = gid.to_string();

        self.step(Step::Token, "running").await?;
        let Some((token, scopes)) =
            community_token(&app, gid).await.map_err(|e| Stop::Failed(Failure::new("internal", e.to_string())))?
        else {
            return Err(Stop::Failed(Failure::new("reauth", "no community token")));
        };
        if !vk::oauth::scope_listed(&scopes, "manage") {
            return Err(Stop::Failed(Failure::new("no_manage", scopes)));
        }
        self.step(Step::Token, "done").await?;

        // The code and the new secret are committed before VK can ask for them.
        self.step(Step::Code, "running").await?;
        let code = self.vk(app.vk.groups_get_callback_confirmation_code(&token, group)).await?;
        let settings = app
            .store
            .community_settings(gid)
            .await?
            .ok_or_else(|| Stop::Failed(Failure::new("internal", "no settings row")))?;
        let previous = settings.secret.as_deref().and_then(|s| app.vault.open(secret_slot("secret", &row), s).ok());
        let secret = new_secret();
        let sealed_secret = app.vault.seal(secret_slot("secret", &row), &secret);
        let sealed_previous = previous.map(|p| app.vault.seal(secret_slot("previous_secret", &row), &p));
        app.store
            .commit_confirmation(gid, code.expose_secret(), Some(&sealed_secret), sealed_previous.as_deref(), "api")
            .await?;
        app.receiver.invalidate(gid);
        self.step(Step::Code, "done").await?;

        self.step(Step::Server, "running").await?;
        // Listing and then editing or adding is idempotent as a whole, so it is retried as a whole: after an
        // error where VK may have added the server anyway, the next list finds it and it is edited, not added again.
        let policy = app.settings.vk.retry;
        let step_started = std::time::Instant::now();
        let mut attempt = 0;
        let server_id = loop {
            match self.place_server(&token, &url, &secret).await {
                Ok(id) => break id,
                Err(Stop::Failed(f)) if f.retryable && attempt + 1 < policy.max_attempts => {
                    let delay = policy.backoff.delay(attempt);
                    if step_started.elapsed() + delay > policy.deadline {
                        return Err(Stop::Failed(f));
                    }
                    tracing::info!(group_id = gid, kind = f.kind, attempt, "server step failed; trying it again");
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                }
                Err(other) => return Err(other),
            }
        };
        if app.hooks.fire(CRASH_AFTER_SERVER) {
            return Err(Stop::Abandoned);
        }
        self.step(Step::Server, "done").await?;

        self.step(Step::Events, "running").await?;
        let chosen = settings.event_list();
        let events: Vec<&str> =
            if chosen.is_empty() { EVENTS.to_vec() } else { chosen.iter().map(String::as_str).collect() };
        let off: Vec<&str> = EVENTS.iter().copied().filter(|e| !events.contains(e)).collect();
        self.vk(app.vk.groups_set_callback_settings(&token, group, server_id, API_VERSION, &events, &off)).await?;
        self.step(Step::Events, "done").await?;

        self.step(Step::Confirm, "running").await?;
        let deadline = std::time::Instant::now() + app.settings.timing.setup_confirm_timeout;
        loop {
            let servers = self.vk(app.vk.groups_get_callback_servers(&token, group)).await?;
            let status = servers.iter().find(|s| s.id == server_id).map(|s| s.status.clone());
            match status {
                Some(ServerStatus::Ok) => break,
                Some(ServerStatus::Failed) => {
                    let asked = app.store.community_settings(gid).await?.and_then(|s| s.last_confirmation_at);
                    let kind = match asked {
                        Some(at) if at >= self.started_at().await => "confirm_rejected",
                        _ => "confirm_unreached",
                    };
                    app.store.set_vk_server_status(gid, Some("failed")).await?;
                    return Err(Stop::Failed(Failure::new(kind, "VK set the server to failed")));
                }
                None => return Err(Stop::Failed(Failure::new("server_gone", "our server disappeared at VK"))),
                Some(_) => {}
            }
            if std::time::Instant::now() >= deadline {
                return Err(Stop::Failed(Failure::new("confirm_timeout", "VK did not confirm in time")));
            }
            self.renew().await?;
            tokio::time::sleep(app.settings.timing.setup_poll).await;
        }
        let setup = app.store.setup(gid).await?;
        let by = setup.as_ref().map(|s| s.started_by).filter(|by| *by > 0);
        app.store.mark_connected(gid, Some(server_id), API_VERSION, &events.join(","), by).await?;
        if let Some(setup) = setup.filter(|s| s.bot_enabled) {
            crate::bot::enable_on_connect(&app, gid, setup.bot_reply.as_deref()).await?;
        }
        crate::bot::resume(&app, gid).await?;
        self.step(Step::Confirm, "done").await?;
        Ok(())
    }

    /// Finds our server by URL and edits it, or adds it; deletes the slot the admin picked first if needed.
    async fn place_server(&mut self, token: &AccessToken, url: &str, secret: &SecretString) -> Result<i64, Stop> {
        let app = self.app.clone();
        let group = GroupId(self.group_id);
        let servers = self.vk(app.vk.groups_get_callback_servers(token, group)).await?;
        let ours = servers.iter().find(|s| same_url(&s.url, url)).map(|s| s.id);
        if let Some(victim) = self.replace_target(&servers, ours).await? {
            // The admin picked this slot explicitly on the «10 servers» page.
            self.vk_calls += 1;
            match app.vk.groups_delete_callback_server(token, group, victim).await {
                Ok(()) => {
                    tracing::info!(group_id = self.group_id, server_id = victim, "replaced a server the admin picked")
                }
                Err(e) if e.code() == Some(vk::code::NOT_FOUND) => {}
                Err(e) => return Err(Stop::Failed(Failure::from_vk(&e))),
            }
        }
        match ours {
            Some(id) => {
                self.vk(app.vk.groups_edit_callback_server(token, group, id, url, SERVER_TITLE, Some(secret))).await?;
                Ok(id)
            }
            None => self.vk(app.vk.groups_add_callback_server(token, group, url, SERVER_TITLE, Some(secret))).await,
        }
    }

    async fn started_at(&self) -> i64 {
        self.app.store.setup(self.group_id).await.ok().flatten().map_or(0, |s| s.started_at)
    }

    /// The server to delete for ours: only the one the admin picked, only if ours is not there already, and
    /// never ours.
    async fn replace_target(&self, servers: &[vk::CallbackServer], ours: Option<i64>) -> Result<Option<i64>, Stop> {
        if ours.is_some() {
            return Ok(None);
        }
        let setup = self.app.store.setup(self.group_id).await?;
        Ok(setup.and_then(|s| s.replace_server_id).filter(|id| servers.iter().any(|s| s.id == *id)))
    }
}

/// What happened when the admin pressed «Отключить».
pub enum Disconnected {
    /// Our server was deleted at VK (or was already gone).
    Removed,
    /// VK no longer accepts our token: the server may still be there (the receiver answers `remove` to it).
    TokenDead,
    /// We held no server id.
    NothingAtVk,
}

/// Deletes our server at VK and forgets the token, secrets and code.
pub async fn disconnect(app: &AppState, group_id: i64) -> AppResult<Disconnected> {
    let settings = app.store.community_settings(group_id).await?;
    let server_id = settings.as_ref().and_then(|s| s.server_id);
    let outcome = match (server_id, community_token(app, group_id).await?) {
        (Some(server_id), Some((token, _))) => {
            match app.vk.groups_delete_callback_server(&token, GroupId(group_id), server_id).await {
                Ok(()) => Disconnected::Removed,
                Err(e) if e.code() == Some(vk::code::NOT_FOUND) => Disconnected::Removed,
                Err(e) if e.needs_reauth() || e.is_access_denied() => Disconnected::TokenDead,
                Err(e) => return Err(e.into()),
            }
        }
        (Some(_), None) => Disconnected::TokenDead,
        (None, _) => Disconnected::NothingAtVk,
    };
    app.store.disconnect_community(group_id).await?;
    app.receiver.invalidate(group_id);
    tracing::info!(group_id, "community disconnected");
    Ok(outcome)
}

/// Why something that needs VK could not be done for a community.
#[derive(Debug)]
pub enum VkProblem {
    /// No server id or no usable token: the community is not connected through the API.
    NotConnected,
    /// A key or token that belongs to another community.
    OtherCommunity,
    Vk(vk::Error),
}

/// Switches event types on and off (only `setCallbackSettings`).
pub async fn save_events(app: &AppState, group_id: i64, chosen: &[String]) -> AppResult<Result<(), VkProblem>> {
    let on: Vec<&str> = EVENTS.iter().copied().filter(|e| chosen.iter().any(|c| c == e)).collect();
    let off: Vec<&str> = EVENTS.iter().copied().filter(|e| !on.contains(e)).collect();
    let settings = app.store.community_settings(group_id).await?;
    let (Some(settings), Some((token, _))) = (settings, community_token(app, group_id).await?) else {
        return Ok(Err(VkProblem::NotConnected));
    };
    let Some(server_id) = settings.server_id else { return Ok(Err(VkProblem::NotConnected)) };
    let version = settings.api_version.as_deref().unwrap_or(API_VERSION);
    if let Err(e) = app.vk.groups_set_callback_settings(&token, GroupId(group_id), server_id, version, &on, &off).await
    {
        if e.needs_reauth() {
            app.store.mark_needs_reauth(group_id, "reauth").await?;
        }
        return Ok(Err(VkProblem::Vk(e)));
    }
    app.store.set_events(group_id, &on.join(",")).await?;
    Ok(Ok(()))
}

/// VK's view of our server right now: (status, URL, enabled events, API version), or why not.
pub async fn vk_server_view(
    app: &AppState,
    group_id: i64,
) -> AppResult<Result<(vk::CallbackServer, vk::CallbackSettings), VkProblem>> {
    let settings = app.store.community_settings(group_id).await?;
    let (Some(server_id), Some((token, _))) =
        (settings.and_then(|s| s.server_id), community_token(app, group_id).await?)
    else {
        return Ok(Err(VkProblem::NotConnected));
    };
    let group = GroupId(group_id);
    let servers = match app.vk.groups_get_callback_servers(&token, group).await {
        Ok(servers) => servers,
        Err(e) => {
            if e.needs_reauth() {
                app.store.mark_needs_reauth(group_id, "reauth").await?;
            }
            return Ok(Err(VkProblem::Vk(e)));
        }
    };
    let Some(server) = servers.into_iter().find(|s| s.id == server_id) else {
        app.store.set_vk_server_status(group_id, Some("missing")).await?;
        return Ok(Err(VkProblem::NotConnected));
    };
    app.store.set_vk_server_status(group_id, Some(server.status.as_str())).await?;
    match app.vk.groups_get_callback_settings(&token, group, server_id).await {
        Ok(settings) => Ok(Ok((server, settings))),
        Err(e) => Ok(Err(VkProblem::Vk(e))),
    }
}

/// The «10 servers» page: every server at VK (title, URL, status), fetched now.
pub async fn occupied_slots(app: &AppState, group_id: i64) -> AppResult<Result<Vec<vk::CallbackServer>, vk::Error>> {
    let Some((token, _)) = community_token(app, group_id).await? else {
        return Ok(Ok(Vec::new()));
    };
    Ok(app.vk.groups_get_callback_servers(&token, GroupId(group_id)).await)
}

/// The manual setup: a secret to paste at VK (created once), sealed like the API one.
pub async fn manual_secret(app: &AppState, group_id: i64, create: bool) -> AppResult<Option<SecretString>> {
    let settings = app.store.community_settings(group_id).await?;
    let row = group_id.to_string();
    if let Some(sealed) = settings.as_ref().and_then(|s| s.secret.clone()) {
        if let Ok(secret) = app.vault.open(secret_slot("secret", &row), &sealed) {
            return Ok(Some(secret));
        }
    }
    if !create {
        return Ok(None);
    }
    let secret = new_secret();
    let sealed = app.vault.seal(secret_slot("secret", &row), &secret);
    let code = settings.and_then(|s| s.confirmation_code).unwrap_or_default();
    app.store.commit_confirmation(group_id, &code, Some(&sealed), None, "manual").await?;
    app.receiver.invalidate(group_id);
    Ok(Some(secret))
}

/// Saves the confirmation string VK shows in the community's settings (manual setup): our endpoint answers it.
pub async fn save_manual_confirmation(app: &AppState, group_id: i64, code: &str) -> AppResult<()> {
    let settings = app.store.community_settings(group_id).await?;
    let secret = settings.as_ref().and_then(|s| s.secret.clone());
    app.store.commit_confirmation(group_id, code, secret.as_deref(), None, "manual").await?;
    app.store.set_connection_status(group_id, "connecting", None).await?;
    app.receiver.invalidate(group_id);
    Ok(())
}

/// A community key the admin made by hand at VK: checked with `getTokenPermissions`, stored sealed.
/// Returns the scopes it has, or VK's refusal.
pub async fn save_manual_key(
    app: &AppState,
    group_id: i64,
    key: SecretString,
) -> AppResult<Result<Vec<String>, VkProblem>> {
    let token = AccessToken::community(key);
    let permissions = match app.vk.groups_get_token_permissions(&token).await {
        Ok(p) => p,
        Err(e) => return Ok(Err(VkProblem::Vk(e))),
    };
    // A key of another community would pass getTokenPermissions too: check whose it is.
    match app.vk.groups_get_by_id(&token, &[]).await {
        Ok(groups) if groups.first().is_some_and(|g| g.id.0 == group_id) => {}
        Ok(_) => return Ok(Err(VkProblem::OtherCommunity)),
        Err(e) => return Ok(Err(VkProblem::Vk(e))),
    }
    let names = permissions.names();
    let row = group_id.to_string();
    let sealed = app.vault.seal(secret_slot("community_token", &row), token.secret());
    app.store.save_community_token(group_id, &sealed, &names.join(",")).await?;
    Ok(Ok(names))
}

/// Waits (for tests and the benchmark) until the community's setup finishes; returns the record.
pub async fn wait_for_setup(
    store: &crate::store::Store,
    group_id: i64,
    timeout: Duration,
) -> AppResult<Option<SetupRow>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let setup = store.setup(group_id).await?;
        if setup.as_ref().is_none_or(SetupRow::is_finished) || std::time::Instant::now() >= deadline {
            return Ok(setup);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
