//! The «Уведомления» card: who is told when something needs them, how to let the community's VK messages through,
//! the e-mail address, and what was sent and when.

use axum::extract::State;
use axum::response::Response;
use vk::GroupId;

use crate::app::AppState;
use crate::error::{AppError, AppResult, Problem};
use crate::i18n::{fill, Msg};
use crate::model::{AlertKind, AlertOutcome, Reason};

use super::access::Trusted;
use super::forms::FormPairs;
use super::notice::Notice;
use super::render::format_time;

/// Alerts the card lists.
const SHOWN: i64 = 20;

pub struct AlertView {
    pub time: String,
    pub what: &'static str,
    pub sends: i64,
    pub vk: String,
    pub email: String,
    pub resolved: bool,
}

pub struct AlertsCard {
    pub recipient: String,
    /// An address given but not confirmed yet.
    pub pending: Option<String>,
    /// Whether a VK message would reach the recipient, said before any alert: (words, css class).
    pub reachable: Option<(&'static str, &'static str)>,
    pub email: String,
    pub email_configured: bool,
    pub alerts: Vec<AlertView>,
}

fn outcome(t: &'static Msg, o: Option<AlertOutcome>, reason: Option<Reason>) -> String {
    match o {
        Some(AlertOutcome::Sent) => t.alerts_sent.into(),
        Some(AlertOutcome::NotAllowed) => t.alerts_not_allowed.into(),
        Some(AlertOutcome::Refused) => fill(t.alerts_refused, &[("why", super::events::reason_words(t, reason))]),
        Some(AlertOutcome::NoKey) => t.alerts_no_key.into(),
        Some(AlertOutcome::Failed) | None => t.alerts_failed.into(),
        Some(AlertOutcome::NotConfigured) => t.alerts_not_configured.into(),
        Some(AlertOutcome::NoAddress) => t.alerts_no_address.into(),
        Some(AlertOutcome::Limited) => t.alerts_limited.into(),
    }
}

pub async fn alerts_card(app: &AppState, t: &'static Msg, group_id: GroupId) -> AppResult<AlertsCard> {
    let settings = app.store.community_settings(group_id).await?;
    let recipient = match settings.and_then(|s| s.connected_by) {
        Some(user) => {
            app.store.user(user).await?.map(|u| format!("{} {}", u.first_name, u.last_name)).unwrap_or_default()
        }
        None => String::new(),
    };
    let alerts = app
        .store
        .alerts(group_id, SHOWN)
        .await?
        .into_iter()
        .map(|a| AlertView {
            time: format_time(a.last_sent_at.max(a.started_at)),
            what: match a.kind {
                AlertKind::BotPaused => t.alerts_kind_bot_paused,
                AlertKind::EndpointDisabled => t.alerts_kind_endpoint_disabled,
                AlertKind::VkFailed => t.alerts_kind_vk_failed,
            },
            sends: a.sends,
            vk: outcome(t, a.vk_result, a.vk_reason),
            email: outcome(t, a.email_result, None),
            resolved: a.resolved_at.is_some(),
        })
        .collect();
    let reachable = match app.alerts.vk_reachable(group_id).await? {
        Some(true) => Some((t.alerts_vk_reachable, "ok")),
        Some(false) => Some((t.alerts_vk_unreachable, "warn")),
        None if recipient.is_empty() => None,
        None => Some((t.alerts_vk_unknown, "muted")),
    };
    Ok(AlertsCard {
        recipient,
        reachable,
        email: app.store.alert_email(group_id).await?.unwrap_or_default(),
        pending: app.store.pending_alert_email(group_id).await?,
        email_configured: app.alerts.email_configured(),
        alerts,
    })
}

/// The card's e-mail form: an address, or nothing (no e-mails).
pub async fn save_email(
    State(app): State<AppState>,
    Trusted { community, .. }: Trusted,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let form = FormPairs::parse(&body);
    let Some(email) = form.text("email") else {
        app.store.clear_alert_email(community.id).await?;
        return Ok(Notice::AlertsEmailCleared.redirect(community.id, "#alerts"));
    };
    if !crate::alerts::valid_email(email) {
        let back = format!("/communities/{}#alerts", community.id);
        return Err(AppError::shown_with_back(Problem::Invalid, |t| t.alerts_email_invalid, back));
    }
    if app.store.alert_email(community.id).await?.as_deref() == Some(email) {
        return Ok(Notice::AlertsSaved.redirect(community.id, "#alerts"));
    }
    // Nothing goes to a new address but the link that confirms it.
    let notice = if app.alerts.request_email(community.id, email).await? {
        Notice::AlertsConfirmSent
    } else {
        Notice::AlertsConfirmWait
    };
    Ok(notice.redirect(community.id, "#alerts"))
}

#[derive(serde::Deserialize)]
pub struct ConfirmQuery {
    token: Option<String>,
}

/// The confirmation link from the e-mail (no sign-in needed: the link is the proof that the mailbox is theirs).
pub async fn confirm_email(
    State(app): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<ConfirmQuery>,
) -> AppResult<Response> {
    let token = q.token.unwrap_or_default();
    match app.alerts.confirm_email(&token).await? {
        Some(group_id) => {
            tracing::info!(group_id = group_id, "alert e-mail address confirmed");
            let to = format!("/?notice={}", Notice::AlertsConfirmed.as_str());
            Ok(axum::response::IntoResponse::into_response(axum::response::Redirect::to(&to)))
        }
        None => Err(AppError::shown_with_back(Problem::BadRequest, |t| t.alerts_confirm_bad, "/communities")),
    }
}
