//! `/communities`: the communities the user manages, adding one by link, and a community's page.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use vk::GroupId;
use vk::UserId;

use crate::accounts::AccountError;
use crate::app::AppState;
use crate::error::{with_problem, AppError, AppResult, Problem};
use crate::health::{Activity, Silence};
use crate::i18n::Msg;
use crate::model::{CommunityStatus, ErrorKind, Role, SetupState, Trouble, VkServerView};
use crate::roles::Standing;
use crate::store::{CommunityRow, UserCommunity};

use super::access::Listed;
use super::auth::user_name;
use super::health::vk_view_words;
use super::notice::Notice;
use super::render::{render, Layout};
use super::session::{SignedIn, Viewer};

pub fn role_label(t: &'static Msg, role: Role) -> &'static str {
    match role {
        Role::Administrator => t.role_administrator,
        Role::Editor => t.role_editor,
        Role::Moderator => t.role_moderator,
        Role::Unknown => t.role_unknown,
    }
}

/// The status badge: (text, css class).
pub fn status_label(t: &'static Msg, status: CommunityStatus) -> (&'static str, &'static str) {
    match status {
        CommunityStatus::Connected => (t.status_connected, "ok"),
        CommunityStatus::Connecting => (t.status_connecting, "warn"),
        CommunityStatus::Failed => (t.status_failed, "err"),
        CommunityStatus::NeedsReauth => (t.status_needs_reauth, "err"),
        CommunityStatus::NotConnected => (t.status_not_connected, ""),
    }
}

pub struct CommunityItem {
    pub id: i64,
    /// Only an administrator connects or disconnects: only their communities get a tick box.
    pub is_admin: bool,
    pub name: String,
    pub photo: Option<String>,
    pub role_label: &'static str,
    pub status_label: &'static str,
    pub status_class: &'static str,
    pub vk_status: String,
    pub last_event: String,
    pub events_24h: i64,
    pub backlog: i64,
    pub bot: &'static str,
    pub forwarding: String,
    pub last_error: String,
    /// Why it needs the admin (empty: it does not).
    pub attention: Vec<String>,
}

#[derive(Template)]
#[template(path = "communities/list.html")]
struct CommunityListPage {
    layout: Layout,
    csrf: String,
    communities: Vec<CommunityItem>,
    /// Only those that need attention are listed.
    only_attention: bool,
    needing_attention: usize,
    /// Some listed community is the user's to connect (the bulk buttons show).
    any_admin: bool,
    notice: Option<&'static str>,
    add_open: bool,
    add_error: Option<&'static str>,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    attention: Option<String>,
    /// `none`: a bulk button was pressed with nothing ticked.
    bulk: Option<String>,
}

/// Why the list could not come from VK.
#[derive(Clone, Copy)]
enum ListProblem {
    NoGroupsScope,
    Hidden,
    VkUnavailable,
    /// A bulk button was pressed with no community ticked.
    NothingTicked,
}

/// Refreshes the user's communities from VK (`groups.get filter=moder extended=1`) when the token allows it.
async fn refresh_from_vk(app: &AppState, user_id: UserId) -> AppResult<Option<ListProblem>> {
    let result = app
        .accounts
        .with_user_token(user_id, |token, scopes| async move {
            if !vk::oauth::scope_listed(&scopes, "groups") {
                return Ok(None);
            }
            app.vk.groups_get(&token, &["moder"]).await.map(Some)
        })
        .await;
    match result {
        Ok(None) => Ok(Some(ListProblem::NoGroupsScope)),
        Ok(Some(list)) => {
            // VK's list with `groups` is the proof of each role; a community listed without its level keeps the
            // stored role (a missing field never removes or demotes anyone).
            let managed: Vec<(CommunityRow, Option<Role>)> = list
                .items
                .iter()
                .map(|g| (CommunityRow::from_vk(g), g.admin_level.map(Role::from_admin_level)))
                .collect();
            app.store.set_user_communities(user_id, &managed).await?;
            Ok(None)
        }
        Err(AccountError::Vk(e)) if matches!(e.code(), Some(vk::code::ACCESS_DENIED | vk::code::PERMISSION_DENIED)) => {
            Ok(Some(ListProblem::NoGroupsScope))
        }
        Err(AccountError::Vk(e)) if e.code() == Some(vk::code::GROUPS_LIST_HIDDEN) => Ok(Some(ListProblem::Hidden)),
        Err(AccountError::Vk(e)) if !e.needs_reauth() => {
            tracing::warn!(user_id = user_id.0, error = %e, "could not list communities at VK");
            Ok(Some(ListProblem::VkUnavailable))
        }
        // VK refused the refreshed token too: the user signs in again.
        Err(AccountError::Vk(_)) => Err(AccountError::SignInAgain.into()),
        Err(e) => Err(e.into()),
    }
}

pub async fn list_communities(
    State(app): State<AppState>,
    user: SignedIn,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> AppResult<Response> {
    let mut problem = refresh_from_vk(&app, user.user_id).await?;
    if problem.is_none() && q.bulk.as_deref() == Some("none") {
        problem = Some(ListProblem::NothingTicked);
    }
    list_page(&app, &user, &viewer, problem, None, q.attention.as_deref() == Some("1")).await
}

async fn list_page(
    app: &AppState,
    user: &SignedIn,
    viewer: &Viewer,
    problem: Option<ListProblem>,
    add_error: Option<&'static str>,
    only_attention: bool,
) -> AppResult<Response> {
    let t = user.lang.msg();
    let now = crate::store::now_ms();
    let silence = &app.settings.timing.silence;
    let rows = app.store.community_overview(user.user_id, now - 24 * 3600 * 1000, silence.since(now)).await?;
    let mut communities: Vec<CommunityItem> = rows.iter().map(|r| item(t, r, now, silence)).collect();
    // Those that need the admin first (the rest keep the store's order, by name).
    communities.sort_by_key(|c| c.attention.is_empty());
    let needing_attention = communities.iter().filter(|c| !c.attention.is_empty()).count();
    let any_admin = communities.iter().any(|c| c.is_admin);
    if only_attention {
        communities.retain(|c| !c.attention.is_empty());
    }
    let notice = problem.map(|p| match p {
        ListProblem::NoGroupsScope => t.no_groups_scope,
        ListProblem::Hidden => t.groups_hidden,
        ListProblem::VkUnavailable => t.vk_unavailable,
        ListProblem::NothingTicked => t.bulk_none_selected,
    });
    let add_open = add_error.is_some() || matches!(problem, Some(ListProblem::NoGroupsScope | ListProblem::Hidden));
    let mut response = render(CommunityListPage {
        layout: Layout::new(viewer, user_name(app, viewer).await?, "/communities"),
        csrf: user.session.csrf.clone(),
        communities,
        only_attention,
        needing_attention,
        any_admin,
        notice,
        add_open,
        add_error,
    })?;
    if add_error.is_some() {
        response = with_problem(response, Problem::Invalid);
    }
    Ok(response)
}

/// "5 мин назад".
fn age(t: &'static Msg, ms: i64) -> String {
    crate::i18n::fill(t.age_ago, &[("span", &duration_words(t, ms))])
}

/// "5 мин", "3 ч", "2 дн".
pub fn duration_words(t: &'static Msg, ms: i64) -> String {
    let s = (ms / 1000).max(0);
    let (text, n) = match s {
        0..60 => (t.span_seconds, s),
        60..3600 => (t.span_minutes, s / 60),
        3600..86400 => (t.span_hours, s / 3600),
        _ => (t.span_days, s / 86400),
    };
    crate::i18n::fill(text, &[("n", &n.to_string())])
}

fn item(t: &'static Msg, r: &crate::store::OverviewRow, now: i64, silence: &Silence) -> CommunityItem {
    use crate::i18n::fill;
    let (status_label, status_class) = status_label(t, r.community.status);
    let mut attention = Vec::new();
    match r.community.status {
        CommunityStatus::NeedsReauth => attention.push(t.attention_reauth.to_owned()),
        CommunityStatus::Failed => attention.push(t.attention_failed.to_owned()),
        CommunityStatus::Connected => {
            if let Some(vk) = r.vk_server_status.as_ref().filter(|v| v.trouble() != Trouble::None) {
                attention.push(fill(t.attention_vk, &[("status", vk_view_words(t, vk))]));
            }
            let pace = Activity { events: r.events_window, first_at: r.window_first_at, last_at: r.last_event_at };
            let vk_says_ok = r.vk_server_status.as_ref().is_some_and(VkServerView::is_ok);
            if silence.stopped(vk_says_ok, &pace, now).is_some() {
                attention.push(t.attention_silent.to_owned());
            }
        }
        _ => {}
    }
    if r.paused && r.community.status != CommunityStatus::NeedsReauth {
        attention.push(t.attention_paused.to_owned());
    }
    if r.endpoints_in_trouble > 0 {
        attention.push(t.attention_forwarding.to_owned());
    }
    let bot = match (r.paused, r.bot_comments, r.bot_messages) {
        (true, _, _) => t.overview_bot_paused,
        (false, true, true) => t.overview_bot_both,
        (false, true, false) => t.overview_bot_comments,
        (false, false, true) => t.overview_bot_messages,
        (false, false, false) => t.overview_bot_off,
    };
    let forwarding = match (r.endpoints, r.endpoints_in_trouble) {
        (0, _) => t.overview_forwarding_none.to_owned(),
        (_, 0) => fill(t.overview_forwarding_ok, &[("n", &r.endpoints.to_string())]),
        _ => t.overview_forwarding_trouble.to_owned(),
    };
    CommunityItem {
        id: r.community.id.0,
        is_admin: r.community.role == Role::Administrator,
        name: r.community.name.clone(),
        photo: r.community.photo.clone(),
        role_label: role_label(t, r.community.role),
        status_label,
        status_class,
        vk_status: r.vk_server_status.as_ref().map(|v| vk_view_words(t, v).to_owned()).unwrap_or_default(),
        last_event: r.last_event_at.map_or_else(|| t.overview_never.to_owned(), |at| age(t, now - at)),
        events_24h: r.events_24h,
        backlog: r.backlog + r.forward_backlog,
        bot,
        forwarding,
        last_error: r.last_error.clone().unwrap_or_default(),
        attention,
    }
}

/// What the admin typed into «Добавить сообщество»: a community key for `groups.getById`.
pub fn parse_community_link(input: &str) -> Option<String> {
    let mut s = input.trim();
    for prefix in ["https://", "http://"] {
        s = s.strip_prefix(prefix).unwrap_or(s);
    }
    for prefix in ["www.", "m."] {
        s = s.strip_prefix(prefix).unwrap_or(s);
    }
    for host in ["vk.com/", "vk.ru/", "vkontakte.ru/"] {
        s = s.strip_prefix(host).unwrap_or(s);
    }
    let s = s.split(['?', '#', '/']).next().unwrap_or_default().trim().trim_start_matches('@');
    if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return None;
    }
    if let Ok(id) = s.parse::<i64>() {
        return (id > 0).then(|| id.to_string());
    }
    Some(s.to_owned())
}

#[derive(Deserialize)]
pub struct AddCommunityForm {
    link: String,
}

pub async fn add_community(
    State(app): State<AppState>,
    user: SignedIn,
    viewer: Viewer,
    Form(form): Form<AddCommunityForm>,
) -> AppResult<Response> {
    let t = user.lang.msg();
    let Some(key) = parse_community_link(&form.link) else {
        return list_page(&app, &user, &viewer, None, Some(t.add_community_bad_input), false).await;
    };
    let result = app
        .accounts
        .with_user_token(user.user_id, |token, _| {
            let (app, key) = (app.clone(), key.clone());
            async move { app.vk.groups_get_by_id(&token, &[key.as_str()]).await }
        })
        .await;
    let group = match result {
        Ok(groups) => groups.into_iter().next(),
        Err(AccountError::Vk(e)) if matches!(e.code(), Some(vk::code::INVALID_PARAM | vk::code::NOT_FOUND)) => None,
        Err(AccountError::Vk(e)) if e.needs_reauth() => return Err(AccountError::SignInAgain.into()),
        Err(e) => return Err(e.into()),
    };
    let Some(group) = group else {
        return list_page(&app, &user, &viewer, None, Some(t.add_community_not_found), false).await;
    };
    // VK tells roles only to a user token with `groups` (https://dev.vk.com/en/reference/objects/group). Its level,
    // or its plain "not a manager" (`is_admin: 0`), decides; when it says nothing, the community is added with its
    // role unknown, and the community consent proves it.
    let role = match (group.admin_level, group.is_admin) {
        (Some(level), _) => Some(Role::from_admin_level(level)),
        (None, Some(false)) => {
            return list_page(&app, &user, &viewer, None, Some(t.add_community_not_managed), false).await;
        }
        (None, _) => None,
    };
    let row = CommunityRow::from_vk(&group);
    let proven_at = role.map(|_| crate::store::now_ms());
    app.store.add_user_community(user.user_id, &row, role.unwrap_or(Role::Unknown), proven_at).await?;
    tracing::info!(user_id = user.user_id.0, group_id = group.id.0, ?role, "community added by link");
    Ok(Redirect::to(&format!("/communities/{}", group.id.0)).into_response())
}

pub struct ConnectedView {
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
    bot: super::rules::BotView,
    health: Option<super::health::HealthView>,
    /// The «Пересылка событий» card (administrators only).
    endpoints: Vec<super::endpoints::EndpointView>,
    event_types: &'static [&'static str],
    /// The «Уведомления» card (administrators VK confirms now).
    alerts: Option<super::alerts::AlertsCard>,
    /// Added by link and not proven yet: only the way to prove it (the connect button) is shown.
    unproven: bool,
    /// VK confirms the administrator now (or recently enough): forwarding, alerts and other private things show.
    sees_private: bool,
    /// VK could not confirm the role now: how old its last proof is.
    proof_note: Option<String>,
    /// The proof is too old for private things: offer «Подтвердить права».
    offer_proof: bool,
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
    let standing = if unproven { None } else { Some(app.roles.standing(user.user_id, GroupId(id.0)).await?) };
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
    let settings = if unproven { None } else { app.store.community_settings(GroupId(id.0)).await? };
    // VK's live view first: if VK refuses the key now, the page says so at once.
    let connected = match &settings {
        Some(s) if community.status == CommunityStatus::Connected && s.setup_mode.server_is_ours() => {
            let view = connected_view(&app, t, s).await?;
            if view.is_none() {
                community.status = CommunityStatus::NeedsReauth;
            }
            view
        }
        _ => None,
    };
    let setup = if unproven { None } else { app.store.setup(GroupId(id.0)).await? };
    let error_kind = shown_error(&community, setup.as_ref());
    let error = error_kind.map(|k| super::connect::error_message(t, k, &app.connector.callback_url()));
    let slots = if error_kind == Some(ErrorKind::ServersLimit) && sees_private {
        occupied_slots(&app, GroupId(id.0)).await?
    } else {
        Vec::new()
    };
    let manual_waiting = settings
        .as_ref()
        .is_some_and(|s| s.setup_mode.admin_enters_code() && !s.callback_configured && s.confirmation_code.is_some());
    let notice = Notice::from_query(q.notice.as_deref()).filter(|n| DETAIL_NOTICES.contains(n)).map(|n| n.text(t));
    let bot = super::rules::bot_view(&app, t, GroupId(id.0), q.preview.as_deref()).await?;
    let has_events = app.store.last_event_at(GroupId(id.0)).await?.is_some();
    let health = if unproven {
        None
    } else if community.status != CommunityStatus::NotConnected || has_events {
        Some(super::health::health_view(&app, t, GroupId(id.0)).await?)
    } else {
        None
    };
    let endpoints =
        if sees_private { super::endpoints::forwarding_card(&app, t, GroupId(id.0)).await? } else { Vec::new() };
    let alerts = if sees_private { Some(super::alerts::alerts_card(&app, t, GroupId(id.0)).await?) } else { None };
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

/// The status card of a connected community, with VK's live view; `None` when VK refused the key just now.
async fn connected_view(
    app: &AppState,
    t: &'static Msg,
    s: &crate::store::CommunitySettings,
) -> AppResult<Option<ConnectedView>> {
    let connected_by = match s.connected_by {
        Some(user_id) => {
            app.store.user(user_id).await?.map(|u| format!("{} {}", u.first_name, u.last_name)).unwrap_or_default()
        }
        None => String::new(),
    };
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
        url: app.connector.callback_url(),
        api_version: live_events.map(|l| l.api_version).or_else(|| s.api_version.clone()).unwrap_or_default(),
        connected_at: s.connected_at.map(super::render::format_time).unwrap_or_default(),
        connected_by,
        vk_status,
        vk_status_class,
        events,
    }))
}

#[cfg(test)]
mod tests {
    use super::parse_community_link;

    #[test]
    fn community_links_in_the_shapes_admins_paste() {
        for (input, key) in [
            ("vk.com/club1001", "club1001"),
            ("https://vk.com/zerno_coffee", "zerno_coffee"),
            ("https://m.vk.com/public1002?w=wall", "public1002"),
            ("  1001 ", "1001"),
            ("@zerno_coffee", "zerno_coffee"),
            ("vk.ru/club7/", "club7"),
        ] {
            assert_eq!(parse_community_link(input).as_deref(), Some(key), "{input}");
        }
        for bad in ["", "   ", "https://vk.com/", "-5", "<script>", "a b"] {
            assert_eq!(parse_community_link(bad), None, "{bad}");
        }
    }
}
