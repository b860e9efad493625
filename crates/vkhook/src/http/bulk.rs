//! Several communities at once, from `/communities`: «Подключить выбранные», «Подключить все неподключённые»,
//! «Отключить выбранные», and the run's page (`/communities/bulk/{bulk}`), one line per community.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use vk::GroupId;

use crate::app::AppState;
use crate::connect::ConnectOptions;
use crate::error::{AppError, AppResult, Problem};
use crate::i18n::{fill, Msg};
use crate::model::{BulkKind, BulkOutcome, CommunityStatus, ErrorKind, Role, SetupState, StepState};
use crate::roles::Standing;
use crate::store::{BulkMember, SetupRow};

use super::auth::user_name;
use super::connect::{error_message, no_store, step_views};
use super::forms::FormPairs;
use super::render::{render, Layout};
use super::session::{SignedIn, Viewer};

/// The form under the list: the ticked communities (`group`), which button (`action`) and «Сразу включить бота».
pub async fn bulk_action(State(app): State<AppState>, user: SignedIn, body: axum::body::Bytes) -> AppResult<Response> {
    let form = FormPairs::parse(&body);
    let action = form.get("action").unwrap_or_default();
    let ticked: Vec<GroupId> = form.all("group").iter().filter_map(|v| v.parse().ok()).map(GroupId).collect();
    let mine = app.store.user_communities(user.user_id).await?;
    // Administrators, and those whose role VK has not said yet (added by link): their consent proves it.
    let candidates = mine.iter().filter(|c| matches!(c.role, Role::Administrator | Role::Unknown));
    let chosen: Vec<GroupId> = match action {
        "connect_all" => candidates.filter(|c| c.status != CommunityStatus::Connected).map(|c| c.id).collect(),
        "connect" | "disconnect" => candidates.filter(|c| ticked.contains(&c.id)).map(|c| c.id).collect(),
        _ => return Err(AppError::shown_with_back(Problem::BadRequest, |t| t.error_bad_request, "/communities")),
    };
    if chosen.is_empty() {
        return Ok(Redirect::to("/communities?bulk=none").into_response());
    }
    // The stored roles may be stale: VK decides (with `groups`, in one call for all of them).
    let standings = app.roles.standings(user.user_id, &chosen).await?;
    let (mut confirmed, mut unproven, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    for (id, standing) in chosen.iter().copied().zip(standings) {
        match standing {
            s if s.may_change() => confirmed.push(id),
            Standing::Unproven if action != "disconnect" => unproven.push(id),
            _ => refused.push(id),
        }
    }
    tracing::info!(user_id = user.user_id.0, action, communities = chosen.len(), "bulk action");
    if action == "disconnect" {
        let bulk_id = app.connector.disconnect_bulk(user.user_id, &confirmed, &refused).await?;
        return Ok(Redirect::to(&format!("/communities/bulk/{bulk_id}")).into_response());
    }
    let options = ConnectOptions { bot_enabled: form.has("bot_enabled"), ..ConnectOptions::default() };
    let chosen = crate::connect::BulkChoice { confirmed, unproven, refused };
    let started = app.connector.start_bulk(user.user_id, &user.session.id_hash, &chosen, options).await?;
    Ok(match started.consent {
        Some(url) => Redirect::to(url.as_str()).into_response(),
        None => Redirect::to(&format!("/communities/bulk/{}", started.bulk_id)).into_response(),
    })
}

/// One community's line on the run's page.
struct BulkLine {
    id: i64,
    name: String,
    /// `ok`, `err`, `warn` or empty (going on).
    class: &'static str,
    text: String,
    /// «Попробовать снова» (a connect that failed).
    retry: bool,
    /// The failed run had «Сразу включить бота»: the retry keeps it.
    bot: bool,
    /// A connect's five steps and where each stands (empty for a disconnect).
    steps: Vec<super::connect::StepView>,
}

#[derive(Template)]
#[template(path = "communities/bulk.html")]
struct BulkPage {
    layout: Layout,
    csrf: String,
    bulk_id: String,
    title: &'static str,
    summary: String,
    lines: Vec<BulkLine>,
    /// Some setup is still running: the page refreshes itself.
    running: bool,
    /// Some communities still wait for a consent at VK.
    waiting: bool,
}

pub async fn show_bulk(
    State(app): State<AppState>,
    user: SignedIn,
    viewer: Viewer,
    Path(bulk_id): Path<String>,
) -> AppResult<Response> {
    let run = app.store.bulk_run(&bulk_id, user.user_id).await?.ok_or(AppError::NotFound)?;
    let members = app.store.bulk_members(&bulk_id, user.user_id).await?;
    let t = user.lang.msg();
    let callback_url = app.connector.callback_url();
    let lines: Vec<BulkLine> = members
        .iter()
        .map(|(member, setup)| match run.kind {
            BulkKind::Connect => {
                // A run whose runner died (its lease ran out) is picked up again when someone looks at it.
                if let Some(setup) = setup {
                    app.connector.resume_if_abandoned(setup);
                }
                connect_line(t, member, setup.as_ref(), &callback_url)
            }
            BulkKind::Disconnect => disconnect_line(t, member),
        })
        .collect();
    let total = lines.len().to_string();
    let done = lines.iter().filter(|l| l.class == "ok").count().to_string();
    let (title, summary) = match run.kind {
        BulkKind::Connect => (t.bulk_connect_title, t.bulk_connected_of),
        BulkKind::Disconnect => (t.bulk_disconnect_title, t.bulk_disconnected_of),
    };
    let state = |s: SetupState| {
        members
            .iter()
            .filter(|(m, _)| m.outcome != Some(BulkOutcome::NotAdmin))
            .any(|(_, setup)| setup.as_ref().is_some_and(|x| x.state == s))
    };
    let page = BulkPage {
        layout: Layout::new(&viewer, user_name(&app, &viewer).await?, &format!("/communities/bulk/{bulk_id}")),
        csrf: user.session.csrf.clone(),
        title,
        summary: fill(summary, &[("done", &done), ("total", &total)]),
        running: run.kind == BulkKind::Connect && state(SetupState::Running),
        waiting: run.kind == BulkKind::Connect && state(SetupState::WaitingToken),
        lines,
        bulk_id,
    };
    Ok(no_store(render(page)?))
}

fn connect_line(t: &'static Msg, member: &BulkMember, setup: Option<&SetupRow>, callback_url: &str) -> BulkLine {
    if member.outcome == Some(BulkOutcome::NotAdmin) {
        // Refused before anything started: the community's setup record (maybe another admin's) is not this run's.
        let (id, name) = (member.community.id, member.community.name.clone());
        let text = t.err_no_longer_admin.to_owned();
        return BulkLine { id: id.0, name, class: "err", text, retry: false, bot: false, steps: Vec::new() };
    }
    let steps = setup.map(|s| step_views(t, s)).unwrap_or_default();
    let (class, text, retry) = match setup {
        Some(s) if s.state == SetupState::Done => ("ok", t.connected_title.to_owned(), false),
        Some(s) if s.state == SetupState::Failed => {
            let kind = s.error_kind.unwrap_or(ErrorKind::Internal);
            ("err", error_message(t, kind, callback_url), true)
        }
        Some(s) if s.state == SetupState::WaitingToken => ("warn", t.bulk_waiting_token.to_owned(), false),
        Some(_) => {
            // The first step not done yet is the one going.
            let at = steps.iter().position(|s| s.state != StepState::Done.as_str()).unwrap_or(steps.len() - 1);
            let step = fill(t.bulk_step, &[("n", &(at + 1).to_string()), ("step", steps[at].name)]);
            ("", step, false)
        }
        None => ("", t.bulk_in_progress.to_owned(), false),
    };
    let bot = setup.is_some_and(|s| s.bot_enabled);
    BulkLine { id: member.community.id.0, name: member.community.name.clone(), class, text, retry, bot, steps }
}

fn disconnect_line(t: &'static Msg, member: &BulkMember) -> BulkLine {
    let (class, text) = match member.outcome {
        Some(BulkOutcome::Removed) => ("ok", t.bulk_removed),
        Some(BulkOutcome::NothingAtVk) => ("ok", t.bulk_nothing_at_vk),
        Some(BulkOutcome::TokenDead) => ("ok", t.disconnected_token_dead),
        Some(BulkOutcome::Failed) => ("err", t.bulk_disconnect_failed),
        Some(BulkOutcome::NotAdmin) => ("err", t.err_no_longer_admin),
        None => ("", t.bulk_in_progress),
    };
    let (id, name) = (member.community.id, member.community.name.clone());
    BulkLine { id: id.0, name, class, text: text.to_owned(), retry: false, bot: false, steps: Vec::new() }
}

/// «Продолжить»: the consent again for the run's communities still waiting for one (the admin came back from VK
/// without deciding, or a second consent is due).
pub async fn continue_bulk(
    State(app): State<AppState>,
    user: SignedIn,
    Path(bulk_id): Path<String>,
) -> AppResult<Response> {
    app.store.bulk_run(&bulk_id, user.user_id).await?.ok_or(AppError::NotFound)?;
    Ok(match app.connector.next_consent(&bulk_id, user.user_id, &[], &user.session.id_hash).await? {
        Some(url) => Redirect::to(url.as_str()).into_response(),
        None => Redirect::to(&format!("/communities/bulk/{bulk_id}")).into_response(),
    })
}
