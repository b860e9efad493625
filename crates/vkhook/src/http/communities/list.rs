//! `/communities`: the list (refreshed from VK when the user's token may read it; what needs the admin first) and
//! adding a community by link.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::error::{with_problem, AppResult, Problem};
use crate::health::{Activity, Silence};
use crate::i18n::Msg;
use crate::model::{CommunityStatus, Role, Trouble, VkServerView};
use crate::roles::{AddByLink, ListRefresh};

use super::{role_label, status_label};
use crate::http::auth::user_name;
use crate::http::health::vk_view_words;
use crate::http::render::{render, Layout};
use crate::http::session::{SignedIn, Viewer};

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
    /// Where events come from: «Callback API», «Long Poll», both, or nothing yet.
    pub source: &'static str,
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

pub async fn list_communities(
    State(app): State<AppState>,
    user: SignedIn,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> AppResult<Response> {
    let mut problem = match app.roles.refresh_list(user.user_id).await? {
        ListRefresh::Refreshed => None,
        ListRefresh::NoGroupsScope => Some(ListProblem::NoGroupsScope),
        ListRefresh::Hidden => Some(ListProblem::Hidden),
        ListRefresh::VkUnavailable => Some(ListProblem::VkUnavailable),
    };
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
pub(super) fn age(t: &'static Msg, ms: i64) -> String {
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
            if r.long_poll_trouble.as_deref() == Some(crate::longpoll::OFF_AT_VK) {
                attention.push(t.long_poll_off_at_vk.to_owned());
            }
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
        source: match (r.community.status == CommunityStatus::Connected && r.callback_configured, r.polled) {
            (true, true) => t.source_both,
            (true, false) => t.source_callback,
            (false, true) => t.source_long_poll,
            (false, false) => "",
        },
        last_event: r.last_event_at.map_or_else(|| t.overview_never.to_owned(), |at| age(t, now - at)),
        events_24h: r.events_24h,
        backlog: r.backlog + r.forward_backlog,
        bot,
        forwarding,
        last_error: r.last_error.clone().unwrap_or_default(),
        attention,
    }
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
    let refused = match app.roles.add_by_link(user.user_id, &form.link).await? {
        AddByLink::Added { group_id, .. } => {
            return Ok(Redirect::to(&format!("/communities/{group_id}")).into_response())
        }
        AddByLink::BadInput => t.add_community_bad_input,
        AddByLink::NotFound => t.add_community_not_found,
        AddByLink::NotManaged => t.add_community_not_managed,
    };
    list_page(&app, &user, &viewer, None, Some(refused), false).await
}
