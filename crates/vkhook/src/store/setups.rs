//! A community's connection (`community_settings`) and the record of its setup runs (`community_setups`).

use super::{now_ms, on_pool, Store, StoreResult};
use crate::model::{CommunityStatus, ErrorKind, PauseReason, SetupMode, SetupState, StepState, VkServerView};
use vk::GroupId;

/// `community_settings`: what vkhook set up at VK for a community. Secrets and the token are vault values.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CommunitySettings {
    pub group_id: i64,
    pub confirmation_code: Option<String>,
    pub callback_configured: bool,
    pub setup_mode: SetupMode,
    pub server_id: Option<i64>,
    pub secret: Option<String>,
    pub previous_secret: Option<String>,
    /// Until when `previous_secret` is accepted (Unix ms).
    pub previous_secret_until: Option<i64>,
    pub api_version: Option<String>,
    /// Comma-separated event types switched on.
    pub events: String,
    pub community_token: Option<String>,
    pub token_scopes: String,
    pub status: CommunityStatus,
    pub vk_server_status: Option<VkServerView>,
    pub connected_at: Option<i64>,
    pub connected_by: Option<i64>,
    pub last_check_at: Option<i64>,
    pub last_error: Option<ErrorKind>,
    pub last_error_at: Option<i64>,
    pub last_confirmation_at: Option<i64>,
}

impl CommunitySettings {
    pub fn event_list(&self) -> Vec<String> {
        self.events.split(',').filter(|e| !e.is_empty()).map(str::to_owned).collect()
    }
}

const SETTINGS_COLUMNS: &str = "group_id, confirmation_code, callback_configured, setup_mode, server_id, secret, \
    previous_secret, previous_secret_until, api_version, events, community_token, token_scopes, status, vk_server_status, connected_at, \
    connected_by, last_check_at, last_error, last_error_at, last_confirmation_at";

/// One step of the connect flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Token,
    Code,
    Server,
    Events,
    Confirm,
}

impl Step {
    pub const ALL: [Step; 5] = [Step::Token, Step::Code, Step::Server, Step::Events, Step::Confirm];

    fn column(self) -> &'static str {
        match self {
            Step::Token => "step_token",
            Step::Code => "step_code",
            Step::Server => "step_server",
            Step::Events => "step_events",
            Step::Confirm => "step_confirm",
        }
    }
}

/// `community_setups`: the current (or last) setup run of a community.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SetupRow {
    pub group_id: i64,
    pub run_id: String,
    pub state: SetupState,
    pub step_token: StepState,
    pub step_code: StepState,
    pub step_server: StepState,
    pub step_events: StepState,
    pub step_confirm: StepState,
    pub error_kind: Option<ErrorKind>,
    pub error_detail: Option<String>,
    pub started_by: i64,
    pub started_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub vk_calls: i64,
    pub replace_server_id: Option<i64>,
    pub lease_until: i64,
    pub bot_enabled: bool,
    pub bot_reply: Option<String>,
    /// What the run sets up: the Callback API (`Api`) or Bots Long Poll (`LongPoll`).
    pub mode: SetupMode,
}

impl SetupRow {
    pub fn step(&self, step: Step) -> StepState {
        match step {
            Step::Token => self.step_token,
            Step::Code => self.step_code,
            Step::Server => self.step_server,
            Step::Events => self.step_events,
            Step::Confirm => self.step_confirm,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.state.is_finished()
    }
}

pub(super) const SETUP_COLUMNS: &str =
    "group_id, run_id, state, step_token, step_code, step_server, step_events, step_confirm, \
    error_kind, error_detail, started_by, started_at, updated_at, finished_at, vk_calls, replace_server_id, \
    lease_until, bot_enabled, bot_reply, mode";

impl Store {
    pub async fn community_settings(&self, group_id: GroupId) -> StoreResult<Option<CommunitySettings>> {
        let q = format!("SELECT {SETTINGS_COLUMNS} FROM community_settings WHERE group_id = $1");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, CommunitySettings>(&q).bind(group_id).fetch_optional(pool).await?),
        )
    }

    /// Stores a community token (sealed) and its real scopes.
    pub async fn save_community_token(&self, group_id: GroupId, sealed: &str, scopes: &str) -> StoreResult<()> {
        let q = "UPDATE community_settings SET community_token = $2, token_scopes = $3, updated_at = $4 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(sealed).bind(scopes).bind(now_ms()).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// VK refused the community key: forgets it, pauses the bot and marks the community as needing a new
    /// authorization — in one statement, so no reader sees the key gone while the bot still runs. Only
    /// `bot::BotControl::pause_for_reauth` calls this.
    pub async fn drop_key_and_pause(&self, group_id: GroupId, reason: PauseReason) -> StoreResult<()> {
        let now = now_ms();
        let q = "UPDATE community_settings SET community_token = NULL, token_scopes = '', status = $2, \
                 paused_reason = $3, last_error = $4, last_error_at = $5, updated_at = $5 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q)
            .bind(group_id).bind(CommunityStatus::NeedsReauth).bind(reason).bind(ErrorKind::Reauth).bind(now)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Commits the confirmation code and the secrets before the server is added or edited at VK, so our endpoint
    /// can answer VK's confirmation the moment it arrives.
    /// `previous_secret` is (sealed value, accepted until).
    pub async fn commit_confirmation(
        &self,
        group_id: GroupId,
        code: &str,
        secret: Option<&str>,
        previous_secret: Option<(&str, i64)>,
        mode: SetupMode,
    ) -> StoreResult<()> {
        let q = "UPDATE community_settings SET confirmation_code = $2, secret = $3, previous_secret = $4, \
                 previous_secret_until = $7, setup_mode = $5, updated_at = $6 WHERE group_id = $1";
        let (previous, until) = previous_secret.unzip();
        on_pool!(self, pool => sqlx::query(q)
            .bind(group_id).bind(code).bind(secret).bind(previous).bind(mode).bind(now_ms()).bind(until)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Commits a new confirmation code and leaves the secrets as they are (a setup that needs no new secret).
    pub async fn commit_code(&self, group_id: GroupId, code: &str, mode: SetupMode) -> StoreResult<()> {
        let q = "UPDATE community_settings SET confirmation_code = $2, setup_mode = $3, updated_at = $4 \
                 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q)
            .bind(group_id).bind(code).bind(mode).bind(now_ms()).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Sets `status` (and the error shown with it, if any).
    pub async fn set_connection_status(
        &self,
        group_id: GroupId,
        status: CommunityStatus,
        error: Option<ErrorKind>,
    ) -> StoreResult<()> {
        let now = now_ms();
        let q = "UPDATE community_settings SET status = $2, \
                 last_error = COALESCE($3, last_error), last_error_at = CASE WHEN $3 IS NULL THEN last_error_at ELSE $4 END, \
                 updated_at = $4 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(status).bind(error).bind(now).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// VK confirmed our server: the seed's `callback_configured = true`.
    pub async fn mark_connected(
        &self,
        group_id: GroupId,
        server_id: Option<i64>,
        api_version: &str,
        events: &str,
        by_user: Option<i64>,
    ) -> StoreResult<()> {
        let now = now_ms();
        let q = "UPDATE community_settings SET callback_configured = $2, status = $8, server_id = $3, \
                 api_version = $4, events = $5, connected_at = $6, connected_by = COALESCE($7, connected_by), \
                 vk_server_status = 'ok', last_check_at = $6, updated_at = $6 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q)
            .bind(group_id).bind(true).bind(server_id).bind(api_version).bind(events).bind(now).bind(by_user)
            .bind(CommunityStatus::Connected)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn set_events(&self, group_id: GroupId, events: &str) -> StoreResult<()> {
        let q = "UPDATE community_settings SET events = $2, updated_at = $3 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(events).bind(now_ms()).execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn set_vk_server_status(&self, group_id: GroupId, view: &VkServerView) -> StoreResult<()> {
        let now = now_ms();
        let q = "UPDATE community_settings SET vk_server_status = $2, last_check_at = $3, updated_at = $3 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(view).bind(now).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// VK asked us for the code (a diagnostic for a failed confirmation).
    pub async fn record_confirmation_request(&self, group_id: GroupId) -> StoreResult<()> {
        let q = "UPDATE community_settings SET last_confirmation_at = $2 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(now_ms()).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Drops every previous secret whose window has passed (they are no longer accepted anyway). Returns how many.
    pub async fn retire_expired_previous_secrets(&self, now: i64) -> StoreResult<u64> {
        let q = "UPDATE community_settings SET previous_secret = NULL, previous_secret_until = NULL, updated_at = $1 \
                 WHERE previous_secret IS NOT NULL AND (previous_secret_until IS NULL OR previous_secret_until <= $1)";
        Ok(on_pool!(self, pool => sqlx::query(q).bind(now).execute(pool).await?.rows_affected()))
    }

    /// The first event of a manually set up community arrived: it is connected.
    pub async fn mark_manual_connected(&self, group_id: GroupId) -> StoreResult<bool> {
        let now = now_ms();
        let q = "UPDATE community_settings SET callback_configured = $2, status = $4, connected_at = $3, \
                 updated_at = $3 WHERE group_id = $1 AND setup_mode = $5 AND NOT callback_configured";
        let n = on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(true).bind(now)
            .bind(CommunityStatus::Connected).bind(SetupMode::Manual).execute(pool).await?.rows_affected());
        Ok(n > 0)
    }

    /// Forgets the connection: token, secrets, code, server; `callback_configured = false`.
    pub async fn disconnect_community(&self, group_id: GroupId) -> StoreResult<()> {
        let q =
            "UPDATE community_settings SET confirmation_code = NULL, callback_configured = $2, setup_mode = 'api', \
                 server_id = NULL, secret = NULL, previous_secret = NULL, previous_secret_until = NULL, api_version = NULL, events = '', \
                 community_token = NULL, token_scopes = '', status = 'not_connected', vk_server_status = NULL, \
                 connected_at = NULL, connected_by = NULL, last_error = NULL, last_error_at = NULL, updated_at = $3 \
                 WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).bind(false).bind(now_ms()).execute(pool).await?.rows_affected());
        let q = "DELETE FROM community_setups WHERE group_id = $1";
        on_pool!(self, pool => sqlx::query(q).bind(group_id).execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn setup(&self, group_id: GroupId) -> StoreResult<Option<SetupRow>> {
        let q = format!("SELECT {SETUP_COLUMNS} FROM community_setups WHERE group_id = $1");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SetupRow>(&q).bind(group_id).fetch_optional(pool).await?))
    }

    /// Starts a new run, replacing the community's previous record — unless a run holds a live lease
    /// (then nothing changes and `false` is returned).
    pub async fn begin_setup(&self, row: &SetupRow, now: i64) -> StoreResult<bool> {
        let q = format!(
            "INSERT INTO community_setups ({SETUP_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $21) \
             ON CONFLICT (group_id) DO UPDATE SET run_id = excluded.run_id, state = excluded.state, \
             step_token = excluded.step_token, step_code = excluded.step_code, step_server = excluded.step_server, \
             step_events = excluded.step_events, step_confirm = excluded.step_confirm, error_kind = NULL, \
             error_detail = NULL, started_by = excluded.started_by, started_at = excluded.started_at, \
             updated_at = excluded.updated_at, finished_at = NULL, vk_calls = 0, \
             replace_server_id = excluded.replace_server_id, lease_until = excluded.lease_until, \
             bot_enabled = excluded.bot_enabled, bot_reply = excluded.bot_reply, mode = excluded.mode \
             WHERE community_setups.state NOT IN ('running') OR community_setups.lease_until < $20"
        );
        let n = on_pool!(self, pool => sqlx::query(&q)
            .bind(row.group_id).bind(&row.run_id).bind(row.state).bind(row.step_token).bind(row.step_code)
            .bind(row.step_server).bind(row.step_events).bind(row.step_confirm).bind(row.error_kind)
            .bind(&row.error_detail).bind(row.started_by).bind(row.started_at).bind(row.updated_at)
            .bind(row.finished_at).bind(row.vk_calls).bind(row.replace_server_id).bind(row.lease_until)
            .bind(row.bot_enabled).bind(&row.bot_reply).bind(now).bind(row.mode)
            .execute(pool).await?.rows_affected());
        Ok(n > 0)
    }

    /// Takes (or renews) the run's lease until `lease_until`; false if the run was replaced or another runner
    /// holds a live lease.
    pub async fn claim_setup(
        &self,
        group_id: GroupId,
        run_id: &str,
        holder_lease: Option<i64>,
        lease_until: i64,
    ) -> StoreResult<bool> {
        let now = now_ms();
        // A runner renews its own lease (it knows the value it set); a new runner may take an expired one.
        let q = "UPDATE community_setups SET state = 'running', lease_until = $3, updated_at = $4 \
                 WHERE group_id = $1 AND run_id = $2 AND (lease_until = $5 OR lease_until < $4)";
        let n = on_pool!(self, pool => sqlx::query(q)
            .bind(group_id).bind(run_id).bind(lease_until).bind(now).bind(holder_lease.unwrap_or(-1))
            .execute(pool).await?.rows_affected());
        Ok(n > 0)
    }

    pub async fn set_setup_step(
        &self,
        group_id: GroupId,
        run_id: &str,
        step: Step,
        state: StepState,
        vk_calls: i64,
    ) -> StoreResult<()> {
        let q = format!(
            "UPDATE community_setups SET {} = $3, vk_calls = $4, updated_at = $5 WHERE group_id = $1 AND run_id = $2",
            step.column()
        );
        on_pool!(self, pool => sqlx::query(&q).bind(group_id).bind(run_id).bind(state).bind(vk_calls).bind(now_ms())
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn finish_setup(
        &self,
        group_id: GroupId,
        run_id: &str,
        state: SetupState,
        error: Option<(ErrorKind, &str)>,
        vk_calls: i64,
    ) -> StoreResult<()> {
        let now = now_ms();
        // A failed run's step that was going is the one that failed.
        let steps: String = Step::ALL
            .iter()
            .map(|s| {
                let c = s.column();
                format!(", {c} = CASE WHEN $3 = 'failed' AND {c} = 'running' THEN 'failed' ELSE {c} END")
            })
            .collect();
        let q = format!(
            "UPDATE community_setups SET state = $3, error_kind = $4, error_detail = $5, vk_calls = $6, \
             finished_at = $7, updated_at = $7, lease_until = 0{steps} WHERE group_id = $1 AND run_id = $2"
        );
        on_pool!(self, pool => sqlx::query(&q)
            .bind(group_id).bind(run_id).bind(state).bind(error.map(|e| e.0)).bind(error.map(|e| e.1))
            .bind(vk_calls).bind(now)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Runs left `running` by a runner whose lease expired (a crash): they are resumed.
    pub async fn abandoned_setups(&self, now: i64) -> StoreResult<Vec<SetupRow>> {
        let q = format!("SELECT {SETUP_COLUMNS} FROM community_setups WHERE state = 'running' AND lease_until < $1");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SetupRow>(&q).bind(now).fetch_all(pool).await?))
    }
}
