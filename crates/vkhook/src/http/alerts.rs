//! The «Уведомления» card: who is told when something needs them, how to let the community's VK messages through,
//! the e-mail address, and what was sent and when.

use axum::extract::State;
use axum::response::Response;

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
    }
}

pub async fn alerts_card(app: &AppState, t: &'static Msg, group_id: i64) -> AppResult<AlertsCard> {
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
    let email = form.text("email");
    if email.is_some_and(|e| !crate::alerts::valid_email(e)) {
        let back = format!("/communities/{}#alerts", community.id);
        return Err(AppError::shown_with_back(Problem::Invalid, |t| t.alerts_email_invalid, back));
    }
    app.store.set_alert_email(community.id, email).await?;
    Ok(Notice::AlertsSaved.redirect(community.id, "#alerts"))
}
