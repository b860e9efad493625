//! Health: what the community page's health card shows, and the reconcile pass that compares VK's view of our
//! server and settings with ours and repairs drift (server deleted, events switched off, version changed,
//! status `failed`), recording what it did.

use std::time::Duration;

use tokio::sync::watch;
use vk::{GroupId, ServerStatus};

use crate::app::AppState;
use crate::connect::{self, API_VERSION, EVENTS};
use crate::error::AppResult;
use crate::store::{now_ms, CountRow, LogRow};

/// The health card (think of Telegram's `getWebhookInfo`).
#[derive(Debug, Clone)]
pub struct Health {
    pub vk_status: Option<String>,
    pub last_check_at: Option<i64>,
    pub last_event_at: Option<i64>,
    pub events_24h: Vec<CountRow>,
    pub replies_sent_24h: i64,
    pub replies_failed_24h: i64,
    pub queue_depth: i64,
    pub last_error: Option<(String, i64)>,
    pub paused: Option<String>,
    pub log: Vec<LogRow>,
}

pub async fn health(app: &AppState, group_id: i64) -> AppResult<Health> {
    let since = now_ms() - 24 * 3600 * 1000;
    let settings = app.store.community_settings(group_id).await?;
    let bot = app.store.bot_settings(group_id).await?;
    let (replies_sent_24h, replies_failed_24h) = app.store.reply_counts(group_id, since).await?;
    let inbox_error = app.store.last_inbox_error(group_id).await?;
    let settings_error = settings.as_ref().and_then(|s| s.last_error.clone().zip(s.last_error_at));
    // The most recent of the two.
    let last_error = match (inbox_error, settings_error) {
        (Some(a), Some(b)) => Some(if a.1 >= b.1 { a } else { b }),
        (a, b) => a.or(b),
    };
    Ok(Health {
        vk_status: settings.as_ref().and_then(|s| s.vk_server_status.clone()),
        last_check_at: settings.as_ref().and_then(|s| s.last_check_at),
        last_event_at: app.store.last_event_at(group_id).await?,
        events_24h: app.store.inbox_counts_by_type(group_id, since).await?,
        replies_sent_24h,
        replies_failed_24h,
        queue_depth: app.store.inbox_depth(Some(group_id)).await?,
        last_error,
        paused: bot.and_then(|b| b.paused_reason),
        log: app.store.community_log(group_id, 10).await?,
    })
}

/// What a reconcile pass did for one community.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// VK agrees with us.
    InOrder,
    /// Our server was gone or `failed`: a setup run was started to restore it.
    SetupStarted(&'static str),
    /// Events or the API version had drifted and were set back.
    SettingsRestored,
    /// VK no longer accepts the token: the community needs reconnecting.
    NeedsReauth,
    /// Not connected through the API (nothing to compare).
    Skipped,
    /// VK did not answer; try next time.
    VkUnavailable,
}

/// Compares VK's view of our server with ours and repairs drift. Records what it did in the community's log.
pub async fn reconcile(app: &AppState, group_id: i64) -> AppResult<Repair> {
    let Some(settings) = app.store.community_settings(group_id).await? else { return Ok(Repair::Skipped) };
    if settings.setup_mode != "api" || !settings.callback_configured {
        return Ok(Repair::Skipped);
    }
    let Some((token, _)) = connect::community_token(app, group_id).await? else { return Ok(Repair::Skipped) };
    let group = GroupId(group_id);
    let url = connect::callback_url(app);
    let servers = match app.vk.groups_get_callback_servers(&token, group).await {
        Ok(s) => s,
        Err(e) => return vk_trouble(app, group_id, &e).await,
    };
    let ours = servers
        .iter()
        .find(|s| Some(s.id) == settings.server_id)
        .or_else(|| servers.iter().find(|s| s.url.trim_end_matches('/') == url.trim_end_matches('/')));
    let Some(server) = ours else {
        app.store.set_vk_server_status(group_id, Some("missing")).await?;
        app.store.log_community(group_id, "repair", "server_missing").await?;
        connect::start_repair(app, group_id).await?;
        return Ok(Repair::SetupStarted("server_missing"));
    };
    app.store.set_vk_server_status(group_id, Some(server.status.as_str())).await?;
    if server.status == ServerStatus::Failed {
        app.store.log_community(group_id, "repair", "server_failed").await?;
        connect::start_repair(app, group_id).await?;
        return Ok(Repair::SetupStarted("server_failed"));
    }
    let live = match app.vk.groups_get_callback_settings(&token, group, server.id).await {
        Ok(l) => l,
        Err(e) => return vk_trouble(app, group_id, &e).await,
    };
    let wanted = settings.event_list();
    let missing: Vec<&str> =
        wanted.iter().map(String::as_str).filter(|e| live.events.get(*e).is_none_or(|v| *v == 0)).collect();
    let version_drift = live.api_version != API_VERSION;
    if missing.is_empty() && !version_drift {
        return Ok(Repair::InOrder);
    }
    let on: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let off: Vec<&str> = EVENTS.iter().copied().filter(|e| !on.contains(e)).collect();
    if let Err(e) = app.vk.groups_set_callback_settings(&token, group, server.id, API_VERSION, &on, &off).await {
        return vk_trouble(app, group_id, &e).await;
    }
    let what = match (missing.is_empty(), version_drift) {
        (false, true) => format!("events_restored:{};version_restored:{}", missing.join(","), live.api_version),
        (false, false) => format!("events_restored:{}", missing.join(",")),
        _ => format!("version_restored:{}", live.api_version),
    };
    app.store.log_community(group_id, "repair", &what).await?;
    tracing::info!(group_id, repair = %what, "reconcile repaired drift at VK");
    Ok(Repair::SettingsRestored)
}

async fn vk_trouble(app: &AppState, group_id: i64, e: &vk::Error) -> AppResult<Repair> {
    if e.needs_reauth() {
        app.store.mark_needs_reauth(group_id, "reauth").await?;
        app.store.set_bot_paused(group_id, Some("reauth")).await?;
        app.store.log_community(group_id, "paused", "reauth").await?;
        return Ok(Repair::NeedsReauth);
    }
    tracing::warn!(group_id, error = %e, "reconcile: VK did not answer");
    Ok(Repair::VkUnavailable)
}

/// One pass over every connected community; returns how many it looked at.
pub async fn reconcile_all(app: &AppState) -> AppResult<usize> {
    let communities = app.store.connected_communities().await?;
    for group_id in &communities {
        if let Err(e) = reconcile(app, *group_id).await {
            tracing::warn!(group_id, error = %e, "reconcile failed");
        }
    }
    Ok(communities.len())
}

/// Runs a reconcile pass every `reconcile_every` (and resumes interrupted setups) until `stop` turns true.
pub async fn run_reconciler(app: AppState, mut stop: watch::Receiver<bool>) {
    let every = app.settings.timing.reconcile_every.max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if let Err(e) = connect::resume_abandoned(&app).await {
            tracing::warn!(error = %e, "could not look for interrupted setups");
        }
        match reconcile_all(&app).await {
            Ok(n) => tracing::debug!(communities = n, "reconcile pass done"),
            Err(e) => tracing::warn!(error = %e, "reconcile pass failed"),
        }
    }
}
