//! The connect button, the community authorization's redirect, the progress page, the status card's actions
//! (events, «Перенастроить», «Отключить») and the manual setup.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::app::AppState;
use crate::connect::{AuthFailure, Authorized, CommunityRedirect, ConnectError, ConnectOptions, Disconnected, Started};
use crate::error::{with_problem, AppError, AppResult, Problem};
use crate::i18n::{fill, Msg};
use crate::logging::Untrusted;
use crate::model::{ErrorKind, SetupMode, SetupState, StepState};
use crate::store::{SetupRow, Step, UserCommunity};

use super::access::{Administered, Connecting, Managed, Trusted};
use super::auth::user_name;
use super::forms::FormPairs;
use super::notice::Notice;
use super::render::{render, Layout};
use super::session::{SignedIn, Viewer};

/// Pages with secrets or live state are not cached.
pub fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

pub async fn connect_community(
    State(app): State<AppState>,
    Connecting { user, community, must_prove }: Connecting,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let form = FormPairs::parse(&body);
    // «Попробовать снова» on a bulk run's page: back to that page (only the user's own run).
    let bulk_id = match form.text("bulk") {
        Some(id) => app.store.bulk_run(id, user.user_id).await?.map(|run| run.id),
        None => None,
    };
    let progress = match &bulk_id {
        Some(id) => format!("/communities/bulk/{id}"),
        None => format!("/communities/{}/setup", community.id),
    };
    let options = ConnectOptions {
        replace_server_id: form.get("replace_server_id").and_then(|v| v.parse().ok()),
        // Not proven yet: the consent is the proof, even when another admin's key is stored.
        reauthorize: must_prove || form.get("reauth") == Some("1"),
        bot_enabled: form.has("bot_enabled"),
        bot_reply: form.text("bot_reply").map(|r| r.chars().take(4000).collect()),
        bulk_id,
        long_poll: form.get("via") == Some("long_poll"),
    };
    tracing::info!(group_id = community.id.0, user_id = user.user_id.0, "connect pressed");
    match app.connector.start(community.id, user.user_id, &user.session.id_hash, options).await? {
        Started::Running | Started::AlreadyRunning => Ok(Redirect::to(&progress).into_response()),
        Started::NeedsToken(url) => Ok(Redirect::to(url.as_str()).into_response()),
    }
}

/// oauth.vk.com's redirect after the admin granted (or refused) the community token.
pub async fn finish_community_auth(
    State(app): State<AppState>,
    user: SignedIn,
    Query(back): Query<CommunityRedirect>,
) -> AppResult<Response> {
    match app.connector.finish_authorization(&user.session.id_hash, user.user_id, &back).await {
        Ok(Authorized::One(group_id)) => Ok(Redirect::to(&format!("/communities/{group_id}/setup")).into_response()),
        Ok(Authorized::Bulk { next: Some(consent), .. }) => Ok(Redirect::to(consent.as_str()).into_response()),
        Ok(Authorized::Bulk { bulk_id, next: None }) => {
            Ok(Redirect::to(&format!("/communities/bulk/{bulk_id}")).into_response())
        }
        Err(AuthFailure::BadState) => {
            Err(AppError::shown_with_back(Problem::BadRequest, |t| t.signin_state, "/communities"))
        }
        Err(AuthFailure::Denied(g)) => {
            Err(AppError::shown_with_back(Problem::Forbidden, |t| t.err_denied, format!("/communities/{g}")))
        }
        Err(AuthFailure::RefusedWithoutState { denied: true }) => {
            Err(AppError::shown_with_back(Problem::Forbidden, |t| t.err_denied, "/communities"))
        }
        Err(AuthFailure::RefusedWithoutState { denied: false }) => {
            Err(AppError::shown_with_back(Problem::Forbidden, |t| t.err_vk_refused_request, "/communities"))
        }
        Err(AuthFailure::DeniedUnproven(g)) => {
            Err(AppError::shown_with_back(Problem::Forbidden, |t| t.err_denied_unproven, format!("/communities/{g}")))
        }
        Err(AuthFailure::NoManage(g)) => {
            Err(AppError::shown_with_back(Problem::Forbidden, |t| t.err_no_manage, format!("/communities/{g}")))
        }
        Err(AuthFailure::OtherCommunity(g)) => {
            Err(AppError::shown_with_back(Problem::Forbidden, |t| t.err_other_community, format!("/communities/{g}")))
        }
        Err(AuthFailure::NotAdmin(g)) => {
            Err(AppError::shown_with_back(Problem::Forbidden, |t| t.err_not_admin, format!("/communities/{g}")))
        }
        Err(AuthFailure::Vk(g, e)) => {
            tracing::warn!(group_id = g, error = %Untrusted(&e.to_string()), "community authorization failed at VK");
            Err(AppError::shown_with_back(
                Problem::VkUnavailable,
                |t| t.err_vk_unavailable,
                format!("/communities/{g}"),
            ))
        }
        Err(AuthFailure::Store(e)) => Err(e.into()),
    }
}

pub struct StepView {
    pub key: &'static str,
    pub name: &'static str,
    pub state: &'static str,
    pub state_label: &'static str,
}

pub fn step_views(t: &'static Msg, setup: &SetupRow) -> Vec<StepView> {
    Step::ALL
        .iter()
        .map(|step| {
            let long_poll = setup.mode == SetupMode::LongPoll;
            let (key, name) = match step {
                Step::Token => ("token", t.step_token),
                Step::Code if long_poll => ("code", t.step_lp_read),
                Step::Code => ("code", t.step_code),
                Step::Server if long_poll => ("server", t.step_lp_enable),
                Step::Server => ("server", t.step_server),
                Step::Events if long_poll => ("events", t.step_lp_events),
                Step::Events => ("events", t.step_events),
                Step::Confirm if long_poll => ("confirm", t.step_lp_start),
                Step::Confirm => ("confirm", t.step_confirm),
            };
            let state = setup.step(*step);
            StepView { key, name, state_label: step_label(t, state), state: state.as_str() }
        })
        .collect()
}

fn step_label(t: &'static Msg, state: StepState) -> &'static str {
    match state {
        StepState::Running => t.step_running,
        StepState::Done => t.step_done,
        StepState::Failed => t.step_failed,
        StepState::Pending => t.step_pending,
    }
}

/// The admin-facing message for a stored error kind.
pub fn error_message(t: &'static Msg, kind: ErrorKind, callback_url: &str) -> String {
    match kind {
        ErrorKind::Denied => t.err_denied.into(),
        ErrorKind::NoManage => t.err_no_manage.into(),
        ErrorKind::OtherCommunity => t.err_other_community.into(),
        ErrorKind::NotGranted => t.err_not_granted.into(),
        ErrorKind::Reauth => t.err_reauth.into(),
        ErrorKind::NotAdmin => t.err_not_admin.into(),
        ErrorKind::VkUnavailable => t.err_vk_unavailable.into(),
        ErrorKind::ServersLimit => t.err_servers_limit.into(),
        ErrorKind::ConfirmUnreached => fill(t.err_confirm_unreached, &[("url", callback_url)]),
        ErrorKind::ConfirmRejected => t.err_confirm_rejected.into(),
        ErrorKind::ConfirmTimeout => t.err_confirm_timeout.into(),
        ErrorKind::ServerGone => t.err_server_gone.into(),
        ErrorKind::Internal => t.error_internal.into(),
        ErrorKind::WrongTokenKind | ErrorKind::VkError => t.err_vk_error.into(),
    }
}

#[derive(Template)]
#[template(path = "communities/setup.html")]
struct SetupPage {
    layout: Layout,
    community: UserCommunity,
    steps: Vec<StepView>,
    running: bool,
    waiting_token: bool,
    done: bool,
    /// What «done» says: «✅ Callback API подключен» or «✅ Long Poll подключен».
    done_title: &'static str,
    error: Option<String>,
    took: Option<String>,
}

pub async fn show_setup(
    State(app): State<AppState>,
    Managed { user, community, .. }: Managed,
    viewer: Viewer,
) -> AppResult<Response> {
    let Some(setup) = app.store.setup(community.id).await? else {
        return Ok(Redirect::to(&format!("/communities/{}", community.id)).into_response());
    };
    // A run whose runner died (its lease ran out) is picked up again when someone looks at it.
    app.connector.resume_if_abandoned(&setup);
    let t = user.lang.msg();
    let took = (setup.state == SetupState::Done).then(|| {
        let ms = setup.finished_at.unwrap_or(setup.updated_at) - setup.started_at;
        // Two decimals: a connect usually takes well under a second.
        let seconds = format!("{:.2}", ms as f64 / 1000.0);
        let seconds = if user.lang == crate::i18n::Lang::Ru { seconds.replace('.', ",") } else { seconds };
        fill(t.setup_took, &[("seconds", &seconds), ("calls", &setup.vk_calls.to_string())])
    });
    let error = (setup.state == SetupState::Failed)
        .then(|| error_message(t, setup.error_kind.unwrap_or(ErrorKind::Internal), &app.connector.callback_url()));
    render(SetupPage {
        layout: Layout::new(&viewer, user_name(&app, &viewer).await?, &format!("/communities/{}/setup", community.id)),
        steps: step_views(t, &setup),
        running: !setup.is_finished(),
        waiting_token: setup.state == SetupState::WaitingToken,
        done: setup.state == SetupState::Done,
        done_title: if setup.mode == SetupMode::LongPoll { t.connected_long_poll_title } else { t.connected_title },
        error,
        took,
        community,
    })
}

/// The same, as JSON, for the progress page's small script.
pub async fn setup_status(
    State(app): State<AppState>,
    Managed { user, community, .. }: Managed,
) -> AppResult<Response> {
    let setup = app.store.setup(community.id).await?.ok_or(AppError::NotFound)?;
    let t = user.lang.msg();
    let steps: Vec<serde_json::Value> = step_views(t, &setup)
        .into_iter()
        .map(|s| serde_json::json!({"key": s.key, "state": s.state, "label": s.state_label}))
        .collect();
    Ok(no_store(
        Json(serde_json::json!({"state": setup.state.as_str(), "finished": setup.is_finished(), "steps": steps}))
            .into_response(),
    ))
}

pub async fn disconnect_community(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
) -> AppResult<Response> {
    let notice = match app.connector.disconnect(community.id).await? {
        Disconnected::Removed | Disconnected::NothingAtVk => Notice::Disconnected,
        Disconnected::TokenDead => Notice::DisconnectedTokenDead,
    };
    Ok(notice.redirect(community.id, ""))
}

pub async fn save_events(
    State(app): State<AppState>,
    Administered { community, .. }: Administered,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let chosen = FormPairs::parse(&body).all("event");
    let notice = match app.connector.save_events(community.id, &chosen).await {
        Ok(()) => Notice::EventsSaved,
        Err(ConnectError::Store(e)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(group_id = community.id.0, error = %e, "could not save events at VK");
            Notice::EventsFailed
        }
    };
    Ok(notice.redirect(community.id, ""))
}

#[derive(Template)]
#[template(path = "communities/manual.html")]
struct ManualPage {
    layout: Layout,
    csrf: String,
    community: UserCommunity,
    is_admin: bool,
    callback_url: String,
    secret: Option<String>,
    events: Vec<&'static str>,
    steps: Vec<&'static str>,
    confirmation: Option<String>,
    notice: Option<String>,
    error: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct ManualQuery {
    notice: Option<String>,
    scopes: Option<String>,
}

pub async fn show_manual(
    State(app): State<AppState>,
    managed: Managed,
    viewer: Viewer,
    Query(q): Query<ManualQuery>,
) -> AppResult<Response> {
    let sees_private = managed.sees_private(&app);
    let Managed { user, community, .. } = managed;
    manual_page(&app, &user, &viewer, community, sees_private, q, None).await
}

async fn manual_page(
    app: &AppState,
    user: &SignedIn,
    viewer: &Viewer,
    community: UserCommunity,
    sees_private: bool,
    q: ManualQuery,
    error: Option<&'static str>,
) -> AppResult<Response> {
    let t = user.lang.msg();
    let is_admin = sees_private;
    // The secret is shown to an administrator VK confirms now only: it is what they paste at VK, and with it anyone
    // could forge the community's events.
    let secret = if sees_private { app.connector.manual_secret(community.id, false).await? } else { None };
    let settings = app.store.community_settings(community.id).await?;
    let confirmation = settings.filter(|s| s.setup_mode.admin_enters_code()).and_then(|s| s.confirmation_code);
    let notice = match q.notice.as_deref() {
        Some("saved") => Some(t.manual_saved.to_owned()),
        Some("key_saved") => Some(fill(t.manual_key_saved, &[("scopes", q.scopes.as_deref().unwrap_or_default())])),
        _ => None,
    };
    let mut response = render(ManualPage {
        layout: Layout::new(viewer, user_name(app, viewer).await?, &format!("/communities/{}/manual", community.id)),
        csrf: user.session.csrf.clone(),
        is_admin,
        callback_url: app.connector.callback_url(),
        secret: secret.map(|s| s.expose_secret().to_owned()),
        events: vk::DEFAULT_SUBSCRIPTION.to_vec(),
        steps: t.manual_steps.split('|').collect(),
        confirmation,
        notice,
        error,
        community,
    })?;
    if error.is_some() {
        response = with_problem(response, Problem::Invalid);
    }
    Ok(no_store(response))
}

pub async fn create_manual_secret(
    State(app): State<AppState>,
    Trusted { community, .. }: Trusted,
) -> AppResult<Response> {
    app.connector.manual_secret(community.id, true).await?;
    Ok(Redirect::to(&format!("/communities/{}/manual", community.id)).into_response())
}

pub async fn save_manual(
    State(app): State<AppState>,
    Trusted { user, community }: Trusted,
    viewer: Viewer,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let form = FormPairs::parse(&body);
    let group_id = community.id;
    if let Some(key) = form.text("key") {
        return match app.connector.save_manual_key(group_id, SecretString::from(key.to_owned())).await {
            Ok(scopes) => {
                let scopes = scopes.join(", ");
                let q = serde_urlencoded::to_string([("notice", "key_saved"), ("scopes", scopes.as_str())])
                    .unwrap_or_default();
                Ok(Redirect::to(&format!("/communities/{group_id}/manual?{q}")).into_response())
            }
            Err(ConnectError::Store(e)) => Err(e.into()),
            Err(problem) => {
                tracing::info!(group_id = group_id.0, %problem, "hand-made community key refused");
                let q = ManualQuery { notice: None, scopes: None };
                manual_page(&app, &user, &viewer, community, true, q, Some(user.lang.msg().manual_key_bad)).await
            }
        };
    }
    let code = form.text("confirmation").unwrap_or_default();
    if code.is_empty() || code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        let q = ManualQuery { notice: None, scopes: None };
        return manual_page(&app, &user, &viewer, community, true, q, Some(user.lang.msg().error_bad_request)).await;
    }
    app.connector.save_manual_confirmation(group_id, code).await?;
    Ok(Redirect::to(&format!("/communities/{group_id}/manual?notice=saved")).into_response())
}
