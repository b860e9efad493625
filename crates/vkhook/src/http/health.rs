//! The health card and «Проверить» (a reconcile pass for one community, now).

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use vk::GroupId;

use crate::app::AppState;
use crate::error::AppResult;
use crate::health::{self, LastError, Repair};
use crate::i18n::{fill, Msg};
use crate::model::{LogEntry, Trouble, VkServerView};

use super::access::Administered;
use super::notice::Notice;
use super::render::format_time;

/// «Проверить»: a reconcile pass for this community, now. Administrators only: a repair may give VK a new secret.
pub async fn check_now(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
) -> AppResult<Response> {
    within_check_limit(&app, community.id)?;
    let notice = match app.reconciler.reconcile(community.id).await? {
        Repair::InOrder | Repair::Skipped => Notice::CheckedInOrder,
        Repair::SetupStarted(_) | Repair::SettingsRestored | Repair::NeedsReauth => Notice::CheckedRepaired,
        Repair::VkUnavailable => Notice::CheckedUnavailable,
    };
    Ok(Redirect::to(&format!("/communities/{}?notice={notice}#health", community.id)).into_response())
}

pub struct HealthView {
    pub vk_status: String,
    pub vk_status_class: &'static str,
    pub last_check: String,
    pub last_event: String,
    pub events_24h: Vec<(String, i64)>,
    pub replies: String,
    /// How many events wait, and since when.
    pub queue_depth: String,
    pub last_error: String,
    pub log: Vec<(String, String)>,
    /// The last «Проверить путь»: (worked, when, in words).
    pub path: Option<(bool, String, String)>,
    /// «События перестали приходить», in words, when they did.
    pub silent: Option<String>,
}

/// «Проверить» and «Проверить путь» share a per-community limit (each costs VK calls or a request through the
/// admin's proxy).
fn within_check_limit(app: &AppState, group_id: GroupId) -> AppResult<()> {
    app.check_limit.hit(group_id.0).map_err(|wait| {
        crate::error::AppError::shown_with_back(
            crate::error::Problem::TooMany { retry_after_secs: wait.as_secs().max(1) },
            |t| t.error_too_many,
            format!("/communities/{group_id}#health"),
        )
    })
}

/// «Проверить путь»: the synthetic event through the public URL; the result shows on the health card.
pub async fn prove_path(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
) -> AppResult<Response> {
    within_check_limit(&app, community.id)?;
    let back = format!("/communities/{}#health", community.id);
    match app.reconciler.prove_path(community.id).await? {
        Some(_) => Ok(Redirect::to(&back).into_response()),
        None => Err(crate::error::AppError::shown_with_back(
            crate::error::Problem::Conflict,
            |t| t.path_not_connected,
            back,
        )),
    }
}

fn path_words(t: &'static Msg, outcome: crate::model::PathOutcome, detail: &str, url: &str) -> String {
    use crate::model::PathOutcome;
    let text = match outcome {
        PathOutcome::Arrived => return fill(t.path_arrived, &[("ms", detail)]),
        PathOutcome::Unreachable => t.path_unreachable,
        PathOutcome::Tls => t.path_tls,
        PathOutcome::Redirect => t.path_redirect,
        PathOutcome::Answered => t.path_answered,
        PathOutcome::Timeout => t.path_timeout,
    };
    fill(text, &[("url", url), ("detail", detail)])
}

/// VK's view of our server in the admin's words: VK's own status word, or that VK no longer lists the server.
pub fn vk_view_words<'a>(t: &'static Msg, view: &'a VkServerView) -> &'a str {
    match view {
        VkServerView::Listed(status) => status.as_str(),
        VkServerView::Missing => t.vk_status_missing,
    }
}

pub async fn health_view(app: &AppState, t: &'static Msg, group_id: GroupId) -> AppResult<HealthView> {
    let h = health::card(&app.store, group_id, &app.settings.timing.silence).await?;
    let none = || t.health_none.to_owned();
    Ok(HealthView {
        vk_status: h.vk_status.as_ref().map_or_else(none, |v| vk_view_words(t, v).to_owned()),
        // Not looked at yet: a warning, as VK's `wait`.
        vk_status_class: h.vk_status.as_ref().map_or(Trouble::Warning, VkServerView::trouble).class(),
        last_check: h.last_check_at.map(format_time).unwrap_or_else(none),
        last_event: h.last_event_at.map(format_time).unwrap_or_else(none),
        events_24h: h.events_24h.into_iter().map(|c| (c.key, c.n)).collect(),
        replies: fill(
            t.health_replies_counts,
            &[("sent", &h.replies_sent_24h.to_string()), ("failed", &h.replies_failed_24h.to_string())],
        ),
        queue_depth: match h.queue_oldest_at {
            Some(at) => fill(t.health_queue_oldest, &[("n", &h.queue_depth.to_string()), ("at", &format_time(at))]),
            None => h.queue_depth.to_string(),
        },
        last_error: h
            .last_error
            .map(|(e, at)| format!("{} — {}", format_time(at), error_words(t, &e, &app.connector.callback_url())))
            .unwrap_or_else(none),
        log: h
            .log
            .into_iter()
            .map(|l| (format_time(l.at), l.entry().map(|e| log_words(t, &e)).unwrap_or(l.message)))
            .collect(),
        silent: h.silent.map(|gap| {
            let last = h.last_event_at.map(format_time).unwrap_or_default();
            fill(t.health_silent, &[("gap", &super::communities::duration_words(t, gap)), ("last", &last)])
        }),
        path: app.store.path_check(group_id).await?.map(|(at, outcome, detail)| {
            let words = path_words(t, outcome, &detail, &app.connector.callback_url());
            (outcome == crate::model::PathOutcome::Arrived, format_time(at), words)
        }),
    })
}

/// The last error for the admin: one of our kinds in words, or VK's own words (cut).
fn error_words(t: &'static Msg, error: &LastError, callback_url: &str) -> String {
    match error {
        LastError::Kind(kind) => super::connect::error_message(t, *kind, callback_url),
        LastError::Vk(words) => words.chars().take(200).collect(),
    }
}

fn log_words(t: &'static Msg, entry: &LogEntry) -> String {
    match entry {
        LogEntry::ServerMissing => t.log_server_missing.to_owned(),
        LogEntry::ServerFailed => t.log_server_failed.to_owned(),
        LogEntry::SettingsRestored { events, version } => {
            let mut parts = Vec::new();
            if !events.is_empty() {
                parts.push(fill(t.log_events_restored, &[("events", &events.join(", "))]));
            }
            if let Some(version) = version {
                parts.push(fill(t.log_version_restored, &[("version", version)]));
            }
            parts.join(" ")
        }
        LogEntry::Paused(_) => t.log_paused.to_owned(),
        LogEntry::Resumed => t.log_resumed.to_owned(),
    }
}
