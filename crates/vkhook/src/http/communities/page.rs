//! `/communities/{id}`: a community's page — its state, the connect card, the bot, forwarding, health and alerts.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use vk::GroupId;

use crate::app::AppState;
use crate::error::{AppError, AppResult, Problem};
use crate::i18n::Msg;
use crate::model::{CommunityStatus, ErrorKind, Role, SetupMode, SetupState, VkServerView};
use crate::roles::Standing;
use crate::store::{LongPollRow, UserCommunity, CONNECTING};

use super::list::age;
use super::{role_label, status_label};
use crate::http::access::Listed;
use crate::http::auth::user_name;
use crate::http::health::vk_view_words;
use crate::http::notice::Notice;
use crate::http::render::{render, Layout};
use crate::http::session::Viewer;

pub struct ConnectedView {
    /// «✅ Callback API подключен» or «✅ Long Poll подключен».
    pub title: &'static str,
    /// Connected by Long Poll alone (no callback server).
    pub long_poll: bool,
    /// Where events come from: «Callback API», «Long Poll» or both.
    pub source: &'static str,
    /// Long Poll is connected but does not run (switched off at VK): what to do.
    pub long_poll_trouble: Option<&'static str>,
    /// Connected by Callback without Long Poll: offer to add it (both sources at once).
    pub offer_long_poll: bool,
    pub url: String,
    pub api_version: String,
    pub connected_at: String,
    pub connected_by: String,
    pub vk_status: String,
    pub vk_status_class: &'static str,
    pub events: Vec<(&'static str, bool)>,
}

pub struct SlotView {
    pub id: i64,
    pub title: String,
    pub url: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "communities/detail.html")]
struct CommunityDetailPage {
    layout: Layout,
    csrf: String,
    community: UserCommunity,
    role_label: &'static str,
    status_label: &'static str,
    status_class: &'static str,
    is_admin: bool,
    only_admin: String,
    notice: Option<&'static str>,
    setup_running: bool,
    error: Option<String>,
    /// The error is a refused key: offer «Выдать доступ заново».
    offer_reauth: bool,
    slots: Vec<SlotView>,
    connected: Option<ConnectedView>,
    manual_waiting: bool,
    default_reply: &'static str,
    bot: crate::http::bot::BotView,
    health: Option<crate::http::health::HealthView>,
    /// The «Пересылка событий» card (administrators only).
    endpoints: Vec<crate::http::forward::EndpointView>,
    event_types: &'static [&'static str],
    /// The «Уведомления» card (administrators VK confirms now).
    alerts: Option<crate::http::alerts::AlertsCard>,
    /// Added by link and not proven yet: only the way to prove it (the connect button) is shown.
    unproven: bool,
    /// VK confirms the administrator now (or recently enough): forwarding, alerts and other private things show.
    sees_private: bool,
    /// VK could not confirm the role now: how old its last proof is.
    proof_note: Option<String>,
    /// The proof is too old for private things: offer «Подтвердить права».
    offer_proof: bool,
    /// VK cannot reach the public URL: why Callback will not work here (Long Poll is offered first).
    no_public_url: Option<String>,
    /// Events VK will not send again.
    gaps: Vec<GapView>,
}

pub struct GapView {
    pub from: String,
    pub to: String,
    pub why: &'static str,
}

#[derive(Deserialize)]
pub struct DetailQuery {
    notice: Option<String>,
    preview: Option<String>,
}

/// The notices the community page shows.
const DETAIL_NOTICES: [Notice; 13] = [
    Notice::AlertsConfirmSent,
    Notice::AlertsConfirmWait,
    Notice::AlertsEmailCleared,
    Notice::EventsSaved,
    Notice::EventsFailed,
    Notice::Disconnected,
    Notice::DisconnectedTokenDead,
    Notice::BotSaved,
    Notice::CheckedInOrder,
    Notice::CheckedRepaired,
    Notice::CheckedUnavailable,
    Notice::EndpointDeleted,
    Notice::AlertsSaved,
];

pub async fn show_community(
    State(app): State<AppState>,
    listed: Listed,
    viewer: Viewer,
    Query(q): Query<DetailQuery>,
) -> AppResult<Response> {
    let Listed { user, mut community } = listed;
    let id = community.id;
    let t = user.lang.msg();
    let unproven = community.role == Role::Unknown;
    // Where VK says the user stands now decides what the page shows (asked at most once per the role cache's
    // lifetime); someone VK has removed sees nothing.
    let now = crate::store::now_ms();
    let standing = if unproven { None } else { Some(app.roles.standing(user.user_id, id).await?) };
    match standing.map(Standing::role) {
        Some(None) => {
            return Err(AppError::shown_with_back(Problem::Forbidden, |t| t.err_no_longer_admin, "/communities"))
        }
        Some(Some(role)) => community.role = role,
        None => {}
    }
    let is_admin = community.role == Role::Administrator;
    let sees_private = standing.is_some_and(|s| s.may_see_private(now, app.settings.timing.proof_fresh));
    let proof_note =
        standing.and_then(|s| s.proof_age_ms(now)).map(|ms| crate::i18n::fill(t.proof_age, &[("age", &age(t, ms))]));
    let offer_proof = is_admin && !sees_private;
    // Someone not proven yet sees the community's name and the way to prove it, nothing of its state.
    let settings = if unproven { None } else { app.store.community_settings(id).await? };
    // VK's live view first: if VK refuses the key now, the page says so at once.
    let polled = if unproven { None } else { app.store.long_poll(id).await? };
    let connected = match &settings {
        Some(s) if community.status == CommunityStatus::Connected && s.setup_mode.server_is_ours() => {
            let view = connected_view(&app, t, s, polled.as_ref()).await?;
            if view.is_none() {
                community.status = CommunityStatus::NeedsReauth;
            }
            view
        }
        Some(s) if community.status == CommunityStatus::Connected && s.setup_mode == SetupMode::LongPoll => {
            Some(long_poll_view(&app, t, s, polled.as_ref()).await?)
        }
        _ => None,
    };
    let gaps = if unproven { Vec::new() } else { gap_views(&app, t, id).await? };
    let no_public_url = (!vk_can_reach(app.connector.public_url().as_url()))
        .then(|| crate::i18n::fill(t.connect_no_public_url, &[("url", &app.connector.callback_url())]));
    let setup = if unproven { None } else { app.store.setup(id).await? };
    let error_kind = shown_error(&community, setup.as_ref());
    let error = error_kind.map(|k| crate::http::connect::error_message(t, k, &app.connector.callback_url()));
    let slots = if error_kind == Some(ErrorKind::ServersLimit) && sees_private {
        occupied_slots(&app, id).await?
    } else {
        Vec::new()
    };
    let manual_waiting = settings
        .as_ref()
        .is_some_and(|s| s.setup_mode.admin_enters_code() && !s.callback_configured && s.confirmation_code.is_some());
    let notice = Notice::from_query(q.notice.as_deref()).filter(|n| DETAIL_NOTICES.contains(n)).map(|n| n.text(t));
    let bot = crate::http::bot::bot_view(&app, t, id, q.preview.as_deref()).await?;
    let has_events = app.store.last_event_at(id).await?.is_some();
    let health = if unproven {
        None
    } else if community.status != CommunityStatus::NotConnected || has_events {
        Some(crate::http::health::health_view(&app, t, id).await?)
    } else {
        None
    };
    let endpoints = if sees_private { crate::http::forward::forwarding_card(&app, t, id).await? } else { Vec::new() };
    let alerts = if sees_private { Some(crate::http::alerts::alerts_card(&app, t, id).await?) } else { None };
    let (status_label, status_class) = status_label(t, community.status);
    let role = role_label(t, community.role);
    render(CommunityDetailPage {
        layout: Layout::new(&viewer, user_name(&app, &viewer).await?, &format!("/communities/{id}")),
        csrf: user.session.csrf.clone(),
        role_label: role,
        status_label,
        status_class,
        is_admin,
        only_admin: crate::i18n::fill(t.only_admin_can_connect, &[("role", &role.to_lowercase())]),
        notice,
        setup_running: setup.as_ref().is_some_and(|s| s.state == SetupState::Running),
        error,
        offer_reauth: error_kind == Some(ErrorKind::Reauth),
        slots,
        connected,
        manual_waiting,
        default_reply: t.bot_default_reply,
        bot,
        health,
        endpoints,
        event_types: &vk::DEFAULT_SUBSCRIPTION,
        alerts,
        unproven,
        sees_private,
        proof_note,
        offer_proof,
        no_public_url,
        gaps,
        community,
    })
}

/// The error the status card explains: a refused key, or why the last setup failed (unless connected since).
fn shown_error(community: &UserCommunity, setup: Option<&crate::store::SetupRow>) -> Option<ErrorKind> {
    match (setup, community.status) {
        (_, CommunityStatus::NeedsReauth) => Some(ErrorKind::Reauth),
        (Some(s), status) if s.state == SetupState::Failed && status != CommunityStatus::Connected => {
            Some(s.error_kind.unwrap_or(ErrorKind::Internal))
        }
        _ => None,
    }
}

/// Every server at VK, for the «10 servers» choice (empty when VK cannot say now).
async fn occupied_slots(app: &AppState, group_id: GroupId) -> AppResult<Vec<SlotView>> {
    match app.connector.occupied_slots(group_id).await {
        Ok(servers) => Ok(servers
            .into_iter()
            .map(|s| SlotView { id: s.id, title: s.title, url: s.url, status: s.status.as_str().to_owned() })
            .collect()),
        Err(crate::connect::ConnectError::Store(e)) => Err(e.into()),
        Err(e) => {
            tracing::warn!(group_id = group_id.0, error = %e, "could not list the occupied slots");
            Ok(Vec::new())
        }
    }
}

/// Whether VK can post to this address: HTTPS, at a name or address of the public internet (VK's servers
/// call it: https://dev.vk.com/ru/api/callback/getting-started). Otherwise the Callback API cannot be confirmed
/// and Bots Long Poll is the way in.
fn vk_can_reach(url: &url::Url) -> bool {
    if url.scheme() != "https" {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let local = [".localhost", ".local", ".internal", ".lan", ".home.arpa"];
            name.contains('.') && name != "localhost" && !local.iter().any(|l| name.ends_with(l))
        }
        Some(url::Host::Ipv4(ip)) => !crate::forward::target::is_internal(ip.into()),
        Some(url::Host::Ipv6(ip)) => !crate::forward::target::is_internal(ip.into()),
        None => false,
    }
}

/// Who connected the community, by name.
async fn connected_by(app: &AppState, s: &crate::store::CommunitySettings) -> AppResult<String> {
    Ok(match s.connected_by {
        Some(user_id) => {
            app.store.user(user_id).await?.map(|u| format!("{} {}", u.first_name, u.last_name)).unwrap_or_default()
        }
        None => String::new(),
    })
}

/// What the card says of Long Poll's trouble, if it has one.
fn long_poll_trouble(t: &'static Msg, polled: Option<&LongPollRow>) -> Option<&'static str> {
    match polled?.trouble.as_deref()? {
        crate::longpoll::OFF_AT_VK => Some(t.long_poll_off_at_vk),
        CONNECTING => Some(t.long_poll_connecting),
        _ => None,
    }
}

/// The status card of a community connected by Long Poll alone: what vkhook receives, from the store (the poller
/// talks to VK; its trouble is shown).
async fn long_poll_view(
    app: &AppState,
    t: &'static Msg,
    s: &crate::store::CommunitySettings,
    polled: Option<&LongPollRow>,
) -> AppResult<ConnectedView> {
    let chosen = s.event_list();
    let trouble = long_poll_trouble(t, polled);
    Ok(ConnectedView {
        title: t.connected_long_poll_title,
        long_poll: true,
        source: t.source_long_poll,
        long_poll_trouble: trouble,
        offer_long_poll: false,
        url: String::new(),
        api_version: s.api_version.clone().unwrap_or_default(),
        connected_at: s.connected_at.map(crate::http::render::format_time).unwrap_or_default(),
        connected_by: connected_by(app, s).await?,
        vk_status: if trouble.is_some() { t.vk_status_unknown.to_owned() } else { t.source_long_poll.to_owned() },
        vk_status_class: if trouble.is_some() { "warn" } else { "ok" },
        events: vk::DEFAULT_SUBSCRIPTION.iter().map(|e| (*e, chosen.iter().any(|c| c == e))).collect(),
    })
}

/// The community's gaps, newest first.
async fn gap_views(app: &AppState, t: &'static Msg, group_id: GroupId) -> AppResult<Vec<GapView>> {
    let gaps = app.store.gaps(group_id, 20).await?;
    Ok(gaps
        .into_iter()
        .map(|g| GapView {
            from: crate::http::render::format_time(g.from_at),
            to: crate::http::render::format_time(g.to_at),
            why: match g.why.as_str() {
                crate::longpoll::GAP_HISTORY_LOST => t.gap_history_lost,
                crate::longpoll::GAP_INFORMATION_LOST => t.gap_information_lost,
                _ => t.gaps_intro,
            },
        })
        .collect())
}

/// The status card of a connected community, with VK's live view; `None` when VK refused the key just now.
async fn connected_view(
    app: &AppState,
    t: &'static Msg,
    s: &crate::store::CommunitySettings,
    polled: Option<&LongPollRow>,
) -> AppResult<Option<ConnectedView>> {
    let connected_by = connected_by(app, s).await?;
    let (vk_status, vk_status_class, live_events) = match app.connector.vk_server_view(GroupId(s.group_id)).await {
        Ok((server, settings)) => {
            let view = VkServerView::Listed(server.status);
            (vk_view_words(t, &view).to_owned(), view.trouble().class(), Some(settings))
        }
        Err(crate::connect::ConnectError::Store(e)) => return Err(e.into()),
        Err(crate::connect::ConnectError::Vk(e)) if e.needs_reauth() => return Ok(None),
        Err(crate::connect::ConnectError::NotConnected) => (t.vk_status_missing.to_owned(), "err", None),
        Err(_) => (t.vk_status_unknown.to_owned(), "warn", None),
    };
    let chosen = s.event_list();
    let events = vk::DEFAULT_SUBSCRIPTION
        .iter()
        .map(|e| {
            let on = match &live_events {
                Some(live) => live.events.get(*e).is_some_and(|v| *v != 0),
                None => chosen.iter().any(|c| c == e),
            };
            (*e, on)
        })
        .collect();
    Ok(Some(ConnectedView {
        title: t.connected_title,
        long_poll: false,
        source: if polled.is_some() { t.source_both } else { t.source_callback },
        long_poll_trouble: long_poll_trouble(t, polled),
        offer_long_poll: polled.is_none(),
        url: app.connector.callback_url(),
        api_version: live_events.map(|l| l.api_version).or_else(|| s.api_version.clone()).unwrap_or_default(),
        connected_at: s.connected_at.map(crate::http::render::format_time).unwrap_or_default(),
        connected_by,
        vk_status,
        vk_status_class,
        events,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vk_reaches_only_https_on_the_public_internet() {
        let reach = |u: &str| vk_can_reach(&url::Url::parse(u).unwrap());
        assert!(reach("https://hooks.example.com"));
        assert!(reach("https://95.213.11.180:8443/"));
        assert!(reach("https://[2a00:bdc0::1]/"));
        for unreachable in [
            "http://hooks.example.com",
            "https://localhost:8080",
            "https://app.localhost",
            "https://nas.local",
            "https://box.internal",
            "https://myhost",
            "https://127.0.0.1:8080",
            "https://192.168.1.10",
            "https://[::1]/",
            "https://203.0.113.7/",
        ] {
            assert!(!reach(unreachable), "{unreachable}");
        }
    }
}
